//! The identity table's address index: canonical IP → the slab indices of its holders.
//!
//! Every flow looks up two addresses here, uniformly spread over every pod of a cluster,
//! so the index's size is its speed: an entry that misses the cache costs more than
//! everything else the lookup does. An IPv4 entry is 8 bytes (the address as a `u32`,
//! one `u32` of holders) where a `HashMap<IpAddr, Vec-like>` entry was 48; 100k pods'
//! IPv4 index is ~1 MB and stays in a core's L2 cache.
//!
//! Almost every address has one holder, stored in place. The rare address with several
//! (a pod's deletion not yet seen when the next pod got the address, a hostNetwork pod on
//! its node's address) stores [`SHARED`] | an index into a side list of holder lists.

use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashMap};

/// Marks a holder word that indexes `shared` instead of naming one slab index; slab
/// indices stay below it (2³¹ objects per cluster).
const SHARED: u32 = 1 << 31;

/// Canonical IP → holders (see the module doc).
#[derive(Clone, Debug, Default)]
pub(crate) struct AddressIndex {
    v4: HashMap<u32, u32, DefaultHashBuilder>,
    v6: HashMap<u128, u32, DefaultHashBuilder>,
    /// Holder lists of addresses with more than one holder; `None` is a free slot.
    shared: Vec<Option<Box<[u32]>>>,
    free_shared: Vec<u32>,
}

impl AddressIndex {
    /// The slab indices holding `ip` (canonical), empty when none.
    #[inline]
    pub(crate) fn holders(&self, ip: IpAddr) -> &[u32] {
        match self.word(ip) {
            Some(word) if *word & SHARED == 0 => std::slice::from_ref(word),
            Some(word) => self.shared[(*word & !SHARED) as usize]
                .as_deref()
                .unwrap_or_default(),
            None => &[],
        }
    }

    /// Adds `id` to the holders of `ip` (canonical); adding a holder twice keeps one.
    pub(crate) fn add(&mut self, ip: IpAddr, id: u32) {
        debug_assert!(
            id < SHARED,
            "slab index {id} collides with the shared marker"
        );
        let holders = self.holders(ip);
        if holders.contains(&id) {
            return;
        }
        if holders.is_empty() {
            // The common case (a new pod's address), without building a list.
            return self.put(ip, Some(id));
        }
        let mut ids = holders.to_vec();
        ids.push(id);
        self.set(ip, ids);
    }

    /// Removes `id` from the holders of `ip` (canonical), and `ip` when none is left.
    pub(crate) fn remove(&mut self, ip: IpAddr, id: u32) {
        let holders = self.holders(ip);
        if !holders.contains(&id) {
            return;
        }
        let ids: Vec<u32> = holders.iter().copied().filter(|&h| h != id).collect();
        self.set(ip, ids);
    }

    /// Addresses with at least one holder.
    pub(crate) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Gives back the room that growing the maps left over (after a snapshot load).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.v4.shrink_to_fit();
        self.v6.shrink_to_fit();
    }

    fn word(&self, ip: IpAddr) -> Option<&u32> {
        match ip {
            IpAddr::V4(v4) => self.v4.get(&u32::from(v4)),
            IpAddr::V6(v6) => self.v6.get(&u128::from(v6)),
        }
    }

    /// Makes `ids` the holders of `ip`, releasing the shared list it had.
    fn set(&mut self, ip: IpAddr, ids: Vec<u32>) {
        if let Some(&word) = self.word(ip)
            && word & SHARED != 0
        {
            self.shared[(word & !SHARED) as usize] = None;
            self.free_shared.push(word & !SHARED);
        }
        let word = match ids.as_slice() {
            [] => None,
            [one] => Some(*one),
            _ => {
                let ids = Some(ids.into_boxed_slice());
                let slot = match self.free_shared.pop() {
                    Some(slot) => {
                        self.shared[slot as usize] = ids;
                        slot
                    }
                    None => {
                        self.shared.push(ids);
                        // Shared lists are a handful per cluster; the marker bit cannot be
                        // reached before the slab indices themselves would.
                        u32::try_from(self.shared.len() - 1).unwrap_or(!SHARED)
                    }
                };
                Some(SHARED | slot)
            }
        };
        self.put(ip, word);
    }

    /// Stores `word` as the holder word of `ip`, or forgets `ip` for `None`.
    fn put(&mut self, ip: IpAddr, word: Option<u32>) {
        match (ip, word) {
            (IpAddr::V4(v4), Some(word)) => {
                self.v4.insert(u32::from(v4), word);
            }
            (IpAddr::V4(v4), None) => {
                self.v4.remove(&u32::from(v4));
            }
            (IpAddr::V6(v6), Some(word)) => {
                self.v6.insert(u128::from(v6), word);
            }
            (IpAddr::V6(v6), None) => {
                self.v6.remove(&u128::from(v6));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u8..3).prop_map(|last| IpAddr::from([10, 0, 0, last])),
            (0u8..3).prop_map(|last| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(last)])),
        ]
    }

    proptest! {
        /// Any sequence of adds and removes leaves the holders a map of sets would have,
        /// and frees every shared list it no longer needs.
        #[test]
        fn behaves_as_a_map_of_sets(
            steps in proptest::collection::vec((any::<bool>(), ip(), 0u32..4), 0..64)
        ) {
            let mut index = AddressIndex::default();
            let mut model: BTreeMap<IpAddr, BTreeSet<u32>> = BTreeMap::new();
            for (add, ip, id) in steps {
                if add {
                    index.add(ip, id);
                    model.entry(ip).or_default().insert(id);
                } else {
                    index.remove(ip, id);
                    if let Some(ids) = model.get_mut(&ip) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            model.remove(&ip);
                        }
                    }
                }
                for probe in (0u8..3).flat_map(|last| [
                    IpAddr::from([10, 0, 0, last]),
                    IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(last)]),
                ]) {
                    let held: BTreeSet<u32> = index.holders(probe).iter().copied().collect();
                    prop_assert_eq!(index.holders(probe).len(), held.len(), "no duplicates");
                    prop_assert_eq!(&held, &model.get(&probe).cloned().unwrap_or_default());
                }
                prop_assert_eq!(index.len(), model.len());
                let shared_in_use = index.shared.iter().filter(|s| s.is_some()).count();
                let shared_needed = model.values().filter(|ids| ids.len() > 1).count();
                prop_assert_eq!(shared_in_use, shared_needed);
            }
        }
    }
}
