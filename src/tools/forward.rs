//! `caffe forward`: one forward pass on the user's inputs, writing blobs as
//! `.npy` files. How a migrating user runs a model-zoo net without Python, and
//! how parity is checked from outside.
use std::path::{Path, PathBuf};

use tch::Device;

use crate::net::Net;
use crate::proto::caffe::{NetState, Phase};
use crate::proto::text::TextOptions;
use crate::{info, warn, Error, Result};

pub struct ForwardOptions {
    pub weights: Vec<PathBuf>,
    /// (blob name, .npy file)
    pub inputs: Vec<(String, PathBuf)>,
    pub phase: Phase,
    /// NetState level and stages, as `caffe test` and `caffe time` take them.
    pub level: i32,
    pub stages: Vec<String>,
    pub iteration: Option<i64>,
    /// None: the net's outputs; Some(empty): all blobs.
    pub blobs: Option<Vec<String>>,
    pub out: PathBuf,
    pub device: Device,
}

/// Parses `NAME=file.npy`.
pub fn parse_input(spec: &str) -> Result<(String, PathBuf)> {
    match spec.split_once('=') {
        Some((n, f)) if !n.is_empty() && !f.is_empty() => Ok((n.to_string(), PathBuf::from(f))),
        _ => Err(Error::invalid(format!("-input expects NAME=file.npy, got '{spec}'"))),
    }
}

/// The file a blob is written to: `/` in blob names becomes `__`.
pub fn blob_file(out: &Path, blob: &str) -> PathBuf {
    out.join(format!("{}.npy", blob.replace('/', "__")))
}

pub fn run(model: &Path, text: TextOptions, o: &ForwardOptions) -> Result<Vec<PathBuf>> {
    let state = NetState { phase: Some(o.phase as i32), level: Some(o.level), stage: o.stages.clone() };
    let mut net = Net::from_file(model, &state, text, o.device)?;
    for w in &o.weights {
        net.load_weights(w)?;
    }
    net.use_dropin_iteration(o.iteration);
    let inputs: Vec<String> = net.input_blob_names().iter().map(|s| s.to_string()).collect();
    for (name, file) in &o.inputs {
        let t = crate::util::npy::read(file)?;
        net.set_input(name, &t)?;
    }
    for name in &inputs {
        if !o.inputs.iter().any(|(n, _)| n == name) {
            let shape = net.blob_shape(name).cloned().unwrap_or_default();
            warn!("forward.cpp:1", "input '{name}' not given: using zeros of shape {shape:?}");
        }
    }
    let loss = net.forward_inference()?;
    info!("forward.cpp:1", "Forward done, loss = {loss}");
    let names: Vec<String> = match &o.blobs {
        None => net.output_blob_names().iter().map(|s| s.to_string()).collect(),
        Some(v) if v.is_empty() => net.blob_names().iter().map(|s| s.to_string()).collect(),
        Some(v) => v.clone(),
    };
    std::fs::create_dir_all(&o.out).map_err(|e| Error::io(&o.out, e))?;
    let mut written = Vec::new();
    for name in &names {
        let t = net.blob(name).ok_or_else(|| {
            Error::invalid(format!("net has no blob named '{name}' (blobs: {})", net.blob_names().join(", ")))
        })?;
        let path = blob_file(&o.out, name);
        let host = t.f_to_device(Device::Cpu)?;
        crate::util::write_atomic_with(&path, |tmp| {
            host.write_npy(tmp).map_err(|e| Error::invalid(format!("{}: cannot write .npy: {e}", path.display())))
        })?;
        info!("forward.cpp:1", "Wrote blob {name} {:?} to {}", t.size(), path.display());
        written.push(path);
    }
    Ok(written)
}
