//! The solvers against BVLC Caffe: 20 LeNet steps from Caffe's weights for
//! each update rule (losses and the final history), resuming (Caffe's own
//! snapshots, and split runs equal to straight ones), and the `caffe train` /
//! `caffe test` commands end to end (faults, signals, crash safety).
//!
//! The nets read Caffe's Fashion-MNIST training LMDB in key order. Most tests
//! feed the same records through Input layers (from an .npy copy of the first
//! 1280), so the data order is under the test's control; one runs Caffe's
//! solver prototxt unchanged through the Data layer.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use caffe_tch::layers::known_types;
use caffe_tch::net::Net;
use caffe_tch::proto::binary::{blob_data_f32, read_message};
use caffe_tch::proto::caffe::{BlobShape, InputParameter, NetParameter, SolverParameter, SolverState};
use caffe_tch::proto::text::{self, TextOptions};
use caffe_tch::solver::{NetRole, Solver, SolverOptions};
use common::{caffe_ref, fixture};
use tch::{Device, Kind, Tensor};

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
    assert!(ours.len() >= steps && reference.len() >= steps, "{} of our steps, {} of Caffe's", ours.len(), reference.len());
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
    if norm > 0.0 { diff / norm } else { diff }
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
    let sgd20 = caffe_ref("fixtures/lenet/sgd20");
    let (solver, _tmp) = run_lenet(&sgd20, "lenet_solver.prototxt", 20);
    let reference = reference_losses(&sgd20.join("loss.txt"));
    // Step 17's batch is a hard one: from there a 1e-7 relative change of the
    // start weights moves our own trace by 3e-4 (5.9e-4 at step 19), so only the
    // steps before it can be held to 1e-4; the rest are held to that sensitivity.
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
    assert!(worst <= 1e-3, "final weights differ from Caffe's: {worst:.2e}");
}

/// Caffe's solver prototxt unchanged, its data read by the Data layer from the
/// LMDB (copied into the repo).
#[test]
fn sgd_through_the_data_layer_matches_caffe() {
    if !known_types().contains(&"Data") {
        eprintln!("no Data layer in this build: skipped");
        return;
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
    let mut param = solver_param(&sgd20.join("lenet_solver.prototxt"), net, 12, tmp.path());
    param.weights = vec![caffe_ref("fixtures/lenet/weights.caffemodel").display().to_string()];
    let mut solver = new_solver(param);
    solver.solve().unwrap();
    let worst = max_rel_loss_error(solver.losses(), &reference_losses(&sgd20.join("loss.txt")), 12);
    eprintln!("SGD through the Data layer: max relative loss error {worst:.2e}");
    assert!(worst <= 1e-4, "{worst:.2e}");
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

// Tolerances: extra/solvers/sensitivity.txt (how far each trace moves when the
// start weights change by 1e-7 relative).
#[test]
fn nesterov_matches_caffe() {
    check_reference_solver("Nesterov", 20, 1e-3, Some(2e-2));
}

#[test]
fn adagrad_matches_caffe() {
    check_reference_solver("AdaGrad", 20, 5e-3, Some(5e-2));
}

#[test]
fn rmsprop_first_steps_match_caffe() {
    // Chaotic after step 1 with the BVLC settings (the loss jumps to 72.8): two steps only.
    check_reference_solver("RMSProp", 2, 1e-5, None);
}

#[test]
fn adadelta_matches_caffe() {
    check_reference_solver("AdaDelta", 20, 2e-4, Some(1e-3));
}

#[test]
fn adam_matches_caffe() {
    check_reference_solver("Adam", 20, 2e-4, Some(1e-3));
}

#[test]
#[ignore]
fn experiment_history_perturbation() {
    let kind = std::env::var("TY").unwrap_or("Adam".into());
    let dir = caffe_ref(&format!("extra/solvers/{kind}"));
    let tmp = tempfile::tempdir().unwrap();
    let net = with_input_layers(&dir.join("lenet_train_test.prototxt"));
    let mut param = solver_param(&dir.join("solver.prototxt"), net, 20, tmp.path());
    param.weights = vec![caffe_ref("fixtures/lenet/weights.caffemodel").display().to_string()];
    let mut base = new_solver(param.clone());
    base.set_feeder(feed_from(0));
    base.solve().unwrap();
    tch::manual_seed(7);
    let mut pert = new_solver(param);
    tch::no_grad(|| for p in pert.net_mut().learnable_params_mut() {
        let noise = p.data.randn_like() * 1e-7 + 1.0;
        let _ = p.data.f_mul_(&noise).unwrap();
    });
    pert.set_feeder(feed_from(0));
    pert.solve().unwrap();
    for (a, b) in base.losses().iter().zip(pert.losses()) {
        eprintln!("{kind} iter {}: {:.8} {:.8} rel {:.2e}", a.0, a.1, b.1, ((a.1 - b.1) / a.1).abs());
    }
    for (i, (a, b)) in base.history().iter().zip(pert.history()).enumerate() {
        eprintln!("{kind} history {i}: perturbed relative L2 {:.2e}", rel_l2(b, a));
    }
}

#[test]
#[ignore]
fn experiment_adam_rows() {
    let dir = caffe_ref("extra/solvers/Adam");
    let (solver, _tmp) = run_lenet(&dir, "solver.prototxt", 20);
    let state: SolverState = read_message(&dir.join("lenet_Adam_iter_20.solverstate")).unwrap();
    for bi in [4usize, 0, 6] {
        let ours = solver.history()[bi].to_kind(Kind::Double);
        let shape = ours.size();
        let r = Tensor::from_slice(&blob_data_f32(&state.history[bi])).to_kind(Kind::Double).reshape(shape.as_slice());
        let rows = shape[0];
        let d = (&ours - &r).reshape([rows, -1]).square().sum_dim_intlist(1i64, false, Kind::Double);
        let tot = d.sum(Kind::Double).double_value(&[]);
        let (sorted, idx) = d.sort(0, true);
        eprint!("blob {bi}: total {tot:.3e}; top rows:");
        for k in 0..6 { eprint!(" {}:{:.2}", idx.int64_value(&[k]), sorted.double_value(&[k]) / tot); }
        eprintln!();
    }
}
