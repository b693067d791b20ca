//! What an exporter sees: the net built exactly as `caffe forward` builds it,
//! reduced to the layers a deployed model computes. Data sources become graph
//! inputs, loss/accuracy/silence layers are left out (each with a log line),
//! and the outputs are the blobs no kept layer consumes.
use std::collections::{HashMap, HashSet};
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::layers::Shape;
use crate::net::{Net, NetSource};
use crate::proto::caffe::{LayerParameter, NetParameter, NetState, Phase};
use crate::proto::text::{self, TextOptions};
use crate::{info, Error, Result};

/// Layer types whose tops come from outside the net: in an exported model
/// their tops are graph inputs.
pub const DATA_SOURCE_TYPES: &[&str] = &[
    "Input",
    "Data",
    "ImageData",
    "HDF5Data",
    "MemoryData",
    "WindowData",
    "DummyData",
    "AnnotatedData",
    "ImageSegData",
];

/// Why a layer type is left out of an exported model, or None if it is kept.
pub fn left_out_reason(layer_type: &str) -> Option<&'static str> {
    match layer_type {
        t if t.ends_with("Loss") => Some("a loss layer (training only)"),
        "Accuracy" | "SegAccuracy" => Some("an accuracy layer (evaluation only)"),
        "DetectionEvaluate" => Some("SSD's detection scoring against the ground truth (evaluation only)"),
        "Silence" => Some("a Silence layer (it computes nothing)"),
        "HDF5Output" | "MatWrite" => Some("an output layer (it writes files, computes nothing)"),
        _ => None,
    }
}

/// How the net is built for export: `caffe forward`'s choices.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub weights: Vec<std::path::PathBuf>,
    pub phase: Phase,
    pub level: i32,
    pub stages: Vec<String>,
    /// DropIn's τ; None means fully grown (as `caffe forward` runs).
    pub iteration: Option<i64>,
    /// Input blob shapes that replace the prototxt's (`-input_shape data=1,3,224,224`).
    pub input_shapes: Vec<(String, Shape)>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            weights: vec![],
            phase: Phase::Test,
            level: 0,
            stages: vec![],
            iteration: None,
            input_shapes: vec![],
        }
    }
}

/// One kept layer, with its blob names (Split layers' renames included) and
/// its shapes and weights as the built net has them.
#[derive(Debug)]
pub struct PlanLayer {
    pub param: LayerParameter,
    pub bottoms: Vec<String>,
    pub tops: Vec<String>,
    pub bottom_shapes: Vec<Shape>,
    pub top_shapes: Vec<Shape>,
    /// The layer's blobs in Caffe's order (weights, then bias), f32 on the CPU.
    pub blobs: Vec<Tensor>,
}

impl PlanLayer {
    pub fn name(&self) -> &str {
        self.param.name()
    }
    pub fn layer_type(&self) -> &str {
        self.param.r#type()
    }
}

/// A graph input: a data source's top.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub name: String,
    pub shape: Shape,
}

/// The net as an exporter walks it.
pub struct Plan {
    pub net: Net,
    /// The prototxt the net came from (for error messages and metadata).
    pub file: String,
    /// The prototxt as upgraded and filtered (what the model was built from), as text.
    pub prototxt: String,
    pub inputs: Vec<PlanInput>,
    /// The computing layers in order (Split layers included, data sources and left-out layers not).
    pub layers: Vec<PlanLayer>,
    /// The net's output blobs over the kept layers.
    pub outputs: Vec<String>,
    /// Every blob a kept layer produces, in order of first appearance (for `-blobs all`).
    pub all_blobs: Vec<String>,
    /// DropIn's τ as the net runs it.
    pub iteration: i64,
}

/// py-faster-rcnn's Python proposal layer is exported as the native Proposal
/// layer it computes (ONNX and model.py cannot hold Python), with a log line;
/// other layers as they are.
fn exported_param(lp: &LayerParameter, net: &Net) -> Result<LayerParameter> {
    use crate::layers::detection::py_proposal;
    if !py_proposal::is_py_proposal(lp) {
        return Ok(lp.clone());
    }
    let native = py_proposal::native_param(lp, lp.phase())
        .map_err(|e| e.in_layer(net.source().loc(lp.name()), lp.name(), crate::layers::python::TYPE))?;
    info!(
        crate::here!("plan.rs"),
        "layer '{}' (py-faster-rcnn's {}.{}) is exported as the native Proposal layer with py-faster-rcnn's {} settings ({})",
        lp.name(),
        py_proposal::MODULE,
        py_proposal::CLASS,
        lp.phase().as_str_name(),
        py_proposal::describe(&native)
    );
    Ok(native)
}

impl Plan {
    /// Parses, upgrades and builds the net as `caffe forward` does, loads the
    /// weights, and splits its layers into inputs, kept layers and left-out ones.
    pub fn build(model: &Path, text_opts: TextOptions, o: &BuildOptions) -> Result<Plan> {
        let file = model.display().to_string();
        let parsed = text::read_file_nonempty::<NetParameter>(model, text_opts)?;
        for w in &parsed.warnings {
            crate::warn!("text_format.cpp:1", "{w}");
        }
        let source = NetSource::from_parsed(&file, &parsed.message, &parsed.source_map);
        let mut param = parsed.message;
        crate::proto::upgrade::upgrade_net(&mut param, &file)?;
        apply_input_shapes(&mut param, &o.input_shapes, &file)?;
        let state = NetState { phase: Some(o.phase as i32), level: Some(o.level), stage: o.stages.clone() };
        let prototxt = crate::proto::print::to_text(&param);
        // Said before the net is built: building one would ask for a Python interpreter.
        let kept = crate::net::filter::filter_net(&param, &state, &source)?;
        // py-faster-rcnn's proposal layer is built, and exported, as the native one.
        let python = kept.layer.iter().find(|l| {
            l.r#type() == crate::layers::python::TYPE && !crate::layers::detection::py_proposal::is_py_proposal(l)
        });
        if let Some((name, class)) = python.map(|l| (l.name().to_string(), crate::layers::python::class_of(l))) {
            return Err(Error::unsupported(format!(
                "cannot be exported: a Python layer ({class}) is Python code, which neither ONNX nor model.py can hold"
            ))
            .in_layer(source.loc(&name), name, crate::layers::python::TYPE));
        }
        let mut net = Net::new(&param, &state, source, Device::Cpu)?;
        for w in &o.weights {
            net.load_weights(w)?;
        }
        net.use_dropin_iteration(o.iteration);
        let mut plan = Plan::from_net(net, &file)?;
        plan.prototxt = prototxt;
        Ok(plan)
    }

    /// Splits a built net's layers (see [`Plan::build`]).
    pub fn from_net(net: Net, file: &str) -> Result<Plan> {
        let mut inputs = Vec::new();
        let mut layers = Vec::new();
        let mut left_out_tops: HashMap<String, String> = HashMap::new();
        let params: Vec<LayerParameter> =
            net.layer_params().into_iter().map(|lp| exported_param(lp, &net)).collect::<Result<_>>()?;
        // Which blobs kept layers read, to decide which data-source tops are inputs.
        let consumed: HashSet<&str> = params
            .iter()
            .filter(|lp| left_out_reason(lp.r#type()).is_none() && !DATA_SOURCE_TYPES.contains(&lp.r#type()))
            .flat_map(|lp| lp.bottom.iter().map(|s| s.as_str()))
            .collect();
        for lp in &params {
            let ty = lp.r#type();
            if let Some(why) = left_out_reason(ty) {
                info!("export.cpp:1", "Leaving out layer {} ({ty}): {why}", lp.name());
                for t in &lp.top {
                    left_out_tops.insert(t.clone(), lp.name().to_string());
                }
                continue;
            }
            if DATA_SOURCE_TYPES.contains(&ty) {
                for t in &lp.top {
                    let shape = net.blob_shape(t).cloned().unwrap_or_default();
                    if consumed.contains(t.as_str()) {
                        inputs.push(PlanInput { name: t.clone(), shape });
                    } else {
                        info!("export.cpp:1", "Leaving out top {t} of {} ({ty}): no exported layer uses it", lp.name());
                    }
                }
                continue;
            }
            for b in &lp.bottom {
                if let Some(producer) = left_out_tops.get(b) {
                    return Err(Error::unsupported(format!(
                        "it reads blob '{b}', made by layer {producer}, which an exported model leaves out"
                    ))
                    .in_layer(net.source().loc(lp.name()), lp.name(), ty));
                }
            }
            let shape_of = |n: &String| net.blob_shape(n).cloned().unwrap_or_default();
            let blobs = net
                .layer_blobs(lp.name())
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            layers.push(PlanLayer {
                param: lp.clone(),
                bottoms: lp.bottom.clone(),
                tops: lp.top.clone(),
                bottom_shapes: lp.bottom.iter().map(shape_of).collect(),
                top_shapes: lp.top.iter().map(shape_of).collect(),
                blobs,
            });
        }
        // Caffe's rule for net outputs (Net::Init): a blob is available once
        // produced and stops being available when a layer consumes it.
        let mut available: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        let mut all_blobs: Vec<String> = Vec::new();
        for l in &layers {
            available.retain(|b| !l.bottoms.contains(b));
            for t in &l.tops {
                if !available.contains(t) {
                    available.push(t.clone());
                }
                if !all_blobs.contains(t) {
                    all_blobs.push(t.clone());
                }
            }
        }
        let iteration = net.iteration();
        Ok(Plan {
            net,
            file: file.to_string(),
            prototxt: String::new(),
            inputs,
            layers,
            outputs: available,
            all_blobs,
            iteration,
        })
    }

    /// The blobs an exported model returns: the outputs, or every blob.
    pub fn exported_blobs(&self, all: bool) -> Vec<String> {
        if !all {
            return self.outputs.clone();
        }
        let mut v = self.all_blobs.clone();
        for o in &self.outputs {
            if !v.contains(o) {
                v.push(o.clone());
            }
        }
        v
    }

    /// An error about one layer, located in the prototxt.
    pub fn layer_error(&self, l: &PlanLayer, e: Error) -> Error {
        match e {
            located @ Error::Layer { .. } => located,
            e => e.in_layer(self.net.source().loc(l.name()), l.name(), l.layer_type()),
        }
    }
}

/// Replaces Input layers' shapes (`-input_shape NAME=d0,d1,...`).
fn apply_input_shapes(param: &mut NetParameter, shapes: &[(String, Shape)], file: &str) -> Result<()> {
    for (name, shape) in shapes {
        let mut found = false;
        for lp in param.layer.iter_mut().filter(|l| l.r#type() == "Input") {
            if let Some(k) = lp.top.iter().position(|t| t == name) {
                let ip = lp.input_param.get_or_insert_with(Default::default);
                let blob_shape = crate::proto::caffe::BlobShape { dim: shape.clone() };
                if ip.shape.len() <= 1 {
                    // One shape for every top: give each top its own before changing one.
                    let common = ip.shape.first().cloned().unwrap_or_default();
                    ip.shape = vec![common; lp.top.len()];
                }
                if k < ip.shape.len() {
                    ip.shape[k] = blob_shape;
                }
                found = true;
            }
        }
        if !found {
            return Err(Error::usage(format!("-input_shape: {file} has no Input blob named '{name}'")));
        }
    }
    Ok(())
}

/// Parses `-input_shape data=1,3,224,224` (repeatable, or `;`-separated).
pub fn parse_input_shape(spec: &str) -> Result<(String, Shape)> {
    let bad = || Error::usage(format!("-input_shape expects NAME=d0,d1,... (e.g. data=1,3,224,224), got '{spec}'"));
    let (name, dims) = spec.split_once('=').ok_or_else(bad)?;
    let shape = dims
        .split(',')
        .map(|d| d.trim().parse::<i64>().ok().filter(|&v| v > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    if name.is_empty() || shape.is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), shape))
}
