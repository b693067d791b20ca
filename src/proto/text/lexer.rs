//! The tokenizer: identifiers, numbers, strings (with protobuf's escapes),
//! symbols, and `#` comments, with 1-based line and column.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokKind {
    Ident,
    Int,
    Float,
    /// A string literal, already unescaped.
    Str(Vec<u8>),
    Sym(char),
    End,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: TokKind,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) line: usize,
    pub(super) col: usize,
}

pub(super) struct Lexer<'a> {
    pub(super) src: &'a str,
    pub(super) pos: usize,
    pub(super) line: usize,
    pub(super) col: usize,
}

/// A tokenizer error: position and message.
pub(super) struct LexError {
    pub(super) line: usize,
    pub(super) col: usize,
    pub(super) msg: String,
}

impl<'a> Lexer<'a> {
    pub(super) fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }
    pub(super) fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }
    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
    pub(super) fn err(&self, line: usize, col: usize, msg: impl Into<String>) -> LexError {
        LexError { line, col, msg: msg.into() }
    }

    pub(super) fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' => {
                    self.bump();
                }
                '#' => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    pub(super) fn next(&mut self) -> Result<Token, LexError> {
        self.skip_space();
        let (start, line, col) = (self.pos, self.line, self.col);
        let tok = |kind, end| Token { kind, start, end, line, col };
        let c = match self.peek() {
            None => return Ok(tok(TokKind::End, start)),
            Some(c) => c,
        };
        if c.is_ascii_alphabetic() || c == '_' {
            while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
                self.bump();
            }
            return Ok(tok(TokKind::Ident, self.pos));
        }
        if c.is_ascii_digit() || (c == '.' && matches!(self.peek_at(1), Some(d) if d.is_ascii_digit())) {
            let is_float = self.number()?;
            if matches!(self.peek(), Some(c) if c.is_ascii_alphabetic() || c == '_') {
                return Err(self.err(self.line, self.col, "need space between number and identifier"));
            }
            return Ok(tok(if is_float { TokKind::Float } else { TokKind::Int }, self.pos));
        }
        if c == '"' || c == '\'' {
            let bytes = self.string(c, line, col)?;
            return Ok(tok(TokKind::Str(bytes), self.pos));
        }
        if c.is_control() {
            return Err(self.err(line, col, format!("invalid control character 0x{:02x} in text", c as u32)));
        }
        if !c.is_ascii() {
            return Err(self.err(line, col, format!("unexpected character '{c}'")));
        }
        self.bump();
        Ok(tok(TokKind::Sym(c), self.pos))
    }

    /// Consumes a number; returns whether it is a floating-point literal.
    pub(super) fn number(&mut self) -> Result<bool, LexError> {
        let first = self.bump();
        let mut is_float = false;
        let digits = |lx: &mut Self, f: fn(char) -> bool| -> usize {
            let mut n = 0;
            while matches!(lx.peek(), Some(c) if f(c)) {
                lx.bump();
                n += 1;
            }
            n
        };
        if first == Some('0') && matches!(self.peek(), Some('x' | 'X')) {
            self.bump();
            if digits(self, |c| c.is_ascii_hexdigit()) == 0 {
                return Err(self.err(self.line, self.col, "\"0x\" must be followed by hex digits"));
            }
            return Ok(false);
        }
        if first == Some('0') && matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            digits(self, |c| ('0'..='7').contains(&c));
            if matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                return Err(self.err(self.line, self.col, "numbers starting with a leading zero must be octal"));
            }
            return Ok(false);
        }
        if first == Some('.') {
            is_float = true;
            digits(self, |c| c.is_ascii_digit());
        } else {
            digits(self, |c| c.is_ascii_digit());
            if self.peek() == Some('.') {
                self.bump();
                is_float = true;
                digits(self, |c| c.is_ascii_digit());
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            is_float = true;
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if digits(self, |c| c.is_ascii_digit()) == 0 {
                return Err(self.err(self.line, self.col, "\"e\" must be followed by an exponent"));
            }
        }
        if matches!(self.peek(), Some('f' | 'F')) {
            self.bump();
            is_float = true;
        }
        Ok(is_float)
    }

    /// Consumes a quoted string literal and returns its unescaped bytes.
    pub(super) fn string(&mut self, quote: char, line: usize, col: usize) -> Result<Vec<u8>, LexError> {
        self.bump();
        let mut out = Vec::new();
        loop {
            let (el, ec) = (self.line, self.col);
            let c = match self.peek() {
                None => return Err(self.err(line, col, "unterminated string")),
                Some('\n') => return Err(self.err(line, col, "unterminated string (a string cannot span lines)")),
                Some(c) => c,
            };
            self.bump();
            if c == quote {
                return Ok(out);
            }
            if c != '\\' {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            let e = match self.peek() {
                None | Some('\n') => return Err(self.err(line, col, "unterminated string")),
                Some(e) => e,
            };
            self.bump();
            match e {
                'a' => out.push(0x07),
                'b' => out.push(0x08),
                'f' => out.push(0x0c),
                'n' => out.push(b'\n'),
                'r' => out.push(b'\r'),
                't' => out.push(b'\t'),
                'v' => out.push(0x0b),
                '\\' | '?' | '\'' | '"' => out.push(e as u8),
                '0'..='7' => {
                    let mut v = e as u32 - '0' as u32;
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ '0'..='7') => {
                                self.bump();
                                v = v * 8 + (d as u32 - '0' as u32);
                            }
                            _ => break,
                        }
                    }
                    // Like protobuf, an octal escape above \377 keeps its low byte.
                    out.push((v & 0xff) as u8);
                }
                'x' | 'X' => {
                    let mut v = 0u32;
                    let mut n = 0;
                    while n < 2 {
                        match self.peek().and_then(|d| d.to_digit(16)) {
                            Some(d) => {
                                self.bump();
                                v = v * 16 + d;
                                n += 1;
                            }
                            None => break,
                        }
                    }
                    if n == 0 {
                        return Err(self.err(el, ec, "invalid escape sequence \"\\x\" in string: no hex digits"));
                    }
                    out.push(v as u8);
                }
                'u' | 'U' => {
                    let len = if e == 'u' { 4 } else { 8 };
                    let mut v = 0u32;
                    for _ in 0..len {
                        match self.peek().and_then(|d| d.to_digit(16)) {
                            Some(d) => {
                                self.bump();
                                v = v.saturating_mul(16).saturating_add(d);
                            }
                            None => {
                                return Err(self.err(
                                    el,
                                    ec,
                                    format!("invalid escape sequence \"\\{e}\" in string: expected {len} hex digits"),
                                ))
                            }
                        }
                    }
                    match char::from_u32(v) {
                        Some(ch) => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        None => return Err(self.err(el, ec, format!("invalid Unicode escape U+{v:X} in string"))),
                    }
                }
                other => return Err(self.err(el, ec, format!("invalid escape sequence \"\\{other}\" in string"))),
            }
        }
    }
}
