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

/// An LMDB of `n` 40×40 colour images (noise around grey), each with one or
/// two boxes: class 1 red, class 2 green, as the SSD fork's
/// create_annoset.py stores them (raw pixels, normalized boxes).
fn ssd_boxes_lmdb(path: &std::path::Path, n: usize, seed: u64) {
    use caffe_tch::data::db::{Backend, DbWriter};
    use caffe_tch::proto::caffe::annotated_datum::AnnotationType;
    use caffe_tch::proto::caffe::{AnnotatedDatum, Annotation, AnnotationGroup, Datum, NormalizedBBox};
    use prost::Message;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (h, w) = (40usize, 40usize);
    let mut db = DbWriter::create(path, Backend::Lmdb).expect("create db");
    for i in 0..n {
        let mut px: Vec<u8> = (0..3 * h * w).map(|_| rng.gen_range(90..140)).collect();
        let mut groups: Vec<AnnotationGroup> = Vec::new();
        for k in 0..rng.gen_range(1..=2usize) {
            let label = rng.gen_range(1..=2);
            let (bw, bh) = (rng.gen_range(10..24usize), rng.gen_range(10..24usize));
            let (x0, y0) = (rng.gen_range(0..w - bw), rng.gen_range(0..h - bh));
            // BGR planes: red is plane 2, green plane 1.
            let plane = if label == 1 { 2 } else { 1 };
            for c in 0..3 {
                for y in y0..y0 + bh {
                    for x in x0..x0 + bw {
                        px[(c * h + y) * w + x] = if c == plane { 230 } else { 30 };
                    }
                }
            }
            let bbox = NormalizedBBox {
                xmin: Some(x0 as f32 / w as f32),
                ymin: Some(y0 as f32 / h as f32),
                xmax: Some((x0 + bw) as f32 / w as f32),
                ymax: Some((y0 + bh) as f32 / h as f32),
                difficult: Some(false),
                ..Default::default()
            };
            groups.push(AnnotationGroup {
                group_label: Some(label),
                annotation: vec![Annotation { instance_id: Some(k as i32), bbox: Some(bbox) }],
            });
        }
        let record = AnnotatedDatum {
            datum: Some(Datum {
                channels: Some(3),
                height: Some(h as i32),
                width: Some(w as i32),
                data: Some(px),
                label: Some(-1),
                ..Default::default()
            }),
            r#type: Some(AnnotationType::Bbox as i32),
            annotation_group: groups,
        };
        db.put(format!("{i:08}").as_bytes(), &record.encode_to_vec());
    }
    db.finish().expect("finish db");
}

// SSD's training set-up end to end on the CPU: AnnotatedData's augmentation,
// MultiBoxLoss with hard negatives, and the solver's detection test (mean
// average precision from DetectionOutput and DetectionEvaluate).
#[test]
fn ssd_tiny_trains_and_tests_for_mean_average_precision() {
    let _rng = common::rng_exclusive();
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("boxes_lmdb");
    ssd_boxes_lmdb(&db, 64, 3);
    let text = std::fs::read_to_string(common::repo().join("tests/fixtures/forks/ssd_tiny.prototxt"))
        .unwrap()
        .replace("SOURCE", &db.display().to_string());
    let net = text::parse_str::<NetParameter>(&text, "ssd_tiny.prototxt", TextOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .message;
    let param = SolverParameter {
        net_param: Some(net),
        base_lr: Some(0.002),
        momentum: Some(0.9),
        weight_decay: Some(0.0005),
        lr_policy: Some("fixed".into()),
        max_iter: Some(1500),
        display: Some(250),
        average_loss: Some(10),
        test_iter: vec![8],
        test_interval: Some(1500),
        test_initialization: Some(true),
        eval_type: Some("detection".into()),
        ap_version: Some("11point".into()),
        random_seed: Some(7),
        snapshot_after_train: Some(false),
        snapshot_prefix: Some(tmp.path().join("snap").display().to_string()),
        ..Default::default()
    };
    let mut solver = Solver::new(param, None, SolverOptions { device: Some(Device::Cpu), ..Default::default() })
        .unwrap_or_else(|e| panic!("solver: {e}"));
    solver.set_progress(false);
    solver.test_all().unwrap_or_else(|e| panic!("test before training: {e}"));
    let map_before = solver.test_scores()[0][0].1;
    solver.solve().unwrap_or_else(|e| panic!("solve: {e}"));
    let losses = solver.losses();
    let mean = |s: &[(i64, f32)]| s.iter().map(|l| l.1).sum::<f32>() / s.len() as f32;
    let (first, last) = (mean(&losses[..20]), mean(&losses[losses.len() - 20..]));
    assert!(last < 0.6 * first, "the loss went from {first} to {last}");
    let scores = &solver.test_scores()[0];
    assert_eq!(scores[0].0, "detection_eval");
    let map_after = scores[0].1;
    // Untrained, the detections are chance; trained, most boxes are found.
    assert!(map_before < 0.05 && (0.4..=1.0).contains(&map_after), "mAP {map_before} → {map_after}");
}

/// Images for deeplab_tiny: a bright square (class 1) on a dark noisy
/// background (class 0), its one-pixel border labelled 255 (ignored), as PNG
/// image and label image pairs of `side` × `side`; returns the list file.
fn deeplab_images(dir: &std::path::Path, name: &str, count: usize, side: usize, seed: u64) -> std::path::PathBuf {
    use caffe_tch::data::image::{encode, Image};
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut list = String::new();
    for k in 0..count {
        let size = rng.gen_range(8..side / 2);
        let (y0, x0) = (rng.gen_range(0..side - size), rng.gen_range(0..side - size));
        let (mut img, mut seg) = (vec![0u8; 3 * side * side], vec![0u8; side * side]);
        for y in 0..side {
            for x in 0..side {
                let inside = (y0..y0 + size).contains(&y) && (x0..x0 + size).contains(&x);
                let border = inside && (y == y0 || x == x0 || y == y0 + size - 1 || x == x0 + size - 1);
                seg[y * side + x] = if border { 255 } else { inside as u8 };
                for c in 0..3 {
                    let base: u8 = if inside { 200 } else { 60 };
                    img[(c * side + y) * side + x] = base.saturating_add(rng.gen_range(0..40));
                }
            }
        }
        let (img_name, seg_name) = (format!("{name}_{k}.png"), format!("{name}_{k}_seg.png"));
        let image = Image { channels: 3, height: side, width: side, data: img };
        std::fs::write(dir.join(&img_name), encode(&image, "png").unwrap()).unwrap();
        let label = Image { channels: 1, height: side, width: side, data: seg };
        std::fs::write(dir.join(&seg_name), encode(&label, "png").unwrap()).unwrap();
        list.push_str(&format!("{img_name} {seg_name}\n"));
    }
    let path = dir.join(format!("{name}.txt"));
    std::fs::write(&path, list).unwrap();
    path
}

/// DeepLab v2's training recipe in miniature trains: ImageSegData with
/// random crops and mirrors of 40-pixel images (test images of 33, the crop),
/// atrous branches, the label shrunk by Interp, SoftmaxWithLoss ignoring 255,
/// and SegAccuracy's pixel accuracy, mean recall and mean IoU in the test.
#[test]
fn deeplab_tiny_trains_for_segmentation_accuracy() {
    let _rng = common::rng_exclusive();
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = deeplab_images(tmp.path(), "train", 24, 40, 1);
    let test = deeplab_images(tmp.path(), "test", 8, 33, 2);
    let text = std::fs::read_to_string(common::repo().join("tests/fixtures/forks/deeplab_tiny.prototxt"))
        .unwrap()
        .replace("SOURCE_TRAIN", &train.display().to_string())
        .replace("SOURCE_TEST", &test.display().to_string())
        .replace("ROOT", &format!("{}/", tmp.path().display()));
    let net = text::parse_str::<NetParameter>(&text, "deeplab_tiny.prototxt", TextOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .message;
    let param = SolverParameter {
        net_param: Some(net),
        base_lr: Some(0.01),
        momentum: Some(0.9),
        weight_decay: Some(0.0005),
        lr_policy: Some("poly".into()),
        power: Some(0.9),
        max_iter: Some(300),
        display: Some(100),
        test_iter: vec![2],
        test_interval: Some(300),
        test_initialization: Some(true),
        random_seed: Some(3),
        snapshot_after_train: Some(false),
        snapshot_prefix: Some(tmp.path().join("snap").display().to_string()),
        ..Default::default()
    };
    let mut solver = Solver::new(param, None, SolverOptions { device: Some(Device::Cpu), ..Default::default() })
        .unwrap_or_else(|e| panic!("solver: {e}"));
    solver.set_progress(false);
    solver.test_all().unwrap_or_else(|e| panic!("test before training: {e}"));
    let before = solver.test_scores()[0].clone();
    solver.solve().unwrap_or_else(|e| panic!("solve: {e}"));
    let losses = solver.losses();
    let mean = |s: &[(i64, f32)]| s.iter().map(|l| l.1).sum::<f32>() / s.len() as f32;
    let (first, last) = (mean(&losses[..20]), mean(&losses[losses.len() - 20..]));
    assert!(last < 0.5 * first, "the loss went from {first} to {last}");
    let after = &solver.test_scores()[0];
    // SegAccuracy's three outputs: pixel accuracy, mean recall, mean IoU.
    let names: Vec<&str> = after.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["accuracy", "accuracy", "accuracy"], "{after:?}");
    let (iou_before, iou_after) = (before[2].1, after[2].1);
    assert!(after[0].1 > 0.95 && after[1].1 > 0.9, "accuracy and mean recall after training: {after:?}");
    assert!(iou_after > 0.85 && iou_after > iou_before + 0.2, "mean IoU {iou_before} → {iou_after}");
}
