//! A fork's C++ layers as a shared library (`tests/fixtures/cpp/layer_library.cpp`,
//! the same Cube and HalfSquaredDiffLoss classes as `cpp_custom_layer.rs`'s
//! program, in the same nets) loaded by the `caffe` command: `caffe train -layer_library` trains
//! a net of them with the losses of the same net in Caffe's own Power, Scale
//! and EuclideanLoss; `CAFFE_TCH_LAYER_LIBRARIES` loads it for `caffe test`;
//! the solver's `random_seed` seeds the library's fillers; a layer's
//! exception names the layer; a missing library, a library of no layers and
//! one claiming a built-in type are one-line errors naming it.
use std::path::Path;
use std::process::{Command, Output};

use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::NetParameter;

use crate::common::assert_one_line_error;
use crate::cpp_api::compile_library;
use crate::cpp_custom_layer::{BUILTIN, CUSTOM};

const NET: &str = r#"name: "cubes"
layer { name: "data" type: "DummyData" top: "data" top: "target"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
"#;

fn solver(net: &str, prefix: &str) -> String {
    format!(
        "net: \"{net}\" base_lr: 0.05 momentum: 0.9 lr_policy: \"fixed\" max_iter: 20 display: 1 \
         random_seed: 1701 snapshot_prefix: \"{prefix}\" solver_mode: CPU\n"
    )
}

fn caffe(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caffe"));
    c.current_dir(dir).env_remove("GLOG_log_dir").env_remove(caffe_tch::layers::external::library::ENV);
    c
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The displayed `Iteration N (... iter/s ...), loss = X` values, in order.
fn losses(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("Iteration ") && l.contains("iter/s") && l.contains(", loss = "))
        .map(|l| l.rsplit(" = ").next().unwrap().trim().parse().unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The one `caffe: error:` line of a failed run.
fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure:\n{}", text(out));
    let all = text(out);
    all.lines().find(|l| l.starts_with("caffe: error:")).unwrap_or_else(|| panic!("no error line:\n{all}")).to_string()
}

#[test]
fn caffe_loads_a_layer_library_and_trains_its_layers() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libcube_layers.so");
    let Some(library) = compile_library("layer_library", &library, &[]) else { return };
    let lib = library.display().to_string();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("custom.prototxt", &format!("{NET}{CUSTOM}"));
    write("builtin.prototxt", &format!("{NET}{BUILTIN}"));
    write("custom_solver.prototxt", &solver("custom.prototxt", "custom"));
    write("builtin_solver.prototxt", &solver("builtin.prototxt", "builtin"));

    let out = caffe(dir.path())
        .args(["train", "-solver", "custom_solver.prototxt", "-layer_library", &lib])
        .output()
        .unwrap();
    let custom_log = text(&out);
    assert!(out.status.success(), "{custom_log}");
    assert!(
        custom_log.contains("Layer library") && custom_log.contains("Cube, HalfSquaredDiffLoss, NonNegative, Filled"),
        "{custom_log}"
    );
    let out = caffe(dir.path()).args(["train", "-solver", "builtin_solver.prototxt"]).output().unwrap();
    let builtin_log = text(&out);
    assert!(out.status.success(), "{builtin_log}");
    let (custom, builtin) = (losses(&custom_log), losses(&builtin_log));
    assert_eq!(custom.len(), 20, "{custom_log}");
    assert_eq!(builtin.len(), 20, "{builtin_log}");
    assert!(custom.iter().any(|&l| l != custom[0]), "{custom:?}");
    for (a, b) in custom.iter().zip(&builtin) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "losses: {custom:?} vs {builtin:?}");
    }

    // The snapshot tests through the variable, as an unchanged script would run it.
    let out = caffe(dir.path())
        .args(["test", "-model", "custom.prototxt", "-weights", "custom_iter_20.caffemodel", "-iterations", "2"])
        .env(caffe_tch::layers::external::library::ENV, &lib)
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("loss = "), "{all}");

    // The solver's random_seed seeds the library's Caffe generator, which
    // its Filled layer's Gaussian filler draws from in LayerSetUp.
    write(
        "filled.prototxt",
        "layer { name: \"data\" type: \"DummyData\" top: \"data\" top: \"target\"\n\
           dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } data_filler { value: 1 } } }\n\
         layer { name: \"f\" type: \"Filled\" bottom: \"data\" top: \"out\" convolution_param { weight_filler { type: \"gaussian\" } } }\n\
         layer { name: \"loss\" type: \"EuclideanLoss\" bottom: \"out\" bottom: \"target\" top: \"loss\" }\n",
    );
    let filled_weights = |seed: i64, prefix: &str| {
        write(
            "filled_solver.prototxt",
            &format!(
                "net: \"filled.prototxt\" base_lr: 0 lr_policy: \"fixed\" max_iter: 1 random_seed: {seed} \
                 snapshot_prefix: \"{prefix}\" solver_mode: CPU\n"
            ),
        );
        let out = caffe(dir.path())
            .args(["train", "-solver", "filled_solver.prototxt", "-layer_library", &lib])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let model: NetParameter =
            binary::read_message(&dir.path().join(format!("{prefix}_iter_1.caffemodel"))).unwrap();
        let layer = model.layer.iter().find(|l| l.name() == "f").expect("layer f");
        layer.blobs[0].data.clone()
    };
    let (a, b, c) = (filled_weights(7, "a"), filled_weights(7, "b"), filled_weights(8, "c"));
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "the same random_seed, the same filler draws");
    assert_ne!(a, c);

    // Without the library the type is unknown, and the error says how to load one.
    let err = error_line(&caffe(dir.path()).args(["train", "-solver", "custom_solver.prototxt"]).output().unwrap());
    assert_one_line_error(&err, &["Unknown layer type: Cube", "-layer_library", "custom.prototxt"]);

    // A layer's exception is the net's error, naming the layer.
    write(
        "negative.prototxt",
        "layer { name: \"data\" type: \"Input\" top: \"data\" input_param { shape { dim: 2 dim: 2 } } }\n\
         layer { name: \"minus\" type: \"Power\" bottom: \"data\" top: \"minus\" power_param { shift: -1 } }\n\
         layer { name: \"guard\" type: \"NonNegative\" bottom: \"minus\" top: \"out\" }\n",
    );
    let out = caffe(dir.path())
        .args(["time", "-model", "negative.prototxt", "-iterations", "1", "-layer_library", &lib])
        .output()
        .unwrap();
    assert_one_line_error(&error_line(&out), &["guard", "a negative input"]);
}

#[test]
fn a_bad_layer_library_is_a_one_line_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let claiming = dir.path().join("libclaims_relu.so");
    let Some(claiming) = compile_library("layer_library", &claiming, &["CLAIM_A_BUILTIN_TYPE"]) else { return };
    let claiming = claiming.display().to_string();
    std::fs::write(
        dir.path().join("net.prototxt"),
        "layer { name: \"data\" type: \"Input\" top: \"data\" input_param { shape { dim: 1 } } }\n",
    )
    .unwrap();
    let time = |library: &str| {
        caffe(dir.path())
            .args(["time", "-model", "net.prototxt", "-iterations", "1", "-layer_library", library])
            .output()
            .unwrap()
    };

    let err = error_line(&time(&claiming));
    assert_one_line_error(&err, &["libclaims_relu.so", "ReLU already registered"]);

    let short = dir.path().join("libshort_table.so");
    let Some(short) = compile_library("layer_library", &short, &["SHORT_TABLE"]) else { return };
    let err = error_line(&time(&short.display().to_string()));
    assert_one_line_error(&err, &["libshort_table.so", "REGISTER_LAYER_CLASS(Short)", "another version", "rebuild"]);

    let err = error_line(&time("no_such_library.so"));
    assert_one_line_error(&err, &["no_such_library.so", "No such file"]);

    // A shared library with no layers in it (a system one).
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libm");
    let err = error_line(&time(libm));
    assert_one_line_error(&err, &["libm.so.6", "registered no layer types"]);

    // Not a shared library at all.
    let err = error_line(&time("net.prototxt"));
    assert_one_line_error(&err, &["cannot load layer library net.prototxt"]);

    // Through the variable, the error says where the name came from.
    let out = caffe(dir.path())
        .args(["time", "-model", "net.prototxt", "-iterations", "1"])
        .env(caffe_tch::layers::external::library::ENV, "no_such_library.so")
        .output()
        .unwrap();
    assert_one_line_error(&error_line(&out), &["no_such_library.so", "CAFFE_TCH_LAYER_LIBRARIES"]);
}
