//! Open files: the records of one input topic held in memory until they become objects.
//!
//! There is one buffer per (hive partition, input partition) — the dataset and input topic
//! are those of the [`Buffers`] — holding the records in input order (as Arrow columns,
//! see [`Rows`]) and the offset of its first record. The buffers of one input partition
//! form a *group* that rolls together: when any buffer of the group reaches
//! `max_rows_per_file`, when the group's first record has waited `roll_interval`, when all
//! open buffers together hold more than `max_buffered_bytes` (then the largest group rolls),
//! or on shutdown, every buffer of the group is sealed. A sealed buffer is immutable and
//! stays here until its object is written; then it is forgotten.
//!
//! Offsets: [`Buffers::held_from`] is the lowest first offset among the open and sealed
//! buffers of a partition, so the runtime never commits past a record whose object is not
//! written yet, and a crash replays it.
//!
//! Why a group rolls as a whole: the committed offset of a partition is then always a
//! roll boundary (the first offset after a roll), so a replay starts exactly where the
//! objects of one roll begin and re-creates them under the same names — the first offset
//! of each hive partition within the roll — instead of writing records that an earlier
//! object already holds under a new name. Rolling buffers one by one would let a partition
//! commit at the first offset of a long-open buffer while later records of another hive
//! partition were already written, and every crash would replay those into a second object.
//!
//! Recorded rolls: the age and memory rules depend on the clock, so a replay would not
//! roll at the same places. Every roll is therefore a *recorded* decision: a sealed group
//! says which input offsets it spans ([`Buffers::recorded`]), the sink puts that in the
//! partition's checkpoint, and a group's objects are written only once the checkpoint
//! holding its roll is acknowledged ([`Buffers::mark_durable`]). A new owner restores the
//! recorded rolls ([`Buffers::restore_rolls`]) and seals exactly there while it replays —
//! no clock or memory rule applies to a partition with a roll still to replay — so it
//! writes the same rows under the same names, and never an object that another roll
//! already covered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flowlake_runtime::TopicPartition;
use object_store::path::Path;
use parquet::file::metadata::KeyValue;

use crate::columns::SinkRecord;
use crate::layout::{self, HivePartition, LayoutError};
use crate::writer::Rows;

/// Key of the Parquet key-value metadata that records where an object's rows came from:
/// `topic:partition:first_offset-last_offset`.
pub const INPUT_METADATA_KEY: &str = "flowlake.input";

/// When buffers roll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollPolicy {
    /// A group rolls when one of its buffers holds this many rows.
    pub max_rows_per_file: usize,
    /// A group rolls when its first record has waited this long.
    pub roll_interval: Duration,
    /// When all open buffers together hold more bytes, the largest group rolls.
    pub max_buffered_bytes: usize,
}

/// The buffers of one input topic (one dataset).
#[derive(Debug)]
pub struct Buffers<R> {
    topic: String,
    policy: RollPolicy,
    /// Open groups by input partition.
    groups: BTreeMap<i32, Group<R>>,
    /// Sealed buffers waiting to be written, in the order they were sealed.
    sealed: Vec<Sealed<R>>,
    /// Rolls restored from a checkpoint that the replay has not reached yet, per input
    /// partition: (first offset, last offset) of each group, oldest first.
    forced: BTreeMap<i32, Vec<(i64, i64)>>,
    /// Rows in open buffers.
    open_rows: usize,
    /// Estimated bytes of open buffers.
    open_memory: usize,
    next_id: u64,
}

/// The open buffers of one input partition.
#[derive(Debug)]
struct Group<R> {
    /// Offset of the group's first record: the lowest offset it holds.
    first_offset: i64,
    /// Offset of the group's last record.
    last_offset: i64,
    /// When the group's first record arrived.
    opened_at: SystemTime,
    /// One buffer per hive partition; few (clusters × hours), so a scan beats a map.
    files: Vec<OpenFile<R>>,
    rows: usize,
    /// Estimated bytes of the group's buffers.
    memory: usize,
}

#[derive(Debug)]
struct OpenFile<R> {
    hive: HivePartition,
    first_offset: i64,
    last_offset: i64,
    rows: Rows<R>,
}

/// A rolled buffer: the rows of one object, immutable until written.
#[derive(Debug)]
pub struct Sealed<R> {
    /// Identifies the buffer within its [`Buffers`].
    pub id: u64,
    /// The input partition.
    pub partition: i32,
    /// The hive partition.
    pub hive: HivePartition,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The records.
    pub rows: Arc<Rows<R>>,
    /// (first, last) input offset of the whole group this buffer was sealed with: the
    /// recorded roll.
    pub group: (i64, i64),
    /// The roll is in an acknowledged checkpoint: the object may be written.
    pub durable: bool,
}

impl<R> Buffers<R> {
    /// No buffers yet, for records read from `topic`.
    pub fn new(topic: impl Into<String>, policy: RollPolicy) -> Self {
        Buffers {
            topic: topic.into(),
            policy,
            groups: BTreeMap::new(),
            forced: BTreeMap::new(),
            sealed: Vec::new(),
            open_rows: 0,
            open_memory: 0,
            next_id: 0,
        }
    }

    /// The input topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Seals the groups whose first record has waited `roll_interval` at `now`; returns
    /// how many buffers were sealed.
    pub fn seal_due(&mut self, now: SystemTime) -> usize {
        let due: Vec<i32> = self
            .groups
            .iter()
            .filter(|(p, _)| !self.forced.contains_key(p))
            .filter(|(_, g)| {
                now.duration_since(g.opened_at)
                    .is_ok_and(|age| age >= self.policy.roll_interval)
            })
            .map(|(&partition, _)| partition)
            .collect();
        due.into_iter().map(|p| self.seal_group(p)).sum()
    }

    /// Seals every open buffer (shutdown); returns how many were sealed. A partition
    /// still replaying recorded rolls is left to them.
    pub fn seal_all(&mut self) -> usize {
        let all: Vec<i32> = self
            .groups
            .keys()
            .copied()
            .filter(|p| !self.forced.contains_key(p))
            .collect();
        all.into_iter().map(|p| self.seal_group(p)).sum()
    }

    /// Sealed buffers waiting to be written.
    pub fn sealed(&self) -> &[Sealed<R>] {
        &self.sealed
    }

    /// Sealed buffers whose roll is recorded in an acknowledged checkpoint: ready to write.
    pub fn writable(&self) -> impl Iterator<Item = &Sealed<R>> {
        self.sealed.iter().filter(|s| s.durable)
    }

    /// The rolls of `partition` to keep in its checkpoint: sealed groups not yet written
    /// and restored rolls not yet replayed, oldest first.
    pub fn recorded(&self, partition: i32) -> Vec<(i64, i64)> {
        let mut rolls: Vec<(i64, i64)> = self
            .sealed
            .iter()
            .filter(|s| s.partition == partition)
            .map(|s| s.group)
            .collect();
        if let Some(forced) = self.forced.get(&partition) {
            rolls.extend(forced.iter().copied());
        }
        rolls.sort_unstable();
        rolls.dedup();
        rolls
    }

    /// Every roll sealed so far is in an acknowledged checkpoint.
    pub fn mark_durable(&mut self) {
        for sealed in &mut self.sealed {
            sealed.durable = true;
        }
    }

    /// Rolls recorded by an earlier owner of `partition`, to seal at exactly while the
    /// partition is replayed.
    pub fn restore_rolls(&mut self, partition: i32, mut rolls: Vec<(i64, i64)>) {
        rolls.sort_unstable();
        if rolls.is_empty() {
            self.forced.remove(&partition);
        } else {
            self.forced.insert(partition, rolls);
        }
    }

    /// The object of sealed buffer `id` is written: forget it.
    pub fn complete(&mut self, id: u64) {
        self.sealed.retain(|s| s.id != id);
    }

    /// Lowest offset of `partition` held in a buffer, open or sealed.
    pub fn held_from(&self, partition: &TopicPartition) -> Option<i64> {
        if partition.topic != self.topic {
            return None;
        }
        let open = self
            .groups
            .get(&partition.partition)
            .map(|g| g.first_offset);
        let sealed = self
            .sealed
            .iter()
            .filter(|s| s.partition == partition.partition)
            .map(|s| s.first_offset)
            .min();
        open.into_iter().chain(sealed).min()
    }

    /// Forgets everything held for `partitions` (revoked: the next owner replays them).
    pub fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        let revoked = |p: i32| {
            partitions
                .iter()
                .any(|tp| tp.topic == self.topic && tp.partition == p)
        };
        let dropped: Vec<i32> = self
            .groups
            .keys()
            .copied()
            .filter(|&p| revoked(p))
            .collect();
        for partition in dropped {
            if let Some(group) = self.groups.remove(&partition) {
                self.open_rows -= group.rows;
                self.open_memory -= group.memory;
            }
        }
        self.sealed.retain(|s| !revoked(s.partition));
        self.forced.retain(|&p, _| !revoked(p));
    }

    /// Buffers held, open and sealed.
    pub fn buffer_count(&self) -> usize {
        self.groups.values().map(|g| g.files.len()).sum::<usize>() + self.sealed.len()
    }

    /// Rows in open buffers.
    pub fn open_rows(&self) -> usize {
        self.open_rows
    }

    /// Estimated bytes of memory held by open buffers.
    pub fn open_memory(&self) -> usize {
        self.open_memory
    }

    fn seal_group(&mut self, partition: i32) -> usize {
        let Some(group) = self.groups.remove(&partition) else {
            return 0;
        };
        self.open_rows -= group.rows;
        self.open_memory -= group.memory;
        let sealed = group.files.len();
        let span = (group.first_offset, group.last_offset);
        // A roll the checkpoint already holds (being replayed) may be written at once.
        let durable = match self.forced.get_mut(&partition) {
            Some(forced) if forced.first() == Some(&span) => {
                forced.remove(0);
                if forced.is_empty() {
                    self.forced.remove(&partition);
                }
                true
            }
            _ => false,
        };
        for file in group.files {
            self.sealed.push(Sealed {
                id: self.next_id,
                partition,
                hive: file.hive,
                first_offset: file.first_offset,
                last_offset: file.last_offset,
                rows: Arc::new(file.rows),
                group: span,
                durable,
            });
            self.next_id += 1;
        }
        sealed
    }
}

impl<R: SinkRecord> Buffers<R> {
    /// Adds the record at `offset` of `partition` (`payload_len` bytes of Avro), arriving
    /// at `now`. Seals the partition's group when a buffer is full, or the largest group
    /// when memory runs over `max_buffered_bytes`. Fails, holding nothing, for an event time outside the layout.
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        record: R,
        payload_len: usize,
        now: SystemTime,
    ) -> Result<(), LayoutError> {
        let time = record.partition_time();
        layout::hour_of(time)?;
        let group = self.groups.entry(partition).or_insert_with(|| Group {
            first_offset: offset,
            last_offset: offset,
            opened_at: now,
            files: Vec::new(),
            rows: 0,
            memory: 0,
        });
        let index = match group
            .files
            .iter()
            .position(|f| f.hive.contains(record.cluster_id(), time))
        {
            Some(index) => index,
            None => {
                group.files.push(OpenFile {
                    hive: HivePartition::new(record.cluster_id(), time)?,
                    first_offset: offset,
                    last_offset: offset,
                    rows: Rows::default(),
                });
                group.files.len() - 1
            }
        };
        let file = &mut group.files[index];
        let before = file.rows.memory();
        file.rows.push(record, payload_len);
        file.last_offset = offset;
        let after = file.rows.memory();
        let full = file.rows.len() >= self.policy.max_rows_per_file;
        group.rows += 1;
        group.last_offset = offset;
        self.open_rows += 1;
        // Memory shrinks when a chunk of records becomes columns.
        group.memory = group.memory - before + after;
        self.open_memory = self.open_memory - before + after;
        match self.forced.get(&partition).and_then(|f| f.first()) {
            // Replaying a recorded roll: seal where it was sealed, and nowhere else.
            Some(&(_, last)) if offset >= last => {
                if offset != last {
                    tracing::warn!(topic = %self.topic, partition, offset, recorded_last = last, "replay passed a recorded roll without reaching its last offset; sealing here");
                }
                self.seal_group(partition);
            }
            Some(_) => {}
            None if full => {
                self.seal_group(partition);
            }
            None if self.open_memory > self.policy.max_buffered_bytes => self.seal_largest(),
            None => {}
        }
        Ok(())
    }

    /// The object name of a sealed buffer under `root`.
    pub fn object_path(&self, root: &Path, sealed: &Sealed<R>) -> Path {
        layout::object_path(
            root,
            R::DATASET,
            &sealed.hive,
            &self.topic,
            sealed.partition,
            sealed.first_offset,
        )
    }

    /// The Parquet key-value metadata of a sealed buffer's object.
    pub fn object_metadata(&self, sealed: &Sealed<R>) -> Vec<KeyValue> {
        vec![KeyValue::new(
            INPUT_METADATA_KEY.to_owned(),
            format!(
                "{}:{}:{}-{}",
                self.topic, sealed.partition, sealed.first_offset, sealed.last_offset
            ),
        )]
    }

    fn seal_largest(&mut self) {
        let largest = self
            .groups
            .iter()
            .filter(|(p, _)| !self.forced.contains_key(p))
            .max_by_key(|(_, g)| g.memory)
            .map(|(&p, _)| p);
        if let Some(partition) = largest {
            let rows = self.groups.get(&partition).map_or(0, |g| g.rows);
            tracing::debug!(
                topic = %self.topic,
                partition,
                rows,
                open_bytes = self.open_memory,
                "buffer memory over the limit; rolling the largest partition early"
            );
            self.seal_group(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use flowlake_schemas::{FlowEdge, Timestamp, samples};
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_700_000_000_000_000; // 2023-11-14T22:13:20Z
    const HOUR: i64 = 3_600_000_000;

    fn policy(max_rows: usize) -> RollPolicy {
        RollPolicy {
            max_rows_per_file: max_rows,
            roll_interval: Duration::from_secs(60),
            max_buffered_bytes: 1 << 30,
        }
    }

    fn edge(cluster: &str, micros: i64) -> FlowEdge {
        FlowEdge {
            cluster_id: cluster.to_owned(),
            window_start: Timestamp::from_micros(micros),
            ..samples::flow_edge()
        }
    }

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: "flows.edges".to_owned(),
            partition,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn sealed_summary(buffers: &Buffers<FlowEdge>) -> Vec<(i32, String, i64, i64, usize)> {
        buffers
            .sealed()
            .iter()
            .map(|s| {
                (
                    s.partition,
                    s.hive.cluster_id().to_owned(),
                    s.first_offset,
                    s.last_offset,
                    s.rows.len(),
                )
            })
            .collect()
    }

    #[test]
    fn rolls_by_rows() -> Result<(), LayoutError> {
        let mut buffers = Buffers::new("flows.edges", policy(3));
        for offset in 10..17 {
            buffers.push(0, offset, edge("a", T0), 100, at(0))?;
        }
        assert_eq!(
            sealed_summary(&buffers),
            vec![(0, "a".into(), 10, 12, 3), (0, "a".into(), 13, 15, 3)]
        );
        assert_eq!(buffers.open_rows(), 1);
        assert_eq!(buffers.held_from(&tp(0)), Some(10));
        assert_eq!(buffers.buffer_count(), 3);
        Ok(())
    }

    #[test]
    fn rolls_by_age_and_on_shutdown() -> Result<(), LayoutError> {
        let mut buffers = Buffers::new("flows.edges", policy(1000));
        buffers.push(0, 5, edge("a", T0), 100, at(0))?;
        buffers.push(1, 7, edge("a", T0), 100, at(30))?;
        buffers.push(0, 6, edge("a", T0), 100, at(50))?;
        assert_eq!(buffers.seal_due(at(59)), 0);
        // Partition 0 opened at 0 s: due at 60 s; partition 1 (30 s) is not.
        assert_eq!(buffers.seal_due(at(60)), 1);
        assert_eq!(sealed_summary(&buffers), vec![(0, "a".into(), 5, 6, 2)]);
        assert_eq!(buffers.seal_due(at(89)), 0);
        assert_eq!(buffers.seal_due(at(90)), 1);
        buffers.push(2, 1, edge("a", T0), 100, at(91))?;
        assert_eq!(buffers.seal_all(), 1);
        assert_eq!(buffers.open_rows(), 0);
        assert_eq!(buffers.sealed().len(), 3);
        // A clock that went backwards rolls nothing early.
        buffers.push(3, 1, edge("a", T0), 100, at(100))?;
        assert_eq!(buffers.seal_due(at(10)), 0);
        Ok(())
    }

    /// A partition's buffers (one per hive partition) roll together, and `held_from` is
    /// the lowest first offset among open and sealed buffers until each object is written.
    #[test]
    fn hive_partitions_roll_together_and_hold_offsets() -> Result<(), LayoutError> {
        let mut buffers = Buffers::new("flows.edges", policy(3));
        assert_eq!(buffers.held_from(&tp(0)), None);
        buffers.push(0, 100, edge("a", T0), 100, at(0))?;
        buffers.push(0, 101, edge("b", T0), 100, at(0))?;
        buffers.push(0, 102, edge("a", T0 + HOUR), 100, at(0))?;
        buffers.push(0, 103, edge("b", T0), 100, at(0))?;
        buffers.push(1, 50, edge("a", T0), 100, at(0))?;
        assert_eq!(buffers.buffer_count(), 4);
        assert_eq!(buffers.held_from(&tp(0)), Some(100));
        assert_eq!(buffers.held_from(&tp(1)), Some(50));
        assert_eq!(
            buffers.held_from(&TopicPartition {
                topic: "other".into(),
                partition: 0
            }),
            None
        );
        // The third row of cluster b fills its buffer: all of partition 0 rolls.
        buffers.push(0, 104, edge("b", T0), 100, at(1))?;
        assert_eq!(
            sealed_summary(&buffers),
            vec![
                (0, "a".into(), 100, 100, 1),
                (0, "b".into(), 101, 104, 3),
                (0, "a".into(), 102, 102, 1),
            ]
        );
        buffers.push(0, 105, edge("a", T0), 100, at(2))?;
        assert_eq!(buffers.held_from(&tp(0)), Some(100));
        let ids: Vec<u64> = buffers.sealed().iter().map(|s| s.id).collect();
        buffers.complete(ids[0]);
        assert_eq!(buffers.held_from(&tp(0)), Some(101));
        buffers.complete(ids[1]);
        buffers.complete(ids[2]);
        assert_eq!(buffers.held_from(&tp(0)), Some(105));
        assert_eq!(buffers.held_from(&tp(1)), Some(50));
        Ok(())
    }

    #[test]
    fn memory_bound_rolls_the_largest_partition() -> Result<(), LayoutError> {
        // Pending records are estimated at 8 bytes per Avro byte: 100 → 800 bytes each.
        let mut buffers = Buffers::new(
            "flows.edges",
            RollPolicy {
                max_buffered_bytes: 5 * 800,
                ..policy(1000)
            },
        );
        for offset in 0..4 {
            buffers.push(0, offset, edge("a", T0), 100, at(0))?;
        }
        buffers.push(1, 0, edge("a", T0), 100, at(0))?;
        assert!(buffers.sealed().is_empty());
        assert_eq!(buffers.open_memory(), 5 * 800);
        buffers.push(1, 1, edge("a", T0), 100, at(0))?;
        assert_eq!(sealed_summary(&buffers), vec![(0, "a".into(), 0, 3, 4)]);
        assert_eq!(buffers.open_rows(), 2);
        assert_eq!(buffers.open_memory(), 2 * 800);
        Ok(())
    }

    #[test]
    fn revoked_partitions_are_forgotten() -> Result<(), LayoutError> {
        let mut buffers = Buffers::new("flows.edges", policy(2));
        buffers.push(0, 1, edge("a", T0), 100, at(0))?;
        buffers.push(0, 2, edge("a", T0), 100, at(0))?;
        buffers.push(0, 3, edge("a", T0), 100, at(0))?;
        buffers.push(1, 1, edge("a", T0), 100, at(0))?;
        buffers.drop_partitions(&[tp(0)]);
        assert_eq!(buffers.held_from(&tp(0)), None);
        assert!(buffers.sealed().is_empty());
        assert_eq!(buffers.open_rows(), 1);
        assert_eq!(buffers.held_from(&tp(1)), Some(1));
        Ok(())
    }

    #[test]
    fn event_times_outside_the_layout_hold_nothing() {
        let mut buffers = Buffers::new("flows.edges", policy(2));
        let result = buffers.push(0, 1, edge("a", i64::MAX), 100, at(0));
        assert!(result.is_err());
        assert_eq!(buffers.held_from(&tp(0)), None);
        assert_eq!(buffers.buffer_count(), 0);
    }

    #[test]
    fn object_names_and_metadata() -> Result<(), LayoutError> {
        let mut buffers = Buffers::new("flows.edges", policy(1));
        buffers.push(7, 42, edge("a", T0), 100, at(0))?;
        let sealed = &buffers.sealed()[0];
        assert_eq!(
            buffers.object_path(&Path::from("lake"), sealed).to_string(),
            "lake/edges/cluster_id=a/date=2023-11-14/hour=22/part-flows.edges-7-00000000000000000042.parquet"
        );
        let metadata = buffers.object_metadata(sealed);
        assert_eq!(metadata[0].key, INPUT_METADATA_KEY);
        assert_eq!(metadata[0].value.as_deref(), Some("flows.edges:7:42-42"));
        Ok(())
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A record of `cluster` in hour `hour` on `partition`.
        Push {
            partition: i32,
            cluster: u8,
            hour: i64,
        },
        /// Time passes by `secs` and due groups roll.
        Tick { secs: u64 },
        /// The object of the `index`-th sealed buffer (modulo their count) is written.
        Complete { index: usize },
        /// Partition 0 is revoked.
        Revoke,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..3i32, 0..3u8, 0..3i64).prop_map(|(partition, cluster, hour)| Op::Push { partition, cluster, hour }),
            2 => (0..90u64).prop_map(|secs| Op::Tick { secs }),
            3 => (0..8usize).prop_map(|index| Op::Complete { index }),
            1 => Just(Op::Revoke),
        ]
    }

    /// The offsets (carried in `flows`) of a sealed buffer's records.
    fn offsets(sealed: &Sealed<FlowEdge>) -> Result<Vec<i64>, TestCaseError> {
        let mut offsets = Vec::new();
        for batch in sealed.rows.batches() {
            let batch = batch.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let column = batch
                .column_by_name("flows")
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| TestCaseError::fail("no flows column"))?;
            offsets.extend(column.values().iter().copied());
        }
        Ok(offsets)
    }

    proptest! {
        /// Whatever the interleaving of records, rolls, writes and revokes: `held_from` is
        /// the lowest offset not yet written, and every record is written exactly once, in
        /// an object of its own hive partition that starts at its name's offset.
        #[test]
        fn held_from_is_the_oldest_unwritten_record(ops in proptest::collection::vec(op(), 1..200)) {
            let mut buffers = Buffers::new("flows.edges", RollPolicy {
                max_rows_per_file: 4,
                roll_interval: Duration::from_secs(60),
                max_buffered_bytes: 40 * 800,
            });
            let mut next_offset = [0i64; 3];
            let mut unwritten: BTreeMap<i32, BTreeMap<i64, (u8, i64)>> = BTreeMap::new();
            let mut clock = 0u64;
            for op in ops {
                match op {
                    Op::Push { partition, cluster, hour } => {
                        let offset = next_offset[partition as usize];
                        next_offset[partition as usize] += 1;
                        let record = FlowEdge { flows: offset, ..edge(&format!("c{cluster}"), T0 + hour * HOUR) };
                        buffers.push(partition, offset, record, 100, at(clock)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        unwritten.entry(partition).or_default().insert(offset, (cluster, hour));
                    }
                    Op::Tick { secs } => {
                        clock += secs;
                        buffers.seal_due(at(clock));
                    }
                    Op::Complete { index } => {
                        if buffers.sealed().is_empty() {
                            continue;
                        }
                        let sealed = &buffers.sealed()[index % buffers.sealed().len()];
                        let written = offsets(sealed)?;
                        prop_assert_eq!(written.first().copied(), Some(sealed.first_offset));
                        prop_assert_eq!(written.last().copied(), Some(sealed.last_offset));
                        prop_assert!(written.windows(2).all(|w| w[0] < w[1]));
                        let pending = unwritten.entry(sealed.partition).or_default();
                        let mut hives = BTreeSet::new();
                        for offset in &written {
                            let hive = pending.remove(offset);
                            prop_assert!(hive.is_some(), "offset {} written twice or never pushed", offset);
                            hives.extend(hive);
                        }
                        prop_assert_eq!(hives.len(), 1);
                        let id = sealed.id;
                        buffers.complete(id);
                    }
                    Op::Revoke => {
                        buffers.drop_partitions(&[tp(0)]);
                        // The next owner replays partition 0 from its committed offset.
                        unwritten.remove(&0);
                    }
                }
                for partition in 0..3 {
                    let expected = unwritten.get(&partition).and_then(|o| o.keys().next().copied());
                    prop_assert_eq!(buffers.held_from(&tp(partition)), expected);
                }
                let open: usize = unwritten.values().map(BTreeMap::len).sum();
                let sealed: usize = buffers.sealed().iter().map(|s| s.rows.len()).sum();
                prop_assert_eq!(buffers.open_rows() + sealed, open);
            }
        }
    }
}
