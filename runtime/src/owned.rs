//! The input partitions this instance owns, and the core of the batch protocol that needs
//! no broker: which records to apply, what each partition's checkpoint says, which
//! offsets may be stored.
//!
//! Per owned partition: the claim it was taken with, its replay marks, the next offset to
//! read (its *position*), and the last checkpoint acknowledged. Protocol:
//! - a record is applied when its partition is owned and its coordinates are above the
//!   marks ([`OwnedPartitions::admit`]); the position moves past it either way;
//! - a partition's resume offset is `min(position, Processor::held_from)`; a checkpoint
//!   is due when the resume offset, the marks as of it or the processor's state differ
//!   from the last one acknowledged ([`OwnedPartitions::due_checkpoints`]);
//! - the offset stored for the consumer group is the resume offset of the last
//!   acknowledged checkpoint, and only ever moves forward ([`OwnedPartitions::storable`]);
//! - a revoked partition is forgotten entirely: its next owner resumes from the checkpoint.

use crate::checkpoint::{Claim, Resume};
use crate::kafka::Restored;
use crate::marks::{Coordinates, OriginPartition, PartitionMarks};
use crate::processor::{Processor, TopicPartition};

/// What to do with one input record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Process it.
    Apply,
    /// A replay of a record already applied: skip it.
    Replay,
    /// Its partition is not (or no longer) owned here: skip it.
    NotOwned,
}

/// One owned partition.
#[derive(Debug)]
struct Owned {
    claim: Claim,
    marks: PartitionMarks,
    /// Next offset to read; None until the first record or a checkpoint says.
    position: Option<i64>,
    /// The last checkpoint acknowledged (or the one restored).
    written: Resume,
    /// The offset last stored for the consumer group.
    stored: Option<i64>,
}

/// Every partition owned by this instance; a handful, so a vector.
#[derive(Debug, Default)]
pub(crate) struct OwnedPartitions {
    owned: Vec<(TopicPartition, Owned)>,
}

/// A checkpoint to write.
#[derive(Debug)]
pub(crate) struct DueCheckpoint {
    pub(crate) partition: TopicPartition,
    pub(crate) claim: Claim,
    pub(crate) resume: Resume,
}

impl OwnedPartitions {
    /// Takes ownership of a claimed partition, with the marks and position of its checkpoint.
    pub(crate) fn restore(&mut self, restored: Restored) {
        let Restored {
            partition,
            claim,
            resume,
        } = restored;
        self.forget(std::slice::from_ref(&partition));
        let owned = Owned {
            claim,
            marks: PartitionMarks::restored(resume.origin_marks()),
            position: resume.offset,
            written: resume,
            stored: None,
        };
        self.owned.push((partition, owned));
    }

    /// Forgets `partitions`.
    pub(crate) fn forget(&mut self, partitions: &[TopicPartition]) {
        self.owned.retain(|(tp, _)| !partitions.contains(tp));
    }

    /// True when `partition` is owned here.
    pub(crate) fn owns(&self, partition: &TopicPartition) -> bool {
        self.owned.iter().any(|(tp, _)| tp == partition)
    }

    fn get_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Owned> {
        self.owned
            .iter_mut()
            .find(|(tp, _)| tp.partition == partition && tp.topic == topic)
            .map(|(_, owned)| owned)
    }

    /// Decides about the record at `offset` of `topic`/`partition` with upstream
    /// coordinates `origin` (None: an agent's record, always new).
    pub(crate) fn admit(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        origin: Option<&(OriginPartition, Coordinates)>,
    ) -> Admission {
        let Some(owned) = self.get_mut(topic, partition) else {
            return Admission::NotOwned;
        };
        owned.position = Some(offset.saturating_add(1));
        match origin {
            Some((origin, coordinates)) if !owned.marks.admit(offset, origin, *coordinates) => {
                Admission::Replay
            }
            _ => Admission::Apply,
        }
    }

    /// The checkpoints due after a batch: every owned partition whose resume offset,
    /// marks or processor state changed since its last acknowledged checkpoint. With
    /// `refresh`, every owned partition is checkpointed again, changed or not (see
    /// [`crate::checkpoint::CLAIM_REFRESH`]).
    pub(crate) fn due_checkpoints<P: Processor>(
        &mut self,
        processor: &P,
        refresh: bool,
    ) -> Vec<DueCheckpoint> {
        let mut due = Vec::new();
        for (tp, owned) in &mut self.owned {
            let held = processor.held_from(tp);
            let offset = match (owned.position, held) {
                (Some(position), Some(held)) => Some(position.min(held)),
                (Some(position), None) => Some(position),
                (None, held) => held.or(owned.written.offset),
            };
            let Some(offset) = offset else { continue };
            let marks = Resume::mark_records(owned.marks.settle(offset));
            let resume = Resume {
                offset: Some(offset),
                marks,
                state: processor.checkpoint_state(tp),
            };
            if !refresh && resume == owned.written {
                continue;
            }
            due.push(DueCheckpoint {
                partition: tp.clone(),
                claim: owned.claim.clone(),
                resume,
            });
        }
        due
    }

    /// `checkpoint` was acknowledged (its offset in the checkpoint topic does not move the
    /// claim's checked offset: a newer claim may sit before it, and only
    /// [`OwnedPartitions::checked`] after a read says none does).
    pub(crate) fn written(&mut self, checkpoint: DueCheckpoint) {
        let tp = &checkpoint.partition;
        if let Some(owned) = self.get_mut(&tp.topic, tp.partition)
            && owned.claim.owner == checkpoint.claim.owner
        {
            owned.written = checkpoint.resume;
        }
    }

    /// The claims of the owned partitions, for fencing checks.
    pub(crate) fn claims(&self) -> Vec<(TopicPartition, Claim)> {
        self.owned
            .iter()
            .map(|(tp, owned)| (tp.clone(), owned.claim.clone()))
            .collect()
    }

    /// The `claims` (from [`OwnedPartitions::claims`]) were found still owned through
    /// their checked offsets: the next check reads from there.
    pub(crate) fn checked(&mut self, claims: &[(TopicPartition, Claim)]) {
        for (tp, claim) in claims {
            if let Some(owned) = self.get_mut(&tp.topic, tp.partition)
                && owned.claim.owner == claim.owner
            {
                owned.claim.offset = owned.claim.offset.max(claim.offset);
            }
        }
    }

    /// Offsets that became safe to store: each partition's last acknowledged resume
    /// offset, when it moved forward.
    pub(crate) fn storable(&mut self) -> Vec<(TopicPartition, i64)> {
        let mut list = Vec::new();
        for (tp, owned) in &mut self.owned {
            let Some(offset) = owned.written.offset else {
                continue;
            };
            if owned.stored.is_none_or(|stored| offset > stored) {
                owned.stored = Some(offset);
                list.push((tp.clone(), offset));
            }
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::checkpoint::MarkRecord;
    use crate::processor::{Input, Outputs, Rejection};

    struct Holding(Option<i64>);
    impl Processor for Holding {
        fn process(&mut self, _: &Input<'_>, _: &mut Outputs) -> Result<(), Rejection> {
            Ok(())
        }
        fn held_from(&self, _: &TopicPartition) -> Option<i64> {
            self.0
        }
    }

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "t".into(),
            partition: 0,
        }
    }

    fn claim(owner: &str) -> Claim {
        Claim {
            owner: owner.into(),
            epoch: 1,
            offset: 0,
            checkpoint_partition: 0,
        }
    }

    fn origin(offset: i64) -> (OriginPartition, Coordinates) {
        (
            OriginPartition {
                topic: Arc::from("up"),
                partition: 2,
            },
            Coordinates { offset, seq: 0 },
        )
    }

    fn owned(resume: Resume) -> OwnedPartitions {
        let mut owned = OwnedPartitions::default();
        owned.restore(Restored {
            partition: tp(),
            claim: claim("a"),
            resume,
        });
        owned
    }

    fn ack_all<P: Processor>(owned: &mut OwnedPartitions, processor: &P) -> Vec<Option<i64>> {
        let due = owned.due_checkpoints(processor, false);
        let offsets = due.iter().map(|d| d.resume.offset).collect();
        for checkpoint in due {
            owned.written(checkpoint);
        }
        offsets
    }

    #[test]
    fn replays_are_dropped_and_unowned_partitions_skipped() {
        let mut owned = owned(Resume::default());
        assert_eq!(owned.admit("t", 0, 0, Some(&origin(5))), Admission::Apply);
        assert_eq!(owned.admit("t", 0, 1, Some(&origin(5))), Admission::Replay);
        assert_eq!(owned.admit("t", 0, 2, None), Admission::Apply);
        assert_eq!(owned.admit("t", 1, 0, None), Admission::NotOwned);
        owned.forget(&[tp()]);
        assert_eq!(owned.admit("t", 0, 3, None), Admission::NotOwned);
    }

    #[test]
    fn offsets_wait_for_the_checkpoint_and_held_records() {
        let mut owned = owned(Resume::default());
        for offset in 0..100 {
            owned.admit("t", 0, offset, Some(&origin(offset)));
        }
        // Nothing is stored before a checkpoint is acknowledged.
        assert!(owned.storable().is_empty());
        assert_eq!(ack_all(&mut owned, &Holding(Some(40))), vec![Some(40)]);
        assert_eq!(owned.storable(), vec![(tp(), 40)]);
        // Unchanged: no checkpoint, nothing to store.
        assert!(ack_all(&mut owned, &Holding(Some(40))).is_empty());
        assert!(owned.storable().is_empty());
        assert_eq!(ack_all(&mut owned, &Holding(None)), vec![Some(100)]);
        assert_eq!(owned.storable(), vec![(tp(), 100)]);
    }

    #[test]
    fn a_checkpoint_holds_the_marks_as_of_its_resume_offset() {
        let mut owned = owned(Resume::default());
        for offset in 0..10 {
            owned.admit("t", 0, offset, Some(&origin(100 + offset)));
        }
        let due = owned.due_checkpoints(&Holding(Some(4)), false);
        assert_eq!(
            due[0].resume.marks,
            vec![MarkRecord {
                topic: "up".into(),
                partition: 2,
                offset: 103,
                seq: 0
            }]
        );
        // The next owner resumes at 4 with those marks and applies 4..9 again.
        let mut next = self::owned(due[0].resume.clone());
        for offset in 4..10 {
            assert_eq!(
                next.admit("t", 0, offset, Some(&origin(100 + offset))),
                Admission::Apply
            );
        }
    }

    #[test]
    fn a_stale_owner_checkpoint_is_not_taken_for_the_new_claim() {
        let mut owned = owned(Resume::default());
        owned.admit("t", 0, 0, None);
        let due = owned.due_checkpoints(&Holding(None), false);
        // The partition moved on and came back under a new claim before the ack arrived.
        owned.restore(Restored {
            partition: tp(),
            claim: claim("b"),
            resume: Resume::default(),
        });
        for checkpoint in due {
            owned.written(checkpoint);
        }
        assert!(owned.storable().is_empty());
    }

    /// One step of the batch protocol for the offsets proptest.
    #[derive(Clone, Debug)]
    enum Step {
        /// Read the next `n` records of the partition.
        Read(i64),
        /// The processor now holds from `position - back` (None: holds nothing).
        Hold(Option<i64>),
        /// Checkpoint what is due and acknowledge it.
        Ack,
        /// The partition is revoked and claimed again here, resuming at the last
        /// acknowledged checkpoint.
        Reassign,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (1..20i64).prop_map(Step::Read),
            2 => proptest::option::of(0..30i64).prop_map(Step::Hold),
            3 => Just(Step::Ack),
            1 => Just(Step::Reassign),
        ]
    }

    proptest::proptest! {
        /// Stored offsets never move backwards, never pass what the processor holds or what
        /// was read, and a revoked partition stores nothing until it is owned again.
        #[test]
        fn stored_offsets_never_go_back_nor_past_what_is_held(
            steps in proptest::collection::vec(step(), 1..80)
        ) {
            let mut owned = owned(Resume::default());
            let mut next = 0i64; // next offset to read
            let mut held: Option<i64> = None;
            let mut last_stored: Option<i64> = None;
            let mut acknowledged = Resume::default();
            for step in steps {
                match step {
                    Step::Read(n) => {
                        for _ in 0..n {
                            owned.admit("t", 0, next, None);
                            next += 1;
                        }
                    }
                    Step::Hold(back) => {
                        held = back.map(|b| (next - b).max(acknowledged.offset.unwrap_or(0)));
                    }
                    Step::Ack => {
                        let due = owned.due_checkpoints(&Holding(held), false);
                        for checkpoint in due {
                            let resume = checkpoint.resume.offset.unwrap_or(0);
                            proptest::prop_assert!(resume <= next, "resume {resume} past read {next}");
                            if let Some(h) = held {
                                proptest::prop_assert!(resume <= h, "resume {resume} past held {h}");
                            }
                            acknowledged = checkpoint.resume.clone();
                            owned.written(checkpoint);
                        }
                    }
                    Step::Reassign => {
                        owned.forget(&[tp()]);
                        proptest::prop_assert!(owned.storable().is_empty());
                        owned.restore(Restored {
                            partition: tp(),
                            claim: claim("a"),
                            resume: acknowledged.clone(),
                        });
                        // The replay starts at the checkpoint: nothing beyond it is held.
                        next = acknowledged.offset.unwrap_or(0);
                        held = None;
                        last_stored = None;
                    }
                }
                for (_, offset) in owned.storable() {
                    proptest::prop_assert!(last_stored.is_none_or(|s| offset > s));
                    // Only what an acknowledged checkpoint says is ever stored.
                    proptest::prop_assert_eq!(Some(offset), acknowledged.offset);
                    last_stored = Some(offset);
                }
            }
        }
    }
}
