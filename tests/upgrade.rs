//! Legacy net/solver upgrades checked against real Caffe.
//!
//! - `tests/fixtures/upgrade/*.in.prototxt` are V0/V1 nets from Caffe's history
//!   and `*.caffe-upgraded.prototxt` what Caffe's `upgrade_net_proto_text` wrote
//!   for each (from /work/shared/caffe-ref/upgrade).
//! - `tests/fixtures/upgrade/caffe_unit/` holds the prototxt data of Caffe's own
//!   upgrade unit tests (inputs and the outputs Caffe's tests expect).
use std::path::{Path, PathBuf};

use caffe_tch::proto::caffe::{
    self, v1_layer_parameter, LayerParameter, NetParameter, ParamSpec, SolverParameter, V1LayerParameter,
};
use caffe_tch::proto::upgrade::{self, *};
use caffe_tch::proto::{print, text};
use caffe_tch::Error;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_net(txt: &str, file: &str) -> NetParameter {
    text::parse_str::<NetParameter>(txt, file, text::TextOptions::default())
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .message
}

fn parse_solver(txt: &str) -> SolverParameter {
    text::parse_str::<SolverParameter>(txt, "solver.prototxt", text::TextOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .message
}

fn read_net(path: &Path) -> NetParameter {
    parse_net(&read(path), &path.display().to_string())
}

fn upgraded(mut net: NetParameter, file: &str) -> (NetParameter, UpgradeReport) {
    let report = upgrade_net(&mut net, file).unwrap_or_else(|e| panic!("{file}: {e}"));
    (net, report)
}

/// Golden pairs and the steps each needs.
const GOLDEN: &[(&str, &[&str])] = &[
    ("bvlc_v0__imagenet_deploy", &[STEP_V0_TO_V1, STEP_V1_TO_V2, STEP_INPUT]),
    ("bvlc_v0__lenet_train", &[STEP_V0_TO_V1, STEP_V1_TO_V2]),
    ("bvlc_v0__pascal_finetune_train", &[STEP_V0_TO_V1, STEP_V1_TO_V2]),
    ("bvlc_v1__caffenet_train_val", &[STEP_V1_TO_V2]),
    ("bvlc_v1__mnist_autoencoder", &[STEP_V1_TO_V2]),
    ("bvlc_v1__mnist_lenet_train_test", &[STEP_V1_TO_V2]),
    ("bvlc_v1__siamese_train_test", &[STEP_DATA_TRANSFORM, STEP_V1_TO_V2]),
];

#[test]
fn golden_upgrades_equal_caffes() {
    for (name, steps) in GOLDEN {
        let input = fixture_dir().join(format!("{name}.in.prototxt"));
        let expected = read_net(&fixture_dir().join(format!("{name}.caffe-upgraded.prototxt")));
        let before = read_net(&input);
        assert!(net_needs_upgrade(&before), "{name}");
        let (net, report) = upgraded(before, &input.display().to_string());
        assert_eq!(net, expected, "{name}: upgraded message differs from Caffe's");
        assert_eq!(&report.steps[..], *steps, "{name}");
        assert!(report.warnings.is_empty(), "{name}: {:?}", report.warnings);
        assert!(!net_needs_upgrade(&net), "{name}");
    }
}

#[test]
fn golden_upgrades_print_as_caffe_wrote_them() {
    for (name, _) in GOLDEN {
        let input = fixture_dir().join(format!("{name}.in.prototxt"));
        let expected_text = read(&fixture_dir().join(format!("{name}.caffe-upgraded.prototxt")));
        let (net, _) = upgraded(read_net(&input), name);
        let printed = print::to_text(&net);
        if printed != expected_text {
            let line = printed
                .lines()
                .zip(expected_text.lines())
                .position(|(a, b)| a != b)
                .map(|i| i + 1)
                .unwrap_or(printed.lines().count().min(expected_text.lines().count()) + 1);
            panic!("{name}: printed upgrade differs from Caffe's text, first at line {line}\n--- ours ---\n{printed}");
        }
    }
}

#[test]
fn golden_upgrades_are_idempotent() {
    for (name, _) in GOLDEN {
        let input = fixture_dir().join(format!("{name}.in.prototxt"));
        let (once, _) = upgraded(read_net(&input), name);
        let (twice, report) = upgraded(once.clone(), name);
        assert!(report.is_noop(), "{name}: second upgrade did {:?}", report.steps);
        assert_eq!(once, twice, "{name}");
        // Caffe's own upgraded files are current already.
        let expected = read_net(&fixture_dir().join(format!("{name}.caffe-upgraded.prototxt")));
        let (again, report) = upgraded(expected.clone(), name);
        assert!(report.is_noop(), "{name}");
        assert_eq!(again, expected);
    }
}

// --- Caffe's own unit-test data -----------------------------------------------

fn unit(name: &str) -> NetParameter {
    read_net(&fixture_dir().join("caffe_unit").join(format!("{name}.prototxt")))
}

#[test]
fn caffe_unit_padding_layers() {
    for test in ["TestSimple", "TestTwoTops", "TestImageNet"] {
        let input = unit(&format!("PaddingLayerUpgradeTest_{test}__input_proto"));
        let expected = unit(&format!("PaddingLayerUpgradeTest_{test}__expected_output_proto"));
        let out = upgrade_v0_padding_layers(&input, test).unwrap();
        assert_eq!(out, expected, "{test}");
        let again = upgrade_v0_padding_layers(&out, test).unwrap();
        assert_eq!(again, out, "{test}: not idempotent");
    }
}

#[test]
fn caffe_unit_v0_to_v1_to_v2() {
    for test in ["TestSimple", "TestImageNet"] {
        let v0 = unit(&format!("NetUpgradeTest_{test}__v0_proto"));
        let v1 = unit(&format!("NetUpgradeTest_{test}__expected_v1_proto"));
        let v2 = unit(&format!("NetUpgradeTest_{test}__expected_v2_proto"));
        let mut warnings = Vec::new();
        assert_eq!(upgrade_v0_net(&v0, test, &mut warnings).unwrap(), v1, "{test}: V0 -> V1");
        assert!(warnings.is_empty(), "{test}: {warnings:?}");
        let mut got = v1.clone();
        upgrade_v1_net(&mut got, test, &mut warnings).unwrap();
        assert_eq!(got, v2, "{test}: V1 -> V2");
        // The whole pipeline agrees with the two steps (plus the input step).
        let (full, _) = upgraded(v0, test);
        let (v2_current, _) = upgraded(v2, test);
        assert_eq!(full, v2_current, "{test}: full upgrade");
    }
}

#[test]
fn caffe_unit_all_v0_params() {
    let input = unit("NetUpgradeTest_TestAllParams__input_proto");
    let expected = unit("NetUpgradeTest_TestAllParams__expected_output_proto");
    let mut warnings = Vec::new();
    assert_eq!(upgrade_v0_net(&input, "all_params", &mut warnings).unwrap(), expected);
    assert!(warnings.is_empty(), "{warnings:?}");
}

// --- V0 details ------------------------------------------------------------------

const V0_HEAD: &str = r#"
name: "v0"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
"#;

fn v0_net(body: &str) -> NetParameter {
    parse_net(&format!("{V0_HEAD}{body}"), "v0.prototxt")
}

fn expect_layer_error(err: Error, file: &str, layer: &str, needle: &str) {
    let text = err.to_string();
    assert!(text.contains(file), "error does not name the file: {text}");
    assert!(text.contains(&format!("'{layer}'")), "error does not name layer {layer}: {text}");
    assert!(text.contains(needle), "error lacks '{needle}': {text}");
}

#[test]
fn v0_padding_into_pool_sets_pooling_pad() {
    let net = v0_net(
        r#"layers { layer { name: "pad1" type: "padding" pad: 3 } bottom: "data" top: "pad1" }
           layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 } bottom: "pad1" top: "pool1" }"#,
    );
    let (net, _) = upgraded(net, "v0.prototxt");
    let names: Vec<_> = net.layer.iter().map(|l| l.name()).collect();
    assert_eq!(names, ["input", "pool1"]);
    let pool = &net.layer[1];
    assert_eq!(pool.bottom, ["data"]);
    let p = pool.pooling_param.as_ref().unwrap();
    assert_eq!((p.pad, p.kernel_size, p.stride), (Some(3), Some(2), Some(2)));
    assert_eq!(p.pool(), caffe::pooling_parameter::PoolMethod::Ave);
}

#[test]
fn v0_padding_into_relu_is_an_error() {
    let net = v0_net(
        r#"layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" }
           layers { layer { name: "relu1" type: "relu" } bottom: "pad1" top: "relu1" }"#,
    );
    let err = upgrade_net(&mut net.clone(), "nets/v0.prototxt").unwrap_err();
    expect_layer_error(err, "nets/v0.prototxt", "relu1", "padding layer 'pad1'");
}

#[test]
fn v0_error_gives_the_line_from_the_source_map() {
    let txt = format!(
        "{V0_HEAD}layers {{ layer {{ name: \"pad1\" type: \"padding\" pad: 1 }} bottom: \"data\" top: \"pad1\" }}\n\
         layers {{ layer {{ name: \"relu1\" type: \"relu\" }} bottom: \"pad1\" top: \"relu1\" }}\n"
    );
    let parsed = text::parse_str::<NetParameter>(&txt, "located.prototxt", text::TextOptions::default()).unwrap();
    let mut net = parsed.message.clone();
    let err = upgrade_net_located(&mut net, &parsed.source_map).unwrap_err();
    let msg = err.to_string();
    // The relu entry is on line 6 (the head takes lines 1..4 after its leading newline).
    assert!(msg.starts_with("located.prototxt:6"), "{msg}");
    assert!(msg.contains("'relu1'"), "{msg}");
}

#[test]
fn v0_padding_shape_errors() {
    // A padded conv with two bottoms.
    let net = v0_net(
        r#"layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" }
           layers { layer { name: "conv1" type: "conv" num_output: 2 kernelsize: 3 } bottom: "pad1" bottom: "data" top: "c" }"#,
    );
    let err = upgrade_net(&mut net.clone(), "a.prototxt").unwrap_err();
    expect_layer_error(err, "a.prototxt", "conv1", "2 bottoms");
    // A padding layer with two tops.
    let net = v0_net(
        r#"layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" top: "pad2" }
           layers { layer { name: "conv1" type: "conv" num_output: 2 kernelsize: 3 } bottom: "pad1" top: "c" }"#,
    );
    let err = upgrade_net(&mut net.clone(), "b.prototxt").unwrap_err();
    expect_layer_error(err, "b.prototxt", "pad1", "one bottom and one top");
}

#[test]
fn v0_unknown_bottom_is_an_error() {
    let net = v0_net(r#"layers { layer { name: "relu1" type: "relu" } bottom: "nowhere" top: "r" }"#);
    let err = upgrade_net(&mut net.clone(), "c.prototxt").unwrap_err();
    expect_layer_error(err, "c.prototxt", "relu1", "'nowhere'");
}

#[test]
fn v0_unknown_type_is_an_error() {
    let net = v0_net(r#"layers { layer { name: "x" type: "warp_drive" } bottom: "data" top: "x" }"#);
    let err = upgrade_net(&mut net.clone(), "d.prototxt").unwrap_err();
    expect_layer_error(err, "d.prototxt", "x", "unknown V0 layer type 'warp_drive'");
}

#[test]
fn v0_block_beside_v1_fields_is_an_error() {
    let net =
        v0_net(r#"layers { name: "outer" type: RELU layer { name: "relu1" type: "relu" } bottom: "data" top: "r" }"#);
    let err = upgrade_net(&mut net.clone(), "e.prototxt").unwrap_err();
    expect_layer_error(err, "e.prototxt", "relu1", "both a nested V0");
}

#[test]
fn v0_net_with_a_v1_entry_is_an_error() {
    let net = v0_net(
        r#"layers { layer { name: "relu1" type: "relu" } bottom: "data" top: "r" }
           layers { name: "relu2" type: RELU bottom: "r" top: "r2" }"#,
    );
    let err = upgrade_net(&mut net.clone(), "f.prototxt").unwrap_err();
    expect_layer_error(err, "f.prototxt", "relu2", "has none");
}

#[test]
fn v0_misplaced_field_is_dropped_with_a_warning() {
    let net = v0_net(
        r#"layers { layer { name: "relu1" type: "relu" dropout_ratio: 0.3 scale: 2 } bottom: "data" top: "r" }"#,
    );
    let (net, report) = upgraded(net, "g.prototxt");
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("relu1") && report.warnings[0].contains("dropout_ratio"));
    assert!(report.describe().contains("1 problem"), "{}", report.describe());
    let relu = &net.layer[1];
    assert!(relu.dropout_param.is_none());
    // Transformation fields are moved whatever the type, as Caffe does.
    assert_eq!(relu.transform_param.as_ref().unwrap().scale, Some(2.0));
}

#[test]
fn v0_keeps_only_caffes_net_fields() {
    let net = parse_net(
        r#"name: "n" force_backward: true debug_info: true state { phase: TEST }
           layers { layer { name: "d" type: "data" source: "db" batchsize: 4 } top: "data" }"#,
        "h.prototxt",
    );
    let (net, report) = upgraded(net, "h.prototxt");
    assert_eq!(net.name(), "n");
    assert_eq!(net.force_backward, Some(true));
    assert!(net.state.is_none() && net.debug_info.is_none());
    assert_eq!(report.warnings.len(), 1);
    assert!(report.warnings[0].contains("state") && report.warnings[0].contains("debug_info"));
}

// --- data transformation -----------------------------------------------------------

#[test]
fn v1_data_fields_move_to_transform_param() {
    let net = parse_net(
        r#"layers { name: "img" type: IMAGE_DATA top: "a" top: "b"
             image_data_param { source: "list.txt" mean_file: "m.binaryproto" crop_size: 10 mirror: true batch_size: 2 } }
           layers { name: "win" type: WINDOW_DATA top: "c" top: "d" window_data_param { source: "w.txt" scale: 0.5 } }
           layers { name: "db" type: DATA top: "e" top: "f" }"#,
        "i.prototxt",
    );
    assert!(net_needs_data_upgrade(&net));
    let (net, report) = upgraded(net, "i.prototxt");
    assert_eq!(report.steps, [STEP_DATA_TRANSFORM, STEP_V1_TO_V2]);
    let img = &net.layer[0];
    let t = img.transform_param.as_ref().unwrap();
    assert_eq!((t.mean_file.as_deref(), t.crop_size, t.mirror), (Some("m.binaryproto"), Some(10), Some(true)));
    let p = img.image_data_param.as_ref().unwrap();
    assert!(p.mean_file.is_none() && p.crop_size.is_none() && p.mirror.is_none());
    assert_eq!((p.source(), p.batch_size), ("list.txt", Some(2)));
    let win = &net.layer[1];
    assert_eq!(win.transform_param.as_ref().unwrap().scale, Some(0.5));
    assert!(win.window_data_param.as_ref().unwrap().scale.is_none());
    // Caffe's rewrite touches every data layer: both messages end up present.
    let db = &net.layer[2];
    assert_eq!(db.data_param, Some(Default::default()));
    assert_eq!(db.transform_param, Some(Default::default()));
}

// --- V1 details --------------------------------------------------------------------

#[test]
fn v1_param_specs_follow_position() {
    let net = parse_net(
        r#"layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y"
             param: "w" blob_share_mode: PERMISSIVE blob_share_mode: STRICT
             blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 weight_decay: 5
             loss_weight: 0.5
             include { phase: TRAIN } exclude { stage: "x" }
             inner_product_param { num_output: 3 } }"#,
        "j.prototxt",
    );
    let (net, _) = upgraded(net, "j.prototxt");
    let l = &net.layer[0];
    assert_eq!(l.r#type(), "InnerProduct");
    let permissive = caffe::param_spec::DimCheckMode::Permissive as i32;
    let strict = caffe::param_spec::DimCheckMode::Strict as i32;
    assert_eq!(
        l.param,
        [
            ParamSpec {
                name: Some("w".into()),
                share_mode: Some(permissive),
                lr_mult: Some(1.0),
                decay_mult: Some(1.0)
            },
            ParamSpec { name: None, share_mode: Some(strict), lr_mult: Some(2.0), decay_mult: Some(0.0) },
            ParamSpec { name: None, share_mode: None, lr_mult: None, decay_mult: Some(5.0) },
        ]
    );
    assert_eq!(l.loss_weight, [0.5]);
    assert_eq!(l.include.len(), 1);
    assert_eq!(l.exclude.len(), 1);
    assert_eq!(l.inner_product_param.as_ref().unwrap().num_output, Some(3));
}

#[test]
fn v1_every_layer_type_has_a_name() {
    let expected = [
        ("NONE", ""),
        ("ABSVAL", "AbsVal"),
        ("ACCURACY", "Accuracy"),
        ("ARGMAX", "ArgMax"),
        ("BNLL", "BNLL"),
        ("CONCAT", "Concat"),
        ("CONTRASTIVE_LOSS", "ContrastiveLoss"),
        ("CONVOLUTION", "Convolution"),
        ("DECONVOLUTION", "Deconvolution"),
        ("DATA", "Data"),
        ("DROPOUT", "Dropout"),
        ("DUMMY_DATA", "DummyData"),
        ("EUCLIDEAN_LOSS", "EuclideanLoss"),
        ("ELTWISE", "Eltwise"),
        ("EXP", "Exp"),
        ("FLATTEN", "Flatten"),
        ("HDF5_DATA", "HDF5Data"),
        ("HDF5_OUTPUT", "HDF5Output"),
        ("HINGE_LOSS", "HingeLoss"),
        ("IM2COL", "Im2col"),
        ("IMAGE_DATA", "ImageData"),
        ("INFOGAIN_LOSS", "InfogainLoss"),
        ("INNER_PRODUCT", "InnerProduct"),
        ("LRN", "LRN"),
        ("MEMORY_DATA", "MemoryData"),
        ("MULTINOMIAL_LOGISTIC_LOSS", "MultinomialLogisticLoss"),
        ("MVN", "MVN"),
        ("POOLING", "Pooling"),
        ("POWER", "Power"),
        ("RELU", "ReLU"),
        ("SIGMOID", "Sigmoid"),
        ("SIGMOID_CROSS_ENTROPY_LOSS", "SigmoidCrossEntropyLoss"),
        ("SILENCE", "Silence"),
        ("SOFTMAX", "Softmax"),
        ("SOFTMAX_LOSS", "SoftmaxWithLoss"),
        ("SPLIT", "Split"),
        ("SLICE", "Slice"),
        ("TANH", "TanH"),
        ("WINDOW_DATA", "WindowData"),
        ("THRESHOLD", "Threshold"),
    ];
    let mut net = NetParameter::default();
    for (v1, _) in expected {
        let t = v1_layer_parameter::LayerType::from_str_name(v1).unwrap_or_else(|| panic!("{v1}"));
        net.layers.push(V1LayerParameter { name: Some(v1.into()), r#type: Some(t as i32), ..Default::default() });
    }
    let (net, _) = upgraded(net, "types");
    for (layer, (v1, v2)) in net.layer.iter().zip(expected) {
        assert_eq!(layer.r#type.as_deref(), Some(v2), "{v1}");
    }
    // Every value of the enum is covered.
    let mut n = 0;
    for i in 0..64 {
        if v1_layer_parameter::LayerType::try_from(i).is_ok() {
            n += 1;
        }
    }
    assert_eq!(n, expected.len());
}

#[test]
fn v1_untyped_layer_stays_untyped() {
    let mut net = NetParameter::default();
    net.layers.push(V1LayerParameter { name: Some("x".into()), ..Default::default() });
    let (net, _) = upgraded(net, "k");
    assert_eq!(net.layer[0].r#type, None);
}

#[test]
fn v1_bad_enum_values_are_errors() {
    let mut net = NetParameter::default();
    net.layers.push(V1LayerParameter { name: Some("odd".into()), r#type: Some(999), ..Default::default() });
    expect_layer_error(upgrade_net(&mut net, "l.caffemodel").unwrap_err(), "l.caffemodel", "odd", "999");

    let mut net = NetParameter::default();
    net.layers.push(V1LayerParameter {
        name: Some("shared".into()),
        r#type: Some(v1_layer_parameter::LayerType::Convolution as i32),
        blob_share_mode: vec![7],
        ..Default::default()
    });
    expect_layer_error(
        upgrade_net(&mut net, "m.caffemodel").unwrap_err(),
        "m.caffemodel",
        "shared",
        "blob_share_mode 7",
    );
}

#[test]
fn layer_and_layers_together_is_an_error() {
    let mut net = parse_net(
        r#"layer { name: "a" type: "ReLU" bottom: "x" top: "x" }
           layers { name: "b" type: RELU bottom: "x" top: "x" }"#,
        "n.prototxt",
    );
    let err = upgrade_net(&mut net, "n.prototxt").unwrap_err().to_string();
    assert!(err.contains("n.prototxt") && err.contains("both `layer` and legacy `layers`"), "{err}");
}

// --- input fields --------------------------------------------------------------------

#[test]
fn input_shape_becomes_input_layer_first() {
    let net = parse_net(
        r#"name: "x" input: "a" input: "b"
           input_shape { dim: 2 dim: 3 } input_shape { dim: 2 }
           layer { name: "r" type: "ReLU" bottom: "a" top: "r" }"#,
        "o.prototxt",
    );
    let (net, report) = upgraded(net, "o.prototxt");
    assert_eq!(report.steps, [STEP_INPUT]);
    assert!(net.input.is_empty() && net.input_shape.is_empty() && net.input_dim.is_empty());
    let input = &net.layer[0];
    assert_eq!((input.name(), input.r#type()), ("input", "Input"));
    assert_eq!(input.top, ["a", "b"]);
    let shapes: Vec<Vec<i64>> = input.input_param.as_ref().unwrap().shape.iter().map(|s| s.dim.clone()).collect();
    assert_eq!(shapes, [vec![2, 3], vec![2]]);
    assert_eq!(net.layer[1].name(), "r");
}

#[test]
fn input_without_shape_is_dropped() {
    let net = parse_net(r#"input: "data" layer { name: "r" type: "ReLU" bottom: "data" top: "r" }"#, "p");
    let (net, report) = upgraded(net, "p");
    assert_eq!(report.steps, [STEP_INPUT]);
    assert!(net.input.is_empty());
    assert_eq!(net.layer.len(), 1);
}

#[test]
fn input_dim_count_must_fit() {
    let mut net = parse_net(r#"input: "a" input: "b" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4"#, "q");
    let err = upgrade_net(&mut net, "q.prototxt").unwrap_err().to_string();
    assert!(err.contains("q.prototxt") && err.contains("input_dim"), "{err}");
}

// --- BatchNorm -------------------------------------------------------------------------

#[test]
fn batch_norm_with_three_params_is_frozen() {
    let net = parse_net(
        r#"layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
             param { name: "m" lr_mult: 1 } param { lr_mult: 0 decay_mult: 0 } param { share_mode: PERMISSIVE } }
           layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "y" param { lr_mult: 5 } }"#,
        "r",
    );
    assert!(net_needs_batch_norm_upgrade(&net));
    let (net, report) = upgraded(net, "r");
    assert_eq!(report.steps, [STEP_BATCH_NORM]);
    for p in &net.layer[0].param {
        assert_eq!((p.lr_mult, p.decay_mult), (Some(0.0), Some(0.0)));
    }
    assert_eq!(net.layer[0].param[0].name(), "m");
    assert_eq!(net.layer[0].param[2].share_mode(), caffe::param_spec::DimCheckMode::Permissive);
    // Only the three-param form is touched.
    assert_eq!(net.layer[1].param[0].lr_mult, Some(5.0));
    // Already frozen: nothing to do.
    assert!(!net_needs_upgrade(&net));
    assert!(upgraded(net, "r").1.is_noop());
}

/// DenseNet-Caffe's first pooling, as its DenseNet_121.prototxt writes it (the forks' `ceil_mode`).
const CEIL_MODE_NET: &str = r#"name: "DENSENET_121"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 224 input_dim: 224
layer { name: "pool1" type: "Pooling" bottom: "data" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 ceil_mode: false } }
layer { name: "pool2" type: "Pooling" bottom: "pool1" top: "pool2"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 ceil_mode: true } }
layer { name: "pool3" type: "Pooling" bottom: "pool2" top: "pool3"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
"#;

#[test]
fn forks_ceil_mode_becomes_round_mode() {
    use caffe::pooling_parameter::RoundMode;
    let net = parse_net(CEIL_MODE_NET, "densenet.prototxt");
    assert!(net_needs_pooling_ceil_mode_upgrade(&net));
    let (net, report) = upgraded(net, "densenet.prototxt");
    assert_eq!(report.steps, [STEP_INPUT, STEP_POOLING_CEIL_MODE]);
    let modes: Vec<_> = net.layer[1..]
        .iter()
        .map(|l| {
            let p = l.pooling_param.as_ref().unwrap();
            assert_eq!(p.ceil_mode, None, "{}: ceil_mode is left after the upgrade", l.name());
            (p.round_mode, p.round_mode())
        })
        .collect();
    assert_eq!(
        modes,
        [
            (Some(RoundMode::Floor as i32), RoundMode::Floor),
            (Some(RoundMode::Ceil as i32), RoundMode::Ceil),
            (None, RoundMode::Ceil)
        ]
    );
    // What `caffe upgrade_net_proto_text` writes reads in BVLC Caffe.
    let printed = print::to_text(&net);
    assert!(printed.contains("round_mode: FLOOR") && !printed.contains("ceil_mode"), "{printed}");
    assert!(!net_needs_upgrade(&net));
}

#[test]
fn forks_ceil_mode_pools_with_floor_as_caffes_round_mode_does() {
    // 112x112 by a 3x3 window, stride 2, pad 1: 56 rounded down, 57 up (Caffe's default).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("densenet.prototxt");
    std::fs::write(&path, CEIL_MODE_NET.replace("224 input_dim: 224", "112 input_dim: 112")).unwrap();
    let build = |path: &Path| {
        let state = caffe::NetState { phase: Some(caffe::Phase::Test as i32), ..Default::default() };
        caffe_tch::net::Net::from_file(path, &state, text::TextOptions::default(), tch::Device::Cpu).unwrap()
    };
    let net = build(&path);
    assert_eq!(net.blob_shape("pool1").unwrap(), &[1, 3, 56, 56]);
    assert_eq!(net.blob_shape("pool2").unwrap(), &[1, 3, 28, 28]);
    let ceil = CEIL_MODE_NET
        .replace("224 input_dim: 224", "112 input_dim: 112")
        .replace("ceil_mode: false", "ceil_mode: true");
    std::fs::write(&path, ceil).unwrap();
    assert_eq!(build(&path).blob_shape("pool1").unwrap(), &[1, 3, 57, 57]);
}

#[test]
fn ceil_mode_against_round_mode_is_an_error_at_its_line() {
    let txt =
        "layer { name: \"d\" type: \"Input\" top: \"x\" input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }\n\
               layer { name: \"pool1\" type: \"Pooling\" bottom: \"x\" top: \"y\"\n\
                 pooling_param { kernel_size: 2 ceil_mode: false round_mode: CEIL } }\n";
    let parsed = text::parse_str::<NetParameter>(txt, "both.prototxt", text::TextOptions::default()).unwrap();
    let mut net = parsed.message.clone();
    let err = upgrade_net_located(&mut net, &parsed.source_map).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("both.prototxt:2"), "{msg}");
    expect_layer_error(err, "both.prototxt", "pool1", "ceil_mode: false and round_mode: CEIL");
    // Agreeing is fine.
    let mut net = parse_net(&txt.replace("round_mode: CEIL", "round_mode: FLOOR"), "both.prototxt");
    upgrade_net(&mut net, "both.prototxt").unwrap();
    assert_eq!(net.layer[1].pooling_param.as_ref().unwrap().round_mode(), caffe::pooling_parameter::RoundMode::Floor);
}

// --- current nets ------------------------------------------------------------------------

#[test]
fn current_net_is_untouched() {
    let net = LayerParameter { name: Some("r".into()), r#type: Some("ReLU".into()), ..Default::default() };
    let net = NetParameter { name: Some("cur".into()), layer: vec![net], ..Default::default() };
    assert!(!net_needs_upgrade(&net));
    let (after, report) = upgraded(net.clone(), "s");
    assert!(report.is_noop());
    assert_eq!(report.describe(), "already in the current format");
    assert_eq!(after, net);
}

#[test]
fn report_wording() {
    let report = UpgradeReport { steps: vec![STEP_V0_TO_V1, STEP_V1_TO_V2], warnings: vec![] };
    assert_eq!(report.describe(), "upgraded from deprecated formats: V0 layers -> V1, V1 layers -> layer");
    let lines = report.caffe_messages("net.prototxt");
    assert_eq!(lines[0], "Attempting to upgrade input file specified using deprecated V0LayerParameter: net.prototxt");
    assert_eq!(lines[1], "Attempting to upgrade input file specified using deprecated V1LayerParameter: net.prototxt");
}

// --- solver ---------------------------------------------------------------------------

const SOLVER_BASE: &str =
    r#"net: "examples/mnist/lenet_train_test.prototxt" base_lr: 0.01 lr_policy: "inv" max_iter: 100 "#;

#[test]
fn solver_type_enum_becomes_string() {
    for (old, new) in [
        ("SGD", "SGD"),
        ("NESTEROV", "Nesterov"),
        ("ADAGRAD", "AdaGrad"),
        ("RMSPROP", "RMSProp"),
        ("ADADELTA", "AdaDelta"),
        ("ADAM", "Adam"),
    ] {
        let mut s = parse_solver(&format!("{SOLVER_BASE} solver_type: {old}"));
        assert!(solver_needs_upgrade(&s));
        let report = upgrade_solver(&mut s, "solver.prototxt").unwrap();
        assert_eq!(report.steps, [STEP_SOLVER_TYPE]);
        let expected = parse_solver(&format!("{SOLVER_BASE} type: \"{new}\""));
        assert_eq!(s, expected, "{old}");
        // Idempotent.
        assert!(upgrade_solver(&mut s, "solver.prototxt").unwrap().is_noop());
        assert_eq!(s, expected);
    }
}

#[test]
fn solver_with_both_type_fields_is_an_error() {
    // Caffe refuses both even when they agree.
    for t in ["SGD", "Adam"] {
        let mut s = parse_solver(&format!("{SOLVER_BASE} solver_type: SGD type: \"{t}\""));
        let err = upgrade_solver(&mut s, "dir/solver.prototxt").unwrap_err().to_string();
        assert!(err.contains("dir/solver.prototxt") && err.contains("solver_type"), "{err}");
    }
    let mut s = SolverParameter { solver_type: Some(42), ..Default::default() };
    let err = upgrade_solver(&mut s, "x").unwrap_err().to_string();
    assert!(err.contains("unknown solver_type 42"), "{err}");
}

#[test]
fn current_solver_is_untouched() {
    let mut s = parse_solver(&format!("{SOLVER_BASE} type: \"Adam\""));
    let before = s.clone();
    assert!(upgrade_solver(&mut s, "x").unwrap().is_noop());
    assert_eq!(s, before);
}

#[test]
fn snapshot_prefix_defaults_like_caffe() {
    let mut s = SolverParameter::default();
    let msg = default_snapshot_prefix(&mut s, "examples/mnist/lenet_solver.prototxt").unwrap();
    assert_eq!(s.snapshot_prefix(), "examples/mnist/lenet_solver");
    assert!(msg.contains("was not specified"), "{msg}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut s = SolverParameter { snapshot_prefix: Some(dir.display().to_string()), ..Default::default() };
    default_snapshot_prefix(&mut s, "a/b/my_solver.prototxt").unwrap();
    assert_eq!(s.snapshot_prefix(), dir.join("my_solver").display().to_string());

    let mut s = SolverParameter { snapshot_prefix: Some("snaps/lenet".into()), ..Default::default() };
    assert!(default_snapshot_prefix(&mut s, "x.prototxt").is_none());
    assert_eq!(s.snapshot_prefix(), "snaps/lenet");
}

// Keep the module path in use for readers: `upgrade::upgrade_net` is the entry point.
#[test]
fn module_entry_point() {
    let mut net = NetParameter::default();
    assert!(upgrade::upgrade_net(&mut net, "empty").unwrap().is_noop());
}
