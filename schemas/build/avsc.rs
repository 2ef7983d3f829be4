//! Reading the `.avsc` files into the types of [`Ty`] and the named definitions of [`Def`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::NAMESPACE;

#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
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

pub struct Field {
    pub name: String,
    pub doc: String,
    pub ty: Ty,
}

pub enum Def {
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
pub struct Schemas {
    pub order: Vec<String>,
    pub defs: BTreeMap<String, (Def, Vec<String>, Value)>,
}

impl Schemas {
    /// The type `json` declares, recording any named type it defines. `at` names the field
    /// for errors.
    pub fn ty(&mut self, json: &Value, file: &str, at: &str) -> Ty {
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
