//! The parser: fields by the schema's descriptors, and the source map of
//! top-level repeated elements; values by field kind are in `values.rs`,
//! `--lenient` skipping in `skip.rs`.

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
}

/// How a token reads in an error message.
pub(super) fn describe(tok: &Token, text: &str) -> String {
    match tok.kind {
        TokKind::End => "end of file".to_string(),
        TokKind::Str(_) => format!("string {text}"),
        _ => format!("\"{text}\""),
    }
}
