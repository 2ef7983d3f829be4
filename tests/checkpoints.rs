//! The checkpoint topic against a real broker: a claim restores the latest valid
//! checkpoint and takes the next epoch; a stale owner's writes after a newer claim are
//! ignored by every later reader, and the stale owner learns that it lost the partition.

mod support;

use flowlake_runtime::TopicPartition;
use flowlake_runtime::checkpoint::{CheckpointStore, MarkRecord, Resume};
use flowlake_runtime::config::KafkaSettings;
use support::Tansu;

const TOPIC: &str = "flowlake.checkpoints";

fn store(bootstrap: &str) -> CheckpointStore {
    let settings = KafkaSettings {
        brokers: bootstrap.to_owned(),
        ..KafkaSettings::default()
    };
    CheckpointStore::new(&settings, "g", TOPIC).unwrap_or_else(|e| panic!("{e}"))
}

fn resume(offset: i64) -> Resume {
    Resume {
        offset: Some(offset),
        marks: vec![MarkRecord {
            topic: "up".into(),
            partition: 1,
            offset: offset * 10,
            seq: 0,
        }],
        state: Some(format!("{{\"at\":{offset}}}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_is_fenced_and_ignored() {
    let broker = Tansu::start();
    support::create_topics(&broker.bootstrap, &[(TOPIC, 1)]).await;
    let tp = TopicPartition {
        topic: "flows.enriched".into(),
        partition: 3,
    };
    let (a, b, c) = (
        store(&broker.bootstrap),
        store(&broker.bootstrap),
        store(&broker.bootstrap),
    );

    // A takes the partition for the first time: nothing to restore.
    let tp_a = tp.clone();
    let (a, claim_a, first) = run_blocking(move || {
        let (claim, resume) = a.claim(&tp_a).unwrap_or_else(|e| panic!("{e}"));
        (a, claim, resume)
    })
    .await;
    assert_eq!(first, Resume::default());
    assert_eq!(claim_a.epoch, 1);
    a.write(&tp, &claim_a, resume(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // B takes over (A was kicked out of the group without noticing).
    let tp_b = tp.clone();
    let (b, claim_b, restored_b) = run_blocking(move || {
        let (claim, resume) = b.claim(&tp_b).unwrap_or_else(|e| panic!("{e}"));
        (b, claim, resume)
    })
    .await;
    assert_eq!(restored_b, resume(10));
    assert_eq!(claim_b.epoch, 2);

    // A, stale, still writes; B writes its own progress.
    a.write(&tp, &claim_a, resume(99))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let offset_b = b
        .write(&tp, &claim_b, resume(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut claim_b = claim_b;
    claim_b.offset = offset_b;
    // A stale write after B's too: the newest record of the partition is A's.
    a.write(&tp, &claim_a, resume(98))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A learns it lost the partition; B still owns it.
    let (tp_a, tp_b) = (tp.clone(), tp.clone());
    let (a_owns, b_owns, b) = run_blocking(move || {
        let a_owns = a
            .still_owner(&tp_a, &claim_a)
            .unwrap_or_else(|e| panic!("{e}"));
        let b_owns = b
            .still_owner(&tp_b, &claim_b)
            .unwrap_or_else(|e| panic!("{e}"));
        (a_owns, b_owns, (b, claim_b))
    })
    .await;
    assert!(!a_owns, "a stale owner must see the newer claim");
    assert!(b_owns);

    // C takes over from B: it restores B's checkpoint, not A's newer stale ones.
    let tp_c = tp.clone();
    let (claim_c, restored_c) =
        run_blocking(move || c.claim(&tp_c).unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(restored_c, resume(20));
    assert_eq!(claim_c.epoch, 3);
    let (b, claim_b) = b;
    let tp_b = tp.clone();
    let b_owns = run_blocking(move || {
        b.still_owner(&tp_b, &claim_b)
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await;
    assert!(!b_owns, "B must see C's claim");
}

/// A newer claim that lands between two of the old owner's own checkpoints is still
/// found: ownership checks read from where the last check ended, not from the owner's
/// latest write (which would skip the claim and let a stale sink write its objects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_between_two_of_the_owners_checkpoints_is_found() {
    let broker = Tansu::start();
    support::create_topics(&broker.bootstrap, &[(TOPIC, 1)]).await;
    let tp = TopicPartition {
        topic: "flows.enriched".into(),
        partition: 0,
    };
    let (a, b) = (store(&broker.bootstrap), store(&broker.bootstrap));
    let tp_a = tp.clone();
    let (a, claim_a) = run_blocking(move || {
        let (claim, _) = a.claim(&tp_a).unwrap_or_else(|e| panic!("{e}"));
        (a, claim)
    })
    .await;
    a.write(&tp, &claim_a, resume(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Checked through its first checkpoint: still the owner, and the check moves on.
    let tp_a = tp.clone();
    let (a, claim_a) = run_blocking(move || {
        let mut claims = vec![(tp_a, claim_a)];
        let lost = a.verify(&mut claims).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lost, None);
        (a, claims.remove(0).1)
    })
    .await;

    // B claims; A, not knowing, checkpoints again after B's claim.
    let tp_b = tp.clone();
    let (_claim_b, restored_b) =
        run_blocking(move || b.claim(&tp_b).unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(restored_b, resume(10));
    a.write(&tp, &claim_a, resume(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let tp_a = tp.clone();
    let lost = run_blocking(move || {
        let mut claims = vec![(tp_a, claim_a)];
        a.verify(&mut claims).unwrap_or_else(|e| panic!("{e}"))
    })
    .await;
    assert_eq!(
        lost,
        Some(tp),
        "the claim before A's last checkpoint must be found"
    );
}

/// Runs blocking checkpoint calls (they block on the broker) off the async threads.
async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}
