//! Weights in Caffe's HDF5 form (Net::ToHDF5 / CopyTrainedLayersFromHDF5):
//! `<name>.caffemodel.h5` holds a group `data/<layer>` for every layer with
//! datasets `data/<layer>/<i>` (and `diff/...` when diffs are written).
//!
//! A blob shared with an earlier layer (a named `param` seen before) is stored
//! only under its owner, as Caffe does; reading fills it back from the owner.
use std::collections::HashMap;
use std::path::Path;

use crate::data::hdf5 as h5;
use crate::error::Context;
use crate::net::Net;
use crate::proto::binary::{blob_data_f32, blob_shape, make_blob};
use crate::proto::caffe::{BlobProto, LayerParameter, NetParameter};
use crate::{Error, Result};

/// For each layer, which of its blobs are shared with an earlier owner:
/// `Some((owner layer, owner blob index))` (Caffe's AppendParam rule).
fn shared_blobs(layers: &[&LayerParameter], blob_counts: &[usize]) -> Vec<Vec<Option<(String, usize)>>> {
    let mut owners: HashMap<String, (String, usize)> = HashMap::new();
    layers
        .iter()
        .zip(blob_counts)
        .map(|(lp, &n)| {
            (0..n)
                .map(|j| {
                    let name = lp.param.get(j).map(|p| p.name()).unwrap_or("");
                    if name.is_empty() {
                        return None;
                    }
                    match owners.get(name) {
                        Some(owner) => Some(owner.clone()),
                        None => {
                            owners.insert(name.to_string(), (lp.name().to_string(), j));
                            None
                        }
                    }
                })
                .collect()
        })
        .collect()
}

/// Writes the net's weights as Caffe's Net::ToHDF5.
pub fn write_model(net: &Net, path: &Path, write_diff: bool) -> Result<()> {
    let proto = net.to_proto(write_diff)?;
    let layers: Vec<&LayerParameter> = proto.layer.iter().collect();
    let counts: Vec<usize> = proto.layer.iter().map(|l| l.blobs.len()).collect();
    let shared = shared_blobs(&layers, &counts);
    crate::util::write_atomic_with(path, |tmp| {
        let file = h5::create(tmp).with_context(|| path.display())?;
        let data = h5::create_group(&file, "data").with_context(|| path.display())?;
        let diff =
            if write_diff { Some(h5::create_group(&file, "diff").with_context(|| path.display())?) } else { None };
        for (lp, shared) in proto.layer.iter().zip(&shared) {
            let data_group = h5::create_group(&data, lp.name()).with_context(|| path.display())?;
            let diff_group = match &diff {
                Some(d) => Some(h5::create_group(d, lp.name()).with_context(|| path.display())?),
                None => None,
            };
            for (j, blob) in lp.blobs.iter().enumerate() {
                if shared[j].is_some() {
                    continue;
                }
                let shape = blob_shape(blob);
                h5::write_f32(&data_group, &j.to_string(), &shape, &blob_data_f32(blob))
                    .with_context(|| path.display())?;
                if let Some(g) = &diff_group {
                    h5::write_f32(g, &j.to_string(), &shape, &blob.diff).with_context(|| path.display())?;
                }
            }
        }
        // Closed here, before the file is synced and renamed.
        drop((data, diff));
        file.close().map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
    })
}

/// Every layer's stored blobs, in the file's order (`data/<layer>/<j>`).
/// Errors name the layer and dataset; the caller adds the file.
fn read_stored_blobs(file: &h5::File) -> Result<Vec<(String, Vec<Option<BlobProto>>)>> {
    let data = h5::group(file, "data")?;
    let mut stored: Vec<(String, Vec<Option<BlobProto>>)> = Vec::new();
    for layer in h5::members(&data)? {
        let group = h5::group(&data, &layer)?;
        let names = h5::members(&group)?;
        let mut blobs: Vec<Option<BlobProto>> = Vec::new();
        for name in names {
            let Ok(j) = name.parse::<usize>() else {
                return Err(Error::data(format!("data/{layer}/{name}: blob datasets are named 0, 1, ...")));
            };
            let (shape, values) = h5::read_f32(&group, &name).with_context(|| format!("layer {layer}"))?;
            if blobs.len() <= j {
                blobs.resize(j + 1, None);
            }
            blobs[j] = Some(make_blob(&shape, values));
        }
        stored.push((layer, blobs));
    }
    Ok(stored)
}

/// Reads a `.caffemodel.h5` as a NetParameter with blobs (layers in the file's
/// order), ready for `copy_trained_layers_from`. Blobs the file leaves out
/// because they are shared in `net` are filled in from their owners.
pub fn read_model(net: &Net, path: &Path) -> Result<NetParameter> {
    let bad = |msg: String| Error::decode(path, msg);
    let mut stored = h5::read_untrusted(path, read_stored_blobs).with_context(|| path.display())?;

    // Fill in blobs shared with an owner, from the owner's stored blob.
    let layers = net.layer_params();
    let counts: Vec<usize> = layers.iter().map(|l| net.layer_blobs(l.name()).map_or(0, |b| b.len())).collect();
    let shared = shared_blobs(&layers, &counts);
    let index: HashMap<String, usize> = stored.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
    let mut fills = Vec::new();
    for (lp, shared) in layers.iter().zip(&shared) {
        let Some(&i) = index.get(lp.name()) else {
            continue;
        };
        for (j, owner) in shared.iter().enumerate() {
            let missing = stored[i].1.get(j).is_none_or(|b| b.is_none());
            if let (true, Some((owner_layer, owner_j))) = (missing, owner) {
                let blob = index.get(owner_layer).and_then(|&o| stored[o].1.get(*owner_j).cloned().flatten());
                if let Some(blob) = blob {
                    fills.push((i, j, blob));
                }
            }
        }
    }
    for (i, j, blob) in fills {
        let blobs = &mut stored[i].1;
        if blobs.len() <= j {
            blobs.resize(j + 1, None);
        }
        blobs[j] = Some(blob);
    }

    let mut out = NetParameter::default();
    for (name, blobs) in stored {
        if let Some(j) = blobs.iter().position(|b| b.is_none()) {
            return Err(bad(format!("layer {name}: dataset data/{name}/{j} is missing")));
        }
        out.layer.push(LayerParameter {
            name: Some(name),
            blobs: blobs.into_iter().flatten().collect(),
            ..Default::default()
        });
    }
    Ok(out)
}
