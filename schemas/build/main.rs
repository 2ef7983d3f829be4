//! Generates the Rust side of every record from `avro/*.avsc`, so that each record's shape
//! (its fields, their order and types, its enums' symbols) is declared once, in the schema
//! file, and the Rust types, their Avro binary layout and the partial readers cannot drift
//! from it.
//!
//! [`avsc`] reads the schemas, [`emit`] writes the code. Output, in `OUT_DIR/records.rs`
//! (included by `src/records.rs`):
//! - a struct per record and an enum per Avro enum, with the schema's docs;
//! - `AvroBinary` for each (write and read, fields in schema order) and a `skip_avro`
//!   that checks a datum exactly as `read_avro` would while keeping nothing;
//! - for the records in [`VISITED`], a visitor trait with one method per field, called in
//!   schema order by `visit_avro`, so a reader that keeps a few fields (`src/view.rs`)
//!   names them but never their order;
//! - for the records in [`BORROWED`], a `…Ref<'a>` twin with borrowed strings and a
//!   `write_avro`, for writers that hold the values elsewhere (enrich's table).
//!
//! The mapping of Avro types: `string` → `String`, `long` → `i64`, `int` → `i32`,
//! `boolean` → `bool`, `long`/`timestamp-micros` → `Timestamp`, `bytes` → `Ip` (every
//! `bytes` of ours is an IP address), `["null", T]` → `Option<T>`, `array` → `Vec<T>`,
//! `map` of strings → `Labels`. Anything else fails the build with the field's name.
//! A named type defined in several files (enriched_flow.avsc embeds FlowEvent so the file
//! stands alone) must be defined identically in each.

mod avsc;
mod emit;

use std::path::{Path, PathBuf};
use std::{env, fs};

use serde_json::Value;

use avsc::Schemas;

/// Records read in part through a generated visitor (`src/view.rs`).
const VISITED: &[&str] = &[
    "FlowEvent",
    "EndpointHint",
    "EnrichedFlow",
    "Endpoint",
    "PolicyHit",
];
/// Records that get a borrowed twin (enrich writes endpoints from its identity table).
const BORROWED: &[&str] = &["Endpoint"];
/// The namespace of every schema of ours.
const NAMESPACE: &str = "flowlake";

fn main() {
    let dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let avro = dir.join("avro");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=avro");
    let mut files: Vec<PathBuf> = fs::read_dir(&avro)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", avro.display()))
        .map(|entry| match entry {
            Ok(entry) => entry.path(),
            Err(e) => panic!("cannot list {}: {e}", avro.display()),
        })
        .filter(|path| path.extension().is_some_and(|ext| ext == "avsc"))
        .collect();
    files.sort();
    let mut schemas = Schemas::default();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let text = fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let name = file_name(file);
        schemas.ty(&json, &name, "(top level)");
    }
    let out = PathBuf::from(env_var("OUT_DIR")).join("records.rs");
    fs::write(&out, emit::generate(&schemas))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// A variable cargo sets for every build script.
fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
