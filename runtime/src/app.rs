//! Process scaffolding for a stage binary: the Tokio runtime, logs, metrics, the HTTP port,
//! signals and the exit code. Exit codes: 0 after a clean shutdown, 1 when the stage failed,
//! 2 for a configuration error (reported before anything starts).

use std::process::ExitCode;

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
    telemetry::init_logging(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let metrics = telemetry::init_metrics();
        let processor = match build() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(stage = spec.name, error = %e, "cannot start the stage");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = shutdown::on_signals();
        let readiness = Readiness::default();
        let served = http::serve(settings.http.listen, metrics, vec![(spec.name.to_owned(), readiness.clone())], shutdown.clone()).await;
        if let Err(e) = served {
            tracing::error!(address = %settings.http.listen, error = %e, "cannot listen for http (set --http-listen)");
            return ExitCode::FAILURE;
        }
        let stage = spec.name;
        match run_stage(spec, processor, &settings.kafka, &settings.runtime, readiness, shutdown.clone()).await {
            Ok(()) => {
                shutdown.cancel();
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(stage, error = %e, "stage stopped");
                shutdown.cancel();
                ExitCode::FAILURE
            }
        }
    })
}
