//! `.npy` files read by a strict parser of our own: the header is checked
//! (magic, version, dtype, C order, shape) and the data must hold exactly the
//! shape's values before any tensor is made. tch's reader trusts the header's
//! shape and reads past the data of a short file (found by fuzzing).
use std::path::Path;

use tch::{Kind, Tensor};

use crate::{Error, Result};

/// Reads a `.npy` file (little-endian f4, f8, i1, i2, i4, i8, u1 or b1; C order).
pub fn read(path: &Path) -> Result<Tensor> {
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let limit = super::limits::max_memory();
    if len > limit {
        return Err(Error::decode(path, format!("{len} bytes is over the memory limit of {limit} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|m| Error::decode(path, format!("not a valid .npy file: {m}")))
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> std::result::Result<Tensor, String> {
    let rest = bytes.strip_prefix(b"\x93NUMPY").ok_or("no \\x93NUMPY magic")?;
    let (&major, rest) = rest.split_first().ok_or("truncated version")?;
    let (_, rest) = rest.split_first().ok_or("truncated version")?;
    let (header_len, rest) = match major {
        1 => {
            let (h, rest) = rest.split_at_checked(2).ok_or("truncated header length")?;
            (u16::from_le_bytes([h[0], h[1]]) as usize, rest)
        }
        2 | 3 => {
            let (h, rest) = rest.split_at_checked(4).ok_or("truncated header length")?;
            (u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize, rest)
        }
        v => return Err(format!("unknown format version {v}")),
    };
    let (header, data) = rest.split_at_checked(header_len).ok_or("the header runs past the end of the file")?;
    let header = std::str::from_utf8(header).map_err(|_| "the header is not text")?;
    let descr = dict_value(header, "descr").ok_or("the header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if dict_value(header, "fortran_order").is_some_and(|v| v.trim() != "False") {
        return Err("Fortran-ordered arrays are not supported (save with np.ascontiguousarray)".into());
    }
    let shape_text = dict_value(header, "shape").ok_or("the header has no 'shape'")?;
    let shape = parse_shape(shape_text)?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has too many elements"))?;
    let (kind, size) = match descr {
        "<f4" => (Kind::Float, 4),
        "<f8" => (Kind::Double, 8),
        "|i1" => (Kind::Int8, 1),
        "<i2" => (Kind::Int16, 2),
        "<i4" => (Kind::Int, 4),
        "<i8" => (Kind::Int64, 8),
        "|u1" => (Kind::Uint8, 1),
        "|b1" => (Kind::Bool, 1),
        other => return Err(format!("dtype '{other}' is not supported (use float32, float64 or an integer type)")),
    };
    let want = count.checked_mul(size).ok_or_else(|| format!("shape {shape:?} has too many elements"))?;
    if data.len() != want {
        return Err(format!("shape {shape:?} of {descr} needs {want} data bytes, the file has {}", data.len()));
    }
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_data_size(data, &dims, kind).map_err(|e| e.to_string())
}

/// The text after `'key':` up to the next top-level comma (the shape's tuple kept whole).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(text: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("shape '{text}' is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L').parse::<usize>().map_err(|_| format!("shape '{text}' has a bad dimension '{s}'"))
        })
        .collect()
}
