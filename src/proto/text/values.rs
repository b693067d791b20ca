//! Scalar values by field kind: integers within their type's range (decimal,
//! hex, octal), floats (with protobuf's `inf`, `nan` and `f` suffix), bools,
//! strings and enum names or numbers.
use super::lexer::TokKind;
use super::parser::{PResult, Parser};
use super::*;

impl Parser<'_> {
    /// Parses one scalar value for `field`; `None` when an unknown enum value was skipped.
    pub(super) fn parse_scalar(&mut self, field: &FieldDescriptor, desc: &MessageDescriptor) -> PResult<Option<Value>> {
        let name = field.name();
        let ty = desc.full_name();
        let start = self.cur.clone();
        let v = match field.kind() {
            Kind::String | Kind::Bytes => {
                let mut bytes = Vec::new();
                if !matches!(self.cur.kind, TokKind::Str(_)) {
                    return Err(
                        self.error(format!("expected string for field \"{name}\", found {} in {ty}", self.found()))
                    );
                }
                while let TokKind::Str(b) = &self.cur.kind {
                    bytes.extend_from_slice(b);
                    self.advance()?;
                }
                if field.kind() == Kind::Bytes {
                    Value::Bytes(Bytes::from(bytes))
                } else {
                    match String::from_utf8(bytes) {
                        Ok(s) => Value::String(s),
                        Err(_) => {
                            return Err(self.error_at(
                                &start,
                                format!("string field \"{name}\" of {ty} is not valid UTF-8 (use a bytes field for binary data)"),
                            ))
                        }
                    }
                }
            }
            Kind::Bool => {
                let t = self.text(&self.cur);
                let b = match (&self.cur.kind, t) {
                    (TokKind::Ident, "true" | "True" | "t") => true,
                    (TokKind::Ident, "false" | "False" | "f") => false,
                    (TokKind::Int, _) => match parse_uint(t) {
                        Some(0) => false,
                        Some(1) => true,
                        _ => {
                            return Err(self.error(format!(
                                "integer out of range for bool field \"{name}\": {t} (only 0 or 1) in {ty}"
                            )))
                        }
                    },
                    _ => {
                        return Err(self.error(format!(
                            "expected true or false for field \"{name}\", found {} in {ty}",
                            self.found()
                        )))
                    }
                };
                self.advance()?;
                Value::Bool(b)
            }
            Kind::Float | Kind::Double => {
                let d = self.parse_double(name, ty)?;
                if field.kind() == Kind::Float {
                    // Like protobuf: anything beyond the float range becomes infinite.
                    let f = if d > f32::MAX as f64 {
                        f32::INFINITY
                    } else if d < -(f32::MAX as f64) {
                        f32::NEG_INFINITY
                    } else {
                        d as f32
                    };
                    Value::F32(f)
                } else {
                    Value::F64(d)
                }
            }
            Kind::Enum(ed) => return self.parse_enum(&ed, name),
            k @ (Kind::Int32 | Kind::Sint32 | Kind::Sfixed32) => {
                let v = self.parse_int(name, ty, true, i32::MAX as u64, &k)?;
                Value::I32(v as i32)
            }
            k @ (Kind::Int64 | Kind::Sint64 | Kind::Sfixed64) => {
                let v = self.parse_int(name, ty, true, i64::MAX as u64, &k)?;
                Value::I64(v as i64)
            }
            k @ (Kind::Uint32 | Kind::Fixed32) => {
                let v = self.parse_int(name, ty, false, u32::MAX as u64, &k)?;
                Value::U32(v as u32)
            }
            k @ (Kind::Uint64 | Kind::Fixed64) => {
                let v = self.parse_int(name, ty, false, u64::MAX, &k)?;
                Value::U64(v as u64)
            }
            Kind::Message(_) => return Err(self.error("internal error: message field parsed as scalar")),
        };
        Ok(Some(v))
    }

    /// Parses an optionally negative integer no larger than `max` (or `max + 1` when negative).
    pub(super) fn parse_int(&mut self, name: &str, ty: &str, signed: bool, max: u64, kind: &Kind) -> PResult<i128> {
        let start = self.cur.clone();
        let neg = self.try_sym('-')?;
        if neg && !signed {
            return Err(self.error_at(
                &start,
                format!("negative value for unsigned field \"{name}\" ({}) in {ty}", kind_name(kind)),
            ));
        }
        if self.cur.kind != TokKind::Int {
            return Err(self.error(format!("expected integer for field \"{name}\", found {} in {ty}", self.found())));
        }
        let t = self.text(&self.cur);
        let limit = if neg { max as u128 + 1 } else { max as u128 };
        let v = match parse_uint(t) {
            Some(v) if (v as u128) <= limit => v as i128,
            _ => {
                return Err(self.error_at(
                    &start,
                    format!(
                        "integer {}{t} out of range for field \"{name}\" ({}) in {ty}",
                        if neg { "-" } else { "" },
                        kind_name(kind)
                    ),
                ))
            }
        };
        self.advance()?;
        Ok(if neg { -v } else { v })
    }

    pub(super) fn parse_double(&mut self, name: &str, ty: &str) -> PResult<f64> {
        let neg = self.try_sym('-')?;
        let t = self.text(&self.cur);
        let v = match self.cur.kind {
            TokKind::Int => {
                if is_hex_or_octal(t) {
                    return Err(
                        self.error(format!("expected a decimal number for field \"{name}\", found \"{t}\" in {ty}"))
                    );
                }
                match t.parse::<u64>() {
                    Ok(u) => u as f64,
                    Err(_) => t.parse::<f64>().unwrap_or(f64::INFINITY),
                }
            }
            TokKind::Float => match parse_float_literal(t) {
                Some(v) => v,
                None => return Err(self.error(format!("invalid number \"{t}\" for field \"{name}\" in {ty}"))),
            },
            TokKind::Ident => match t.to_ascii_lowercase().as_str() {
                "inf" | "infinity" => f64::INFINITY,
                "nan" => f64::NAN,
                _ => {
                    return Err(
                        self.error(format!("expected number for field \"{name}\", found {} in {ty}", self.found()))
                    )
                }
            },
            _ => {
                return Err(self.error(format!("expected number for field \"{name}\", found {} in {ty}", self.found())))
            }
        };
        self.advance()?;
        Ok(if neg { -v } else { v })
    }

    pub(super) fn parse_enum(&mut self, ed: &EnumDescriptor, name: &str) -> PResult<Option<Value>> {
        let start = self.cur.clone();
        let (shown, found) = match self.cur.kind {
            TokKind::Ident => {
                let t = self.text(&self.cur);
                self.advance()?;
                (t.to_string(), ed.get_value_by_name(t))
            }
            TokKind::Int | TokKind::Sym('-') => {
                let neg = self.try_sym('-')?;
                let t = self.text(&self.cur);
                let n = match (&self.cur.kind, parse_uint(t)) {
                    (TokKind::Int, Some(v)) if v <= i32::MAX as u64 + neg as u64 => {
                        if neg {
                            -(v as i64)
                        } else {
                            v as i64
                        }
                    }
                    (TokKind::Int, _) => {
                        return Err(self.error_at(&start, format!("enum number out of range for field \"{name}\"")))
                    }
                    _ => {
                        return Err(self.error(format!(
                            "expected enum value for field \"{name}\" ({}), found {}",
                            ed.full_name(),
                            self.found()
                        )))
                    }
                };
                self.advance()?;
                (n.to_string(), ed.get_value(n as i32))
            }
            _ => {
                return Err(self.error(format!(
                    "expected enum value for field \"{name}\" ({}), found {}",
                    ed.full_name(),
                    self.found()
                )))
            }
        };
        match found {
            Some(v) => Ok(Some(Value::EnumNumber(v.number()))),
            None => {
                let names: Vec<String> = ed.values().map(|v| v.name().to_string()).collect();
                let msg = format!(
                    "unknown enum value \"{shown}\" for field \"{name}\" ({}: {})",
                    ed.full_name(),
                    names.join(", ")
                );
                if self.opts.lenient {
                    self.warn_at(&start, format!("skipped {msg}"));
                    Ok(None)
                } else {
                    Err(self.error_at(&start, msg))
                }
            }
        }
    }

    // --- skipping unknown fields (lenient mode) ---
}

pub(super) fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Int32 => "int32",
        Kind::Sint32 => "sint32",
        Kind::Sfixed32 => "sfixed32",
        Kind::Int64 => "int64",
        Kind::Sint64 => "sint64",
        Kind::Sfixed64 => "sfixed64",
        Kind::Uint32 => "uint32",
        Kind::Fixed32 => "fixed32",
        Kind::Uint64 => "uint64",
        Kind::Fixed64 => "fixed64",
        _ => "number",
    }
}

pub(super) fn is_hex_or_octal(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() > 1 && b[0] == b'0' && (matches!(b[1], b'x' | b'X') || b[1].is_ascii_digit())
}

/// Parses a decimal, hex (`0x`) or octal (leading `0`) integer literal.
pub(super) fn parse_uint(t: &str) -> Option<u64> {
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse::<u64>().ok()
    }
}

/// Parses a float literal as the tokenizer accepted it: `1.`, `.5`, `1e-4`, `1.5f`.
pub(super) fn parse_float_literal(t: &str) -> Option<f64> {
    let t = t.strip_suffix(['f', 'F']).unwrap_or(t);
    let mut s = String::with_capacity(t.len() + 2);
    if t.starts_with('.') {
        s.push('0');
    }
    let mut prev = ' ';
    for c in t.chars() {
        if (c == 'e' || c == 'E') && prev == '.' {
            s.push('0');
        }
        s.push(c);
        prev = c;
    }
    if s.ends_with('.') {
        s.push('0');
    }
    s.parse::<f64>().ok()
}
