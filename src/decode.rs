//! `flowlake decode`: what ingest would make of the records in a file, without a broker.
//!
//! Each record goes through [`flowlake_ingest::decode`] — the very function the ingest stage
//! runs per message, with ingest's default size and clock-skew limits — so what this prints
//! is what ingest would produce or dead-letter. Accepted records are written to stdout as
//! canonical JSON, one per line; rejections go to stderr as `FILE:LINE: CLASS: reason`,
//! followed by one summary line. Nothing is skipped silently: every non-blank line (or every
//! record of a JSON document) is either printed or reported.
//!
//! A file is read in one of three modes, and stderr says which:
//! - **lines** (the default): one message per line, as agents write them to Kafka;
//! - **JSON document**: a file that starts with `{` or `[` and is one or more JSON values
//!   that span several lines or are arrays (`jq .` output, the Calico protojson sample,
//!   `antctl get flowrecords -o json`); each object, and each element of an array, is one
//!   record, numbered by the line it starts on;
//! - **one message**: with `--format canonical-avro` the whole file is one Avro message
//!   (Avro has no line framing).
//!
//! Exit status: 0 when every file was read (rejections included), 1 when a file could not
//! be read (the others are still decoded), 2 for bad arguments.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flowlake_ingest::formats::canonical;
use flowlake_ingest::{DecodeContext, Format, IngestSettings};
use serde::de::IgnoredAny;

/// Exit status when a file could not be read.
const EXIT_UNREADABLE: u8 = 1;
/// Exit status for bad arguments (clap's own status for usage errors).
const EXIT_USAGE: u8 = 2;

/// Default for `--cluster-id`: records that name no cluster are attributed to it.
const DEFAULT_CLUSTER_ID: &str = "unknown";

/// The file name that means standard input.
const STDIN: &str = "-";

/// Arguments of `flowlake decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    // The help names the formats of ingest's registration list, so it cannot go stale.
    #[arg(long, value_name = "FORMAT", help = format_help())]
    format: Option<Format>,
    /// Cluster attributed to records that name none, as ingest's --cluster-id.
    #[arg(long, value_name = "CLUSTER", default_value = DEFAULT_CLUSTER_ID)]
    cluster_id: String,
    /// Files to read; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// `--format`'s help: every format's name.
fn format_help() -> String {
    format!(
        "Decode every record as this format instead of detecting it per record: one of {}",
        Format::known_names()
    )
}

/// The one format whose file is a single message (Avro is binary: lines mean nothing).
const CANONICAL_AVRO: Format = Format::named(canonical::avro::NAME);

/// How a file was split into records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One message per non-blank line.
    Lines,
    /// One or more JSON values; objects and array elements are records.
    JsonDocument,
    /// The whole file is one message.
    OneMessage,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Lines => "line by line",
            Mode::JsonDocument => "as a JSON document",
            Mode::OneMessage => "as one message",
        })
    }
}

/// One record of a file: the line it starts on (1-based) and its bytes.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    line: usize,
    bytes: &'a [u8],
}

/// Splits `content` into records; see the module documentation for the modes.
fn split(content: &[u8], pinned: Option<Format>) -> (Mode, Vec<Record<'_>>) {
    if pinned == Some(CANONICAL_AVRO) {
        let records = if content.is_empty() {
            Vec::new()
        } else {
            vec![Record {
                line: 1,
                bytes: content,
            }]
        };
        return (Mode::OneMessage, records);
    }
    if let Some(records) = json_document(content) {
        return (Mode::JsonDocument, records);
    }
    (Mode::Lines, lines(content))
}

/// Non-blank lines, without their line terminator (`\n` or `\r\n`).
fn lines(content: &[u8]) -> Vec<Record<'_>> {
    content
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| Record {
            line: i + 1,
            bytes: line.strip_suffix(b"\r").unwrap_or(line),
        })
        .filter(|r| !r.bytes.iter().all(u8::is_ascii_whitespace))
        .collect()
}

/// The records of a file that is one or more JSON values, when reading it line by line
/// would split a record: some value spans several lines, or is an array. None otherwise
/// (not JSON as a whole, or plain JSON Lines, which line mode reads the same).
fn json_document(content: &[u8]) -> Option<Vec<Record<'_>>> {
    let first = content.iter().position(|b| !b.is_ascii_whitespace())?;
    if !matches!(content[first], b'{' | b'[') {
        return None;
    }
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(content).into_iter::<IgnoredAny>();
    let mut end = 0;
    while let Some(value) = stream.next() {
        value.ok()?;
        let start = end + skip_whitespace(&content[end..]);
        end = stream.byte_offset();
        values.push((start, &content[start..end]));
    }
    let spans_lines = values.iter().any(|(_, v)| v.contains(&b'\n'));
    let has_array = values.iter().any(|(_, v)| v.first() == Some(&b'['));
    if !spans_lines && !has_array {
        return None;
    }
    let mut records = Vec::new();
    for (start, value) in values {
        if value.first() == Some(&b'[') {
            for (offset, element) in array_elements(value)? {
                records.push((start + offset, element));
            }
        } else {
            records.push((start, value));
        }
    }
    let mut line = 1;
    let mut counted = 0;
    Some(
        records
            .into_iter()
            .map(|(start, bytes)| {
                line += content[counted..start]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                counted = start;
                Record { line, bytes }
            })
            .collect(),
    )
}

/// The elements of a JSON array already known to parse, with their offsets in it.
fn array_elements(array: &[u8]) -> Option<Vec<(usize, &[u8])>> {
    let mut elements = Vec::new();
    let mut pos = 1; // after `[`
    loop {
        pos += skip_whitespace(&array[pos..]);
        match array.get(pos)? {
            b']' => return Some(elements),
            b',' => pos += 1,
            _ => {
                let mut one =
                    serde_json::Deserializer::from_slice(&array[pos..]).into_iter::<IgnoredAny>();
                one.next()?.ok()?;
                let len = one.byte_offset();
                elements.push((pos, &array[pos..pos + len]));
                pos += len;
            }
        }
    }
}

fn skip_whitespace(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len())
}

/// Counts for the summary line.
#[derive(Debug, Default)]
struct Summary {
    decoded: usize,
    rejected: BTreeMap<&'static str, usize>,
    files_read: usize,
    unreadable: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejected: usize = self.rejected.values().sum();
        write!(f, "decoded {}, rejected {rejected}", self.decoded)?;
        if rejected > 0 {
            let classes: Vec<String> = self
                .rejected
                .iter()
                .map(|(class, n)| format!("{class} {n}"))
                .collect();
            write!(f, " (by class: {})", classes.join(", "))?;
        }
        let plural = if self.files_read == 1 { "" } else { "s" };
        write!(f, " from {} file{plural}", self.files_read)?;
        if self.unreadable > 0 {
            write!(f, "; {} could not be read", self.unreadable)?;
        }
        Ok(())
    }
}

/// Decodes the records of one file's `content`, writing events to `out` and rejections to
/// `err`.
fn decode_content(
    name: &str,
    content: &[u8],
    ctx: &DecodeContext,
    summary: &mut Summary,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    let (mode, records) = split(content, ctx.format);
    let plural = if records.len() == 1 { "" } else { "s" };
    writeln!(err, "{name}: read {mode}, {} record{plural}", records.len())?;
    for record in records {
        match flowlake_ingest::decode(record.bytes, ctx) {
            Ok((_, event)) => {
                serde_json::to_writer(&mut *out, &event)?;
                out.write_all(b"\n")?;
                summary.decoded += 1;
            }
            Err(rejection) => {
                writeln!(
                    err,
                    "{name}:{}: {}: {}",
                    record.line, rejection.class, rejection.message
                )?;
                *summary.rejected.entry(rejection.class).or_default() += 1;
            }
        }
    }
    Ok(())
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    if path.as_os_str() == STDIN {
        let mut content = Vec::new();
        io::stdin().lock().read_to_end(&mut content)?;
        Ok(content)
    } else {
        std::fs::read(path)
    }
}

/// Runs `flowlake decode`.
pub fn run(args: &DecodeArgs) -> ExitCode {
    let settings = IngestSettings {
        format: args.format.map(|f| f.name().to_owned()),
        ..IngestSettings::for_cluster(args.cluster_id.clone())
    };
    let ctx = match DecodeContext::new(&settings) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("flowlake decode: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut err = io::stderr().lock();
    let mut summary = Summary::default();
    let written: io::Result<()> = (|| {
        for path in &args.files {
            let name = if path.as_os_str() == STDIN {
                "<stdin>".to_owned()
            } else {
                path.display().to_string()
            };
            match read(path) {
                Ok(content) => {
                    summary.files_read += 1;
                    decode_content(&name, &content, &ctx, &mut summary, &mut out, &mut err)?;
                    // Events of one file before the next file's notes, when both go to a terminal.
                    out.flush()?;
                }
                Err(e) => {
                    summary.unreadable += 1;
                    writeln!(err, "flowlake decode: {name}: cannot read: {e}")?;
                }
            }
        }
        out.flush()?;
        writeln!(err, "{summary}")
    })();
    match written {
        // A closed pipe (`… | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("flowlake decode: cannot write the output: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
        _ if summary.unreadable > 0 => ExitCode::from(EXIT_UNREADABLE),
        _ => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(records: &[Record<'_>]) -> Vec<(usize, String)> {
        records
            .iter()
            .map(|r| (r.line, String::from_utf8_lossy(r.bytes).into_owned()))
            .collect()
    }

    #[test]
    fn json_lines_are_read_line_by_line_without_blank_lines() {
        let content = b"{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json\n";
        let (mode, records) = split(content, None);
        assert_eq!(mode, Mode::Lines);
        assert_eq!(
            lines_of(&records),
            vec![
                (1, "{\"a\":1}".to_owned()),
                (4, "{\"b\":2}".to_owned()),
                (5, "not json".to_owned())
            ]
        );
    }

    #[test]
    fn pretty_printed_objects_and_arrays_are_documents() {
        let pretty = b"{\n  \"a\": 1\n}\n{\n  \"b\": [1, 2]\n}\n";
        let (mode, records) = split(pretty, None);
        assert_eq!(mode, Mode::JsonDocument);
        assert_eq!(
            lines_of(&records),
            vec![
                (1, "{\n  \"a\": 1\n}".to_owned()),
                (4, "{\n  \"b\": [1, 2]\n}".to_owned())
            ]
        );

        let array = b"[\n  {\"a\": 1},\n  {\n    \"b\": 2\n  } , []\n]";
        let (mode, records) = split(array, None);
        assert_eq!(mode, Mode::JsonDocument);
        assert_eq!(
            lines_of(&records),
            vec![
                (2, "{\"a\": 1}".to_owned()),
                (3, "{\n    \"b\": 2\n  }".to_owned()),
                (5, "[]".to_owned())
            ]
        );

        // An array on one line is a document too; an empty one holds no record.
        assert_eq!(split(b"[{\"a\":1}]", None).0, Mode::JsonDocument);
        assert_eq!(split(b" []\n", None), (Mode::JsonDocument, Vec::new()));
    }

    #[test]
    fn a_broken_document_is_read_line_by_line() {
        let broken = b"{\n  \"a\": 1,\n}\n";
        let (mode, records) = split(broken, None);
        assert_eq!(mode, Mode::Lines);
        assert_eq!(records.len(), 3);
        assert_eq!(split(b"# comment\n{\n}\n", None).0, Mode::Lines);
    }

    #[test]
    fn pinned_avro_is_one_message() {
        let avro = b"\xc3\x01\n\x00\x0a";
        assert_eq!(
            split(avro, Some(CANONICAL_AVRO)),
            (
                Mode::OneMessage,
                vec![Record {
                    line: 1,
                    bytes: &avro[..]
                }]
            )
        );
        assert_eq!(split(b"", Some(CANONICAL_AVRO)).1, Vec::new());
        assert_eq!(
            split(b"{\"a\":1}", Some(Format::named("hubble"))).0,
            Mode::Lines
        );
    }

    #[test]
    fn decodes_and_reports_with_lines_and_classes() -> Result<(), Box<dyn std::error::Error>> {
        let ctx = DecodeContext::new(&IngestSettings::for_cluster(DEFAULT_CLUSTER_ID))?;
        let content = b"{\"start_time\":\"2023-11-14T22:00:00Z\",\"src_ip\":\"10.0.0.1\"}\n\
                        \n\
                        hello\n\
                        {\"start_time\":\"2023-11-14T22:00:00Z\",\"dst_port\":70000}\n";
        let mut summary = Summary {
            files_read: 1,
            ..Summary::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        decode_content("f.jsonl", content, &ctx, &mut summary, &mut out, &mut err)?;
        let event: serde_json::Value = serde_json::from_slice(&out)?;
        assert_eq!(event["src_ip"], "10.0.0.1");
        assert_eq!(event["cluster_id"], DEFAULT_CLUSTER_ID);
        let err = String::from_utf8(err)?;
        let err: Vec<&str> = err.lines().collect();
        assert_eq!(err[0], "f.jsonl: read line by line, 3 records");
        assert!(err[1].starts_with("f.jsonl:3: not_json: "), "{}", err[1]);
        assert!(
            err[2].starts_with("f.jsonl:4: invalid_port: "),
            "{}",
            err[2]
        );
        assert_eq!(
            summary.to_string(),
            "decoded 1, rejected 2 (by class: invalid_port 1, not_json 1) from 1 file"
        );
        Ok(())
    }
}
