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

#[test]
fn faster_rcnn_tiny_proposes_pools_and_classifies_its_regions() {
    let _rng = common::rng_exclusive();
    tch::manual_seed(5);
    let path = common::repo().join("tests/fixtures/forks/faster_rcnn_tiny.prototxt");
    let mut net = caffe_tch::net::Net::from_file(
        &path,
        &common::net_state(caffe_tch::proto::caffe::Phase::Test),
        TextOptions::default(),
        Device::Cpu,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    net.set_input("data", &(tch::Tensor::randn([1, 3, 64, 96], (tch::Kind::Float, Device::Cpu)) * 50.0)).unwrap();
    net.set_input("im_info", &tch::Tensor::from_slice(&[64f32, 96., 1.]).reshape([1, 3])).unwrap();
    net.forward().unwrap_or_else(|e| panic!("forward: {e}"));
    let rois = net.blob("rois").expect("rois").copy();
    let r = rois.size()[0];
    assert!(r > 0 && r <= 20, "{r} regions");
    assert_eq!(rois.size(), [r, 5]);
    // Every region lies in the 64×96 image, on image 0.
    let v = common::values_f32(&rois);
    for row in v.chunks(5) {
        assert_eq!(row[0], 0.0);
        assert!(row[1] >= 0.0 && row[3] <= 95.0 && row[2] >= 0.0 && row[4] <= 63.0, "{row:?}");
        assert!(row[3] - row[1] + 1.0 >= 4.0 && row[4] - row[2] + 1.0 >= 4.0, "under min_size: {row:?}");
    }
    // One pooled map, one class distribution and one set of boxes per region.
    assert_eq!(net.blob("pool").unwrap().size(), [r, 8, 3, 3]);
    assert_eq!(net.blob("cls_prob").unwrap().size(), [r, 4]);
    assert_eq!(net.blob("bbox_pred").unwrap().size(), [r, 16]);
    let sums = net.blob("cls_prob").unwrap().sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Float);
    assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5);
    // No region left (min_size over the image): every head has 0 rows, and the pass still runs.
    let tmp = tempfile::tempdir().expect("tempdir");
    let none = tmp.path().join("none.prototxt");
    std::fs::write(&none, std::fs::read_to_string(&path).unwrap().replace("min_size: 4", "min_size: 1000")).unwrap();
    let state = common::net_state(caffe_tch::proto::caffe::Phase::Test);
    let mut net = caffe_tch::net::Net::from_file(&none, &state, TextOptions::default(), Device::Cpu).unwrap();
    net.set_input("im_info", &tch::Tensor::from_slice(&[64f32, 96., 1.]).reshape([1, 3])).unwrap();
    net.forward().unwrap_or_else(|e| panic!("forward with no region: {e}"));
    assert_eq!(net.blob("rois").unwrap().size(), [0, 5]);
    assert_eq!(net.blob("cls_prob").unwrap().size(), [0, 4]);
}

// A batch of no images (Faster R-CNN's heads see one when no region is
// proposed) runs through every layer here, giving empty tops.
#[test]
fn an_empty_batch_runs_through_the_forks_layers() {
    let _rng = common::rng_exclusive();
    let text = "layer { name: 'x' type: 'Input' top: 'x' input_param { shape { dim: 0 dim: 3 dim: 8 dim: 8 } } }
        layer { name: 'c' type: 'Convolution' bottom: 'x' top: 'c' convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
        layer { name: 'bn1' type: 'BN' bottom: 'c' top: 'bn1' bn_param { bn_mode: INFERENCE } }
        layer { name: 'bn2' type: 'BN' bottom: 'c' top: 'bn2' bn_param { frozen: true } }
        layer { name: 'p' type: 'Pooling' bottom: 'bn1' top: 'p' top: 'mask' pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
        layer { name: 'u' type: 'Upsample' bottom: 'p' bottom: 'mask' top: 'u' upsample_param { scale: 2 } }
        layer { name: 'n' type: 'Upsample' bottom: 'p' top: 'n' upsample_param { scale: 2 } }
        layer { name: 'i' type: 'Interp' bottom: 'p' top: 'i' interp_param { zoom_factor: 2 } }
        layer { name: 'm' type: 'MVN' bottom: 'bn2' top: 'm' }
        layer { name: 'f' type: 'InnerProduct' bottom: 'u' top: 'f' inner_product_param { num_output: 5 } }
        layer { name: 's' type: 'Softmax' bottom: 'f' top: 's' }";
    let mut net =
        common::net(text, "empty.prototxt", caffe_tch::proto::caffe::Phase::Test).unwrap_or_else(|e| panic!("{e}"));
    net.forward().unwrap_or_else(|e| panic!("forward: {e}"));
    for (blob, shape) in [
        ("u", vec![0, 4, 8, 8]),
        ("n", vec![0, 4, 8, 8]),
        ("i", vec![0, 4, 7, 7]),
        ("m", vec![0, 4, 8, 8]),
        ("mask", vec![0, 4, 4, 4]),
        ("s", vec![0, 5]),
    ] {
        assert_eq!(net.blob(blob).unwrap().size(), shape, "{blob}");
    }
}
