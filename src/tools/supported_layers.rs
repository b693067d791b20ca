//! `SUPPORTED-LAYERS.md`, generated from the layer registry and the
//! exporters' tables (`make layers-doc`; a test keeps the file in sync).
use crate::export::{onnx, plan, pytorch};
use crate::layers::REGISTRY;

/// What an exporter does with a layer type: lowered, an input, left out, or not exported.
fn export_column(type_name: &str, supported: bool) -> &'static str {
    if plan::DATA_SOURCE_TYPES.contains(&type_name) {
        "graph input"
    } else if plan::left_out_reason(type_name).is_some() {
        "left out"
    } else if supported {
        "yes"
    } else {
        "no"
    }
}

pub fn supported_layers_markdown() -> String {
    let mut s = String::new();
    s.push_str("# Supported layers\n\n");
    s.push_str("Generated from the layer registry (`src/layers/registry.rs`) and the exporters' tables ");
    s.push_str("(`src/export/onnx/mod.rs`, `src/export/pytorch/`) by `make layers-doc`; ");
    s.push_str("`tests/supported_layers.rs` fails when this file is stale.\n\n");
    s.push_str("Every layer runs on the CPU and on CUDA: layers are written with libtorch tensor ops, ");
    s.push_str("so the device is the net's. Backward is libtorch autograd over the forward pass. ");
    s.push_str("`tests/layers_devices.rs` checks every type except the data sources on CUDA against the CPU ");
    s.push_str("(tops and gradients; run by `scripts/gpu_check.sh`, passed on an NVIDIA H200: ");
    s.push_str("`docs/results/gpu/h200.md`; the types added since, the forks' Axpy, BN, DetectionEvaluate, ");
    s.push_str("DetectionOutput, Interp, MultiBoxLoss, ");
    s.push_str(
        "Normalize, Permute, PriorBox, Proposal, PSROIPooling, ReLU6, ROIPooling, SegAccuracy, ShuffleChannel, ",
    );
    s.push_str("SmoothL1Loss, Upsample, YoloDetectionOutput and Yolov3DetectionOutput, the depthwise convolutions, ");
    s.push_str("and Pooling's mask top, have not run on CUDA yet; nor have the data layers other than Data).\n\n");
    s.push_str("The ONNX and PyTorch columns say what `caffe export` does with the type: `yes` (exported and ");
    s.push_str("checked against caffe-tch's forward by `tests/export_onnx.rs` / `tests/export_pytorch.rs`), ");
    s.push_str("`graph input` (a data source: its tops become the model's inputs), `left out` (training or ");
    s.push_str("evaluation only, with a log line), or `no` (an error names the layer and why).\n\n");
    s.push_str(&format!("{} layer types.\n\n", REGISTRY.len()));
    s.push_str(
        "| type | source | parameters honoured | devices | ONNX | PyTorch | tests |\n|---|---|---|---|---|---|---|\n",
    );
    for i in REGISTRY.iter() {
        let esc = |t: &str| t.replace('|', "\\|");
        s.push_str(&format!(
            "| {} | `src/layers/{}` | {} | CPU, CUDA | {} | {} | {} |\n",
            i.type_name,
            i.family,
            esc(i.params),
            export_column(i.type_name, onnx::supports(i.type_name)),
            export_column(i.type_name, pytorch::supports(i.type_name)),
            esc(i.tests)
        ));
    }
    s.push_str(
        "\n`Python` layers (`python_param { module layer param_str }`, a `caffe.Layer` subclass) are not in the \
         registry: the Python module builds them (`import caffe`, and the `caffe` binary, which runs itself under \
         Python for nets that have them). Their backward is their own `backward`, with autograd on either side \
         (`src/net/staged.rs`); they do not export (ONNX and PyTorch have no place for Python code).\n",
    );
    s
}
