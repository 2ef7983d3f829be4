//! [`ChunkedSlab`]: the identity table's object storage, grown a chunk at a time.
//!
//! A `Vec` of 100k objects of ~140 bytes doubles its way to 16 MB, copying everything at
//! each step and leaving the freed buffers (another ~16 MB) to the allocator; its last
//! doubling leaves up to half its capacity unused. Objects live in fixed-size chunks
//! instead: growing allocates one more chunk and moves nothing, and at most one chunk is
//! slack. The price is one more indirection per access, into a chunk list small enough
//! to stay in cache.

use std::ops::{Index, IndexMut};

/// Objects per chunk: 1,024 objects of ~140 bytes, ~120 KB.
const CHUNK: usize = 1_024;

/// A vector of `Option<T>` indexed by `usize`, stored in fixed-size chunks.
#[derive(Clone, Debug)]
pub(crate) struct ChunkedSlab<T> {
    chunks: Vec<Box<[Option<T>]>>,
    len: usize,
}

impl<T> Default for ChunkedSlab<T> {
    fn default() -> Self {
        ChunkedSlab {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkedSlab<T> {
    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends an empty slot.
    pub(crate) fn push_empty(&mut self) {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        self.len += 1;
    }

    /// The slot at `index`, if within the slab.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&Option<T>> {
        if index < self.len {
            Some(&self.chunks[index / CHUNK][index % CHUNK])
        } else {
            None
        }
    }
}

impl<T> Index<usize> for ChunkedSlab<T> {
    type Output = Option<T>;

    #[inline]
    fn index(&self, index: usize) -> &Option<T> {
        assert!(index < self.len, "slot {index} of {}", self.len);
        &self.chunks[index / CHUNK][index % CHUNK]
    }
}

impl<T> IndexMut<usize> for ChunkedSlab<T> {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut Option<T> {
        assert!(index < self.len, "slot {index} of {}", self.len);
        &mut self.chunks[index / CHUNK][index % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_across_chunks_are_kept_and_bounded() {
        let mut slab = ChunkedSlab::default();
        for value in 0..(2 * CHUNK + 3) {
            slab.push_empty();
            slab[value] = Some(value);
        }
        assert_eq!(slab.len(), 2 * CHUNK + 3);
        assert_eq!(slab.chunks.len(), 3);
        for value in [0, CHUNK - 1, CHUNK, 2 * CHUNK + 2] {
            assert_eq!(slab[value], Some(value));
            assert_eq!(slab.get(value), Some(&Some(value)));
        }
        assert_eq!(slab.get(2 * CHUNK + 3), None);
        slab[CHUNK] = None;
        assert_eq!(slab.get(CHUNK), Some(&None));
    }
}
