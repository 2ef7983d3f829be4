//! The two datasets and their Arrow columns.
//!
//! Each dataset is flat for SQL users: one column per record field, named exactly as the
//! field is in the Avro records (nested records become `prefix_field`), so `WHERE dst_ip =
//! '10.0.0.5' AND action = 'deny'` works without struct paths. Type rules, the same for
//! both datasets: timestamps are `Timestamp(Microsecond, "UTC")`; IPs are text (an
//! IPv4-mapped IPv6 address is written as IPv4, so one host has one spelling); enums are the
//! text of their serde name (`allow`, `external_public`); labels are `Map<Utf8, Utf8>`;
//! lists of names are `List<Utf8>`; ports, protocol and revision are `Int32`; counters are
//! `Int64`. A field that is optional in the record is a nullable column.
//!
//! Batches are built column by column from a slice of records: each column is one pass over
//! the slice filling one array, with no per-row schema lookups. The schema of a dataset is
//! the same code run over zero rows, so the column list is written once and the schema
//! cannot drift from the arrays.

mod edges;
mod flows;

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, ListArray, MapArray, StringArray, StringBuilder,
    StructArray, TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use flowlake_schemas::{
    Action, AvroRecord, EndpointKind, EnrichmentStatus, Ip, Labels, PolicyHit, Reporter, Timestamp,
};

/// The time zone of every timestamp column.
const UTC: &str = "UTC";

/// One Parquet dataset of the lake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataset {
    /// `flows/`: one row per enriched flow record.
    Flows,
    /// `edges/`: one row per flow-graph edge and window.
    Edges,
}

impl Dataset {
    /// Both datasets.
    pub const ALL: [Dataset; 2] = [Dataset::Flows, Dataset::Edges];

    /// Directory name under the lake root, and the `dataset` metric label.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Flows => "flows",
            Dataset::Edges => "edges",
        }
    }
}

impl std::fmt::Display for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A record type the sink writes: each one is a dataset with its own columns.
pub trait SinkRecord: AvroRecord + Send + Sync + 'static {
    /// The dataset the record belongs to.
    const DATASET: Dataset;

    /// Cluster the record belongs to (the `cluster_id=` partition).
    fn cluster_id(&self) -> &str;

    /// The event time that picks the `date=`/`hour=` partition.
    fn partition_time(&self) -> Timestamp;

    /// The dataset's Arrow schema.
    fn arrow_schema() -> SchemaRef;

    /// The records as one batch, built column by column.
    fn to_record_batch(records: &[Self]) -> Result<RecordBatch, ArrowError>;
}

/// Builds the dataset schema by running its column code over zero rows.
fn schema_of(build: impl FnOnce(&mut Columns) -> Result<(), ArrowError>) -> SchemaRef {
    let mut columns = Columns::with_capacity(0);
    match build(&mut columns) {
        Ok(()) => Arc::new(Schema::new(columns.fields)),
        // Invariant: column code over zero rows only assembles empty arrays whose types it
        // declares itself; the unit tests build every schema.
        Err(e) => panic!("dataset columns do not build over zero rows: {e}"),
    }
}

/// Columns being assembled for one batch: fields and arrays in schema order.
struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Columns {
    fn with_capacity(columns: usize) -> Self {
        Columns {
            fields: Vec::with_capacity(columns),
            arrays: Vec::with_capacity(columns),
        }
    }

    fn push(&mut self, name: &str, nullable: bool, array: ArrayRef) {
        self.fields
            .push(Field::new(name, array.data_type().clone(), nullable));
        self.arrays.push(array);
    }

    /// The batch, checked against the dataset schema (types, nullability, row counts).
    fn finish(self, schema: SchemaRef) -> Result<RecordBatch, ArrowError> {
        RecordBatch::try_new(schema, self.arrays)
    }

    /// A required text column.
    fn utf8<'a, R>(&mut self, name: &str, rows: &'a [R], get: impl Fn(&'a R) -> &'a str) {
        let array = StringArray::from_iter_values(rows.iter().map(get));
        self.push(name, false, Arc::new(array));
    }

    /// An optional text column.
    fn opt_utf8<'a, R>(
        &mut self,
        name: &str,
        rows: &'a [R],
        get: impl Fn(&'a R) -> Option<&'a str>,
    ) {
        let array: StringArray = rows.iter().map(get).collect();
        self.push(name, true, Arc::new(array));
    }

    /// An enum as the text of its serde name.
    fn enumeration<'a, R>(
        &mut self,
        name: &str,
        rows: &'a [R],
        get: impl Fn(&'a R) -> &'static str,
    ) {
        let array = StringArray::from_iter_values(rows.iter().map(get));
        self.push(name, false, Arc::new(array));
    }

    /// An optional IP address as text.
    fn ip<'a, R>(&mut self, name: &str, rows: &'a [R], get: impl Fn(&'a R) -> Option<Ip>) {
        let mut builder = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
        for row in rows {
            match get(row) {
                Some(ip) => append_ip(&mut builder, ip),
                None => builder.append_null(),
            }
        }
        self.push(name, true, Arc::new(builder.finish()));
    }

    /// A required UTC timestamp.
    fn timestamp<'a, R>(&mut self, name: &str, rows: &'a [R], get: impl Fn(&'a R) -> Timestamp) {
        let array =
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| get(r).as_micros()))
                .with_timezone(UTC);
        self.push(name, false, Arc::new(array));
    }

    /// A required 32-bit integer.
    fn int32<'a, R>(&mut self, name: &str, rows: &'a [R], get: impl Fn(&'a R) -> i32) {
        let array = Int32Array::from_iter_values(rows.iter().map(get));
        self.push(name, false, Arc::new(array));
    }

    /// An optional 32-bit integer.
    fn opt_int32<'a, R>(&mut self, name: &str, rows: &'a [R], get: impl Fn(&'a R) -> Option<i32>) {
        let array: Int32Array = rows.iter().map(get).collect();
        self.push(name, true, Arc::new(array));
    }

    /// A required 64-bit integer (counters).
    fn int64<'a, R>(&mut self, name: &str, rows: &'a [R], get: impl Fn(&'a R) -> i64) {
        let array = Int64Array::from_iter_values(rows.iter().map(get));
        self.push(name, false, Arc::new(array));
    }

    /// An optional 64-bit integer.
    fn opt_int64<'a, R>(&mut self, name: &str, rows: &'a [R], get: impl Fn(&'a R) -> Option<i64>) {
        let array: Int64Array = rows.iter().map(get).collect();
        self.push(name, true, Arc::new(array));
    }

    /// A list of names; `None` is a null list.
    fn utf8_list<'a, R>(
        &mut self,
        name: &str,
        nullable: bool,
        rows: &'a [R],
        get: impl Fn(&'a R) -> Option<&'a [String]>,
    ) -> Result<(), ArrowError> {
        let mut values = StringBuilder::new();
        let array = list_of(rows, get, |items| {
            for item in items {
                values.append_value(item);
            }
        })?;
        let array = array.finish(Arc::new(values.finish()), DataType::Utf8)?;
        self.push(name, nullable, Arc::new(array));
        Ok(())
    }

    /// A list of IP addresses as text; `None` is a null list.
    fn ip_list<'a, R>(
        &mut self,
        name: &str,
        rows: &'a [R],
        get: impl Fn(&'a R) -> Option<&'a [Ip]>,
    ) -> Result<(), ArrowError> {
        let mut values = StringBuilder::new();
        let array = list_of(rows, get, |items| {
            for &ip in items {
                append_ip(&mut values, ip);
            }
        })?;
        let array = array.finish(Arc::new(values.finish()), DataType::Utf8)?;
        self.push(name, true, Arc::new(array));
        Ok(())
    }

    /// Labels as `Map<Utf8, Utf8>` (keys in sorted order, never null).
    fn labels<'a, R>(
        &mut self,
        name: &str,
        rows: &'a [R],
        get: impl Fn(&'a R) -> &'a Labels,
    ) -> Result<(), ArrowError> {
        let mut keys = StringBuilder::new();
        let mut values = StringBuilder::new();
        let mut offsets = Offsets::with_capacity(rows.len());
        for row in rows {
            let labels = get(row);
            for (key, value) in labels {
                keys.append_value(key);
                values.append_value(value);
            }
            offsets.push(labels.len())?;
        }
        let entry_fields = Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ]);
        let entries = StructArray::try_new(
            entry_fields.clone(),
            vec![Arc::new(keys.finish()), Arc::new(values.finish())],
            None,
        )?;
        let entries_field = Arc::new(Field::new_struct("entries", entry_fields, false));
        let array = MapArray::try_new(entries_field, offsets.finish(), entries, None, false)?;
        self.push(name, false, Arc::new(array));
        Ok(())
    }

    /// Policy hits as `List<Struct{kind, tier, namespace, name, action, rule_index}>`.
    fn policies<'a, R>(
        &mut self,
        name: &str,
        rows: &'a [R],
        get: impl Fn(&'a R) -> &'a [PolicyHit],
    ) -> Result<(), ArrowError> {
        let hits: Vec<&PolicyHit> = rows.iter().flat_map(&get).collect();
        let mut offsets = Offsets::with_capacity(rows.len());
        for row in rows {
            offsets.push(get(row).len())?;
        }
        let hit_fields = Fields::from(vec![
            Field::new("kind", DataType::Utf8, false),
            Field::new("tier", DataType::Utf8, true),
            Field::new("namespace", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, false),
            Field::new("action", DataType::Utf8, false),
            Field::new("rule_index", DataType::Int32, true),
        ]);
        let children: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(hits.iter().map(|h| &h.kind))),
            Arc::new(
                hits.iter()
                    .map(|h| h.tier.as_deref())
                    .collect::<StringArray>(),
            ),
            Arc::new(
                hits.iter()
                    .map(|h| h.namespace.as_deref())
                    .collect::<StringArray>(),
            ),
            Arc::new(StringArray::from_iter_values(hits.iter().map(|h| &h.name))),
            Arc::new(StringArray::from_iter_values(
                hits.iter().map(|h| action_name(h.action)),
            )),
            Arc::new(hits.iter().map(|h| h.rule_index).collect::<Int32Array>()),
        ];
        let structs = StructArray::try_new(hit_fields.clone(), children, None)?;
        let item: FieldRef = Arc::new(Field::new_list_field(DataType::Struct(hit_fields), false));
        let array = ListArray::try_new(item, offsets.finish(), Arc::new(structs), None)?;
        self.push(name, false, Arc::new(array));
        Ok(())
    }
}

/// Appends `ip` as canonical text without an intermediate allocation.
fn append_ip(builder: &mut StringBuilder, ip: Ip) {
    // Writing into a StringBuilder cannot fail: its `write_str` only extends a buffer.
    let _ = write!(builder, "{}", ip.canonical());
    builder.append_value("");
}

/// List offsets in the i32 range Arrow's `List` and `Map` use.
struct Offsets {
    offsets: Vec<i32>,
}

impl Offsets {
    fn with_capacity(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Offsets { offsets }
    }

    fn push(&mut self, len: usize) -> Result<(), ArrowError> {
        let last = self.offsets.last().copied().unwrap_or(0);
        let next = i32::try_from(len)
            .ok()
            .and_then(|len| last.checked_add(len))
            .ok_or_else(|| {
                ArrowError::ComputeError("list column exceeds 2^31 values".to_owned())
            })?;
        self.offsets.push(next);
        Ok(())
    }

    fn finish(self) -> OffsetBuffer<i32> {
        // Invariant: starts at 0 and only grows by non-negative lengths (see `push`).
        OffsetBuffer::new(ScalarBuffer::from(self.offsets))
    }
}

/// Offsets and nulls of a list column whose values the caller appends.
struct PendingList {
    offsets: Offsets,
    nulls: Option<NullBuffer>,
}

impl PendingList {
    fn finish(self, values: ArrayRef, item_type: DataType) -> Result<ListArray, ArrowError> {
        let item: FieldRef = Arc::new(Field::new_list_field(item_type, false));
        ListArray::try_new(item, self.offsets.finish(), values, self.nulls)
    }
}

/// Walks `rows`, handing each present list to `append` and recording offsets and nulls.
fn list_of<'a, R, T: 'a>(
    rows: &'a [R],
    get: impl Fn(&'a R) -> Option<&'a [T]>,
    mut append: impl FnMut(&'a [T]),
) -> Result<PendingList, ArrowError> {
    let mut offsets = Offsets::with_capacity(rows.len());
    let mut valid = Vec::with_capacity(rows.len());
    for row in rows {
        let items = get(row);
        offsets.push(items.map_or(0, <[T]>::len))?;
        valid.push(items.is_some());
        if let Some(items) = items {
            append(items);
        }
    }
    let nulls = NullBuffer::from(valid);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    Ok(PendingList { offsets, nulls })
}

/// Serde name of a [`Reporter`] (checked against serde in the tests).
fn reporter_name(reporter: Reporter) -> &'static str {
    match reporter {
        Reporter::Unknown => "unknown",
        Reporter::Src => "src",
        Reporter::Dst => "dst",
    }
}

/// Serde name of an [`Action`].
fn action_name(action: Action) -> &'static str {
    match action {
        Action::Unknown => "unknown",
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Pass => "pass",
    }
}

/// Serde name of an [`EndpointKind`].
fn endpoint_kind_name(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::Unknown => "unknown",
        EndpointKind::Pod => "pod",
        EndpointKind::Node => "node",
        EndpointKind::Service => "service",
        EndpointKind::Host => "host",
        EndpointKind::NetworkSet => "network_set",
        EndpointKind::ExternalPublic => "external_public",
        EndpointKind::ExternalPrivate => "external_private",
    }
}

/// Serde name of an [`EnrichmentStatus`].
fn status_name(status: EnrichmentStatus) -> &'static str {
    match status {
        EnrichmentStatus::Miss => "miss",
        EnrichmentStatus::Hit => "hit",
        EnrichmentStatus::Stale => "stale",
        EnrichmentStatus::Hint => "hint",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// `records` through a Parquet file and parquet's own Arrow reader, as one batch.
    pub(crate) fn read_back<R: SinkRecord + Clone>(
        records: &[R],
    ) -> Result<RecordBatch, Box<dyn std::error::Error>> {
        let mut rows = crate::writer::Rows::default();
        for record in records {
            rows.push(record.clone(), 0);
        }
        let properties = crate::writer::ParquetOptions::default().properties()?;
        let bytes = crate::writer::encode(&rows, properties, vec![])?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        Ok(arrow::compute::concat_batches(
            &R::arrow_schema(),
            &batches,
        )?)
    }

    /// The enum text in the lake is the serde name users see in JSON.
    #[test]
    fn enum_names_are_serde_names() -> Result<(), serde_json::Error> {
        fn serde_name<T: serde::Serialize>(value: T) -> Result<String, serde_json::Error> {
            Ok(serde_json::to_value(value)?
                .as_str()
                .unwrap_or_default()
                .to_owned())
        }
        for r in [Reporter::Unknown, Reporter::Src, Reporter::Dst] {
            assert_eq!(reporter_name(r), serde_name(r)?);
        }
        for a in [Action::Unknown, Action::Allow, Action::Deny, Action::Pass] {
            assert_eq!(action_name(a), serde_name(a)?);
        }
        use EndpointKind as K;
        for k in [
            K::Unknown,
            K::Pod,
            K::Node,
            K::Service,
            K::Host,
            K::NetworkSet,
            K::ExternalPublic,
            K::ExternalPrivate,
        ] {
            assert_eq!(endpoint_kind_name(k), serde_name(k)?);
        }
        use EnrichmentStatus as S;
        for s in [S::Miss, S::Hit, S::Stale, S::Hint] {
            assert_eq!(status_name(s), serde_name(s)?);
        }
        Ok(())
    }

    #[test]
    fn mapped_ipv6_is_written_as_ipv4() -> Result<(), Box<dyn std::error::Error>> {
        let rows: Vec<Option<Ip>> = vec![
            Some("::ffff:10.0.0.5".parse()?),
            Some("fd00::1".parse()?),
            None,
        ];
        let mut columns = Columns::with_capacity(1);
        columns.ip("ip", &rows, |r| *r);
        let array = columns.arrays[0]
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("not a string array")?;
        assert_eq!(array.value(0), "10.0.0.5");
        assert_eq!(array.value(1), "fd00::1");
        assert!(array.is_null(2));
        Ok(())
    }
}
