//! Structure-aware net building: arbitrary small nets over the layer types
//! and their parameters (zero or negative strides, pads past the kernel,
//! huge num_output, bad axes, cycles, bottoms nobody produces, shared params
//! with mismatched shapes), written as prototxt, built, then one forward on
//! tiny inputs (and for a TEST net one without autograd). Every failure must
//! be an error, never a panic or an abort.
#![no_main]
use arbitrary::Arbitrary;
use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::caffe::{NetParameter, NetState, Phase};
use caffe_tch::proto::text::{parse_str, TextOptions};
use libfuzzer_sys::fuzz_target;

/// (type, parameter message, fields that take an integer, settings given whole: enum words, floats, flags)
type TypeSpec = (&'static str, &'static str, &'static [&'static str], &'static [&'static str]);
const TYPES: &[TypeSpec] = &[
    (
        "Convolution",
        "convolution_param",
        &[
            "num_output",
            "kernel_size",
            "stride",
            "pad",
            "dilation",
            "group",
            "axis",
            "kernel_h",
            "kernel_w",
            "stride_h",
            "pad_w",
        ],
        &["bias_term: false", "force_nd_im2col: true"],
    ),
    (
        "Deconvolution",
        "convolution_param",
        &["num_output", "kernel_size", "stride", "pad", "group", "dilation"],
        &["bias_term: false"],
    ),
    (
        "Pooling",
        "pooling_param",
        &["kernel_size", "stride", "pad", "kernel_h", "kernel_w", "stride_h", "pad_h"],
        &["pool: AVE", "pool: STOCHASTIC", "global_pooling: true", "round_mode: FLOOR"],
    ),
    ("InnerProduct", "inner_product_param", &["num_output", "axis"], &["transpose: true", "bias_term: false"]),
    (
        "ConvolutionDepthwise",
        "convolution_param",
        &["num_output", "kernel_size", "stride", "pad", "dilation", "group"],
        &["bias_term: false"],
    ),
    (
        "DepthwiseConvolution",
        "convolution_param",
        &["num_output", "kernel_size", "stride", "pad", "dilation", "group", "axis"],
        &["bias_term: false"],
    ),
    ("ReLU", "relu_param", &[], &["negative_slope: 0.5"]),
    ("SeLu", "selu_param", &[], &["alpha: -1", "lambda: 0", "alpha: 1e30"]),
    (
        "SeLuDropout",
        "selu_dropout_param",
        &[],
        &["dropout_ratio: 1", "dropout_ratio: 0", "dropout_ratio: 2", "alpha: 0", "dropout_ratio: -1"],
    ),
    ("Sigmoid", "sigmoid_param", &[], &[]),
    ("TanH", "tanh_param", &[], &[]),
    ("Swish", "swish_param", &[], &["beta: -3"]),
    ("BNLL", "loss_param", &[], &[]),
    ("Threshold", "threshold_param", &[], &["threshold: 0.5"]),
    ("Log", "log_param", &[], &["base: -1", "scale: 0", "shift: -1"]),
    ("Exp", "exp_param", &[], &["base: 0", "scale: 1e30"]),
    ("Clip", "clip_param", &[], &["min: 1", "max: -1"]),
    ("LRN", "lrn_param", &["local_size"], &["norm_region: WITHIN_CHANNEL", "alpha: -1", "beta: 0", "k: 0"]),
    ("Softmax", "softmax_param", &["axis"], &[]),
    ("Concat", "concat_param", &["axis", "concat_dim"], &[]),
    ("Slice", "slice_param", &["axis", "slice_point", "slice_dim"], &[]),
    ("Eltwise", "eltwise_param", &["coeff"], &["operation: PROD", "operation: MAX", "stable_prod_grad: false"]),
    ("Flatten", "flatten_param", &["axis", "end_axis"], &[]),
    (
        "Reshape",
        "reshape_param",
        &["axis", "num_axes"],
        &["shape { dim: 0 dim: -1 }", "shape { dim: -1 dim: -1 }", "shape { dim: 7 }", "shape { }"],
    ),
    ("Crop", "crop_param", &["axis", "offset"], &[]),
    ("Tile", "tile_param", &["axis", "tiles"], &[]),
    (
        "Reduction",
        "reduction_param",
        &["axis"],
        &["operation: ASUM", "operation: SUMSQ", "operation: MEAN", "coeff: -2"],
    ),
    ("ArgMax", "argmax_param", &["axis", "top_k"], &["out_max_val: true"]),
    ("MVN", "mvn_param", &[], &["across_channels: true", "normalize_variance: false", "eps: 0"]),
    (
        "BatchNorm",
        "batch_norm_param",
        &[],
        &["use_global_stats: true", "use_global_stats: false", "moving_average_fraction: 0", "eps: 0"],
    ),
    ("Scale", "scale_param", &["axis", "num_axes"], &["bias_term: true"]),
    ("Bias", "bias_param", &["axis", "num_axes"], &[]),
    ("Embed", "embed_param", &["num_output", "input_dim"], &["bias_term: false"]),
    ("SPP", "spp_param", &["pyramid_height"], &["pool: AVE"]),
    ("Im2col", "convolution_param", &["kernel_size", "stride", "pad", "dilation", "axis"], &[]),
    ("Power", "power_param", &[], &["power: -1", "power: 0.5", "scale: 0", "shift: -1"]),
    ("Dropout", "dropout_param", &[], &["dropout_ratio: 1", "dropout_ratio: 0", "dropout_ratio: 2"]),
    ("Split", "split_param", &[], &[]),
    ("DropIn", "dropin_param", &["dropin_length"], &[]),
    ("Resize", "resize_param", &["height", "width", "channels"], &[]),
    ("Filter", "filter_param", &[], &[]),
    ("BatchReindex", "batch_reindex_param", &[], &[]),
    ("PReLU", "prelu_param", &[], &["channel_shared: true"]),
    ("ELU", "elu_param", &[], &["alpha: -1"]),
    ("AbsVal", "absval_param", &[], &[]),
    ("ReLU6", "relu_param", &[], &[]),
    ("Axpy", "loss_param", &[], &[]),
    ("LSTM", "recurrent_param", &["num_output"], &["expose_hidden: true", "debug_info: true"]),
    ("RNN", "recurrent_param", &["num_output"], &["expose_hidden: true"]),
    ("LSTMUnit", "loss_param", &[], &[]),
    ("Parameter", "parameter_param", &[], &["shape { dim: 2 dim: 3 }", "shape { }", "shape { dim: 0 }"]),
    ("Silence", "silence_param", &[], &[]),
    (
        "DummyData",
        "dummy_data_param",
        &["num", "channels", "height", "width"],
        &["shape { dim: 2 dim: 3 }", "data_filler { type: \"gaussian\" }"],
    ),
    (
        "SoftmaxWithLoss",
        "loss_param",
        &["ignore_label"],
        &["normalization: FULL", "normalization: NONE", "normalization: BATCH_SIZE", "normalize: false"],
    ),
    ("EuclideanLoss", "loss_param", &[], &[]),
    ("SmoothL1Loss", "smooth_l1_loss_param", &[], &["sigma: 0.5", "sigma: 0"]),
    ("SigmoidCrossEntropyLoss", "loss_param", &["ignore_label"], &["normalization: BATCH_SIZE"]),
    ("MultinomialLogisticLoss", "loss_param", &[], &[]),
    ("HingeLoss", "hinge_loss_param", &[], &["norm: L2"]),
    ("ContrastiveLoss", "contrastive_loss_param", &[], &["legacy_version: true", "margin: -1"]),
    ("InfogainLoss", "infogain_loss_param", &["axis"], &[]),
    ("Accuracy", "accuracy_param", &["top_k", "axis", "ignore_label"], &[]),
    ("SegAccuracy", "seg_accuracy_param", &["ignore_label"], &["reset: false"]),
    ("Permute", "permute_param", &["order"], &[]),
    (
        "MultiBoxLoss",
        "multibox_loss_param",
        &["num_classes", "background_label_id", "sample_size", "neg_pos_ratio", "overlap_threshold"],
        &[
            "mining_type: HARD_EXAMPLE",
            "mining_type: NONE",
            "share_location: false",
            "use_prior_for_matching: false",
            "code_type: CENTER_SIZE",
            "conf_loss_type: LOGISTIC",
            "bp_inside: true",
            "nms_param { nms_threshold: 0.3 top_k: 5 }",
        ],
    ),
    (
        "YoloDetectionOutput",
        "yolo_detection_output_param",
        &["num_classes", "num_box", "biases"],
        &["confidence_threshold: 0", "nms_threshold: 0"],
    ),
    (
        "Yolov3DetectionOutput",
        "yolov3_detection_output_param",
        &["num_classes", "num_box", "mask_group_num", "mask", "anchors_scale", "biases"],
        &["confidence_threshold: 0", "nms_threshold: 0"],
    ),
    (
        "DetectionEvaluate",
        "detection_evaluate_param",
        &["num_classes", "background_label_id", "overlap_threshold"],
        &["evaluate_difficult_gt: false"],
    ),
    ("ShuffleChannel", "shuffle_channel_param", &["group"], &[]),
    ("Reorg", "reorg_param", &["stride"], &["reverse: true"]),
    ("Interp", "interp_param", &["height", "width", "zoom_factor", "shrink_factor", "pad_beg", "pad_end"], &[]),
    (
        "Upsample",
        "upsample_param",
        &["scale", "scale_h", "scale_w", "upsample_h", "upsample_w"],
        &["pad_out_h: true", "pad_out_w: true"],
    ),
    (
        "Proposal",
        "proposal_param",
        &["feat_stride", "base_size", "min_size", "ratio", "scale", "pre_nms_topn", "post_nms_topn"],
        &["nms_thresh: 0", "nms_thresh: 1"],
    ),
    (
        "BN",
        "bn_param",
        &[],
        &["bn_mode: INFERENCE", "frozen: true", "momentum: 2", "eps: 0", "scale_filler { type: \"gaussian\" }"],
    ),
    ("ROIPooling", "roi_pooling_param", &["pooled_h", "pooled_w", "spatial_scale"], &["spatial_scale: 0.0625"]),
    ("PSROIPooling", "psroi_pooling_param", &["output_dim", "group_size", "spatial_scale"], &["spatial_scale: 0.0625"]),
    ("Normalize", "norm_param", &[], &["across_spatial: false", "channel_shared: false", "eps: 0"]),
    (
        "PriorBox",
        "prior_box_param",
        &["min_size", "max_size", "aspect_ratio", "variance", "img_size", "img_h", "img_w", "step", "offset"],
        &["flip: false", "clip: true", "step_h: 0.5 step_w: 3"],
    ),
    (
        "DetectionOutput",
        "detection_output_param",
        &["num_classes", "background_label_id", "keep_top_k", "confidence_threshold"],
        &[
            "code_type: CENTER_SIZE",
            "code_type: CORNER_SIZE",
            "share_location: false",
            "variance_encoded_in_target: true",
            "nms_param { nms_threshold: 0.5 top_k: 3 eta: 0.5 }",
        ],
    ),
];

#[derive(Arbitrary, Debug)]
struct Layer {
    kind: u8,
    bottoms: Vec<u8>,
    tops: u8,
    in_place: bool,
    ints: Vec<(u8, i16)>,
    words: Vec<u8>,
    shared_param: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct FuzzNet {
    shape: Vec<u8>,
    second_input: Option<[u8; 2]>,
    layers: Vec<Layer>,
    train: bool,
}

fn prototxt(n: &FuzzNet) -> String {
    // Any rank from 0 to 5 (4 most often, as in real nets), each dim 0 to 6.
    let dims: String = n.shape.iter().take(5).map(|&d| format!(" dim: {}", d % 7)).collect();
    let dims = if n.shape.is_empty() { " dim: 2 dim: 3 dim: 4 dim: 4".to_string() } else { dims };
    let mut s = format!("layer {{ name: \"in\" type: \"Input\" top: \"b0\" input_param {{ shape {{{dims} }} }} }}\n");
    let mut blobs = vec!["b0".to_string()];
    if let Some([a, b]) = n.second_input {
        s.push_str(&format!(
            "layer {{ name: \"in2\" type: \"Input\" top: \"b1\" input_param {{ shape {{ dim: {} dim: {} }} }} }}\n",
            a % 5,
            b % 5
        ));
        blobs.push("b1".to_string());
    }
    for (i, l) in n.layers.iter().take(8).enumerate() {
        let (ty, param, fields, words) = TYPES[l.kind as usize % TYPES.len()];
        let bottoms: Vec<String> = l
            .bottoms
            .iter()
            .take(3)
            .map(|&b| if b == 255 { "nobody".to_string() } else { blobs[b as usize % blobs.len()].clone() })
            .collect();
        let mut text = format!("layer {{ name: \"l{i}\" type: \"{ty}\"");
        for b in &bottoms {
            text.push_str(&format!(" bottom: \"{b}\""));
        }
        let tops = (l.tops % 3) as usize;
        let mut new_tops = Vec::new();
        for k in 0..tops {
            let t = if l.in_place && k == 0 && !bottoms.is_empty() { bottoms[0].clone() } else { format!("t{i}_{k}") };
            text.push_str(&format!(" top: \"{t}\""));
            new_tops.push(t);
        }
        if let Some(p) = l.shared_param {
            text.push_str(&format!(" param {{ name: \"shared{}\" }}", p % 2));
        }
        let mut body = String::new();
        for &(f, v) in l.ints.iter().take(4) {
            if fields.is_empty() {
                break;
            }
            let field = fields[f as usize % fields.len()];
            let signed = matches!(field, "axis" | "end_axis" | "num_axes" | "coeff" | "ignore_label");
            body.push_str(&format!(" {field}: {}", if signed { i32::from(v % 6) } else { i32::from(v).abs() % 70000 }));
        }
        for &w in l.words.iter().take(2) {
            if let Some(word) = words.get(w as usize % (words.len() + 1)) {
                body.push_str(&format!(" {word}"));
            }
        }
        if !body.is_empty() {
            text.push_str(&format!(" {param} {{{body} }}"));
        }
        text.push_str(" }\n");
        s.push_str(&text);
        blobs.extend(new_tops);
    }
    s
}

fuzz_target!(|n: FuzzNet| {
    let text = prototxt(&n);
    // To replay an input: CAFFE_TCH_FUZZ_PRINT=1 prints the net it builds.
    if std::env::var_os("CAFFE_TCH_FUZZ_PRINT").is_some() {
        eprintln!("{text}");
    }
    let Ok(parsed) = parse_str::<NetParameter>(&text, "fuzz.prototxt", TextOptions::default()) else { return };
    let phase = if n.train { Phase::Train } else { Phase::Test };
    let state = NetState { phase: Some(phase as i32), ..Default::default() };
    // Keep a fuzzed net small: the point is errors, not memory.
    caffe_tch::util::limits::set_max_memory(64 << 20);
    let Ok(mut net) = Net::new(&parsed.message, &state, NetSource::new("fuzz.prototxt"), tch::Device::Cpu) else {
        return;
    };
    // Errors are fine answers; only panics and aborts are bugs.
    if net.forward().is_ok() && n.train {
        let _backward = net.backward();
    }
    // A TEST net also runs the forward without autograd, whose kernels differ
    // (packed convolution weights, oneDNN's inner product).
    if !n.train {
        let _inference = net.forward_inference();
    }
});
