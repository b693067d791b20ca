//! The graph: NetParameter → Net of layers, forward, and backward through
//! libtorch autograd, with Caffe's blob names, loss weights and parameter rules.
use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::Context;
use crate::error::Location;
use crate::layers::{self, filler, Ctx, Layer, Shape};
use crate::proto::caffe::{param_spec::DimCheckMode, LayerParameter, NetParameter, NetState, Phase};
use crate::proto::{text, upgrade};
use crate::{bail, info, warn, Error, Result};

pub mod filter;
mod param;
pub mod partial;
pub mod splits;
mod staged;
pub mod timing;
pub mod weights;

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
}

/// Layer types whose backward reads their inputs (or nothing), never their
/// output, so an in-place layer after them may overwrite that output.
const OUTPUT_NOT_SAVED: &[&str] =
    &["Convolution", "Deconvolution", "InnerProduct", "Pooling", "Concat", "Eltwise", "Scale", "LRN"];

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
    diff: Option<Tensor>,
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
}

impl Net {
    /// Reads a net prototxt, upgrades it, and builds it for `state` on `device`.
    pub fn from_file(path: &Path, state: &NetState, opts: text::TextOptions, device: Device) -> Result<Net> {
        let file = path.display().to_string();
        let parsed = text::read_file_nonempty::<NetParameter>(path, opts)?;
        for w in &parsed.warnings {
            warn!("text_format.cpp:1", "{w}");
        }
        let source = NetSource::from_parsed(&file, &parsed.message, &parsed.source_map);
        Net::from_param_upgrading(parsed.message, state, source, device)
    }

    /// Upgrades a legacy NetParameter if needed (with a log line), then builds it.
    pub fn from_param_upgrading(
        mut param: NetParameter,
        state: &NetState,
        source: NetSource,
        device: Device,
    ) -> Result<Net> {
        let report = upgrade::upgrade_net(&mut param, &source.file)?;
        if !report.steps.is_empty() {
            info!("upgrade_proto.cpp:67", "{}: {}", source.file, report.describe());
        }
        Net::new(&param, state, source, device)
    }

    /// Builds a current-format NetParameter as Caffe's `Net::Init` does: keep
    /// the layers `state` includes (the caller's phase, level and stages
    /// override the param's own), insert Split layers, then append each layer
    /// (its tops, bottoms and parameters) with shape inference.
    pub fn new(param: &NetParameter, state: &NetState, source: NetSource, device: Device) -> Result<Net> {
        let filtered = filter::filter_net(param, state, &source)?;
        let split = splits::insert_splits(&filtered, &source)?;
        let mut net = Net {
            name: param.name().to_string(),
            phase: state.phase(),
            device,
            layers: Vec::new(),
            blobs: Vec::new(),
            blob_index: HashMap::new(),
            record_blob_diffs: false,
            param_slots: Vec::new(),
            learnable: Vec::new(),
            param_owner_by_name: HashMap::new(),
            input_blobs: Vec::new(),
            output_blobs: Vec::new(),
            force_backward: param.force_backward(),
            iteration: i64::MAX,
            loss: None,
            outputs_as_loss: false,
            debug_info: param.debug_info(),
            source,
            planned_bytes: 0,
        };
        for lp in &split.layer {
            let mut lp = lp.clone();
            lp.phase = Some(state.phase() as i32);
            let loc = net.source.loc(lp.name());
            let (name, ty) = (lp.name().to_string(), lp.r#type().to_string());
            net.append_layer(lp).map_err(|e| match e {
                located @ Error::Layer { .. } => located,
                e => e.in_layer(loc, name, ty),
            })?;
        }
        net.output_blobs = net.unconsumed_blobs();
        Ok(net)
    }

    /// Creates one layer, wires its bottoms and tops, runs its setup, and
    /// creates (or shares) its parameters.
    fn append_layer(&mut self, mut lp: LayerParameter) -> Result<()> {
        let mut layer = layers::create_layer(&lp)?;
        // Caffe gives a loss layer declared without a top an anonymous one.
        if lp.top.is_empty() && layer.is_loss_layer() {
            let mut name = "(automatic)".to_string();
            let mut k = 0;
            while self.blob_index.contains_key(&name) {
                k += 1;
                name = format!("(automatic)_{k}");
            }
            lp.top.push(name);
        }
        let bottoms = self.append_bottoms(&lp)?;
        let bottom_shapes: Vec<Shape> = bottoms.iter().map(|&b| self.blobs[b].shape.clone()).collect();
        let setup = layer.setup(&bottom_shapes).map_err(|e| {
            let listed = lp.bottom.iter().cloned().zip(bottom_shapes.iter().cloned()).collect();
            e.in_layer_with_bottoms(self.source.loc(lp.name()), lp.name(), lp.r#type(), listed)
        })?;
        if setup.tops.len() != lp.top.len() {
            bail!("produces {} top blob(s) but the prototxt names {}", setup.tops.len(), lp.top.len());
        }
        let tops = self.append_tops(&lp, &bottoms, &setup.tops)?;
        if lp.r#type() == "Input" {
            self.input_blobs.extend(tops.iter().copied());
        }
        let loss_weights = loss_weights(&lp, tops.len(), layer.is_loss_layer())?;
        if !lp.propagate_down.is_empty() && lp.propagate_down.len() != bottoms.len() {
            bail!(
                "propagate_down must be given once per bottom ({} bottoms), got {}",
                bottoms.len(),
                lp.propagate_down.len()
            );
        }
        let propagate_down =
            if lp.propagate_down.is_empty() { vec![true; bottoms.len()] } else { lp.propagate_down.clone() };
        let params = self.append_params(&lp, &setup.params, layer.params_learnable())?;
        let may_overwrite_bottom = bottoms.len() == 1 && tops == bottoms && {
            let producer = self.layers.iter().rev().find(|e| e.tops.contains(&bottoms[0]));
            producer.is_some_and(|e| OUTPUT_NOT_SAVED.contains(&e.param.r#type()))
        };
        self.layers.push(LayerEntry {
            may_overwrite_bottom,
            param: lp,
            layer,
            bottoms,
            tops,
            loss_weights,
            propagate_down,
            params,
            bottom_shapes,
            staged: None,
        });
        Ok(())
    }

    fn append_bottoms(&self, lp: &LayerParameter) -> Result<Vec<usize>> {
        lp.bottom
            .iter()
            .map(|b| {
                self.blob_index.get(b).copied().ok_or_else(|| Error::invalid(format!("unknown bottom blob '{b}'")))
            })
            .collect()
    }

    /// A top named like one of the layer's bottoms is computed in place;
    /// any other top is a new blob.
    /// Adds a blob's values to the net's planned memory and checks the total
    /// against the limit, so a net too big for the machine fails while it is
    /// built, naming the blob that crossed the line.
    fn plan_bytes(&mut self, elements: i64, what: &str) -> Result<()> {
        self.planned_bytes = self.planned_bytes.saturating_add((elements as u64).saturating_mul(4));
        let limit = crate::util::limits::max_memory();
        if self.planned_bytes > limit {
            bail!(
                "{what} takes the net's blobs and parameters to {} MiB, over the memory limit of {} MiB (set -max_memory or CAFFE_TCH_MAX_MEMORY to change it)",
                self.planned_bytes >> 20,
                limit >> 20
            );
        }
        Ok(())
    }

    fn append_tops(&mut self, lp: &LayerParameter, bottoms: &[usize], shapes: &[Shape]) -> Result<Vec<usize>> {
        let mut tops = Vec::with_capacity(lp.top.len());
        for (t, shape) in lp.top.iter().zip(shapes) {
            let in_place = lp.bottom.iter().position(|b| b == t);
            let id = match (in_place, self.blob_index.get(t)) {
                (Some(k), _) => bottoms[k],
                (None, Some(_)) => bail!("top blob '{t}' is produced by multiple sources"),
                (None, None) => {
                    self.blob_index.insert(t.clone(), self.blobs.len());
                    self.blobs.push(BlobEntry {
                        name: t.clone(),
                        shape: Vec::new(),
                        value: None,
                        first_value: None,
                        diff: None,
                    });
                    self.blobs.len() - 1
                }
            };
            let n = crate::util::limits::checked_count(shape, 4, &format!("top blob '{t}'"))?;
            if in_place.is_none() {
                self.plan_bytes(n, &format!("top blob '{t}'"))?;
            }
            self.blobs[id].shape.clone_from(shape);
            tops.push(id);
        }
        Ok(tops)
    }

    /// The layer's parameter slots: a blob shared by `ParamSpec.name` points
    /// at its owner's tensor; any other is filled, or loaded from the layer's
    /// own `blobs` in the prototxt.
    fn append_params(
        &mut self,
        lp: &LayerParameter,
        decls: &[layers::ParamDecl],
        learnable: bool,
    ) -> Result<Vec<usize>> {
        let mut slots = Vec::with_capacity(decls.len());
        for (j, decl) in decls.iter().enumerate() {
            let n = crate::util::limits::checked_count(&decl.shape, 4, &format!("parameter blob {j}"))?;
            self.plan_bytes(n, &format!("parameter blob {j}"))?;
            let spec = lp.param.get(j);
            let lr_mult = if learnable { spec.map(|s| s.lr_mult()).unwrap_or(1.0) } else { 0.0 };
            let decay_mult = if learnable { spec.map(|s| s.decay_mult()).unwrap_or(1.0) } else { 0.0 };
            let share_name = spec.and_then(|s| s.name.clone()).filter(|n| !n.is_empty());
            let shared_slot = share_name.as_ref().and_then(|n| self.param_owner_by_name.get(n)).copied();
            if let (Some(owner_slot), Some(share_name)) = (shared_slot, &share_name) {
                let owner = self.param_slots[owner_slot].owner;
                let owner_shape = self.learnable[owner].data.size();
                let strict = spec.map(|s| s.share_mode() == DimCheckMode::Strict).unwrap_or(true);
                let same_count = owner_shape.iter().product::<i64>() == decl.shape.iter().product::<i64>();
                if (strict && owner_shape != decl.shape) || !same_count {
                    bail!(
                        "cannot share param '{share_name}': owner shape {owner_shape:?}, this layer needs {:?}",
                        decl.shape
                    );
                }
                if spec.is_some_and(|s| s.lr_mult.is_some()) && self.learnable[owner].lr_mult != lr_mult {
                    bail!("shared param '{share_name}' has mismatched lr_mult");
                }
                let tensor = self.learnable[owner].data.f_view(decl.shape.as_slice())?;
                self.param_slots.push(ParamSlot { tensor, owner });
            } else {
                let data = filler::fill(&decl.filler, &decl.shape, self.device)?;
                if let Some(values) = &decl.values {
                    if values.len() as i64 != n {
                        bail!("param {j} has shape {:?} but {} values", decl.shape, values.len());
                    }
                    let given = Tensor::f_from_slice(values)?.f_view(decl.shape.as_slice())?;
                    tch::no_grad(|| data.shallow_clone().f_copy_(&given))?;
                }
                if let Some(b) = lp.blobs.get(j) {
                    weights::copy_blob_into(&data, b).context(format!("param {j}"))?;
                }
                let data = data.set_requires_grad(lr_mult != 0.0);
                let owner = self.learnable.len();
                self.learnable.push(Param::new(data.shallow_clone(), lr_mult, decay_mult, lp.name(), j));
                if let Some(n) = share_name {
                    self.param_owner_by_name.insert(n, self.param_slots.len());
                }
                self.param_slots.push(ParamSlot { tensor: data, owner });
            }
            slots.push(self.param_slots.len() - 1);
        }
        Ok(slots)
    }

    /// Blobs no layer reads after they are produced (Caffe's available_blobs):
    /// the net's outputs.
    fn unconsumed_blobs(&self) -> Vec<usize> {
        let mut available: Vec<usize> = Vec::new();
        for e in &self.layers {
            available.retain(|b| !e.bottoms.contains(b));
            for &t in &e.tops {
                if !available.contains(&t) {
                    available.push(t);
                }
            }
        }
        available
    }

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
        let Some(e) = self.layers.iter_mut().find(|e| e.param.r#type() == "MemoryData") else {
            return Err(Error::invalid("set_input_arrays needs a MemoryData layer, and the net has none"));
        };
        let loc = self.source.loc(e.param.name());
        let err = |m: Error| m.in_layer(loc.clone(), e.param.name(), "MemoryData");
        e.layer.set_input(0, data.shallow_clone()).map_err(err)?;
        e.layer.set_input(1, labels.shallow_clone()).map_err(err)
    }

    fn ctx(&self) -> Ctx {
        Ctx { phase: self.phase, iteration: self.iteration, device: self.device }
    }

    fn run_layers(&mut self, force_grad_inputs: bool, grad: bool, trace: Option<&mut timing::Trace>) -> Result<f64> {
        self.run_layer_range(0, self.layers.len(), force_grad_inputs, grad, trace)
    }

    /// Runs layers `start..end` on the blobs' current values (Caffe's
    /// ForwardFromTo); the loss is the sum of those layers' loss terms.
    /// `grad`: autograd records the graph (a backward may follow).
    fn run_layer_range(
        &mut self,
        start: usize,
        end: usize,
        force_grad_inputs: bool,
        grad: bool,
        mut trace: Option<&mut timing::Trace>,
    ) -> Result<f64> {
        let ctx = self.ctx();
        let mut loss: Option<Tensor> = None;
        for e in &self.layers[start..end] {
            for &t in &e.tops {
                self.blobs[t].first_value = None;
            }
        }
        // Which (layer, top) produced each blob's current value: for layer-wise backward.
        let mut producer: Vec<Option<(usize, usize)>> = vec![None; self.blobs.len()];
        for i in start..end {
            let bottoms: Vec<Tensor> = {
                let e = &self.layers[i];
                let mut out = Vec::with_capacity(e.bottoms.len());
                for (k, &b) in e.bottoms.iter().enumerate() {
                    let v = self.blobs[b].value.as_ref().ok_or_else(|| {
                        Error::invalid(format!(
                            "blob '{}' has no value (layer '{}')",
                            self.blobs[b].name,
                            e.param.name()
                        ))
                    })?;
                    out.push(if e.propagate_down[k] { v.shallow_clone() } else { v.detach() });
                }
                out
            };
            let params: Vec<Tensor> =
                self.layers[i].params.iter().map(|&s| self.param_slots[s].tensor.shallow_clone()).collect();
            let started = std::time::Instant::now();
            let e = &mut self.layers[i];
            let in_place = e.may_overwrite_bottom
                && e.propagate_down[0]
                && trace.is_none()
                && !self.record_blob_diffs
                && !self.debug_info;
            let mut ran_in_place = None;
            if in_place {
                let mut bottom = bottoms[0].shallow_clone();
                ran_in_place = e.layer.forward_in_place(&ctx, &mut bottom).map(|r| r.map(|()| vec![bottom]));
            }
            let tops = match ran_in_place {
                Some(tops) => tops,
                None => e.layer.forward(&ctx, &bottoms, &params),
            }
            .map_err(|m| m.in_layer(self.source.loc(e.param.name()), e.param.name(), e.param.r#type()))?;
            let tops = if e.layer.own_backward() { staged::stage(e, grad, &bottoms, &params, tops) } else { tops };
            if let Some(t) = trace.as_deref_mut() {
                timing::synchronize(self.device);
                t.forward_ms.push(started.elapsed().as_secs_f64() * 1e3);
                t.bottom_src.push(e.bottoms.iter().map(|&b| producer[b]).collect());
                t.bottoms.push(bottoms.iter().map(|b| b.shallow_clone()).collect());
                t.params.push(params.iter().map(|p| p.shallow_clone()).collect());
                t.tops.push(tops.iter().map(|b| b.shallow_clone()).collect());
            }
            if self.debug_info && trace.is_none() {
                for (j, t) in tops.iter().enumerate() {
                    info!(
                        "net.cpp:617",
                        "    [Forward] Layer {}, top blob {} data: {}",
                        e.param.name(),
                        self.blobs[e.tops[j]].name,
                        crate::util::format_g(mean_abs(t), 6)
                    );
                }
                for (j, p) in params.iter().enumerate() {
                    info!(
                        "net.cpp:629",
                        "    [Forward] Layer {}, param blob {j} data: {}",
                        e.param.name(),
                        crate::util::format_g(mean_abs(p), 6)
                    );
                }
            }
            for (j, t) in tops.into_iter().enumerate() {
                let id = e.tops[j];
                producer[id] = Some((i, j));
                let t = if force_grad_inputs && e.param.r#type() == "Input" && !t.requires_grad() {
                    t.detach().set_requires_grad(true)
                } else {
                    t
                };
                let w = e.loss_weights[j];
                if w != 0.0 {
                    let term = t.sum(Kind::Float) * w as f64;
                    loss = Some(match loss {
                        Some(l) => l + term,
                        None => term,
                    });
                }
                let blob = &mut self.blobs[id];
                if (self.record_blob_diffs || self.debug_info) && blob.first_value.is_none() {
                    blob.first_value = Some(t.shallow_clone());
                }
                blob.value = Some(t);
            }
        }
        if loss.is_none() && self.outputs_as_loss {
            for &b in &self.output_blobs {
                if let Some(v) = &self.blobs[b].value {
                    if v.is_floating_point() {
                        let term = v.sum(Kind::Float);
                        loss = Some(match loss {
                            Some(l) => l + term,
                            None => term,
                        });
                    }
                }
            }
            let value = loss.as_ref().map(|l| l.double_value(&[])).unwrap_or(0.0);
            self.loss = loss;
            return Ok(value);
        }
        let value = loss.as_ref().map(|l| l.double_value(&[])).unwrap_or(0.0);
        self.loss = loss;
        Ok(value)
    }

    /// Forward pass keeping the autograd graph for `backward`. Returns the loss.
    pub fn forward(&mut self) -> Result<f64> {
        self.run_layers(self.force_backward, true, None)
    }

    /// Forward pass without autograd (test nets, `caffe test`, `caffe forward`).
    pub fn forward_inference(&mut self) -> Result<f64> {
        tch::no_grad(|| self.run_layers(false, false, None))
    }

    /// Backward: adds d(loss)/d(param) into each learnable param's diff.
    pub fn backward(&mut self) -> Result<()> {
        if self.debug_info {
            self.backward_impl(true)?;
            self.log_backward_debug();
            return Ok(());
        }
        self.backward_impl(false)
    }

    /// Caffe's `[Backward]` debug lines, in reverse layer order.
    fn log_backward_debug(&self) {
        for e in self.layers.iter().rev() {
            for (k, &b) in e.bottoms.iter().enumerate() {
                if let (true, Some(d)) = (e.propagate_down[k], self.blobs[b].diff.as_ref()) {
                    info!(
                        "net.cpp:645",
                        "    [Backward] Layer {}, bottom blob {} diff: {}",
                        e.param.name(),
                        self.blobs[b].name,
                        crate::util::format_g(mean_abs(d), 6)
                    );
                }
            }
            for (j, &slot) in e.params.iter().enumerate() {
                let owner = &self.learnable[self.param_slots[slot].owner];
                if owner.data.requires_grad() {
                    info!(
                        "net.cpp:656",
                        "    [Backward] Layer {}, param blob {j} diff: {}",
                        e.param.name(),
                        crate::util::format_g(mean_abs(&owner.diff()), 6)
                    );
                }
            }
        }
        let (mut l1d, mut l1g, mut l2d, mut l2g) = (0.0, 0.0, 0.0, 0.0);
        for p in &self.learnable {
            let d = p.data.detach().to_kind(Kind::Double);
            let g = p.diff().to_kind(Kind::Double);
            l1d += d.abs().sum(Kind::Double).double_value(&[]);
            l1g += g.abs().sum(Kind::Double).double_value(&[]);
            l2d += d.square().sum(Kind::Double).double_value(&[]);
            l2g += g.square().sum(Kind::Double).double_value(&[]);
        }
        info!(
            "net.cpp:672",
            "    [Backward] All net params (data, diff): L1 norm = ({}, {}); L2 norm = ({}, {})",
            crate::util::format_g(l1d, 6),
            crate::util::format_g(l1g, 6),
            crate::util::format_g(l2d.sqrt(), 6),
            crate::util::format_g(l2g.sqrt(), 6)
        );
    }

    /// Makes the following forward passes keep what `backward_with_blob_diffs` needs.
    pub fn record_blob_diffs(&mut self, on: bool) {
        self.record_blob_diffs = on;
    }

    /// Backward that also records every blob's diff (pycaffe's `net.blobs[x].diff`);
    /// the forward before it must have run with `record_blob_diffs(true)`.
    pub fn backward_with_blob_diffs(&mut self) -> Result<()> {
        if !self.record_blob_diffs {
            return Err(Error::invalid("backward_with_blob_diffs: call record_blob_diffs(true) before forward"));
        }
        self.backward_impl(true)
    }

    fn backward_impl(&mut self, blob_diffs: bool) -> Result<()> {
        let Some(loss) = self.loss.take() else { return Ok(()) };
        if !loss.requires_grad() {
            return Ok(());
        }
        let owners: Vec<usize> =
            (0..self.learnable.len()).filter(|&i| self.learnable[i].data.requires_grad()).collect();
        let mut blob_ids = Vec::new();
        if blob_diffs {
            for (id, v) in self.blobs.iter().map(|b| &b.first_value).enumerate() {
                if v.as_ref().is_some_and(|v| v.requires_grad()) {
                    blob_ids.push(id);
                }
            }
        }
        if owners.is_empty() && blob_ids.is_empty() {
            return Ok(());
        }
        let targets = staged::Targets { owners: &owners, blobs: &blob_ids };
        let grads = self.staged_backward(&loss, 0..self.layers.len(), &targets, false)?;
        for blob in self.blobs.iter_mut() {
            blob.diff = None;
        }
        for (&id, g) in blob_ids.iter().zip(grads) {
            let blob = &mut self.blobs[id];
            blob.diff = g.or_else(|| blob.first_value.as_ref().map(|v| v.zeros_like()));
        }
        Ok(())
    }

    /// Sets every learnable param's diff to zero (Caffe's ClearParamDiffs).
    pub fn clear_param_diffs(&mut self) -> Result<()> {
        for p in &mut self.learnable {
            p.clear()?;
        }
        Ok(())
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
        let mut trained: NetParameter = crate::proto::binary::read_message(path)?;
        let file = path.display().to_string();
        upgrade::upgrade_net(&mut trained, &file)?;
        self.copy_trained_layers_from(&trained, &file)
    }
}

/// Each top's weight in the objective: explicit, or 1 on the first top of a
/// loss layer.
fn loss_weights(lp: &LayerParameter, tops: usize, is_loss: bool) -> Result<Vec<f32>> {
    let mut weights = vec![0.0f32; tops];
    if !lp.loss_weight.is_empty() {
        if lp.loss_weight.len() != tops {
            bail!("loss_weight must be given once per top ({tops} tops) or not at all, got {}", lp.loss_weight.len());
        }
        weights.clone_from(&lp.loss_weight);
    } else if is_loss && tops > 0 {
        weights[0] = 1.0;
    }
    Ok(weights)
}
