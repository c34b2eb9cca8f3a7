//! Parsing Canonical Form (PCF) of an Avro schema and its CRC-64-AVRO fingerprint, as the
//! Avro specification defines them ("Parsing Canonical Form for Schemas", "Schema
//! Fingerprints"). The fingerprint is what a single-object header names its writer schema by,
//! so it has to be the value every other Avro implementation computes.
//!
//! apache-avro 0.21's `Schema::canonical_form` is not the spec's form: it keeps a logical
//! type's underlying type as `{"type":"long"}` where the spec reduces it to `"long"`
//! (AVRO-4004, apache/avro#2976), so its fingerprints differ from Java's and fastavro's for
//! every schema with a logical type. This module works from the schema's JSON text instead,
//! so what apache-avro's parser keeps, drops or renames cannot change the result either.

use serde_json::{Map, Value};
use std::collections::HashSet;

/// The spec's primitive type names: never namespaced, never redefinable.
const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The spec's `fingerprint64` seed, `EMPTY`: the CRC-64-AVRO of no bytes.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

/// The spec's `FP_TABLE`, built at compile time.
const FP_TABLE: [u64; 256] = fp_table();

const fn fp_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

/// CRC-64-AVRO ("Rabin") fingerprint of a Parsing Canonical Form.
///
/// The single-object header carries it as 8 little-endian bytes (`to_le_bytes`). Java and
/// fastavro print those bytes as hex, so their `c1cae31694ceffe6` is the value
/// `0xe6ffce9416e3cac1` here.
pub fn fingerprint(pcf: &str) -> u64 {
    pcf.bytes().fold(EMPTY, |fp, byte| {
        (fp >> 8) ^ FP_TABLE[((fp ^ u64::from(byte)) & 0xff) as usize]
    })
}

/// The Parsing Canonical Form of a schema given as parsed JSON text.
///
/// Fails on JSON that is not a schema in the ways the form depends on: a named type without a
/// name, a name defined twice or referenced before it is defined, an array or map without its
/// item type, an enum without string symbols, a fixed type without an integer size, a `type`
/// that is itself an object or array (which Java and fastavro refuse too).
pub fn parsing_canonical_form(schema_json: &Value) -> Result<String, String> {
    let mut form = Form::default();
    form.schema(schema_json, None)?;
    Ok(form.out)
}

/// The form written so far and the fullnames defined in it, which references resolve against.
#[derive(Default)]
struct Form {
    out: String,
    defined: HashSet<String>,
}

impl Form {
    /// `namespace` is the enclosing named type's, which short names are resolved in.
    fn schema(&mut self, schema: &Value, namespace: Option<&str>) -> Written {
        match schema {
            Value::String(name) => self.reference(name, namespace),
            Value::Array(branches) => self.union(branches, namespace),
            Value::Object(attributes) => self.object(attributes, namespace),
            other => Err(format!(
                "a schema is a string, array or object, not {other}"
            )),
        }
    }

    /// `[PRIMITIVES]` and `[FULLNAMES]`: a primitive stays its name; a named type used again
    /// (referenced by name) is just its fullname.
    fn reference(&mut self, name: &str, namespace: Option<&str>) -> Written {
        if PRIMITIVES.contains(&name) {
            self.string(name);
            return Ok(());
        }
        let fullname = self.resolve(name, namespace)?;
        self.string(&fullname);
        Ok(())
    }

    /// A short name is looked up in the enclosing namespace first, then in the null namespace
    /// (as Java's parser does); a dotted name is already full.
    fn resolve(&self, name: &str, namespace: Option<&str>) -> Result<String, String> {
        let in_namespace = match namespace {
            Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
            _ => name.to_owned(),
        };
        [in_namespace, name.to_owned()]
            .into_iter()
            .find(|candidate| self.defined.contains(candidate))
            .ok_or_else(|| format!("type {name:?} is referenced before it is defined"))
    }

    fn union(&mut self, branches: &[Value], namespace: Option<&str>) -> Written {
        self.out.push('[');
        for (i, branch) in branches.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.schema(branch, namespace)?;
        }
        self.out.push(']');
        Ok(())
    }

    /// `[STRIP]`: only the attributes that shape the binary encoding survive, so a logical type
    /// (`{"type":"long","logicalType":"timestamp-millis"}`) becomes its underlying type.
    fn object(&mut self, attributes: &Map<String, Value>, namespace: Option<&str>) -> Written {
        match attributes.get("type") {
            Some(Value::String(kind)) => match kind.as_str() {
                "record" | "error" | "enum" | "fixed" => self.named(kind, attributes, namespace),
                "array" => self.container("items", attributes, namespace),
                "map" => self.container("values", attributes, namespace),
                _ => self.reference(kind, namespace),
            },
            _ => Err("a schema object needs a \"type\"".into()),
        }
    }

    /// `{"type":"array","items":…}` or `{"type":"map","values":…}`.
    fn container(
        &mut self,
        key: &str,
        attributes: &Map<String, Value>,
        ns: Option<&str>,
    ) -> Written {
        let kind = if key == "items" { "array" } else { "map" };
        let element = attributes
            .get(key)
            .ok_or_else(|| format!("an {kind} needs {key:?}"))?;
        self.out
            .push_str(&format!("{{\"type\":\"{kind}\",\"{key}\":"));
        self.schema(element, ns)?;
        self.out.push('}');
        Ok(())
    }

    /// `[ORDER]`: name, type, then fields, symbols or size. The name is defined before the
    /// fields are written so that a recursive record can refer to itself.
    fn named(&mut self, kind: &str, attributes: &Map<String, Value>, ns: Option<&str>) -> Written {
        let (fullname, namespace) = fullname(attributes, ns)?;
        if PRIMITIVES.contains(&fullname.as_str()) {
            return Err(format!("primitive type {fullname:?} cannot be redefined"));
        }
        if !self.defined.insert(fullname.clone()) {
            return Err(format!("type {fullname:?} is defined twice"));
        }
        self.out.push_str("{\"name\":");
        self.string(&fullname);
        match kind {
            "enum" => {
                self.out.push_str(",\"type\":\"enum\",\"symbols\":");
                self.symbols(attributes.get("symbols"))?;
            }
            "fixed" => {
                let size = size(attributes.get("size"))?;
                self.out
                    .push_str(&format!(",\"type\":\"fixed\",\"size\":{size}"));
            }
            _ => {
                self.out.push_str(",\"type\":\"record\",\"fields\":");
                self.fields(attributes.get("fields"), namespace.as_deref())?;
            }
        }
        self.out.push('}');
        Ok(())
    }

    /// Each field keeps its name and type only (no default, doc, aliases or order).
    fn fields(&mut self, fields: Option<&Value>, namespace: Option<&str>) -> Written {
        let fields = fields
            .and_then(Value::as_array)
            .ok_or("a record needs a \"fields\" array")?;
        self.out.push('[');
        for (i, field) in fields.iter().enumerate() {
            let name = field.get("name").and_then(Value::as_str);
            let (Some(name), Some(schema)) = (name, field.get("type")) else {
                return Err(format!("field {i} needs a \"name\" and a \"type\""));
            };
            self.out
                .push_str(if i > 0 { ",{\"name\":" } else { "{\"name\":" });
            self.string(name);
            self.out.push_str(",\"type\":");
            self.schema(schema, namespace)?;
            self.out.push('}');
        }
        self.out.push(']');
        Ok(())
    }

    fn symbols(&mut self, symbols: Option<&Value>) -> Written {
        let symbols = symbols
            .and_then(Value::as_array)
            .ok_or("an enum needs a \"symbols\" array")?;
        self.out.push('[');
        for (i, symbol) in symbols.iter().enumerate() {
            let symbol = symbol.as_str().ok_or("enum symbols are strings")?;
            if i > 0 {
                self.out.push(',');
            }
            self.string(symbol);
        }
        self.out.push(']');
        Ok(())
    }

    /// `[STRINGS]`: serde_json escapes only what JSON requires and writes everything else as
    /// UTF-8, which is what the spec asks for.
    fn string(&mut self, s: &str) {
        self.out.push_str(&Value::from(s).to_string());
    }
}

/// What each writer of a piece of the form returns: the form goes to `Form::out`.
type Written = Result<(), String>;

/// `[FULLNAMES]`: a dotted name is already full; otherwise the `namespace` attribute qualifies
/// it (`""` meaning the null namespace), and without one the enclosing named type's namespace.
/// Returns the fullname and the namespace the type's own fields are resolved in.
fn fullname(
    attributes: &Map<String, Value>,
    enclosing: Option<&str>,
) -> Result<(String, Option<String>), String> {
    let name = attributes
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .ok_or("a named type needs a \"name\"")?;
    if let Some((namespace, _)) = name.rsplit_once('.') {
        return Ok((name.to_owned(), Some(namespace.to_owned())));
    }
    let namespace = match attributes.get("namespace") {
        Some(Value::String(ns)) => Some(ns.as_str()).filter(|ns| !ns.is_empty()),
        None | Some(Value::Null) => enclosing,
        Some(other) => return Err(format!("namespace {other} of {name:?} is not a string")),
    };
    Ok(match namespace {
        Some(ns) => (format!("{ns}.{name}"), Some(ns.to_owned())),
        None => (name.to_owned(), None),
    })
}

/// `[INTEGERS]`: the size is written as a bare integer, also when the schema quoted it.
fn size(size: Option<&Value>) -> Result<u64, String> {
    match size {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| "a fixed type needs a non-negative integer \"size\"".into())
}

#[cfg(test)]
mod tests;
