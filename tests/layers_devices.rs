//! Every layer type that computes something gives the CPU's tops and gradients
//! on the test device (`CAFFE_TCH_TEST_DEVICE=cuda`; `scripts/gpu_check.sh`
//! runs this there). Without a GPU the device is the CPU too, which still runs
//! each case (and says so on a NOTE line), and a test checks that every
//! registered type has a case here, so a new layer cannot skip the CUDA check.
use std::collections::BTreeSet;

use caffe_tch::layers::{create_layer, gradcheck, Ctx, Shape, REGISTRY};
use caffe_tch::proto::caffe::Phase;
use tch::{Device, Kind, Tensor};

use crate::common::layer::{lp, randn_f32};
use crate::common::{assert_close, note, rng_exclusive, test_device};

/// Layers that read or write data outside the net, or only declare inputs:
/// there is nothing of theirs to compute on a device.
const DATA_SOURCES: &[&str] = &[
    "AnnotatedData",
    "Data",
    "DummyData",
    "HDF5Data",
    "HDF5Output",
    "MatWrite",
    "ImageData",
    "ImageSegData",
    "Input",
    "MemoryData",
    "WindowData",
];

/// f32 on both devices; cuDNN and oneDNN sum in different orders.
const TOLERANCE: f64 = 1e-4;
/// For layers that only move, select or add values (no long sums).
const TIGHT: f64 = 1e-5;

/// Uniform in [lo, hi): positive inputs (Log, probabilities) and parameters
/// (BatchNorm's variance and scale factor must be positive).
fn uniform(shape: &[i64], lo: f64, hi: f64, seed: i64) -> Tensor {
    let _rng = gradcheck::rng_lock();
    tch::manual_seed(seed);
    Tensor::rand(shape, (Kind::Float, Device::Cpu)) * (hi - lo) + lo
}

fn t(values: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values).reshape(shape)
}

struct Case {
    text: String,
    bottoms: Vec<Tensor>,
    /// The bottoms whose gradients are compared.
    grad_bottoms: Vec<usize>,
    /// Whether the parameters' gradients are compared.
    param_grads: bool,
    phase: Phase,
    iteration: i64,
    tolerance: f64,
}

fn case(text: &str, bottoms: Vec<Tensor>, grad_bottoms: &[usize]) -> Case {
    Case {
        text: text.to_string(),
        bottoms,
        grad_bottoms: grad_bottoms.to_vec(),
        param_grads: true,
        phase: Phase::Train,
        iteration: i64::MAX,
        tolerance: TOLERANCE,
    }
}

fn tight(mut c: Case) -> Case {
    c.tolerance = TIGHT;
    c
}

fn in_test(mut c: Case) -> Case {
    c.phase = Phase::Test;
    c
}

/// BatchNorm's blobs are statistics, never learned: libtorch's batch_norm
/// refuses running statistics that require a gradient.
fn statistics_params(mut c: Case) -> Case {
    c.param_grads = false;
    c
}

fn cases() -> Vec<Case> {
    let x4 = || randn_f32(&[2, 4, 5, 5], 1);
    let x3 = || randn_f32(&[2, 3, 4], 2);
    let scores = || randn_f32(&[6, 4], 3);
    let labels = || t(&[0., 3., 1., 2., 2., 0.], &[6]);
    let probs = || uniform(&[6, 4], 0.05, 1.0, 4);
    let small = |seed| randn_f32(&[4, 3, 2], seed);
    let mut dropin = case(
        r#"type: "DropIn" dropin_param { dropin_length: 1000 dropin_start: 100 }"#,
        vec![x4(), randn_f32(&[2, 4, 5, 5], 5)],
        &[0, 1],
    );
    dropin.iteration = 600;
    vec![
        // Activations.
        case(r#"type: "AbsVal""#, vec![x3()], &[0]),
        case(r#"type: "BNLL""#, vec![x3()], &[0]),
        case(r#"type: "Clip" clip_param { min: -0.5 max: 0.7 }"#, vec![x3()], &[0]),
        case(r#"type: "ReLU6""#, vec![x3() * 8.0], &[0]),
        case(r#"type: "Axpy""#, vec![randn_f32(&[2, 4, 1, 1], 32), x4(), x4() * 2.0], &[0, 1, 2]),
        case(r#"type: "ELU" elu_param { alpha: 0.5 }"#, vec![x3()], &[0]),
        case(r#"type: "Exp" exp_param { base: 2 scale: 0.5 shift: 0.1 }"#, vec![x3()], &[0]),
        case(r#"type: "Log" log_param { base: 10 scale: 2 shift: 0.5 }"#, vec![uniform(&[2, 3, 4], 0.1, 2.0, 6)], &[0]),
        case(r#"type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }"#, vec![x3()], &[0]),
        case(r#"type: "PReLU""#, vec![x4()], &[0]),
        case(r#"type: "ReLU" relu_param { negative_slope: 0.1 }"#, vec![x3()], &[0]),
        case(r#"type: "Sigmoid""#, vec![x3()], &[0]),
        case(r#"type: "Swish" swish_param { beta: 1.5 }"#, vec![x3()], &[0]),
        case(r#"type: "TanH""#, vec![x3()], &[0]),
        case(r#"type: "Threshold" threshold_param { threshold: 0.2 }"#, vec![x3()], &[]),
        in_test(case(r#"type: "Dropout" dropout_param { dropout_ratio: 0.3 }"#, vec![x3()], &[0])),
        case(r#"type: "SeLu""#, vec![x3()], &[0]),
        in_test(case(r#"type: "SeLuDropout" selu_dropout_param { dropout_ratio: 0.3 }"#, vec![x3()], &[0])),
        // Vision.
        case(
            r#"type: "Convolution" convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 group: 2 }"#,
            vec![x4()],
            &[0],
        ),
        case(
            r#"type: "Convolution" convolution_param { num_output: 3 kernel_h: 3 kernel_w: 2 dilation: 2 }"#,
            vec![x4()],
            &[0],
        ),
        // One input channel: the channels-last strides without a copy.
        case(
            r#"type: "Convolution" convolution_param { num_output: 5 kernel_size: 3 }"#,
            vec![randn_f32(&[2, 1, 6, 6], 7)],
            &[0],
        ),
        case(
            r#"type: "Deconvolution" convolution_param { num_output: 3 kernel_size: 3 stride: 2 pad: 1 }"#,
            vec![x4()],
            &[0],
        ),
        case(r#"type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }"#, vec![x4()], &[0]),
        case(r#"type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }"#, vec![x4()], &[0]),
        case(r#"type: "Pooling" pooling_param { pool: AVE global_pooling: true }"#, vec![x4()], &[0]),
        in_test(case(
            r#"type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }"#,
            vec![uniform(&[2, 4, 5, 5], 0.1, 1.0, 8)],
            &[0],
        )),
        case(r#"type: "SPP" spp_param { pyramid_height: 2 pool: MAX }"#, vec![x4()], &[0]),
        case(r#"type: "LRN" lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 }"#, vec![x4()], &[0]),
        case(r#"type: "LRN" lrn_param { local_size: 3 alpha: 0.1 norm_region: WITHIN_CHANNEL }"#, vec![x4()], &[0]),
        case(r#"type: "Im2col" convolution_param { kernel_size: 2 stride: 1 pad: 1 }"#, vec![x4()], &[0]),
        case(r#"type: "Crop" crop_param { axis: 2 offset: 1 }"#, vec![x4(), randn_f32(&[2, 4, 3, 3], 9)], &[0]),
        // Normalization.
        statistics_params(case(r#"type: "BatchNorm""#, vec![x4()], &[0])),
        statistics_params(in_test(case(r#"type: "BatchNorm" batch_norm_param { eps: 0.001 }"#, vec![x4()], &[0]))),
        case(r#"type: "MVN""#, vec![x4()], &[0]),
        case(r#"type: "MVN" mvn_param { across_channels: true }"#, vec![x4()], &[0]),
        // Losses and metrics.
        case(r#"type: "Accuracy" accuracy_param { top_k: 2 }"#, vec![scores(), labels()], &[]),
        case(
            r#"type: "SegAccuracy" seg_accuracy_param { ignore_label: 2 }"#,
            vec![randn_f32(&[2, 3, 4, 5], 21), t(&(0..40).map(|k| (k % 3) as f32).collect::<Vec<_>>(), &[2, 1, 4, 5])],
            &[],
        ),
        case(
            r#"type: "ContrastiveLoss" contrastive_loss_param { margin: 1.5 }"#,
            vec![randn_f32(&[6, 3], 10), randn_f32(&[6, 3], 11), t(&[1., 0., 1., 0., 0., 1.], &[6, 1, 1, 1])],
            &[0, 1],
        ),
        case(r#"type: "EuclideanLoss""#, vec![scores(), randn_f32(&[6, 4], 12)], &[0, 1]),
        case(r#"type: "HingeLoss" hinge_loss_param { norm: L2 }"#, vec![scores(), labels()], &[0]),
        case(r#"type: "InfogainLoss""#, vec![scores(), labels(), uniform(&[4, 4], 0.0, 1.0, 13)], &[0]),
        case(r#"type: "MultinomialLogisticLoss""#, vec![probs(), labels()], &[0]),
        case(r#"type: "SigmoidCrossEntropyLoss""#, vec![scores(), uniform(&[6, 4], 0.0, 1.0, 14).round()], &[0]),
        case(r#"type: "SoftmaxWithLoss" loss_param { ignore_label: 2 }"#, vec![scores(), labels()], &[0]),
        // Utility.
        case(r#"type: "InnerProduct" inner_product_param { num_output: 5 }"#, vec![x4()], &[0]),
        case(r#"type: "InnerProduct" inner_product_param { num_output: 5 transpose: true axis: 2 }"#, vec![x3()], &[0]),
        case(r#"type: "Embed" embed_param { num_output: 3 input_dim: 4 }"#, vec![labels()], &[]),
        case(r#"type: "Bias" bias_param { axis: 1 num_axes: 1 }"#, vec![x4()], &[0]),
        case(r#"type: "Scale" scale_param { bias_term: true }"#, vec![x4()], &[0]),
        case(r#"type: "Scale" scale_param { axis: 0 }"#, vec![x3(), randn_f32(&[2, 3], 15)], &[0, 1]),
        case(
            r#"type: "Eltwise" eltwise_param { operation: SUM coeff: 0.5 coeff: -2 }"#,
            vec![x3(), randn_f32(&[2, 3, 4], 16)],
            &[0, 1],
        ),
        case(r#"type: "Eltwise" eltwise_param { operation: PROD }"#, vec![x3(), randn_f32(&[2, 3, 4], 16)], &[0, 1]),
        case(r#"type: "Eltwise" eltwise_param { operation: MAX }"#, vec![x3(), randn_f32(&[2, 3, 4], 16)], &[0, 1]),
        case(r#"type: "Concat" concat_param { axis: 1 }"#, vec![x4(), randn_f32(&[2, 2, 5, 5], 17)], &[0, 1]),
        case(r#"type: "Slice" top: "a" top: "b" slice_param { axis: 1 slice_point: 1 }"#, vec![x4()], &[0]),
        case(r#"type: "Split" top: "a" top: "b""#, vec![x3()], &[0]),
        case(r#"type: "Flatten""#, vec![x4()], &[0]),
        case(r#"type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 5 } }"#, vec![x4()], &[0]),
        case(r#"type: "Softmax""#, vec![x4()], &[0]),
        case(r#"type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }"#, vec![x3()], &[]),
        case(r#"type: "Reduction" reduction_param { operation: SUMSQ axis: 1 coeff: 0.5 }"#, vec![x3()], &[0]),
        case(r#"type: "Silence""#, vec![x3()], &[]),
        case(r#"type: "Filter""#, vec![x3(), t(&[0., 2.], &[2])], &[0]),
        case(r#"type: "BatchReindex""#, vec![x3(), t(&[1., 0., 1.], &[3])], &[0]),
        case(r#"type: "Tile" tile_param { axis: 1 tiles: 3 }"#, vec![x3()], &[0]),
        case(r#"type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }"#, vec![], &[]),
        // More forms of the utility layers, at the tighter bound.
        tight(case(
            r#"type: "Embed" embed_param { num_output: 2 input_dim: 3 }"#,
            vec![t(&[2., 0., 1., 2.], &[2, 2])],
            &[],
        )),
        tight(case(
            r#"type: "Scale" scale_param { axis: 0 bias_term: true }"#,
            vec![small(40), randn_f32(&[4, 3], 44)],
            &[0, 1],
        )),
        tight(case(r#"type: "Bias" bias_param { num_axes: -1 }"#, vec![small(40)], &[0])),
        tight(case(
            r#"type: "Eltwise" eltwise_param { operation: MAX }"#,
            vec![small(40), small(41), small(40).abs()],
            &[0, 1, 2],
        )),
        tight(case(r#"type: "Eltwise" eltwise_param { operation: PROD }"#, vec![small(40), small(41)], &[0, 1])),
        tight(case(r#"type: "Softmax" softmax_param { axis: 2 }"#, vec![small(40)], &[0])),
        tight(case(r#"type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }"#, vec![small(40)], &[0])),
        tight(case(r#"type: "ArgMax" argmax_param { axis: 1 }"#, vec![small(40)], &[0])),
        tight(case(r#"type: "Reduction" reduction_param { operation: ASUM axis: 1 }"#, vec![small(40)], &[0])),
        tight(case(r#"type: "Concat" concat_param { axis: 2 }"#, vec![small(40), small(41)], &[0, 1])),
        tight(case(r#"type: "Slice" top: "a" top: "b" slice_param { slice_point: 1 }"#, vec![small(40)], &[0])),
        tight(case(r#"type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }"#, vec![small(40)], &[0])),
        tight(case(r#"type: "Flatten""#, vec![small(40)], &[0])),
        tight(case(r#"type: "Tile" tile_param { axis: 1 tiles: 3 }"#, vec![small(40)], &[0])),
        tight(case(r#"type: "Filter""#, vec![small(40), t(&[1., 0., 0., 3.], &[4])], &[0])),
        tight(case(r#"type: "BatchReindex""#, vec![small(40), t(&[3., 0., 3., 1., 2.], &[5])], &[0])),
        tight(case(r#"type: "Parameter" parameter_param { shape { dim: 2 } }"#, vec![], &[])),
        // Recurrent: x is T×N×D, cont is T×N (0 starts a sequence).
        case(
            r#"type: "RNN" recurrent_param { num_output: 4 }"#,
            vec![randn_f32(&[3, 2, 5], 18), t(&[0., 0., 1., 1., 1., 0.], &[3, 2])],
            &[0],
        ),
        case(
            r#"type: "LSTM" recurrent_param { num_output: 4 }"#,
            vec![randn_f32(&[3, 2, 5], 19), t(&[0., 0., 1., 1., 1., 0.], &[3, 2])],
            &[0],
        ),
        case(
            r#"type: "LSTMUnit""#,
            vec![randn_f32(&[1, 2, 3], 20), randn_f32(&[1, 2, 12], 21), t(&[1., 0.], &[1, 2])],
            &[0, 1],
        ),
        // The paper's layers.
        dropin,
        case(r#"type: "Resize" resize_param { height: 7 width: 3 channels: 6 }"#, vec![x4()], &[0]),
        case(r#"type: "Resize" resize_param { height: 3 interpolation: NEAREST }"#, vec![x4()], &[0]),
        // Other forks' layers.
        case(
            r#"type: "BN" bn_param { scale_filler { type: "gaussian" } shift_filler { type: "gaussian" } }"#,
            vec![x4()],
            &[0],
        ),
        case(r#"type: "BN" bn_param { bn_mode: INFERENCE scale_filler { type: "gaussian" } }"#, vec![x4()], &[0]),
        case(r#"type: "BN" bn_param { momentum: 0.9 slope_filler { type: "gaussian" } }"#, vec![x4()], &[0]),
        case(r#"type: "BN" bn_param { frozen: true slope_filler { type: "gaussian" } }"#, vec![x4()], &[0]),
        case(
            r#"type: "DepthwiseConvolution" convolution_param { num_output: 4 group: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" } }"#,
            vec![x4()],
            &[0],
        ),
        case(
            r#"type: "ConvolutionDepthwise" convolution_param { kernel_size: 3 stride: 2 weight_filler { type: "gaussian" } }"#,
            vec![x4()],
            &[0],
        ),
        case(
            r#"type: "SmoothL1Loss" smooth_l1_loss_param { sigma: 2 }"#,
            vec![
                randn_f32(&[2, 8], 28),
                randn_f32(&[2, 8], 29),
                uniform(&[2, 8], 0.0, 1.0, 30),
                uniform(&[2, 8], 0.0, 1.0, 31),
            ],
            &[0, 1],
        ),
        case(
            r#"type: "MultiBoxLoss" multibox_loss_param { num_classes: 3 code_type: CENTER_SIZE neg_pos_ratio: 1 }"#,
            vec![
                randn_f32(&[2, 16], 32) * 0.3,
                randn_f32(&[2, 12], 33),
                t(
                    &[
                        0., 0., 0.5, 0.5, 0.5, 0., 1., 0.5, 0., 0.5, 0.5, 1., 0.5, 0.5, 1., 1., 0.1, 0.1, 0.2, 0.2,
                        0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2,
                    ],
                    &[1, 2, 16],
                ),
                t(&[0., 1., 0., 0.05, 0.05, 0.45, 0.5, 0., 1., 2., 0., 0.4, 0.5, 0.9, 0.95, 0.], &[1, 1, 2, 8]),
            ],
            &[0, 1],
        ),
        case(
            r#"type: "DetectionEvaluate" detection_evaluate_param { num_classes: 3 }"#,
            vec![
                t(&[0., 1., 0.9, 0.1, 0.1, 0.4, 0.4, 0., 2., 0.6, 0.5, 0.5, 0.9, 0.8], &[1, 1, 2, 7]),
                t(&[0., 1., 0., 0.1, 0.1, 0.4, 0.45, 0.], &[1, 1, 1, 8]),
            ],
            &[],
        ),
        case(
            r#"type: "Yolov3DetectionOutput" yolov3_detection_output_param { num_classes: 2 num_box: 1 biases: 16 biases: 32 anchors_scale: 8 mask_group_num: 1 mask: 0 confidence_threshold: 0.3 }"#,
            vec![randn_f32(&[2, 7, 3, 3], 34)],
            &[],
        ),
        case(
            r#"type: "YoloDetectionOutput" yolo_detection_output_param { num_classes: 2 num_box: 1 biases: 1 biases: 2 confidence_threshold: 0.3 }"#,
            vec![randn_f32(&[2, 7, 3, 3], 35)],
            &[],
        ),
        case(r#"type: "Interp" interp_param { zoom_factor: 3 pad_beg: -1 }"#, vec![x4()], &[0]),
        case(r#"type: "Interp" interp_param { height: 3 width: 8 }"#, vec![x4()], &[0]),
        case(r#"type: "Upsample" upsample_param { scale: 2 }"#, vec![x4()], &[0]),
        case(
            r#"type: "Upsample" upsample_param { scale: 2 }"#,
            vec![randn_f32(&[1, 2, 2, 2], 25), t(&[0., 5., 10., 15., 1., 4., 11., 14.], &[1, 2, 2, 2])],
            &[0],
        ),
        case(
            r#"type: "Pooling" top: "p" top: "mask" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }"#,
            vec![x4()],
            &[0],
        ),
        case(
            r#"type: "Pooling" top: "p" top: "mask" pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 2 }"#,
            vec![x4()],
            &[0],
        ),
        case(r#"type: "ShuffleChannel" shuffle_channel_param { group: 2 }"#, vec![x4()], &[0]),
        // No gradient passes through Reorg (as in its fork).
        case(r#"type: "Reorg" reorg_param { stride: 2 }"#, vec![randn_f32(&[2, 8, 4, 6], 9)], &[]),
        case(
            r#"type: "ROIPooling" roi_pooling_param { pooled_h: 2 pooled_w: 3 spatial_scale: 0.5 }"#,
            vec![x4(), t(&[0., 0., 0., 7., 9., 1., 2., 1., 9., 6., 1., -4., -4., 3., 3.], &[3, 5])],
            &[0],
        ),
        case(
            r#"type: "Proposal" top: "rois" top: "scores" proposal_param { feat_stride: 4 min_size: 1 post_nms_topn: 10 }"#,
            vec![
                uniform(&[1, 18, 3, 4], 0.0, 1.0, 26),
                randn_f32(&[1, 36, 3, 4], 27) * 0.2,
                t(&[12., 16., 1.], &[1, 3]),
            ],
            &[],
        ),
        case(
            r#"type: "PSROIPooling" psroi_pooling_param { spatial_scale: 0.5 output_dim: 1 group_size: 2 }"#,
            vec![x4(), t(&[0., 0., 0., 7., 9., 1., 2., 1., 9., 6., 1., -4., -4., 3., 3.], &[3, 5])],
            &[0],
        ),
        // The SSD fork's layers.
        case(r#"type: "Permute" permute_param { order: 0 order: 2 order: 3 order: 1 }"#, vec![x4()], &[0]),
        case(r#"type: "Normalize" norm_param { across_spatial: false channel_shared: false }"#, vec![x4()], &[0]),
        case(r#"type: "Normalize""#, vec![x4()], &[0]),
        case(
            r#"type: "PriorBox" prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }"#,
            vec![x4(), randn_f32(&[2, 3, 20, 20], 22)],
            &[],
        ),
        case(
            r#"type: "DetectionOutput" detection_output_param { num_classes: 3 code_type: CENTER_SIZE keep_top_k: 5 nms_param { nms_threshold: 0.5 } }"#,
            vec![
                randn_f32(&[2, 8], 23) * 0.1,
                uniform(&[2, 6], 0.0, 1.0, 24),
                t(&[0.1, 0.1, 0.5, 0.5, 0.3, 0.2, 0.9, 0.7, 0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2], &[1, 2, 8]),
            ],
            &[],
        ),
    ]
}

/// Forward, then the gradients of Σ top·w (w fixed) for the case's bottoms and
/// the layer's parameters, on `device`; results come back on the CPU.
fn forward_backward_on(device: Device, c: &Case, params: &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>) {
    // A copy, so that a layer that updates a blob in place (BatchNorm's
    // running statistics) leaves the caller's tensor alone.
    let to_dev = |x: &Tensor, grad: bool| x.to_device(device).detach().copy().set_requires_grad(grad);
    let b: Vec<Tensor> = c.bottoms.iter().enumerate().map(|(i, x)| to_dev(x, c.grad_bottoms.contains(&i))).collect();
    let p: Vec<Tensor> = params.iter().map(|x| to_dev(x, c.param_grads)).collect();
    let mut layer = create_layer(&lp(&c.text)).unwrap_or_else(|e| panic!("{}: {}", c.text, e));
    layer.setup(&b.iter().map(|x| x.size()).collect::<Vec<_>>()).unwrap_or_else(|e| panic!("{}: {}", c.text, e));
    let ctx = Ctx { phase: c.phase, iteration: c.iteration, device };
    let tops = layer.forward(&ctx, &b, &p).unwrap_or_else(|e| panic!("{} on {device:?}: {}", c.text, e));
    let objective = tops.iter().filter(|top| top.is_floating_point()).fold(
        Tensor::zeros([], (Kind::Float, device)),
        |objective, top| {
            let w =
                (Tensor::arange(top.numel() as i64, (Kind::Float, device)).remainder(7.0) - 3.0).reshape(top.size());
            objective + (top.to_kind(Kind::Float) * w).sum(Kind::Float)
        },
    );
    let inputs: Vec<Tensor> = c
        .grad_bottoms
        .iter()
        .map(|&i| b[i].shallow_clone())
        .chain(p.iter().filter(|_| c.param_grads).map(|x| x.shallow_clone()))
        .collect();
    let grads = if objective.requires_grad() && !inputs.is_empty() {
        Tensor::run_backward(&[&objective], &inputs, false, false)
            .into_iter()
            .zip(&inputs)
            .map(|(g, x)| if g.defined() { g } else { x.zeros_like() })
            .collect()
    } else {
        vec![]
    };
    let on_cpu = |v: Vec<Tensor>| v.into_iter().map(|x| x.detach().to_device(Device::Cpu)).collect::<Vec<_>>();
    (on_cpu(tops), on_cpu(grads))
}

/// The layer's parameters, drawn once on the CPU so both devices get the same.
fn params_for(c: &Case, seed: i64) -> Vec<Tensor> {
    let mut layer = create_layer(&lp(&c.text)).unwrap_or_else(|e| panic!("{}: {}", c.text, e));
    let shapes: Vec<Shape> = c.bottoms.iter().map(|x| x.size()).collect();
    let setup = layer.setup(&shapes).unwrap_or_else(|e| panic!("{}: {}", c.text, e));
    setup.params.iter().enumerate().map(|(i, d)| uniform(&d.shape, 0.5, 1.5, seed * 10 + i as i64)).collect()
}

#[test]
fn every_layer_gives_the_cpus_results_on_the_test_device() {
    let _rng = rng_exclusive();
    let device = test_device();
    let cases = cases();
    for (n, c) in cases.iter().enumerate() {
        let params = params_for(c, 100 + n as i64);
        let (cpu_tops, cpu_grads) = forward_backward_on(Device::Cpu, c, &params);
        let (tops, grads) = forward_backward_on(device, c, &params);
        assert_eq!(tops.len(), cpu_tops.len(), "{}", c.text);
        assert_eq!(grads.len(), cpu_grads.len(), "{}", c.text);
        for (i, (a, b)) in tops.iter().zip(&cpu_tops).enumerate() {
            let what = format!("{} on {device:?}: top {i}", c.text);
            assert_close(&what, &a.to_kind(Kind::Double), &b.to_kind(Kind::Double), c.tolerance);
        }
        for (i, (a, b)) in grads.iter().zip(&cpu_grads).enumerate() {
            assert_close(&format!("{} on {device:?}: gradient {i}", c.text), a, b, c.tolerance);
        }
    }
    println!("{} cases, {} layer types: {device:?} matches the CPU", cases.len(), case_types(&cases).len());
    if !device.is_cuda() {
        // Not a skip (CI machines have no GPU), but not a device check either.
        note(&format!(
            "layers_devices: no CUDA device: compared the CPU with itself ({} cases); \
             scripts/gpu_check.sh runs them on CUDA (CAFFE_TCH_TEST_DEVICE=cuda)",
            cases.len()
        ));
    }
}

fn case_types(cases: &[Case]) -> BTreeSet<String> {
    cases.iter().map(|c| lp(&c.text).r#type().to_string()).collect()
}

#[test]
fn every_registered_layer_type_has_a_device_case() {
    let _rng = rng_exclusive();
    let registered: BTreeSet<String> =
        REGISTRY.iter().map(|i| i.type_name.to_string()).filter(|t| !DATA_SOURCES.contains(&t.as_str())).collect();
    let covered = case_types(&cases());
    let missing: Vec<_> = registered.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&registered).collect();
    assert!(missing.is_empty(), "layer types with no device case in tests/layers_devices.rs: {missing:?}");
    assert!(unknown.is_empty(), "cases for unregistered types: {unknown:?}");
}
