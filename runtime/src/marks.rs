//! Replay marks: which upstream records an input partition has already applied.
//!
//! Every record a stage produces carries unique, monotone coordinates — its origin topic,
//! partition and offset, and a sequence number within what that one input produced
//! ([`Coordinates`]). An upstream stage that crashes replays its input and produces the
//! same records again with the same coordinates, so for one (input partition, origin
//! partition) pair the coordinates of the records a consumer reads only ever rise, except
//! where a replay starts over. [`PartitionMarks`] keeps the highest coordinates applied
//! per origin partition and refuses anything at or below them.
//!
//! Protocol (what the checkpoint relies on):
//! - marks never move backwards;
//! - [`PartitionMarks::settle`] folds the applied records *below* a resume offset into the
//!   base marks and forgets them; records at or after it stay in the log, because the stage
//!   will read them again after a restart from that resume offset, and must then apply
//!   them again rather than refuse them. The base marks after `settle(resume)` are exactly
//!   the marks as of reading `resume` — what a checkpoint stores;
//! - a record without coordinates (an agent's raw record) is always applied.

use std::collections::VecDeque;
use std::sync::Arc;

/// Where a produced record sits among everything its origin produced: the origin offset
/// and the record's sequence number among the records produced from that offset (one
/// aggregate emission yields many edges with one trigger offset). Ordered by offset, then
/// sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Coordinates {
    /// Offset of the origin record (or of the input that triggered an emission).
    pub offset: i64,
    /// Sequence number among the records produced from that origin offset.
    pub seq: u32,
}

/// An origin topic partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OriginPartition {
    /// Origin topic.
    pub topic: Arc<str>,
    /// Origin partition.
    pub partition: i32,
}

/// The marks of one input partition; see the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionMarks {
    /// Marks as of the last settled resume offset, by origin partition (few: sorted vector).
    base: Vec<(OriginPartition, Coordinates)>,
    /// Current marks: the base plus everything in `log`.
    current: Vec<(OriginPartition, Coordinates)>,
    /// Applied records not yet settled: (input offset, index into `current`, coordinates).
    log: VecDeque<(i64, usize, Coordinates)>,
}

impl PartitionMarks {
    /// Marks restored from a checkpoint: `marks` are those as of its resume offset.
    pub fn restored(marks: Vec<(OriginPartition, Coordinates)>) -> Self {
        let mut base = marks;
        base.sort_by(|a, b| a.0.cmp(&b.0));
        base.dedup_by(|a, b| a.0 == b.0);
        PartitionMarks {
            current: base.clone(),
            base,
            log: VecDeque::new(),
        }
    }

    /// Decides whether the input record at `input_offset`, produced upstream with
    /// `coordinates` in `origin`, is new (true: apply it) or a replay of a record already
    /// applied (false: drop it). A new record raises the mark.
    pub fn admit(
        &mut self,
        input_offset: i64,
        origin: &OriginPartition,
        coordinates: Coordinates,
    ) -> bool {
        let index = match self.current.iter().position(|(o, _)| o == origin) {
            Some(index) => {
                if coordinates <= self.current[index].1 {
                    return false;
                }
                self.current[index].1 = coordinates;
                index
            }
            None => {
                self.current.push((origin.clone(), coordinates));
                self.current.len() - 1
            }
        };
        self.log.push_back((input_offset, index, coordinates));
        true
    }

    /// Folds the records applied below `resume_offset` into the base marks (see the module
    /// doc) and returns the base: the marks as of `resume_offset`.
    pub fn settle(&mut self, resume_offset: i64) -> &[(OriginPartition, Coordinates)] {
        while let Some(&(offset, index, coordinates)) = self.log.front() {
            if offset >= resume_offset {
                break;
            }
            self.log.pop_front();
            let origin = &self.current[index].0;
            match self.base.binary_search_by(|(o, _)| o.cmp(origin)) {
                Ok(at) => self.base[at].1 = coordinates,
                Err(at) => self.base.insert(at, (origin.clone(), coordinates)),
            }
        }
        &self.base
    }

    /// The current marks (everything applied so far).
    pub fn current(&self) -> &[(OriginPartition, Coordinates)] {
        &self.current
    }

    /// Applied records held in the log (not yet settled).
    pub fn unsettled(&self) -> usize {
        self.log.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn origin(partition: i32) -> OriginPartition {
        OriginPartition {
            topic: Arc::from("up"),
            partition,
        }
    }

    fn at(offset: i64, seq: u32) -> Coordinates {
        Coordinates { offset, seq }
    }

    #[test]
    fn replays_are_refused_and_new_records_applied() {
        let mut marks = PartitionMarks::default();
        assert!(marks.admit(0, &origin(0), at(10, 0)));
        assert!(marks.admit(1, &origin(0), at(10, 1)));
        assert!(marks.admit(2, &origin(1), at(3, 0)));
        // The upstream stage replayed from its offset 10.
        assert!(!marks.admit(3, &origin(0), at(10, 0)));
        assert!(!marks.admit(4, &origin(0), at(10, 1)));
        assert!(marks.admit(5, &origin(0), at(11, 0)));
        assert_eq!(
            marks.current(),
            &[(origin(0), at(11, 0)), (origin(1), at(3, 0))]
        );
    }

    #[test]
    fn settle_keeps_what_will_be_read_again() {
        let mut marks = PartitionMarks::default();
        assert!(marks.admit(0, &origin(0), at(1, 0)));
        assert!(marks.admit(1, &origin(0), at(2, 0)));
        assert!(marks.admit(2, &origin(0), at(3, 0)));
        assert_eq!(marks.settle(2), &[(origin(0), at(2, 0))]);
        assert_eq!(marks.unsettled(), 1);
        // Restored at 2, the record at input offset 2 is applied again.
        let mut restored = PartitionMarks::restored(marks.settle(2).to_vec());
        assert!(restored.admit(2, &origin(0), at(3, 0)));
    }

    /// An upstream partition's output as a consumer sees it: coordinates rising, with
    /// replays that start over at an earlier offset.
    fn upstream() -> impl Strategy<Value = Vec<(i32, i64, u32)>> {
        proptest::collection::vec((0..3i32, 0..4i64, any::<bool>()), 1..120).prop_map(|steps| {
            let mut next = [0i64; 3];
            let mut out = Vec::new();
            for (partition, step, replay) in steps {
                let p = partition as usize;
                if replay && next[p] > 0 {
                    // A replay from an earlier offset re-produces the same records.
                    next[p] = next[p].saturating_sub(step + 1).max(0);
                }
                // What one origin record produced is a function of that record alone.
                let seqs = ((i64::from(partition) * 7 + next[p] * 13) % 3) as u32;
                for seq in 0..=seqs {
                    out.push((partition, next[p], seq));
                }
                next[p] += 1;
            }
            out
        })
    }

    proptest! {
        /// Whatever the replays upstream and wherever this stage restarts from a checkpoint,
        /// every upstream record is applied exactly once.
        #[test]
        fn each_record_applied_once_across_a_restart(input in upstream(), cut in 0usize..120) {
            // Upstream sequences repeat (offset, seq) with identical content, so the set of
            // distinct coordinates is what must be applied.
            let expected: BTreeSet<(i32, i64, u32)> = input.iter().copied().collect();
            let cut = cut.min(input.len()) as i64;
            let mut marks = PartitionMarks::default();
            let mut applied = Vec::new();
            for (i, &(p, o, s)) in input.iter().enumerate() {
                if marks.admit(i as i64, &origin(p), at(o, s)) {
                    applied.push((i as i64, (p, o, s)));
                }
            }
            // Crash: the stage had checkpointed at `cut`; what it applied from there on is
            // not durable and is done again by the next owner.
            let checkpoint = marks.settle(cut).to_vec();
            applied.retain(|(i, _)| *i < cut);
            let mut next_owner = PartitionMarks::restored(checkpoint);
            for (i, &(p, o, s)) in input.iter().enumerate().skip(cut as usize) {
                if next_owner.admit(i as i64, &origin(p), at(o, s)) {
                    applied.push((i as i64, (p, o, s)));
                }
            }
            let mut seen = BTreeSet::new();
            for (_, record) in &applied {
                prop_assert!(seen.insert(*record), "applied twice: {record:?}");
            }
            prop_assert_eq!(seen, expected);
        }

        /// Marks never move backwards, and the settled base never includes a record at or
        /// after the resume offset.
        #[test]
        fn marks_never_go_back(input in upstream(), resumes in proptest::collection::vec(0i64..120, 1..5)) {
            let mut marks = PartitionMarks::default();
            let mut last: Vec<(OriginPartition, Coordinates)> = Vec::new();
            let mut resumes = resumes;
            resumes.sort_unstable();
            let mut resume_iter = resumes.into_iter().peekable();
            for (i, &(p, o, s)) in input.iter().enumerate() {
                marks.admit(i as i64, &origin(p), at(o, s));
                while let Some(&resume) = resume_iter.peek() {
                    if resume > i as i64 + 1 { break; }
                    resume_iter.next();
                    let base = marks.settle(resume).to_vec();
                    for (origin, coordinates) in &last {
                        let now = base.iter().find(|(o, _)| o == origin).map(|(_, c)| *c);
                        prop_assert!(now.is_some_and(|c| c >= *coordinates));
                    }
                    last = base;
                }
            }
        }
    }
}
