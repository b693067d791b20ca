//! Protobuf text format printer, byte-compatible with protobuf C++'s
//! `TextFormat::Print` (what Caffe's own tools write): set fields only, in
//! field-number order, two spaces of indentation per level, enums by name,
//! strings C-escaped, floats in the shortest `%g` form that reads back exactly.
use std::fmt::Write as _;

use crate::util::format_g;

use prost_reflect::{DynamicMessage, FieldDescriptor, MapKey, Value};

/// Prints a message in protobuf text format.
pub fn to_text_dynamic(msg: &DynamicMessage) -> String {
    let mut out = String::new();
    print_message(msg, 0, &mut out);
    out
}

/// Prints a generated message in protobuf text format.
pub fn to_text<M: prost::Message + prost::Name>(msg: &M) -> String {
    let desc = super::descriptor_of::<M>();
    // Encoding our own message and decoding it with its own descriptor cannot fail.
    let dynamic = DynamicMessage::decode(desc.clone(), msg.encode_to_vec().as_slice())
        .unwrap_or_else(|_| DynamicMessage::new(desc));
    to_text_dynamic(&dynamic)
}

/// Whether protobuf C++ would hold `value` in `field`. A binary file can carry
/// any number for a (closed, proto2) enum; C++ keeps a number its enum does
/// not define among the unknown fields, leaving the field unset, so it is not
/// printed here either (a printed number would not parse back).
fn is_held(field: &FieldDescriptor, value: &Value) -> bool {
    match value {
        Value::EnumNumber(n) => field.kind().as_enum().is_some_and(|e| e.get_value(*n).is_some()),
        _ => true,
    }
}

fn print_message(msg: &DynamicMessage, indent: usize, out: &mut String) {
    for (field, value) in msg.fields() {
        match value {
            Value::List(items) => {
                for item in items.iter().filter(|item| is_held(&field, item)) {
                    print_field(&field, item, indent, out);
                }
            }
            v if !is_held(&field, v) => {}
            Value::Map(map) => print_map(&field, map, indent, out),
            v => print_field(&field, v, indent, out),
        }
    }
}

/// A map field prints as repeated entry messages `{ key: .. value: .. }`, sorted by key.
fn print_map(field: &FieldDescriptor, map: &std::collections::HashMap<MapKey, Value>, indent: usize, out: &mut String) {
    let kind = field.kind();
    let Some(entry) = kind.as_message() else { return };
    let (kf, vf) = (entry.map_entry_key_field(), entry.map_entry_value_field());
    let mut keys: Vec<&MapKey> = map.keys().collect();
    keys.sort();
    for k in keys {
        pad(indent, out);
        out.push_str(field.name());
        out.push_str(" {\n");
        print_field(&kf, &Value::from(k.clone()), indent + 1, out);
        if let Some(v) = map.get(k) {
            print_field(&vf, v, indent + 1, out);
        }
        pad(indent, out);
        out.push_str("}\n");
    }
}

fn pad(indent: usize, out: &mut String) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

fn print_field(field: &FieldDescriptor, value: &Value, indent: usize, out: &mut String) {
    pad(indent, out);
    // A group prints under its type name, which is how it is spelled in text.
    let kind = field.kind();
    match (field.is_group(), kind.as_message()) {
        (true, Some(m)) => out.push_str(m.name()),
        _ => out.push_str(field.name()),
    }
    if let Value::Message(m) = value {
        out.push_str(" {\n");
        print_message(m, indent + 1, out);
        pad(indent, out);
        out.push_str("}\n");
        return;
    }
    out.push_str(": ");
    // `write!` into a String cannot fail (fmt::Write for String is infallible).
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I32(v) => {
            let _ = write!(out, "{v}");
        }
        Value::I64(v) => {
            let _ = write!(out, "{v}");
        }
        Value::U32(v) => {
            let _ = write!(out, "{v}");
        }
        Value::U64(v) => {
            let _ = write!(out, "{v}");
        }
        Value::F32(v) => out.push_str(&format_float(*v)),
        Value::F64(v) => out.push_str(&format_double(*v)),
        Value::String(s) => {
            out.push('"');
            c_escape(s.as_bytes(), out);
            out.push('"');
        }
        Value::Bytes(b) => {
            out.push('"');
            c_escape(b, out);
            out.push('"');
        }
        Value::EnumNumber(n) => {
            if let Some(v) = kind.as_enum().and_then(|e| e.get_value(*n)) {
                out.push_str(v.name());
            }
        }
        Value::Message(_) | Value::List(_) | Value::Map(_) => {}
    }
    out.push('\n');
}

/// Escapes bytes the way protobuf's `CEscape` does: `\n \r \t \" \' \\`, and
/// three-digit octal for every other byte outside printable ASCII.
pub fn c_escape(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
}

/// A float the way protobuf prints it: `%.6g` if that reads back as the same
/// float, else `%.9g`; `inf`, `-inf`, `nan`.
pub fn format_float(v: f32) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let short = format_g(v as f64, 6);
    // strtof reports a range error for results that underflow to subnormals; protobuf then
    // falls back to the long form, and so do we.
    match short.parse::<f32>() {
        Ok(p) if p == v && (p == 0.0 || p.is_normal()) => short,
        _ => format_g(v as f64, 9),
    }
}

/// A double the way protobuf prints it: `%.15g` if that reads back exactly, else `%.17g`.
pub fn format_double(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let short = format_g(v, 15);
    match short.parse::<f64>() {
        Ok(p) if p == v => short,
        _ => format_g(v, 17),
    }
}
