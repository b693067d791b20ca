//! The parser: fields by the schema's descriptors, values by field kind,
//! `--lenient` skipping, and the source map of top-level repeated elements.

use super::lexer::{LexError, Lexer, TokKind, Token};
use super::*;

/// Protobuf's default recursion limit for text parsing.
pub(super) const MAX_DEPTH: usize = 100;

pub(super) struct Parser<'a> {
    pub(super) lex: Lexer<'a>,
    pub(super) cur: Token,
    pub(super) file: &'a str,
    pub(super) opts: TextOptions,
    pub(super) warnings: Vec<Warning>,
    pub(super) source_map: SourceMap,
    pub(super) depth: usize,
}

/// How a message being parsed is closed: the delimiter, and what opened it.
pub(super) struct Close<'n> {
    pub(super) delim: char,
    pub(super) field: &'n str,
    pub(super) line: usize,
    pub(super) col: usize,
}

pub(super) type PResult<T> = crate::Result<T>;

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str, file: &'a str, opts: TextOptions) -> PResult<Self> {
        let mut lex = Lexer { src, pos: 0, line: 1, col: 1 };
        let dummy = Token { kind: TokKind::End, start: 0, end: 0, line: 1, col: 1 };
        let first = lex.next();
        let mut p = Parser {
            lex,
            cur: dummy,
            file,
            opts,
            warnings: Vec::new(),
            source_map: SourceMap { file: file.to_string(), elements: HashMap::new() },
            depth: 0,
        };
        p.cur = first.map_err(|e| p.lex_error(e))?;
        Ok(p)
    }

    pub(super) fn loc(&self, line: usize, col: usize) -> Location {
        Location { file: self.file.to_string(), line, col }
    }
    pub(super) fn error_at(&self, tok: &Token, msg: impl Into<String>) -> Error {
        Error::Parse { loc: self.loc(tok.line, tok.col), msg: msg.into() }
    }
    pub(super) fn error(&self, msg: impl Into<String>) -> Error {
        self.error_at(&self.cur, msg)
    }
    pub(super) fn lex_error(&self, e: LexError) -> Error {
        Error::Parse { loc: self.loc(e.line, e.col), msg: e.msg }
    }
    pub(super) fn warn_at(&mut self, tok: &Token, msg: String) {
        let loc = self.loc(tok.line, tok.col);
        self.warnings.push(Warning { loc, msg });
    }

    pub(super) fn text(&self, tok: &Token) -> &'a str {
        self.lex.src.get(tok.start..tok.end).unwrap_or("")
    }
    /// The current token as an error message shows it.
    pub(super) fn found(&self) -> String {
        describe(&self.cur, self.text(&self.cur))
    }

    pub(super) fn advance(&mut self) -> PResult<Token> {
        let next = self.lex.next().map_err(|e| self.lex_error(e))?;
        Ok(std::mem::replace(&mut self.cur, next))
    }
    pub(super) fn is_sym(&self, c: char) -> bool {
        self.cur.kind == TokKind::Sym(c)
    }
    pub(super) fn try_sym(&mut self, c: char) -> PResult<bool> {
        if self.is_sym(c) {
            self.advance()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }
    pub(super) fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("messages nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    /// Parses fields into `msg` until end of input (top level) or the closing delimiter.
    pub(super) fn parse_fields(&mut self, msg: &mut DynamicMessage, close: Option<Close<'_>>) -> PResult<()> {
        let mut seen: HashSet<u32> = HashSet::new();
        loop {
            match (&self.cur.kind, &close) {
                (TokKind::End, None) => return Ok(()),
                (TokKind::Sym(c @ ('}' | '>')), Some(cl)) => {
                    if *c == cl.delim {
                        self.advance()?;
                        return Ok(());
                    }
                    return Err(self.unclosed(cl));
                }
                (TokKind::End, Some(cl)) => return Err(self.unclosed(cl)),
                _ => self.parse_field(msg, &mut seen, close.is_none())?,
            }
        }
    }

    pub(super) fn unclosed(&self, cl: &Close<'_>) -> Error {
        self.error(format!(
            "expected \"{}\" to close \"{}\" opened at {}:{}, found {}",
            cl.delim,
            cl.field,
            cl.line,
            cl.col,
            self.found()
        ))
    }

    pub(super) fn parse_field(&mut self, msg: &mut DynamicMessage, seen: &mut HashSet<u32>, top: bool) -> PResult<()> {
        let desc = msg.descriptor();
        let name_tok = self.cur.clone();
        let name: String = match &name_tok.kind {
            TokKind::Ident => self.text(&name_tok).to_string(),
            TokKind::Sym('[') => {
                // An extension or Any type URL: the schema has none, so it is unknown.
                self.advance()?;
                let mut name = String::from("[");
                while !self.is_sym(']') {
                    match self.cur.kind {
                        TokKind::Ident | TokKind::Sym('.') | TokKind::Sym('/') => {
                            name.push_str(self.text(&self.cur));
                            self.advance()?;
                        }
                        _ => return Err(self.error(format!("expected extension name, found {}", self.found()))),
                    }
                }
                name.push(']');
                return self.unknown_field(&name_tok, "extension", &name, &desc);
            }
            _ => {
                return Err(self.error(format!(
                    "expected a field name of {}, found {}",
                    desc.full_name(),
                    self.found()
                )))
            }
        };
        let field = match desc.get_field_by_name(&name) {
            Some(f) => f,
            None => return self.unknown_field(&name_tok, "field", &name, &desc),
        };
        self.advance()?;
        let repeated = field.is_list() || field.is_map();
        if !repeated {
            if seen.contains(&field.number()) {
                return Err(self.error_at(
                    &name_tok,
                    format!("non-repeated field \"{name}\" of {} is specified multiple times", desc.full_name()),
                ));
            }
            if let Some(oneof) = field.containing_oneof() {
                if let Some(other) = oneof.fields().find(|f| f.number() != field.number() && seen.contains(&f.number()))
                {
                    return Err(self.error_at(
                        &name_tok,
                        format!(
                            "field \"{name}\" is specified along with field \"{}\", another member of oneof \"{}\" of {}",
                            other.name(),
                            oneof.name(),
                            desc.full_name()
                        ),
                    ));
                }
            }
            seen.insert(field.number());
        }

        let is_msg = matches!(field.kind(), Kind::Message(_));
        if is_msg {
            self.try_sym(':')?;
        } else if !self.try_sym(':')? {
            return Err(self.error(format!(
                "expected \":\" after field \"{name}\" of {}, found {}",
                desc.full_name(),
                self.found()
            )));
        }

        if self.is_sym('[') {
            if !repeated {
                return Err(self.error(format!(
                    "field \"{name}\" of {} is not repeated; a list \"[...]\" is not allowed",
                    desc.full_name()
                )));
            }
            self.advance()?;
            if !self.try_sym(']')? {
                loop {
                    let elem_tok = self.cur.clone();
                    let v = if is_msg {
                        self.parse_message_value(&field, &name, &elem_tok)?
                    } else {
                        self.parse_scalar(&field, &desc)?
                    };
                    if let Some(v) = v {
                        self.store(msg, &field, v, top, &elem_tok)?;
                    }
                    if self.try_sym(']')? {
                        break;
                    }
                    if !self.try_sym(',')? {
                        return Err(self.error(format!(
                            "expected \",\" or \"]\" in the list for field \"{name}\" of {}, found {}",
                            desc.full_name(),
                            self.found()
                        )));
                    }
                }
            }
        } else {
            let v = if is_msg {
                self.parse_message_value(&field, &name, &name_tok)?
            } else {
                self.parse_scalar(&field, &desc)?
            };
            if let Some(v) = v {
                self.store(msg, &field, v, top, &name_tok)?;
            }
        }
        if !self.try_sym(';')? {
            self.try_sym(',')?;
        }
        Ok(())
    }

    /// Sets a singular field or appends to a repeated one.
    /// A field or extension the schema does not have: an error, or in
    /// lenient mode a warning and the field skipped.
    fn unknown_field(&mut self, at: &Token, what: &str, name: &str, desc: &MessageDescriptor) -> PResult<()> {
        if !self.opts.lenient {
            return Err(self.error_at(at, format!("{} has no {what} named \"{name}\"", desc.full_name())));
        }
        self.advance()?;
        self.warn_at(at, format!("skipped unknown {what} \"{name}\" in {}", desc.full_name()));
        self.skip_field_rest()
    }

    pub(super) fn store(
        &mut self,
        msg: &mut DynamicMessage,
        field: &FieldDescriptor,
        v: Value,
        top: bool,
        at: &Token,
    ) -> PResult<()> {
        if field.is_map() {
            let entry = match v {
                Value::Message(m) => m,
                _ => return Ok(()),
            };
            let kf = field.kind();
            let entry_desc = match kf.as_message() {
                Some(d) => d.clone(),
                None => return Ok(()),
            };
            let key = entry.get_field(&entry_desc.map_entry_key_field()).into_owned();
            let val = entry.get_field(&entry_desc.map_entry_value_field()).into_owned();
            let key = match key.into_map_key() {
                Some(k) => k,
                None => return Err(self.error_at(at, "invalid map key")),
            };
            if let Some(map) = msg.get_field_mut(field).as_map_mut() {
                map.insert(key, val);
            }
            return Ok(());
        }
        if field.is_list() {
            let is_msg = matches!(v, Value::Message(_));
            if let Some(list) = msg.get_field_mut(field).as_list_mut() {
                list.push(v);
            }
            if top && is_msg {
                let loc = self.loc(at.line, at.col);
                self.source_map.elements.entry(field.name().to_string()).or_default().push(loc);
            }
        } else {
            msg.set_field(field, v);
        }
        Ok(())
    }

    /// Parses `{ ... }` or `< ... >` as the message type of `field`; `opened` is where
    /// the element began (its field name, or its brace inside a list), for error messages.
    pub(super) fn parse_message_value(
        &mut self,
        field: &FieldDescriptor,
        name: &str,
        opened: &Token,
    ) -> PResult<Option<Value>> {
        let kind = field.kind();
        let sub_desc = match kind.as_message() {
            Some(d) => d.clone(),
            None => return Err(self.error("internal error: not a message field")),
        };
        let open = self.cur.clone();
        let delim = match open.kind {
            TokKind::Sym('{') => '}',
            TokKind::Sym('<') => '>',
            _ => {
                return Err(self.error(format!(
                    "expected \"{{\" to start message field \"{name}\" ({}), found {}",
                    sub_desc.full_name(),
                    self.found()
                )))
            }
        };
        self.enter()?;
        self.advance()?;
        let mut sub = DynamicMessage::new(sub_desc);
        self.parse_fields(&mut sub, Some(Close { delim, field: name, line: opened.line, col: opened.col }))?;
        self.depth -= 1;
        Ok(Some(Value::Message(sub)))
    }

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

    /// Skips what follows an unknown field's name: `: value`, `: {...}`, `{...}`, `: [...]`.
    pub(super) fn skip_field_rest(&mut self) -> PResult<()> {
        if self.try_sym(':')? && !self.is_sym('{') && !self.is_sym('<') {
            self.skip_value()?;
        } else {
            self.skip_message()?;
        }
        if !self.try_sym(';')? {
            self.try_sym(',')?;
        }
        Ok(())
    }

    pub(super) fn skip_message(&mut self) -> PResult<()> {
        let open = self.cur.clone();
        let delim = match open.kind {
            TokKind::Sym('{') => '}',
            TokKind::Sym('<') => '>',
            _ => return Err(self.error(format!("expected \":\" or \"{{\" after field name, found {}", self.found()))),
        };
        self.enter()?;
        self.advance()?;
        loop {
            match self.cur.kind {
                TokKind::Sym(c @ ('}' | '>')) if c == delim => {
                    self.advance()?;
                    break;
                }
                TokKind::Sym('}' | '>') | TokKind::End => {
                    return Err(self.error(format!(
                        "expected \"{delim}\" to close the block opened at {}:{}, found {}",
                        open.line,
                        open.col,
                        self.found()
                    )))
                }
                TokKind::Ident => {
                    self.advance()?;
                    self.skip_field_rest()?;
                }
                TokKind::Sym('[') => {
                    self.advance()?;
                    while !self.is_sym(']') {
                        match self.cur.kind {
                            TokKind::Ident | TokKind::Sym('.') | TokKind::Sym('/') => {
                                self.advance()?;
                            }
                            _ => return Err(self.error(format!("expected extension name, found {}", self.found()))),
                        }
                    }
                    self.advance()?;
                    self.skip_field_rest()?;
                }
                _ => return Err(self.error(format!("expected a field name, found {}", self.found()))),
            }
        }
        self.depth -= 1;
        Ok(())
    }

    pub(super) fn skip_value(&mut self) -> PResult<()> {
        if matches!(self.cur.kind, TokKind::Str(_)) {
            while matches!(self.cur.kind, TokKind::Str(_)) {
                self.advance()?;
            }
            return Ok(());
        }
        if self.try_sym('[')? {
            if self.try_sym(']')? {
                return Ok(());
            }
            loop {
                if self.is_sym('{') || self.is_sym('<') {
                    self.skip_message()?;
                } else {
                    self.skip_value()?;
                }
                if self.try_sym(']')? {
                    return Ok(());
                }
                if !self.try_sym(',')? {
                    return Err(self.error(format!("expected \",\" or \"]\" in a list, found {}", self.found())));
                }
            }
        }
        let neg = self.try_sym('-')?;
        match self.cur.kind {
            TokKind::Int | TokKind::Float => {}
            TokKind::Ident if !neg => {}
            TokKind::Ident
                if matches!(self.text(&self.cur).to_ascii_lowercase().as_str(), "inf" | "infinity" | "nan") => {}
            _ => return Err(self.error(format!("expected a value, found {}", self.found()))),
        }
        self.advance()?;
        Ok(())
    }
}

/// How a token reads in an error message.
pub(super) fn describe(tok: &Token, text: &str) -> String {
    match tok.kind {
        TokKind::End => "end of file".to_string(),
        TokKind::Str(_) => format!("string {text}"),
        _ => format!("\"{text}\""),
    }
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
