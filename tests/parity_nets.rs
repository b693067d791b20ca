//! Golden parity with BVLC Caffe for the CIFAR-10 nets (quick, and full with
//! LRN WITHIN_CHANNEL) and a small ResNet (BatchNorm, Scale, Eltwise): every
//! blob and parameter after a TEST forward pass, and for resnet_small a TRAIN
//! pass with batch statistics: the updated running statistics, every blob
//! gradient and every parameter gradient. Tolerance as in tests/parity.rs:
//! max |Δ| ≤ 1e-4·(1 + max|ref|). See tests/fixtures/caffe-ref/README.md.
use std::path::Path;

use caffe_tch::net::Net;
use caffe_tch::proto::caffe::Phase;
use serde_json::Value;
use tch::Tensor;

use crate::common;
use crate::common::parity::{run_fixture, run_fixture_step};
use crate::common::{caffe_ref, max_abs_diff, read_npy};

/// The worst comparison seen, for the summary line.
#[derive(Default)]
struct Worst {
    compared: usize,
    max_delta: f64,
    what: String,
    /// The largest max |Δ| / max |ref| over the tensors.
    max_relative: f64,
    what_relative: String,
}

impl Worst {
    fn check(&mut self, what: &str, ours: &Tensor, reference: &Tensor) {
        let ours = if reference.size().is_empty() {
            ours.reshape([] as [i64; 0])
        } else {
            ours.reshape(reference.size().as_slice())
        };
        let (d, m) = max_abs_diff(&ours, reference);
        let tol = common::parity_tolerance();
        assert!(d <= tol * (1.0 + m), "{what}: max |Δ| = {d:.3e} > {tol:.0e}·(1 + {m:.3e})");
        self.compared += 1;
        if d >= self.max_delta {
            self.max_delta = d;
            self.what = format!("{what}, max |ref| {m:.2e}");
        }
        if m > 0.0 && d / m >= self.max_relative {
            self.max_relative = d / m;
            self.what_relative = what.to_string();
        }
    }
    fn report(&self, name: &str) {
        eprintln!(
            "{name}: {} tensors, max |Δ| = {:.3e} ({}); max |Δ|/max|ref| = {:.3e} ({})",
            self.compared, self.max_delta, self.what, self.max_relative, self.what_relative
        );
    }
}

fn check_blobs(net: &Net, dir: &Path, m: &Value, worst: &mut Worst) {
    for b in m["blobs"].as_array().expect("blobs") {
        let name = b["name"].as_str().unwrap();
        let reference = read_npy(&dir.join(b["file"].as_str().unwrap()));
        let ours = net.blob(name).unwrap_or_else(|| panic!("blob {name} missing"));
        worst.check(&format!("blob {name}"), ours, &reference);
    }
}

fn check_params(net: &Net, dir: &Path, m: &Value, worst: &mut Worst) {
    for p in m["params"].as_array().expect("params") {
        let layer = p["layer"].as_str().unwrap();
        let blobs = net.layer_blobs(layer).unwrap_or_else(|| panic!("layer {layer}"));
        let files = p["files"].as_array().unwrap();
        assert_eq!(blobs.len(), files.len(), "{layer}: blob count");
        for (j, f) in files.iter().enumerate() {
            let reference = read_npy(&dir.join(f.as_str().unwrap()));
            worst.check(&format!("{layer} param {j}"), blobs[j], &reference);
        }
    }
}

/// Every parameter gradient the manifest lists against Caffe's; how many.
fn check_param_diffs(net: &Net, dir: &Path, m: &Value, worst: &mut Worst) -> usize {
    let mut compared = 0;
    for p in m["params"].as_array().expect("params") {
        let layer = p["layer"].as_str().unwrap();
        for (j, f) in p["diff_files"].as_array().expect("diff_files").iter().enumerate() {
            let reference = read_npy(&dir.join(f.as_str().unwrap()));
            let ours = net.layer_blob_diff(layer, j).unwrap_or_else(|| panic!("{layer} param {j} diff"));
            worst.check(&format!("{layer} param {j} diff"), &ours, &reference);
            compared += 1;
        }
    }
    compared
}

fn forward_fixture(name: &str) {
    let dir = caffe_ref(&format!("fixtures/{name}"));
    let (net, m) = run_fixture(&dir, &dir.join("net.prototxt"), Phase::Test, false);
    let mut worst = Worst::default();
    check_params(&net, &dir, &m, &mut worst);
    check_blobs(&net, &dir, &m, &mut worst);
    assert!(worst.compared >= 10, "{name}: only {} tensors compared", worst.compared);
    worst.report(name);
}

#[test]
fn cifar10_quick_forward_matches_caffe() {
    let _rng = common::rng_shared(); // the net's fillers, before the weights load
    forward_fixture("cifar10_quick");
}

#[test]
fn cifar10_full_forward_matches_caffe() {
    let _rng = common::rng_shared(); // the net's fillers, before the weights load
    forward_fixture("cifar10_full");
}

#[test]
fn resnet_small_forward_matches_caffe() {
    let _rng = common::rng_shared(); // the net's fillers, before the weights load
    forward_fixture("resnet_small");
}

#[test]
fn resnet_small_train_backward_matches_caffe() {
    let _rng = common::rng_shared(); // the net's fillers, before the weights load
    let dir = caffe_ref("fixtures/resnet_small/train_backward");
    let (net, m) = run_fixture(&dir, &caffe_ref("fixtures/resnet_small/net.prototxt"), Phase::Train, true);
    let mut worst = Worst::default();
    check_blobs(&net, &dir, &m, &mut worst);
    // Parameters after the pass: BatchNorm's running statistics were updated once.
    check_params(&net, &dir, &m, &mut worst);
    // Parameter gradients (zero for the BatchNorm statistics).
    check_param_diffs(&net, &dir, &m, &mut worst);
    // Blob gradients. Inputs get none without force_backward, and the loss
    // diff is its loss weight.
    let mut diffs = 0;
    for b in m["blobs"].as_array().expect("blobs") {
        let name = b["name"].as_str().unwrap();
        if ["data", "label", "loss"].contains(&name) {
            continue;
        }
        let reference = read_npy(&dir.join(b["diff_file"].as_str().unwrap()));
        let ours = net.blob_diff(name).unwrap_or_else(|| panic!("no diff for {name}"));
        worst.check(&format!("blob {name} diff"), ours, &reference);
        diffs += 1;
    }
    assert!(diffs >= 15, "only {diffs} blob diffs compared");
    worst.report("resnet_small/train_backward");
}

/// The training step as the solver runs it (no blob diffs recorded), where
/// each BatchNorm runs its in-place Scale (and the ReLU after it) as one
/// libtorch batch norm with an affine part: every blob, the running
/// statistics and every parameter gradient against Caffe's, as above.
#[test]
fn resnet_small_train_step_with_folded_batchnorm_scale_matches_caffe() {
    let _rng = common::rng_shared(); // the net's fillers, before the weights load
    let dir = caffe_ref("fixtures/resnet_small/train_backward");
    let (net, m) = run_fixture_step(&dir, &caffe_ref("fixtures/resnet_small/net.prototxt"));
    let mut worst = Worst::default();
    check_blobs(&net, &dir, &m, &mut worst);
    check_params(&net, &dir, &m, &mut worst);
    let diffs = check_param_diffs(&net, &dir, &m, &mut worst);
    assert!(diffs >= 20, "only {diffs} parameter gradients compared");
    worst.report("resnet_small/train_backward, folded step");
}

/// Every blob of a forward without autograd, which folds each convolution's
/// in-place BatchNorm, Scale and ReLU into it and runs an Eltwise sum with its
/// ReLU in one pass, against the same forward with autograd on (every layer on
/// its own); again after the folded layers' blobs change in place; and a
/// forward that stops at a convolution leaves its top unnormalized.
#[test]
fn resnet_small_folded_inference_keeps_every_blob() {
    let _rng = common::rng_shared();
    let dir = caffe_ref("fixtures/resnet_small");
    let (mut net, m) = run_fixture(&dir, &dir.join("net.prototxt"), Phase::Test, false);
    let last = net.layer_names().len() - 1;
    let names: Vec<String> =
        m["blobs"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap().into()).collect();
    let blobs = |net: &Net| -> Vec<Tensor> { names.iter().map(|n| net.blob(n).unwrap().detach().copy()).collect() };
    let compare = |net: &mut Net, what: &str| -> Vec<Tensor> {
        net.forward_inference().unwrap();
        let folded = blobs(net);
        net.forward_from_to(0, last, true).unwrap();
        let layered = blobs(net);
        for ((name, f), l) in names.iter().zip(&folded).zip(&layered) {
            let (d, max) = max_abs_diff(f, l);
            assert!(d <= 1e-5 * (1.0 + max), "{what}: blob {name}: max |Δ| {d:.3e} (max {max:.3e})");
        }
        folded
    };
    let before = compare(&mut net, "weights as loaded");

    // BatchNorm statistics and a Scale's bias written through libtorch.
    let bn = net.layer_index("res2a_conv2_bn").unwrap();
    let scale = net.layer_index("res2a_conv2_scale").unwrap();
    tch::no_grad(|| {
        net.layer_param(bn, 0).unwrap().f_add_scalar_(0.5).map(drop).unwrap();
        net.layer_param(scale, 1).unwrap().f_mul_scalar_(-3.0).map(drop).unwrap();
    });
    let after = compare(&mut net, "after the folded layers' blobs changed");
    let i = names.iter().position(|n| n == "res2a_conv2").unwrap();
    let (d, _) = max_abs_diff(&before[i], &after[i]);
    assert!(d > 0.1, "res2a_conv2 follows the new statistics (moved {d:.3e})");

    // A forward that ends at conv1: Caffe's blob holds the convolution alone.
    let conv1 = net.layer_index("conv1").unwrap();
    tch::no_grad(|| net.forward_from_to(0, conv1, false)).unwrap();
    let data = net.blob("data").unwrap().shallow_clone();
    let w = net.layer_param(conv1, 0).unwrap();
    let expected = data.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    let (d, max) = max_abs_diff(net.blob("conv1").unwrap(), &expected);
    assert!(d <= 1e-5 * (1.0 + max), "conv1 alone: max |Δ| {d:.3e}");
}
