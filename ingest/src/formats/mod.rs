//! Input formats: one module per format, and [`FORMATS`], the one list of them.
//!
//! Each format module owns its format's name, the framing bytes or top-level keys that
//! recognise it and its decoder, and declares them in a [`FormatSpec`] constant `SPEC`.
//! [`FORMATS`] registers them; everything else — name parsing, detection
//! ([`detect::detect`]), dispatch to the decoder, metric labels, the `--format` help — is
//! derived from it, and tests check the format tables of README.md and docs/formats.md
//! against it.
//!
//! Adding a format: a module here that declares its `SPEC`, its `mod` line and one entry in
//! [`FORMATS`] below, and its rows in README.md and docs/formats.md (the tests below say
//! which).
//!
//! The other modules here are shared by the formats: [`detect`] applies the specs'
//! detection rules, `unsupported` names inputs that are recognised but not decoded, `json`
//! and `fields` are the JSON plumbing and field checks of the decoders.

pub mod calico;
pub mod canonical;
pub mod detect;
pub(crate) mod fields;
pub mod hubble;
pub(crate) mod json;
pub mod netobserv;
pub mod spec;
pub(crate) mod unsupported;

use std::fmt;
use std::str::FromStr;

pub use spec::{Decoder, Decoding, Detection, FormatSpec, KeyRule};

/// Every input format ingest decodes. The order is the order of names in messages and of
/// the metric handles; detection order is each spec's own `precedence`.
pub const FORMATS: &[&FormatSpec] = &[
    &hubble::SPEC,
    &calico::goldmane::SPEC,
    &calico::enterprise::SPEC,
    &netobserv::SPEC,
    &canonical::json::SPEC,
    &canonical::avro::SPEC,
];

/// A raw input format ingest can decode: a position in [`FORMATS`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format(u8);

impl Format {
    /// Every format, in the order of [`FORMATS`].
    pub const ALL: [Format; FORMATS.len()] = {
        let mut all = [Format(0); FORMATS.len()];
        let mut i = 0;
        while i < all.len() {
            // FORMATS is a short literal list: its positions fit in a u8.
            all[i] = Format(i as u8);
            i += 1;
        }
        all
    };

    /// The format called `name`, for constants: `const AVRO: Format =
    /// Format::named("canonical-avro")`.
    ///
    /// # Panics
    /// When no format has that name — at compile time in a constant, which is what it is for.
    pub const fn named(name: &str) -> Format {
        match Format::find(name) {
            Some(format) => format,
            None => panic!("no input format has this name"),
        }
    }

    /// The format called `name`, if any.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::find(name)
    }

    const fn find(name: &str) -> Option<Format> {
        let mut i = 0;
        while i < FORMATS.len() {
            if bytes_eq(FORMATS[i].name.as_bytes(), name.as_bytes()) {
                return Some(Format(i as u8));
            }
            i += 1;
        }
        None
    }

    /// Its registration: name, detection rules, decoder.
    pub const fn spec(self) -> &'static FormatSpec {
        FORMATS[self.0 as usize]
    }

    /// Stable name: used in configuration, the `flowlake.format` header, metrics and
    /// `FlowEvent::source_format`.
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    /// Position in [`Format::ALL`] (and [`FORMATS`]).
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The known names, comma-separated, for error messages and help texts.
    pub fn known_names() -> String {
        Format::ALL.map(Format::name).join(", ")
    }
}

/// `a == b` in a `const fn`.
const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Format({})", self.name())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that names no format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {name:?}: expected one of {}", Format::known_names())]
pub struct UnknownFormatName {
    /// The name given.
    pub name: String,
}

impl FromStr for Format {
    type Err = UnknownFormatName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::from_name(s).ok_or_else(|| UnknownFormatName { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backquoted words of `text`: "pin `a` or `b`" → a, b.
    fn quoted(text: &str) -> Vec<&str> {
        text.split('`').skip(1).step_by(2).collect()
    }

    /// The first cells of the markdown table whose header row starts with `header`.
    fn first_cells<'a>(doc: &'a str, header: &str) -> Vec<&'a str> {
        doc.lines()
            .skip_while(|line| !line.starts_with(header))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .filter_map(|line| line.split('|').nth(1))
            .collect()
    }

    fn names() -> Vec<&'static str> {
        FORMATS.iter().map(|spec| spec.name).collect()
    }

    #[test]
    fn names_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(format));
            assert_eq!(Format::ALL[format.index()], format);
        }
        assert_eq!(
            "calico".parse::<Format>().map_err(|e| e.to_string()),
            Err(
                "unknown format \"calico\": expected one of hubble, calico-goldmane, \
                 calico-enterprise, netobserv, canonical-json, canonical-avro"
                    .to_owned()
            )
        );
    }

    #[test]
    fn names_are_unique_lowercase_words() {
        let mut names = names();
        for name in &names {
            assert!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FORMATS.len());
    }

    /// Detection's first-key shortcut and its full scan agree only if no key is strong for
    /// two formats, every shared key is one of the format's keys, and precedences differ.
    #[test]
    fn detection_rules_are_unambiguous() {
        let mut owners = std::collections::HashMap::new();
        for spec in FORMATS {
            let detection = &spec.detection;
            for key in detection.keys.keys {
                if let Some(other) = owners.insert(*key, spec.name) {
                    panic!("key {key:?} is strong for both {other} and {}", spec.name);
                }
            }
            for key in detection.shared_keys {
                assert!(detection.keys.keys.contains(key), "{}: {key}", spec.name);
            }
            assert!(
                !detection.framing.is_empty() || !detection.keys.keys.is_empty(),
                "{} cannot be detected",
                spec.name
            );
        }
        for weak in [false, true] {
            let mut precedences: Vec<u8> = FORMATS
                .iter()
                .map(|s| match weak {
                    false => &s.detection.keys,
                    true => &s.detection.weak_keys,
                })
                .filter(|r| !r.keys.is_empty())
                .map(|r| r.precedence)
                .collect();
            let all = precedences.len();
            precedences.sort_unstable();
            precedences.dedup();
            assert_eq!(precedences.len(), all, "two key rules share a precedence");
        }
    }

    /// README.md lists every format, in this order, where it names the input formats and
    /// in the `format` row of the `[ingest]` table.
    #[test]
    fn the_readme_lists_every_format() {
        let readme = include_str!("../../../README.md");
        let table: Vec<&str> = first_cells(readme, "| format | what agents write it |")
            .into_iter()
            .flat_map(quoted)
            .collect();
        assert_eq!(table, names(), "README.md: the input formats table");
        let row = readme
            .lines()
            .find(|line| line.starts_with("| `format` | `--format`"))
            .unwrap_or_default();
        let pinnable: Vec<&str> = row
            .split('|')
            .nth(4)
            .map(|cell| cell.split(';').next().unwrap_or_default())
            .map(quoted)
            .unwrap_or_default();
        assert_eq!(pinnable, names(), "README.md: the `format` row of [ingest]");
    }

    /// docs/formats.md lists every format, in this order, and has a section on each.
    #[test]
    fn the_format_docs_cover_every_format() {
        let docs = include_str!("../../../docs/formats.md");
        let table: Vec<&str> = first_cells(docs, "| format name (")
            .into_iter()
            .flat_map(quoted)
            .collect();
        assert_eq!(table, names(), "docs/formats.md: the formats table");
        let sections: Vec<&str> = docs
            .lines()
            .filter_map(|line| line.strip_prefix("## "))
            .flat_map(|title| title.split(" (").next())
            .flat_map(|names| names.split(" / "))
            .collect();
        assert_eq!(sections, names(), "docs/formats.md: one section per format");
    }
}
