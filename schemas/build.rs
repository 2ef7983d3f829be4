//! Generates the Rust side of every record from `avro/*.avsc`, so that each record's shape
//! (its fields, their order and types, its enums' symbols) is declared once, in the schema
//! file, and the Rust types, their Avro binary layout and the partial readers cannot drift
//! from it.
//!
//! Output, in `OUT_DIR/records.rs` (included by `src/records.rs`):
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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use serde_json::Value;

/// Records read in part through a generated visitor (`src/view.rs`).
const VISITED: &[&str] = &["FlowEvent", "EndpointHint"];
/// Records that get a borrowed twin (enrich writes endpoints from its identity table).
const BORROWED: &[&str] = &["Endpoint"];
/// The namespace of every schema of ours.
const NAMESPACE: &str = "flowlake";

#[derive(Clone, Debug, PartialEq)]
enum Ty {
    Str,
    Long,
    Int,
    Bool,
    Ip,
    Timestamp,
    Optional(Box<Ty>),
    Array(Box<Ty>),
    Labels,
    Enum(String),
    Record(String),
}

struct Field {
    name: String,
    doc: String,
    ty: Ty,
}

enum Def {
    Record {
        doc: String,
        fields: Vec<Field>,
    },
    Enum {
        doc: String,
        symbols: Vec<String>,
        default: String,
    },
}

/// Named types in order of first definition, each with the file and JSON it came from.
#[derive(Default)]
struct Schemas {
    order: Vec<String>,
    defs: BTreeMap<String, (Def, Vec<String>, Value)>,
}

fn main() {
    let dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let avro = dir.join("avro");
    println!("cargo:rerun-if-changed=build.rs");
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
    fs::write(&out, generate(&schemas))
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

impl Schemas {
    /// The type `json` declares, recording any named type it defines. `at` names the field
    /// for errors.
    fn ty(&mut self, json: &Value, file: &str, at: &str) -> Ty {
        match json {
            Value::String(name) => match name.as_str() {
                "string" => Ty::Str,
                "long" => Ty::Long,
                "int" => Ty::Int,
                "boolean" => Ty::Bool,
                "bytes" => Ty::Ip,
                other => self.named(other, file, at),
            },
            Value::Array(branches) => match branches.as_slice() {
                [Value::String(null), value] if null == "null" => {
                    Ty::Optional(Box::new(self.ty(value, file, at)))
                }
                _ => panic!("{file}: {at}: only [\"null\", T] unions are supported"),
            },
            Value::Object(object) => {
                let text = |key: &str| object.get(key).and_then(Value::as_str);
                match (text("type"), text("logicalType")) {
                    (Some("long"), Some("timestamp-micros")) => Ty::Timestamp,
                    (Some("array"), _) => Ty::Array(Box::new(self.ty(&object["items"], file, at))),
                    (Some("map"), _) if object["values"] == "string" => Ty::Labels,
                    (Some("record"), _) => self.define_record(json, file),
                    (Some("enum"), _) => self.define_enum(json, file),
                    (Some(primitive), None) => self.ty(&Value::from(primitive), file, at),
                    _ => panic!("{file}: {at}: unsupported type {json}"),
                }
            }
            _ => panic!("{file}: {at}: unsupported type {json}"),
        }
    }

    /// A reference to a named type defined earlier (Avro requires definition before use).
    fn named(&self, name: &str, file: &str, at: &str) -> Ty {
        let short = short_name(name);
        match self.defs.get(short) {
            Some((Def::Record { .. }, _, _)) => Ty::Record(short.to_owned()),
            Some((Def::Enum { .. }, _, _)) => Ty::Enum(short.to_owned()),
            None => panic!("{file}: {at}: unknown type {name}"),
        }
    }

    /// Records a named definition; one already seen must be the same JSON.
    fn define(&mut self, json: &Value, file: &str, def: impl FnOnce(&mut Self) -> Def) -> String {
        let name = json["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: a type without a name"));
        let short = short_name(name).to_owned();
        if let Some(namespace) = json.get("namespace").and_then(Value::as_str) {
            assert_eq!(
                namespace, NAMESPACE,
                "{file}: {name} is outside `{NAMESPACE}`"
            );
        }
        if let Some((_, files, first_json)) = self.defs.get_mut(&short) {
            assert!(
                without_namespace(first_json) == without_namespace(json),
                "{short} is defined differently in {} and {file}",
                files[0]
            );
            if !files.iter().any(|f| f == file) {
                files.push(file.to_owned());
            }
            return short;
        }
        let def = def(self);
        self.order.push(short.clone());
        self.defs
            .insert(short.clone(), (def, vec![file.to_owned()], json.clone()));
        short
    }

    fn define_record(&mut self, json: &Value, file: &str) -> Ty {
        let name = self.define(json, file, |schemas| {
            let record = json["name"].as_str().unwrap_or_default();
            let fields = json["fields"]
                .as_array()
                .unwrap_or_else(|| panic!("{file}: {record} has no fields"))
                .iter()
                .map(|field| {
                    let name = field["name"].as_str().unwrap_or_default().to_owned();
                    let at = format!("{record}.{name}");
                    Field {
                        ty: schemas.ty(&field["type"], file, &at),
                        doc: doc_of(field, &at),
                        name,
                    }
                })
                .collect();
            Def::Record {
                doc: doc_of(json, record),
                fields,
            }
        });
        Ty::Record(name)
    }

    fn define_enum(&mut self, json: &Value, file: &str) -> Ty {
        let name = self.define(json, file, |_| {
            let symbols: Vec<String> = json["symbols"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            // Avro's default symbol, else the first (what Rust's `Default` has always been).
            let default = json["default"]
                .as_str()
                .or(symbols.first().map(String::as_str))
                .unwrap_or_else(|| panic!("{file}: enum {json} has no symbols"))
                .to_owned();
            Def::Enum {
                doc: doc_of(json, "enum"),
                symbols,
                default,
            }
        });
        Ty::Enum(name)
    }
}

fn short_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// A definition without its `namespace` key, which only an embedded top-level repeats.
fn without_namespace(json: &Value) -> Value {
    let mut json = json.clone();
    if let Some(object) = json.as_object_mut() {
        object.remove("namespace");
    }
    json
}

fn doc_of(json: &Value, at: &str) -> String {
    json["doc"]
        .as_str()
        .unwrap_or_else(|| panic!("{at} has no doc: every record, enum and field needs one"))
        .to_owned()
}

/// `Reporter` from `reporter`, `NetworkSet` from `network_set`.
fn camel(symbol: &str) -> String {
    symbol
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A field name as a Rust identifier.
fn ident(name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else",
        "enum", "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match",
        "mod", "move", "mut", "priv", "pub", "ref", "return", "static", "struct", "trait", "true",
        "try", "type", "unsafe", "use", "where", "while", "yield",
    ];
    if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_owned()
    }
}

/// `text` as `///` lines of at most 92 columns after `indent`.
fn doc_lines(out: &mut String, indent: &str, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + 4 + line.len() + 1 + word.len() > 92 {
            let _ = writeln!(out, "{indent}/// {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = writeln!(out, "{indent}/// {line}");
}

fn rust_type(ty: &Ty) -> String {
    match ty {
        Ty::Str => "String".into(),
        Ty::Long => "i64".into(),
        Ty::Int => "i32".into(),
        Ty::Bool => "bool".into(),
        Ty::Ip => "Ip".into(),
        Ty::Timestamp => "Timestamp".into(),
        Ty::Optional(inner) => format!("Option<{}>", rust_type(inner)),
        Ty::Array(inner) => format!("Vec<{}>", rust_type(inner)),
        Ty::Labels => "Labels".into(),
        Ty::Enum(name) | Ty::Record(name) => name.clone(),
    }
}

/// An expression of type `Result<(), ReadError>` that checks one `ty` at `r` as its
/// `read_avro` would, keeping nothing.
fn skip_expr(schemas: &Schemas, ty: &Ty, path: &str) -> String {
    match ty {
        Ty::Str => format!("r.skip_str({path:?})"),
        Ty::Long | Ty::Timestamp => format!("r.long({path:?}).map(drop)"),
        Ty::Int => format!("r.int({path:?}).map(drop)"),
        Ty::Bool => format!("r.boolean({path:?}).map(drop)"),
        Ty::Ip => format!("Ip::read_avro(r, {path:?}).map(drop)"),
        Ty::Enum(name) => format!("{name}::read_avro(r, {path:?}).map(drop)"),
        Ty::Record(name) => format!("{name}::skip_avro(r)"),
        Ty::Optional(inner) if **inner == Ty::Str => format!("r.skip_optional_str({path:?})"),
        Ty::Optional(inner) => format!(
            "if r.present({path:?})? {{ {} }} else {{ Ok(()) }}",
            skip_expr(schemas, inner, path)
        ),
        Ty::Array(inner) => format!(
            "r.blocks({path:?}, {}, |r| {})",
            min_bytes(schemas, inner),
            skip_expr(schemas, inner, path)
        ),
        Ty::Labels => {
            format!("r.blocks({path:?}, 2, |r| {{ r.skip_str({path:?})?; r.skip_str({path:?}) }})")
        }
    }
}

/// The fewest bytes a `ty` takes, which bounds how many items a block count may claim.
fn min_bytes(schemas: &Schemas, ty: &Ty) -> usize {
    match ty {
        Ty::Record(name) => match &schemas.defs[name].0 {
            Def::Record { fields, .. } => fields.iter().map(|f| min_bytes(schemas, &f.ty)).sum(),
            Def::Enum { .. } => 1,
        },
        _ => 1,
    }
}

fn generate(schemas: &Schemas) -> String {
    let mut out = String::new();
    out.push_str(
        "// @generated by schemas/build.rs from schemas/avro/*.avsc: edit the schema files, not\n\
         // this file. Field order is schema order, which is the Avro binary layout.\n",
    );
    for name in &schemas.order {
        let (def, files, _) = &schemas.defs[name];
        let file = &files.join(", ");
        match def {
            Def::Enum {
                doc,
                symbols,
                default,
            } => enum_code(&mut out, name, file, doc, symbols, default),
            Def::Record { doc, fields } => {
                record_code(&mut out, schemas, name, file, doc, fields);
                if VISITED.contains(&name.as_str()) {
                    visitor_code(&mut out, schemas, name, fields);
                }
                if BORROWED.contains(&name.as_str()) {
                    borrowed_code(&mut out, name, fields);
                }
            }
        }
    }
    for wanted in VISITED.iter().chain(BORROWED) {
        assert!(
            schemas.defs.contains_key(*wanted),
            "build.rs names {wanted}, which no schema defines"
        );
    }
    out
}

fn enum_code(
    out: &mut String,
    name: &str,
    file: &str,
    doc: &str,
    symbols: &[String],
    default: &str,
) {
    let _ = writeln!(out);
    doc_lines(out, "", doc);
    let _ = writeln!(out, "///");
    doc_lines(
        out,
        "",
        &format!(
            "Avro enum `{NAMESPACE}.{name}` ({file}); variants in symbol order, which is their index on the wire."
        ),
    );
    let _ = writeln!(
        out,
        "#[derive(\n    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,\n)]"
    );
    let _ = writeln!(out, "pub enum {name} {{");
    for symbol in symbols {
        let _ = writeln!(out, "    /// `{symbol}`.");
        if symbol == default {
            let _ = writeln!(out, "    #[default]");
        }
        let _ = writeln!(out, "    #[serde(rename = {symbol:?})]");
        let _ = writeln!(out, "    {},", camel(symbol));
    }
    let _ = writeln!(out, "}}");
    let variants: Vec<String> = symbols
        .iter()
        .map(|s| format!("{name}::{}", camel(s)))
        .collect();
    let _ = writeln!(
        out,
        "
/// Written as the index of its symbol.
impl AvroBinary for {name} {{
    #[inline]
    fn write_avro(&self, out: &mut Vec<u8>) {{
        write::symbol(out, *self as usize);
    }}
    #[inline]
    fn read_avro(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, ReadError> {{
        const SYMBOLS: &[{name}] = &[{}];
        let index = reader.symbol(field, SYMBOLS.len())?;
        Ok(SYMBOLS[index])
    }}
}}",
        variants.join(", ")
    );
}

fn record_code(
    out: &mut String,
    schemas: &Schemas,
    name: &str,
    file: &str,
    doc: &str,
    fields: &[Field],
) {
    let _ = writeln!(out);
    doc_lines(out, "", doc);
    let _ = writeln!(out, "///");
    doc_lines(
        out,
        "",
        &format!("Avro record `{NAMESPACE}.{name}` ({file})."),
    );
    let _ = writeln!(
        out,
        "#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]"
    );
    let _ = writeln!(out, "#[serde(default)]");
    let _ = writeln!(out, "pub struct {name} {{");
    for field in fields {
        doc_lines(out, "    ", &field.doc);
        let _ = writeln!(
            out,
            "    pub {}: {},",
            ident(&field.name),
            rust_type(&field.ty)
        );
    }
    let _ = writeln!(out, "}}");

    let _ = writeln!(
        out,
        "\n/// Fields in schema order.\nimpl AvroBinary for {name} {{"
    );
    let _ = writeln!(out, "    fn write_avro(&self, out: &mut Vec<u8>) {{");
    for field in fields {
        let _ = writeln!(out, "        self.{}.write_avro(out);", ident(&field.name));
    }
    let _ = writeln!(out, "    }}");
    let _ = writeln!(
        out,
        "    fn read_avro(reader: &mut Reader<'_>, _field: &'static str) -> Result<Self, ReadError> {{"
    );
    let _ = writeln!(out, "        Ok({name} {{");
    for field in fields {
        let _ = writeln!(
            out,
            "            {}: AvroBinary::read_avro(reader, \"{name}.{}\")?,",
            ident(&field.name),
            field.name
        );
    }
    let _ = writeln!(out, "        }})\n    }}\n}}");

    let _ = writeln!(out, "\nimpl {name} {{");
    let _ = writeln!(
        out,
        "    /// Checks one `{name}` datum as [`AvroBinary::read_avro`] would, keeping nothing."
    );
    let _ = writeln!(out, "    #[inline]");
    let _ = writeln!(
        out,
        "    pub fn skip_avro(r: &mut Reader<'_>) -> Result<(), ReadError> {{"
    );
    for field in fields {
        let path = format!("{name}.{}", field.name);
        let _ = writeln!(out, "        {}?;", skip_expr(schemas, &field.ty, &path));
    }
    let _ = writeln!(out, "        Ok(())\n    }}\n}}");
}

fn visitor_code(out: &mut String, schemas: &Schemas, name: &str, fields: &[Field]) {
    let _ = writeln!(
        out,
        "
/// Reads a `{name}` datum field by field for [`{name}::visit_avro`], which calls one
/// method per field in schema order with the reader at that field and its name for errors.
/// Each method must read its field whole; by default it checks the field and keeps nothing.
pub trait {name}Visitor<'a> {{"
    );
    for field in fields {
        let path = format!("{name}.{}", field.name);
        let _ = writeln!(out, "    /// `{}`.", field.name);
        let _ = writeln!(out, "    #[inline]");
        let _ = writeln!(
            out,
            "    fn {}(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {{",
            ident(&field.name)
        );
        let _ = writeln!(out, "        let _ = field;");
        let _ = writeln!(out, "        {}", skip_expr(schemas, &field.ty, &path));
        let _ = writeln!(out, "    }}");
    }
    let _ = writeln!(out, "}}");
    let _ = writeln!(
        out,
        "
impl {name} {{
    /// Reads one `{name}` datum through `visitor`, field by field in schema order.
    #[inline]
    pub fn visit_avro<'a>(
        r: &mut Reader<'a>,
        visitor: &mut impl {name}Visitor<'a>,
    ) -> Result<(), ReadError> {{"
    );
    for field in fields {
        let _ = writeln!(
            out,
            "        visitor.{}(r, \"{name}.{}\")?;",
            ident(&field.name),
            field.name
        );
    }
    let _ = writeln!(out, "        Ok(())\n    }}\n}}");
}

/// The borrowed form of a field type, and how to write and default it.
fn borrowed(ty: &Ty, field: &str) -> (String, String, String) {
    let f = ident(field);
    match ty {
        Ty::Str => (
            "&'a str".into(),
            format!("write::string(out, self.{f})"),
            "\"\"".into(),
        ),
        Ty::Optional(inner) if **inner == Ty::Str => (
            "Option<&'a str>".into(),
            format!("write::optional_string(out, self.{f})"),
            "None".into(),
        ),
        Ty::Labels => (
            "&'a Labels".into(),
            format!("self.{f}.write_avro(out)"),
            "&NO_LABELS".into(),
        ),
        Ty::Array(inner) if **inner == Ty::Str => (
            "&'a [String]".into(),
            format!(
                "write::string_array(out, self.{f}.len(), self.{f}.iter().map(String::as_str))"
            ),
            "&[]".into(),
        ),
        Ty::Long | Ty::Int | Ty::Bool | Ty::Ip | Ty::Timestamp | Ty::Enum(_) => (
            rust_type(ty),
            format!("self.{f}.write_avro(out)"),
            "Default::default()".into(),
        ),
        Ty::Optional(inner) if !matches!(**inner, Ty::Record(_) | Ty::Array(_)) => (
            rust_type(ty),
            format!("self.{f}.write_avro(out)"),
            "None".into(),
        ),
        _ => panic!("build.rs: no borrowed form for field `{field}` ({ty:?})"),
    }
}

fn borrowed_code(out: &mut String, name: &str, fields: &[Field]) {
    let _ = writeln!(
        out,
        "
/// [`{name}`] with borrowed strings, labels and lists: writes the same Avro as the owned
/// record, for a writer that holds the values elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct {name}Ref<'a> {{"
    );
    let mut writes = String::new();
    let mut defaults = String::new();
    let mut from = String::new();
    for field in fields {
        let (ty, write, default) = borrowed(&field.ty, &field.name);
        let f = ident(&field.name);
        doc_lines(out, "    ", &field.doc);
        let _ = writeln!(out, "    pub {f}: {ty},");
        let _ = writeln!(writes, "        {write};");
        let _ = writeln!(defaults, "            {f}: {default},");
        let by_ref = match &field.ty {
            Ty::Str | Ty::Labels | Ty::Array(_) => format!("&record.{f}"),
            Ty::Optional(inner) if **inner == Ty::Str => format!("record.{f}.as_deref()"),
            _ => format!("record.{f}"),
        };
        let _ = writeln!(from, "            {f}: {by_ref},");
    }
    let _ = writeln!(
        out,
        "}}

impl {name}Ref<'_> {{
    /// Appends the Avro binary encoding of the `{name}` this borrows.
    #[inline]
    pub fn write_avro(&self, out: &mut Vec<u8>) {{
{writes}    }}
}}

/// Every field empty or null, as [`{name}::default`].
impl Default for {name}Ref<'_> {{
    fn default() -> Self {{
        {name}Ref {{
{defaults}        }}
    }}
}}

impl<'a> From<&'a {name}> for {name}Ref<'a> {{
    fn from(record: &'a {name}) -> Self {{
        {name}Ref {{
{from}        }}
    }}
}}"
    );
    if !out.contains("static NO_LABELS") {
        let _ = writeln!(
            out,
            "\n/// The empty labels a borrowed record defaults to.\nstatic NO_LABELS: Labels = Labels::new();"
        );
    }
}
