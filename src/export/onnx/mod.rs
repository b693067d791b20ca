//! `-format onnx`: the plan's layers as an ONNX graph. Each Caffe type has a
//! lowering (`vision.rs`, `neuron.rs`, `common.rs`, `recurrent.rs`,
//! `dropin.rs`, `detection.rs`) listed in one table, [`LOWERINGS`], which is also what
//! `SUPPORTED-LAYERS.md` reports. A lowering reads its bottoms' current ONNX
//! values from the [`Graph`] and binds its tops to new ones.
//!
//! Value names: every blob's final value carries the blob's Caffe name, so the
//! graph's inputs and outputs (and with `-blobs all` every blob) are named as
//! in Caffe. In-place layers produce new values, so earlier versions of a blob
//! get a suffix (`conv1/pre1`).
use std::collections::{HashMap, HashSet};

use prost::Message;
use tch::Tensor;

use super::{Plan, PlanLayer};
use crate::proto::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use crate::{bail, Error, Result};

mod common;
mod detection;
mod dropin;
mod neuron;
mod normalization;
mod recurrent;
mod vision;

/// The lowest and highest opsets `caffe export` writes.
pub const MIN_OPSET: i64 = 13;
pub const MAX_OPSET: i64 = 23;

/// The name of the symbolic batch axis of graph inputs and outputs.
pub const BATCH_AXIS_NAME: &str = "N";

pub type Lowering = fn(&mut Graph, &PlanLayer) -> Result<()>;

/// Every Caffe type the ONNX exporter writes, with its lowering.
pub static LOWERINGS: &[(&str, Lowering)] = &[
    ("AbsVal", neuron::abs_val),
    ("ArgMax", common::arg_max),
    ("Axpy", common::axpy),
    ("BN", normalization::bn),
    ("BNLL", neuron::bnll),
    ("BatchNorm", normalization::batch_norm),
    ("BatchReindex", common::batch_reindex),
    ("Bias", common::bias),
    ("Clip", neuron::clip),
    ("Concat", common::concat),
    ("Convolution", vision::convolution),
    ("ConvolutionDepthwise", vision::convolution),
    ("Crop", vision::crop),
    ("Deconvolution", vision::deconvolution),
    ("DetectionOutput", detection::detection_output),
    ("DepthwiseConvolution", vision::convolution),
    ("DropIn", dropin::drop_in),
    ("Dropout", neuron::dropout),
    ("ELU", neuron::elu),
    ("SeLu", neuron::selu),
    ("SeLuDropout", neuron::selu_dropout),
    ("Eltwise", common::eltwise),
    ("Embed", common::embed),
    ("Exp", neuron::exp),
    ("Filter", common::filter),
    ("Flatten", common::flatten),
    ("Im2col", vision::im2col),
    ("InnerProduct", common::inner_product),
    ("Interp", vision::interp),
    ("LRN", vision::lrn),
    ("LSTM", recurrent::lstm),
    ("LSTMUnit", recurrent::lstm_unit),
    ("Log", neuron::log),
    ("MVN", common::mvn),
    ("Normalize", detection::normalize),
    ("PReLU", neuron::prelu),
    ("Permute", detection::permute),
    ("Parameter", common::parameter),
    ("Pooling", vision::pooling),
    ("Power", neuron::power),
    ("PSROIPooling", detection::psroi_pooling),
    ("PriorBox", detection::prior_box),
    ("Proposal", detection::proposal),
    ("RNN", recurrent::rnn),
    ("ReLU", neuron::relu),
    ("ReLU6", neuron::relu6),
    ("ROIPooling", detection::roi_pooling),
    ("Reduction", common::reduction),
    ("Reshape", common::reshape),
    ("Resize", dropin::resize),
    ("SPP", vision::spp),
    ("Scale", common::scale),
    ("ShuffleChannel", common::shuffle_channel),
    ("Reorg", common::reorg),
    ("Sigmoid", neuron::sigmoid),
    ("Softmax", common::softmax),
    ("Slice", common::slice),
    ("Split", common::split),
    ("Swish", neuron::swish),
    ("TanH", neuron::tanh),
    ("Threshold", neuron::threshold),
    ("Tile", common::tile),
    ("Upsample", vision::upsample),
    ("YoloDetectionOutput", detection::yolo_detection_output),
    ("Yolov3DetectionOutput", detection::yolov3_detection_output),
];

/// Whether a layer type can be exported to ONNX.
pub fn supports(layer_type: &str) -> bool {
    LOWERINGS.iter().any(|(t, _)| *t == layer_type)
}

pub fn check_opset(opset: i64) -> Result<()> {
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(Error::usage(format!(
            "-opset {opset}: caffe export writes ONNX opsets {MIN_OPSET} to {MAX_OPSET}"
        )));
    }
    Ok(())
}

/// The IR version that goes with an opset (the oldest that has it, so older
/// runtimes load the file).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        _ => 11,
    }
}

/// The graph under construction.
pub struct Graph {
    pub opset: i64,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Every name in use (Caffe blob names are reserved from the start).
    used: HashSet<String>,
    /// A blob's current ONNX value.
    current: HashMap<String, String>,
    /// Set by a lowering that only works for the exported batch size.
    pub static_batch: bool,
    /// Blobs with an axis whose length the data decides (a Proposal's
    /// regions and what is computed from them, DetectionOutput's rows), and
    /// that axis: outputs leave it unnamed.
    pub dynamic_rows: HashMap<String, usize>,
    /// The layer being lowered (node names).
    layer: String,
    /// DropIn's τ, as the plan's net runs it.
    pub iteration: i64,
}

impl Graph {
    fn new(opset: i64, reserved: impl IntoIterator<Item = String>) -> Graph {
        Graph {
            opset,
            nodes: Vec::new(),
            initializers: Vec::new(),
            used: reserved.into_iter().collect(),
            current: HashMap::new(),
            static_batch: false,
            dynamic_rows: HashMap::new(),
            layer: String::new(),
            iteration: i64::MAX,
        }
    }

    /// A name not used yet, from a hint.
    pub fn fresh(&mut self, hint: &str) -> String {
        let mut k = self.used.len();
        let mut name = format!("{hint}/{k}");
        while self.used.contains(&name) {
            k += 1;
            name = format!("{hint}/{k}");
        }
        self.used.insert(name.clone());
        name
    }

    /// The current value of a Caffe blob.
    pub fn value(&self, blob: &str) -> Result<String> {
        self.current.get(blob).cloned().ok_or_else(|| Error::invalid(format!("blob '{blob}' has no value yet")))
    }

    /// Binds a Caffe blob to a value.
    pub fn bind(&mut self, blob: &str, value: String) {
        self.current.insert(blob.to_string(), value);
    }

    /// Adds a node with explicit outputs.
    pub fn node_with(&mut self, op: &str, inputs: &[&str], outputs: &[String], attrs: Vec<AttributeProto>) {
        let name = self.fresh(&format!("{}/{op}", self.layer));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name: Some(name),
            op_type: Some(op.to_string()),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds a node with one new output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&format!("{}/{}", self.layer, op.to_ascii_lowercase()));
        self.node_with(op, inputs, std::slice::from_ref(&out), attrs);
        out
    }

    /// Adds a node with `n` new outputs.
    pub fn node_n(&mut self, op: &str, inputs: &[&str], n: usize, attrs: Vec<AttributeProto>) -> Vec<String> {
        let outs: Vec<String> =
            (0..n).map(|_| self.fresh(&format!("{}/{}", self.layer, op.to_ascii_lowercase()))).collect();
        self.node_with(op, inputs, &outs, attrs);
        outs
    }

    /// A float initializer.
    pub fn const_f32(&mut self, hint: &str, shape: &[i64], values: &[f32]) -> String {
        let name = self.fresh(&format!("{}/{hint}", self.layer));
        self.initializers.push(TensorProto {
            dims: shape.to_vec(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            name: Some(name.clone()),
            ..Default::default()
        });
        name
    }

    /// A float scalar initializer (rank 0).
    pub fn scalar(&mut self, hint: &str, v: f32) -> String {
        self.const_f32(hint, &[], &[v])
    }

    /// A 1-D int64 initializer (shapes, axes, indices).
    pub fn const_i64(&mut self, hint: &str, values: &[i64]) -> String {
        self.const_i64_shaped(hint, &[values.len() as i64], values)
    }

    pub fn const_i64_shaped(&mut self, hint: &str, shape: &[i64], values: &[i64]) -> String {
        let name = self.fresh(&format!("{}/{hint}", self.layer));
        self.initializers.push(TensorProto {
            dims: shape.to_vec(),
            data_type: Some(DataType::Int64 as i32),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            name: Some(name.clone()),
            ..Default::default()
        });
        name
    }

    /// A boolean initializer (masks).
    pub fn const_bool(&mut self, hint: &str, shape: &[i64], values: &[bool]) -> String {
        let name = self.fresh(&format!("{}/{hint}", self.layer));
        self.initializers.push(TensorProto {
            dims: shape.to_vec(),
            data_type: Some(DataType::Bool as i32),
            raw_data: Some(values.iter().map(|&b| b as u8).collect()),
            name: Some(name.clone()),
            ..Default::default()
        });
        name
    }

    /// A layer's blob as an initializer, reshaped to `shape` (same count).
    pub fn weight(&mut self, hint: &str, t: &Tensor, shape: &[i64]) -> Result<String> {
        let values = crate::util::tensor_values(t)?;
        if values.len() as i64 != shape.iter().product::<i64>() {
            bail!("blob '{hint}' holds {} values, expected shape {shape:?}", values.len());
        }
        Ok(self.const_f32(hint, shape, &values))
    }

    /// Reshape to a fixed shape. Axis 0 is written as 0 (keep the input's)
    /// when it equals the input's batch, so the batch stays symbolic.
    pub fn reshape(&mut self, x: &str, input_shape: &[i64], shape: &[i64]) -> String {
        let mut target = shape.to_vec();
        if !target.is_empty() && !input_shape.is_empty() && target[0] == input_shape[0] {
            target[0] = 0;
        } else {
            self.static_batch = true;
        }
        let s = self.const_i64("shape", &target);
        self.node("Reshape", &[x, &s], vec![])
    }

    /// A reduction over `axes`: the axes are an input from opset 18 on (13
    /// for ReduceSum), an attribute before.
    pub fn reduce(&mut self, op: &str, x: &str, axes: &[i64], keepdims: bool) -> String {
        let keep = attr_i("keepdims", keepdims as i64);
        if self.opset >= 18 || op == "ReduceSum" {
            let a = self.const_i64("axes", axes);
            self.node(op, &[x, &a], vec![keep])
        } else {
            self.node(op, &[x], vec![keep, attr_ints("axes", axes)])
        }
    }

    /// x · a + b with scalar constants, skipping the identities.
    pub fn affine(&mut self, x: &str, a: f32, b: f32) -> String {
        let mut y = x.to_string();
        if a != 1.0 {
            let c = self.scalar("scale", a);
            y = self.node("Mul", &[&y, &c], vec![]);
        }
        if b != 0.0 {
            let c = self.scalar("shift", b);
            y = self.node("Add", &[&y, &c], vec![]);
        }
        y
    }

    /// An Identity node (a new value equal to `x`).
    pub fn identity(&mut self, x: &str) -> String {
        self.node("Identity", &[x], vec![])
    }
}

/// A one-bottom, one-top layer's bottom, top and bottom shape.
fn io(l: &PlanLayer) -> Result<(&str, &str, &[i64])> {
    match (l.bottoms.first(), l.tops.first(), l.bottom_shapes.first()) {
        (Some(b), Some(t), Some(s)) => Ok((b, t, s)),
        _ => bail!("needs a bottom and a top"),
    }
}

pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}
pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}
pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Floats as i32),
        floats: v.to_vec(),
        ..Default::default()
    }
}
pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A graph input's or output's type: float, its first axis the symbolic
/// batch; the axis the data decides (`dynamic_rows`) left unknown.
fn value_info(name: &str, shape: &[i64], symbolic_batch: bool, dynamic_axis: Option<usize>) -> ValueInfoProto {
    use tensor_shape_proto::dimension::Value;
    let dim = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| tensor_shape_proto::Dimension {
            value: match (i, symbolic_batch) {
                _ if dynamic_axis == Some(i) => None,
                (0, true) => Some(Value::DimParam(BATCH_AXIS_NAME.into())),
                _ => Some(Value::DimValue(d)),
            },
            denotation: None,
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

/// Builds the ONNX model of a plan and returns its bytes.
pub fn export(plan: &Plan, opset: i64, all_blobs: bool) -> Result<Vec<u8>> {
    check_opset(opset)?;
    let reserved = plan.inputs.iter().map(|i| i.name.clone()).chain(plan.all_blobs.iter().cloned());
    let mut g = Graph::new(opset, reserved);
    g.iteration = plan.iteration;
    for i in &plan.inputs {
        g.bind(&i.name, i.name.clone());
    }
    let fused = normalization::fusions(plan, all_blobs);
    for (k, l) in plan.layers.iter().enumerate() {
        if fused.skipped.contains(&k) {
            continue;
        }
        let lowering = LOWERINGS
            .iter()
            .find(|(t, _)| *t == l.layer_type())
            .map(|(_, f)| *f)
            .ok_or_else(|| plan.layer_error(l, Error::unsupported(why_not(l.layer_type()))))?;
        g.layer = l.name().to_string();
        let result = match fused.batch_norm_scale.get(&k) {
            Some(&scale) => normalization::batch_norm_with_scale(&mut g, l, &plan.layers[scale]),
            None => lowering(&mut g, l),
        };
        result.map_err(|e| plan.layer_error(l, e))?;
        if let Some(axis) = l.bottoms.iter().find_map(|b| g.dynamic_rows.get(b).copied()) {
            for t in &l.tops {
                g.dynamic_rows.entry(t.clone()).or_insert(axis);
            }
        }
        if l.layer_type() == "Split" && all_blobs {
            // Split tops are aliases; `-blobs all` shows them as values of their own.
            for t in &l.tops {
                let v = g.value(t)?;
                let id = g.identity(&v);
                g.bind(t, id);
            }
        }
    }
    let exported = plan.exported_blobs(all_blobs);
    let is_input = |b: &str| plan.inputs.iter().any(|i| i.name == b);
    // Give each exported blob's final value (and each input) its Caffe name.
    let mut rename: HashMap<String, String> = HashMap::new();
    for b in &exported {
        let v = g.value(b)?;
        let b = &output_name(b, is_input(b));
        if v != *b {
            if plan.inputs.iter().any(|i| i.name == v) || rename.contains_key(&v) {
                // An input (or another blob) passed through unchanged: a copy carries this name.
                let out = b.clone();
                g.node_with("Identity", &[&v], std::slice::from_ref(&out), vec![]);
            } else {
                rename.insert(v, b.clone());
            }
        }
    }
    for n in &mut g.nodes {
        for s in n.input.iter_mut().chain(n.output.iter_mut()) {
            if let Some(r) = rename.get(s) {
                s.clone_from(r);
            }
        }
    }
    // A lowering may make a constant that its chosen path does not read;
    // runtimes warn about initializers no node uses.
    let outputs: Vec<String> = exported.iter().map(|b| output_name(b, is_input(b))).collect();
    let read: HashSet<&String> = g.nodes.iter().flat_map(|n| &n.input).chain(&outputs).collect();
    let unused: HashSet<String> =
        g.initializers.iter().filter_map(|t| t.name.clone()).filter(|n| !read.contains(n)).collect();
    g.initializers.retain(|t| t.name.as_ref().is_none_or(|n| !unused.contains(n)));
    let symbolic = !g.static_batch;
    let shape_of = |b: &str| plan.net.blob_shape(b).cloned().unwrap_or_default();
    let graph = GraphProto {
        node: std::mem::take(&mut g.nodes),
        // ONNX requires a graph name; a prototxt need not have one.
        name: Some(if plan.net.name.is_empty() { "caffe_net".to_string() } else { plan.net.name.clone() }),
        initializer: std::mem::take(&mut g.initializers),
        doc_string: Some(format!("Exported by caffe-tch from {}", plan.file)),
        input: plan.inputs.iter().map(|i| value_info(&i.name, &i.shape, symbolic, None)).collect(),
        output: exported
            .iter()
            .map(|b| value_info(&output_name(b, is_input(b)), &shape_of(b), symbolic, g.dynamic_rows.get(b).copied()))
            .collect(),
        value_info: vec![],
    };
    let model = ModelProto {
        ir_version: Some(ir_version(opset)),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("caffe-tch".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        metadata_props: vec![StringStringEntryProto {
            key: Some("caffe_prototxt".into()),
            value: Some(plan.prototxt.clone()),
        }],
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// The graph output that carries a blob: its Caffe name, except for an input
/// blob rewritten in place (BatchNorm on the data), whose name the graph
/// input keeps: its final value is `<name>/final`.
pub fn output_name(blob: &str, is_input: bool) -> String {
    if is_input {
        format!("{blob}/final")
    } else {
        blob.to_string()
    }
}

/// Why a registered type has no ONNX lowering.
fn why_not(layer_type: &str) -> String {
    let reason = match layer_type {
        "Python" => "its computation is Python code that ONNX cannot hold",
        _ => "no ONNX lowering is written for this type",
    };
    format!("cannot be exported to ONNX: {reason}")
}
