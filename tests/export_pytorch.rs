//! `caffe export -format pytorch`: model.py and weights.safetensors against
//! BVLC Caffe's saved blobs (the four caffe-ref fixtures), against caffe-tch's
//! forward (the BVLC deploy nets, and every supported layer type in tiny
//! nets of several modes), and its errors (unwritable -out, a layer model.py
//! cannot express).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use caffe_tch::export::{pytorch, BuildOptions};
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::{LayerParameter, NetParameter};

use crate::common::export::{prepare, python_with_torch, run_cases, worst_per_case, Case};
use crate::common::{assert_one_line_error, caffe_ref, fixture};

fn caffe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caffe")).env_remove("GLOG_log_dir").args(args).output().expect("spawn caffe")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Compares every blob model.py returns with BVLC Caffe's saved blob, for
/// each (export folder, fixture folder), in one Python run; prints JSON
/// `{fixture: [max |Δ|, max |ref| over the worst blob, blobs compared, failures]}`.
const COMPARE_WITH_CAFFE: &str = r#"
import importlib.util, json, os, sys
import numpy as np
import torch

out = {}
for i, (model_dir, fixture) in enumerate(json.loads(sys.argv[1])):
    spec = importlib.util.spec_from_file_location(f"fixture_{i}", os.path.join(model_dir, "model.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.load()
    manifest = json.load(open(os.path.join(fixture, "manifest.json")))
    files = {b["name"]: os.path.join(fixture, b["file"]) for b in manifest["blobs"]}
    feeds = {mod.INPUTS[n]: torch.from_numpy(np.load(files[n])) for n in mod.INPUTS}
    names = [b for b in mod.BLOBS if b in files]
    with torch.no_grad():
        values = net(**feeds, blobs=names)
    worst, compared, failed = 0.0, 0, []
    for n in names:
        ref = np.load(files[n]).astype(np.float64)
        got = values[n].numpy().astype(np.float64).reshape(ref.shape)
        d, m = float(np.abs(got - ref).max(initial=0)), float(np.abs(ref).max(initial=0))
        worst = max(worst, d)
        compared += 1
        if not d <= 1e-4 * (1 + m):
            failed.append(f"{n}: {d:.3e} (max |ref| {m:.3e})")
    out[os.path.basename(fixture)] = [worst, compared, len(mod.BLOBS), failed]
print(json.dumps(out))
"#;

#[test]
fn fixtures_match_bvlc_caffe_blob_by_blob() {
    let py = match python_with_torch() {
        Ok(p) => p,
        Err(e) => skip!("{e}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for name in ["lenet", "cifar10_quick", "cifar10_full", "resnet_small"] {
        let dir = caffe_ref(&format!("fixtures/{name}"));
        let out = tmp.path().join(name);
        let mut args = vec![
            "export".to_string(),
            "-model".into(),
            s(&dir.join("net.prototxt")),
            "-weights".into(),
            s(&dir.join("weights.caffemodel")),
            "-format".into(),
            "pytorch".into(),
            "-out".into(),
            s(&out),
            "-blobs".into(),
            "all".into(),
        ];
        // The CLI's own -verify once (the others are compared with Caffe below).
        if name == "lenet" {
            args.extend(["-verify".into(), "-input".into(), format!("data={}", s(&dir.join("blobs/data.npy")))]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = caffe(&args);
        let all = text(&o);
        assert!(o.status.success(), "export {name}: {all}");
        if name == "lenet" {
            assert!(all.contains("Verify pytorch: 10 blob(s)") && all.contains("PASSED"), "{all}");
        }
        pairs.push((s(&out), s(&dir)));
    }
    let o = Command::new(&py)
        .arg("-c")
        .arg(COMPARE_WITH_CAFFE)
        .arg(serde_json::to_string(&pairs).unwrap())
        .output()
        .expect("spawn python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    for name in ["lenet", "cifar10_quick", "cifar10_full", "resnet_small"] {
        let r = &report[name];
        let (worst, compared) = (r[0].as_f64().unwrap(), r[1].as_u64().unwrap());
        eprintln!("{name}: {compared} blobs against BVLC Caffe, worst max |Δ| = {worst:.3e}");
        assert!(r[3].as_array().unwrap().is_empty(), "{name}: {}", r[3]);
        // Every exported blob has a saved Caffe value (inputs and intermediate blobs included).
        assert_eq!(compared, r[2].as_u64().unwrap(), "{name}: not every blob was compared");
        assert!(compared >= 10, "{name}: only {compared} blobs compared");
    }
}

#[test]
fn bvlc_deploy_nets_export_and_verify() {
    let py = match python_with_torch() {
        Ok(p) => p,
        Err(e) => skip!("{e}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for name in [
        "bvlc_reference_caffenet",
        "bvlc_alexnet",
        "bvlc_googlenet",
        "finetune_flickr_style",
        "bvlc_reference_rcnn_ilsvrc13",
    ] {
        let text = std::fs::read_to_string(fixture(&format!("bvlc/models/{name}/deploy.prototxt"))).unwrap();
        let build = BuildOptions { input_shapes: vec![("data".into(), vec![1, 3, 227, 227])], ..Default::default() };
        cases.push(prepare(tmp.path(), name, &text, build).unwrap_or_else(|e| panic!("{name}: {e}")));
    }
    let (results, failures) = run_cases(&py, tmp.path(), &cases);
    for (case, worst) in worst_per_case(&results) {
        eprintln!("{case}: worst max |Δ| = {worst:.3e}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Every blob of every net was compared (175; GoogLeNet alone has over a hundred).
    assert!(results.len() > 150, "{} blobs", results.len());
}

// ------------------------------------------------------------------ per layer

const W: &str = r#"weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" min: -1 max: 1 }"#;

fn input(name: &str, shape: &[i64]) -> String {
    let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
    format!("layer {{ name: \"{name}\" type: \"Input\" top: \"{name}\" input_param {{ shape {{ {dims}}} }} }}\n")
}

/// DetectionOutput over 48 priors (a PriorBox on a 3 × 4 map) and 4 classes,
/// random locations and confidences for `images` images; `loc_classes` 1
/// shares the locations.
fn detection_output_net(images: i64, loc_classes: i64, params: &str) -> String {
    format!(
        "{}{}{}{}layer {{ name: \"p\" type: \"PriorBox\" bottom: \"map\" bottom: \"image\" top: \"priors\" prior_box_param {{ min_size: 3 max_size: 7 aspect_ratio: 2 variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }} }}
         layer {{ name: \"d\" type: \"DetectionOutput\" bottom: \"loc\" bottom: \"conf\" bottom: \"priors\" top: \"y\" detection_output_param {{ num_classes: 4 {params} }} }}\n",
        input("map", &[1, 2, 3, 4]),
        input("image", &[1, 3, 12, 16]),
        input("loc", &[images, 48 * 4 * loc_classes]),
        input("conf", &[images, 48 * 4])
    )
}

/// A net: an Input `data` of `shape`, then one layer `l` (type and body) reading it, top `y`.
fn one(shape: &[i64], ty: &str, body: &str) -> String {
    format!("{}layer {{ name: \"l\" type: \"{ty}\" bottom: \"data\" top: \"y\" {body} }}\n", input("data", shape))
}

/// (label, prototxt, DropIn iteration) for every supported layer type, in several modes.
fn layer_nets() -> Vec<(String, String, Option<i64>)> {
    let x = [2, 4, 7, 9];
    let mut v: Vec<(&str, String)> = vec![
        ("conv_group_dilation", one(&x, "Convolution", &format!("convolution_param {{ num_output: 6 kernel_size: 3 pad: 2 stride: 2 dilation: 2 group: 2 {W} }}"))),
        ("conv_hw_nobias", one(&x, "Convolution", &format!("convolution_param {{ num_output: 3 kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1 bias_term: false {W} }}"))),
        ("conv_1d", one(&[2, 3, 11], "Convolution", &format!("convolution_param {{ num_output: 4 kernel_size: 3 stride: 2 pad: 1 {W} }}"))),
        ("conv_3d", one(&[1, 2, 5, 6, 7], "Convolution", &format!("convolution_param {{ num_output: 3 kernel_size: 3 kernel_size: 2 kernel_size: 3 pad: 1 {W} }}"))),
        ("deconv_group", one(&x, "Deconvolution", &format!("convolution_param {{ num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 2 {W} }}"))),
        ("deconv_dilation", one(&x, "Deconvolution", &format!("convolution_param {{ num_output: 2 kernel_size: 3 dilation: 2 {W} }}"))),
        ("ip", one(&x, "InnerProduct", &format!("inner_product_param {{ num_output: 5 {W} }}"))),
        ("ip_axis2", one(&x, "InnerProduct", &format!("inner_product_param {{ num_output: 5 axis: 2 {W} }}"))),
        ("ip_transpose", one(&x, "InnerProduct", &format!("inner_product_param {{ num_output: 3 transpose: true {W} }}"))),
        ("ip_nobias_last", one(&x, "InnerProduct", &format!("inner_product_param {{ num_output: 3 axis: -1 bias_term: false {W} }}"))),
        ("pool_max_pad", one(&x, "Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }")),
        ("pool_ave_pad", one(&x, "Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }")),
        ("pool_ave_big_pad", one(&x, "Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 3 pad: 2 }")),
        ("pool_max_empty_window", one(&[1, 2, 6, 6], "Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 3 }")),
        ("pool_floor", one(&x, "Pooling", "pooling_param { pool: AVE kernel_h: 2 kernel_w: 3 stride: 2 round_mode: FLOOR }")),
        ("pool_global", one(&x, "Pooling", "pooling_param { pool: AVE global_pooling: true }")),
        ("pool_stochastic_test", format!("{}layer {{ name: \"a\" type: \"AbsVal\" bottom: \"data\" top: \"a\" }}\nlayer {{ name: \"l\" type: \"Pooling\" bottom: \"a\" top: \"y\" pooling_param {{ pool: STOCHASTIC kernel_size: 3 stride: 2 }} }}\n", input("data", &x))),
        ("lrn_across", one(&x, "LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }")),
        ("lrn_within", one(&x, "LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }")),
        ("scale_bias", one(&x, "Scale", "scale_param { bias_term: true filler { type: \"uniform\" min: -2 max: 2 } bias_filler { type: \"uniform\" } }")),
        ("scale_axes", one(&x, "Scale", "scale_param { axis: 1 num_axes: 2 filler { type: \"uniform\" min: -2 max: 2 } }")),
        ("scale_scalar", one(&x, "Scale", "scale_param { num_axes: 0 filler { type: \"constant\" value: -1.5 } }")),
        ("scale_two_bottoms", format!("{}{}layer {{ name: \"l\" type: \"Scale\" bottom: \"data\" bottom: \"s\" top: \"y\" scale_param {{ axis: 0 bias_term: true bias_filler {{ type: \"uniform\" }} }} }}\n", input("data", &x), input("s", &[2, 4]))),
        ("bias_learned", one(&x, "Bias", "bias_param { axis: 1 num_axes: -1 filler { type: \"uniform\" min: -1 max: 1 } }")),
        ("bias_two_bottoms", format!("{}{}layer {{ name: \"l\" type: \"Bias\" bottom: \"data\" bottom: \"b\" top: \"y\" }}\n", input("data", &x), input("b", &[4, 7]))),
        ("eltwise_sum_coeff", format!("{}{}layer {{ name: \"l\" type: \"Eltwise\" bottom: \"data\" bottom: \"b\" top: \"y\" eltwise_param {{ coeff: 1 coeff: -0.5 }} }}\n", input("data", &x), input("b", &x))),
        ("eltwise_prod", format!("{}{}layer {{ name: \"l\" type: \"Eltwise\" bottom: \"data\" bottom: \"b\" bottom: \"data\" top: \"y\" eltwise_param {{ operation: PROD }} }}\n", input("data", &x), input("b", &x))),
        ("eltwise_max", format!("{}{}{}layer {{ name: \"l\" type: \"Eltwise\" bottom: \"data\" bottom: \"b\" bottom: \"c\" top: \"y\" eltwise_param {{ operation: MAX }} }}\n", input("data", &x), input("b", &x), input("c", &x))),
        ("softmax", one(&x, "Softmax", "")),
        ("softmax_axis_last", one(&[2, 3, 5], "Softmax", "softmax_param { axis: -1 }")),
        ("concat_axis2", format!("{}{}layer {{ name: \"l\" type: \"Concat\" bottom: \"data\" bottom: \"b\" top: \"y\" concat_param {{ axis: 2 }} }}\n", input("data", &x), input("b", &[2, 4, 3, 9]))),
        ("concat_channels", format!("{}{}layer {{ name: \"l\" type: \"Concat\" bottom: \"data\" bottom: \"b\" top: \"y\" }}\n", input("data", &x), input("b", &[2, 1, 7, 9]))),
        ("slice_points", format!("{}layer {{ name: \"l\" type: \"Slice\" bottom: \"data\" top: \"y1\" top: \"y2\" top: \"y3\" slice_param {{ axis: 3 slice_point: 2 slice_point: 7 }} }}\n", input("data", &x))),
        ("slice_even_legacy_dim", format!("{}layer {{ name: \"l\" type: \"Slice\" bottom: \"data\" top: \"y1\" top: \"y2\" slice_param {{ slice_dim: 1 }} }}\n", input("data", &x))),
        ("split_auto", format!("{}layer {{ name: \"r\" type: \"ReLU\" bottom: \"data\" top: \"r\" }}\nlayer {{ name: \"a\" type: \"TanH\" bottom: \"r\" top: \"a\" }}\nlayer {{ name: \"b\" type: \"Sigmoid\" bottom: \"r\" top: \"b\" }}\n", input("data", &x))),
        ("crop_offsets", format!("{}{}layer {{ name: \"l\" type: \"Crop\" bottom: \"data\" bottom: \"b\" top: \"y\" crop_param {{ axis: 2 offset: 1 offset: 3 }} }}\n", input("data", &x), input("b", &[2, 4, 4, 5]))),
        ("crop_axis1_one_offset", format!("{}{}layer {{ name: \"l\" type: \"Crop\" bottom: \"data\" bottom: \"b\" top: \"y\" crop_param {{ axis: 1 offset: 1 }} }}\n", input("data", &x), input("b", &[2, 2, 5, 6]))),
        ("reshape_copy_infer", one(&x, "Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 3 } }")),
        ("reshape_axis", one(&x, "Reshape", "reshape_param { axis: 1 num_axes: 1 shape { dim: 2 dim: 2 } }")),
        ("flatten", one(&x, "Flatten", "")),
        ("flatten_range", one(&x, "Flatten", "flatten_param { axis: 2 end_axis: 3 }")),
        ("relu", one(&x, "ReLU", "")),
        ("relu_leaky_inplace", format!("{}layer {{ name: \"p\" type: \"Power\" bottom: \"data\" top: \"p\" }}\nlayer {{ name: \"l\" type: \"ReLU\" bottom: \"p\" top: \"p\" relu_param {{ negative_slope: 0.1 }} }}\n", input("data", &x))),
        ("prelu", one(&x, "PReLU", "prelu_param { filler { type: \"uniform\" min: -1 max: 1 } }")),
        ("prelu_shared", one(&x, "PReLU", "prelu_param { channel_shared: true filler { type: \"constant\" value: 0.3 } }")),
        ("sigmoid", one(&x, "Sigmoid", "")),
        ("tanh", one(&x, "TanH", "")),
        ("absval", one(&x, "AbsVal", "")),
        ("bnll", one(&x, "BNLL", "")),
        ("elu", one(&x, "ELU", "elu_param { alpha: 0.5 }")),
        ("selu", one(&x, "SeLu", "selu_param { lambda: 1.2 alpha: 0.8 }")),
        ("selu_dropout", one(&x, "SeLuDropout", "")),
        ("exp", one(&x, "Exp", "")),
        ("exp_base_scale_shift", one(&x, "Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }")),
        ("log_shift", one(&x, "Log", "log_param { shift: 2 }")),
        ("log_base", one(&x, "Log", "log_param { base: 10 scale: 2 shift: 3 }")),
        ("power", one(&x, "Power", "power_param { power: 2 scale: 0.5 shift: 1 }")),
        ("power_sqrt", one(&x, "Power", "power_param { power: 0.5 shift: 2 }")),
        ("power_constant", one(&x, "Power", "power_param { power: 3 scale: 0 shift: 2 }")),
        ("threshold", one(&x, "Threshold", "threshold_param { threshold: 0.2 }")),
        ("clip", one(&x, "Clip", "clip_param { min: -0.3 max: 0.4 }")),
        ("relu6", one(&x, "ReLU6", "")),
        ("axpy", format!("{}{}{}layer {{ name: \"l\" type: \"Axpy\" bottom: \"a\" bottom: \"data\" bottom: \"z\" top: \"y\" }}\n", input("a", &[2, 4]), input("data", &x), input("z", &x))),
        ("swish", one(&x, "Swish", "swish_param { beta: 1.5 }")),
        ("dropout", one(&x, "Dropout", "dropout_param { dropout_ratio: 0.3 }")),
        ("dropout_unscaled", one(&x, "Dropout", "dropout_param { dropout_ratio: 0.3 scale_train: false }")),
        ("permute", one(&x, "Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }")),
        ("permute_batch_last", one(&x, "Permute", "permute_param { order: 3 order: 0 }")),
        ("normalize", one(&x, "Normalize", "")),
        ("normalize_per_channel", one(&x, "Normalize", "norm_param { across_spatial: false channel_shared: false eps: 0.01 scale_filler { type: \"uniform\" min: 1 max: 20 } }")),
        ("priorbox_image_blob", format!("{}layer {{ name: \"l\" type: \"PriorBox\" bottom: \"data\" bottom: \"data\" top: \"y\" prior_box_param {{ min_size: 2 max_size: 5 aspect_ratio: 2 flip: false }} }}\n", input("data", &x))),
        ("priorbox_fixed", one(&x, "PriorBox", "prior_box_param { min_size: 3 aspect_ratio: 2 aspect_ratio: 3 clip: true img_h: 30 img_w: 40 step_h: 7 step_w: 5 offset: 0.25 variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }")),
        ("depthwise_convolution", one(&x, "DepthwiseConvolution", &format!("convolution_param {{ num_output: 4 group: 4 kernel_size: 3 pad: 1 {W} }}"))),
        ("convolution_depthwise", one(&x, "ConvolutionDepthwise", &format!("convolution_param {{ kernel_size: 3 stride: 2 {W} }}"))),
        ("psroi_pooling", format!("{}{}layer {{ name: \"l\" type: \"PSROIPooling\" bottom: \"data\" bottom: \"rois\" top: \"y\" psroi_pooling_param {{ spatial_scale: 0.5 output_dim: 2 group_size: 3 }} }}\n", input("data", &[2, 18, 7, 9]), input("rois", &[6, 5]))),
        ("proposal", format!("{}{}{}layer {{ name: \"l\" type: \"Proposal\" bottom: \"scores\" bottom: \"deltas\" bottom: \"im_info\" top: \"rois\" top: \"kept\" proposal_param {{ feat_stride: 8 min_size: 4 post_nms_topn: 30 }} }}\n", input("scores", &[1, 18, 5, 7]), input("deltas", &[1, 36, 5, 7]), input("im_info", &[1, 3]))),
        ("faster_rcnn_tiny", std::fs::read_to_string(crate::common::repo().join("tests/fixtures/forks/faster_rcnn_tiny.prototxt")).expect("faster_rcnn_tiny")),
        ("bn_segnet_learn", one(&x, "BN", "bn_param { scale_filler { type: \"uniform\" min: -2 max: 2 } shift_filler { type: \"uniform\" } }")),
        ("bn_segnet_inference", one(&x, "BN", "bn_param { bn_mode: INFERENCE scale_filler { type: \"uniform\" min: -2 max: 2 } shift_filler { type: \"uniform\" } }")),
        ("bn_pspnet_frozen", one(&x, "BN", "bn_param { frozen: true eps: 0.001 slope_filler { type: \"uniform\" min: -2 max: 2 } bias_filler { type: \"uniform\" } }")),
        ("bn_pspnet_2d", one(&[3, 5], "BN", "bn_param { momentum: 0.95 slope_filler { type: \"uniform\" min: -2 max: 2 } bias_filler { type: \"uniform\" } }")),
        ("pool_max_mask", format!("{}layer {{ name: \"l\" type: \"Pooling\" bottom: \"data\" top: \"y\" top: \"mask\" pooling_param {{ pool: MAX kernel_size: 3 stride: 2 pad: 1 }} }}\n", input("data", &x))),
        ("pool_max_mask_empty_window", format!("{}layer {{ name: \"l\" type: \"Pooling\" bottom: \"data\" top: \"y\" top: \"mask\" pooling_param {{ pool: MAX kernel_size: 2 stride: 3 }} }}\n", input("data", &[1, 2, 6, 6]))),
        ("segnet_unpool", format!("{}layer {{ name: \"p\" type: \"Pooling\" bottom: \"data\" top: \"p\" top: \"mask\" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}\nlayer {{ name: \"u\" type: \"Upsample\" bottom: \"p\" bottom: \"mask\" top: \"y\" upsample_param {{ scale: 2 pad_out_h: true pad_out_w: true }} }}\n", input("data", &x))),
        ("upsample_nearest", one(&x, "Upsample", "upsample_param { scale: 2 }")),
        ("interp_zoom", one(&x, "Interp", "interp_param { zoom_factor: 2 }")),
        ("interp_size_crop", one(&x, "Interp", "interp_param { height: 5 width: 13 pad_beg: -1 pad_end: -1 }")),
        ("interp_shrink_zoom", one(&x, "Interp", "interp_param { shrink_factor: 2 zoom_factor: 3 }")),
        ("interp_like", format!("{}{}layer {{ name: \"l\" type: \"Interp\" bottom: \"data\" bottom: \"ref\" top: \"y\" }}\n", input("data", &x), input("ref", &[2, 1, 3, 20]))),
        ("shuffle_channel", one(&x, "ShuffleChannel", "shuffle_channel_param { group: 2 }")),
        ("reorg", one(&[2, 8, 4, 6], "Reorg", "reorg_param { stride: 2 }")),
        ("reorg_reverse", one(&[2, 18, 2, 3], "Reorg", "reorg_param { stride: 3 reverse: true }")),
        ("roi_pooling", format!("{}{}layer {{ name: \"l\" type: \"ROIPooling\" bottom: \"data\" bottom: \"rois\" top: \"y\" roi_pooling_param {{ pooled_h: 2 pooled_w: 3 spatial_scale: 0.5 }} }}\n", input("data", &x), input("rois", &[6, 5]))),
        ("ssd_tiny", std::fs::read_to_string(crate::common::repo().join("tests/fixtures/ssd/ssd_tiny.prototxt")).expect("ssd_tiny")),
        ("detection_output_shared", detection_output_net(1, 1, "keep_top_k: 10 confidence_threshold: 0.01 nms_param { nms_threshold: 0.45 top_k: 20 }")),
        ("detection_output_per_class", detection_output_net(1, 4, "share_location: false code_type: CORNER keep_top_k: -1 nms_param { nms_threshold: 0.3 }")),
        ("detection_output_none_kept", detection_output_net(1, 1, "code_type: CORNER_SIZE variance_encoded_in_target: true background_label_id: 2 confidence_threshold: 2 nms_param { nms_threshold: 0.5 top_k: 5 }")),
        ("detection_output_two_images", detection_output_net(2, 1, "keep_top_k: 7 confidence_threshold: 0.2 nms_param { nms_threshold: 0.5 top_k: 30 }")),
        ("yolov3_two_scales", format!("{}{}layer {{ name: \"d\" type: \"Yolov3DetectionOutput\" bottom: \"s13\" bottom: \"s26\" top: \"y\" yolov3_detection_output_param {{ num_classes: 2 num_box: 3 confidence_threshold: 0.3 nms_threshold: 0.45 biases: 10 biases: 14 biases: 23 biases: 27 biases: 37 biases: 58 biases: 81 biases: 82 biases: 135 biases: 169 biases: 344 biases: 319 anchors_scale: 32 anchors_scale: 16 mask_group_num: 2 mask: 3 mask: 4 mask: 5 mask: 0 mask: 1 mask: 2 }} }}\n", input("s13", &[2, 21, 3, 4]), input("s26", &[2, 21, 6, 8]))),
        ("yolov2_two_maps", format!("{}{}layer {{ name: \"d\" type: \"YoloDetectionOutput\" bottom: \"s13\" bottom: \"s26\" top: \"y\" yolo_detection_output_param {{ num_classes: 2 num_box: 3 confidence_threshold: 0.2 nms_threshold: 0.45 biases: 1.08 biases: 1.19 biases: 3.42 biases: 4.41 biases: 6.63 biases: 11.38 }} }}\n", input("s13", &[2, 21, 3, 3]), input("s26", &[2, 21, 6, 6]))),
        ("detection_output_adaptive", detection_output_net(1, 1, "confidence_threshold: -0.5 nms_param { nms_threshold: 0.9 eta: 0.8 }")),
        ("mvn", one(&x, "MVN", "")),
        ("mvn_across_mean_only", one(&x, "MVN", "mvn_param { across_channels: true normalize_variance: false }")),
        ("mvn_across", one(&x, "MVN", "mvn_param { across_channels: true eps: 0.001 }")),
        ("reduction_sum", one(&x, "Reduction", "reduction_param { axis: 1 }")),
        ("reduction_asum_all", one(&x, "Reduction", "reduction_param { operation: ASUM axis: 0 }")),
        ("reduction_sumsq", one(&x, "Reduction", "reduction_param { operation: SUMSQ axis: 2 coeff: -0.5 }")),
        ("reduction_mean", one(&x, "Reduction", "reduction_param { operation: MEAN axis: -1 coeff: 2 }")),
        ("argmax", one(&x, "ArgMax", "argmax_param { top_k: 3 }")),
        ("argmax_max_val", one(&x, "ArgMax", "argmax_param { top_k: 2 out_max_val: true }")),
        ("argmax_axis", one(&x, "ArgMax", "argmax_param { axis: 1 top_k: 2 }")),
        ("argmax_axis_values", one(&x, "ArgMax", "argmax_param { axis: 3 out_max_val: true }")),
        ("embed", one(&[3, 4], "Embed", &format!("embed_param {{ num_output: 5 input_dim: 7 {W} }}"))),
        ("embed_nobias", one(&[6], "Embed", &format!("embed_param {{ num_output: 2 input_dim: 3 bias_term: false {W} }}"))),
        ("tile", one(&x, "Tile", "tile_param { axis: 2 tiles: 3 }")),
        ("parameter", format!("{}layer {{ name: \"p\" type: \"Parameter\" top: \"p\" parameter_param {{ shape {{ dim: 2 dim: 4 dim: 7 dim: 9 }} }} param {{ lr_mult: 1 }} }}\nlayer {{ name: \"l\" type: \"Eltwise\" bottom: \"data\" bottom: \"p\" top: \"y\" }}\n", input("data", &x))),
        ("batch_reindex", format!("{}layer {{ name: \"i\" type: \"DummyData\" top: \"i\" dummy_data_param {{ shape {{ dim: 5 }} data_filler {{ type: \"uniform\" min: 0 max: 1.99 }} }} }}\nlayer {{ name: \"l\" type: \"BatchReindex\" bottom: \"data\" bottom: \"i\" top: \"y\" }}\n", input("data", &x))),
        ("filter", format!("{}{}layer {{ name: \"t\" type: \"Threshold\" bottom: \"sel\" top: \"t\" }}\nlayer {{ name: \"l\" type: \"Filter\" bottom: \"data\" bottom: \"t\" top: \"y\" }}\n", input("data", &[6, 3]), input("sel", &[6]))),
        ("spp_max", one(&x, "SPP", "spp_param { pyramid_height: 3 pool: MAX }")),
        ("spp_ave_one_level", one(&x, "SPP", "spp_param { pyramid_height: 1 pool: AVE }")),
        ("im2col", one(&x, "Im2col", "convolution_param { kernel_size: 3 pad: 1 stride: 2 dilation: 1 }")),
        ("resize_bilinear", one(&x, "Resize", "resize_param { channels: 6 height: 5 width: 13 }")),
        ("resize_nearest", one(&x, "Resize", "resize_param { channels: 3 height: 14 width: 4 interpolation: NEAREST }")),
        ("dropin_regularizing", format!("{}{}layer {{ name: \"l\" type: \"DropIn\" bottom: \"data\" bottom: \"b\" top: \"y\" dropin_param {{ dropin_ratio: 0.3 }} }}\n", input("data", &x), input("b", &x))),
        ("lstm", format!("{}{}layer {{ name: \"l\" type: \"LSTM\" bottom: \"data\" bottom: \"cont\" top: \"y\" recurrent_param {{ num_output: 5 {W} }} }}\n", input("data", &[3, 2, 4]), input("cont", &[3, 2]))),
        ("lstm_static_exposed", format!("{}{}{}{}{}layer {{ name: \"l\" type: \"LSTM\" bottom: \"data\" bottom: \"cont\" bottom: \"st\" bottom: \"h0\" bottom: \"c0\" top: \"y\" top: \"hT\" top: \"cT\" recurrent_param {{ num_output: 5 expose_hidden: true {W} }} }}\n", input("data", &[3, 2, 4]), input("cont", &[3, 2]), input("st", &[2, 3]), input("h0", &[1, 2, 5]), input("c0", &[1, 2, 5]))),
        ("rnn", format!("{}{}layer {{ name: \"l\" type: \"RNN\" bottom: \"data\" bottom: \"cont\" top: \"y\" recurrent_param {{ num_output: 4 {W} }} }}\n", input("data", &[4, 2, 3]), input("cont", &[4, 2]))),
        ("rnn_static_exposed", format!("{}{}{}{}layer {{ name: \"l\" type: \"RNN\" bottom: \"data\" bottom: \"cont\" bottom: \"st\" bottom: \"h0\" top: \"y\" top: \"hT\" recurrent_param {{ num_output: 4 expose_hidden: true {W} }} }}\n", input("data", &[4, 2, 3]), input("cont", &[4, 2]), input("st", &[2, 2]), input("h0", &[1, 2, 4]))),
        ("lstm_unit", format!("{}{}{}layer {{ name: \"l\" type: \"LSTMUnit\" bottom: \"c\" bottom: \"g\" bottom: \"cont\" top: \"c1\" top: \"h1\" }}\n", input("c", &[1, 3, 4]), input("g", &[1, 3, 16]), input("cont", &[1, 3]))),
        ("names_need_identifiers", format!("{}layer {{ name: \"conv/1\" type: \"Convolution\" bottom: \"in/put\" top: \"conv/1\" convolution_param {{ num_output: 2 kernel_size: 1 {W} }} }}\nlayer {{ name: \"forward\" type: \"ReLU\" bottom: \"conv/1\" top: \"blobs\" }}\nlayer {{ name: \"2x\" type: \"Scale\" bottom: \"blobs\" top: \"2x\" scale_param {{ filler {{ type: \"uniform\" }} }} }}\n", input("in/put", &x))),
    ];
    let mut out: Vec<(String, String, Option<i64>)> = v.drain(..).map(|(l, t)| (l.to_string(), t, None)).collect();
    // DropIn's gradual ramp: before, during and after (dropin/drop_in.rs).
    let dropin = format!("{}{}layer {{ name: \"l\" type: \"DropIn\" bottom: \"data\" bottom: \"b\" top: \"y\" dropin_param {{ dropin_length: 100 dropin_start: 10 }} }}\n", input("data", &x), input("b", &x));
    for it in [0, 47, 500] {
        out.push((format!("dropin_gradual_{it}"), dropin.clone(), Some(it)));
    }
    out
}

/// A caffemodel holding `layer`'s blobs.
fn write_blobs(path: &Path, layer: &str, blobs: &[(&[i64], Vec<f32>)]) {
    let lp = LayerParameter {
        name: Some(layer.into()),
        blobs: blobs.iter().map(|(s, v)| binary::make_blob(s, v.clone())).collect(),
        ..Default::default()
    };
    binary::write_message(path, &NetParameter { layer: vec![lp], ..Default::default() }).unwrap();
}

#[test]
fn every_supported_layer_type_matches_caffe_tch() {
    let py = match python_with_torch() {
        Ok(p) => p,
        Err(e) => skip!("{e}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut cases: Vec<Case> = Vec::new();
    for (label, text, iteration) in layer_nets() {
        let build = BuildOptions { iteration, ..Default::default() };
        cases.push(prepare(tmp.path(), &label, &text, build).unwrap_or_else(|e| panic!("{label}: {e}")));
    }
    // BatchNorm with statistics and a scale factor of 2, on 4-D and 2-D bottoms.
    for (label, shape) in [("batch_norm", vec![2i64, 3, 4, 5]), ("batch_norm_2d", vec![5, 3])] {
        let weights = tmp.path().join(format!("{label}.caffemodel"));
        let c = [3i64];
        write_blobs(&weights, "l", &[(&c, vec![0.4, -1.0, 2.0]), (&c, vec![1.0, 0.5, 6.0]), (&[1], vec![2.0])]);
        let text = one(&shape, "BatchNorm", "batch_norm_param { eps: 0.001 }");
        let build = BuildOptions { weights: vec![weights], ..Default::default() };
        cases.push(prepare(tmp.path(), label, &text, build).unwrap_or_else(|e| panic!("{label}: {e}")));
    }
    let (results, failures) = run_cases(&py, tmp.path(), &cases);
    let worst = worst_per_case(&results);
    eprintln!(
        "{} nets, {} blobs; worst max |Δ| per net: {}",
        cases.len(),
        results.len(),
        worst.iter().map(|(c, d)| format!("{c} {d:.1e}")).collect::<Vec<_>>().join(", ")
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // Every type the exporter claims is exercised here.
    let tested: Vec<String> = cases
        .iter()
        .flat_map(|c| {
            std::fs::read_to_string(c.model.join("model.py"))
                .unwrap()
                .lines()
                .filter_map(|l| l.trim().strip_prefix("# ").map(String::from))
                .collect::<Vec<_>>()
        })
        .collect();
    for ty in pytorch::supported_types() {
        assert!(tested.iter().any(|l| l.ends_with(&format!("({ty})"))), "no per-layer net exercises {ty}");
    }
}

// ------------------------------------------------------------------ errors

fn lenet_args(out: &Path) -> Vec<String> {
    let dir = caffe_ref("fixtures/lenet");
    vec![
        "export".into(),
        "-model".into(),
        s(&dir.join("net.prototxt")),
        "-weights".into(),
        s(&dir.join("weights.caffemodel")),
        "-format".into(),
        "pytorch".into(),
        "-out".into(),
        s(out),
    ]
}

fn one_line_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    stderr.lines().rfind(|l| l.contains("error")).unwrap_or_default().to_string()
}

#[test]
fn unwritable_out_fails_in_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no/such/folder/model");
    let args = lenet_args(&missing);
    let o = caffe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&one_line_error(&o), &["no/such/folder", "does not exist"]);
    assert!(!tmp.path().join("no").exists());
    // A read-only folder: /proc for root (whom permissions do not stop), else a chmod'ed one.
    let ro: PathBuf = if nix_is_root() {
        PathBuf::from("/proc/caffe-tch-export-test")
    } else {
        let d = tmp.path().join("ro");
        std::fs::create_dir(&d).unwrap();
        let mut perm = std::fs::metadata(&d).unwrap().permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&d, perm).unwrap();
        d.join("model")
    };
    let args = lenet_args(&ro);
    let o = caffe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = one_line_error(&o);
    assert_one_line_error(&err, &[&s(&ro)]);
    assert!(!ro.exists());
}

fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_layer_model_py_cannot_express_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("train.prototxt");
    std::fs::write(&model, one(&[2, 3], "Dropout", "")).unwrap();
    let out = tmp.path().join("torch");
    let o = caffe(&["export", "-model", &s(&model), "-format", "pytorch", "-out", &s(&out), "-phase", "TRAIN"]);
    let err = one_line_error(&o);
    assert_one_line_error(&err, &["train.prototxt", "l", "Dropout", "TRAIN"]);
    assert!(!out.exists(), "a partial export was left behind");
}
