//! `-format pytorch`: a readable `model.py` (a `torch.nn.Module` that mirrors
//! the prototxt layer by layer) and `weights.safetensors`.
//!
//! `model.py`'s structure, top to bottom:
//! - a docstring naming the source prototxt, imports (torch and safetensors only);
//! - `INPUTS` (Caffe input name → keyword argument) and `OUTPUTS` (Caffe names);
//! - the Caffe-semantics helpers the net uses (`caffe_pool2d`, `caffe_lrn`,
//!   ..., from helpers.rs), each emitted only when a layer needs it;
//! - `class Net(nn.Module)`: `__init__` creates one module per layer with
//!   blobs (`nn.Conv2d`, `nn.Linear`, or `Blobs` for Caffe-shaped weights and
//!   BatchNorm's buffers), as attributes named after the layers, so that its
//!   `state_dict` keys are the safetensors keys; `forward(*, <inputs>,
//!   blobs=None)` is one line per layer (a Python variable per Caffe blob,
//!   in-place layers rebinding it) and returns a dict of the outputs, or of
//!   the blobs named in `blobs`, by Caffe name;
//! - `load(path=None)`: a `Net` with `weights.safetensors` (beside model.py)
//!   loaded through `load_state_dict(strict=True)`.
//!
//! Which layer types are written, and how, is the one table in layers.rs.
use std::collections::HashMap;
use std::path::Path;

use super::{Plan, PlanLayer, TensorNames};
use crate::net::weights::safetensors::layer_identifiers;
use crate::net::weights::torch_names::unique_identifiers;
use crate::{Error, Result};

mod detection;
mod helpers;
mod layers;
mod neuron;
mod segmentation;
mod utility;

/// Whether a layer type can be written into `model.py`.
pub fn supports(layer_type: &str) -> bool {
    layers::emitter(layer_type).is_some()
}

/// The layer types `model.py` can express, in the table's order.
pub fn supported_types() -> Vec<&'static str> {
    layers::LAYERS.iter().map(|(t, _)| *t).collect()
}

/// Names `model.py` itself uses, which a blob's variable must not shadow.
const TAKEN: &[&str] = &[
    "blobs",
    "values",
    "unknown",
    "BLOBS",
    "os",
    "math",
    "load_file",
    "Blobs",
    "Net",
    "FLT_MAX",
    "FLT_MIN",
    "INPUTS",
    "OUTPUTS",
];

/// One layer as an emitter sees it: the plan's layer, its module attribute
/// (`self.conv1`) and its bottoms' and tops' Python variables.
pub(super) struct Site<'a> {
    pub l: &'a PlanLayer,
    pub module: String,
    pub bottoms: Vec<String>,
    pub tops: Vec<String>,
    /// DropIn's τ.
    pub iteration: i64,
}

impl Site<'_> {
    pub fn bottom_shape(&self, i: usize) -> &[i64] {
        self.l.bottom_shapes.get(i).map(Vec::as_slice).unwrap_or_default()
    }
    pub fn top_shape(&self, i: usize) -> &[i64] {
        self.l.top_shapes.get(i).map(Vec::as_slice).unwrap_or_default()
    }
    pub fn blob_shape(&self, j: usize) -> Vec<i64> {
        self.l.blobs.get(j).map(|t| t.size()).unwrap_or_default()
    }
    pub fn b(&self, i: usize) -> &str {
        self.bottoms.get(i).map(String::as_str).unwrap_or("None")
    }
}

/// What the emitters write: `__init__` lines, `forward` lines, helpers used.
#[derive(Default)]
pub(super) struct Code {
    pub init: Vec<String>,
    pub forward: Vec<String>,
    pub helpers: Vec<&'static str>,
}

impl Code {
    pub fn init(&mut self, line: String) {
        self.init.push(line);
    }
    pub fn fwd(&mut self, line: String) {
        self.forward.push(line);
    }
    /// `a = expr`, or `a, b = expr` for several tops.
    pub fn assign(&mut self, tops: &[String], expr: String) {
        self.forward.push(format!("{} = {expr}", tops.join(", ")));
    }
    pub fn helper(&mut self, name: &'static str) {
        if !self.helpers.contains(&name) {
            self.helpers.push(name);
        }
    }
}

/// A Python string literal.
pub(super) fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `model.py`'s text and the weights file's bytes; fails on the first layer
/// `model.py` cannot express.
pub fn render(plan: &Plan) -> Result<(String, Vec<u8>)> {
    let idents = layer_identifiers(plan.net.layer_names());
    // One variable per blob name, in order of appearance, after the names model.py takes.
    let mut blob_names: Vec<&str> = plan.inputs.iter().map(|i| i.name.as_str()).collect();
    for l in &plan.layers {
        for n in l.bottoms.iter().chain(&l.tops) {
            if !blob_names.contains(&n.as_str()) {
                blob_names.push(n);
            }
        }
    }
    let helper_names: Vec<&str> = helpers::all().map(|h| h.name).collect();
    let taken: Vec<&str> = TAKEN.iter().copied().chain(helper_names.iter().copied()).collect();
    let all_ids = unique_identifiers(taken.iter().copied().chain(blob_names.iter().copied()));
    let var: HashMap<&str, String> = blob_names.iter().copied().zip(all_ids.into_iter().skip(taken.len())).collect();
    let v = |n: &String| var.get(n.as_str()).cloned().unwrap_or_else(|| n.clone());

    let mut code = Code::default();
    for l in &plan.layers {
        let Some(emit) = layers::emitter(l.layer_type()) else {
            return Err(plan.layer_error(
                l,
                Error::unsupported(format!(
                    "-format pytorch cannot express layer type {} (model.py has no translation of it)",
                    l.layer_type()
                )),
            ));
        };
        let site = Site {
            l,
            module: format!("self.{}", idents[l.name()]),
            bottoms: l.bottoms.iter().map(v).collect(),
            tops: l.tops.iter().map(v).collect(),
            iteration: plan.iteration,
        };
        code.fwd(format!("# {} ({})", l.name().replace('\n', " "), l.layer_type()));
        emit(&site, &mut code).map_err(|e| plan.layer_error(l, e))?;
    }

    let mut py = String::new();
    py.push_str(&format!(
        "\"\"\"PyTorch model exported by caffe-tch (`caffe export -format pytorch`) from {}.\n\n\
         `Net.forward` mirrors the prototxt layer by layer with Caffe's semantics; `load()` returns\n\
         a Net with weights.safetensors (beside this file) loaded.\"\"\"\n",
        plan.file.replace('"', "'")
    ));
    py.push_str("import math\nimport os\n\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nfrom safetensors.torch import load_file\n\n");
    py.push_str("FLT_MAX = 3.4028234663852886e38\nFLT_MIN = 1.1754943508222875e-38\n\n");
    let inputs: Vec<String> =
        plan.inputs.iter().map(|i| format!("{}: {}", py_str(&i.name), py_str(&v(&i.name)))).collect();
    py.push_str(&format!("# Caffe input blob -> forward's keyword argument.\nINPUTS = {{{}}}\n", inputs.join(", ")));
    let outputs: Vec<String> = plan.outputs.iter().map(|o| py_str(o)).collect();
    py.push_str(&format!(
        "# What forward returns by default (Caffe's net outputs).\nOUTPUTS = [{}]\n",
        outputs.join(", ")
    ));
    let mut every: Vec<String> = plan.inputs.iter().map(|i| i.name.clone()).collect();
    for b in plan.exported_blobs(true) {
        if !every.contains(&b) {
            every.push(b);
        }
    }
    let names: Vec<String> = every.iter().map(|n| py_str(n)).collect();
    py.push_str(&format!("# Every blob forward can return (blobs=[...]).\nBLOBS = [{}]\n\n", names.join(", ")));
    for h in helpers::closure(&code.helpers) {
        py.push('\n');
        py.push_str(h.code);
        py.push('\n');
    }
    py.push_str("\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n");
    for line in &code.init {
        py.push_str(&format!("        {line}\n"));
    }
    let args: Vec<String> = plan.inputs.iter().map(|i| v(&i.name)).chain(["blobs=None".to_string()]).collect();
    py.push_str(&format!("\n    def forward(self, *, {}):\n        \"\"\"The outputs by Caffe name, or the blobs named in `blobs` (an in-place blob's final value).\"\"\"\n",
        args.join(", ")
    ));
    for line in &code.forward {
        py.push_str(&format!("        {line}\n"));
    }
    let values: Vec<String> = every.iter().map(|n| format!("{}: {}", py_str(n), v(n))).collect();
    py.push_str(&format!("        values = {{{}}}\n", values.join(", ")));
    py.push_str("        unknown = [b for b in (blobs or []) if b not in values]\n");
    py.push_str(
        "        if unknown:\n            raise KeyError(f\"no blob named {unknown}; blobs are {list(values)}\")\n",
    );
    py.push_str("        return {name: values[name] for name in (OUTPUTS if blobs is None else blobs)}\n\n\n");
    py.push_str(
        "def load(path=None):\n    \"\"\"A Net in eval mode with the weights from `path` (default: weights.safetensors beside this file).\"\"\"\n    \
         net = Net()\n    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), \"weights.safetensors\")\n    \
         net.load_state_dict(load_file(path), strict=True)\n    return net.eval()\n",
    );
    let weights = super::safetensors::to_file_bytes(plan, TensorNames::Pytorch)?;
    Ok((py, weights))
}

/// Writes `out/model.py` and `out/weights.safetensors` (creating `out`);
/// on an error nothing is left behind.
pub fn export(plan: &Plan, out: &Path) -> Result<()> {
    let (py, weights) = render(plan)?;
    let created = !out.exists();
    if created {
        std::fs::create_dir(out).map_err(|e| Error::io(out, e))?;
    } else if !out.is_dir() {
        return Err(Error::usage(format!("-out {} must be a folder for -format pytorch", out.display())));
    }
    let model = out.join("model.py");
    let result = crate::util::write_atomic(&model, py.as_bytes())
        .and_then(|()| crate::util::write_atomic(&out.join("weights.safetensors"), &weights));
    if result.is_err() {
        // Best effort: the error being reported matters more than a failed cleanup.
        if created {
            std::fs::remove_dir_all(out).ok();
        } else {
            std::fs::remove_file(&model).ok();
        }
    }
    result
}
