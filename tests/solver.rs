//! The solvers against BVLC Caffe: 20 LeNet steps from Caffe's weights for
//! each update rule (losses and the final history), resuming (Caffe's own
//! snapshots, and split runs equal to straight ones), and the `caffe train` /
//! `caffe test` commands end to end (faults, signals, crash safety).
//!
//! The nets read Caffe's Fashion-MNIST training LMDB in key order. Most tests
//! feed the same records through Input layers (from an .npy copy of the first
//! 1280), so the data order is under the test's control; one runs Caffe's
//! solver prototxt unchanged through the Data layer.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use caffe_tch::layers::known_types;
use caffe_tch::net::Net;
use caffe_tch::proto::binary::{blob_data_f32, read_message};
use caffe_tch::proto::caffe::{BlobShape, InputParameter, NetParameter, SolverParameter, SolverState};
use caffe_tch::proto::text::{self, TextOptions};
use caffe_tch::solver::{NetRole, Solver, SolverOptions};
use tch::{Device, Kind, Tensor};

use crate::common::{caffe_ref, fixture, rng_shared};

const BATCH: i64 = 64;

/// The first 1280 training records (20 batches of 64), scaled by 1/256 as the
/// LeNet prototxt's transform_param does.
fn training_records() -> (Tensor, Tensor) {
    let images = Tensor::read_npy(fixture("solver/fmnist_train_first1280_images_u8.npy")).expect("images npy");
    let labels = Tensor::read_npy(fixture("solver/fmnist_train_first1280_labels_u8.npy")).expect("labels npy");
    (images.to_kind(Kind::Float) * 0.00390625, labels.to_kind(Kind::Float))
}

/// A net prototxt with its Data layers replaced by Input layers of the same shapes.
fn with_input_layers(net_file: &Path) -> NetParameter {
    let mut net = text::read_file::<NetParameter>(net_file, TextOptions::default()).expect("net prototxt").message;
    for l in &mut net.layer {
        if l.r#type() == "Data" {
            let batch = l.data_param.as_ref().map(|d| d.batch_size() as i64).unwrap_or(BATCH);
            l.r#type = Some("Input".into());
            l.data_param = None;
            l.transform_param = None;
            l.input_param = Some(InputParameter {
                shape: vec![BlobShape { dim: vec![batch, 1, 28, 28] }, BlobShape { dim: vec![batch] }],
            });
        }
    }
    net
}

/// Caffe's solver file, made to train `max_iter` steps of `net` without test
/// nets, snapshotting under `dir`.
fn solver_param(solver_file: &Path, net: NetParameter, max_iter: i32, dir: &Path) -> SolverParameter {
    let mut p = text::read_file::<SolverParameter>(solver_file, TextOptions::default()).expect("solver").message;
    p.net = None;
    p.net_param = Some(net);
    p.test_iter.clear();
    p.test_interval = None;
    p.max_iter = Some(max_iter);
    p.display = Some(1);
    p.snapshot_prefix = Some(dir.join("snap").display().to_string());
    p
}

/// Feeds training batches in order, from batch `first` on (Caffe's DB cursor).
fn feed_from(first: i64) -> caffe_tch::solver::Feeder {
    let (images, labels) = training_records();
    let batches = images.size()[0] / BATCH;
    let mut next = first;
    Box::new(move |role, net: &mut Net| {
        assert_eq!(role, NetRole::Train, "these solvers have no test nets");
        let b = next % batches;
        next += 1;
        net.set_input("data", &images.narrow(0, b * BATCH, BATCH))?;
        net.set_input("label", &labels.narrow(0, b * BATCH, BATCH))
    })
}

fn new_solver(param: SolverParameter) -> Solver {
    let mut s = Solver::new(param, None, SolverOptions { device: Some(Device::Cpu), ..Default::default() })
        .unwrap_or_else(|e| panic!("solver: {e}"));
    s.set_progress(false);
    s
}

/// Caffe's loss.txt: (iter, loss before that step's update, lr).
fn reference_losses(path: &Path) -> Vec<(i64, f64, f64)> {
    std::fs::read_to_string(path)
        .expect("loss.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let v: Vec<f64> = l.split_whitespace().map(|x| x.parse().expect("number")).collect();
            (v[0] as i64, v[1], v[2])
        })
        .collect()
}

/// max over steps of |ours − Caffe's| / |Caffe's|.
fn max_rel_loss_error(ours: &[(i64, f32)], reference: &[(i64, f64, f64)], steps: usize) -> f64 {
    assert!(
        ours.len() >= steps && reference.len() >= steps,
        "{} of our steps, {} of Caffe's",
        ours.len(),
        reference.len()
    );
    let mut worst = 0.0f64;
    for k in 0..steps {
        assert_eq!(ours[k].0, reference[k].0, "iteration numbers");
        let rel = (ours[k].1 as f64 - reference[k].1).abs() / reference[k].1.abs();
        eprintln!("iter {:2}: ours {:.8} caffe {:.8} rel {rel:.2e}", ours[k].0, ours[k].1, reference[k].1);
        worst = worst.max(rel);
    }
    worst
}

/// Caffe's 20 LeNet steps from `fixtures/lenet/weights.caffemodel` with the
/// solver file in `dir`, fed through Input layers.
fn run_lenet(solver_dir: &Path, solver_file: &str, steps: i32) -> (Solver, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let net = with_input_layers(&solver_dir.join("lenet_train_test.prototxt"));
    let mut param = solver_param(&solver_dir.join(solver_file), net, steps, tmp.path());
    param.weights = vec![caffe_ref("fixtures/lenet/weights.caffemodel").display().to_string()];
    let mut solver = new_solver(param);
    solver.set_feeder(feed_from(0));
    solver.solve().unwrap_or_else(|e| panic!("solve: {e}"));
    (solver, tmp)
}

/// ‖ours − Caffe's‖ / ‖Caffe's‖ (L2 norms). Single elements can flip (a ReLU
/// or max-pool choice that changes between nearly equal values), so whole-blob
/// norms are compared rather than the largest element.
fn rel_l2(ours: &Tensor, reference: &Tensor) -> f64 {
    let ours = ours.to_kind(Kind::Double).reshape([-1]);
    let reference = reference.to_kind(Kind::Double).reshape([-1]);
    let norm = reference.norm().double_value(&[]);
    let diff = (&ours - &reference).norm().double_value(&[]);
    if norm > 0.0 {
        diff / norm
    } else {
        diff
    }
}

/// The worst [`rel_l2`] over the history blobs of Caffe's solverstate.
fn max_rel_history_error(solver: &Solver, state_file: &Path) -> f64 {
    let state: SolverState = read_message(state_file).expect("solverstate");
    assert_eq!(state.history.len(), solver.history().len(), "history blob count");
    assert_eq!(state.iter(), solver.iter() as i32);
    let mut worst = 0.0f64;
    for (i, (ours, blob)) in solver.history().iter().zip(&state.history).enumerate() {
        let rel = rel_l2(ours, &Tensor::from_slice(&blob_data_f32(blob)));
        eprintln!("history {i}: relative L2 error {rel:.2e}");
        worst = worst.max(rel);
    }
    worst
}

#[test]
fn sgd_20_steps_match_caffe() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    let sgd20 = caffe_ref("fixtures/lenet/sgd20");
    let (solver, _tmp) = run_lenet(&sgd20, "lenet_solver.prototxt", 20);
    let reference = reference_losses(&sgd20.join("loss.txt"));
    // Caffe's own trace drifts from the exact (float64) computation: 9.6e-5 at
    // step 17 and 3.5e-4 at step 19, where ours stays within 2.3e-7 of it
    // (experiments/sgd_exact). So steps 0-16 are held to 1e-4, all 20 to 1e-3.
    let early = max_rel_loss_error(solver.losses(), &reference, 17);
    let all = max_rel_loss_error(solver.losses(), &reference, 20);
    eprintln!("SGD: max relative loss error {early:.2e} (steps 0-16), {all:.2e} (steps 0-19)");
    assert!(early <= 1e-4, "SGD steps 0-16 drift from Caffe's: {early:.2e}");
    assert!(all <= 1e-3, "SGD steps 0-19 drift from Caffe's: {all:.2e}");
    // The final weights against Caffe's.
    let caffe: NetParameter = read_message(&sgd20.join("weights_after20.caffemodel")).unwrap();
    let mut worst = 0.0f64;
    for layer in caffe.layer.iter().filter(|l| !l.blobs.is_empty()) {
        let ours = solver.net().layer_blobs(layer.name()).expect("layer");
        for (o, b) in ours.iter().zip(&layer.blobs) {
            worst = worst.max(rel_l2(o, &Tensor::from_slice(&blob_data_f32(b))));
        }
    }
    eprintln!("SGD: final weights relative L2 error {worst:.2e}");
    assert!(worst <= 5e-3, "final weights differ from Caffe's: {worst:.2e}");
}

/// Caffe's solver prototxt unchanged, its data read by the Data layer from the
/// LMDB (copied into the repo).
#[test]
fn sgd_through_the_data_layer_matches_caffe() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    if !known_types().contains(&"Data") {
        skip!("this build has no Data layer");
    }
    let sgd20 = caffe_ref("fixtures/lenet/sgd20");
    let lmdb = caffe_ref("lmdb/fmnist_train2k_lmdb");
    let tmp = tempfile::tempdir().unwrap();
    let mut net = text::read_file::<NetParameter>(&sgd20.join("lenet_train_test.prototxt"), TextOptions::default())
        .unwrap()
        .message;
    for l in net.layer.iter_mut().filter(|l| l.r#type() == "Data") {
        l.data_param.as_mut().unwrap().source = Some(lmdb.display().to_string());
    }
    let mut param = solver_param(&sgd20.join("lenet_solver.prototxt"), net, 20, tmp.path());
    param.weights = vec![caffe_ref("fixtures/lenet/weights.caffemodel").display().to_string()];
    let mut solver = new_solver(param);
    solver.solve().unwrap();
    let reference = reference_losses(&sgd20.join("loss.txt"));
    // As in sgd_20_steps_match_caffe.
    let early = max_rel_loss_error(solver.losses(), &reference, 17);
    let all = max_rel_loss_error(solver.losses(), &reference, 20);
    eprintln!("SGD through the Data layer: max relative loss error {early:.2e} (steps 0-16), {all:.2e} (0-19)");
    assert!(early <= 1e-4 && all <= 1e-3, "{early:.2e} {all:.2e}");
}

/// One of Caffe's extra/solvers runs: losses over `steps` and the final history.
fn check_reference_solver(kind: &str, steps: usize, loss_tol: f64, history_tol: Option<f64>) {
    let dir = caffe_ref(&format!("extra/solvers/{kind}"));
    let (solver, _tmp) = run_lenet(&dir, "solver.prototxt", 20);
    assert_eq!(solver.solver_type().name(), kind);
    let worst = max_rel_loss_error(solver.losses(), &reference_losses(&dir.join("loss.txt")), steps);
    eprintln!("{kind}: max relative loss error {worst:.2e} over {steps} steps");
    assert!(worst <= loss_tol, "{kind}: loss drifts from Caffe's: {worst:.2e} > {loss_tol:.0e}");
    let state = dir.join(format!("lenet_{kind}_iter_20.solverstate"));
    let h = max_rel_history_error(&solver, &state);
    eprintln!("{kind}: history max relative error {h:.2e}");
    if let Some(tol) = history_tol {
        assert!(h <= tol, "{kind}: history differs from Caffe's solverstate: {h:.2e} > {tol:.0e}");
    }
}

// Loss tolerances: extra/solvers/sensitivity.txt (how far Caffe's own trace
// moves when the start weights change by 1e-7 relative). History tolerances:
// whole-blob relative L2 errors, a few times what we measure, because single
// units flip: for Adam 94% of the first-moment error sits in one ip1 unit (a
// ReLU that is on for a sample in one run and off in the other).
#[test]
fn nesterov_matches_caffe() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
                             // Since one-channel conv inputs run channels-last too, our trace makes the
                             // discrete flip Caffe's own 1e-7-perturbed run makes: the loss error peaks at
                             // 1.86e-4 at step 17, sensitivity.txt's maximum to the digit, and 54% of the
                             // history's error (3.1e-2) sits in one ip1 unit, so the bound is Adam's.
    check_reference_solver("Nesterov", 20, 2e-4, Some(5e-2));
}

#[test]
fn adagrad_matches_caffe() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
                             // AdaGrad's first step is lr·sign(g): gradients that cancel to ~0 take a
                             // sign from the summation order. Caffe's own trace moves 1.53e-3 for a
                             // 1e-7 change of the start weights; our channels-last convolutions sum
                             // the weight gradients in another order than Caffe's im2col GEMM, which
                             // lands at 2.6e-3 (1.7x that sensitivity). The bound is twice it.
    check_reference_solver("AdaGrad", 20, 3.1e-3, Some(5e-3));
}

#[test]
fn rmsprop_first_steps_match_caffe() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
                             // Chaotic after step 1 with the BVLC settings (the loss jumps to 72.8): two steps only.
    check_reference_solver("RMSProp", 2, 1e-5, None);
}

#[test]
fn adadelta_matches_caffe() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    check_reference_solver("AdaDelta", 20, 2e-4, Some(1e-4));
}

#[test]
fn adam_matches_caffe() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    check_reference_solver("Adam", 20, 2e-4, Some(5e-2));
}

// ----- resuming -------------------------------------------------------------

/// Caffe's own snapshot at iteration 5000 (its learned_net path is relative to
/// the folder Caffe ran in, so the model is found beside the state) resumes:
/// the iteration, history and rate carry on, and the losses stay in the range
/// Caffe's log shows around iteration 5000.
#[test]
fn resumes_from_caffe_snapshot() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    let run = caffe_ref("lenet_run");
    let tmp = tempfile::tempdir().unwrap();
    let net = with_input_layers(&run.join("lenet_train_test.prototxt"));
    let param = solver_param(&run.join("lenet_solver.prototxt"), net, 5010, tmp.path());
    let mut solver = new_solver(param);
    let state_file = run.join("lenet_iter_5000.solverstate");
    solver.restore(&state_file).unwrap_or_else(|e| panic!("restore: {e}"));
    assert_eq!(solver.iter(), 5000);
    // The history is Caffe's, bit for bit.
    let state: SolverState = read_message(&state_file).unwrap();
    for (ours, blob) in solver.history().iter().zip(&state.history) {
        assert_eq!(rel_l2(ours, &Tensor::from_slice(&blob_data_f32(blob))), 0.0);
    }
    // The weights are those of lenet_iter_5000.caffemodel.
    let model: NetParameter = read_message(&run.join("lenet_iter_5000.caffemodel")).unwrap();
    let ip2 = model.layer.iter().find(|l| l.name() == "ip2").unwrap();
    assert_eq!(
        rel_l2(solver.net().layer_blobs("ip2").unwrap()[0], &Tensor::from_slice(&blob_data_f32(&ip2.blobs[0]))),
        0.0
    );
    // Caffe reads its DB from the first record again after a restore.
    solver.set_feeder(feed_from(0));
    solver.solve().unwrap();
    assert_eq!(solver.iter(), 5010);
    // Caffe's train.log: "Iteration 5000, lr = 0.00737788".
    assert!((solver.policy().rate(5000, &mut 0) - 0.00737788).abs() < 1e-8);
    // Caffe's displayed losses from iteration 4000 to 6000 lie in [0.0955, 0.438].
    let losses = solver.losses();
    assert_eq!(losses.len(), 10);
    for &(it, l) in losses {
        assert!((0.02..0.9).contains(&l), "iteration {it}: loss {l} is not that of a trained LeNet");
    }
    let mean: f32 = losses.iter().map(|l| l.1).sum::<f32>() / 10.0;
    assert!(mean < 0.5, "mean loss {mean}");
    assert!(tmp.path().join("snap_iter_5010.solverstate").exists());
}

/// N steps, snapshot, resume, M more steps = N + M steps straight through (given
/// the same data order). Adam: two history blobs per parameter, and t = iter + 1.
#[test]
fn split_run_equals_straight_run() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    let dir = caffe_ref("extra/solvers/Adam");
    let (straight, _t1) = run_lenet(&dir, "solver.prototxt", 6);

    let (first, _t2) = run_lenet(&dir, "solver.prototxt", 3);
    let snapshot = first.last_snapshot().expect("snapshot after train").clone();
    assert!(snapshot.state.ends_with("snap_iter_3.solverstate"), "{}", snapshot.state.display());
    let tmp = tempfile::tempdir().unwrap();
    let net = with_input_layers(&dir.join("lenet_train_test.prototxt"));
    let mut resumed = new_solver(solver_param(&dir.join("solver.prototxt"), net, 6, tmp.path()));
    resumed.restore(&snapshot.state).unwrap();
    assert_eq!(resumed.iter(), 3);
    resumed.set_feeder(feed_from(3));
    resumed.solve().unwrap();

    let straight_tail: Vec<(i64, f32)> = straight.losses()[3..].to_vec();
    assert_eq!(resumed.losses(), &straight_tail[..], "losses after the resume");
    for (a, b) in straight.net().learnable_params().iter().zip(resumed.net().learnable_params()) {
        assert_eq!(rel_l2(&b.data, &a.data), 0.0, "{}", a.display());
    }
    for (a, b) in straight.history().iter().zip(resumed.history()) {
        assert_eq!(rel_l2(b, a), 0.0);
    }
}

/// iter_size, gradient clipping and L1 regularization: two accumulated half
/// batches of 32 with clip_gradients make one step; the losses are the average
/// of the halves, and the clipped step equals a manual computation.
#[test]
fn iter_size_clip_and_l1() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    let sgd20 = caffe_ref("fixtures/lenet/sgd20");
    let tmp = tempfile::tempdir().unwrap();
    let mut net = with_input_layers(&sgd20.join("lenet_train_test.prototxt"));
    for l in net.layer.iter_mut().filter(|l| l.r#type() == "Input") {
        for s in &mut l.input_param.as_mut().unwrap().shape {
            s.dim[0] = 32;
        }
    }
    let mut param = solver_param(&sgd20.join("lenet_solver.prototxt"), net.clone(), 1, tmp.path());
    param.weights = vec![caffe_ref("fixtures/lenet/weights.caffemodel").display().to_string()];
    param.iter_size = Some(2);
    param.clip_gradients = Some(0.5);
    param.regularization_type = Some("L1".into());
    param.snapshot_after_train = Some(false);
    let (images, labels) = training_records();
    let mut solver = new_solver(param.clone());
    let (im, lb) = (images.shallow_clone(), labels.shallow_clone());
    let mut half = 0;
    solver.set_feeder(Box::new(move |_, net: &mut Net| {
        net.set_input("data", &im.narrow(0, half * 32, 32))?;
        half += 1;
        net.set_input("label", &lb.narrow(0, (half - 1) * 32, 32))
    }));
    let before: Vec<Tensor> = solver.net().learnable_params().iter().map(|p| p.data.detach().copy()).collect();
    solver.solve().unwrap();

    // By hand: the gradients of the 64-batch mean equal the average of the halves'.
    let mut check = new_solver(SolverParameter { snapshot_after_train: Some(false), ..param });
    check.net_mut().set_input("data", &images.narrow(0, 0, 32)).unwrap();
    check.net_mut().set_input("label", &labels.narrow(0, 0, 32)).unwrap();
    let l1 = check.net_mut().forward().unwrap();
    check.net_mut().backward().unwrap();
    check.net_mut().set_input("data", &images.narrow(0, 32, 32)).unwrap();
    check.net_mut().set_input("label", &labels.narrow(0, 32, 32)).unwrap();
    let l2 = check.net_mut().forward().unwrap();
    check.net_mut().backward().unwrap();
    assert!(((l1 + l2) / 2.0 - solver.losses()[0].1 as f64).abs() < 1e-6);
    // Caffe clips the accumulated (summed) gradients, then divides by iter_size.
    let grads: Vec<Tensor> = check.net().learnable_params().iter().map(|p| p.diff().copy()).collect();
    let norm = grads.iter().map(|g| g.square().sum(Kind::Double).double_value(&[])).sum::<f64>().sqrt();
    assert!(norm > 0.5, "the test needs the clip to act (norm {norm})");
    let lr = 0.01; // inv policy at iteration 0
    for ((p, g), w0) in solver.net().learnable_params().iter().zip(&grads).zip(&before) {
        let expected =
            ((g * (0.5 / norm)) / 2.0 + w0.sign() * (0.0005 * p.decay_mult as f64)) * (lr * p.lr_mult as f64);
        // w0 − w1 in float keeps about 3 digits of a step this small relative to w.
        let rel = rel_l2(&(w0 - &p.data), &expected);
        assert!(rel < 5e-3, "{}: step differs by {rel:.2e}", p.display());
    }
}

// ----- faults -----------------------------------------------------------------

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn solver_error(dir: &Path, text: &str) -> String {
    let file = write(dir, "solver.prototxt", text);
    match Solver::from_file(&file, SolverOptions::default()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "one line: {msg}");
            msg
        }
    }
}

const TINY_NET: &str = r#"name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 8 dim: 1 dim: 4 dim: 4 } shape { dim: 8 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"#;

#[test]
fn solver_faults_are_one_line_errors() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = write(dir, "net.prototxt", TINY_NET);
    let prefix = dir.join("snap");
    let base = format!("base_lr: 0.1 lr_policy: \"fixed\" max_iter: 1 snapshot_prefix: \"{}\"", prefix.display());

    let e = solver_error(dir, &format!("net: \"no/such/net.prototxt\" {base}"));
    assert!(e.contains("no/such/net.prototxt") && e.contains("not found"), "{e}");
    assert!(e.contains(&dir.display().to_string()), "names the solver's folder: {e}");

    // A net named relative to the solver's folder, run from elsewhere: the hint says so.
    let e = solver_error(dir, &format!("net: \"net.prototxt\" {base}"));
    assert!(e.contains("run from there or fix the path"), "{e}");

    let net = net.display();
    let e = solver_error(dir, &format!("net: \"{net}\" test_iter: -5 test_interval: 10 {base}"));
    assert!(e.contains("test_iter must be ≥ 0, got -5"), "{e}");
    let e = solver_error(dir, &format!("net: \"{net}\" test_iter: 5 {base}"));
    assert!(e.contains("test_interval must be > 0"), "{e}");
    let e = solver_error(dir, &format!("net: \"{net}\" type: \"Sgd\" {base}"));
    assert!(e.contains("Unknown solver type: Sgd") && e.contains("SGD"), "{e}");
    let e = solver_error(dir, &format!("net: \"{net}\" lr_policy: \"step\" base_lr: 0.1 max_iter: 1"));
    assert!(e.contains("needs stepsize"), "{e}");
    let e = solver_error(dir, &format!("net: \"{net}\" type: \"AdaGrad\" momentum: 0.9 {base}"));
    assert!(e.contains("Momentum cannot be used with AdaGrad"), "{e}");
    let e = solver_error(dir, &format!("net: \"{net}\" regularization_type: \"L3\" {base}"));
    assert!(e.contains("Unknown regularization type: L3"), "{e}");
    let e = solver_error(dir, &base);
    assert!(e.contains("must specify a train net"), "{e}");
    let e = solver_error(
        dir,
        &format!(
            "net: \"{net}\" base_lr: 0.1 lr_policy: \"fixed\" snapshot_prefix: \"{}/missing/dir/x\"",
            dir.display()
        ),
    );
    assert!(e.contains("Cannot write to snapshot prefix"), "{e}");

    // A solverstate of another solver type does not fit.
    let sgd = write(dir, "sgd.prototxt", &format!("net: \"{net}\" {base}"));
    let mut s = Solver::from_file(&sgd, SolverOptions::default()).unwrap();
    s.set_progress(false);
    s.solve().unwrap();
    let state = s.last_snapshot().unwrap().state.clone();
    let adam = write(dir, "adam.prototxt", &format!("net: \"{net}\" type: \"Adam\" {base}"));
    let mut a = Solver::from_file(&adam, SolverOptions::default()).unwrap();
    let e = a.restore(&state).unwrap_err().to_string();
    assert!(e.contains("holds 2 history blobs") && e.contains("needs 4"), "{e}");
}

/// A non-finite loss stops training with an error naming the iteration, after
/// writing a snapshot of the weights that produced it.
#[test]
fn non_finite_loss_stops_with_a_snapshot() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    let tmp = tempfile::tempdir().unwrap();
    let net = write(tmp.path(), "net.prototxt", TINY_NET);
    let solver_file = write(
        tmp.path(),
        "solver.prototxt",
        &format!(
            "net: \"{}\" base_lr: 0.1 lr_policy: \"fixed\" max_iter: 50 snapshot_prefix: \"{}/snap\"",
            net.display(),
            tmp.path().display()
        ),
    );
    let mut s = Solver::from_file(&solver_file, SolverOptions::default()).unwrap();
    s.set_progress(false);
    // The fourth batch holds a NaN.
    let mut batch = 0;
    s.set_feeder(Box::new(move |_, net: &mut Net| {
        let data = Tensor::ones([8, 1, 4, 4], (Kind::Float, Device::Cpu));
        let data = if batch == 3 { data * f64::NAN } else { data };
        batch += 1;
        net.set_input("data", &data)?;
        net.set_input("label", &Tensor::from_slice(&[0f32, 1., 2., 0., 1., 2., 0., 1.]))
    }));
    let e = s.solve().unwrap_err().to_string();
    assert_eq!(s.iter(), 3);
    assert!(e.contains("Iteration 3: the loss is NaN (not finite)"), "{e}");
    assert!(tmp.path().join("snap_iter_3.solverstate").exists(), "{e}");
    // The snapshot holds the (finite) weights from before that iteration.
    let model: NetParameter = read_message(&tmp.path().join("snap_iter_3.caffemodel")).unwrap();
    assert!(model.layer.iter().flat_map(|l| &l.blobs).flat_map(|b| &b.data).all(|v| v.is_finite()));
}

/// train_net and test_net files, test_state stages, test_compute_loss,
/// average_loss; and every forward sees the solver's iteration
/// (Net::set_iteration, which DropIn reads), on the train and the test nets.
#[test]
fn nets_states_and_iterations() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = TINY_NET.replace(r#"include { phase: TEST }"#, r#"include { phase: TEST stage: "val" }"#);
    let net = write(dir, "net.prototxt", &net);
    let solver = write(
        dir,
        "solver.prototxt",
        &format!(
            r#"train_net: "{net}" test_net: "{net}" test_net: "{net}" test_iter: 2 test_iter: 3
               test_state {{ stage: "val" }} test_state {{ }}
               test_interval: 4 test_compute_loss: true average_loss: 3 display: 2
               base_lr: 0.1 lr_policy: "fixed" max_iter: 8 snapshot_prefix: "{}/snap""#,
            dir.display(),
            net = net.display()
        ),
    );
    let mut s = Solver::from_file(&solver, SolverOptions::default()).unwrap();
    s.set_progress(false);
    assert_eq!(s.test_nets().len(), 2);
    // The stage includes the accuracy layer in test net #0 only.
    assert_eq!(s.test_nets()[0].output_blob_names(), ["accuracy", "loss"]);
    assert_eq!(s.test_nets()[1].output_blob_names(), ["loss"]);
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let record = std::rc::Rc::clone(&seen);
    s.set_feeder(Box::new(move |role, net: &mut Net| {
        record.borrow_mut().push((role, net.iteration()));
        Ok(())
    }));
    s.solve().unwrap();
    let seen = seen.borrow();
    let tests = |at: i64| {
        vec![
            (NetRole::Test(0), at),
            (NetRole::Test(0), at),
            (NetRole::Test(1), at),
            (NetRole::Test(1), at),
            (NetRole::Test(1), at),
        ]
    };
    let mut want = tests(0);
    for it in 0..8 {
        if it == 4 {
            want.extend(tests(4));
        }
        want.push((NetRole::Train, it));
    }
    // After training: the display's forward pass, then the final test.
    want.push((NetRole::Train, 8));
    want.extend(tests(8));
    assert_eq!(*seen, want);
    assert_eq!(s.test_scores()[0].iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["accuracy", "loss"]);
    // average_loss: 3 smooths the last three losses (checked after step(), as
    // solve() adds its final display pass to the window, as Caffe's does).
    let mut s = Solver::from_file(&solver, SolverOptions::default()).unwrap();
    s.set_progress(false);
    s.step(8).unwrap();
    let l = s.losses();
    let mean = (l[5].1 + l[6].1 + l[7].1) / 3.0;
    assert!((s.smoothed_loss() - mean).abs() < 1e-6, "{} vs {mean}", s.smoothed_loss());
}

/// Caffe's test pass makes the test nets use the train net's weight memory
/// (ShareTrainedLayersWith), and it stays shared: pycaffe scripts that step the
/// solver and forward `solver.test_nets[0]` themselves (Caffe's LeNet
/// tutorial) see every later update, not the weights of the last test pass.
#[test]
fn test_pass_shares_the_train_nets_weights_from_then_on() {
    let _rng = rng_shared(); // the solver's nets draw their fillers
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = write(dir, "net.prototxt", TINY_NET);
    let solver = write(
        dir,
        "solver.prototxt",
        &format!(
            r#"net: "{}" test_iter: 1 test_interval: 500 base_lr: 0.5 lr_policy: "fixed" max_iter: 10
               snapshot_prefix: "{}/snap""#,
            net.display(),
            dir.display()
        ),
    );
    let mut s = Solver::from_file(&solver, SolverOptions::default()).unwrap();
    s.set_progress(false);
    let ptr = |n: &Net, j: usize| n.layer_blobs("ip").unwrap()[j].data_ptr();
    // Before any test pass each net has its own filler draws.
    assert_ne!(ptr(s.net(), 0), ptr(&s.test_nets()[0], 0));
    s.step(1).unwrap(); // tests first (test_initialization), then updates
    for _ in 0..3 {
        s.step(1).unwrap();
        for j in 0..2 {
            assert_eq!(ptr(s.net(), j), ptr(&s.test_nets()[0], j), "blob {j} is the same memory");
            let (train, test) = (s.net().layer_blobs("ip").unwrap()[j], s.test_nets()[0].layer_blobs("ip").unwrap()[j]);
            assert!(train.equal(test), "blob {j} holds the latest step's values");
        }
    }
}

// ----- the caffe command --------------------------------------------------------

fn caffe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caffe"));
    c.env("GLOG_logtostderr", "1");
    c
}

/// A tiny Input-fed net and a solver for it, with absolute paths.
fn tiny_solver(dir: &Path, name: &str, settings: &str) -> PathBuf {
    let net = write(dir, "tiny_net.prototxt", TINY_NET);
    std::fs::create_dir_all(dir.join("snap")).unwrap();
    write(
        dir,
        name,
        &format!(
            "net: \"{}\"\nbase_lr: 0.1\nmomentum: 0.9\nlr_policy: \"inv\"\ngamma: 0.0001\npower: 0.75\nsolver_mode: CPU\nsnapshot_prefix: \"{}\"\n{settings}\n",
            net.display(),
            dir.join("snap/tiny").display()
        ),
    )
}

/// Runs `caffe` to completion (bounded), returning (success, stderr).
fn run_caffe(args: &[&str]) -> (bool, String) {
    let out = caffe().args(args).stdin(Stdio::null()).output().expect("run caffe");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("caffe: error:")).collect()
}

#[test]
fn train_flag_faults_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let solver = tiny_solver(tmp.path(), "solver.prototxt", "max_iter: 2");
    let s = solver.to_str().unwrap();

    let (ok, err) = run_caffe(&["train", "-solver", s, "-weights", "a.caffemodel", "-snapshot", "b.solverstate"]);
    assert!(!ok);
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    assert!(err.contains("but not both"), "{err}");

    let (ok, err) = run_caffe(&["train", "-solver", s, "-sigint_effect", "explode"]);
    assert!(!ok && err.contains("Invalid signal effect \"explode\""), "{err}");

    let (ok, err) = run_caffe(&["train"]);
    assert!(!ok && err.contains("Need a solver definition"), "{err}");

    let (ok, err) = run_caffe(&["train", "-solver", &tmp.path().join("missing.prototxt").display().to_string()]);
    assert!(!ok && err.contains("missing.prototxt"), "{err}");
    assert_eq!(error_lines(&err).len(), 1, "{err}");

    if caffe_tch::util::cuda::device_count() == 0 {
        let (ok, err) = run_caffe(&["train", "-solver", s, "-gpu", "0"]);
        assert!(!ok && err.contains("no CUDA device is available"), "{err}");
    } else if caffe_tch::util::cuda::device_count() == 1 {
        let (ok, err) = run_caffe(&["train", "-solver", s, "-gpu", "0,1"]);
        assert!(!ok && err.contains("not supported yet"), "{err}");
    }
}

/// Lines from a running child's stderr, as they come.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; collects everything read into `log`.
fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str, log: &mut Vec<String>) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                let hit = line.contains(needle);
                log.push(line);
                if hit {
                    return true;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => return false,
        }
    }
    false
}

/// N from a line or path ending in `_iter_N.solverstate`.
fn snapshot_iter(text: &str) -> i64 {
    let tail = text.rsplit("_iter_").next().unwrap();
    tail.trim_end_matches(".solverstate").parse().unwrap_or_else(|_| panic!("no iteration in {text}"))
}

/// Kills the child if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("caffe did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// SIGHUP writes a snapshot and training goes on; SIGINT stops training after
/// the current iteration, with a complete snapshot (snapshot_after_train), and
/// that snapshot resumes.
#[test]
fn sigint_leaves_a_snapshot_that_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let solver = tiny_solver(tmp.path(), "solver.prototxt", "max_iter: 10000000\ndisplay: 100");
    let mut guard = KillOnDrop(
        caffe()
            .args(["train", "-solver", solver.to_str().unwrap()])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let rx = stderr_lines(child);
    let mut log = Vec::new();
    assert!(wait_for(&rx, "Iteration 300 (", &mut log), "training did not start: {log:?}");
    let pid = child.id().to_string();
    let signal = |name: &str| assert!(Command::new("kill").args(["-s", name, &pid]).status().unwrap().success());
    // SIGHUP: a snapshot, and training goes on.
    signal("HUP");
    assert!(wait_for(&rx, "SIGHUP received: writing a snapshot", &mut log), "{log:?}");
    assert!(wait_for(&rx, "Snapshotting solver state", &mut log), "{log:?}");
    // The line comes before the write: take the iteration from the file name.
    let hup_iter = snapshot_iter(log.last().unwrap());
    let later = format!("Iteration {} (", (hup_iter / 100 + 2) * 100);
    assert!(wait_for(&rx, &later, &mut log), "training did not go on after SIGHUP: {log:?}");
    // SIGINT: stop.
    signal("INT");
    let status = wait_exit(child);
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        log.push(line);
    }
    let text = log.join("\n");
    assert!(status.success(), "exit {status:?}\n{text}");
    assert!(text.contains("SIGINT received") && text.contains("Optimization stopped early."), "{text}");
    let state_line =
        log.iter().rev().find(|l| l.contains("Snapshotting solver state to binary proto file")).expect("snapshot");
    let state = state_line.rsplit(' ').next().unwrap().to_string();
    let stopped_at = snapshot_iter(&state);
    assert!(stopped_at >= 300, "{state}");

    let resume = tiny_solver(tmp.path(), "resume.prototxt", &format!("max_iter: {}\ndisplay: 1", stopped_at + 5));
    let (ok, err) = run_caffe(&["train", "-solver", resume.to_str().unwrap(), "-snapshot", &state]);
    assert!(ok, "{err}");
    assert!(err.contains(&format!("Resuming from {state}")), "{err}");
    assert!(err.contains(&format!("Iteration {stopped_at}, lr = ")), "{err}");
    assert!(err.contains("Optimization Done."), "{err}");
    assert!(tmp.path().join(format!("snap/tiny_iter_{}.solverstate", stopped_at + 5)).exists());
}

/// A bigger net snapshotting every iteration is killed (SIGKILL) at several
/// moments: every snapshot file present is complete, every solverstate names a
/// complete model, and the newest resumes.
#[test]
fn kill_9_during_snapshots_leaves_complete_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = write(
        dir,
        "big_net.prototxt",
        r#"name: "big"
layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 1 dim: 64 dim: 64 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 256 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"#,
    );
    std::fs::create_dir_all(dir.join("snap")).unwrap();
    let solver = write(
        dir,
        "solver.prototxt",
        &format!(
            "net: \"{}\" type: \"Adam\" base_lr: 0.001 lr_policy: \"fixed\" max_iter: 100000 snapshot: 1 solver_mode: CPU snapshot_prefix: \"{}\"",
            net.display(),
            dir.join("snap/big").display()
        ),
    );
    for delay_ms in [0u64, 23, 71] {
        let mut guard = KillOnDrop(
            caffe()
                .args(["train", "-solver", solver.to_str().unwrap()])
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let rx = stderr_lines(&mut guard.0);
        let mut log = Vec::new();
        // The line comes before its write: once the third snapshot starts, the
        // first two are complete; the kill lands somewhere in the writes after.
        assert!(wait_for(&rx, "big_iter_3.caffemodel", &mut log), "{log:?}");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        drop(guard); // SIGKILL
    }
    let mut newest: Option<(i64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir.join("snap")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".caffemodel") {
            let model: NetParameter = read_message(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let ip = model.layer.iter().find(|l| l.name() == "ip").expect("ip layer");
            assert_eq!(ip.blobs[0].data.len(), 256 * 4096, "{name} is truncated");
        } else if name.ends_with(".solverstate") {
            let state: SolverState = read_message(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(state.history.len(), 4, "{name}");
            assert_eq!(state.history[0].data.len(), 256 * 4096, "{name} is truncated");
            assert!(Path::new(state.learned_net()).is_file(), "{name} names a missing model");
            if newest.as_ref().is_none_or(|(it, _)| state.iter() as i64 > *it) {
                newest = Some((state.iter() as i64, path.clone()));
            }
        }
    }
    let (iter, newest) = newest.expect("at least one solverstate");
    let mut s = Solver::from_file(&solver, SolverOptions::default()).unwrap();
    s.set_progress(false);
    s.restore(&newest).unwrap();
    assert_eq!(s.iter(), iter);
    s.step(2).unwrap();
    assert_eq!(s.iter(), iter + 2);
}

/// `caffe test`: each batch's outputs, then the means with loss weights, as Caffe prints them.
#[test]
fn caffe_test_prints_batches_and_means() {
    let tmp = tempfile::tempdir().unwrap();
    let solver = tiny_solver(tmp.path(), "solver.prototxt", "max_iter: 3");
    let (ok, err) = run_caffe(&["train", "-solver", solver.to_str().unwrap()]);
    assert!(ok, "{err}");
    let model = tmp.path().join("tiny_net.prototxt");
    let weights = tmp.path().join("snap/tiny_iter_3.caffemodel");
    let (ok, err) = run_caffe(&[
        "test",
        "-model",
        model.to_str().unwrap(),
        "-weights",
        weights.to_str().unwrap(),
        "-iterations",
        "3",
    ]);
    assert!(ok, "{err}");
    let body = |l: &str| l.split("] ").nth(1).unwrap_or_default().to_string();
    let lines: Vec<String> = err.lines().filter(|l| l.contains("caffe.cpp:")).map(body).collect();
    assert!(lines.contains(&"Running for 3 iterations.".to_string()), "{lines:?}");
    // All-zero inputs: every batch gives the same accuracy and loss.
    let acc: Vec<&String> = lines.iter().filter(|l| l.starts_with("Batch ") && l.contains(", accuracy = ")).collect();
    let loss: Vec<&String> = lines.iter().filter(|l| l.starts_with("Batch ") && l.contains(", loss = ")).collect();
    assert_eq!((acc.len(), loss.len()), (3, 3), "{lines:?}");
    assert!(acc[0].starts_with("Batch 0, accuracy = ") && acc[2].starts_with("Batch 2, accuracy = "));
    let value = |l: &str| l.rsplit(" = ").next().unwrap().to_string();
    let batch_loss = value(loss[0]);
    assert!(lines.contains(&format!("Loss: {batch_loss}")), "{lines:?}");
    assert!(lines.contains(&format!("accuracy = {}", value(acc[0]))), "{lines:?}");
    assert!(lines.contains(&format!("loss = {batch_loss} (* 1 = {batch_loss} loss)")), "{lines:?}");
}

/// Our training log has Caffe's line shapes, so tools that read Caffe's logs
/// (tools/extra/parse_log.py) read ours: glog prefix, then the messages below.
#[test]
fn training_log_has_caffes_line_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let solver = tiny_solver(tmp.path(), "solver.prototxt", "max_iter: 10\ndisplay: 5\ntest_iter: 2\ntest_interval: 5");
    let (ok, err) = run_caffe(&["train", "-solver", solver.to_str().unwrap()]);
    assert!(ok, "{err}");
    let is_num = |s: &str| s.parse::<f64>().is_ok();
    let mut seen = std::collections::BTreeMap::new();
    for line in err.lines() {
        // Multi-line messages (the solver's parameters) carry the prefix on their first line only, as in glog.
        let glog =
            line.len() > 5 && line.starts_with(['I', 'W', 'E']) && line[1..5].chars().all(|c| c.is_ascii_digit());
        if !glog {
            continue;
        }
        // I1130 08:22:18.814288 23981 solver.cpp:239] message
        let (prefix, msg) = line.split_once("] ").unwrap_or_else(|| panic!("no glog prefix: {line}"));
        let parts: Vec<&str> = prefix.split_whitespace().collect();
        assert_eq!(parts.len(), 4, "{line}");
        assert!(
            parts[0].len() == 5
                && parts[0].starts_with(['I', 'W'])
                && parts[0][1..].chars().all(|c| c.is_ascii_digit()),
            "{line}"
        );
        assert!(parts[1].len() == 15 && parts[1].as_bytes()[2] == b':' && parts[1].as_bytes()[8] == b'.', "{line}");
        let tag = parts[3];
        let words: Vec<&str> = msg.split_whitespace().collect();
        match tag {
            "solver.cpp:239" => {
                // Iteration 5 (3958.61 iter/s, 0.00126307s/5 iters), loss = 0.468709
                assert_eq!(words[0], "Iteration");
                assert!(is_num(words[1]) && words[2].starts_with('(') && is_num(&words[2][1..]), "{msg}");
                assert_eq!((words[3], words[5], words[6], words[7]), ("iter/s,", "iters),", "loss", "="), "{msg}");
                assert!(words[4].ends_with("s/5") && is_num(words[8]), "{msg}");
            }
            "solver.cpp:258" | "solver.cpp:414" => {
                //     Train net output #0: loss = 1.09861 (* 1 = 1.09861 loss)
                assert!(msg.starts_with("    Train net output #") || msg.starts_with("    Test net output #"), "{msg}");
                assert!(words[5] == "=" && is_num(words[6]), "{msg}");
                if words[4] == "loss" {
                    assert_eq!(&words[7..], ["(*", "1", "=", words[6], "loss)"], "{msg}");
                }
            }
            "sgd_solver.cpp:112" => {
                assert!(
                    words[0] == "Iteration" && words[1].ends_with(',') && words[2] == "lr" && is_num(words[4]),
                    "{msg}"
                );
            }
            "solver.cpp:347" => assert!(msg.starts_with("Iteration ") && msg.ends_with(", Testing net (#0)"), "{msg}"),
            _ => {}
        }
        *seen.entry(tag.to_string()).or_insert(0) += 1;
    }
    // Displays at 0 and 5; tests at 0, 5 and 10 (two outputs each); the final loss line.
    assert_eq!(seen.get("solver.cpp:239"), Some(&2), "{err}");
    assert_eq!(seen.get("sgd_solver.cpp:112"), Some(&2), "{err}");
    assert_eq!(seen.get("solver.cpp:347"), Some(&3), "{err}");
    assert_eq!(seen.get("solver.cpp:414"), Some(&6), "{err}");
    assert_eq!(seen.get("solver.cpp:327"), Some(&1), "{err}");
    assert!(err.contains("] Solving tiny") && err.contains("] Learning Rate Policy: inv"), "{err}");
    assert!(err.contains("] Snapshotting to binary proto file ") && err.contains("] Optimization Done."), "{err}");
}
