//! The graph: NetParameter → Net of layers, forward, and backward through
//! libtorch autograd, with Caffe's blob names, loss weights and parameter rules.
//! This file holds the types and accessors; `build.rs` builds a Net, `pass.rs`
//! runs its forward and backward passes.
use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::Location;
use crate::layers::{Layer, Shape};
use crate::proto::caffe::{LayerParameter, NetParameter, Phase};
use crate::proto::{text, upgrade};
use crate::{Error, Result};

mod build;
pub mod callbacks;
pub mod filter;
mod fusion;
pub mod graph;
mod param;
pub mod partial;
mod pass;
pub mod splits;
mod staged;
pub mod timing;
pub mod weights;

pub use callbacks::{LayerCallback, LayerEvent};
pub use param::Param;

/// Where a net came from, so errors can name the file and each layer's line.
#[derive(Debug, Clone, Default)]
pub struct NetSource {
    pub file: String,
    pub layer_locs: HashMap<String, Location>,
}

impl NetSource {
    pub fn new(file: impl Into<String>) -> Self {
        NetSource { file: file.into(), layer_locs: HashMap::new() }
    }
    /// Records each layer's line from a parsed file (before upgrades, by name).
    pub fn from_parsed(file: &str, net: &NetParameter, map: &text::SourceMap) -> Self {
        let mut locs = HashMap::new();
        for (i, l) in net.layer.iter().enumerate() {
            if let Some(loc) = map.element("layer", i) {
                locs.insert(l.name().to_string(), loc.clone());
            }
        }
        for (i, l) in net.layers.iter().enumerate() {
            if let Some(loc) = map.element("layers", i) {
                let name = l.name.clone().or_else(|| l.layer.as_ref().and_then(|v0| v0.name.clone()));
                locs.insert(name.unwrap_or_default(), loc.clone());
            }
        }
        NetSource { file: file.to_string(), layer_locs: locs }
    }
    pub fn loc(&self, layer: &str) -> Location {
        self.layer_locs.get(layer).cloned().unwrap_or_else(|| Location { file: self.file.clone(), line: 0, col: 0 })
    }
}

/// Caffe's debug figure for a blob: its L1 norm divided by its element count.
pub fn mean_abs(t: &Tensor) -> f64 {
    if t.numel() == 0 {
        return 0.0;
    }
    tch::no_grad(|| t.detach().to_kind(Kind::Double).abs().mean(Kind::Double).double_value(&[]))
}

/// A tensor's values as f32 in Caffe's (row-major, NCHW) order, on the CPU:
/// what every writer of blobs (snapshots, HDF5, logs) needs.
pub fn tensor_values(t: &Tensor) -> std::result::Result<Vec<f32>, tch::TchError> {
    let flat = t.f_detach()?.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?;
    Vec::<f32>::try_from(&flat)
}

struct LayerEntry {
    param: LayerParameter,
    layer: Box<dyn Layer>,
    bottoms: Vec<usize>,
    tops: Vec<usize>,
    /// Per top; 0 for tops that are not part of the objective.
    loss_weights: Vec<f32>,
    /// Per bottom: false detaches it (Caffe's propagate_down).
    propagate_down: Vec<bool>,
    /// Indices into `Net::param_slots`, in Caffe's order (weights, then bias).
    params: Vec<usize>,
    /// The bottoms' shapes its setup saw (`Net::reshape` re-runs setup when they change).
    bottom_shapes: Vec<Shape>,
    /// In place in the prototxt, after a producer whose backward does not
    /// need its output: the layer may overwrite its bottom (`forward_in_place`).
    may_overwrite_bottom: bool,
    /// For a layer with its own backward: what its last recorded forward
    /// needs for the staged backward (`staged.rs`).
    staged: Option<staged::Staged>,
    /// Whether the last forward that ran this layer recorded autograd's
    /// graph (a backward through it reads that forward).
    recorded: bool,
}

pub use crate::layers::MAX_BLOB_AXES;

/// A blob shape with more axes than Caffe allows, as the error its
/// `Blob::Reshape` gives.
fn check_axes(what: &str, shape: &[i64]) -> Result<()> {
    if shape.len() > MAX_BLOB_AXES {
        return Err(Error::invalid(format!(
            "{what} would have {} axes; a blob has at most {MAX_BLOB_AXES}, as in Caffe",
            shape.len()
        )));
    }
    Ok(())
}

/// Layer types whose backward reads their inputs (or nothing), never their
/// output, so an in-place layer after them may overwrite that output.
const OUTPUT_NOT_SAVED: &[&str] = &[
    "Convolution",
    "DepthwiseConvolution",
    "ConvolutionDepthwise",
    "Deconvolution",
    "InnerProduct",
    "Pooling",
    "Concat",
    "Eltwise",
    "Scale",
    "LRN",
];

/// A parameter slot of a layer: the tensor it uses, and which learnable param owns it.
struct ParamSlot {
    tensor: Tensor,
    owner: usize,
}

/// One blob of the net (Caffe's `Blob` as the net tracks it).
struct BlobEntry {
    name: String,
    shape: Shape,
    /// The latest value after forward (in-place layers rewrite it).
    value: Option<Tensor>,
    /// The first value (its producer's output): a blob's diff is the gradient
    /// with respect to it, as Caffe's in-place backward leaves it. Kept only
    /// when `record_blob_diffs` or debug_info asks for it: holding a blob's
    /// value from before an in-place layer keeps that buffer alive until the
    /// next forward (GoogLeNet: every pre-ReLU conv output).
    first_value: Option<Tensor>,
    /// The values in-place layers wrote over the first one, with each
    /// writer's layer index (kept with `first_value`): a backward that starts
    /// between two of them seeds the version its start layer saw, as Caffe's
    /// Backward of that layer reads its top's diff alone.
    rewrites: Vec<(usize, Tensor)>,
    diff: Option<Tensor>,
}

impl BlobEntry {
    /// The value as layer `layer` left it: the last version written at or
    /// before that layer (where the writes were kept), else the latest.
    fn value_after(&self, layer: usize) -> Option<&Tensor> {
        if let Some((_, t)) = self.rewrites.iter().rev().find(|(l, _)| *l <= layer) {
            return Some(t);
        }
        if !self.rewrites.is_empty() {
            return self.first_value.as_ref().or(self.value.as_ref());
        }
        self.value.as_ref()
    }
}

/// A Caffe net built on libtorch.
pub struct Net {
    pub name: String,
    pub phase: Phase,
    device: Device,
    layers: Vec<LayerEntry>,
    blobs: Vec<BlobEntry>,
    blob_index: HashMap<String, usize>,
    record_blob_diffs: bool,
    param_slots: Vec<ParamSlot>,
    learnable: Vec<Param>,
    /// The slot that owns each shared parameter name (ParamSpec.name).
    param_owner_by_name: HashMap<String, usize>,
    input_blobs: Vec<usize>,
    output_blobs: Vec<usize>,
    force_backward: bool,
    iteration: i64,
    loss: Option<Tensor>,
    /// For benchmarks of deploy nets (no loss layer): backward from Σ outputs,
    /// as `caffe time` on such nets still runs every layer's backward.
    outputs_as_loss: bool,
    /// Caffe's debug_info: log each blob's mean |value| and |diff| per layer.
    debug_info: bool,
    source: NetSource,
    /// Bytes of the blobs and parameters set up so far (the memory limit's check).
    planned_bytes: u64,
    /// Called around each layer's forward and backward (`callbacks.rs`).
    callbacks: Option<callbacks::Callbacks>,
    /// Only the outputs are read after a forward ([`Net::read_outputs_only`]).
    outputs_read_only: bool,
}

impl Net {
    /// The layers' names, in execution order (Split layers included).
    pub fn layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.param.name()).collect()
    }
    pub fn layer_types(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.param.r#type()).collect()
    }
    pub fn layer_params(&self) -> Vec<&LayerParameter> {
        self.layers.iter().map(|l| &l.param).collect()
    }
    /// Layer `i` itself (front ends reach their own layer types through [`Layer::as_any`]).
    pub fn layer(&self, i: usize) -> Option<&dyn Layer> {
        self.layers.get(i).map(|e| e.layer.as_ref())
    }
    pub fn blob_names(&self) -> Vec<&str> {
        self.blobs.iter().map(|b| b.name.as_str()).collect()
    }
    pub fn input_blob_names(&self) -> Vec<&str> {
        self.input_blobs.iter().map(|&b| self.blobs[b].name.as_str()).collect()
    }
    pub fn output_blob_names(&self) -> Vec<&str> {
        self.output_blobs.iter().map(|&b| self.blobs[b].name.as_str()).collect()
    }
    pub fn blob_shape(&self, name: &str) -> Option<&Shape> {
        self.blob_index.get(name).map(|&i| &self.blobs[i].shape)
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn source(&self) -> &NetSource {
        &self.source
    }

    /// The latest value of a blob after `forward` (pycaffe's `net.blobs[name].data`).
    pub fn blob(&self, name: &str) -> Option<&Tensor> {
        self.blob_index.get(name).and_then(|&i| self.blobs[i].value.as_ref())
    }
    /// A blob's value as its producer wrote it, before any in-place layer
    /// rewrote it; kept only while `record_blob_diffs` is on.
    pub fn blob_first_value(&self, name: &str) -> Option<&Tensor> {
        self.blob_index.get(name).and_then(|&i| self.blobs[i].first_value.as_ref())
    }
    /// A blob's gradient after `backward_with_blob_diffs` (pycaffe's `.diff`).
    pub fn blob_diff(&self, name: &str) -> Option<&Tensor> {
        self.blob_index.get(name).and_then(|&i| self.blobs[i].diff.as_ref())
    }

    /// The learnable parameters, owners only, in Caffe's order.
    pub fn learnable_params(&self) -> &[Param] {
        &self.learnable
    }
    pub fn learnable_params_mut(&mut self) -> &mut [Param] {
        // Params that got no gradient since the last clear read as zero.
        for p in &mut self.learnable {
            p.settle();
        }
        &mut self.learnable
    }
    /// A layer's blobs by layer name, weights then bias (shared ones included).
    pub fn layer_blobs(&self, layer: &str) -> Option<Vec<&Tensor>> {
        let e = self.layers.iter().find(|l| l.param.name() == layer)?;
        Some(e.params.iter().map(|&s| &self.param_slots[s].tensor).collect())
    }
    /// A blob's weight in the objective (Caffe's blob_loss_weights); 0 for
    /// blobs that are not loss tops. The solver and `caffe test` print it.
    pub fn blob_loss_weight(&self, name: &str) -> f32 {
        let Some(&id) = self.blob_index.get(name) else { return 0.0 };
        self.layers
            .iter()
            .flat_map(|e| e.tops.iter().zip(&e.loss_weights))
            .filter(|(&t, _)| t == id)
            .map(|(_, &w)| w)
            .find(|&w| w != 0.0)
            .unwrap_or(0.0)
    }
    /// The gradient of a layer's blob `j` (its owner's diff).
    pub fn layer_blob_diff(&self, layer: &str, j: usize) -> Option<Tensor> {
        let e = self.layers.iter().find(|l| l.param.name() == layer)?;
        let slot = e.params.get(j)?;
        Some(self.learnable[self.param_slots[*slot].owner].diff())
    }

    /// Whether the net has any loss term (a top with a non-zero loss weight).
    pub fn has_loss(&self) -> bool {
        self.layers.iter().any(|e| e.loss_weights.iter().any(|&w| w != 0.0))
    }

    /// Benchmarks only: when the net has no loss, backpropagate from the sum of
    /// its outputs so every layer's backward runs (Caffe's `time` does too).
    pub fn use_outputs_as_loss(&mut self, on: bool) {
        self.outputs_as_loss = on;
    }

    /// Caffe's `debug_info` (from the prototxt, or the solver's): per-layer
    /// mean |data| on forward, mean |diff| on backward.
    pub fn debug_info(&self) -> bool {
        self.debug_info
    }

    /// DropIn's τ: the solver's iteration. Nets outside a solver default to fully grown.
    pub fn set_iteration(&mut self, iteration: i64) {
        self.iteration = iteration;
    }
    pub fn iteration(&self) -> i64 {
        self.iteration
    }

    /// A command's `-iteration` flag: DropIn's τ when given. Without it a net
    /// with gradual DropIn layers runs fully grown, which the log says: a
    /// snapshot taken before the ramp ended scores badly that way.
    pub fn use_dropin_iteration(&mut self, iteration: Option<i64>) {
        if let Some(it) = iteration {
            self.set_iteration(it);
            return;
        }
        let gradual: Vec<&str> = self
            .layers
            .iter()
            .filter(|e| {
                e.param.r#type() == "DropIn" && e.param.dropin_param.as_ref().is_some_and(|p| p.dropin_length() > 0)
            })
            .map(|e| e.param.name())
            .collect();
        if !gradual.is_empty() {
            crate::warn!(
                "net.cpp:1",
                "DropIn layers run fully grown ({}); -iteration N runs them as grown at solver iteration N, e.g. a snapshot's",
                gradual.join(", ")
            );
        }
    }

    /// Moves the data layers to where `batches` forward passes since the net
    /// was built would have left them (see `Layer::skip_to_batch`).
    pub fn skip_data_to_batch(&mut self, batches: u64) -> Result<()> {
        for e in &mut self.layers {
            let loc = self.source.loc(e.param.name());
            e.layer.skip_to_batch(batches).map_err(|err| err.in_layer(loc, e.param.name(), e.param.r#type()))?;
        }
        Ok(())
    }

    /// Feeds a net input (an Input layer's top). Wrong shapes are errors naming both shapes.
    pub fn set_input(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let id = *self.blob_index.get(name).ok_or_else(|| Error::invalid(format!("net has no blob named '{name}'")))?;
        if !self.input_blobs.contains(&id) {
            return Err(Error::invalid(format!(
                "blob '{name}' is not a net input (inputs: {})",
                self.input_blob_names().join(", ")
            )));
        }
        let want = &self.blobs[id].shape;
        let got = value.size();
        let same_but_batch = want.len() == got.len() && want.iter().skip(1).eq(got.iter().skip(1));
        if !same_but_batch {
            return Err(Error::invalid(format!("input '{name}' has shape {got:?} but the net declares {want:?}")));
        }
        let value = value.to_kind(Kind::Float).to_device(self.device);
        for e in &mut self.layers {
            if let Some(j) = e.tops.iter().position(|&t| t == id) {
                if e.param.r#type() == "Input" {
                    return e.layer.set_input(j, value);
                }
            }
        }
        Err(Error::invalid(format!("no input layer produces '{name}'")))
    }

    /// Feeds the net's first MemoryData layer (pycaffe's `set_input_arrays`):
    /// data N×C×H×W and N labels, N a multiple of its batch_size.
    pub fn set_input_arrays(&mut self, data: &Tensor, labels: &Tensor) -> Result<()> {
        let Some(i) = self.layers.iter().position(|e| e.param.r#type() == "MemoryData") else {
            return Err(Error::invalid("set_input_arrays needs a MemoryData layer, and the net has none"));
        };
        self.set_layer_input_arrays(i, data, labels)
    }

    /// Caffe's `MemoryDataLayer::AddDatumVector` on layer `layer`: serialized
    /// Datums through its `transform_param`, then served as `set_input_arrays`'s.
    pub fn add_datum_vector(&mut self, layer: usize, records: &[&[u8]]) -> Result<()> {
        let e = self.memory_data_layer(layer)?;
        let (name, loc) = (e.param.name().to_string(), self.source.loc(e.param.name()));
        let (data, labels) = crate::layers::data::memory_data::transform_records(&e.param, self.phase, records)
            .map_err(|m| m.in_layer(loc, &name, "MemoryData"))?;
        self.set_layer_input_arrays(layer, &data, &labels)
    }

    /// Caffe's `MemoryDataLayer::set_batch_size` on layer `layer`: its tops
    /// take the new batch, and the layers after it are set up for them.
    pub fn set_memory_data_batch_size(&mut self, layer: usize, batch: usize) -> Result<()> {
        let e = self.memory_data_layer(layer)?;
        let (name, loc) = (e.param.name().to_string(), self.source.loc(e.param.name()));
        let e = &mut self.layers[layer];
        let shapes = e.layer.set_batch_size(batch).map_err(|m| m.in_layer(loc, &name, "MemoryData"))?;
        for (&t, shape) in e.tops.iter().zip(shapes) {
            self.blobs[t].shape = shape;
        }
        let n = self.layers.len();
        self.reshape_layers(layer + 1, n)
    }

    fn memory_data_layer(&self, layer: usize) -> Result<&LayerEntry> {
        match self.layers.get(layer) {
            Some(e) if e.param.r#type() == "MemoryData" => Ok(e),
            Some(e) => Err(Error::invalid(format!(
                "layer '{}' is a {}, not a MemoryData layer",
                e.param.name(),
                e.param.r#type()
            ))),
            None => Err(Error::invalid(format!("the net has no layer {layer}"))),
        }
    }

    /// Feeds MemoryData layer `layer` (Caffe's `MemoryDataLayer::Reset`).
    pub fn set_layer_input_arrays(&mut self, layer: usize, data: &Tensor, labels: &Tensor) -> Result<()> {
        self.memory_data_layer(layer)?;
        let e = &mut self.layers[layer];
        let loc = self.source.loc(e.param.name());
        let err = |m: Error| m.in_layer(loc.clone(), e.param.name(), "MemoryData");
        e.layer.set_input(0, data.shallow_clone()).map_err(err)?;
        e.layer.set_input(1, labels.shallow_clone()).map_err(err)
    }

    /// The net's layers as Caffe's `NetParameter` with blobs (what a .caffemodel
    /// holds). A blob that cannot be read is an error naming its layer.
    pub fn to_proto(&self, write_diff: bool) -> Result<NetParameter> {
        weights::net_to_proto(self, write_diff)
    }

    /// Copies weights from a trained net by layer name (Caffe's CopyTrainedLayersFrom).
    pub fn copy_trained_layers_from(&mut self, trained: &NetParameter, origin: &str) -> Result<()> {
        weights::copy_trained_layers(self, trained, origin)
    }

    /// Reads a `.caffemodel` (or Caffe's HDF5 `.caffemodel.h5`, or a
    /// `.safetensors` in PyTorch's or Caffe's naming) and copies its layers in.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        if path.extension().is_some_and(|e| e == "safetensors") {
            return weights::safetensors::load_into(self, path);
        }
        if path.extension().is_some_and(|e| e == "h5") {
            let trained = weights::hdf5::read_model(self, path)?;
            return self.copy_trained_layers_from(&trained, &path.display().to_string());
        }
        let mut trained = weights::names_and_blobs::read_caffemodel(path)?;
        let file = path.display().to_string();
        upgrade::upgrade_net(&mut trained, &file)?;
        self.copy_trained_layers_from(&trained, &file)
    }
}
