//! Caffe's C++ interface (`cpp/include/caffe/caffe.hpp` over libcaffe.so): a
//! C++ program written as Caffe's deployment examples are
//! (`tests/fixtures/cpp/net_api.cpp`) compiles against the header, links
//! `-lcaffe`, and runs BVLC Caffe's LeNet fixture: its outputs are Caffe's,
//! before and after a Reshape to a smaller batch; an output's memory stays
//! put across forwards and holds the latest values; a layer's blobs are its
//! weights (written through them, the next forward uses them); a mean file reads as
//! Caffe's; the net saved through ToProto and WriteProtoToBinaryFile loads
//! into a net built from a NetParameter; a missing net is an exception
//! carrying the one-line error. A
//! second program (`tests/fixtures/cpp/train_api.cpp`) trains through the
//! header: Backward's diffs and a solver's losses and weights are Caffe's.
use std::path::{Path, PathBuf};
use std::process::Command;

use caffe_tch::net::tensor_values;
use tch::Tensor;

use crate::common::{self, caffe_ref, read_npy};

fn raw(path: &std::path::Path, t: &tch::Tensor) {
    let bytes: Vec<u8> = tensor_values(t).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Builds `tests/fixtures/cpp/<name>.cpp` against the header and
/// libcaffe.so into `dir`; None (after a SKIPPED line) without libcaffe.so
/// or a C++ compiler.
pub(crate) fn compile(name: &str, dir: &Path) -> Option<PathBuf> {
    build(name, &dir.join(name), &[])
}

/// Builds `tests/fixtures/cpp/<name>.cpp` as a shared library at `output`
/// (a layer library), with `defines` (`-DNAME`); None as [`compile`].
pub(crate) fn compile_library(name: &str, output: &Path, defines: &[&str]) -> Option<PathBuf> {
    let mut args = vec!["-shared".to_string(), "-fPIC".to_string()];
    args.extend(defines.iter().map(|d| format!("-D{d}")));
    build(name, output, &args)
}

fn build(name: &str, output: &Path, extra: &[String]) -> Option<PathBuf> {
    let lib_dir = common::repo().join("target/release");
    if !lib_dir.join("libcaffe.so").exists() {
        let missing = format!("{} has no libcaffe.so (make build makes it)", lib_dir.display());
        common::skip_or_fail(module_path!(), &missing, common::under_ci());
        return None;
    }
    let compiled = Command::new("c++")
        // glog's stand-in, whether or not this machine has glog (the
        // program would then link -lglog, as Caffe's programs do).
        .args(["-std=c++17", "-O1", "-DCAFFE_TCH_NO_GLOG"])
        .args(extra)
        .arg("-o")
        .arg(output)
        .arg(common::fixture(&format!("cpp/{name}.cpp")))
        .arg("-I")
        .arg(common::repo().join("cpp/include"))
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lcaffe")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .output();
    let compiled = match compiled {
        Ok(o) => o,
        Err(e) => {
            common::skip_or_fail(module_path!(), &format!("no C++ compiler (c++: {e})"), common::under_ci());
            return None;
        }
    };
    assert!(compiled.status.success(), "{}", String::from_utf8_lossy(&compiled.stderr));
    Some(output.to_path_buf())
}

fn read_raw(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Tensor::from_slice(&values)
}

#[test]
fn a_cpp_program_against_caffe_hpp_runs_caffe_lenet() {
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = compile("net_api", dir.path()) else { return };
    let fixture = caffe_ref("fixtures/lenet");
    let data = read_npy(&fixture.join("blobs/data.npy"));
    let labels = read_npy(&fixture.join("blobs/label.npy"));
    let ip2 = read_npy(&fixture.join("blobs/ip2.npy"));
    let caffe_loss = read_npy(&fixture.join("blobs/loss.npy")).double_value(&[]);
    raw(&dir.path().join("data.raw"), &data);
    raw(&dir.path().join("labels.raw"), &labels);
    let mean = caffe_ref("extra/mean/fmnist_train_mean.binaryproto");
    let small = 7i64;
    let out = Command::new(&program)
        .arg(fixture.join("net.prototxt"))
        .arg(fixture.join("weights.caffemodel"))
        .arg(dir.path().join("data.raw"))
        .arg(dir.path().join("labels.raw"))
        .arg(dir.path().join("out.raw"))
        .arg(small.to_string())
        .arg(&mean)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("inputs 2 outputs 2 input 100x1x28x28"), "{stdout}");
    assert!(stdout.contains("first data has conv1 1 has blob pool2 1 has blob nothing 0"), "{stdout}");
    assert!(stdout.contains("output accuracy count 1") && stdout.contains("output loss count 1"), "{stdout}");
    assert!(stdout.contains(&format!("ip2 after reshape {small}x10 ({small} 10 ({}))", small * 10)), "{stdout}");
    assert!(stdout.contains("same memory 1 new values 1"), "{stdout}");

    let loss: f64 = stdout.lines().find_map(|l| l.strip_prefix("loss ")).unwrap().parse().unwrap();
    assert!((loss - caffe_loss).abs() <= 1e-4 * (1.0 + caffe_loss.abs()), "loss {loss} against Caffe's {caffe_loss}");
    let values = read_raw(&dir.path().join("out.raw"));
    assert_eq!(values.size(), [100 * 10 + small * 10]);
    let full = values.narrow(0, 0, 1000).reshape([100, 10]);
    common::assert_close("ip2, batch 100", &full, &ip2, 1e-4);
    let part = values.narrow(0, 1000, small * 10).reshape([small, 10]);
    common::assert_close("ip2 after Reshape", &part, &ip2.narrow(0, 0, small), 1e-4);

    let npy_mean = read_npy(&caffe_ref("extra/mean/fmnist_train_mean.npy"));
    let want = npy_mean.to_kind(tch::Kind::Double).sum(tch::Kind::Double).double_value(&[]);
    let line = stdout.lines().find(|l| l.starts_with("mean ")).unwrap();
    assert!(line.starts_with("mean 1x28x28 sum "), "{line}");
    let sum: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((sum - want).abs() <= 1e-3 * want.abs(), "mean sum {sum} against {want}");

    assert!(stdout.contains("conv1 Convolution 20 1 5 5 (500) params 8 layers"), "{stdout}");
    assert!(stdout.contains("ip2 after weights written 0.5 0.5"), "{stdout}");
    assert!(stdout.contains("rebuilt LeNet phase 1 ip2 0.5 0.5 timed 1"), "{stdout}");
    assert!(stdout.contains("copied 100 10 (1000) 0.5"), "{stdout}");

    let device = stdout.lines().find(|l| l.starts_with("device ")).unwrap();
    assert!(device.contains("Blob::gpu_data: caffe-tch hands out no device memory"), "{device}");
    let error = stdout.lines().find(|l| l.starts_with("error ")).unwrap();
    common::assert_one_line_error(error, &["no_such_net.prototxt"]);
}

/// The solver's display lines' `Train net output #0: loss = X` values, in order.
fn logged_losses(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter_map(|l| l.split("Train net output #0: loss = ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// Caffe's `loss.txt`: the loss of each iteration, in order.
fn reference_losses(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect()
}

/// A C++ program that trains as Caffe's tools do (`tests/fixtures/cpp/train_api.cpp`):
/// Net::Backward's param and blob diffs are Caffe's, and so are those of
/// each layer's own Forward and Backward run as tools/caffe.cpp's time runs
/// them; backward ranges seeded
/// by a written diff, accumulation, ClearParamDiffs and a forward from a
/// written blob behave as Caffe's; SolverRegistry's solver, from Caffe's
/// LeNet solver file with fields set through the accessors, logs Caffe's 20
/// losses and ends at Caffe's weights, and a SIGHUP caught by a
/// SignalHandler snapshots; a second solver restores its snapshot.
#[test]
fn a_cpp_program_trains_through_caffe_hpp() {
    let _rng = common::rng_shared();
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = compile("train_api", dir.path()) else { return };
    let backward = caffe_ref("fixtures/lenet/train_backward");
    raw(&dir.path().join("data.raw"), &read_npy(&backward.join("blobs/data.npy")));
    raw(&dir.path().join("labels.raw"), &read_npy(&backward.join("blobs/label.npy")));
    // Caffe's solver file and net, reading the LMDB in the reference set.
    let sgd20 = caffe_ref("fixtures/lenet/sgd20");
    let lmdb = caffe_ref("lmdb/fmnist_train2k_lmdb");
    let net_text = std::fs::read_to_string(sgd20.join("lenet_train_test.prototxt")).unwrap();
    let net_text = net_text
        .replace("\"lmdb/fmnist_train_lmdb\"", &format!("{:?}", lmdb.display().to_string()))
        .replace("\"lmdb/fmnist_test_lmdb\"", &format!("{:?}", lmdb.display().to_string()));
    std::fs::write(dir.path().join("train_test.prototxt"), net_text).unwrap();
    let solver_text = std::fs::read_to_string(sgd20.join("lenet_solver.prototxt")).unwrap().replace(
        "net: \"fixtures/lenet/sgd20/lenet_train_test.prototxt\"",
        &format!("net: {:?}", dir.path().join("train_test.prototxt").display().to_string()),
    );
    std::fs::write(dir.path().join("solver.prototxt"), solver_text).unwrap();

    let out = Command::new(&program)
        .arg(caffe_ref("fixtures/lenet/net.prototxt"))
        .arg(caffe_ref("fixtures/lenet/weights.caffemodel"))
        .arg(dir.path().join("data.raw"))
        .arg(dir.path().join("labels.raw"))
        .arg(dir.path())
        .arg(dir.path().join("solver.prototxt"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    eprintln!("{stdout}");

    // Caffe::DeviceQuery logs what `caffe device_query` reports.
    assert!(stderr.contains("libtorch version: ") && stderr.contains("CUDA devices: "), "{stderr}");

    // One Forward and Backward: the loss, then every param and blob diff, against Caffe's.
    let caffe_loss = read_npy(&backward.join("blobs/loss.npy")).double_value(&[]);
    let loss: f64 = stdout.lines().find_map(|l| l.strip_prefix("phase 0 loss ")).unwrap().parse().unwrap();
    assert!((loss - caffe_loss).abs() <= 1e-4 * (1.0 + caffe_loss.abs()), "loss {loss} against Caffe's {caffe_loss}");
    for layer in ["conv1", "conv2", "ip1", "ip2"] {
        for j in 0..2 {
            let reference = read_npy(&backward.join(format!("params/{layer}_{j}_diff.npy")));
            let ours = read_raw(&dir.path().join(format!("{layer}_{j}_diff.raw")));
            common::assert_close(&format!("{layer} param {j} diff"), &ours, &reference, common::parity_tolerance());
        }
    }
    // Layer by layer (each layer's own Forward, then Backward from the last),
    // and a whole Backward after that: Caffe's diffs again.
    for layer in ["conv1", "conv2", "ip1", "ip2"] {
        for j in 0..2 {
            let reference = read_npy(&backward.join(format!("params/{layer}_{j}_diff.npy")));
            let ours = read_raw(&dir.path().join(format!("{layer}_{j}_layered_diff.raw")));
            common::assert_close(
                &format!("{layer} param {j} diff, layer by layer"),
                &ours,
                &reference,
                common::parity_tolerance(),
            );
        }
    }
    let reference = read_npy(&backward.join("params/conv1_0_diff.npy"));
    let ours = read_raw(&dir.path().join("conv1_0_after_layered_diff.raw"));
    common::assert_close("conv1 param 0 diff after layer by layer", &ours, &reference, common::parity_tolerance());
    let layered: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("layered loss "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((layered - caffe_loss).abs() <= 1e-4 * (1.0 + caffe_loss.abs()), "layer-by-layer loss {layered}");
    assert!(stdout.contains("output loss weight 1 bottoms of ip1 pool2 need 1"), "{stdout}");
    for blob in ["conv1", "pool1", "conv2", "pool2", "ip1", "ip2"] {
        let reference = read_npy(&backward.join(format!("blob_diffs/{blob}.npy")));
        let ours = read_raw(&dir.path().join(format!("blob_{blob}_diff.raw")));
        common::assert_close(&format!("blob {blob} diff"), &ours, &reference, common::parity_tolerance());
    }
    for line in [
        "test phase backward 1 same loss 1",
        "accumulates 1 same memory 1",
        "cleared 1",
        "seeded backward 1",
        "forward from written 1",
        "update 1 moved 1",
    ] {
        assert!(stdout.contains(line), "no '{line}' in:\n{stdout}");
    }

    // The solver: the accessors read the file, and its 20 steps log Caffe's losses.
    assert!(
        stdout.contains("param type SGD base_lr 0.01 lr_policy inv test_iter 1 x100 mode 0 has 1 0 weights 1"),
        "{stdout}"
    );
    assert!(stdout.contains("solver SGD nets 1 1 phases 0 1"), "{stdout}");
    assert!(stdout.contains("iter 10 weights moved 1") && stdout.contains("iter 20\n"), "{stdout}");
    // Steps 5-19 ran with a solver callback between their pieces: called at
    // each iteration's start and with its gradient, and the losses above are Caffe's still.
    assert!(stdout.contains("callbacks 5 5 5 of 1"), "{stdout}");
    let ours = logged_losses(&stderr);
    let reference = reference_losses(&sgd20.join("loss.txt"));
    assert_eq!(ours.len(), 20, "{stderr}");
    // As tests/solver.rs holds them: Caffe's own trace drifts from the exact
    // computation after step 16.
    for (k, (o, r)) in ours.iter().zip(&reference).enumerate() {
        let tol = if k < 17 { 1e-4 } else { 1e-3 };
        eprintln!("iteration {k}: loss {o} (Caffe {r}, relative error {:.1e})", (o - r).abs() / r.abs());
        assert!((o - r).abs() <= tol * r.abs(), "iteration {k}: loss {o} against Caffe's {r}");
    }
    let caffe_ip2 = read_npy(&sgd20.join("params_after20/ip2_0.npy")).to_kind(tch::Kind::Double).reshape([-1]);
    let our_ip2 = read_raw(&dir.path().join("ip2_weights_after.raw")).to_kind(tch::Kind::Double);
    let rel = (&our_ip2 - &caffe_ip2).norm().double_value(&[]) / caffe_ip2.norm().double_value(&[]);
    eprintln!("ip2 weights after 20 steps: relative L2 error {rel:.2e} against Caffe's");
    assert!(rel <= 5e-3, "ip2 weights after 20 steps: relative L2 error {rel:.2e}");
    assert!(dir.path().join("cpp_iter_20.caffemodel").exists(), "{stderr}");
    // The SIGHUP raised after 5 iterations is answered, as in Caffe, after
    // the next one.
    let snapshot = |name: &str| dir.path().join(name).exists();
    assert!(snapshot("cpp_iter_6.caffemodel") && snapshot("cpp_iter_6.solverstate"), "{stderr}");
    assert!(stdout.contains("restored iter 20 same weights 1"), "{stdout}");

    let errors: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("error: ")).collect();
    assert_eq!(errors.len(), 3, "{stdout}");
    common::assert_one_line_error(errors[0], &["Layer 'conv1'", "its net's own blobs"]);
    common::assert_one_line_error(errors[1], &["no_such_solver.prototxt"]);
    common::assert_one_line_error(errors[2], &["BackwardFromTo(99, 0)", "layers 0..9"]);
}
