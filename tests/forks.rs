//! The Caffe forks' segmentation layers in a net: `tests/fixtures/forks/
//! segnet_tiny.prototxt` (SegNet's BN and unpooling, PSPNet's BN and Interp,
//! YOLOv3's nearest Upsample) trains with Caffe's solver, and what each BN
//! keeps out of the update stays put.
use caffe_tch::proto::caffe::{NetParameter, SolverParameter};
use caffe_tch::proto::text::{self, TextOptions};
use caffe_tch::solver::{Solver, SolverOptions};
use tch::Device;

use crate::common;

fn segnet_tiny() -> NetParameter {
    let path = common::repo().join("tests/fixtures/forks/segnet_tiny.prototxt");
    text::read_file::<NetParameter>(&path, TextOptions::default()).unwrap_or_else(|e| panic!("{e}")).message
}

#[test]
fn segnet_tiny_trains_and_its_statistics_move_as_each_fork_says() {
    let _rng = common::rng_exclusive();
    let tmp = tempfile::tempdir().expect("tempdir");
    let param = SolverParameter {
        net_param: Some(segnet_tiny()),
        base_lr: Some(0.05),
        momentum: Some(0.9),
        lr_policy: Some("fixed".into()),
        max_iter: Some(30),
        display: Some(10),
        random_seed: Some(11),
        snapshot_after_train: Some(false),
        snapshot_prefix: Some(tmp.path().join("snap").display().to_string()),
        ..Default::default()
    };
    let mut solver = Solver::new(param, None, SolverOptions { device: Some(Device::Cpu), ..Default::default() })
        .unwrap_or_else(|e| panic!("solver: {e}"));
    solver.set_progress(false);
    let blobs = |s: &Solver, layer: &str| -> Vec<tch::Tensor> {
        s.net().layer_blobs(layer).expect("layer").iter().map(|t| t.copy()).collect()
    };
    let (segnet_before, pspnet_before) = (blobs(&solver, "conv1_bn"), blobs(&solver, "conv2_bn"));
    solver.solve().unwrap_or_else(|e| panic!("solve: {e}"));
    let losses = solver.losses();
    assert_eq!(losses.len(), 30);
    let (first, last) = (losses[0].1, losses[29].1);
    // Three classes from uniform scores: ln 3 ≈ 1.1 at the start; every pixel is class 1.
    assert!(first > 0.5 && last < 0.1 * first, "the loss went from {first} to {last}");
    let (segnet_after, pspnet_after) = (blobs(&solver, "conv1_bn"), blobs(&solver, "conv2_bn"));
    // SegNet's scale and shift learn.
    assert_eq!(segnet_after.len(), 2);
    for (b, a) in segnet_before.iter().zip(&segnet_after) {
        assert!(!b.equal(a), "SegNet's BN blobs must train");
    }
    // yjxiong's slope and bias learn; its running mean and variance are the
    // moving averages of the batches (from 0, momentum 0.9), not gradient steps.
    assert_eq!(pspnet_after.len(), 4);
    assert!(!pspnet_before[0].equal(&pspnet_after[0]) && !pspnet_before[1].equal(&pspnet_after[1]));
    let variance = &pspnet_after[3];
    assert!(variance.min().double_value(&[]) > 0.0, "a running variance of batches is positive: {variance}");
    assert!(pspnet_after[2].abs().max().double_value(&[]) > 0.0, "the running mean moved from 0");
    // Only SegNet's two and yjxiong's first two blobs are in the update.
    let lr: Vec<(String, usize, f32)> = solver
        .net()
        .learnable_params()
        .iter()
        .filter(|p| p.layer.ends_with("_bn"))
        .map(|p| (p.layer.clone(), p.index, p.lr_mult))
        .collect();
    let want: Vec<(String, usize, f32)> = [
        ("conv1_bn", 0, 1.),
        ("conv1_bn", 1, 1.),
        ("conv2_bn", 0, 1.),
        ("conv2_bn", 1, 1.),
        ("conv2_bn", 2, 0.),
        ("conv2_bn", 3, 0.),
    ]
    .iter()
    .map(|(l, i, m)| (l.to_string(), *i, *m))
    .collect();
    assert_eq!(lr, want);
}
