//! Process scaffolding for a stage binary: the Tokio runtime, logs, metrics, the HTTP port,
//! signals and the exit code. Exit codes: 0 after a clean shutdown, 1 when the stage failed,
//! 2 for a configuration error (reported before anything starts).

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, HttpSettings, KafkaSettings, LogSettings, RuntimeSettings};
use crate::http::{self, Readiness};
use crate::processor::Processor;
use crate::runner::{StageSpec, run_stage};
use crate::{shutdown, telemetry};

/// Exit code for a configuration error (like a usage error).
pub const EXIT_CONFIG: u8 = 2;

/// The sections every stage config has.
#[derive(Clone, Debug)]
pub struct ProcessSettings {
    /// `[kafka]`.
    pub kafka: KafkaSettings,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[log]`.
    pub log: LogSettings,
    /// `[runtime]`.
    pub runtime: RuntimeSettings,
}

impl ProcessSettings {
    /// The shared sections of a stage's config, validated. Binaries validate these before
    /// their own section: with nothing configured, the brokers are the first thing to set.
    pub fn validated(
        kafka: KafkaSettings,
        http: HttpSettings,
        log: LogSettings,
        runtime: RuntimeSettings,
    ) -> Result<Self, ConfigError> {
        let settings = ProcessSettings {
            kafka,
            http,
            log,
            runtime,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Validates the shared sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.runtime.validate()
    }
}

/// Prints a configuration error the way every stage does and returns the exit code.
pub fn config_error(binary: &str, error: &ConfigError) -> ExitCode {
    eprintln!("{binary}: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// Runs one stage as a process until SIGTERM/SIGINT. `build` creates the processor once
/// logging and the metrics recorder are in place (so its metric descriptions register).
pub fn run<P, F, E>(settings: ProcessSettings, spec: StageSpec, build: F) -> ExitCode
where
    P: Processor,
    F: FnOnce() -> Result<P, E>,
    E: std::fmt::Display,
{
    let ProcessSettings {
        kafka,
        http,
        log,
        runtime,
    } = settings;
    let readiness = Readiness::default();
    let parts = vec![(spec.name.to_owned(), readiness.clone())];
    run_parts(&log, http.listen, parts, move |shutdown| async move {
        let stage = spec.name;
        let processor = build().map_err(|e| format!("cannot start stage {stage}: {e}"))?;
        run_stage(spec, processor, &kafka, &runtime, readiness, shutdown)
            .await
            .map_err(|e| format!("stage {stage} stopped: {e}"))
    })
}

/// Runs `body` as a process: the Tokio runtime, logs, the metrics recorder, one HTTP port
/// whose `/readyz` waits for every named part, and the shutdown token (cancelled by
/// SIGTERM/SIGINT) that `body` gets and must return soon after. For binaries that run more
/// than one loop (a stage plus identity sources, the identity publisher); [`run`] is the
/// single-stage case. Exit code 0 when `body` returns `Ok`, 1 otherwise.
pub fn run_parts<F, Fut>(
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
