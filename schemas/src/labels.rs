//! [`Labels`]: an object's labels, in two allocations whatever their number.
//!
//! Labels ride on every record: Hubble puts a dozen on each end of every flow, and enrich
//! keeps a set per pod for hundreds of thousands of pods. A `BTreeMap<String, String>`
//! costs one allocation per key and per value plus its nodes, and those allocations were
//! a quarter of ingest's time per Hubble flow. `Labels` keeps every key and value in one
//! string and the end offsets of each pair in one vector, sorted by key, so building,
//! cloning and dropping a set is two allocations and reading one is a walk through
//! contiguous memory.
//!
//! It behaves as the map it replaces: keys are unique and iterate in byte order (so equal
//! sets are equal, hash equally and serialize identically, as a JSON object or an Avro
//! `map`), and a key inserted twice keeps the last value.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Labels of an object: key → value, sorted by key, each key once.
#[derive(Clone, Default)]
pub struct Labels {
    /// Every key followed by its value, pair after pair, in key order.
    text: String,
    /// For each pair, where its key and its value end in `text`.
    ends: Vec<PairEnds>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PairEnds {
    key: u32,
    value: u32,
}

impl Labels {
    /// No labels.
    pub const fn new() -> Self {
        Labels {
            text: String::new(),
            ends: Vec::new(),
        }
    }

    /// Room for `pairs` labels of `text_bytes` bytes of keys and values together, so that
    /// building a set whose size is known allocates exactly twice.
    pub fn with_capacity(pairs: usize, text_bytes: usize) -> Self {
        Labels {
            text: String::with_capacity(text_bytes),
            ends: Vec::with_capacity(pairs),
        }
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The labels in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            labels: self,
            next: 0,
        }
    }

    /// The keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.iter().map(|(key, _)| key)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|index| self.pair(index).1)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, replacing the value it had.
    pub fn insert(&mut self, key: &str, value: &str) {
        // Keys arriving in order (the common case: agents and the API server write them
        // sorted) only append.
        if !self.push(key, value) {
            self.canonicalize();
        }
    }

    /// Sets every pair of `pairs`, in order (a repeated key keeps its last value).
    pub fn extend<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) {
        let mut in_order = true;
        for (key, value) in pairs {
            in_order &= self.push(key.as_ref(), value.as_ref());
        }
        if !in_order {
            self.canonicalize();
        }
    }

    /// Appends a pair; returns whether the pairs are still in order. When it returns
    /// false, [`Labels::canonicalize`] must run after the last pair.
    pub(crate) fn push(&mut self, key: &str, value: &str) -> bool {
        let in_order = self.last_key().is_none_or(|last| last < key);
        self.push_unchecked(key, value);
        in_order
    }

    /// Where `key` is (`Ok`), or where it would go (`Err`).
    fn find(&self, key: &str) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.ends.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.pair(middle).0.cmp(key) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return Ok(middle),
            }
        }
        Err(low)
    }

    fn last_key(&self) -> Option<&str> {
        self.len().checked_sub(1).map(|last| self.pair(last).0)
    }

    /// The key and value of the pair at `index`; a pair starts where the previous one's
    /// value ends.
    fn pair(&self, index: usize) -> (&str, &str) {
        let ends = self.ends[index];
        let start = index
            .checked_sub(1)
            .map_or(0, |previous| self.ends[previous].value as usize);
        (
            &self.text[start..ends.key as usize],
            &self.text[ends.key as usize..ends.value as usize],
        )
    }

    /// Appends a pair without keeping the order.
    fn push_unchecked(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        let key_end = self.offset();
        self.text.push_str(value);
        let value_end = self.offset();
        self.ends.push(PairEnds {
            key: key_end,
            value: value_end,
        });
    }

    fn offset(&self) -> u32 {
        // A label set lives in one Kafka message or one API object: far below 4 GiB.
        u32::try_from(self.text.len()).unwrap_or_else(|_| panic!("label set over 4 GiB"))
    }

    /// Sorts the pairs by key, keeping the last value of a repeated key.
    pub(crate) fn canonicalize(&mut self) {
        let mut order: Vec<usize> = (0..self.ends.len()).collect();
        // Stable, so pairs with the same key stay in insertion order and the last wins.
        order.sort_by(|a, b| self.pair(*a).0.cmp(self.pair(*b).0));
        let mut sorted = Labels::with_capacity(self.ends.len(), self.text.len());
        for (position, &index) in order.iter().enumerate() {
            let (key, value) = self.pair(index);
            let repeated_later = order
                .get(position + 1)
                .is_some_and(|&next| self.pair(next).0 == key);
            if !repeated_later {
                sorted.push_unchecked(key, value);
            }
        }
        *self = sorted;
    }
}

/// The labels of a [`Labels`], in key order.
pub struct Iter<'a> {
    labels: &'a Labels,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        (self.next < self.labels.len()).then(|| {
            self.next += 1;
            self.labels.pair(self.next - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.labels.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut labels = Labels::new();
        labels.extend(pairs);
        labels
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

// The representation is canonical (sorted, unique keys), so comparing and hashing it is
// comparing and hashing the map.
impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.ends == other.ends && self.text == other.text
    }
}

impl Eq for Labels {}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
        self.ends.hash(state);
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut labels = Labels::new();
                let mut in_order = true;
                while let Some((key, value)) = map.next_entry::<StrOrString, StrOrString>()? {
                    in_order &= labels.push(key.as_str(), value.as_str());
                }
                if !in_order {
                    labels.canonicalize();
                }
                Ok(labels)
            }
        }
        deserializer.deserialize_map(LabelsVisitor)
    }
}

/// A string borrowed from the input when the format allows, owned otherwise.
enum StrOrString<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl StrOrString<'_> {
    fn as_str(&self) -> &str {
        match self {
            StrOrString::Borrowed(text) => text,
            StrOrString::Owned(text) => text,
        }
    }
}

impl<'de> Deserialize<'de> for StrOrString<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = StrOrString<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                text: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(StrOrString::Borrowed(text))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(StrOrString::Owned(text.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(StrOrString::Owned(text))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[a-c]{0,2}", "\\PC{0,3}"), 0..8)
    }

    proptest! {
        /// Whatever the order and repeats of its input, `Labels` holds what a `BTreeMap`
        /// built from the same input holds, in the same order.
        #[test]
        fn behaves_as_a_btree_map(pairs in pairs(), probe in "[a-c]{0,2}") {
            let map: BTreeMap<&str, &str> =
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let labels: Labels = pairs.iter().map(|(k, v)| (k, v)).collect();
            prop_assert_eq!(labels.iter().collect::<Vec<_>>(), map.clone().into_iter().collect::<Vec<_>>());
            prop_assert_eq!(labels.len(), map.len());
            prop_assert_eq!(labels.get(&probe), map.get(probe.as_str()).copied());

            let mut inserted = Labels::new();
            for (key, value) in &pairs {
                inserted.insert(key, value);
            }
            prop_assert_eq!(&inserted, &labels);

            let json = serde_json::to_string(&labels).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&json, &serde_json::to_string(&map).map_err(|e| TestCaseError::fail(e.to_string()))?);
            let back: Labels = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, labels);
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let labels = Labels::from([("b", "1"), ("a", "x"), ("b", "2")]);
        assert_eq!(labels.iter().collect::<Vec<_>>(), [("a", "x"), ("b", "2")]);
        let json: Labels = serde_json::from_str(r#"{"b":"1","a":"x","b":"2"}"#).unwrap_or_default();
        assert_eq!(json, labels);
    }

    #[test]
    fn equal_sets_hash_equally() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let sorted = Labels::from([("a", "1"), ("b", "2")]);
        let unsorted = Labels::from([("b", "2"), ("a", "1")]);
        assert_eq!(sorted, unsorted);
        assert_eq!(hasher.hash_one(&sorted), hasher.hash_one(&unsorted));
        // A key/value boundary is part of the set.
        assert_ne!(Labels::from([("ab", "")]), Labels::from([("a", "b")]));
    }
}
