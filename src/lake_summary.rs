//! Reads a local lake back (the same Parquet files any SQL engine would read) and prints
//! what the demo produced: rows per dataset, denied flows, top external destinations.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Every `*.parquet` file below `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn read_all(files: &[PathBuf]) -> anyhow::Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for path in files {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .with_context(|| format!("reading {}", path.display()))?;
        for batch in reader {
            batches.push(batch.with_context(|| format!("decoding {}", path.display()))?);
        }
    }
    Ok(batches)
}

fn text(batch: &RecordBatch, column: &str, row: usize) -> String {
    batch
        .column_by_name(column)
        .and_then(|c| {
            c.as_string_opt::<i32>()
                .filter(|a| a.is_valid(row))
                .map(|a| a.value(row).to_owned())
        })
        .unwrap_or_default()
}

fn long(batch: &RecordBatch, column: &str, row: usize) -> i64 {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_primitive_opt::<Int64Type>().map(|a| a.value(row)))
        .unwrap_or(0)
}

fn int(batch: &RecordBatch, column: &str, row: usize) -> Option<i32> {
    batch.column_by_name(column).and_then(|c| {
        c.as_primitive_opt::<Int32Type>()
            .filter(|a| a.is_valid(row))
            .map(|a| a.value(row))
    })
}

fn top<K: Ord + Clone>(map: &BTreeMap<K, (i64, i64)>, n: usize) -> Vec<(K, (i64, i64))> {
    let mut rows: Vec<(K, (i64, i64))> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(n);
    rows
}

/// Prints the summary of the lake under `data_dir`.
pub fn print(data_dir: &Path, raw_records: u64, dead_lettered: u64) -> anyhow::Result<()> {
    let flow_files = parquet_files(&data_dir.join("flows"));
    let edge_files = parquet_files(&data_dir.join("edges"));
    let flow_rows: usize = read_all(&flow_files)?
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    let edges = read_all(&edge_files)?;
    let edge_rows: usize = edges.iter().map(RecordBatch::num_rows).sum();

    let (mut folded, mut denied_total) = (0i64, 0i64);
    let mut denied: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut external: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for batch in &edges {
        for row in 0..batch.num_rows() {
            let flows = long(batch, "flows", row);
            folded += flows;
            let port = int(batch, "dst_port", row)
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let src = format!(
                "{}/{}",
                text(batch, "src_namespace", row),
                text(batch, "src_workload", row)
            );
            let dst_kind = text(batch, "dst_kind", row);
            let dst = text(batch, "dst_workload", row);
            if text(batch, "action", row) == "deny" {
                denied_total += flows;
                let policy = text(batch, "policy", row);
                let entry = denied
                    .entry(format!("{src} -> {dst}{port}  (policy {policy})"))
                    .or_default();
                entry.0 += flows;
            } else if matches!(
                dst_kind.as_str(),
                "external_public" | "external_private" | "network_set"
            ) {
                let entry = external
                    .entry(format!("{dst}{port}  from {src}"))
                    .or_default();
                entry.0 += flows;
                entry.1 += long(batch, "bytes_out", row);
            }
        }
    }

    println!();
    println!("== flowlake demo summary ==");
    println!(
        "raw records in:       {raw_records} ({dead_lettered} malformed, dead-lettered to flows.dlq)"
    );
    println!(
        "flows in the lake:    {flow_rows} rows in {} files under {}",
        flow_files.len(),
        data_dir.join("flows").display()
    );
    println!(
        "flow-graph edges:     {edge_rows} rows in {} files under {} (covering {folded} flows)",
        edge_files.len(),
        data_dir.join("edges").display()
    );
    println!("denied flows:         {denied_total}");
    for (what, (flows, _)) in top(&denied, 5) {
        println!("  {flows:>6}  {what}");
    }
    println!("top external destinations (allowed egress):");
    for (what, (flows, bytes)) in top(&external, 5) {
        // Hubble reports packets, not bytes: show bytes only when the agent counted them.
        if bytes > 0 {
            println!("  {flows:>6} flows {bytes:>12} bytes  {what}");
        } else {
            println!("  {flows:>6} flows  {what}");
        }
    }
    println!();
    println!("try it with DuckDB:");
    println!(
        "  duckdb -c \"SELECT src_workload, dst_workload, dst_port, policy, sum(flows) AS flows FROM read_parquet('{}/edges/**/*.parquet', hive_partitioning = true) WHERE action = 'deny' GROUP BY ALL ORDER BY flows DESC\"",
        data_dir.display()
    );
    println!();
    println!("next: least-privilege network policy for a namespace, from what it really did:");
    println!(
        "  flowlake policy recommend --lake {} --namespace shop",
        data_dir.display()
    );
    if flow_rows == 0 || edge_rows == 0 {
        anyhow::bail!(
            "the lake under {} is empty: the pipeline wrote nothing",
            data_dir.display()
        );
    }
    Ok(())
}
