//! Protobuf text format (prototxt) parser, driven by the schema's descriptors.
//!
//! It accepts what protobuf's own `TextFormat` parser accepts in Caffe files of
//! every vintage, reports errors with the exact line and column of the
//! offending token, records where each top-level repeated message element
//! began (so later errors can point at a layer), and in lenient mode skips
//! fields and enum values the schema does not know, with a warning.
//!
//! Columns count characters (a tab is one column), starting at 1.
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use prost::bytes::Bytes;
use prost_reflect::{DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value};

use crate::error::{Error, Location};

mod lexer;
mod parser;
mod skip;
mod values;

use parser::Parser;

/// Parser options.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// Skip unknown fields and unknown enum values with a warning instead of failing.
    pub lenient: bool,
}

/// A non-fatal problem found while parsing (only in lenient mode).
#[derive(Debug, Clone)]
pub struct Warning {
    pub loc: Location,
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.loc, self.msg)
    }
}

/// Where each element of the top-level repeated message fields started,
/// e.g. `("layer", 3)` → the location of the fourth `layer {`.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    file: String,
    elements: HashMap<String, Vec<Location>>,
}

impl SourceMap {
    /// The start of element `index` of top-level repeated message field `field`.
    pub fn element(&self, field: &str, index: usize) -> Option<&Location> {
        self.elements.get(field).and_then(|v| v.get(index))
    }
    /// The starts of all elements of top-level repeated message field `field`.
    pub fn elements(&self, field: &str) -> &[Location] {
        self.elements.get(field).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// The file name the text was parsed under.
    pub fn file(&self) -> &str {
        &self.file
    }
}

/// A parsed message with its source map and any warnings.
#[derive(Debug, Clone)]
pub struct Parsed<M> {
    pub message: M,
    pub source_map: SourceMap,
    pub warnings: Vec<Warning>,
}

/// Parses `text` as a message of type `desc`. `file` names the source in locations.
pub fn parse_dynamic(
    text: &str,
    file: &str,
    desc: &MessageDescriptor,
    opts: TextOptions,
) -> crate::Result<Parsed<DynamicMessage>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser::new(text, file, opts)?;
    let mut msg = DynamicMessage::new(desc.clone());
    p.parse_fields(&mut msg, None)?;
    Ok(Parsed { message: msg, source_map: p.source_map, warnings: p.warnings })
}

/// Parses `text` as a message of type `M`.
pub fn parse_str<M: prost::Message + prost::Name + Default>(
    text: &str,
    file: &str,
    opts: TextOptions,
) -> crate::Result<Parsed<M>> {
    let desc = super::descriptor_of::<M>();
    let parsed = parse_dynamic(text, file, &desc, opts)?;
    let bytes = prost::Message::encode_to_vec(&parsed.message);
    let message = M::decode(bytes.as_slice()).map_err(|e| Error::Parse {
        loc: Location { file: file.to_string(), line: 0, col: 0 },
        msg: format!("internal error: parsed {} does not decode: {e}", M::full_name()),
    })?;
    Ok(Parsed { message, source_map: parsed.source_map, warnings: parsed.warnings })
}

/// Reads and parses a prototxt file as a message of type `M`.
pub fn read_file<M: prost::Message + prost::Name + Default>(
    path: &Path,
    opts: TextOptions,
) -> crate::Result<Parsed<M>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = path.display().to_string();
    let text = check_text(&bytes, &file)?;
    parse_str(text, &file, opts)
}

/// Like [`read_file`], but a file with no fields at all (empty, or only
/// comments) is an error: protobuf accepts it, yet no net or solver is an empty message.
pub fn read_file_nonempty<M: prost::Message + prost::Name + Default>(
    path: &Path,
    opts: TextOptions,
) -> crate::Result<Parsed<M>> {
    let parsed = read_file::<M>(path, opts)?;
    if parsed.message.encoded_len() == 0 {
        return Err(Error::Parse {
            loc: Location { file: path.display().to_string(), line: 1, col: 1 },
            msg: format!("the file defines nothing: expected a {} in protobuf text format", M::full_name()),
        });
    }
    Ok(parsed)
}

/// Checks that `bytes` are UTF-8 text without NUL bytes; the error points at the first bad byte.
fn check_text<'a>(bytes: &'a [u8], file: &str) -> crate::Result<&'a str> {
    let (valid, bad) = match std::str::from_utf8(bytes) {
        Ok(s) => (s, None),
        Err(e) => {
            let n = e.valid_up_to();
            // The prefix is valid UTF-8 by construction.
            (std::str::from_utf8(&bytes[..n]).unwrap_or(""), Some(n))
        }
    };
    let nul = valid.find('\0');
    let at = match (nul, bad) {
        (Some(n), _) => n,
        (None, Some(b)) => b,
        (None, None) => return Ok(valid),
    };
    let (line, col) = line_col(&valid[..at]);
    let byte = bytes.get(at).copied().unwrap_or(0);
    Err(Error::Parse {
        loc: Location { file: file.to_string(), line, col },
        msg: format!(
            "not a text file: {} byte 0x{byte:02x} (is this a binary file?)",
            if nul == Some(at) { "NUL" } else { "invalid UTF-8" }
        ),
    })
}

/// The 1-based line and column just after `prefix`.
fn line_col(prefix: &str) -> (usize, usize) {
    let line = prefix.matches('\n').count() + 1;
    let last = prefix.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, prefix[last..].chars().count() + 1)
}
