//! What a format module declares about its format: [`FormatSpec`].
//!
//! A format module owns everything about its format — its name, the bytes or keys that
//! recognise it, its decoder — and says so in one `FormatSpec` constant, which
//! [`super::FORMATS`] lists. Nothing outside the module names the format's keys or calls
//! its decoder directly, so adding a format touches its module and that list only.

use flowlake_runtime::Rejection;
use flowlake_schemas::{AvroCodec, FlowEvent};

/// One input format: its name, how it is recognised, how it is decoded.
#[derive(Debug)]
pub struct FormatSpec {
    /// Stable name: used in configuration, the `flowlake.format` header, metrics and
    /// `FlowEvent::source_format`. Lowercase, words joined by `-`.
    pub name: &'static str,
    /// How [`super::detect::detect`] recognises a message of this format.
    pub detection: Detection,
    /// Turns one message of this format into a `FlowEvent`; the checks every format shares
    /// (default cluster, address canonicalisation, validation) come after, in `decode`.
    pub decode: Decoder,
}

/// A format's decoder.
pub type Decoder = fn(&[u8], &Decoding<'_>) -> Result<FlowEvent, Rejection>;

/// What a decoder may use besides the message.
#[derive(Clone, Copy)]
pub struct Decoding<'a> {
    /// Cluster for records that name none.
    pub default_cluster_id: &'a str,
    /// Reads canonical Avro, with the Confluent schema ids known so far.
    pub avro: &'a AvroCodec<FlowEvent>,
}

/// How a format is recognised, cheapest test first.
///
/// Detection never guesses between two formats that both fit: a binary format by its
/// leading bytes, a JSON format by top-level keys. Each JSON format has strong keys (any
/// one says "this format") and may have weak keys (shared with other shapes, so several
/// are needed, and only once no strong key and no unsupported format matched). Where two
/// formats' keys can meet in one record, `precedence` decides, lowest first.
#[derive(Debug)]
pub struct Detection {
    /// Leading bytes that name the format (a binary framing); none for JSON formats.
    pub framing: &'static [&'static [u8]],
    /// Keys that name this format on their own. No two formats share one (tested), so a
    /// message whose first key is one of them is decided without reading further.
    pub keys: KeyRule,
    /// Of `keys`, those another format's records have too (Hubble's `Type` is a goflow2
    /// field): as a first key they decide nothing, the full scan does.
    pub shared_keys: &'static [&'static str],
    /// Keys other shapes have as well: tried after every strong rule and every
    /// unsupported-format check.
    pub weak_keys: KeyRule,
}

/// A set of top-level keys and how many of them a record must have.
#[derive(Debug)]
pub struct KeyRule {
    /// The keys.
    pub keys: &'static [&'static str],
    /// How many of them must be present.
    pub needed: usize,
    /// Order among the rules of the same strength in the full scan, lowest first.
    pub precedence: u8,
}

impl KeyRule {
    /// No keys: the format is not recognised this way.
    pub const NONE: KeyRule = KeyRule {
        keys: &[],
        needed: 1,
        precedence: u8::MAX,
    };

    /// Whether `keys` (a record's top-level keys) satisfy the rule.
    pub fn matches(&self, keys: &[String]) -> bool {
        !self.keys.is_empty()
            && keys
                .iter()
                .filter(|k| self.keys.contains(&k.as_str()))
                .take(self.needed)
                .count()
                >= self.needed
    }
}

impl Detection {
    /// A JSON format recognised by strong keys only.
    pub const fn by_keys(keys: &'static [&'static str], precedence: u8) -> Detection {
        Detection {
            framing: &[],
            keys: KeyRule {
                keys,
                needed: 1,
                precedence,
            },
            shared_keys: &[],
            weak_keys: KeyRule::NONE,
        }
    }
}
