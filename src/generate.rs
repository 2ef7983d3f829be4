//! `flowlake generate`: writes the demo scenario's raw flows to a real topic at a steady
//! rate, for trying the stage binaries against a real broker.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::scenario::{self, Scenario};

/// Arguments of `flowlake generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "FLOWLAKE_BROKERS")]
    brokers: String,
    /// Topic to write raw flows to.
    #[arg(long, default_value = "flows.raw")]
    topic: String,
    /// Flows per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// How long to generate.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Random seed (the same seed gives the same flows).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the scenario's identity snapshot (kubectl List JSON) here, for
    /// `flowlake-enrich --snapshot demo=FILE`.
    #[arg(long, value_name = "FILE")]
    write_snapshot: Option<PathBuf>,
}

/// Runs `flowlake generate`.
pub async fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.rate == 0 {
        anyhow::bail!("--rate must be at least 1");
    }
    if let Some(path) = &args.write_snapshot {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&scenario::identity_snapshot())?,
        )
        .with_context(|| format!("writing the identity snapshot to {}", path.display()))?;
        eprintln!(
            "identity snapshot for cluster {:?} written to {}",
            scenario::CLUSTER_ID,
            path.display()
        );
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .context("creating the Kafka producer")?;
    let mut scenario = Scenario::new(args.seed);
    let started = Instant::now();
    let tick = Duration::from_millis(100);
    let per_tick = f64::from(args.rate) * tick.as_secs_f64();
    let mut owed = 0.0;
    let mut last_report = Instant::now();
    let mut pending = Vec::new();
    while started.elapsed() < args.duration {
        owed += per_tick;
        while owed >= 1.0 {
            for line in scenario.next_lines(Utc::now()) {
                let record = FutureRecord::<(), _>::to(&args.topic).payload(&line);
                match producer.send_result(record) {
                    Ok(delivery) => pending.push(delivery),
                    Err((e, _)) => anyhow::bail!("cannot produce to {}: {e}", args.topic),
                }
            }
            owed -= 1.0;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "generated {} flows in {:.0?}",
                scenario.generated(),
                started.elapsed()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(tick).await;
    }
    let mut failed = 0u64;
    for delivery in pending {
        if !matches!(delivery.await, Ok(Ok(_))) {
            failed += 1;
        }
    }
    producer
        .flush(Duration::from_secs(10))
        .context("flushing the producer")?;
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} flows were not acknowledged by the broker",
            scenario.generated()
        );
    }
    eprintln!(
        "done: {} flows written to {} in {:.1?}",
        scenario.generated(),
        args.topic,
        started.elapsed()
    );
    Ok(())
}
