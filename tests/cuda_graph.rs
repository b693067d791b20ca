//! `-cuda_graph`: the training pass recorded in a CUDA graph (`net::graph`,
//! `util::cuda_graph`, `layers::capture`). On a GPU (scripts/gpu_check.sh
//! sets CAFFE_TCH_TEST_DEVICE=cuda) the replayed training is checked against
//! the eager one; on the CPU what can run there: the CUDA shim's graph entry
//! points load and refuse cleanly, the reasons a net cannot be recorded, the
//! checks a recorded pass leaves to the host, and a CPU run that asks for a
//! graph training as it would without.
use std::path::{Path, PathBuf};

use caffe_tch::layers::capture;
use caffe_tch::net::graph::GraphRunner;
use caffe_tch::proto::caffe::Phase;
use caffe_tch::solver::{Solver, SolverOptions};
use caffe_tch::util::cuda_graph::CudaGraph;
use tch::{Device, Kind, Tensor};

use crate::common::{caffe_ref, net, test_device};

/// A graph on a machine without a GPU: the shim opens and its entry points
/// resolve, and making the graph is a one-line error; with a GPU, a recorded
/// `y = 2x + 1` replays on new values of x.
#[test]
fn graph_needs_a_gpu_or_replays_on_it() {
    if !caffe_tch::util::cuda::shim_built() {
        skip!("the CUDA shim was not built (build.rs found no CUDA headers: make cuda-headers)");
    }
    if !caffe_tch::util::cuda::is_available() {
        let err = CudaGraph::new(Device::Cuda(0)).err().expect("a CUDA graph without a GPU").to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.starts_with("creating a CUDA graph: "), "{err}");
        crate::common::note(&format!("a CUDA graph without a GPU: {err}"));
        let cpu = CudaGraph::new(Device::Cpu).err().expect("a CUDA graph on the CPU").to_string();
        assert!(cpu.contains("need a CUDA device"), "{cpu}");
        return;
    }
    let device = Device::Cuda(0);
    let mut graph = CudaGraph::new(device).unwrap();
    let mut x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).to_device(device);
    let y = graph.on_side_stream(|g| g.capture(|| Ok(&x * 2.0 + 1.0))).unwrap();
    for values in [[1.0f32, 2.0, 3.0], [-4.0, 0.5, 8.0]] {
        x.copy_(&Tensor::from_slice(&values).to_device(device));
        graph.replay().unwrap();
        let got = Vec::<f32>::try_from(y.to_device(Device::Cpu)).unwrap();
        assert_eq!(got, values.iter().map(|v| 2.0 * v + 1.0).collect::<Vec<_>>());
    }
}

const SOFTMAX_LOSS_NET: &str = r#"
name: "softmax"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 10 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
        loss_param { ignore_label: 3 } }
"#;

/// While a pass is recorded, the loss layer's label check is handed back to
/// the net (tagged with the layer) instead of reading the labels on the host,
/// and run on its own it fails as the eager forward does.
#[test]
fn recorded_forward_leaves_the_label_check_to_the_net() {
    let _rng = crate::common::rng_shared();
    let mut n = net(SOFTMAX_LOSS_NET, "softmax.prototxt", Phase::Train).unwrap();
    let data = Tensor::from_slice(&(0..40).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>()).reshape([4, 10]);
    n.set_input("data", &data).unwrap();
    n.set_input("label", &Tensor::from_slice(&[1.0f32, 3.0, 9.0, 0.0])).unwrap();
    let eager = n.forward().unwrap();
    let (recorded, checks) = capture::record(|| n.forward());
    let recorded = recorded.unwrap();
    assert_eq!(checks.len(), 1, "one label check");
    assert_eq!(checks[0].layer, Some(3), "tagged with the loss layer");
    // The VALID normalizer counted on the device while recording (3 of 4 labels count).
    assert!((recorded - eager).abs() <= 1e-6 * eager.abs(), "recorded loss {recorded} vs eager {eager}");
    (checks[0].check)(&checks[0].input).unwrap();
    let bad = Tensor::from_slice(&[1.0f32, 3.0, 12.0, 0.0]);
    let deferred = (checks[0].check)(&bad).expect_err("an out-of-range label").to_string();
    n.set_input("label", &bad).unwrap();
    let now = n.forward().expect_err("an out-of-range label").to_string();
    assert!(deferred.contains("label 12 is out of range for 10 classes"), "{deferred}");
    assert!(now.contains(&deferred), "eager: {now}\ndeferred: {deferred}");
}

/// A frozen BatchNorm (global statistics while training, as ResNets are
/// fine-tuned) records its 1/factor on the device, with the same values as
/// when it reads the factor on the host, including a factor of 0.
#[test]
fn frozen_batch_norm_records_without_reading_its_factor() {
    let text = r#"
name: "bn"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "out" batch_norm_param { use_global_stats: true } }
"#;
    let mut n = net(text, "bn.prototxt", Phase::Train).unwrap();
    let data =
        Tensor::from_slice(&(0..96).map(|i| (i as f32 * 0.61).cos() * 3.0).collect::<Vec<_>>()).reshape([2, 3, 4, 4]);
    n.set_input("data", &data).unwrap();
    for factor in [0.0f32, 7.3, 999.0] {
        tch::no_grad(|| {
            let p = n.learnable_params();
            p[0].data.shallow_clone().copy_(&Tensor::from_slice(&[0.5f32, -1.25, 3.0]));
            p[1].data.shallow_clone().copy_(&Tensor::from_slice(&[2.0f32, 0.75, 9.5]));
            p[2].data.shallow_clone().copy_(&Tensor::from_slice(&[factor]));
        });
        n.forward().unwrap();
        let eager = n.blob("out").unwrap().detach().copy();
        let (recorded, checks) = capture::record(|| n.forward());
        recorded.unwrap();
        assert!(checks.is_empty());
        let same = n.blob("out").unwrap().equal(&eager);
        assert!(same, "factor {factor}: the recorded forward differs from the eager one");
    }
}

/// What keeps a net out of a graph is named, the device last (so that each
/// reason shows on the CPU too).
#[test]
fn graph_obstacles_name_their_reason() {
    let lenet = std::fs::read_to_string(caffe_ref("fixtures/lenet/sgd20/lenet_train_test.prototxt")).unwrap();
    let lenet = lenet.replace("lmdb/fmnist_train_lmdb", &caffe_ref("lmdb/fmnist_train2k_lmdb").display().to_string());
    let n = net(&lenet, "lenet.prototxt", Phase::Train).unwrap();
    let why = n.graph_obstacle().expect("the CPU has no graphs");
    assert!(why.contains("need a CUDA device"), "{why}");
    let err = GraphRunner::new(&n).err().expect("no runner on the CPU").to_string();
    assert!(err.starts_with("CUDA graphs: "), "{err}");
    let debug = net(&format!("debug_info: true\n{lenet}"), "lenet.prototxt", Phase::Train).unwrap();
    assert!(debug.graph_obstacle().unwrap().contains("debug_info"), "{:?}", debug.graph_obstacle());
    let dropin = r#"
name: "d"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "grow" type: "DropIn" bottom: "data" bottom: "data" top: "grown" }
"#;
    let d = net(dropin, "dropin.prototxt", Phase::Train).unwrap();
    let why = d.graph_obstacle().unwrap();
    assert!(why.contains("'grow' (DropIn) changes with the iteration"), "{why}");
}

/// LeNet's solver for 20 iterations on the 2,000-image LMDB, in `dir`,
/// from Caffe's weights; `extra` adds or overrides solver fields.
fn lenet_solver(dir: &Path, extra: &str) -> PathBuf {
    let sgd20 = caffe_ref("fixtures/lenet/sgd20");
    let net = std::fs::read_to_string(sgd20.join("lenet_train_test.prototxt")).unwrap();
    let net = net.replace("lmdb/fmnist_train_lmdb", &caffe_ref("lmdb/fmnist_train2k_lmdb").display().to_string());
    std::fs::write(dir.join("net.prototxt"), net).unwrap();
    let base = format!(
        "net: \"{}\"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: \"inv\"\ngamma: 0.0001\n\
         power: 0.75\nmax_iter: 20\ndisplay: 0\nsnapshot_after_train: false\nrandom_seed: 1\n\
         snapshot_prefix: \"{}\"\nweights: \"{}\"",
        dir.join("net.prototxt").display(),
        dir.join("out").display(),
        caffe_ref("fixtures/lenet/weights.caffemodel").display()
    );
    let field = |line: &str| line.split(':').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = extra.lines().map(field).collect();
    let mut solver: Vec<&str> = base.lines().filter(|l| !overridden.contains(&field(l))).collect();
    solver.extend(extra.lines());
    let solver = solver.join("\n") + "\n";
    let file = dir.join("solver.prototxt");
    std::fs::write(&file, solver).unwrap();
    file
}

/// The loss trace, the final weights, and whether the pass and the update
/// were replaying CUDA graphs at the end.
type Trained = (Vec<(i64, f32)>, Vec<Tensor>, (bool, bool));

fn train_with(dir: &Path, extra: &str, setup: impl FnOnce(&mut Solver)) -> Trained {
    let options = SolverOptions { device: Some(test_device()), ..Default::default() };
    let mut solver = Solver::from_file(&lenet_solver(dir, extra), options).unwrap_or_else(|e| panic!("{e}"));
    solver.set_progress(false);
    setup(&mut solver);
    solver.solve().unwrap_or_else(|e| panic!("{e}"));
    let weights = solver.net().learnable_params().iter().map(|p| p.data.detach().to_device(Device::Cpu)).collect();
    (solver.losses().to_vec(), weights, solver.replaying_graphs())
}

/// LeNet trained 20 iterations with `-cuda_graph` and without, with SGD and
/// with Adam: the same loss trace and the same weights (on a GPU: two
/// warm-up iterations, one recorded, seventeen replayed, pass and update,
/// within 1e-5 of each loss and 1e-4·max|w|; on the CPU the graph is refused
/// and both run eagerly, bit for bit).
#[test]
fn lenet_trains_alike_with_and_without_a_graph() {
    let _rng = crate::common::rng_exclusive();
    let tmp = tempfile::tempdir().unwrap();
    // cuDNN's backward may differ from run to run by rounding (atomics), so on
    // a GPU two eager runs are not bit-identical either; on the CPU they are.
    let (loss_tol, weight_tol) = if test_device().is_cuda() { (1e-5, 1e-4) } else { (0.0, 0.0) };
    for rule in ["type: \"SGD\"", "type: \"Adam\"\nbase_lr: 0.001\nmomentum2: 0.999\nlr_policy: \"fixed\""] {
        let (eager_losses, eager_weights, _) = train_with(tmp.path(), rule, |_| {});
        let (graph_losses, graph_weights, replaying) = train_with(tmp.path(), rule, |s| s.use_cuda_graph());
        let expected = if test_device().is_cuda() { (true, true) } else { (false, false) };
        assert_eq!(replaying, expected, "{rule}: (pass, update) replaying CUDA graphs");
        assert_eq!(eager_losses.len(), 20);
        assert_eq!(graph_losses.len(), 20);
        for ((i, a), (_, b)) in eager_losses.iter().zip(&graph_losses) {
            assert!((a - b).abs() <= loss_tol * a.abs().max(1.0), "{rule}, iteration {i}: eager loss {a}, graph {b}");
        }
        for (a, b) in eager_weights.iter().zip(&graph_weights) {
            let scale = a.abs().max().double_value(&[]).max(1e-12);
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff <= weight_tol * scale, "{rule}: weights differ by {diff} (max |w| {scale})");
        }
        assert!(eager_weights.iter().all(|w| w.kind() == Kind::Float));
    }
}

/// The update rules read their per-iteration coefficients (the rate, the
/// momentum, Adam's correction) from a device tensor in a recorded update;
/// on this device, with the coefficients in a tensor, every rule gives the
/// very weights it gives with them as numbers.
#[test]
fn every_rule_updates_alike_with_its_coefficients_in_a_tensor() {
    let _rng = crate::common::rng_exclusive();
    let tmp = tempfile::tempdir().unwrap();
    for rule in [
        "type: \"SGD\"",
        "type: \"Nesterov\"",
        "type: \"AdaGrad\"\nmomentum: 0",
        "type: \"RMSProp\"\nmomentum: 0\nrms_decay: 0.98",
        "type: \"AdaDelta\"\nbase_lr: 1\nmomentum: 0.95\ndelta: 1e-6\nlr_policy: \"fixed\"",
        "type: \"Adam\"\nbase_lr: 0.001\nmomentum2: 0.999\nlr_policy: \"fixed\"",
        "type: \"SGD\"\nlr_policy: \"triangular\"\nmax_lr: 0.02\nstepsize: 4\ncyclical_momentum: 0.8",
    ] {
        let extra = format!("{rule}\nmax_iter: 6");
        let (numbers, w_numbers, _) = train_with(tmp.path(), &extra, |_| {});
        let (tensor, w_tensor, _) = train_with(tmp.path(), &extra, |s| s.set_tensor_coefficients(true));
        assert_eq!(numbers, tensor, "{rule}: losses");
        for (a, b) in w_numbers.iter().zip(&w_tensor) {
            assert!(a.equal(b), "{rule}: the weights differ");
        }
    }
}

/// `-cuda_graph` and CAFFE_TCH_CUDA_GRAPH=1 through `caffe train`: on a
/// machine without a GPU, one warning line with the reason, and the run
/// trains and exits 0.
#[test]
fn train_asks_for_a_graph_by_flag_or_environment() {
    if caffe_tch::util::cuda::is_available() {
        crate::common::note("a GPU is present: the CPU fallback of -cuda_graph is not checked here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let solver = lenet_solver(tmp.path(), "max_iter: 2");
    for (flag, env) in [(true, false), (false, true)] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_caffe"));
        cmd.args(["train", "-solver", solver.to_str().unwrap()]);
        if flag {
            cmd.arg("-cuda_graph");
        }
        if env {
            cmd.env("CAFFE_TCH_CUDA_GRAPH", "1");
        }
        let out = cmd.output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("CUDA graphs:")).collect();
        assert_eq!(warnings.len(), 1, "{log}");
        assert!(warnings[0].starts_with('W') && warnings[0].contains("need a CUDA device"), "{}", warnings[0]);
        assert!(log.contains("Optimization Done."), "{log}");
    }
}
