//! The graph: NetParameter → Net of layers, forward, and backward through
//! libtorch autograd, with Caffe's blob names, loss weights and parameter rules.
use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::Location;
use crate::layers::{self, filler, Ctx, Layer, Shape};
use crate::proto::caffe::{param_spec::DimCheckMode, LayerParameter, NetParameter, NetState, Phase};
use crate::proto::{text, upgrade};
use crate::{info, warn, Error, Result};

pub mod filter;
mod param;
pub mod splits;
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
}

/// A parameter slot of a layer: the tensor it uses, and which learnable param owns it.
struct ParamSlot {
    tensor: Tensor,
    owner: usize,
}

/// A Caffe net built on libtorch.
pub struct Net {
    pub name: String,
    pub phase: Phase,
    device: Device,
    layers: Vec<LayerEntry>,
    blob_names: Vec<String>,
    blob_index: HashMap<String, usize>,
    blob_shapes: Vec<Shape>,
    /// The latest value of each blob after forward (in-place layers rewrite it).
    values: Vec<Option<Tensor>>,
    /// The first value of each blob (its producer's output): a blob's diff is
    /// the gradient with respect to it, as Caffe's in-place backward leaves it.
    /// Kept only when `record_blob_diffs` or debug_info asks for it: holding a blob's value
    /// from before an in-place layer keeps that buffer alive until the next
    /// forward (GoogLeNet: every pre-ReLU conv output).
    first_values: Vec<Option<Tensor>>,
    record_blob_diffs: bool,
    diffs: Vec<Option<Tensor>>,
    param_slots: Vec<ParamSlot>,
    learnable: Vec<Param>,
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

    /// Builds a current-format NetParameter: filtering by `state` (Caffe's
    /// NetState: the param's own state fields are overridden by the caller's phase,
    /// level and stages), splits, layer setup and shape inference.
    pub fn new(param: &NetParameter, state: &NetState, source: NetSource, device: Device) -> Result<Net> {
        let layer_err = |layer: &str, ty: &str, msg: String| Error::Layer {
            loc: source.loc(layer),
            layer: layer.to_string(),
            layer_type: ty.to_string(),
            msg,
        };
        let type_of = |name: &str| -> String {
            param
                .layer
                .iter()
                .find(|l| l.name() == name)
                .map(|l| l.r#type().to_string())
                .unwrap_or_else(|| "Split".into())
        };
        let filtered = filter::filter_net(param, state).map_err(|(l, m)| layer_err(&l, &type_of(&l), m))?;
        let split = splits::insert_splits(&filtered).map_err(|(l, m)| layer_err(&l, &type_of(&l), m))?;

        let mut net = Net {
            name: param.name().to_string(),
            phase: state.phase(),
            device,
            layers: Vec::new(),
            blob_names: Vec::new(),
            blob_index: HashMap::new(),
            blob_shapes: Vec::new(),
            values: Vec::new(),
            first_values: Vec::new(),
            record_blob_diffs: false,
            diffs: Vec::new(),
            param_slots: Vec::new(),
            learnable: Vec::new(),
            input_blobs: Vec::new(),
            output_blobs: Vec::new(),
            force_backward: param.force_backward(),
            iteration: i64::MAX,
            loss: None,
            outputs_as_loss: false,
            debug_info: param.debug_info(),
            source: source.clone(),
        };
        let mut param_owner_by_name: HashMap<String, usize> = HashMap::new();
        let mut consumed = vec![];

        for lp in &split.layer {
            let mut lp = lp.clone();
            lp.phase = Some(state.phase() as i32);
            let name = lp.name().to_string();
            let ty = lp.r#type().to_string();
            let err = |m: String| layer_err(&name, &ty, m);

            let mut layer = layers::create_layer(&lp).map_err(|e| err(e.0))?;
            // Caffe gives a loss layer declared without a top an anonymous one.
            if lp.top.is_empty() && layer.is_loss_layer() {
                let mut name = "(automatic)".to_string();
                let mut k = 0;
                while net.blob_index.contains_key(&name) {
                    k += 1;
                    name = format!("(automatic)_{k}");
                }
                lp.top.push(name);
            }
            let mut bottoms = Vec::new();
            for b in &lp.bottom {
                let id = *net.blob_index.get(b).ok_or_else(|| err(format!("unknown bottom blob '{b}'")))?;
                bottoms.push(id);
                consumed.push(id);
            }
            let bottom_shapes: Vec<Shape> = bottoms.iter().map(|&b| net.blob_shapes[b].clone()).collect();
            let setup = layer.setup(&bottom_shapes).map_err(|e| {
                let shapes: Vec<String> =
                    lp.bottom.iter().zip(&bottom_shapes).map(|(b, s)| format!("{b} {s:?}")).collect();
                err(format!("{} (bottoms: {})", e.0, if shapes.is_empty() { "none".into() } else { shapes.join(", ") }))
            })?;
            if setup.tops.len() != lp.top.len() {
                return Err(err(format!(
                    "produces {} top blob(s) but the prototxt names {}",
                    setup.tops.len(),
                    lp.top.len()
                )));
            }
            let mut tops = Vec::new();
            for (j, t) in lp.top.iter().enumerate() {
                let in_place = lp.bottom.iter().position(|b| b == t);
                let id = match (in_place, net.blob_index.get(t)) {
                    (Some(k), _) => bottoms[k],
                    (None, Some(_)) => return Err(err(format!("top blob '{t}' is produced by multiple sources"))),
                    (None, None) => {
                        let id = net.blob_names.len();
                        net.blob_names.push(t.clone());
                        net.blob_index.insert(t.clone(), id);
                        net.blob_shapes.push(Vec::new());
                        net.values.push(None);
                        net.first_values.push(None);
                        net.diffs.push(None);
                        id
                    }
                };
                net.blob_shapes[id] = setup.tops[j].clone();
                tops.push(id);
            }
            if ty == "Input" {
                net.input_blobs.extend(tops.iter().copied());
            }

            // Loss weights: explicit, or 1 on the first top of a *Loss layer.
            let mut loss_weights = vec![0.0f32; tops.len()];
            if !lp.loss_weight.is_empty() {
                if lp.loss_weight.len() != tops.len() {
                    return Err(err(format!(
                        "loss_weight must be given once per top ({} tops) or not at all, got {}",
                        tops.len(),
                        lp.loss_weight.len()
                    )));
                }
                loss_weights.clone_from(&lp.loss_weight);
            } else if layer.is_loss_layer() && !tops.is_empty() {
                loss_weights[0] = 1.0;
            }

            if !lp.propagate_down.is_empty() && lp.propagate_down.len() != bottoms.len() {
                return Err(err(format!(
                    "propagate_down must be given once per bottom ({} bottoms), got {}",
                    bottoms.len(),
                    lp.propagate_down.len()
                )));
            }
            let propagate_down =
                if lp.propagate_down.is_empty() { vec![true; bottoms.len()] } else { lp.propagate_down.clone() };

            // Parameters: load from the layer's own blobs if present, else fill;
            // share by ParamSpec.name.
            let learnable_kind = layer.params_learnable();
            let mut slots = Vec::new();
            for (j, decl) in setup.params.iter().enumerate() {
                let spec = lp.param.get(j);
                let lr_mult = if learnable_kind { spec.map(|s| s.lr_mult()).unwrap_or(1.0) } else { 0.0 };
                let decay_mult = if learnable_kind { spec.map(|s| s.decay_mult()).unwrap_or(1.0) } else { 0.0 };
                let share_name = spec.and_then(|s| s.name.clone()).filter(|n| !n.is_empty());
                if let Some(owner_slot) = share_name.as_ref().and_then(|n| param_owner_by_name.get(n)).copied() {
                    let owner = net.param_slots[owner_slot].owner;
                    let owner_shape = net.learnable[owner].data.size();
                    let strict = spec.map(|s| s.share_mode() == DimCheckMode::Strict).unwrap_or(true);
                    let same_count = owner_shape.iter().product::<i64>() == decl.shape.iter().product::<i64>();
                    if (strict && owner_shape != decl.shape) || !same_count {
                        return Err(err(format!(
                            "cannot share param '{}': owner shape {owner_shape:?}, this layer needs {:?}",
                            share_name.unwrap_or_default(),
                            decl.shape
                        )));
                    }
                    if spec.is_some_and(|s| s.lr_mult.is_some()) && net.learnable[owner].lr_mult != lr_mult {
                        return Err(err(format!(
                            "shared param '{}' has mismatched lr_mult",
                            share_name.unwrap_or_default()
                        )));
                    }
                    let tensor = net.learnable[owner].data.view(decl.shape.as_slice());
                    net.param_slots.push(ParamSlot { tensor, owner });
                } else {
                    let data = filler::fill(&decl.filler, &decl.shape, device).map_err(|e| err(e.0))?;
                    if let Some(b) = lp.blobs.get(j) {
                        weights::copy_blob_into(&data, b).map_err(|m| err(format!("param {j}: {m}")))?;
                    }
                    let data = data.set_requires_grad(lr_mult != 0.0);
                    let owner = net.learnable.len();
                    net.learnable.push(Param::new(data.shallow_clone(), lr_mult, decay_mult, format!("{name}[{j}]")));
                    if let Some(n) = share_name {
                        param_owner_by_name.insert(n, net.param_slots.len());
                    }
                    net.param_slots.push(ParamSlot { tensor: data, owner });
                }
                slots.push(net.param_slots.len() - 1);
            }

            net.layers.push(LayerEntry {
                param: lp,
                layer,
                bottoms,
                tops,
                loss_weights,
                propagate_down,
                params: slots,
            });
        }

        // Outputs: blobs no layer reads after they are produced, as Caffe's available_blobs.
        let mut available: Vec<usize> = Vec::new();
        for e in &net.layers {
            available.retain(|b| !e.bottoms.contains(b));
            for &t in &e.tops {
                if !available.contains(&t) {
                    available.push(t);
                }
            }
        }
        net.output_blobs = available;
        let _ = consumed;
        Ok(net)
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
    pub fn blob_names(&self) -> &[String] {
        &self.blob_names
    }
    pub fn input_blob_names(&self) -> Vec<&str> {
        self.input_blobs.iter().map(|&b| self.blob_names[b].as_str()).collect()
    }
    pub fn output_blob_names(&self) -> Vec<&str> {
        self.output_blobs.iter().map(|&b| self.blob_names[b].as_str()).collect()
    }
    pub fn blob_shape(&self, name: &str) -> Option<&Shape> {
        self.blob_index.get(name).map(|&i| &self.blob_shapes[i])
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn source(&self) -> &NetSource {
        &self.source
    }

    /// The latest value of a blob after `forward` (pycaffe's `net.blobs[name].data`).
    pub fn blob(&self, name: &str) -> Option<&Tensor> {
        self.blob_index.get(name).and_then(|&i| self.values[i].as_ref())
    }
    /// A blob's gradient after `backward_with_blob_diffs` (pycaffe's `.diff`).
    pub fn blob_diff(&self, name: &str) -> Option<&Tensor> {
        self.blob_index.get(name).and_then(|&i| self.diffs[i].as_ref())
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

    /// Caffe's `debug_info`: per-layer mean |data| on forward, mean |diff| on backward.
    pub fn set_debug_info(&mut self, on: bool) {
        self.debug_info = on;
    }
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

    /// Feeds a net input (an Input layer's top). Wrong shapes are errors naming both shapes.
    pub fn set_input(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let id = *self.blob_index.get(name).ok_or_else(|| Error::msg(format!("net has no blob named '{name}'")))?;
        if !self.input_blobs.contains(&id) {
            return Err(Error::msg(format!(
                "blob '{name}' is not a net input (inputs: {})",
                self.input_blob_names().join(", ")
            )));
        }
        let want = &self.blob_shapes[id];
        let got = value.size();
        let same_but_batch = want.len() == got.len() && want.iter().skip(1).eq(got.iter().skip(1));
        if !same_but_batch {
            return Err(Error::msg(format!("input '{name}' has shape {got:?} but the net declares {want:?}")));
        }
        let value = value.to_kind(Kind::Float).to_device(self.device);
        for e in &mut self.layers {
            if let Some(j) = e.tops.iter().position(|&t| t == id) {
                if e.param.r#type() == "Input" {
                    return e.layer.set_input(j, value).map_err(|m| Error::msg(m.0));
                }
            }
        }
        Err(Error::msg(format!("no input layer produces '{name}'")))
    }

    /// Feeds the net's first MemoryData layer (pycaffe's `set_input_arrays`):
    /// data N×C×H×W and N labels, N a multiple of its batch_size.
    pub fn set_input_arrays(&mut self, data: &Tensor, labels: &Tensor) -> Result<()> {
        let Some(e) = self.layers.iter_mut().find(|e| e.param.r#type() == "MemoryData") else {
            return Err(Error::msg("set_input_arrays needs a MemoryData layer, and the net has none"));
        };
        let name = e.param.name().to_string();
        let err = |m: layers::LayerError| Error::msg(format!("layer '{name}' (type MemoryData): {}", m.0));
        e.layer.set_input(0, data.shallow_clone()).map_err(err)?;
        e.layer.set_input(1, labels.shallow_clone()).map_err(err)
    }

    fn ctx(&self) -> Ctx {
        Ctx { phase: self.phase, iteration: self.iteration, device: self.device }
    }

    fn run_layers(&mut self, force_grad_inputs: bool, mut trace: Option<&mut timing::Trace>) -> Result<f64> {
        let ctx = self.ctx();
        let mut loss: Option<Tensor> = None;
        for v in self.first_values.iter_mut() {
            *v = None;
        }
        // Which (layer, top) produced each blob's current value: for layer-wise backward.
        let mut producer: Vec<Option<(usize, usize)>> = vec![None; self.blob_names.len()];
        for i in 0..self.layers.len() {
            let bottoms: Vec<Tensor> = {
                let e = &self.layers[i];
                let mut out = Vec::with_capacity(e.bottoms.len());
                for (k, &b) in e.bottoms.iter().enumerate() {
                    let v = self.values[b].as_ref().ok_or_else(|| {
                        Error::msg(format!("blob '{}' has no value (layer '{}')", self.blob_names[b], e.param.name()))
                    })?;
                    out.push(if e.propagate_down[k] { v.shallow_clone() } else { v.detach() });
                }
                out
            };
            let params: Vec<Tensor> =
                self.layers[i].params.iter().map(|&s| self.param_slots[s].tensor.shallow_clone()).collect();
            let started = std::time::Instant::now();
            let e = &mut self.layers[i];
            let tops = e.layer.forward(&ctx, &bottoms, &params).map_err(|m| Error::Layer {
                loc: self.source.loc(e.param.name()),
                layer: e.param.name().to_string(),
                layer_type: e.param.r#type().to_string(),
                msg: m.0,
            })?;
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
                        self.blob_names[e.tops[j]],
                        crate::log::fmt_g(mean_abs(t), 6)
                    );
                }
                for (j, p) in params.iter().enumerate() {
                    info!(
                        "net.cpp:629",
                        "    [Forward] Layer {}, param blob {j} data: {}",
                        e.param.name(),
                        crate::log::fmt_g(mean_abs(p), 6)
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
                if (self.record_blob_diffs || self.debug_info) && self.first_values[id].is_none() {
                    self.first_values[id] = Some(t.shallow_clone());
                }
                self.values[id] = Some(t);
            }
        }
        if loss.is_none() && self.outputs_as_loss {
            for &b in &self.output_blobs {
                if let Some(v) = &self.values[b] {
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
        self.run_layers(self.force_backward, None)
    }

    /// Forward pass without autograd (test nets, `caffe test`, `caffe forward`).
    pub fn forward_inference(&mut self) -> Result<f64> {
        tch::no_grad(|| self.run_layers(false, None))
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
                if let (true, Some(d)) = (e.propagate_down[k], self.diffs[b].as_ref()) {
                    info!(
                        "net.cpp:645",
                        "    [Backward] Layer {}, bottom blob {} diff: {}",
                        e.param.name(),
                        self.blob_names[b],
                        crate::log::fmt_g(mean_abs(d), 6)
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
                        crate::log::fmt_g(mean_abs(&owner.diff()), 6)
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
            crate::log::fmt_g(l1d, 6),
            crate::log::fmt_g(l1g, 6),
            crate::log::fmt_g(l2d.sqrt(), 6),
            crate::log::fmt_g(l2g.sqrt(), 6)
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
            return Err(Error::msg("backward_with_blob_diffs: call record_blob_diffs(true) before forward"));
        }
        self.backward_impl(true)
    }

    fn backward_impl(&mut self, blob_diffs: bool) -> Result<()> {
        let Some(loss) = self.loss.take() else { return Ok(()) };
        if !loss.requires_grad() {
            return Ok(());
        }
        let mut inputs: Vec<Tensor> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for (i, p) in self.learnable.iter().enumerate() {
            if p.data.requires_grad() {
                inputs.push(p.data.shallow_clone());
                owners.push(i);
            }
        }
        let mut blob_ids = Vec::new();
        if blob_diffs {
            for (id, v) in self.first_values.iter().enumerate() {
                if let Some(v) = v {
                    if v.requires_grad() {
                        inputs.push(v.shallow_clone());
                        blob_ids.push(id);
                    }
                }
            }
        }
        if inputs.is_empty() {
            return Ok(());
        }
        let grads = Tensor::f_run_backward(&[&loss], &inputs, false, false)?;
        tch::no_grad(|| {
            for (k, &i) in owners.iter().enumerate() {
                self.learnable[i].accumulate(&grads[k]);
            }
        });
        for d in self.diffs.iter_mut() {
            *d = None;
        }
        for (k, &id) in blob_ids.iter().enumerate() {
            let g = &grads[owners.len() + k];
            let v = self.first_values[id].as_ref().map(|v| v.zeros_like());
            self.diffs[id] = if g.defined() { Some(g.shallow_clone()) } else { v };
        }
        Ok(())
    }

    /// Sets every learnable param's diff to zero (Caffe's ClearParamDiffs).
    pub fn clear_param_diffs(&mut self) {
        for p in &mut self.learnable {
            p.clear();
        }
    }

    /// The net's layers as Caffe's `NetParameter` with blobs (what a .caffemodel holds).
    pub fn to_proto(&self, write_diff: bool) -> NetParameter {
        weights::net_to_proto(self, write_diff)
    }

    /// Copies weights from a trained net by layer name (Caffe's CopyTrainedLayersFrom).
    pub fn copy_trained_layers_from(&mut self, trained: &NetParameter, origin: &str) -> Result<()> {
        weights::copy_trained_layers(self, trained, origin)
    }

    /// Reads a `.caffemodel` (or Caffe's HDF5 `.caffemodel.h5`) and copies its layers in.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        if path.extension().is_some_and(|e| e == "h5") {
            let trained = crate::solver::hdf5_snapshot::read_model(self, path)?;
            return self.copy_trained_layers_from(&trained, &path.display().to_string());
        }
        let mut trained: NetParameter = crate::proto::binary::read_message(path)?;
        let file = path.display().to_string();
        upgrade::upgrade_net(&mut trained, &file)?;
        self.copy_trained_layers_from(&trained, &file)
    }
}
