//! Weights in and out: Caffe's CopyTrainedLayersFrom (by layer name, legacy
//! 4-D shapes accepted) and ToProto (a NetParameter with blobs, for .caffemodel).
use tch::Tensor;

pub mod hdf5;
pub mod names_and_blobs;
pub mod safetensors;
pub mod torch_names;

use super::Net;
use crate::proto::binary::{blob_data_f32, blob_shape, make_blob, shapes_compatible_legacy};
use crate::proto::caffe::{BlobProto, NetParameter};
use crate::{info, warn, Error, Result};

/// Copies a BlobProto's values into `target` (same shape, or a legacy 4-D
/// shape with the same dims after leading 1s). Errors give both shapes.
pub fn copy_blob_into(target: &Tensor, blob: &BlobProto) -> Result<()> {
    let want = target.size();
    let have = blob_shape(blob);
    if have != want && !shapes_compatible_legacy(&have, &want) {
        return Err(Error::invalid(format!(
            "shape mismatch: source param shape is {have:?}, target param shape is {want:?}"
        )));
    }
    let data = blob_data_f32(blob);
    let n: i64 = want.iter().product();
    if data.len() as i64 != n {
        return Err(Error::invalid(format!(
            "source blob holds {} values but its shape {have:?} needs {n} (truncated weights?)",
            data.len()
        )));
    }
    let src = Tensor::from_slice(&data).f_reshape(want.as_slice())?.f_to_device(target.device())?;
    tch::no_grad(|| target.shallow_clone().f_copy_(&src))?;
    Ok(())
}

pub(super) fn copy_trained_layers(net: &mut Net, trained: &NetParameter, origin: &str) -> Result<()> {
    for src in &trained.layer {
        let name = src.name();
        let Some(idx) = net.layers.iter().position(|e| e.param.name() == name) else {
            info!("net.cpp:744", "Ignoring source layer {name}");
            continue;
        };
        let entry = &net.layers[idx];
        let err = |msg: String| {
            Error::invalid(format!("{msg} (copying weights from {origin})")).in_layer(
                net.source.loc(name),
                name,
                entry.param.r#type(),
            )
        };
        if src.blobs.len() != entry.params.len() {
            return Err(err(format!(
                "incompatible number of blobs: the source has {}, the net needs {}",
                src.blobs.len(),
                entry.params.len()
            )));
        }
        for (j, b) in src.blobs.iter().enumerate() {
            let slot = entry.params[j];
            copy_blob_into(&net.param_slots[slot].tensor, b).map_err(|m| err(format!("cannot copy param {j}: {m}")))?;
            // Caffe loads these silently and trains on to `loss = nan`; naming
            // the layer here tells where the NaN the solver stops on came from.
            let not_finite = if b.raw_data.is_some() {
                blob_data_f32(b).iter().filter(|v| !v.is_finite()).count()
            } else {
                b.data.iter().filter(|v| !v.is_finite()).count()
                    + b.double_data.iter().filter(|v| !v.is_finite()).count()
            };
            if not_finite > 0 {
                warn!(
                    "net.cpp:760",
                    "{origin}: layer '{name}' param {j} holds {not_finite} value(s) that are not finite (NaN or Inf)"
                );
            }
        }
    }
    Ok(())
}

/// A blob's values (and diff) for a file. A failed read is an error: an
/// empty blob in a snapshot would be silent loss of the weights.
fn tensor_to_blob(t: &Tensor, diff: Option<&Tensor>) -> Result<BlobProto> {
    let mut b = make_blob(&t.size(), crate::util::tensor_values(t)?);
    if let Some(d) = diff {
        b.diff = crate::util::tensor_values(d)?;
    }
    Ok(b)
}

pub(super) fn net_to_proto(net: &Net, write_diff: bool) -> Result<NetParameter> {
    let mut out = NetParameter { name: Some(net.name.clone()), ..Default::default() };
    for e in &net.layers {
        let mut lp = e.param.clone();
        lp.blobs = e
            .params
            .iter()
            .map(|&s| {
                let slot = &net.param_slots[s];
                let diff = write_diff.then(|| net.learnable[slot.owner].diff());
                tensor_to_blob(&slot.tensor, diff.as_ref())
                    .map_err(|err| err.in_layer(net.source.loc(e.param.name()), e.param.name(), e.param.r#type()))
            })
            .collect::<Result<Vec<_>>>()?;
        out.layer.push(lp);
    }
    Ok(out)
}
