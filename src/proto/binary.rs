//! Binary protobuf files: `.caffemodel` (NetParameter with blobs), `.binaryproto`
//! (BlobProto, e.g. mean files) and `.solverstate` (SolverState).
//!
//! Reading skips unknown fields (prost does), so files from Caffe forks load;
//! a fork's parameters under field numbers this schema uses otherwise are
//! handled by `net::weights::names_and_blobs`.
//! Writing is atomic: a temporary file in the same folder, flushed, then renamed,
//! so a crash never leaves a half-written file under the final name.
use std::fs;
use std::path::Path;

use prost::Message;

use super::caffe::{BlobProto, BlobShape, Type};
use crate::{Error, Result};

/// Reads and decodes one binary protobuf message.
pub fn read_message<M: Message + Default>(path: &Path) -> Result<M> {
    decode_message(&read_bytes(path)?, path)
}

/// A binary file's bytes; a file larger than the memory limit is refused
/// before it is read (its decoded form needs at least as much again).
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let len = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let limit = crate::util::limits::max_memory();
    if len > limit {
        return Err(Error::decode(
            path,
            format!(
                "{len} bytes is over the memory limit of {limit} bytes (set -max_memory or CAFFE_TCH_MAX_MEMORY to change it)"
            ),
        ));
    }
    fs::read(path).map_err(|e| Error::io(path, e))
}

/// Decodes bytes that came from `origin` (used in error messages).
pub fn decode_message<M: Message + Default>(bytes: &[u8], origin: &Path) -> Result<M> {
    M::decode(bytes).map_err(|e| {
        let why = e.to_string();
        let what = if why.contains("invalid wire type:") && why.contains("(expected") {
            // A field this schema knows, encoded as another type: most often a
            // Caffe fork's parameter under a number BVLC Caffe uses otherwise.
            "a field is not encoded as this schema's field of that number is (a Caffe fork's field numbers?)"
        } else {
            "not a valid binary protobuf (truncated or corrupt)"
        };
        Error::decode(origin, format!("{what}, {} bytes: {why}", bytes.len()))
    })
}

/// Encodes `msg` and writes it atomically to `path`.
pub fn write_message<M: Message>(path: &Path, msg: &M) -> Result<()> {
    crate::util::write_atomic(path, &msg.encode_to_vec())
}

/// A blob's shape: `shape.dim` when present, else the legacy 4-D num/channels/height/width.
pub fn blob_shape(blob: &BlobProto) -> Vec<i64> {
    match &blob.shape {
        Some(s) => s.dim.clone(),
        None if blob.num.is_some() || blob.channels.is_some() || blob.height.is_some() || blob.width.is_some() => {
            vec![blob.num() as i64, blob.channels() as i64, blob.height() as i64, blob.width() as i64]
        }
        // A blob with no shape at all: a flat vector of its data.
        None => vec![blob_len(blob) as i64],
    }
}

fn blob_len(blob: &BlobProto) -> usize {
    if let Some(raw) = &blob.raw_data {
        raw.len() / raw_width(blob)
    } else if blob.double_data.is_empty() {
        blob.data.len()
    } else {
        blob.double_data.len()
    }
}

/// Bytes per value of NVIDIA Caffe's `raw_data`.
fn raw_width(blob: &BlobProto) -> usize {
    match blob.raw_data_type() {
        Type::Double => 8,
        Type::Float16 => 2,
        Type::Float | Type::Int | Type::Uint => 4,
    }
}

/// One IEEE half-precision value as f32 (exact: every half is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exponent = i32::from((h >> 10) & 0x1f);
    let mantissa = f32::from(h & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        0x1f if mantissa == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        _ => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(exponent - 15),
    }
}

/// A blob's values as f32, from `data`, `double_data` or NVIDIA Caffe's `raw_data`.
pub fn blob_data_f32(blob: &BlobProto) -> Vec<f32> {
    if let Some(raw) = &blob.raw_data {
        let chunks = raw.chunks_exact(raw_width(blob));
        return match blob.raw_data_type() {
            Type::Float16 => chunks.map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            Type::Float => chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Type::Double => {
                chunks.map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32).collect()
            }
            Type::Int => chunks.map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
            Type::Uint => chunks.map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
        };
    }
    if blob.double_data.is_empty() {
        blob.data.clone()
    } else {
        blob.double_data.iter().map(|&d| d as f32).collect()
    }
}

/// Legacy shapes are 4-D with leading 1s (e.g. an InnerProduct weight 1×1×N×K);
/// two shapes are compatible when they agree after dropping leading 1s.
pub fn shapes_compatible_legacy(legacy: &[i64], wanted: &[i64]) -> bool {
    let strip = |s: &[i64]| -> Vec<i64> {
        let first = s.iter().position(|&d| d != 1).unwrap_or(s.len());
        s[first..].to_vec()
    };
    legacy.len() == 4 && strip(legacy) == strip(wanted)
}

/// Builds a BlobProto in the current form (`shape` + float `data`).
pub fn make_blob(shape: &[i64], data: Vec<f32>) -> BlobProto {
    BlobProto { shape: Some(BlobShape { dim: shape.to_vec() }), data, ..Default::default() }
}

/// Sanity check that a blob's data length matches its shape.
pub fn check_blob(blob: &BlobProto, origin: &Path, what: &str) -> Result<()> {
    let shape = blob_shape(blob);
    // Checked: a hostile blob's dims can overflow or claim more than memory.
    let want = crate::util::limits::checked_count(&shape, 4, what).map_err(|e| Error::decode(origin, e.to_string()))?;
    let have = blob_len(blob) as i64;
    if want != have {
        return Err(Error::decode(
            origin,
            format!("{what}: shape {shape:?} needs {want} values but the blob holds {have} (truncated?)"),
        ));
    }
    Ok(())
}
