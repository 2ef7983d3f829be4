//! The report: medians over the rounds and ratios within a round, as the Markdown table of
//! BENCHMARKS.md, with the machine and the command.

use crate::measure::RunResult;
use crate::{Options, RunKind, Workloads, average_len, support};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The Markdown table for BENCHMARKS.md, with the machine and the command.
pub(super) fn print_report(options: &Options, results: &[RunResult], workloads: &Workloads) {
    let of =
        |kind: RunKind| -> Vec<&RunResult> { results.iter().filter(|r| r.kind == kind).collect() };
    let stat = |kind: RunKind, value: fn(&RunResult) -> f64| -> f64 {
        median(of(kind).into_iter().map(value).collect())
    };
    // Ratios within a round, then their median: drift between rounds cancels out.
    let ratio = |kind: RunKind, value: fn(&RunResult) -> f64| -> Option<f64> {
        let baseline = kind.baseline()?;
        let ratios = of(kind)
            .into_iter()
            .filter_map(|run| {
                let base = results
                    .iter()
                    .find(|r| r.kind == baseline && r.round == run.round)?;
                Some(value(run) / value(base))
            })
            .collect();
        Some(median(ratios))
    };

    println!();
    println!(
        "Machine: {} cores (`nproc`), `lscpu` model name \"{}\". Command: `{}`.",
        std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model(),
        options.command()
    );
    println!(
        "{} records per run ({} distinct Hubble lines, avg {} bytes; their FlowEvents, avg {} bytes), \
         {} partition(s), default RuntimeSettings, Tansu {} (memory storage) on 127.0.0.1; \
         medians of {} rounds.",
        options.records,
        workloads.hubble.len(),
        average_len(&workloads.hubble),
        average_len(&workloads.events),
        options.partitions,
        tansu_version(),
        options.rounds,
    );
    println!();
    println!(
        "| run | input | records/s | CPU µs/record | process cores | broker CPU µs/record | broker cores | records/s vs relay | CPU/record vs relay |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for kind in [
        RunKind::RelayHubble,
        RunKind::Ingest,
        RunKind::RelayEvents,
        RunKind::Enrich,
    ] {
        let input = match kind.input_topic() {
            "bench.hubble" => "Hubble JSON",
            _ => "FlowEvent Avro",
        };
        let throughput_ratio = ratio(kind, RunResult::records_per_second)
            .map_or("—".to_owned(), |r| format!("{r:.2}"));
        let cpu_ratio = ratio(kind, RunResult::cpu_micros_per_record)
            .map_or("—".to_owned(), |r| format!("{r:.2}"));
        println!(
            "| {} | {input} | {:.1} k | {:.2} | {:.2} | {:.2} | {:.2} | {throughput_ratio} | {cpu_ratio} |",
            kind.label(),
            stat(kind, RunResult::records_per_second) / 1e3,
            stat(kind, RunResult::cpu_micros_per_record),
            stat(kind, RunResult::process_cores),
            stat(kind, RunResult::broker_cpu_micros_per_record),
            stat(kind, RunResult::broker_cores),
        );
    }
}

/// `lscpu`'s "Model name", or "unknown".
fn cpu_model() -> String {
    std::process::Command::new("lscpu")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .find_map(|line| {
                    line.strip_prefix("Model name:")
                        .map(|m| m.trim().to_owned())
                })
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `tansu --version`'s number, or "?".
fn tansu_version() -> String {
    std::process::Command::new(support::tansu_bin())
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".to_owned())
}
