//! `.safetensors` weights: the file format (an 8-byte little-endian header
//! length, a JSON header naming each tensor's dtype, shape and byte range,
//! then the raw little-endian data), and the mapping between a net's layer
//! blobs and the file's keys, in either naming:
//! - PyTorch's (`conv1.weight`, `bn1.running_mean`): what `model.py`'s
//!   `state_dict` holds. BatchNorm's running statistics are stored divided by
//!   Caffe's scale factor, which is left out (and set to 1 when read back).
//! - Caffe's raw blobs (`conv1.0`, `conv1.1`, `bn1.2`).
//!
//! A layer's key prefix is its name as a Python identifier, made unique over
//! the net's layer names ([`layer_identifiers`]).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use tch::{Kind, Tensor};

use super::torch_names::{layer_blob_name, unique_identifiers};
use crate::net::Net;
use crate::proto::binary::shapes_compatible_legacy;
use crate::proto::caffe::LayerParameter;
use crate::{info, Error, Result};

/// The metadata key holding the naming (`pytorch` or `caffe`).
pub const NAMES_KEY: &str = "caffe_tch_names";

/// Tensors and the header's `__metadata__`, as read from a file.
pub struct SafeTensors {
    pub tensors: Vec<(String, Tensor)>,
    pub metadata: BTreeMap<String, String>,
}

/// Encodes f32 tensors (in the given order) and string metadata as a
/// safetensors file's bytes.
pub fn to_bytes(tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut data = Vec::new();
    for (name, t) in tensors {
        let values = crate::util::tensor_values(t)
            .map_err(|e| Error::invalid(format!("tensor {name}: cannot read its values: {e}")))?;
        let begin = data.len();
        for v in &values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        if header.contains_key(name) {
            return Err(Error::invalid(format!("two tensors are named '{name}'")));
        }
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": t.size(), "data_offsets": [begin, data.len()] }),
        );
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    // The format pads the header with spaces so the data starts 8-byte aligned.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + data.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Reads a safetensors file: F32, F64, F16 and BF16 tensors, as f32.
pub fn read(path: &Path) -> Result<SafeTensors> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|m| Error::decode(path.display().to_string(), m))
}

fn parse(bytes: &[u8]) -> std::result::Result<SafeTensors, String> {
    let head: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or("shorter than its 8-byte header size")?;
    let n = u64::from_le_bytes(head) as usize;
    let json =
        bytes.get(8..8usize.saturating_add(n)).ok_or(format!("header of {n} bytes runs past the end of the file"))?;
    let data = &bytes[8 + n..];
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| format!("header is not a JSON object: {e}"))?;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, entry) in &header {
        if name == "__metadata__" {
            for (k, v) in entry.as_object().into_iter().flatten() {
                metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
            continue;
        }
        let bad = |what: &str| format!("tensor '{name}': {what}");
        let dtype = entry.get("dtype").and_then(|v| v.as_str()).ok_or_else(|| bad("no dtype"))?;
        let shape: Vec<i64> = entry
            .get("shape")
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().map(|d| d.as_i64()).collect::<Option<Vec<_>>>())
            .ok_or_else(|| bad("no shape"))?;
        let offsets: Vec<usize> = entry
            .get("data_offsets")
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|x| x as usize)).collect::<Option<Vec<_>>>())
            .filter(|o| o.len() == 2 && o[0] <= o[1])
            .ok_or_else(|| bad("no valid data_offsets"))?;
        let raw = data.get(offsets[0]..offsets[1]).ok_or_else(|| bad("data runs past the end of the file"))?;
        let (kind, width) = match dtype {
            "F32" => (Kind::Float, 4),
            "F64" => (Kind::Double, 8),
            "F16" => (Kind::Half, 2),
            "BF16" => (Kind::BFloat16, 2),
            other => return Err(bad(&format!("dtype {other} is not a floating-point type caffe-tch reads"))),
        };
        let count: i64 = shape.iter().product();
        if shape.iter().any(|&d| d < 0) || raw.len() as i64 != count * width {
            return Err(bad(&format!("{} bytes of data for shape {shape:?} in {dtype}", raw.len())));
        }
        let t = Tensor::f_from_data_size(raw, &shape, kind)
            .and_then(|t| t.f_to_kind(Kind::Float))
            .map_err(|e| bad(&e.to_string()))?;
        tensors.push((name.clone(), t));
    }
    Ok(SafeTensors { tensors, metadata })
}

/// Each layer name's key prefix: a Python identifier, unique over `names`.
pub fn layer_identifiers<'a>(names: impl IntoIterator<Item = &'a str>) -> HashMap<String, String> {
    let names: Vec<&str> = names.into_iter().collect();
    names.iter().map(|n| n.to_string()).zip(unique_identifiers(names.iter().copied())).collect()
}

/// A layer's blobs under PyTorch's names (`weight`, `running_mean`, ...),
/// BatchNorm's statistics divided by its scale factor (0 where Caffe's factor is 0).
pub fn pytorch_blobs(lp: &LayerParameter, blobs: &[Tensor]) -> Result<Vec<(String, Tensor)>> {
    let layer_type = lp.r#type();
    let factor = if layer_type == "BatchNorm" {
        let f = blobs.get(2).map(|t| t.f_reshape([-1]).map(|t| t.double_value(&[0]))).transpose()?.unwrap_or(1.0);
        if f == 0.0 {
            0.0
        } else {
            1.0 / f
        }
    } else {
        1.0
    };
    let mut out = Vec::new();
    for (j, t) in blobs.iter().enumerate() {
        let Some(name) = layer_blob_name(lp, j) else { continue };
        let t = if layer_type == "BatchNorm" { t.f_mul_scalar(factor)? } else { t.shallow_clone() };
        out.push((name, t));
    }
    Ok(out)
}

/// Copies a safetensors file's tensors into the net's layer blobs, by layer
/// key prefix; either naming is read (the file's metadata says which, else
/// each key is tried under both). Layers the file does not mention keep their
/// values, as with a .caffemodel; keys no layer has are logged and ignored.
pub fn load_into(net: &mut Net, path: &Path) -> Result<()> {
    let file = read(path)?;
    let origin = path.display().to_string();
    let caffe_only = file.metadata.get(NAMES_KEY).is_some_and(|v| v == "caffe");
    let by_key: HashMap<&str, &Tensor> = file.tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let params: Vec<LayerParameter> = net.layer_params().into_iter().cloned().collect();
    let idents = layer_identifiers(params.iter().map(|lp| lp.name()));
    let mut used: HashSet<String> = HashSet::new();
    for lp in &params {
        let (name, ty) = (lp.name(), lp.r#type());
        let Some(targets) = net.layer_blobs(name) else { continue };
        if targets.is_empty() {
            continue;
        }
        let ident = &idents[lp.name()];
        let prefix = format!("{ident}.");
        if !by_key.keys().any(|k| k.starts_with(&prefix)) {
            continue;
        }
        // Each message names the file itself.
        let err = |msg: String| Error::invalid(msg).in_layer(net.source().loc(name), name, ty);
        // Caffe's names if the file has one of them; PyTorch's otherwise.
        let caffe_named = caffe_only
            || (0..targets.len()).any(|j| {
                by_key.contains_key(format!("{ident}.{j}").as_str())
                    && layer_blob_name(lp, j).is_some_and(|n| n != j.to_string())
            });
        let mut values: Vec<Tensor> = Vec::new();
        for (j, target) in targets.iter().enumerate() {
            let key = if caffe_named {
                Some(format!("{ident}.{j}"))
            } else {
                layer_blob_name(lp, j).map(|n| format!("{ident}.{n}"))
            };
            let Some(key) = key else {
                // BatchNorm's scale factor: the statistics were stored divided by it.
                values.push(target.ones_like());
                continue;
            };
            let Some(src) = by_key.get(key.as_str()) else {
                return Err(err(format!("{origin} has no tensor '{key}' for blob {j} of shape {:?}", target.size())));
            };
            let (have, want) = (src.size(), target.size());
            if have != want && !shapes_compatible_legacy(&have, &want) {
                return Err(err(format!(
                    "shape mismatch for '{key}' in {origin}: the file has {have:?}, the net needs {want:?}"
                )));
            }
            used.insert(key);
            values.push(src.f_reshape(want.as_slice())?);
        }
        tch::no_grad(|| -> Result<()> {
            for (target, v) in targets.iter().zip(&values) {
                let mut t = target.shallow_clone();
                t.f_copy_(&v.f_to_device(t.device())?.f_to_kind(t.kind())?)?;
            }
            Ok(())
        })?;
    }
    let mut ignored: Vec<&str> = file.tensors.iter().map(|(k, _)| k.as_str()).filter(|k| !used.contains(*k)).collect();
    ignored.sort_unstable();
    for k in ignored {
        info!("net.cpp:744", "Ignoring source tensor {k}");
    }
    Ok(())
}
