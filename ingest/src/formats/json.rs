//! JSON plumbing shared by the JSON formats: borrowed strings, protobuf enum values, and the
//! mapping of parser errors to rejections.
//!
//! Decoding reads straight into structs of only the fields flowlake uses, borrowing string
//! values from the message where JSON allows (no escapes), so the hot path allocates only
//! for the owned strings of the final record. A failed decode is re-run once through
//! `serde_path_to_error` to name the offending field: that costs a second parse, but only
//! for messages that are rejected anyway.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use flowlake_runtime::Rejection;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::error::Category;

use super::unsupported::not_json;
use crate::reject;

/// A JSON string, borrowed from the message when it has no escapes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An owned copy of the text.
    pub fn to_owned_string(&self) -> String {
        self.0.as_ref().to_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor(PhantomData))
    }
}

/// A protobuf enum in proto3 JSON: its name as a string (what Hubble writes), or its number
/// (which every proto3 JSON parser must also accept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProtoEnum<'a> {
    /// The value's name, e.g. `"DROPPED"`.
    Name(Str<'a>),
    /// The value's number, e.g. `2`.
    Number(i64),
}

impl<'de: 'a, 'a> Deserialize<'de> for ProtoEnum<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnumVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for EnumVisitor<'a> {
            type Value = ProtoEnum<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum name or number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<ProtoEnum<'a>, E> {
                Ok(ProtoEnum::Name(Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ProtoEnum<'a>, E> {
                Ok(ProtoEnum::Name(Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ProtoEnum<'a>, E> {
                Ok(ProtoEnum::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ProtoEnum<'a>, E> {
                i64::try_from(v)
                    .map(ProtoEnum::Number)
                    .map_err(|_| E::custom("enum number out of range"))
            }
        }
        deserializer.deserialize_any(EnumVisitor(PhantomData))
    }
}

/// A protobuf 64-bit integer in proto3 JSON: a number, or a decimal string (proto3 JSON
/// writes int64 as a string, Goldmane's protojson does). `null` is the default, 0, as
/// proto3 JSON requires. Labels that Loki keeps as strings (`"FlowDirection":"1"`) read the
/// same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a decimal string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom(format!("integer {v} is out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.parse()
                    .map(Int)
                    .map_err(|_| E::custom(format!("{v:?} is not a 64-bit integer")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Int, E> {
                Ok(Int(0))
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// Parses `payload` as one JSON document into `T`, mapping failures to rejections:
/// syntax errors and truncation → `not_json`; a field of the wrong type → `invalid_field`
/// naming the field's path. `what` names the format in messages ("hubble flow").
/// A message that is not UTF-8 is `not_json` (RFC 8259 §8.1 requires UTF-8), naming its offset.
pub(crate) fn parse<'a, T: Deserialize<'a>>(payload: &'a [u8], what: &str) -> Result<T, Rejection> {
    // One check of the whole message, then parsing text: serde_json reading bytes checks
    // each string it keeps on its own, and those short checks were ~5 % of a Hubble flow.
    let text = std::str::from_utf8(payload).map_err(|err| {
        Rejection::new(
            reject::NOT_JSON,
            format!(
                "not JSON: invalid UTF-8 at byte offset {}",
                err.valid_up_to()
            ),
        )
    })?;
    serde_json::from_str(text).map_err(|err| match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => not_json(payload, &err),
        Category::Data => invalid_field::<T>(payload, what, &err),
    })
}

fn invalid_field<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
    what: &str,
    err: &serde_json::Error,
) -> Rejection {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let message = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => format!("{what}: field `{}`: {}", e.path(), e.inner()),
        // Cannot happen (same input, same type), but the first error is still the answer.
        Ok(_) => format!("{what}: {err}"),
    };
    Rejection::new(reject::INVALID_FIELD, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        name: Str<'a>,
        #[serde(borrow, default)]
        kind: Option<ProtoEnum<'a>>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    struct Inner {
        port: i64,
    }

    #[test]
    fn strings_borrow_unless_escaped() -> Result<(), Rejection> {
        let probe: Probe<'_> = parse(br#"{"name":"plain","kind":"DROPPED"}"#, "probe")?;
        assert!(matches!(probe.name.0, Cow::Borrowed("plain")));
        assert_eq!(
            probe.kind,
            Some(ProtoEnum::Name(Str(Cow::Borrowed("DROPPED"))))
        );
        let probe: Probe<'_> = parse(br#"{"name":"a\"b","kind":2}"#, "probe")?;
        assert!(matches!(probe.name.0, Cow::Owned(ref s) if s == "a\"b"));
        assert_eq!(probe.kind, Some(ProtoEnum::Number(2)));
        let probe: Probe<'_> = parse(br#"{"name":"x","inner":{"port":80}}"#, "probe")?;
        assert_eq!(probe.inner.map(|i| i.port), Some(80));
        Ok(())
    }

    #[test]
    fn ints_may_be_strings_or_null() -> Result<(), Rejection> {
        #[derive(Debug, Deserialize)]
        struct Ints {
            a: Int,
            b: Int,
            c: Int,
        }
        let ints: Ints = parse(br#"{"a":"1764970845","b":-3,"c":null}"#, "ints")?;
        assert_eq!(
            (ints.a, ints.b, ints.c),
            (Int(1_764_970_845), Int(-3), Int(0))
        );
        let err = parse::<Ints>(br#"{"a":"12x","b":1,"c":1}"#, "ints").err();
        assert_eq!(
            err.map(|r| (r.class, r.message)),
            Some((
                reject::INVALID_FIELD,
                "ints: field `a`: \"12x\" is not a 64-bit integer at line 1 column 10".to_owned()
            ))
        );
        let err = parse::<Ints>(br#"{"a":18446744073709551615,"b":1,"c":1}"#, "ints").err();
        assert_eq!(err.map(|r| r.class), Some(reject::INVALID_FIELD));
        Ok(())
    }

    #[test]
    fn errors_are_classified_and_name_the_field() {
        let err = parse::<Probe<'_>>(br#"{"name":"x","inner":{"port":"80"}}"#, "probe")
            .err()
            .map(|r| (r.class, r.message));
        assert_eq!(
            err,
            Some((
                reject::INVALID_FIELD,
                "probe: field `inner.port`: invalid type: string \"80\", expected i64 at line 1 column 32"
                    .to_owned()
            ))
        );
        let err = parse::<Probe<'_>>(br#"{"name":"x""#, "probe").err();
        assert_eq!(err.map(|r| r.class), Some(reject::NOT_JSON));
        // Invalid UTF-8 anywhere, even in a field nobody reads.
        let err = parse::<Probe<'_>>(b"{\"name\":\"x\",\"other\":\"\xff\"}", "probe")
            .err()
            .map(|r| (r.class, r.message));
        assert_eq!(
            err,
            Some((
                reject::NOT_JSON,
                "not JSON: invalid UTF-8 at byte offset 21".to_owned()
            ))
        );
    }
}
