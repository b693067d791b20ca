//! The `caffe` binary end to end: how it links, its gflags syntax, its errors,
//! and the `device_query`, `time`, `forward`, `test` and
//! `upgrade_net_proto_text` commands on real fixtures.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use caffe_tch::data::db::Backend;
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::{LayerParameter, NetParameter};

use crate::common::{assert_close, caffe_ref, fixture, read_npy};

const TOL: f64 = 1e-4;

fn caffe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caffe"));
    // Keep log lines on stderr only, whatever the caller's environment says.
    c.env_remove("GLOG_log_dir");
    c
}

fn run(args: &[&str]) -> Output {
    caffe().args(args).output().expect("spawn caffe")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn assert_ok(out: &Output, what: &str) -> String {
    let all = text(out);
    assert!(out.status.success(), "{what}: exit {:?}\n{all}", out.status.code());
    all
}

fn lenet_dir() -> PathBuf {
    caffe_ref("fixtures/lenet")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn npy_arg(name: &str) -> String {
    format!("{name}={}", s(&lenet_dir().join("blobs").join(format!("{name}.npy"))))
}

/// CUDA is opened when asked for, not linked: the binary does not need
/// libtorch_cuda.so, and `device_query` finds it, loads it, and (here without
/// a GPU) gets the CUDA backend's own "no device" answer.
#[test]
fn cuda_library_loads_on_demand() {
    let all = assert_ok(&run(&["device_query"]), "device_query");
    assert!(all.contains("libtorch_cuda.so (loaded)"), "the CUDA library did not load:\n{all}");
    if caffe_tch::util::cuda::is_available() {
        assert!(all.contains("Device id: 0"), "no device 0 listed:\n{all}");
    } else {
        assert!(all.contains("CUDA available: no"), "{all}");
        let backend = all.lines().find(|l| l.contains("CUDA backend: registered")).unwrap_or_else(|| panic!("{all}"));
        assert!(!backend.contains("ATen_cuda"), "the CUDA backend did not register: {backend}");
    }
    let libs = match linked_libraries(env!("CARGO_BIN_EXE_caffe-engine")) {
        Ok(l) => l,
        Err(e) => skip!("ldd is not available ({e})"),
    };
    assert!(libs.contains("libtorch_cpu.so"), "{libs}");
    assert!(
        !libs.contains("libtorch_cuda.so"),
        "caffe-engine links libtorch_cuda.so (CPU runs would map CUDA):\n{libs}"
    );
}

/// `ldd`'s list for a binary.
fn linked_libraries(binary: &str) -> std::io::Result<String> {
    Command::new("ldd").arg(binary).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The `caffe` launcher loads no libtorch: `--version` is its own answer, the
/// same line as the engine's, and every other command reaches the engine
/// with its arguments and exit code.
#[test]
fn the_launcher_answers_version_without_libtorch() {
    let libs = match linked_libraries(env!("CARGO_BIN_EXE_caffe")) {
        Ok(l) => l,
        Err(e) => skip!("ldd is not available ({e})"),
    };
    assert!(!libs.contains("libtorch") && !libs.contains("libc10"), "the caffe launcher links libtorch:\n{libs}");
    for flag in ["--version", "-version", "-V"] {
        let ours = assert_ok(&run(&[flag]), flag);
        let engine = Command::new(env!("CARGO_BIN_EXE_caffe-engine")).arg(flag).output().unwrap();
        assert_eq!(ours, String::from_utf8_lossy(&engine.stdout), "{flag}");
        assert_eq!(ours.trim(), format!("caffe {}", env!("CARGO_PKG_VERSION")));
    }
    // A command the engine refuses: its message and exit code come through.
    let out = run(&["no_such_command"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("valid commands: "), "{}", text(&out));
}

#[test]
fn time_accepts_all_flag_spellings() {
    let model = s(&lenet_dir().join("net.prototxt"));
    let spellings: [Vec<String>; 4] = [
        vec!["-model".into(), model.clone()],
        vec![format!("-model={model}")],
        vec!["--model".into(), model.clone()],
        vec![format!("--model={model}")],
    ];
    for flags in &spellings {
        let mut args = vec!["time".to_string()];
        args.extend(flags.iter().cloned());
        args.extend(["-iterations".to_string(), "1".to_string()]);
        let out = caffe().args(&args).output().expect("spawn caffe");
        let all = assert_ok(&out, &format!("caffe {}", args.join(" ")));
        assert!(all.contains("Average Forward pass"), "{flags:?}:\n{all}");
    }
}

#[test]
fn unknown_command_lists_valid_commands() {
    let out = run(&["trian"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for cmd in ["train", "time", "device_query"] {
        assert!(err.contains(cmd), "stderr does not list '{cmd}':\n{err}");
    }
}

#[test]
fn unknown_flag_lists_valid_flags() {
    let out = run(&["time", "-modle", "x.prototxt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for flag in ["-model", "-iterations", "-weights", "-phase"] {
        assert!(err.contains(flag), "stderr does not list '{flag}':\n{err}");
    }
}

fn forward_lenet(extra: &[String], out_dir: &Path) -> Output {
    let dir = lenet_dir();
    let mut args = vec![
        "forward".to_string(),
        "-model".into(),
        s(&dir.join("net.prototxt")),
        "-weights".into(),
        s(&dir.join("weights.caffemodel")),
        "-out".into(),
        s(out_dir),
    ];
    args.extend(extra.iter().cloned());
    caffe().args(&args).output().expect("spawn caffe")
}

fn npy_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read out dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".npy"))
        .collect();
    names.sort();
    names
}

#[test]
fn forward_all_blobs_match_caffe() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = ["-input".into(), npy_arg("data"), "-input".into(), npy_arg("label"), "-blobs".into(), "all".into()];
    assert_ok(&forward_lenet(&extra, tmp.path()), "forward -blobs all");
    let written = npy_names(tmp.path());
    for blob in ["data", "label", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "accuracy", "loss"] {
        assert!(written.contains(&format!("{blob}.npy")), "{blob}.npy not written: {written:?}");
    }
    let mut compared = 0;
    for name in &written {
        let reference = lenet_dir().join("blobs").join(name);
        assert!(reference.exists(), "no reference blob for {name}");
        assert_close(name, &read_npy(&tmp.path().join(name)), &read_npy(&reference), TOL);
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} blobs compared");
}

#[test]
fn forward_writes_only_outputs_by_default() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = ["-input".into(), npy_arg("data"), "-input".into(), npy_arg("label")];
    assert_ok(&forward_lenet(&extra, tmp.path()), "forward");
    assert_eq!(npy_names(tmp.path()), vec!["accuracy.npy", "loss.npy"]);
    for name in ["accuracy.npy", "loss.npy"] {
        let reference = read_npy(&lenet_dir().join("blobs").join(name));
        assert_close(name, &read_npy(&tmp.path().join(name)), &reference, TOL);
    }
}

#[test]
fn forward_missing_input_warns_and_uses_zeros() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = ["-input".into(), npy_arg("data"), "-blobs".into(), "label,data".into()];
    let all = assert_ok(&forward_lenet(&extra, tmp.path()), "forward without label");
    assert!(all.contains("input 'label' not given"), "no warning for the missing input:\n{all}");
    assert!(all.lines().any(|l| l.starts_with('W') && l.contains("label")), "not a warning line:\n{all}");
    let label = read_npy(&tmp.path().join("label.npy"));
    assert_eq!(label.size(), vec![100]);
    assert_eq!(label.abs().sum(tch::Kind::Double).double_value(&[]), 0.0);
}

#[test]
fn forward_wrong_input_shape_fails_naming_both_shapes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.npy");
    tch::Tensor::zeros([100, 2, 28, 28], (tch::Kind::Float, tch::Device::Cpu)).write_npy(&bad).expect("write npy");
    let out_dir = tmp.path().join("out");
    let extra = ["-input".into(), format!("data={}", s(&bad))];
    let out = forward_lenet(&extra, &out_dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'data'"), "error does not name the blob:\n{err}");
    assert!(err.contains("[100, 2, 28, 28]"), "error does not give the shape given:\n{err}");
    assert!(err.contains("[100, 1, 28, 28]"), "error does not give the net's shape:\n{err}");
}

#[test]
fn forward_writes_slash_names_as_double_underscore() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("slash.prototxt");
    std::fs::write(
        &model,
        r#"name: "slash"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "relu" type: "ReLU" bottom: "x" top: "a/b" }
"#,
    )
    .expect("write prototxt");
    let x = tch::Tensor::from_slice(&[-1.0f32, 2.0, -3.0, 4.0, 0.5, -0.5]).reshape([2, 3]);
    let x_file = tmp.path().join("x.npy");
    x.write_npy(&x_file).expect("write npy");
    let out_dir = tmp.path().join("out");
    let out = caffe()
        .args(["forward", "-model", &s(&model), "-input", &format!("x={}", s(&x_file)), "-out", &s(&out_dir)])
        .output()
        .expect("spawn caffe");
    assert_ok(&out, "forward slash net");
    assert_eq!(npy_names(&out_dir), vec!["a__b.npy"]);
    let y = read_npy(&out_dir.join("a__b.npy"));
    assert_close("a/b", &y, &x.relu(), 0.0);
}

/// A 2-sample classifier: data all ones (2×4), labels 0, ip weights row 0 = 1,
/// row 1 = 0, no bias term, so the logits are [4, 0] and the loss is ln(1 + e⁻⁴) in f32.
fn tiny_classifier(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("tiny.prototxt");
    std::fs::write(
        &model,
        r#"name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {
    shape { dim: 2 dim: 4 } shape { dim: 2 }
    data_filler { type: "constant" value: 1 } data_filler { type: "constant" value: 0 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 bias_term: false } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"#,
    )
    .expect("write prototxt");
    let weights = dir.join("tiny.caffemodel");
    let ip = LayerParameter {
        name: Some("ip".into()),
        r#type: Some("InnerProduct".into()),
        blobs: vec![binary::make_blob(&[2, 4], vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])],
        ..Default::default()
    };
    let net = NetParameter { name: Some("tiny".into()), layer: vec![ip], ..Default::default() };
    binary::write_message(&weights, &net).expect("write caffemodel");
    (model, weights)
}

#[test]
fn test_command_prints_caffe_scores() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (model, weights) = tiny_classifier(tmp.path());
    let out = run(&["test", "-model", &s(&model), "-weights", &s(&weights), "-iterations", "2"]);
    let all = assert_ok(&out, "caffe test");
    // ln(1 + e^-4) = 0.01814993, but Caffe computes −log(softmax) in f32:
    // p = 0.98201376f, −log p = 0.018149955f, which `%g` prints as 0.01815.
    for line in [
        "Running for 2 iterations.",
        "Batch 0, accuracy = 1",
        "Batch 1, loss = 0.01815",
        "Loss: 0.01815",
        "accuracy = 1",
        "loss = 0.01815 (* 1 = 0.01815 loss)",
    ] {
        assert!(all.contains(line), "missing '{line}':\n{all}");
    }
}

/// `caffe test -iteration N` scores a DropIn net as the solver's test pass at
/// iteration N saw it; without it the net is fully grown, with a warning. Here the skip path
/// is ones and the new layer zeros over 4 units, grown over 4 iterations, so
/// the top's sum is the number of units still on the skip path.
#[test]
fn test_command_takes_dropin_iteration() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("dropin.prototxt");
    std::fs::write(
        &model,
        r#"name: "grow"
layer { name: "data" type: "DummyData" top: "data"
  dummy_data_param { shape { dim: 1 dim: 4 } data_filler { type: "constant" value: 1 } } }
layer { name: "new" type: "Power" bottom: "data" top: "new" power_param { scale: 0 } }
layer { name: "mix" type: "DropIn" bottom: "data" bottom: "new" top: "mix" dropin_param { dropin_length: 4 } }
layer { name: "skipped" type: "Reduction" bottom: "mix" top: "skipped" }
"#,
    )
    .expect("write prototxt");
    let weights = tmp.path().join("none.caffemodel");
    binary::write_message(&weights, &NetParameter::default()).expect("write caffemodel");
    let base = ["test", "-model", &s(&model), "-weights", &s(&weights), "-iterations", "1"];
    for (iteration, skipped) in [(Some("0"), "4"), (Some("1"), "3"), (Some("3"), "1"), (None, "0")] {
        let mut args = base.to_vec();
        if let Some(it) = iteration {
            args.extend(["-iteration", it]);
        }
        let all = assert_ok(&run(&args), "caffe test");
        let line = format!("] skipped = {skipped}\n");
        assert!(all.contains(&line), "-iteration {iteration:?}: missing '{line}':\n{all}");
        // Fully grown by default, which the log says.
        let warned = all.contains("DropIn layers run fully grown (mix); -iteration N");
        assert_eq!(warned, iteration.is_none(), "-iteration {iteration:?}:\n{all}");
    }
}

fn upgrade_matches_caffe(stem: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = fixture(&format!("upgrade/{stem}.in.prototxt"));
    let expected = std::fs::read(fixture(&format!("upgrade/{stem}.caffe-upgraded.prototxt"))).expect("expected");
    let output = tmp.path().join("out.prototxt");
    assert_ok(&run(&["upgrade_net_proto_text", &s(&input), &s(&output)]), stem);
    let got = std::fs::read(&output).expect("upgraded output");
    assert!(got == expected, "{stem}: output differs from Caffe's\n--- ours ---\n{}", String::from_utf8_lossy(&got));
}

#[test]
fn upgrade_v0_net_text_matches_caffe() {
    upgrade_matches_caffe("bvlc_v0__lenet_train");
}

#[test]
fn upgrade_v1_net_text_matches_caffe() {
    upgrade_matches_caffe("bvlc_v1__mnist_lenet_train_test");
}

/// The flag lines of clap's help for a command (`--name <NAME>  description`), without the global ones.
fn flag_lines(help: &str) -> Vec<&str> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| {
            l.starts_with("--")
                && !["--lenient", "--max_memory", "--layer_library"].iter().any(|global| l.starts_with(global))
        })
        .collect()
}

#[test]
fn every_flag_of_the_net_commands_is_described() {
    for (command, flags) in [("train", 11), ("test", 7), ("time", 8), ("forward", 10)] {
        let help = assert_ok(&run(&[command, "-help"]), command);
        let lines = flag_lines(&help);
        assert_eq!(lines.len(), flags, "{command}: flags in\n{help}");
        for line in lines {
            // After the flag and its placeholder, a description of several words.
            let words = line.split_whitespace().skip(2).count();
            assert!(words >= 3, "{command}: '{line}' has no description");
        }
    }
}

#[test]
fn the_caffe_tools_print_their_flags_on_help() {
    let out = run(&["convert_imageset", "-help"]);
    let help = assert_ok(&out, "convert_imageset -help");
    assert!(out.stderr.is_empty(), "help goes to stdout: {help}");
    assert!(help.starts_with("usage: caffe convert_imageset "), "{help}");
    for flag in ["gray", "shuffle", "check_size", "encoded", "backend", "resize_width", "resize_height", "encode_type"]
    {
        let line = help.lines().find(|l| l.trim_start().starts_with(&format!("-{flag} ")));
        let line = line.unwrap_or_else(|| panic!("-{flag} missing from\n{help}"));
        assert!(line.split_whitespace().count() >= 4, "-{flag} has no description: {line}");
    }
    assert!(help.contains("(default: \"lmdb\")"), "{help}");
    for tool in [
        "convert_mnist_data",
        "convert_mnist_siamese_data",
        "convert_cifar_data",
        "compute_image_mean",
        "extract_features",
        "data",
        "plot",
        "parse_log",
    ] {
        let help = assert_ok(&run(&[tool, "--help"]), tool);
        assert!(help.starts_with(&format!("usage: caffe {tool} ")), "{tool}: {help}");
    }
}

/// An unknown flag is named as it was typed (gflags' `-flag` or GNU's
/// `--flag`), with the closest valid one and the command's list.
#[test]
fn unknown_flags_are_named_as_typed() {
    let cases = [
        (vec!["export", "-model", "x", "-outpt", "y"], "unknown flag '-outpt' (did you mean '-out'?)"),
        (vec!["train", "--solverr", "x"], "unknown flag '--solverr' (did you mean '--solver'?)"),
        (vec!["train", "-solver=x", "-gpuu=0"], "unknown flag '-gpuu' (did you mean '-gpu'?)"),
        (vec!["time", "-model", "x", "-forward_only"], "unknown flag '-forward_only'\n"),
    ];
    for (args, want) in cases {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(&format!("caffe: {want}")), "{args:?}: {err}");
        assert!(err.contains(&format!("caffe: valid flags for '{}': -", args[0])), "{err}");
        assert_eq!(err.lines().count(), 2, "{err}");
    }
}

#[test]
fn a_missing_model_is_said_once() {
    let out = run(&["time", "-model", "/nonexistent/net.prototxt"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/net.prototxt"), "{err}");
}

#[test]
fn forward_honours_stage_and_level() {
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("staged.prototxt");
    std::fs::write(
        &net,
        r#"name: "staged"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "plain" type: "Power" bottom: "data" top: "out" power_param { shift: 1 }
        exclude { stage: "deploy" } }
layer { name: "staged" type: "Power" bottom: "data" top: "out" power_param { shift: 2 }
        include { stage: "deploy" min_level: 2 } }
"#,
    )
    .unwrap();
    let forward = |extra: &[&str], dir: &str| -> Vec<f32> {
        let out_dir = tmp.path().join(dir);
        let mut args = vec!["forward", "-model", net.to_str().unwrap(), "-out", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        assert_ok(&run(&args), &format!("forward {extra:?}"));
        let t = read_npy(&out_dir.join("out.npy"));
        Vec::<f32>::try_from(&t.reshape([-1])).unwrap()
    };
    // Inputs default to zeros: `out` is the shift of whichever layer was built.
    assert_eq!(forward(&[], "plain"), [1.0; 3]);
    assert_eq!(forward(&["-stage", "deploy", "-level", "2"], "staged"), [2.0; 3]);
    // Level 0 is below the staged layer's min_level: neither layer is built,
    // and the net's only output is its input.
    let out_dir = tmp.path().join("none");
    let out = run(&["forward", "-model", net.to_str().unwrap(), "-out", out_dir.to_str().unwrap(), "-stage", "deploy"]);
    assert_ok(&out, "forward -stage deploy");
    assert!(!out_dir.join("out.npy").exists() && out_dir.join("data.npy").exists(), "{}", text(&out));
}

/// A solver written for Caffe's GPU build (`solver_mode: GPU`, as every
/// solver in Caffe's examples/mnist) trains on the CPU where there is no CUDA
/// device, and says so, as pycaffe's solvers do; with a device it uses it.
#[test]
fn a_gpu_solver_without_a_device_trains_on_the_cpu_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("net.prototxt"),
        r#"layer { name: "data" type: "DummyData" top: "data" top: "label"
             dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
               data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
           layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
           layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("solver.prototxt"),
        "net: \"net.prototxt\"\nbase_lr: 0.1\nlr_policy: \"fixed\"\nmax_iter: 1\nsnapshot_after_train: false\n\
         solver_mode: GPU\ndevice_id: 0\n",
    )
    .unwrap();
    let out = caffe().args(["train", "-solver", "solver.prototxt"]).current_dir(dir.path()).output().unwrap();
    let all = assert_ok(&out, "caffe train with solver_mode: GPU");
    let warning = "solver_mode is GPU but CUDA device 0 is not available; using the CPU";
    if caffe_tch::util::cuda::device_count() == 0 {
        assert!(all.contains(warning) && all.contains("Use CPU."), "{all}");
    } else {
        assert!(!all.contains(warning) && !all.contains("Use CPU."), "{all}");
    }
}

/// A Caffe tree with `caffe link_build_tree`'s links: Caffe's own
/// `examples/mnist/create_mnist.sh` and `train_lenet.sh`, unchanged, convert
/// the IDX files through `build/examples/mnist/convert_mnist_data.bin` into
/// Caffe's records and train through `build/tools/caffe`; `build/tools/
/// compute_image_mean` writes Caffe's mean file byte for byte; a real
/// program in `build/` is left alone; a second run replaces its own links.
#[test]
fn caffes_mnist_scripts_run_unchanged_in_a_linked_build_tree() {
    let Some(mnist) = crate::common::fashion_mnist() else {
        skip!(
            "Debian's Fashion-MNIST is not in {} (make system-deps installs dataset-fashion-mnist)",
            crate::common::FASHION_MNIST_DIR
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data/mnist")).unwrap();
    std::fs::create_dir_all(root.join("examples/mnist")).unwrap();
    for name in
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    {
        crate::common::gunzip(&mnist.join(format!("{name}.gz")), &root.join("data/mnist").join(name));
    }
    for name in ["create_mnist.sh", "train_lenet.sh", "lenet_train_test.prototxt"] {
        std::fs::copy(fixture(&format!("bvlc/examples/mnist/{name}")), root.join("examples/mnist").join(name)).unwrap();
    }
    // The solver as Caffe ships it, but 20 iterations instead of 10,000.
    let solver = std::fs::read_to_string(fixture("bvlc/examples/mnist/lenet_solver.prototxt")).unwrap();
    assert!(solver.contains("max_iter: 10000\n"));
    std::fs::write(
        root.join("examples/mnist/lenet_solver.prototxt"),
        solver.replace("max_iter: 10000\n", "max_iter: 20\n"),
    )
    .unwrap();
    // A program of a real Caffe build stays.
    std::fs::create_dir_all(root.join("build/tools")).unwrap();
    std::fs::write(root.join("build/tools/extract_features.bin"), "#!/bin/sh\n").unwrap();

    for _ in 0..2 {
        let out = run(&["link_build_tree", &s(root)]);
        let log = assert_ok(&out, "link_build_tree");
        assert!(log.contains("Linked 20 programs under"), "{log}");
        assert!(log.contains("extract_features.bin: it is not a link"), "{log}");
    }
    assert_eq!(std::fs::read_to_string(root.join("build/tools/extract_features.bin")).unwrap(), "#!/bin/sh\n");
    let script = |name: &str| {
        let out = Command::new("sh")
            .arg(format!("examples/mnist/{name}"))
            .current_dir(root)
            .env_remove("GLOG_log_dir")
            .output()
            .unwrap();
        assert_ok(&out, name)
    };
    let log = script("create_mnist.sh");
    assert!(log.contains("Processed 10000 files.") && log.contains("Done."), "{log}");
    let test_lmdb = root.join("examples/mnist/mnist_test_lmdb");
    assert_eq!(crate::data::digest_of(&test_lmdb, Backend::Lmdb), crate::data::caffe_test_lmdb_digest());
    let out = Command::new(root.join("build/tools/compute_image_mean"))
        .args(["examples/mnist/mnist_train_lmdb", "mean.binaryproto"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_ok(&out, "compute_image_mean");
    assert_eq!(
        std::fs::read(root.join("mean.binaryproto")).unwrap(),
        std::fs::read(caffe_ref("extra/mean/fmnist_train_mean.binaryproto")).unwrap()
    );
    let log = script("train_lenet.sh");
    assert!(log.contains("Optimization Done."), "{log}");
    assert!(root.join("examples/mnist/lenet_iter_20.caffemodel").is_file());
    // Flags in gflags' --name=value form, as the scripts give them, and -help through the link.
    let out = Command::new(root.join(".build_release/tools/caffe")).arg("--version").output().unwrap();
    assert!(assert_ok(&out, ".build_release/tools/caffe --version").starts_with("caffe "));
    let out = Command::new(root.join("build/examples/mnist/convert_mnist_data.bin")).arg("-help").output().unwrap();
    assert!(assert_ok(&out, "convert_mnist_data.bin -help").starts_with("usage: caffe convert_mnist_data "));
}
