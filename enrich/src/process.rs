//! Process scaffolding for enrich's binaries when they run more than the runtime's one
//! stage loop (enrich with live identity sources, the identity publisher): the Tokio
//! runtime, logs, metrics, one HTTP port whose `/readyz` waits for every listed part, the
//! shutdown token, and the exit code (0 clean, 1 failed; 2 for configuration errors is
//! returned by the caller before anything starts, as `flowlake_runtime::app` does).

use std::net::SocketAddr;
use std::process::ExitCode;

use flowlake_runtime::config::LogSettings;
use flowlake_runtime::http::{self, Readiness};
use flowlake_runtime::{shutdown, telemetry};
use tokio_util::sync::CancellationToken;

/// Runs `body` until it returns. `parts` are reported by `/readyz` by name; `body` gets
/// the token that SIGTERM/SIGINT cancel and must return soon after it is cancelled.
pub fn run<F, Fut>(
    log: &LogSettings,
    listen: SocketAddr,
    parts: Vec<(String, Readiness)>,
    body: F,
) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    telemetry::init_logging(log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let metrics = telemetry::init_metrics();
        let shutdown = shutdown::on_signals();
        if let Err(e) = http::serve(listen, metrics, parts, shutdown.clone()).await {
            tracing::error!(address = %listen, error = %e, "cannot listen for http (set --http-listen)");
            return ExitCode::FAILURE;
        }
        let result = body(shutdown.clone()).await;
        shutdown.cancel();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "stopped");
                ExitCode::FAILURE
            }
        }
    })
}
