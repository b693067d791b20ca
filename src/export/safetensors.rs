//! `-format safetensors`: the weights alone, PyTorch-style or Caffe-style
//! names, with the upgraded prototxt in the file's metadata. The format and
//! the naming rules are `net::weights::safetensors`'s.
use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;

use super::{Plan, TensorNames};
use crate::net::weights::safetensors::{layer_identifiers, pytorch_blobs, to_bytes, NAMES_KEY};
use crate::Result;

/// Every kept layer's blobs under their keys (`conv1.weight` or `conv1.0`), in layer order.
pub fn named_tensors(plan: &Plan, names: TensorNames) -> Result<Vec<(String, Tensor)>> {
    let idents = layer_identifiers(plan.net.layer_names());
    let mut out = Vec::new();
    for l in &plan.layers {
        let ident = &idents[l.name()];
        let blobs = match names {
            TensorNames::Pytorch => pytorch_blobs(&l.param, &l.blobs).map_err(|e| plan.layer_error(l, e))?,
            TensorNames::Caffe => l.blobs.iter().enumerate().map(|(j, t)| (j.to_string(), t.shallow_clone())).collect(),
        };
        out.extend(blobs.into_iter().map(|(n, t)| (format!("{ident}.{n}"), t)));
    }
    Ok(out)
}

/// The file's bytes: tensors and metadata (`prototxt`, `format: pt`, the naming).
pub fn to_file_bytes(plan: &Plan, names: TensorNames) -> Result<Vec<u8>> {
    let tensors = named_tensors(plan, names)?;
    let naming = match names {
        TensorNames::Pytorch => "pytorch",
        TensorNames::Caffe => "caffe",
    };
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (NAMES_KEY.to_string(), naming.to_string()),
        ("prototxt".to_string(), plan.prototxt.clone()),
    ]);
    to_bytes(&tensors, &metadata)
}

pub fn export(plan: &Plan, out: &Path, names: TensorNames) -> Result<()> {
    let bytes = to_file_bytes(plan, names)?;
    crate::util::write_atomic(out, &bytes)
}
