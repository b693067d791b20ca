//! A C++ program's own layer types (`tests/fixtures/cpp/custom_layer_api.cpp`),
//! written as a Caffe fork writes them and registered with
//! `REGISTER_LAYER_CLASS`: its Cube (a NeuronLayer with a learnable scalar)
//! and HalfSquaredDiffLoss (a LossLayer) train through Caffe's Solver with
//! the losses and weights of the same net in Caffe's own Power, Scale and
//! EuclideanLoss; a layer reads its settings, and the program a net's layers'
//! parameters, through protobuf's accessors (caffe/proto/messages.hpp); a layer's exception is the net's error naming the layer;
//! registering a type twice, or over a built-in one, is refused; an unknown
//! type's error lists the program's types.
use std::collections::HashMap;
use std::process::Command;

use crate::cpp_api::compile;

const INPUTS: &str = r#"layer { name: "data" type: "Input" top: "data" top: "target"
  input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
"#;

pub(crate) const CUSTOM: &str = r#"layer { name: "cube" type: "Cube" bottom: "ip" top: "cube" scale_param { filler { value: 0.5 } } }
layer { name: "loss" type: "HalfSquaredDiffLoss" bottom: "cube" bottom: "target" top: "loss" }
"#;

pub(crate) const BUILTIN: &str = r#"layer { name: "pow" type: "Power" bottom: "ip" top: "pow" power_param { power: 3 } }
layer { name: "cube" type: "Scale" bottom: "pow" top: "cube" scale_param { axis: 0 num_axes: 0 filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "cube" bottom: "target" top: "loss" }
"#;

fn solver(net: &str) -> String {
    format!(
        "net: \"{net}\" base_lr: 0.05 momentum: 0.9 lr_policy: \"fixed\" max_iter: 100 display: 0 \
         random_seed: 1701 snapshot_prefix: \"snap\" solver_mode: CPU\n"
    )
}

fn numbers(lines: &HashMap<String, String>, name: &str) -> Vec<f64> {
    let line = lines.get(name).unwrap_or_else(|| panic!("no '{name}' line in {lines:?}"));
    line.split_whitespace().map(|v| v.parse().unwrap_or_else(|e| panic!("{name}: {v}: {e}"))).collect()
}

#[test]
fn a_cpp_programs_own_layers_train_as_caffes_own() {
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = compile("custom_layer_api", dir.path()) else { return };
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("custom.prototxt", &format!("name: \"custom\"\n{INPUTS}{CUSTOM}"));
    write("builtin.prototxt", &format!("name: \"builtin\"\n{INPUTS}{BUILTIN}"));
    write("custom_solver.prototxt", &solver("custom.prototxt"));
    write("builtin_solver.prototxt", &solver("builtin.prototxt"));
    write(
        "picky.prototxt",
        "layer { name: \"data\" type: \"Input\" top: \"data\" input_param { shape { dim: 2 dim: 2 } } }\n\
         layer { name: \"picky\" type: \"Picky\" bottom: \"data\" top: \"out\" python_param { param_str: \"strict\" } }\n",
    );
    write(
        "anonymous_loss.prototxt",
        &format!(
            "{INPUTS}layer {{ name: \"loss\" type: \"HalfSquaredDiffLoss\" bottom: \"ip\" bottom: \"target\" }}\n"
        ),
    );
    write(
        "unknown.prototxt",
        "layer { name: \"data\" type: \"Input\" top: \"data\" input_param { shape { dim: 2 } } }\n\
         layer { name: \"f\" type: \"Frobnicate\" bottom: \"data\" top: \"out\" }\n",
    );
    let out = Command::new(&program).arg(".").current_dir(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: HashMap<String, String> =
        stdout.lines().filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string()))).collect();

    let (custom, builtin) = (numbers(&lines, "custom losses"), numbers(&lines, "builtin losses"));
    assert_eq!(custom.len(), 15);
    assert!(custom[12] < 0.85 * custom[0], "the loss falls: {custom:?}");
    for (a, b) in custom.iter().zip(&builtin) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "losses: {custom:?} vs {builtin:?}");
    }
    let (cw, bw) = (numbers(&lines, "custom weights"), numbers(&lines, "builtin weights"));
    // InnerProduct's 2x3 weights and 2 biases, then the cube's scalar.
    assert_eq!(cw.len(), 9);
    assert_eq!(cw.len(), bw.len());
    assert!((cw[8] - 0.5).abs() > 1e-3, "the program's blob learns: {cw:?}");
    for (a, b) in cw.iter().zip(&bw) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-2), "weights: {cw:?} vs {bw:?}");
    }

    assert_eq!(lines["types"], "Cube HalfSquaredDiffLoss Picky");
    // A loss declared without a top gets an anonymous one, weighted 1, as in Caffe.
    let anonymous = numbers(&lines, "anonymous loss");
    assert!(anonymous[0] > 0.0 && anonymous[1] == 1.0, "{anonymous:?}");
    assert_eq!(lines["picky phase"], "TEST");
    assert_eq!(lines["picky param_str"], "strict");
    assert_eq!(lines["picky prototxt names it"], "1");
    // protobuf's accessors on a net's layers: values, defaults, presence, enums, BlobShape.
    assert_eq!(lines["ip"], "2 1 1 0.5 0.1 0 1");
    assert_eq!(lines["ip filler"], "gaussian");
    assert_eq!(lines["input shapes"], "2 2 4 2");
    assert_eq!(lines["defaults"], "3 1 1 1 1");
    assert_eq!(lines["definition"], "data=Input ip=InnerProduct pow=Power cube=Scale loss=EuclideanLoss");
    assert_eq!(lines["definition ip"], "2 data 1");
    let picky = &lines["picky forward"];
    assert!(
        picky.contains("picky.prototxt:2:1: layer 'picky' (type Picky)")
            && picky.ends_with("(type Picky): Forward_cpu threw: negative input"),
        "{picky}"
    );
    assert!(lines["register Cube"].contains("Layer type Cube already registered"), "{stdout}");
    assert!(lines["register Convolution"].contains("it is one of caffe-tch's own types"), "{stdout}");
    let unknown = &lines["unknown"];
    assert!(
        unknown.contains("Unknown layer type: Frobnicate")
            && unknown.contains("registered by this program: Cube, HalfSquaredDiffLoss, Picky"),
        "{unknown}"
    );
}
