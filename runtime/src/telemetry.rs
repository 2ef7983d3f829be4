//! Logs (`tracing`, text or JSON on stderr) and the Prometheus recorder. Both are process
//! globals installed once; `flowlake demo` runs four stages in one process and shares them.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Histogram buckets for durations in seconds: 1 ms to 2 min, covering a Kafka batch
/// round trip up to a slow object-store upload.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

/// How often histogram and summary state is compacted.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the log subscriber (idempotent: a second call is ignored).
pub fn init_logging(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Installs the Prometheus recorder once and returns its handle; later calls return the
/// same handle. Must be called inside a Tokio runtime (it spawns the upkeep task).
pub fn init_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
                .map(PrometheusBuilder::build_recorder);
            let recorder = match recorder {
                Ok(r) => r,
                // Only fails for an empty bucket list, which the constant is not.
                Err(e) => panic!("invalid histogram buckets: {e}"),
            };
            let handle = recorder.handle();
            // Another recorder may already be installed (tests): keep ours for rendering.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}
