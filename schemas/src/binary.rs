//! Avro binary encoding of our own records, without apache-avro.
//!
//! apache-avro's serde path walks the schema for every field it reads or writes and costs
//! a few microseconds per `FlowEvent` each way, while DESIGN.md leaves the enrich stage
//! about one microsecond per record for everything. Our records have fixed schemas
//! (`avro/*.avsc`), so each one reads and writes its fields in schema order with the
//! specification's binary encoding, which this module implements: zig-zag varints for `int`/`long` (and timestamps),
//! length-prefixed `string`/`bytes`, unions as a branch index then the value (every union
//! of ours is `["null", T]`), enums as their symbol index, arrays and maps as blocks ending
//! in a zero count.
//!
//! Which values a record holds, in which order, is generated from its schema file into
//! [`crate::records`] (`AvroBinary` for each record and enum); this module holds the
//! encoding of each kind of value and the [`AvroBinary`] trait.
//!
//! What keeps this honest: tests write generated records both here and with apache-avro
//! and require identical bytes, and read each other's output back (see the tests below).
//! Only data written with exactly our schema is read here; another schema version goes
//! through apache-avro's schema resolution ([`crate::codec`]).
//!
//! Reading never panics and never trusts a length: a string, bytes or collection length
//! larger than what is left of the message is an error before anything is allocated.

use std::net::IpAddr;

use crate::labels::Labels;
use crate::values::{Ip, Timestamp};

/// Why a datum could not be read: the field where reading stopped and what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct ReadError {
    /// Schema field (`Record.field`) being read.
    pub field: &'static str,
    /// What was wrong with it.
    pub problem: &'static str,
}

fn error<T>(field: &'static str, problem: &'static str) -> Result<T, ReadError> {
    Err(ReadError { field, problem })
}

/// A varint's value as the `long` it encodes (zig-zag).
#[inline]
fn zigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Appends Avro binary values to a buffer.
pub mod write {
    /// A `long` (also `int` and timestamps): zig-zag, then base-128 varint.
    #[inline]
    pub fn long(out: &mut Vec<u8>, value: i64) {
        let mut n = ((value << 1) ^ (value >> 63)) as u64;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A `boolean`.
    #[inline]
    pub fn boolean(out: &mut Vec<u8>, value: bool) {
        out.push(u8::from(value));
    }

    /// `bytes`: length, then the bytes.
    #[inline]
    pub fn bytes(out: &mut Vec<u8>, value: &[u8]) {
        long(out, value.len() as i64);
        out.extend_from_slice(value);
    }

    /// A `string`: length in bytes, then UTF-8.
    #[inline]
    pub fn string(out: &mut Vec<u8>, value: &str) {
        bytes(out, value.as_bytes());
    }

    /// `["null", "string"]`.
    #[inline]
    pub fn optional_string(out: &mut Vec<u8>, value: Option<&str>) {
        match value {
            None => out.push(NULL_BRANCH),
            Some(text) => {
                out.push(VALUE_BRANCH);
                string(out, text);
            }
        }
    }

    /// An enum symbol by its index.
    #[inline]
    pub fn symbol(out: &mut Vec<u8>, index: usize) {
        long(out, index as i64);
    }

    /// A `map` of strings: one block of `len` pairs, then the end marker. `len` must be the
    /// number of pairs `entries` yields.
    pub fn string_map<'a>(
        out: &mut Vec<u8>,
        len: usize,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        if len > 0 {
            long(out, len as i64);
            for (key, value) in entries {
                string(out, key);
                string(out, value);
            }
        }
        out.push(END_OF_BLOCKS);
    }

    /// An `array` of strings: one block, then the end marker.
    pub fn string_array<'a>(
        out: &mut Vec<u8>,
        len: usize,
        items: impl IntoIterator<Item = &'a str>,
    ) {
        if len > 0 {
            long(out, len as i64);
            for item in items {
                string(out, item);
            }
        }
        out.push(END_OF_BLOCKS);
    }

    /// Union branch of `null` in `["null", T]` (a varint 0).
    pub const NULL_BRANCH: u8 = 0;
    /// Union branch of `T` in `["null", T]` (a varint 1).
    pub const VALUE_BRANCH: u8 = 2;
    /// The zero block count that ends an array or map.
    pub const END_OF_BLOCKS: u8 = 0;
}

/// Reads Avro binary values from a message, borrowing strings and bytes from it.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over a datum (the message without its framing header).
    pub fn new(datum: &'a [u8]) -> Self {
        Reader { rest: datum }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// A `long` (also `int`, enum indexes, lengths and timestamps).
    #[inline]
    pub fn long(&mut self, field: &'static str) -> Result<i64, ReadError> {
        // Most numbers of a record fit one byte (string lengths, union branches, enum
        // indexes, block counts): read those without the loop.
        if let Some((&byte, rest)) = self.rest.split_first()
            && byte < 0x80
        {
            self.rest = rest;
            return Ok(zigzag(u64::from(byte)));
        }
        self.long_of_several_bytes(field)
    }

    /// [`Self::long`] for a number of more than one byte (or none left).
    fn long_of_several_bytes(&mut self, field: &'static str) -> Result<i64, ReadError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some((&byte, rest)) = self.rest.split_first() else {
                return error(field, "message ends inside a number");
            };
            self.rest = rest;
            if shift == 63 && byte > 1 {
                return error(field, "number longer than 64 bits");
            }
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(zigzag(value))
    }

    /// An `int`: a `long` that must fit 32 bits.
    #[inline]
    pub fn int(&mut self, field: &'static str) -> Result<i32, ReadError> {
        i32::try_from(self.long(field)?).or_else(|_| error(field, "int out of 32-bit range"))
    }

    /// A `boolean`.
    #[inline]
    pub fn boolean(&mut self, field: &'static str) -> Result<bool, ReadError> {
        match self.rest.split_first() {
            Some((&0, rest)) => {
                self.rest = rest;
                Ok(false)
            }
            Some((&1, rest)) => {
                self.rest = rest;
                Ok(true)
            }
            Some(_) => error(field, "boolean byte is neither 0 nor 1"),
            None => error(field, "message ends before a boolean"),
        }
    }

    /// `bytes`, borrowed.
    #[inline]
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], ReadError> {
        let len = self.length(field)?;
        let (value, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(value)
    }

    /// A `string`, borrowed.
    #[inline]
    pub fn str(&mut self, field: &'static str) -> Result<&'a str, ReadError> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes).or_else(|_| error(field, "string is not UTF-8"))
    }

    /// The branch of a `["null", T]` union: false for null.
    #[inline]
    pub fn present(&mut self, field: &'static str) -> Result<bool, ReadError> {
        match self.long(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => error(field, "union branch is neither 0 (null) nor 1"),
        }
    }

    /// `["null", "string"]`, borrowed.
    #[inline]
    pub fn optional_str(&mut self, field: &'static str) -> Result<Option<&'a str>, ReadError> {
        if self.present(field)? {
            self.str(field).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A `string` checked but not kept: accepted exactly when [`Reader::str`] would be.
    #[inline]
    pub fn skip_str(&mut self, field: &'static str) -> Result<(), ReadError> {
        self.str_bytes(field).map(drop)
    }

    /// A `string`'s bytes, accepted exactly when [`Reader::str`] would accept the string:
    /// for a caller that only compares them, which is cheaper than making a `&str`.
    #[inline]
    pub fn str_bytes(&mut self, field: &'static str) -> Result<&'a [u8], ReadError> {
        let bytes = self.bytes(field)?;
        // Most strings are ASCII, which `is_ascii` checks inline; the call into `from_utf8`
        // costs more than the check itself on the short strings of a flow.
        if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
            Ok(bytes)
        } else {
            error(field, "string is not UTF-8")
        }
    }

    /// `["null", "string"]` checked but not kept, as [`Reader::skip_str`].
    #[inline]
    pub fn skip_optional_str(&mut self, field: &'static str) -> Result<(), ReadError> {
        if self.present(field)? {
            self.skip_str(field)
        } else {
            Ok(())
        }
    }

    /// An enum symbol index below `symbols`.
    #[inline]
    pub fn symbol(&mut self, field: &'static str, symbols: usize) -> Result<usize, ReadError> {
        match usize::try_from(self.long(field)?) {
            Ok(index) if index < symbols => Ok(index),
            _ => error(field, "enum index out of range"),
        }
    }

    /// The item count of the next array or map block, 0 at the end. Each item of our
    /// collections takes at least `min_item_bytes`, so a count the rest of the message
    /// cannot hold is an error, not an allocation.
    #[inline]
    pub fn block(
        &mut self,
        field: &'static str,
        min_item_bytes: usize,
    ) -> Result<usize, ReadError> {
        let count = self.long(field)?;
        let count = if count < 0 {
            // A negative count is followed by the block's size in bytes (for skipping).
            self.long(field)?;
            count.unsigned_abs()
        } else {
            count.unsigned_abs()
        };
        match usize::try_from(count) {
            Ok(count) if count.saturating_mul(min_item_bytes) <= self.rest.len() => Ok(count),
            _ => error(field, "collection longer than the message"),
        }
    }

    /// Reads every item of an array or map, calling `item` once per item.
    #[inline]
    pub fn blocks(
        &mut self,
        field: &'static str,
        min_item_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        loop {
            let count = self.block(field, min_item_bytes)?;
            if count == 0 {
                return Ok(());
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn length(&mut self, field: &'static str) -> Result<usize, ReadError> {
        let len = self.long(field)?;
        match usize::try_from(len) {
            Ok(len) if len <= self.rest.len() => Ok(len),
            Ok(_) => error(field, "length runs past the end of the message"),
            Err(_) => error(field, "negative length"),
        }
    }
}

/// A value with a fixed Avro binary layout.
pub trait AvroBinary: Sized {
    /// Appends the value's Avro binary encoding.
    fn write_avro(&self, out: &mut Vec<u8>);
    /// Reads one value. `field` names it in errors.
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError>;
}

impl AvroBinary for i64 {
    #[inline]
    fn write_avro(&self, out: &mut Vec<u8>) {
        write::long(out, *self);
    }
    #[inline]
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        reader.long(field)
    }
}

impl AvroBinary for i32 {
    #[inline]
    fn write_avro(&self, out: &mut Vec<u8>) {
        write::long(out, i64::from(*self));
    }
    #[inline]
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        reader.int(field)
    }
}

impl AvroBinary for bool {
    #[inline]
    fn write_avro(&self, out: &mut Vec<u8>) {
        write::boolean(out, *self);
    }
    #[inline]
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        reader.boolean(field)
    }
}

impl AvroBinary for String {
    #[inline]
    fn write_avro(&self, out: &mut Vec<u8>) {
        write::string(out, self);
    }
    #[inline]
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        reader.str(field).map(str::to_owned)
    }
}

impl AvroBinary for Timestamp {
    #[inline]
    fn write_avro(&self, out: &mut Vec<u8>) {
        write::long(out, self.as_micros());
    }
    #[inline]
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        reader.long(field).map(Timestamp::from_micros)
    }
}

impl AvroBinary for Ip {
    #[inline]
    fn write_avro(&self, out: &mut Vec<u8>) {
        match self.0 {
            IpAddr::V4(v4) => write::bytes(out, &v4.octets()),
            IpAddr::V6(v6) => write::bytes(out, &v6.octets()),
        }
    }
    #[inline]
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        match Ip::from_octets(reader.bytes(field)?) {
            Some(ip) => Ok(ip),
            None => error(field, "an IP address must be 4 or 16 bytes"),
        }
    }
}

/// `["null", T]`.
impl<T: AvroBinary> AvroBinary for Option<T> {
    #[inline]
    fn write_avro(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(write::NULL_BRANCH),
            Some(value) => {
                out.push(write::VALUE_BRANCH);
                value.write_avro(out);
            }
        }
    }
    #[inline]
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        if reader.present(field)? {
            T::read_avro(reader, field).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// An `array`. Every item type of ours takes at least one byte.
impl<T: AvroBinary> AvroBinary for Vec<T> {
    fn write_avro(&self, out: &mut Vec<u8>) {
        if !self.is_empty() {
            write::long(out, self.len() as i64);
            for item in self {
                item.write_avro(out);
            }
        }
        out.push(write::END_OF_BLOCKS);
    }
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        let mut items = Vec::new();
        reader.blocks(field, 1, |r| {
            items.push(T::read_avro(r, field)?);
            Ok(())
        })?;
        Ok(items)
    }
}

/// A `map` of strings.
impl AvroBinary for Labels {
    fn write_avro(&self, out: &mut Vec<u8>) {
        write::string_map(out, self.len(), self.iter());
    }
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {
        let mut labels = Labels::new();
        let mut in_order = true;
        // A key and a value: at least two length bytes.
        reader.blocks(field, 2, |r| {
            in_order &= labels.push(r.str(field)?, r.str(field)?);
            Ok(())
        })?;
        // Another writer's map may come in any order.
        if !in_order {
            labels.canonicalize();
        }
        Ok(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::AvroRecord;
    use crate::records::*;
    use crate::samples;
    use crate::view::{FlowEventView, HintView};
    use apache_avro::writer::datum::GenericDatumWriter;
    use proptest::prelude::*;

    /// apache-avro's encoding of `record`: the reference these tests hold ours to.
    fn reference_bytes<T: AvroRecord>(record: &T) -> Vec<u8> {
        let writer = GenericDatumWriter::builder(T::schema())
            .human_readable(false)
            .build();
        let mut out = Vec::new();
        match writer.map(|w| w.write_ser(&mut out, record)) {
            Ok(Ok(_)) => out,
            Ok(Err(e)) | Err(e) => panic!("apache-avro cannot write {}: {e}", T::NAME),
        }
    }

    fn ours<T: AvroBinary>(record: &T) -> Vec<u8> {
        let mut out = Vec::new();
        record.write_avro(&mut out);
        out
    }

    fn read_back<T: AvroBinary>(bytes: &[u8]) -> Result<T, ReadError> {
        let mut reader = Reader::new(bytes);
        let value = T::read_avro(&mut reader, "test")?;
        assert!(reader.remaining().is_empty(), "bytes left over");
        Ok(value)
    }

    fn same_as_apache_avro<T>(record: &T) -> Result<(), TestCaseError>
    where
        T: AvroRecord + AvroBinary + PartialEq + std::fmt::Debug,
    {
        let reference = reference_bytes(record);
        prop_assert_eq!(&ours(record), &reference);
        let back: T = read_back(&reference).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, record);
        Ok(())
    }

    #[test]
    fn samples_encode_exactly_as_apache_avro() -> Result<(), TestCaseError> {
        same_as_apache_avro(&samples::flow_event())?;
        same_as_apache_avro(&FlowEvent::default())?;
        same_as_apache_avro(&samples::enriched_flow())?;
        same_as_apache_avro(&EnrichedFlow::default())?;
        same_as_apache_avro(&samples::flow_edge())?;
        same_as_apache_avro(&samples::identity_record())?;
        same_as_apache_avro(&IdentityRecord::default())
    }

    #[test]
    fn numbers_take_the_specifications_varint_form() {
        for (value, bytes) in [
            (0i64, &[0u8][..]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7F]),
            (64, &[0x80, 0x01]),
            (
                i64::MAX,
                &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ),
            (
                i64::MIN,
                &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ),
        ] {
            assert_eq!(ours(&value), bytes, "{value}");
            assert_eq!(read_back::<i64>(bytes), Ok(value));
        }
    }

    /// The one-byte fast path and the loop agree at their border, and an empty message is
    /// an error either way.
    #[test]
    fn one_byte_numbers_read_as_the_loop_reads_them() {
        for byte in 0u8..0x80 {
            let value = i64::from(byte >> 1) ^ -i64::from(byte & 1);
            assert_eq!(read_back::<i64>(&[byte]), Ok(value), "{byte:#x}");
            assert_eq!(ours(&value), [byte], "{value}");
        }
        // 0x80 starts a longer number: 0x80 0x00 is a (non-minimal) zero, 0x80 alone ends early.
        assert_eq!(read_back::<i64>(&[0x80, 0x00]), Ok(0));
        for bytes in [&[][..], &[0x80]] {
            assert_eq!(
                read_back::<i64>(bytes),
                Err(ReadError {
                    field: "test",
                    problem: "message ends inside a number"
                })
            );
        }
    }

    #[test]
    fn bad_data_names_the_field() {
        // A varint that never ends.
        let err = read_back::<FlowEvent>(&[0x80; 12]).err();
        assert_eq!(err.map(|e| e.field), Some("FlowEvent.event_id"));
        // A string length beyond the message.
        let err = read_back::<FlowEvent>(&[0x10, b'a']).err();
        assert_eq!(
            err,
            Some(ReadError {
                field: "FlowEvent.event_id",
                problem: "length runs past the end of the message"
            })
        );
        // An IP of 5 bytes.
        let mut event = ours(&FlowEvent::default());
        // event_id, cluster_id, source_format are empty strings (3 bytes), reporter_node
        // null, reporter, two timestamps: src_ip's union branch is at index 7.
        event.splice(7..8, [2u8, 10, 1, 2, 3, 4, 5]);
        let err = read_back::<FlowEvent>(&event).err();
        assert_eq!(
            err,
            Some(ReadError {
                field: "FlowEvent.src_ip",
                problem: "an IP address must be 4 or 16 bytes"
            })
        );
        // An array that claims a billion items.
        let mut labels = vec![];
        write::long(&mut labels, 1_000_000_000);
        assert_eq!(
            read_back::<Labels>(&labels).map_err(|e| e.problem),
            Err("collection longer than the message")
        );
    }

    #[test]
    fn negative_block_counts_carry_a_size_and_are_read() -> Result<(), ReadError> {
        // Another writer may block arrays with a negative count and a byte size.
        let mut bytes = vec![];
        write::long(&mut bytes, -2);
        write::long(&mut bytes, 4);
        write::string(&mut bytes, "a");
        write::string(&mut bytes, "b");
        write::long(&mut bytes, 1);
        write::string(&mut bytes, "c");
        bytes.push(0);
        assert_eq!(read_back::<Vec<String>>(&bytes)?, ["a", "b", "c"]);
        Ok(())
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z0-9./-]{1,12}", "\\PC{0,6}"]
    }

    fn ip() -> impl Strategy<Value = Ip> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| Ip(IpAddr::from(o))),
            any::<[u8; 16]>().prop_map(|o| Ip(IpAddr::from(o))),
        ]
    }

    fn labels() -> impl Strategy<Value = Labels> {
        // Now and then one of Cilium's reserved labels, which the view looks for.
        let key = prop_oneof![
            4 => text(),
            1 => prop::sample::select(vec!["reserved", "reserved:world", "reserved:world-ipv6", "reserved:host", "reserved:worlds"]).prop_map(str::to_owned),
        ];
        let value = prop_oneof![
            4 => text(),
            1 => prop::sample::select(vec!["world", "world-ipv4", "host"]).prop_map(str::to_owned),
        ];
        proptest::collection::btree_map(key, value, 0..4).prop_map(Labels::from_iter)
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            Just(Action::Unknown),
            Just(Action::Allow),
            Just(Action::Deny),
            Just(Action::Pass)
        ]
    }

    fn hint() -> impl Strategy<Value = EndpointHint> {
        (
            (
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
            labels(),
            (
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
        )
            .prop_map(|((kind, namespace, name, aggregated_name), labels, rest)| {
                EndpointHint {
                    kind,
                    namespace,
                    name,
                    aggregated_name,
                    labels,
                    workload_kind: rest.0,
                    workload_name: rest.1,
                    service_namespace: rest.2,
                    service_name: rest.3,
                }
            })
    }

    fn policy() -> impl Strategy<Value = PolicyHit> {
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            text(),
            action(),
            proptest::option::of(any::<i32>()),
        )
            .prop_map(
                |(kind, tier, namespace, name, action, rule_index)| PolicyHit {
                    kind,
                    tier,
                    namespace,
                    name,
                    action,
                    rule_index,
                },
            )
    }

    fn flow_event() -> impl Strategy<Value = FlowEvent> {
        let ids = (text(), text(), text(), proptest::option::of(text()));
        let times = (any::<i64>(), any::<i64>(), 0usize..3);
        let addresses = (
            proptest::option::of(ip()),
            proptest::option::of(ip()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i32>()),
        );
        let counters = proptest::collection::vec(any::<i64>(), 7);
        let policies = (
            proptest::collection::vec(policy(), 0..3),
            proptest::collection::vec(policy(), 0..2),
        );
        let hints = (proptest::option::of(hint()), proptest::option::of(hint()));
        let names = (
            action(),
            proptest::option::of(text()),
            proptest::collection::vec(text(), 0..3),
            proptest::option::of((
                text(),
                proptest::collection::vec(ip(), 0..3),
                proptest::option::of(any::<i64>()),
            )),
        );
        (ids, times, addresses, counters, policies, hints, names).prop_map(
            |(ids, times, addresses, counters, policies, hints, names)| FlowEvent {
                event_id: ids.0,
                cluster_id: ids.1,
                source_format: ids.2,
                reporter_node: ids.3,
                reporter: [Reporter::Unknown, Reporter::Src, Reporter::Dst][times.2],
                start_time: Timestamp::from_micros(times.0),
                end_time: Timestamp::from_micros(times.1),
                src_ip: addresses.0,
                dst_ip: addresses.1,
                src_port: addresses.2,
                dst_port: addresses.3,
                protocol: addresses.4,
                action: names.0,
                drop_reason: names.1,
                bytes_out: counters[0],
                bytes_in: counters[1],
                packets_out: counters[2],
                packets_in: counters[3],
                connections_started: counters[4],
                connections_completed: counters[5],
                connections_live: counters[6],
                policies_enforced: policies.0,
                policies_pending: policies.1,
                src_hint: hints.0,
                dst_hint: hints.1,
                dst_dns_names: names.2,
                dns: names
                    .3
                    .map(|(query, ips, ttl)| DnsObservation { query, ips, ttl }),
            },
        )
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        (
            (
                0usize..8,
                0usize..4,
                labels(),
                proptest::collection::vec(text(), 0..3),
            ),
            proptest::collection::vec(proptest::option::of(text()), 11),
        )
            .prop_map(|((kind, status, labels, dns_names), texts)| {
                use EndpointKind as K;
                use EnrichmentStatus as S;
                let mut texts = texts.into_iter();
                let mut next = || texts.next().flatten();
                Endpoint {
                    kind: [
                        K::Unknown,
                        K::Pod,
                        K::Node,
                        K::Service,
                        K::Host,
                        K::NetworkSet,
                        K::ExternalPublic,
                        K::ExternalPrivate,
                    ][kind],
                    namespace: next(),
                    name: next(),
                    pod_uid: next(),
                    workload_kind: next(),
                    workload_name: next(),
                    aggregated_name: next(),
                    service_account: next(),
                    labels,
                    node: next(),
                    service_namespace: next(),
                    service_name: next(),
                    network_set: next(),
                    dns_names,
                    status: [S::Miss, S::Hit, S::Stale, S::Hint][status],
                }
            })
    }

    fn identity_record() -> impl Strategy<Value = IdentityRecord> {
        (
            (
                text(),
                0usize..6,
                text(),
                proptest::option::of(text()),
                text(),
            ),
            (
                proptest::collection::vec(ip(), 0..3),
                proptest::collection::vec(text(), 0..3),
                labels(),
            ),
            (
                proptest::option::of((text(), text(), text())),
                any::<bool>(),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
            (
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<i64>()),
                any::<i64>(),
            ),
        )
            .prop_map(|(ids, sets, owner, times)| IdentityRecord {
                cluster_id: ids.0,
                kind: [
                    IdentityKind::Pod,
                    IdentityKind::Service,
                    IdentityKind::Node,
                    IdentityKind::Namespace,
                    IdentityKind::NetworkSet,
                    IdentityKind::Owner,
                ][ids.1],
                uid: ids.2,
                namespace: ids.3,
                name: ids.4,
                ips: sets.0,
                cidrs: sets.1,
                labels: sets.2,
                owner: owner
                    .0
                    .map(|(kind, name, uid)| OwnerRef { kind, name, uid }),
                host_network: owner.1,
                node: owner.2,
                service_account: owner.3,
                created_at: times.0.map(Timestamp::from_micros),
                deleted_at: times.1.map(Timestamp::from_micros),
                observed_at: Timestamp::from_micros(times.2),
            })
    }

    fn flow_edge() -> impl Strategy<Value = FlowEdge> {
        (
            (
                text(),
                any::<i64>(),
                any::<i64>(),
                any::<i32>(),
                0usize..8,
                0usize..8,
            ),
            proptest::collection::vec(proptest::option::of(text()), 6),
            (
                proptest::option::of(any::<i32>()),
                proptest::option::of(any::<i32>()),
                action(),
            ),
            proptest::collection::vec(any::<i64>(), 10),
        )
            .prop_map(|(head, texts, ports, counters)| {
                use EndpointKind as K;
                let kinds = [
                    K::Unknown,
                    K::Pod,
                    K::Node,
                    K::Service,
                    K::Host,
                    K::NetworkSet,
                    K::ExternalPublic,
                    K::ExternalPrivate,
                ];
                let mut texts = texts.into_iter();
                let mut next = || texts.next().flatten();
                FlowEdge {
                    cluster_id: head.0,
                    window_start: Timestamp::from_micros(head.1),
                    window_end: Timestamp::from_micros(head.2),
                    revision: head.3,
                    src_kind: kinds[head.4],
                    src_namespace: next(),
                    src_workload: next(),
                    dst_kind: kinds[head.5],
                    dst_namespace: next(),
                    dst_workload: next(),
                    dst_service: next(),
                    dst_port: ports.0,
                    protocol: ports.1,
                    action: ports.2,
                    reporter: Reporter::Src,
                    policy: next(),
                    flows: counters[0],
                    connections_started: counters[1],
                    connections_completed: counters[2],
                    bytes_out: counters[3],
                    bytes_in: counters[4],
                    packets_out: counters[5],
                    packets_in: counters[6],
                    first_seen: Timestamp::from_micros(counters[7]),
                    last_seen: Timestamp::from_micros(counters[8]),
                    distinct_src_pods: counters[9],
                }
            })
    }

    /// A datum may repeat a map key (our writer never does): the view's `world` follows the
    /// decoder, whose labels keep the last value.
    #[test]
    fn the_view_reads_a_repeated_reserved_label_as_the_decoder_does() {
        for (first, second) in [("world", "host"), ("host", "world")] {
            let event = FlowEvent {
                dst_hint: Some(EndpointHint {
                    // Keys of one length, so the second can be renamed in the bytes.
                    labels: Labels::from([("reserved", first), ("reservee", second)]),
                    ..EndpointHint::default()
                }),
                ..FlowEvent::default()
            };
            let mut bytes = ours(&event);
            let at = bytes
                .windows(8)
                .position(|w| w == b"reservee")
                .unwrap_or_else(|| panic!("no second key in {bytes:?}"));
            bytes[at + 7] = b'd';
            let decoded = read_back::<FlowEvent>(&bytes).unwrap_or_else(|e| panic!("{e}"));
            let decoded_world = decoded.dst_hint.is_some_and(|h| h.has_reserved("world"));
            assert_eq!(decoded_world, second == "world");
            let view = FlowEventView::read(&bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(view.dst_hint.map(|h| h.world), Some(decoded_world));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn flow_events_encode_exactly_as_apache_avro(event in flow_event()) {
            same_as_apache_avro(&event)?;
        }

        #[test]
        fn enriched_flows_encode_exactly_as_apache_avro(
            flow in flow_event(),
            src in endpoint(),
            dst in endpoint(),
        ) {
            same_as_apache_avro(&EnrichedFlow { flow, src, dst })?;
        }

        #[test]
        fn flow_edges_encode_exactly_as_apache_avro(edge in flow_edge()) {
            same_as_apache_avro(&edge)?;
        }

        #[test]
        fn identity_records_encode_exactly_as_apache_avro(record in identity_record()) {
            same_as_apache_avro(&record)?;
        }

        /// The view accepts exactly the data the full decoder accepts, and reads the same
        /// values, also from damaged data.
        #[test]
        fn the_view_agrees_with_the_decoder(event in flow_event(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
            let bytes = ours(&event);
            let view = FlowEventView::read(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            fn hint(hint: &Option<EndpointHint>) -> Option<HintView<'_>> {
                let hint = hint.as_ref()?;
                Some(HintView {
                    service: hint.service_name.as_deref().map(|name| (hint.service_namespace.as_deref(), name)),
                    world: hint.has_reserved("world"),
                })
            }
            prop_assert_eq!(view, FlowEventView {
                cluster_id: &event.cluster_id,
                start_time: event.start_time,
                end_time: event.end_time,
                src_ip: event.src_ip,
                dst_ip: event.dst_ip,
                src_hint: hint(&event.src_hint),
                dst_hint: hint(&event.dst_hint),
                has_dst_dns_names: !event.dst_dns_names.is_empty(),
                has_dns: event.dns.is_some(),
            });
            let cut = &bytes[..cut.index(bytes.len() + 1)];
            let mut flipped = bytes.clone();
            if !flipped.is_empty() {
                let at = flip.0.index(flipped.len());
                flipped[at] ^= flip.1;
            }
            for damaged in [cut, &flipped[..]] {
                prop_assert_eq!(
                    FlowEventView::read(damaged).is_ok(),
                    whole(damaged)
                );
            }
        }

        /// Any prefix of a valid datum, and any byte flipped in it, reads as a value or an
        /// error: never a panic.
        #[test]
        fn damaged_data_never_panics(event in flow_event(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
            let bytes = ours(&event);
            let cut = cut.index(bytes.len() + 1);
            let _ = read_back_lenient::<FlowEvent>(&bytes[..cut]);
            let mut flipped = bytes.clone();
            if !flipped.is_empty() {
                let at = flip.0.index(flipped.len());
                flipped[at] ^= flip.1;
            }
            let _ = read_back_lenient::<FlowEvent>(&flipped);
        }
    }

    fn read_back_lenient<T: AvroBinary>(bytes: &[u8]) -> Result<T, ReadError> {
        T::read_avro(&mut Reader::new(bytes), "test")
    }

    /// A FlowEvent reads from `bytes` with nothing left over.
    fn whole(bytes: &[u8]) -> bool {
        let mut reader = Reader::new(bytes);
        FlowEvent::read_avro(&mut reader, "test").is_ok() && reader.remaining().is_empty()
    }
}
