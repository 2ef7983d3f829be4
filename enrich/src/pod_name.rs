//! [`PodName`]: a pod's name, kept inside the identity table's slab object when it fits.
//!
//! Every flow end that hits a pod writes the pod's name. As a `Box<str>` the name lived in
//! an allocation of its own, so a lookup in a table of 100k pods took one more cache miss
//! after the object's (the name's address is only known once the object has arrived):
//! about a tenth of enrich's time per record (BENCHMARKS.md). Names of up to
//! [`INLINE_CAPACITY`] bytes — nearly all: a Deployment's pods are `<name>-<10>-<5>` — are
//! stored in place instead; longer ones (names may have up to 253) keep an allocation. The
//! in-place bytes cost no more memory than the pointer, length and allocation they replace
//! (an allocation of 25–40 bytes takes 32–48).

use std::fmt;
use std::ops::Deref;

/// Longest name stored in place: the inline form is then 48 bytes (tag, length, bytes).
pub const INLINE_CAPACITY: usize = 46;

/// A pod's name (see the module doc). Derefs to `str`.
#[derive(Clone, PartialEq, Eq)]
pub struct PodName(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; INLINE_CAPACITY],
    },
    Heap(Box<str>),
}

impl PodName {
    /// The name's UTF-8 bytes, without a check: what the hot path writes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(name) => name.as_bytes(),
        }
    }

    /// The name as a string. The inline bytes are checked again (safe Rust cannot skip
    /// it); they always pass, because only `From<&str>` builds the inline form, from a
    /// whole string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(name) => name,
        }
    }
}

impl From<&str> for PodName {
    fn from(name: &str) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE_CAPACITY => {
                let mut bytes = [0; INLINE_CAPACITY];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                PodName(Repr::Inline { len, bytes })
            }
            _ => PodName(Repr::Heap(name.into())),
        }
    }
}

impl Deref for PodName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<&str> for PodName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_names_are_in_place_and_long_ones_allocated() {
        assert_eq!(std::mem::size_of::<PodName>(), 48);
        let short = PodName::from("checkout-frontend-7d9f8b6c5-x2x9z");
        assert!(matches!(short.0, Repr::Inline { .. }));
        assert_eq!(short, "checkout-frontend-7d9f8b6c5-x2x9z");
        let exact = "a".repeat(INLINE_CAPACITY);
        assert!(matches!(
            PodName::from(exact.as_str()).0,
            Repr::Inline { .. }
        ));
        let long = "a".repeat(INLINE_CAPACITY + 1);
        let name = PodName::from(long.as_str());
        assert!(matches!(name.0, Repr::Heap(_)));
        assert_eq!(name.as_str(), long);
        assert_eq!(PodName::from("").as_str(), "");
        assert_eq!(
            format!("{short} {short:?}"),
            "checkout-frontend-7d9f8b6c5-x2x9z \"checkout-frontend-7d9f8b6c5-x2x9z\""
        );
    }

    proptest! {
        #[test]
        fn a_name_reads_back_as_it_was_given(name in "\\PC{0,80}") {
            let pod_name = PodName::from(name.as_str());
            prop_assert_eq!(pod_name.as_str(), name.as_str());
            prop_assert_eq!(pod_name.as_bytes(), name.as_bytes());
        }
    }
}
