//! Reads the lake for the policy commands: lists `edges/` or `flows/` objects, prunes them
//! by their Hive partition (`cluster_id=…/date=…/hour=…`) against the cluster filter and
//! the time window, and streams each object's row groups with only the needed columns,
//! folding rows into [`Edges`] or an [`Inventory`] as they come.
//!
//! Invariant: memory is bounded by the folded maps (distinct edges, workloads and peers) and
//! one row group of one object; no dataset is ever held whole. Local lakes are read from
//! the file (row group by row group); remote objects are downloaded one at a time (the sink
//! writes objects of tens of MiB).
//!
//! The lake is opened with the sink's own URL handling ([`flowlake_sink::Lake`]), so
//! `--lake` takes what `flowlake-sink --lake-url` takes, plus a bare local path.

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use bytes::Bytes;
use flowlake_sink::{Lake, SinkSettings};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::PolicyError;
use super::model::{EdgeKey, Edges, EndpointColumns, Evidence, Inventory, Labels, Peer};

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Where the lake is and how to reach it (the sink's options).
#[derive(Debug, Clone, clap::Args)]
pub struct LakeArgs {
    /// The lake: a local directory, `file:///dir`, `s3://bucket/prefix`, `gs://…`, `az://…`.
    #[arg(long)]
    pub lake: String,
    /// S3-compatible endpoint (MinIO, Ceph, R2), e.g. `http://minio:9000`.
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// object_store option `KEY=VALUE` (repeatable), as the sink's `storage_options`.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    pub storage_options: Vec<String>,
    /// Only this cluster (repeatable; default every cluster).
    #[arg(long = "cluster")]
    pub clusters: Vec<String>,
    /// How far back from now to read (ignored with --from).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub since: std::time::Duration,
    /// Start of the window (RFC 3339), instead of --since.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the window (RFC 3339; default now).
    #[arg(long)]
    pub to: Option<String>,
}

/// The time window, µs since the epoch, `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start.
    pub from: i64,
    /// Exclusive end.
    pub to: i64,
}

impl Window {
    fn contains(&self, micros: i64) -> bool {
        (self.from..self.to).contains(&micros)
    }

    /// True when the hour starting at `hour_start` overlaps the window.
    fn overlaps_hour(&self, hour_start: i64) -> bool {
        hour_start < self.to && hour_start.saturating_add(MICROS_PER_HOUR) > self.from
    }
}

fn parse_time(flag: &str, text: &str) -> Result<i64, PolicyError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| PolicyError::Usage(format!("{flag} {text:?} is not RFC 3339: {e}")))
}

impl LakeArgs {
    /// The window the flags describe.
    pub fn window(&self) -> Result<Window, PolicyError> {
        let now = chrono::Utc::now().timestamp_micros();
        let to = match &self.to {
            Some(t) => parse_time("--to", t)?,
            // One second of slack: a flow written as the command starts is still in.
            None => now + 1_000_000,
        };
        let from = match &self.from {
            Some(f) => parse_time("--from", f)?,
            None => {
                let since = i64::try_from(self.since.as_micros()).unwrap_or(i64::MAX);
                now.saturating_sub(since)
            }
        };
        if from >= to {
            return Err(PolicyError::Usage(
                "the window is empty: --from must be before --to".into(),
            ));
        }
        Ok(Window { from, to })
    }
}

/// An opened lake and the filters of one command.
pub struct LakeReader {
    lake: Lake,
    /// The directory of a local lake (read straight from files).
    local: Option<PathBuf>,
    clusters: Vec<String>,
    window: Window,
}

impl LakeReader {
    /// Opens the lake the flags name.
    pub fn open(args: &LakeArgs) -> Result<LakeReader, PolicyError> {
        let window = args.window()?;
        let (url, local) = if args.lake.contains("://") {
            let local = args
                .lake
                .strip_prefix("file://")
                .map(|p| PathBuf::from(p.strip_prefix("localhost").unwrap_or(p)));
            (args.lake.clone(), local)
        } else {
            let dir = std::fs::canonicalize(&args.lake)
                .map_err(|e| PolicyError::Usage(format!("--lake {}: {e}", args.lake)))?;
            (format!("file://{}", dir.display()), Some(dir))
        };
        if let Some(dir) = &local
            && !dir.is_dir()
        {
            return Err(PolicyError::Usage(format!(
                "--lake {}: no such directory",
                dir.display()
            )));
        }
        let mut settings = SinkSettings::new(url);
        settings.s3_endpoint = args.s3_endpoint.clone();
        for option in &args.storage_options {
            let Some((key, value)) = option.split_once('=') else {
                return Err(PolicyError::Usage(format!(
                    "--storage-option {option:?} is not KEY=VALUE"
                )));
            };
            settings
                .storage_options
                .insert(key.to_owned(), value.to_owned());
        }
        let lake = Lake::open(&settings).map_err(|e| PolicyError::Lake(e.to_string()))?;
        Ok(LakeReader {
            lake,
            local,
            clusters: args.clusters.clone(),
            window,
        })
    }

    /// The window being read.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Objects of `dataset` whose partition may hold rows of the window and clusters.
    async fn objects(&self, dataset: &str) -> Result<Vec<Path>, PolicyError> {
        let prefix = Path::from_iter(self.lake.root().parts().chain(Path::from(dataset).parts()));
        let listed: Vec<_> = self
            .lake
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| PolicyError::Lake(format!("listing {prefix}: {e}")))?;
        let mut paths: Vec<Path> = listed
            .into_iter()
            .map(|meta| meta.location)
            .filter(|p| p.as_ref().ends_with(".parquet") && self.keeps(p))
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// Partition pruning: false when the path's `cluster_id=` or `date=`/`hour=` rule it out.
    fn keeps(&self, path: &Path) -> bool {
        let (mut date, mut hour) = (None, None);
        for part in path.parts() {
            let part = part.as_ref();
            if let Some(value) = part.strip_prefix("cluster_id=") {
                let cluster = unescape(value);
                if !self.clusters.is_empty() && !self.clusters.contains(&cluster) {
                    return false;
                }
            } else if let Some(value) = part.strip_prefix("date=") {
                date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok();
            } else if let Some(value) = part.strip_prefix("hour=") {
                hour = value.parse::<u32>().ok();
            }
        }
        match (date, hour) {
            (Some(d), Some(h)) => d
                .and_hms_opt(h, 0, 0)
                .map(|t| self.window.overlaps_hour(t.and_utc().timestamp_micros()))
                .unwrap_or(true),
            // Not in the sink's layout: read it and let the row filter decide.
            _ => true,
        }
    }

    /// Streams the batches of one object, projected to `columns` (those it has).
    async fn scan(
        &self,
        path: &Path,
        columns: &[&str],
        mut each: impl FnMut(&RecordBatch) -> Result<(), PolicyError>,
    ) -> Result<(), PolicyError> {
        let shown = |e: &dyn std::fmt::Display| PolicyError::Lake(format!("reading {path}: {e}"));
        if let Some(dir) = &self.local {
            let file = File::open(dir.join(path.as_ref())).map_err(|e| shown(&e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| shown(&e))?;
            let mask = projection(builder.parquet_schema(), builder.schema(), columns);
            let reader = builder
                .with_projection(mask)
                .build()
                .map_err(|e| shown(&e))?;
            for batch in reader {
                each(&batch.map_err(|e| shown(&e))?)?;
            }
        } else {
            let bytes: Bytes = self
                .lake
                .store()
                .get(path)
                .await
                .map_err(|e| shown(&e))?
                .bytes()
                .await
                .map_err(|e| shown(&e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| shown(&e))?;
            let mask = projection(builder.parquet_schema(), builder.schema(), columns);
            let reader = builder
                .with_projection(mask)
                .build()
                .map_err(|e| shown(&e))?;
            for batch in reader {
                each(&batch.map_err(|e| shown(&e))?)?;
            }
        }
        Ok(())
    }

    /// Every edge of the window, summed by key.
    pub async fn read_edges(&self) -> Result<(Edges, u64), PolicyError> {
        let mut edges = Edges::new();
        let mut rows = 0u64;
        let window = self.window;
        for path in self.objects("edges").await? {
            self.scan(&path, EDGE_COLUMNS, |batch| {
                let c = Cols(batch);
                for row in 0..batch.num_rows() {
                    let start = c.micros("window_start", row).unwrap_or(0);
                    if !window.contains(start) {
                        continue;
                    }
                    let cluster = c.text("cluster_id", row).unwrap_or_default();
                    if !self.clusters.is_empty() && !self.clusters.iter().any(|k| k == cluster) {
                        continue;
                    }
                    rows += 1;
                    let key = EdgeKey {
                        cluster: cluster.to_owned(),
                        src: Peer {
                            kind: c.text("src_kind", row).unwrap_or("unknown").to_owned(),
                            namespace: c.text("src_namespace", row).map(str::to_owned),
                            name: c.text("src_workload", row).map(str::to_owned),
                        },
                        dst: Peer {
                            kind: c.text("dst_kind", row).unwrap_or("unknown").to_owned(),
                            namespace: c.text("dst_namespace", row).map(str::to_owned),
                            name: c.text("dst_workload", row).map(str::to_owned),
                        },
                        port: c.int("dst_port", row),
                        protocol: c.int("protocol", row),
                        action: c.text("action", row).unwrap_or("unknown").to_owned(),
                    };
                    let evidence = Evidence {
                        flows: c.long("flows", row).unwrap_or(0),
                        bytes: c
                            .long("bytes_out", row)
                            .unwrap_or(0)
                            .saturating_add(c.long("bytes_in", row).unwrap_or(0)),
                        first_seen: c.micros("first_seen", row).unwrap_or(start),
                        last_seen: c.micros("last_seen", row).unwrap_or(start),
                        policy: c.text("policy", row).map(str::to_owned),
                    };
                    match edges.get_mut(&key) {
                        Some(e) => e.absorb(&evidence),
                        None => {
                            edges.insert(key, evidence);
                        }
                    }
                }
                Ok(())
            })
            .await?;
        }
        Ok((edges, rows))
    }

    /// Labels and addresses from the `flows/` rows of the window.
    pub async fn read_inventory(&self) -> Result<Inventory, PolicyError> {
        let mut inventory = Inventory::default();
        let window = self.window;
        for path in self.objects("flows").await? {
            self.scan(&path, FLOW_COLUMNS, |batch| {
                let c = Cols(batch);
                for row in 0..batch.num_rows() {
                    if !window.contains(c.micros("start_time", row).unwrap_or(0)) {
                        continue;
                    }
                    let cluster = c.text("cluster_id", row).unwrap_or_default();
                    if !self.clusters.is_empty() && !self.clusters.iter().any(|k| k == cluster) {
                        continue;
                    }
                    inventory.rows += 1;
                    let src = Peer::from_endpoint(&c.endpoint("src", row));
                    let dst = Peer::from_endpoint(&c.endpoint("dst", row));
                    for (peer, side) in [(&src, "src_labels"), (&dst, "dst_labels")] {
                        if peer.kind == "pod" {
                            inventory.add_labels(cluster, peer, c.labels(side, row));
                        }
                    }
                    let ip = |name| c.text(name, row).and_then(|t| t.parse::<IpAddr>().ok());
                    inventory.add_addresses(cluster, &src, &dst, ip("src_ip"), ip("dst_ip"));
                }
                Ok(())
            })
            .await?;
        }
        Ok(inventory)
    }
}

const EDGE_COLUMNS: &[&str] = &[
    "cluster_id",
    "window_start",
    "src_kind",
    "src_namespace",
    "src_workload",
    "dst_kind",
    "dst_namespace",
    "dst_workload",
    "dst_port",
    "protocol",
    "action",
    "policy",
    "flows",
    "bytes_out",
    "bytes_in",
    "first_seen",
    "last_seen",
];

/// The `flows/` columns the inventory reads.
const FLOW_COLUMNS: &[&str] = &[
    "cluster_id",
    "start_time",
    "src_ip",
    "dst_ip",
    "src_kind",
    "src_namespace",
    "src_name",
    "src_workload_name",
    "src_aggregated_name",
    "src_node",
    "src_service_namespace",
    "src_service_name",
    "src_network_set",
    "src_dns_names",
    "src_labels",
    "dst_kind",
    "dst_namespace",
    "dst_name",
    "dst_workload_name",
    "dst_aggregated_name",
    "dst_node",
    "dst_service_namespace",
    "dst_service_name",
    "dst_network_set",
    "dst_dns_names",
    "dst_labels",
];

/// The projection of `columns` that the file has (older files may lack newer columns).
fn projection(
    parquet: &parquet::schema::types::SchemaDescriptor,
    arrow: &arrow::datatypes::SchemaRef,
    columns: &[&str],
) -> ProjectionMask {
    let roots = arrow
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.contains(&f.name().as_str()))
        .map(|(i, _)| i);
    ProjectionMask::roots(parquet, roots)
}

/// `%XX` escapes of a Hive partition value decoded (the sink's `escape_partition_value`).
fn unescape(value: &str) -> String {
    if value == "__HIVE_DEFAULT_PARTITION__" {
        return String::new();
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| value.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Typed access to a batch's columns by name; a missing column or a null reads as `None`.
struct Cols<'a>(&'a RecordBatch);

impl<'a> Cols<'a> {
    fn text(&self, name: &str, row: usize) -> Option<&'a str> {
        let column = self.0.column_by_name(name)?.as_string_opt::<i32>()?;
        column.is_valid(row).then(|| column.value(row))
    }

    fn int(&self, name: &str, row: usize) -> Option<i32> {
        let column = self
            .0
            .column_by_name(name)?
            .as_primitive_opt::<Int32Type>()?;
        column.is_valid(row).then(|| column.value(row))
    }

    fn long(&self, name: &str, row: usize) -> Option<i64> {
        let column = self
            .0
            .column_by_name(name)?
            .as_primitive_opt::<Int64Type>()?;
        column.is_valid(row).then(|| column.value(row))
    }

    fn micros(&self, name: &str, row: usize) -> Option<i64> {
        let column = self
            .0
            .column_by_name(name)?
            .as_primitive_opt::<TimestampMicrosecondType>()?;
        column.is_valid(row).then(|| column.value(row))
    }

    fn first_text(&self, name: &str, row: usize) -> Option<&'a str> {
        let list = self.0.column_by_name(name)?.as_list_opt::<i32>()?;
        if list.is_null(row) {
            return None;
        }
        let start = usize::try_from(list.value_offsets()[row]).ok()?;
        let end = usize::try_from(list.value_offsets()[row + 1]).ok()?;
        let values = list.values().as_string_opt::<i32>()?;
        (start < end && values.is_valid(start)).then(|| values.value(start))
    }

    fn labels(&self, name: &str, row: usize) -> Labels {
        let Some(map) = self
            .0
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<MapArray>())
        else {
            return Labels::new();
        };
        if map.is_null(row) {
            return Labels::new();
        }
        let offsets = map.value_offsets();
        let (Ok(start), Ok(end)) = (
            usize::try_from(offsets[row]),
            usize::try_from(offsets[row + 1]),
        ) else {
            return Labels::new();
        };
        let (Some(keys), Some(values)) = (
            map.keys().as_string_opt::<i32>(),
            map.values().as_string_opt::<i32>(),
        ) else {
            return Labels::new();
        };
        (start..end)
            .filter(|&i| keys.is_valid(i))
            .map(|i| {
                let value = if values.is_valid(i) {
                    values.value(i)
                } else {
                    ""
                };
                (keys.value(i).to_owned(), value.to_owned())
            })
            .collect()
    }

    fn endpoint(&self, side: &str, row: usize) -> EndpointColumns<'a> {
        let get = |field: &str| self.text(&format!("{side}_{field}"), row);
        EndpointColumns {
            kind: get("kind").unwrap_or("unknown"),
            namespace: get("namespace"),
            name: get("name"),
            workload_name: get("workload_name"),
            aggregated_name: get("aggregated_name"),
            node: get("node"),
            service_namespace: get("service_namespace"),
            service_name: get("service_name"),
            network_set: get("network_set"),
            first_dns_name: self.first_text(&format!("{side}_dns_names"), row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_unescape() {
        assert_eq!(unescape("prod-eu-1"), "prod-eu-1");
        assert_eq!(unescape("a%2Fb%3Dc"), "a/b=c");
        assert_eq!(unescape("__HIVE_DEFAULT_PARTITION__"), "");
        assert_eq!(unescape("100%"), "100%");
    }

    #[test]
    fn windows_come_from_since_or_from_and_to() -> Result<(), PolicyError> {
        let args = |from: Option<&str>, to: Option<&str>| LakeArgs {
            lake: "/tmp".into(),
            s3_endpoint: None,
            storage_options: vec![],
            clusters: vec![],
            since: std::time::Duration::from_secs(3600),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        };
        let w = args(
            Some("2026-11-02T00:00:00Z"),
            Some("2026-11-02T01:00:00+01:00"),
        )
        .window();
        assert!(
            matches!(w, Err(PolicyError::Usage(_))),
            "an empty window is refused"
        );
        let w = args(Some("2026-11-02T00:00:00Z"), Some("2026-11-03T00:00:00Z")).window()?;
        assert_eq!(w.to - w.from, 24 * MICROS_PER_HOUR);
        let w = args(None, None).window()?;
        assert_eq!(
            w.to - w.from,
            MICROS_PER_HOUR + 1_000_000,
            "--since 1h, plus 1 s of slack"
        );
        assert!(args(Some("yesterday"), None).window().is_err());
        Ok(())
    }

    #[test]
    fn hours_outside_the_window_are_pruned() {
        let w = Window {
            from: 10 * MICROS_PER_HOUR + 30 * 60_000_000,
            to: 12 * MICROS_PER_HOUR,
        };
        assert!(!w.overlaps_hour(9 * MICROS_PER_HOUR));
        assert!(w.overlaps_hour(10 * MICROS_PER_HOUR));
        assert!(w.overlaps_hour(11 * MICROS_PER_HOUR));
        assert!(!w.overlaps_hour(12 * MICROS_PER_HOUR));
    }
}
