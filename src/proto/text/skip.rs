//! `--lenient`: skipping what the schema does not know (a field, a message,
//! a value), so a net from a Caffe fork still parses.
use super::lexer::TokKind;
use super::parser::{PResult, Parser};

impl Parser<'_> {
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
