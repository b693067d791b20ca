//! The SSD fork's layers (`src/layers/detection/`): Permute, Normalize,
//! PriorBox and DetectionOutput, each against values worked out here from
//! the fork's definitions (python/tests/test_ssd_opencv.py checks a whole SSD
//! net against OpenCV's implementation of the same layers).
use caffe_tch::layers::gradcheck::GradCheck;
use caffe_tch::proto::caffe::Phase;
use tch::{Kind, Tensor};

use crate::common::layer::{self, forward_err, randn, run_phase, setup_err, t, values};
use crate::common::rng_exclusive;

fn run(text: &str, bottoms: &[Tensor], params: &[Tensor]) -> Tensor {
    run_phase(text, bottoms, params, Phase::Test).1.remove(0)
}

fn assert_near(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.size(), b.size(), "{what}: shape");
    let d = (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[]);
    assert!(d <= tol, "{what}: max |Δ| = {d:e} > {tol:e}\n{a}\n{b}");
}

fn f32v(v: f64) -> f64 {
    v as f32 as f64
}

// ---------------------------------------------------------------- Permute

#[test]
fn permute_moves_axes_and_completes_the_order() {
    let x = Tensor::arange(24, (Kind::Double, tch::Device::Cpu)).reshape([2, 3, 4]);
    // order: [2, 0] completes to [2, 0, 1]: top[i][j][k] = x[j][k][i].
    let y = run("name: 'p' type: 'Permute' permute_param { order: 2 order: 0 }", &[x.shallow_clone()], &[]);
    assert_eq!(y.size(), vec![4, 2, 3]);
    let xv = values(&x);
    let mut want = Vec::new();
    for i in 0..4 {
        for j in 0..2 {
            for k in 0..3 {
                want.push(xv[j * 12 + k * 4 + i]);
            }
        }
    }
    assert_eq!(values(&y), want);
    // No order: the identity.
    assert_eq!(values(&run("name: 'p' type: 'Permute'", &[x.shallow_clone()], &[])), xv);
    // SSD's use: N×C×H×W to N×H×W×C.
    let z = randn(&[2, 3, 4, 5], 1);
    let y = run(
        "name: 'p' type: 'Permute' permute_param { order: 0 order: 2 order: 3 order: 1 }",
        &[z.shallow_clone()],
        &[],
    );
    assert_eq!(y.size(), vec![2, 4, 5, 3]);
    assert_eq!(values(&y.select(3, 2).select(2, 4).select(1, 1)), values(&z.select(3, 4).select(2, 1).select(1, 2)));
}

#[test]
fn permute_errors_and_gradient() {
    let _rng = rng_exclusive();
    let e = setup_err("name: 'p' type: 'Permute' permute_param { order: 3 }", &[vec![2, 3, 4]]);
    assert!(e.contains("order 3 should be less than the input's 3 axes"), "{e}");
    let e = setup_err("name: 'p' type: 'Permute' permute_param { order: 1 order: 1 }", &[vec![2, 3, 4]]);
    assert!(e.contains("names axis 1 twice"), "{e}");
    layer::gradcheck(
        "name: 'p' type: 'Permute' permute_param { order: 0 order: 2 order: 3 order: 1 }",
        &[randn(&[2, 3, 2, 3], 2)],
        GradCheck::default(),
    );
}

// ---------------------------------------------------------------- Normalize

/// x / sqrt(eps + Σx²) · scale, the sum over each sample (across) or over
/// the channels at each position, in f64.
fn naive_normalize(x: &Tensor, scale: &Tensor, across: bool, eps: f64) -> Tensor {
    let s = x.size();
    let c = s[1];
    let sq = x.square();
    let norm = if across {
        sq.sum_dim_intlist([1i64, 2, 3].as_slice(), true, Kind::Double)
    } else {
        sq.sum_dim_intlist([1i64].as_slice(), true, Kind::Double)
    };
    let scale = if scale.numel() == 1 { scale.reshape([1, 1, 1, 1]) } else { scale.reshape([1, c, 1, 1]) };
    x / (norm + eps).sqrt() * scale
}

#[test]
fn normalize_values() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 2, 2], 3);
    let per_channel = t(&[1.0, 2.0, 3.0], &[3]);
    let eps = f32v(1e-10);
    let y = run(
        "name: 'n' type: 'Normalize' norm_param { across_spatial: false channel_shared: false }",
        &[x.shallow_clone()],
        &[per_channel.shallow_clone()],
    );
    assert_near("per position, per channel", &y, &naive_normalize(&x, &per_channel, false, eps), 1e-12);
    // Defaults: across the sample, one scale.
    let shared = t(&[2.5], &[]);
    let y = run("name: 'n' type: 'Normalize'", &[x.shallow_clone()], &[shared.shallow_clone()]);
    assert_near("across, shared", &y, &naive_normalize(&x, &shared, true, eps), 1e-12);
    // eps is added under the square root: a zero sample stays 0, a tiny one is damped.
    let z = t(&[0.0, 0.0, 3e-3, 4e-3], &[2, 2, 1, 1]);
    let y = run(
        "name: 'n' type: 'Normalize' norm_param { across_spatial: false eps: 0.0001 }",
        &[z.shallow_clone()],
        &[t(&[1.0], &[])],
    );
    let e = f32v(1e-4);
    let n = (e + 25e-6f64).sqrt();
    assert_near("eps", &y, &t(&[0.0, 0.0, 3e-3 / n, 4e-3 / n], &[2, 2, 1, 1]), 1e-12);
    // A 2-D bottom is N×C×1×1.
    let x2 = randn(&[3, 4], 4);
    let y = run(
        "name: 'n' type: 'Normalize' norm_param { across_spatial: false }",
        &[x2.shallow_clone()],
        &[t(&[1.0], &[])],
    );
    assert_near("2-D", &y, &naive_normalize(&x2.view([3, 4, 1, 1]), &t(&[1.0], &[]), false, eps).view([3, 4]), 1e-12);
    // The blob the net creates: a scalar, or one per channel, filled with 1 unless told.
    let (setup, _) =
        run_phase("name: 'n' type: 'Normalize'", &[x.shallow_clone()], &[shared.shallow_clone()], Phase::Test);
    assert_eq!(setup.params[0].shape, Vec::<i64>::new());
    assert_eq!(setup.params[0].filler.value, Some(1.0));
    let (setup, _) = run_phase(
        "name: 'n' type: 'Normalize' norm_param { channel_shared: false scale_filler { type: 'constant' value: 20 } }",
        &[x.shallow_clone()],
        &[per_channel.shallow_clone()],
        Phase::Test,
    );
    assert_eq!(setup.params[0].shape, vec![3]);
    assert_eq!(setup.params[0].filler.value, Some(20.0));
}

#[test]
fn normalize_backward_is_the_forks() {
    let _rng = rng_exclusive();
    // With one scale per channel the fork's bottom gradient is
    // s_c · (dy − x·Σ(x·dy)/‖x‖²) / ‖x‖, the sums over the normalized group,
    // not the gradient of its forward; its scale gradient is Σ (x/‖x‖)·dy.
    for across in [false, true] {
        let x = randn(&[2, 3, 2, 2], 5).set_requires_grad(true);
        let s = t(&[0.5, 2.0, -1.5], &[3]).set_requires_grad(true);
        let text =
            format!("name: 'n' type: 'Normalize' norm_param {{ across_spatial: {across} channel_shared: false }}");
        let y = run_phase(text.as_str(), &[x.shallow_clone()], &[s.shallow_clone()], Phase::Train).1.remove(0);
        let dy = randn(&[2, 3, 2, 2], 6);
        let g = Tensor::run_backward(&[(&y * &dy).sum(Kind::Double)], &[&x, &s], false, false);
        let xv = x.detach();
        let dims: &[i64] = if across { &[1, 2, 3] } else { &[1] };
        let n = (xv.square().sum_dim_intlist(dims, true, Kind::Double) + f32v(1e-10)).sqrt();
        let a = (&xv * &dy).sum_dim_intlist(dims, true, Kind::Double);
        let want_x = (&dy - &xv * &a / n.square()) / &n * s.detach().view([1, 3, 1, 1]);
        assert_near(&format!("across {across}: bottom"), &g[0], &want_x, 1e-12);
        let want_s = (&xv / &n * &dy).sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Double);
        assert_near(&format!("across {across}: scale"), &g[1], &want_s, 1e-12);
    }
}

#[test]
fn normalize_gradients_with_one_scale() {
    let _rng = rng_exclusive();
    // One scale: the fork's backward is the gradient of its forward.
    for text in [
        "name: 'n' type: 'Normalize'",
        "name: 'n' type: 'Normalize' norm_param { across_spatial: false scale_filler { type: 'constant' value: 3 } }",
    ] {
        layer::gradcheck(text, &[randn(&[2, 3, 2, 2], 7)], GradCheck::default());
    }
}

#[test]
fn normalize_errors() {
    let e = setup_err("name: 'n' type: 'Normalize'", &[vec![5]]);
    assert!(e.contains("at least 2 axes"), "{e}");
    let e = setup_err("name: 'n' type: 'Normalize'", &[vec![1, 2, 3, 4, 5]]);
    assert!(e.contains("N×C×H×W"), "{e}");
    let e = forward_err(
        "name: 'n' type: 'Normalize' norm_param { channel_shared: false }",
        &[randn(&[1, 3, 2, 2], 8)],
        &[t(&[1.0, 2.0], &[2])],
        Phase::Test,
    );
    assert!(e.contains("the scale blob has 2 values") && e.contains("needs 3"), "{e}");
}

// ---------------------------------------------------------------- PriorBox

/// The fork's boxes for one position, by its definition: [min], [sqrt(min·max)],
/// then min·√ar × min/√ar per aspect ratio ≠ 1, as corners over the image.
fn boxes_at(cx: f64, cy: f64, sizes: &[(f64, f64)], img: (f64, f64)) -> Vec<f64> {
    let mut out = Vec::new();
    for &(w, h) in sizes {
        out.extend([(cx - w / 2.0) / img.1, (cy - h / 2.0) / img.0, (cx + w / 2.0) / img.1, (cy + h / 2.0) / img.0]);
    }
    out
}

#[test]
fn prior_box_boxes_and_variances() {
    let map = Tensor::zeros([1, 5, 2, 2], (Kind::Float, tch::Device::Cpu));
    let image = Tensor::zeros([1, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
    // min 2 (2.7 is read as 2, as the fork does), max 8: sqrt(16) = 4;
    // aspect ratio 2 flipped: 2 and 0.5. Step 8/2 = 4, centres at 2 and 6.
    let text = "name: 'pb' type: 'PriorBox' prior_box_param { min_size: 2.7 max_size: 8 aspect_ratio: 2 \
                variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }";
    let y = run(text, &[map.shallow_clone(), image.shallow_clone()], &[]);
    assert_eq!(y.size(), vec![1, 2, 2 * 2 * 4 * 4]);
    let r2 = 2f64.sqrt();
    let sizes = [(2.0, 2.0), (4.0, 4.0), (2.0 * r2, 2.0 / r2), (2.0 * 0.5f64.sqrt(), 2.0 / 0.5f64.sqrt())];
    let mut want = Vec::new();
    for cy in [2.0, 6.0] {
        for cx in [2.0, 6.0] {
            want.extend(boxes_at(cx, cy, &sizes, (8.0, 8.0)));
        }
    }
    let mut variances = Vec::new();
    for _ in 0..16 {
        variances.extend([0.1, 0.1, 0.2, 0.2].map(f32v));
    }
    want.extend(variances);
    assert_near("boxes", &y, &t(&want, &[1, 2, 64]), 1e-7);

    // Clipped to [0, 1]; one variance for all; no flip; explicit image size and step.
    let text = "name: 'pb' type: 'PriorBox' prior_box_param { min_size: 10 aspect_ratio: 4 flip: false clip: true \
                img_h: 8 img_w: 16 step: 5 offset: 0 }";
    let y = run(text, &[Tensor::zeros([1, 1, 1, 2], (Kind::Float, tch::Device::Cpu))], &[]);
    let sizes = [(10.0, 10.0), (20.0, 5.0)];
    let mut want: Vec<f64> = boxes_at(0.0, 0.0, &sizes, (8.0, 16.0));
    want.extend(boxes_at(5.0, 0.0, &sizes, (8.0, 16.0)));
    let want: Vec<f64> =
        want.into_iter().map(|v| v.clamp(0.0, 1.0)).chain(std::iter::repeat_n(f32v(0.1), 16)).collect();
    assert_near("clipped", &y, &t(&want, &[1, 2, 16]), 1e-7);
    // The kind follows the bottom; the boxes carry no gradient.
    let y = run(text, &[Tensor::zeros([1, 1, 1, 2], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true)], &[]);
    assert_eq!(y.kind(), Kind::Double);
    assert!(!y.requires_grad());
}

#[test]
fn prior_box_errors() {
    let map = vec![1, 4, 3, 3];
    let image = vec![1, 3, 30, 30];
    for (params, words) in [
        ("", "must provide min_size"),
        ("min_size: 0", "min_size must be positive"),
        ("min_size: 4 max_size: 4", "max_size must be greater than min_size"),
        ("min_size: 4 min_size: 8 max_size: 9", "2 min_size"),
        ("min_size: 4 variance: 0.1 variance: 0.2", "takes 1 or 4 values"),
        ("min_size: 4 variance: 0", "variance must be positive"),
        ("min_size: 4 img_size: 30 img_h: 30 img_w: 30", "not both"),
        ("min_size: 4 step: 8 step_h: 8 step_w: 8", "not both"),
        ("min_size: 4 aspect_ratio: -2", "aspect_ratio must be positive"),
    ] {
        let text = format!("name: 'pb' type: 'PriorBox' prior_box_param {{ {params} }}");
        let e = setup_err(text.as_str(), &[map.clone(), image.clone()]);
        assert!(e.contains(words), "{params}: {e}");
    }
    let e = setup_err("name: 'pb' type: 'PriorBox' prior_box_param { min_size: 4 }", std::slice::from_ref(&map));
    assert!(e.contains("image size from bottom[1]"), "{e}");
}

// ---------------------------------------------------------------- DetectionOutput

const VAR: [f64; 4] = [0.1, 0.1, 0.2, 0.2];

/// PriorBox's top for these boxes, with SSD's usual variances.
fn priors(boxes: &[[f64; 4]]) -> Tensor {
    let mut v: Vec<f64> = boxes.iter().flatten().copied().collect();
    for _ in boxes {
        v.extend(VAR);
    }
    t(&v, &[1, 2, 4 * boxes.len() as i64])
}

/// The fork's CENTER_SIZE decoding, in f64.
fn center_size(p: [f64; 4], l: [f64; 4]) -> [f64; 4] {
    let (pw, ph) = (p[2] - p[0], p[3] - p[1]);
    let (cx, cy) = (VAR[0] * l[0] * pw + (p[0] + p[2]) / 2.0, VAR[1] * l[1] * ph + (p[1] + p[3]) / 2.0);
    let (w, h) = ((VAR[2] * l[2]).exp() * pw, (VAR[3] * l[3]).exp() * ph);
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

fn row(image: f64, label: f64, score: f64, b: [f64; 4]) -> Vec<f64> {
    vec![image, label, score, b[0], b[1], b[2], b[3]]
}

fn detections(params: &str, loc: &Tensor, conf: &Tensor, prior: &Tensor) -> Tensor {
    let text = format!("name: 'det' type: 'DetectionOutput' detection_output_param {{ {params} }}");
    run(text.as_str(), &[loc.shallow_clone(), conf.shallow_clone(), prior.shallow_clone()], &[])
}

fn assert_rows(what: &str, got: &Tensor, rows: &[Vec<f64>]) {
    let want: Vec<f64> = rows.iter().flatten().copied().collect();
    assert_near(what, got, &t(&want, &[1, 1, rows.len() as i64, 7]), 1e-6);
}

#[test]
fn detection_output_decodes_and_suppresses() {
    // p1 overlaps p0 (IoU 0.818); p2 is apart.
    let p = [[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.9, 0.8]];
    let l = [[0.0; 4], [0.0; 4], [0.5, -1.0, 0.3, 0.2]];
    let loc = t(&l.iter().flatten().copied().collect::<Vec<_>>(), &[1, 12]);
    // (background, class 1) per prior.
    let conf = t(&[0.1, 0.9, 0.2, 0.8, 0.3, 0.7], &[1, 6]);
    let pr = priors(&p);
    let base = "num_classes: 2 code_type: CENTER_SIZE";
    let b2 = center_size(p[2], l[2]);
    let y = detections(&format!("{base} nms_param {{ nms_threshold: 0.5 }}"), &loc, &conf, &pr);
    assert_rows("nms 0.5", &y, &[row(0.0, 1.0, 0.9, p[0]), row(0.0, 1.0, 0.7, b2)]);
    let y = detections(&format!("{base} nms_param {{ nms_threshold: 0.9 }}"), &loc, &conf, &pr);
    assert_rows("nms 0.9", &y, &[row(0.0, 1.0, 0.9, p[0]), row(0.0, 1.0, 0.8, p[1]), row(0.0, 1.0, 0.7, b2)]);
    // The default threshold is 0.3; keep_top_k, confidence_threshold and top_k cut.
    let y = detections(&format!("{base} keep_top_k: 1"), &loc, &conf, &pr);
    assert_rows("keep_top_k", &y, &[row(0.0, 1.0, 0.9, p[0])]);
    let y = detections(&format!("{base} confidence_threshold: 0.75"), &loc, &conf, &pr);
    assert_rows("confidence", &y, &[row(0.0, 1.0, 0.9, p[0])]);
    let y = detections(&format!("{base} nms_param {{ nms_threshold: 0.9 top_k: 2 }}"), &loc, &conf, &pr);
    assert_rows("top_k", &y, &[row(0.0, 1.0, 0.9, p[0]), row(0.0, 1.0, 0.8, p[1])]);
    // CORNER and CORNER_SIZE; variance encoded in the target.
    let corner =
        |p: [f64; 4], l: [f64; 4], scale: [f64; 4]| -> [f64; 4] { std::array::from_fn(|k| p[k] + l[k] * scale[k]) };
    let (pw, ph) = (0.3, 0.2);
    for (code, encoded, scale) in [
        ("CORNER", false, VAR),
        ("CORNER", true, [1.0; 4]),
        ("CORNER_SIZE", false, [VAR[0] * pw, VAR[1] * ph, VAR[2] * pw, VAR[3] * ph]),
        ("CORNER_SIZE", true, [pw, ph, pw, ph]),
    ] {
        let params = format!(
            "num_classes: 2 code_type: {code} variance_encoded_in_target: {encoded} confidence_threshold: 0.75"
        );
        let l2 = [[0.01, 0.02, -0.03, 0.04], [0.0; 4], [0.0; 4]];
        let loc2 = t(&l2.iter().flatten().copied().collect::<Vec<_>>(), &[1, 12]);
        let y = detections(&params, &loc2, &conf, &priors(&[[0.1, 0.1, 0.4, 0.3], p[1], p[2]]));
        assert_rows(&params, &y, &[row(0.0, 1.0, 0.9, corner([0.1, 0.1, 0.4, 0.3], l2[0], scale))]);
    }
    let y = detections(
        "num_classes: 2 code_type: CENTER_SIZE variance_encoded_in_target: true keep_top_k: 1",
        &loc,
        &conf,
        &pr,
    );
    assert_rows("CENTER_SIZE encoded", &y, &[row(0.0, 1.0, 0.9, p[0])]);
}

#[test]
fn detection_output_orders_by_image_then_label() {
    // Three classes (0 background); two images.
    let p = [[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], [0.3, 0.0, 0.5, 0.2]];
    let loc = Tensor::zeros([2, 12], (Kind::Double, tch::Device::Cpu));
    #[rustfmt::skip]
    let conf = t(&[
        // image 0: class 2 scores higher than class 1 everywhere.
        0.0, 0.4, 0.6,   0.0, 0.2, 0.8,   0.0, 0.1, 0.9,
        // image 1: nothing above the threshold for class 1.
        0.0, 0.01, 0.5,  0.0, 0.01, 0.01, 0.0, 0.01, 0.02,
    ], &[2, 9]);
    let pr = priors(&p);
    let y = detections("num_classes: 3 confidence_threshold: 0.3", &loc, &conf, &pr);
    assert_rows(
        "label order",
        &y,
        &[
            row(0.0, 1.0, 0.4, p[0]),
            row(0.0, 2.0, 0.9, p[2]),
            row(0.0, 2.0, 0.8, p[1]),
            row(0.0, 2.0, 0.6, p[0]),
            row(1.0, 2.0, 0.5, p[0]),
        ],
    );
    // keep_top_k keeps the best over all labels, still listed by label.
    let y = detections("num_classes: 3 confidence_threshold: 0.3 keep_top_k: 2", &loc, &conf, &pr);
    assert_rows(
        "keep_top_k by label",
        &y,
        &[row(0.0, 2.0, 0.9, p[2]), row(0.0, 2.0, 0.8, p[1]), row(1.0, 2.0, 0.5, p[0])],
    );
    // Background 2 instead of 0: labels 0 and 1 are reported.
    let y = detections("num_classes: 3 confidence_threshold: 0.3 background_label_id: 2", &loc, &conf, &pr);
    assert_rows("background 2", &y, &[row(0.0, 1.0, 0.4, p[0])]);
    // Nothing kept at all: one row of -1 per image.
    let y = detections("num_classes: 3 confidence_threshold: 0.95", &loc, &conf, &pr);
    assert_rows("none", &y, &[row(0.0, -1.0, -1.0, [-1.0; 4]), row(1.0, -1.0, -1.0, [-1.0; 4])]);
}

#[test]
fn detection_output_per_class_locations_and_adaptive_threshold() {
    // share_location: false — each class decodes its own prediction (the
    // background's is not read).
    let p = [[0.0, 0.0, 0.5, 0.5], [0.1, 0.0, 0.6, 0.5]]; // IoU 2/3
    #[rustfmt::skip]
    let loc = t(&[
        // prior 0: background, class 1, class 2
        9.0, 9.0, 9.0, 9.0,   0.0, 0.0, 0.0, 0.0,   1.0, 0.0, 0.0, 0.0,
        // prior 1
        9.0, 9.0, 9.0, 9.0,   0.0, 0.0, 0.0, 0.0,   0.0, 1.0, 0.0, 0.0,
    ], &[1, 24]);
    let conf = t(&[0.0, 0.9, 0.3, 0.0, 0.8, 0.2], &[1, 6]);
    let pr = priors(&p);
    let y = detections(
        "num_classes: 3 share_location: false code_type: CORNER nms_param { nms_threshold: 0.8 }",
        &loc,
        &conf,
        &pr,
    );
    let shift =
        |b: [f64; 4], k: usize| -> [f64; 4] { std::array::from_fn(|i| b[i] + if i == k { VAR[k] } else { 0.0 }) };
    assert_rows(
        "per class",
        &y,
        &[
            row(0.0, 1.0, 0.9, p[0]),
            row(0.0, 1.0, 0.8, p[1]),
            row(0.0, 2.0, 0.3, shift(p[0], 0)),
            row(0.0, 2.0, 0.2, shift(p[1], 1)),
        ],
    );
    // eta: after the first kept box the threshold 0.8 becomes 0.4, so the
    // second (IoU 2/3) is suppressed in class 1.
    let y = detections(
        "num_classes: 3 share_location: false code_type: CORNER confidence_threshold: 0.5 nms_param { nms_threshold: 0.8 eta: 0.5 }",
        &loc,
        &conf,
        &pr,
    );
    assert_rows("eta", &y, &[row(0.0, 1.0, 0.9, p[0])]);
    // f64 bottoms give an f64 top.
    assert_eq!(y.kind(), Kind::Double);
}

#[test]
fn detection_output_errors() {
    let shapes = vec![vec![1, 12], vec![1, 6], vec![1, 2, 12]];
    for (params, words) in [
        ("", "must specify num_classes"),
        ("num_classes: 3", "Number of priors must match number of confidence predictions"),
        ("num_classes: 2 share_location: false", "Number of priors must match number of location predictions"),
        ("num_classes: 2 nms_param { eta: 0 }", "eta must be in (0, 1]"),
        ("num_classes: 2 nms_param { eta: 1.5 }", "eta must be in (0, 1]"),
        ("num_classes: 2 nms_param { nms_threshold: -1 }", "nms_threshold must be non-negative"),
    ] {
        let text = format!("name: 'det' type: 'DetectionOutput' detection_output_param {{ {params} }}");
        let e = setup_err(text.as_str(), &shapes);
        assert!(e.contains(words), "{params}: {e}");
    }
    let e = setup_err("name: 'det' type: 'DetectionOutput' detection_output_param { num_classes: 2 }", &shapes[..2]);
    assert!(e.contains("takes 3 to 4 bottom blobs"), "{e}");
    let e = setup_err(
        "name: 'det' type: 'DetectionOutput' detection_output_param { num_classes: 2 }",
        &[vec![2, 12], vec![1, 6], vec![1, 2, 12]],
    );
    assert!(e.contains("for 2 and 1 images"), "{e}");
    // A prior with no area cannot decode a CENTER_SIZE prediction.
    let e = forward_err(
        "name: 'det' type: 'DetectionOutput' detection_output_param { num_classes: 2 code_type: CENTER_SIZE }",
        &[
            Tensor::zeros([1, 4], (Kind::Double, tch::Device::Cpu)),
            t(&[0.0, 1.0], &[1, 2]),
            priors(&[[0.2, 0.2, 0.2, 0.5]]),
        ],
        &[],
        Phase::Test,
    );
    assert!(e.contains("a prior box has no area"), "{e}");
}

// ---------------------------------------------------------------- ROIPooling

/// A 1×1×6×8 map whose value at (h, w) is 8h + w: a bin's maximum is its
/// bottom-right cell.
fn ramp_map() -> Tensor {
    Tensor::arange(48, (Kind::Double, tch::Device::Cpu)).reshape([1, 1, 6, 8])
}

fn roi_pool(params: &str, x: &Tensor, rois: &[f64]) -> Tensor {
    let text = format!("name: 'r' type: 'ROIPooling' roi_pooling_param {{ {params} }}");
    run(text.as_str(), &[x.shallow_clone(), t(rois, &[rois.len() as i64 / 5, 5])], &[])
}

#[test]
fn roi_pooling_bins() {
    let x = ramp_map();
    // The whole map in 2×2 bins of 3×4 cells.
    let y = roi_pool("pooled_h: 2 pooled_w: 2", &x, &[0.0, 0.0, 0.0, 7.0, 5.0]);
    assert_eq!(y.size(), vec![1, 1, 2, 2]);
    assert_eq!(values(&y), vec![19.0, 23.0, 43.0, 47.0]);
    // Uneven bins: a 3×5 region in 2×3 bins; rows [1, 3) and [2, 4),
    // columns [1, 3), [2, 5) and [4, 6) (floor and ceil of f32 multiples).
    let y = roi_pool("pooled_h: 2 pooled_w: 3", &x, &[0.0, 1.0, 1.0, 5.0, 3.0]);
    assert_eq!(values(&y), vec![18.0, 20.0, 21.0, 26.0, 28.0, 29.0]);
    // spatial_scale, with corners rounded half away from zero: 10 · 0.25 =
    // 2.5 → 3, 14 · 0.25 = 3.5 → 4: the single cell (3, 3) ... (4, 4).
    let y = roi_pool("pooled_h: 1 pooled_w: 1 spatial_scale: 0.25", &x, &[0.0, 10.0, 10.0, 14.0, 14.0]);
    assert_eq!(values(&y), vec![36.0]);
    // An inverted region is one cell; a region off the map gives empty bins (0);
    // one that overhangs is clipped.
    let y = roi_pool("pooled_h: 1 pooled_w: 1", &x, &[0.0, 5.0, 4.0, 2.0, 1.0, 0.0, 50.0, 50.0, 60.0, 60.0]);
    assert_eq!(values(&y), vec![37.0, 0.0]);
    let y = roi_pool("pooled_h: 2 pooled_w: 1", &x, &[0.0, 6.0, 4.0, 9.0, 7.0]);
    // Rows [4, 6) and [6, 8) → [6, 6): the second bin is empty.
    assert_eq!(values(&y), vec![47.0, 0.0]);
    // The batch index picks the image; the channels pool alike.
    let two = Tensor::cat(&[ramp_map(), ramp_map() * -1.0 + 100.0], 0).repeat([1, 2, 1, 1]);
    let y = roi_pool("pooled_h: 1 pooled_w: 1", &two, &[1.0, 0.0, 0.0, 7.0, 5.0, 0.0, 0.0, 0.0, 7.0, 5.0]);
    assert_eq!(y.size(), vec![2, 2, 1, 1]);
    assert_eq!(values(&y), vec![100.0, 100.0, 47.0, 47.0]);
}

#[test]
fn roi_pooling_gradient_goes_to_each_bins_first_maximum() {
    // All zeros: every cell ties; the fork's argmax is the first in row-major order.
    let x = Tensor::zeros([1, 1, 4, 4], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
    let y = roi_pool("pooled_h: 2 pooled_w: 2", &x, &[0.0, 0.0, 0.0, 3.0, 3.0]);
    let g = Tensor::run_backward(&[y.sum(Kind::Double)], &[&x], false, false).remove(0);
    #[rustfmt::skip]
    let want = [1.0, 0.0, 1.0, 0.0,  0.0, 0.0, 0.0, 0.0,  1.0, 0.0, 1.0, 0.0,  0.0, 0.0, 0.0, 0.0];
    assert_eq!(values(&g), want);
    // Overlapping regions add up at a shared maximum; empty bins send nothing.
    let x = ramp_map().set_requires_grad(true);
    let y = roi_pool(
        "pooled_h: 1 pooled_w: 1",
        &x,
        &[0.0, 0.0, 0.0, 7.0, 5.0, 0.0, 4.0, 3.0, 7.0, 5.0, 0.0, 50.0, 50.0, 60.0, 60.0],
    );
    let g = Tensor::run_backward(&[y.sum(Kind::Double)], &[&x], false, false).remove(0);
    let mut want = vec![0.0; 48];
    want[47] = 2.0;
    assert_eq!(values(&g), want);
}

#[test]
fn roi_pooling_errors() {
    let e = setup_err(
        "name: 'r' type: 'ROIPooling' roi_pooling_param { pooled_h: 0 pooled_w: 2 }",
        &[vec![1, 1, 6, 8], vec![1, 5]],
    );
    assert!(e.contains("pooled_h and pooled_w must be > 0"), "{e}");
    let e = setup_err(
        "name: 'r' type: 'ROIPooling' roi_pooling_param { pooled_h: 2 pooled_w: 2 }",
        &[vec![1, 1, 6, 8], vec![1, 4]],
    );
    assert!(e.contains("one row of 5 values"), "{e}");
    let text = "name: 'r' type: 'ROIPooling' roi_pooling_param { pooled_h: 2 pooled_w: 2 }";
    let e = forward_err(text, &[ramp_map(), t(&[1.0, 0.0, 0.0, 3.0, 3.0], &[1, 5])], &[], Phase::Test);
    assert!(e.contains("batch index 1 is outside the 1 images"), "{e}");
    let e = forward_err(text, &[ramp_map(), t(&[0.0, f64::NAN, 0.0, 3.0, 3.0], &[1, 5])], &[], Phase::Test);
    assert!(e.contains("not a finite number"), "{e}");
}

#[test]
fn detection_output_takes_odd_values_without_panicking() {
    // NaN and infinite predictions, inverted and zero-size priors, odd
    // thresholds and counts: an answer or an error, never a panic.
    let p = [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.5, 0.9], [0.9, 0.9, 0.1, 0.1]];
    let loc = t(&[f64::NAN, 0.0, 0.0, 0.0, 1e30, -1e30, 50.0, 50.0, 0.0, f64::INFINITY, 0.0, 0.0], &[1, 12]);
    let conf = t(&[0.0, f64::NAN, 0.0, f64::INFINITY, 0.0, f64::NEG_INFINITY], &[1, 6]);
    let pr = priors(&p);
    for params in [
        "num_classes: 2 code_type: CORNER",
        "num_classes: 2 code_type: CORNER_SIZE variance_encoded_in_target: true",
        "num_classes: 2 keep_top_k: -5 nms_param { top_k: -3 nms_threshold: 0 }",
        "num_classes: 2 keep_top_k: 0 confidence_threshold: -1e38",
        "num_classes: 2 background_label_id: 7 nms_param { top_k: 1000000 eta: 0.1 nms_threshold: 1e9 }",
        "num_classes: 2 share_location: false background_label_id: -1",
    ] {
        let text = format!("name: 'det' type: 'DetectionOutput' detection_output_param {{ {params} }}");
        let (loc2, pr2) = if params.contains("share_location: false") {
            (loc.repeat([1, 2]), pr.shallow_clone())
        } else {
            (loc.shallow_clone(), pr.shallow_clone())
        };
        let mut layer = caffe_tch::layers::create_layer(&crate::common::layer::lp(&text)).expect(params);
        let shapes = vec![loc2.size(), conf.size(), pr2.size()];
        layer.setup(&shapes).expect(params);
        match layer.forward(&crate::common::layer::ctx(Phase::Test), &[loc2, conf.shallow_clone(), pr2], &[]) {
            Ok(tops) => assert_eq!(tops[0].size()[3], 7, "{params}"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // A num_classes whose product with the priors overflows is a mismatch, not a panic.
    let e = setup_err(
        "name: 'det' type: 'DetectionOutput' detection_output_param { num_classes: 4294967295 }",
        &[vec![1, 1 << 40], vec![1, 6], vec![1, 2, 1 << 40]],
    );
    assert!(e.contains("Number of priors must match"), "{e}");
}

// ---------------------------------------------------------------- Proposal

/// Runs a Proposal layer (TEST) on scores, deltas and im_info; returns its tops.
fn proposal(params: &str, tops: usize, bottoms: [Tensor; 3]) -> Vec<Tensor> {
    let top_text: String = (0..tops).map(|k| format!(" top: 't{k}'")).collect();
    let text = format!("type: 'Proposal'{top_text} proposal_param {{ {params} }}");
    run_phase(text.as_str(), &bottoms, &[], Phase::Test).1
}

#[test]
fn proposal_anchors_are_py_faster_rcnns() {
    // generate_anchors() with its defaults, as py-faster-rcnn's docstring lists them.
    let want: [[f32; 4]; 9] = [
        [-84., -40., 99., 55.],
        [-176., -88., 191., 103.],
        [-360., -184., 375., 199.],
        [-56., -56., 71., 71.],
        [-120., -120., 135., 135.],
        [-248., -248., 263., 263.],
        [-36., -80., 51., 95.],
        [-80., -168., 95., 183.],
        [-168., -344., 183., 359.],
    ];
    let anchors = caffe_tch::layers::detection::proposal::generate_anchors(16.0, &[0.5, 1.0, 2.0], &[8.0, 16.0, 32.0]);
    assert_eq!(anchors, want);
    // Sides round half to even, as numpy's round: a base of 18 at ratio 0.5 is
    // sqrt(648) = 25.46 → 25 wide and 12.5 → 12 high (half away from zero: 13).
    let a = caffe_tch::layers::detection::proposal::generate_anchors(18.0, &[0.5], &[1.0]);
    assert_eq!(a, [[-3.5, 3., 20.5, 14.]]);
}

#[test]
fn proposal_decodes_clips_filters_orders_and_suppresses() {
    let _rng = rng_exclusive();
    // One anchor (base 4, ratio 1, scale 1: [0, 0, 3, 3]) on a 1×3 map, stride 4:
    // anchors [0,0,3,3], [4,0,7,3], [8,0,11,3] in a 4×12 image.
    let base = "feat_stride: 4 base_size: 4 ratio: 1 scale: 1";
    // Scores: the background channel, then the foreground one.
    let scores = t(&[0., 0., 0., 0.9, 0.2, 0.8], &[1, 2, 1, 3]);
    // Deltas, a channel each for dx, dy, dw, dh over the 3 cells: cell 0 moves
    // half a width right, cell 1 doubles its width, cell 2 shrinks to a quarter.
    let deltas = t(&[0.5, 0., 0., 0., 0., 0., 0., 2f64.ln(), 0.25f64.ln(), 0., 0., 0.25f64.ln()], &[1, 4, 1, 3]);
    let info = t(&[4., 12., 1.], &[1, 3]);
    let bottoms = || [scores.shallow_clone(), deltas.shallow_clone(), info.shallow_clone()];
    // Cell 0: centre 2 + 0.5·4 = 4, width 4: [2, 0, 6, 4], clipped to the image: [2, 0, 6, 3], score 0.9.
    // Cell 1: centre 6, width 8: [2, 0, 10, 3], score 0.2; its IoU with cell 0's is
    //   (5·4) / (5·4 + 9·4 − 5·4) = 0.556.
    // Cell 2: centre (10, 2), a 1×1 box: [9.5, 1.5, 10.5, 2.5], 2×2 pixels, score 0.8.
    let (c0, c1, c2) = ([0., 2., 0., 6., 3.], [0., 2., 0., 10., 3.], [0., 9.5, 1.5, 10.5, 2.5]);
    type Case<'a> = (&'a str, Vec<[f64; 5]>, Vec<f64>); // (parameters, regions, their scores)
    let cases: Vec<Case> = vec![
        ("min_size: 2 nms_thresh: 0.5", vec![c0, c2], vec![0.9, 0.8]),
        ("min_size: 2 nms_thresh: 0.6", vec![c0, c2, c1], vec![0.9, 0.8, 0.2]),
        ("min_size: 3 nms_thresh: 0.6", vec![c0, c1], vec![0.9, 0.2]),
        ("min_size: 2 nms_thresh: 0.6 post_nms_topn: 2", vec![c0, c2], vec![0.9, 0.8]),
        ("min_size: 2 nms_thresh: 0.6 pre_nms_topn: 1", vec![c0], vec![0.9]),
    ];
    for (params, regions, kept_scores) in cases {
        let tops = proposal(&format!("{base} {params}"), 2, bottoms());
        let want: Vec<f64> = regions.iter().flatten().copied().collect();
        assert_near(params, &tops[0], &t(&want, &[regions.len() as i64, 5]), 1e-5);
        let want: Vec<f64> = kept_scores.iter().map(|&v| f32v(v)).collect();
        assert_near(params, &tops[1], &t(&want, &[kept_scores.len() as i64, 1]), 0.0);
    }
    // The image's scale multiplies min_size: at scale 1.5 a box needs 3 pixels.
    let info15 = t(&[4., 12., 1.5], &[1, 3]);
    let tops = proposal(
        &format!("{base} min_size: 2 nms_thresh: 0.6"),
        1,
        [scores.shallow_clone(), deltas.shallow_clone(), info15],
    );
    assert_eq!(tops.len(), 1);
    assert_eq!(tops[0].size(), [2, 5]);
    // A batch of two: each image's regions, with its index and its own im_info row.
    let two = |x: &Tensor| Tensor::cat(&[x.shallow_clone(), x.shallow_clone()], 0);
    let infos = t(&[4., 12., 1., 4., 12., 1.5], &[2, 3]);
    let tops = proposal(&format!("{base} min_size: 2 nms_thresh: 0.6"), 1, [two(&scores), two(&deltas), infos]);
    let images: Vec<f64> = values(&tops[0].select(1, 0));
    assert_eq!(images, [0., 0., 0., 1., 1.]);
    // Nothing left: a 0×5 top.
    let tops = proposal(&format!("{base} min_size: 100"), 1, bottoms());
    assert_eq!(tops[0].size(), [0, 5]);
    // Errors name what is wrong.
    for (params, shapes, want) in [
        ("", vec![vec![1, 4, 2, 2], vec![1, 36, 2, 2], vec![1, 3]], "9 anchors need 18"),
        ("", vec![vec![1, 18, 2, 2], vec![1, 36, 2, 3], vec![1, 3]], "bottom[1] (deltas) has shape [1, 36, 2, 3]"),
        ("", vec![vec![1, 18, 2, 2], vec![1, 36, 2, 2], vec![1, 2]], "bottom[2] (im_info)"),
        ("ratio: 0", vec![vec![1, 2, 2, 2], vec![1, 4, 2, 2], vec![1, 3]], "ratios and scales must be positive"),
        ("nms_thresh: 2", vec![vec![1, 18, 2, 2], vec![1, 36, 2, 2], vec![1, 3]], "nms_thresh must be in [0, 1]"),
        (
            "feat_stride: 0",
            vec![vec![1, 18, 2, 2], vec![1, 36, 2, 2], vec![1, 3]],
            "feat_stride and base_size must be positive",
        ),
    ] {
        let e = setup_err(format!("type: 'Proposal' proposal_param {{ {params} }}").as_str(), &shapes);
        assert!(e.contains(want), "{params}: {e}");
    }
    let e = forward_err(
        format!("type: 'Proposal' proposal_param {{ {base} }}").as_str(),
        &[scores.shallow_clone(), deltas.shallow_clone(), t(&[0., 12., 1.], &[1, 3])],
        &[],
        Phase::Test,
    );
    assert!(e.contains("height and width must be at least 1"), "{e}");
}

/// A region proposal net on random scores and deltas, its proposal layer as `layer` writes it.
fn proposal_net_outputs(layer: &str, phase: Phase) -> Vec<Tensor> {
    let text = format!(
        "layer {{ name: 'in' type: 'Input' top: 'scores' top: 'deltas' top: 'im_info'
           input_param {{ shape {{ dim: 1 dim: 12 dim: 9 dim: 11 }} shape {{ dim: 1 dim: 24 dim: 9 dim: 11 }} shape {{ dim: 1 dim: 3 }} }} }}
         layer {{ name: 'proposal' bottom: 'scores' bottom: 'deltas' bottom: 'im_info' top: 'rois' top: 'kept' {layer} }}"
    );
    let mut net = crate::common::net(&text, "rpn.prototxt", phase).unwrap_or_else(|e| panic!("{e}"));
    let _rng = rng_exclusive();
    tch::manual_seed(7);
    net.set_input("scores", &Tensor::rand([1, 12, 9, 11], (Kind::Float, tch::Device::Cpu))).unwrap();
    net.set_input("deltas", &(Tensor::randn([1, 24, 9, 11], (Kind::Float, tch::Device::Cpu)) * 0.2)).unwrap();
    net.set_input("im_info", &t(&[140., 170., 1.], &[1, 3])).unwrap();
    net.forward().unwrap();
    ["rois", "kept"].iter().map(|b| net.blob(b).unwrap().copy()).collect()
}

#[test]
fn py_faster_rcnns_python_proposal_layer_runs_as_the_native_one() {
    // This process has no Python: py-faster-rcnn's layer is the native one, with its config's defaults.
    let python = "type: 'Python' python_param { module: 'rpn.proposal_layer' layer: 'ProposalLayer' \
                  param_str: \"{'feat_stride': 16, 'scales': [2, 4]}\" }";
    for (phase, pre, post) in [(Phase::Test, 6000, 300), (Phase::Train, 12000, 2000)] {
        let native = format!(
            "type: 'Proposal' proposal_param {{ feat_stride: 16 base_size: 16 min_size: 16 ratio: 0.5 ratio: 1 ratio: 2 \
             scale: 2 scale: 4 pre_nms_topn: {pre} post_nms_topn: {post} nms_thresh: 0.7 }}"
        );
        let (ours, want) = (proposal_net_outputs(python, phase), proposal_net_outputs(&native, phase));
        assert!(ours[0].size()[0] > 1, "{phase:?}: too few regions to compare: {:?}", ours[0].size());
        for (a, b) in ours.iter().zip(&want) {
            assert!(a.equal(b), "{phase:?}: the Python layer's stand-in differs from the native layer");
        }
    }
    // The param_str forms py-faster-rcnn's nets write, and what it cannot mean.
    use caffe_tch::layers::detection::py_proposal::native_param;
    use caffe_tch::proto::caffe::{LayerParameter, PythonParameter};
    let layer = |param_str: &str| LayerParameter {
        name: Some("proposal".into()),
        r#type: Some("Python".into()),
        python_param: Some(PythonParameter {
            module: Some("rpn.proposal_layer".into()),
            layer: Some("ProposalLayer".into()),
            param_str: Some(param_str.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    for (param_str, stride, scales) in [
        ("'feat_stride': 16", 16, vec![8., 16., 32.]),
        ("{'feat_stride': 32, 'scales': [16, 32, 64]}", 32, vec![16., 32., 64.]),
        ("feat_stride: 8\nscales: (4, 8)", 8, vec![4., 8.]),
    ] {
        let p = native_param(&layer(param_str), Phase::Test).unwrap().proposal_param.unwrap();
        assert_eq!((p.feat_stride(), p.scale), (stride, scales), "{param_str}");
    }
    for (param_str, want) in [
        ("'scales': [8]", "must give feat_stride"),
        ("'feat_stride': 16, 'anchor_count': 9", "'anchor_count', which py-faster-rcnn's proposal layer does not read"),
        ("'feat_stride': 'sixteen'", "the value of 'feat_stride' must be a number"),
        ("'feat_stride': 0", "feat_stride must be one positive integer"),
        ("feat_stride", "is not a `key: value` pair"),
    ] {
        let e = native_param(&layer(param_str), Phase::Test).unwrap_err().to_string();
        assert!(e.contains(want), "{param_str}: {e}");
    }
    // In a net file, the error names the file, line and layer.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rpn.prototxt");
    std::fs::write(
        &file,
        "layer { name: 'in' type: 'Input' top: 's' top: 'd' top: 'i' input_param { shape { dim: 1 dim: 18 dim: 2 dim: 2 } \
           shape { dim: 1 dim: 36 dim: 2 dim: 2 } shape { dim: 1 dim: 3 } } }\n\
         layer { name: 'proposal' type: 'Python' bottom: 's' bottom: 'd' bottom: 'i' top: 'rois'\n\
           python_param { module: 'rpn.proposal_layer' layer: 'ProposalLayer' param_str: \"'stride': 16\" } }",
    )
    .unwrap();
    let state = crate::common::net_state(Phase::Test);
    let e = caffe_tch::net::Net::from_file(&file, &state, Default::default(), tch::Device::Cpu)
        .err()
        .expect("an unknown param_str key is an error")
        .to_string();
    assert!(
        e.starts_with(&format!("{}:2:1", file.display())) && e.contains("'proposal'") && e.contains("'stride'"),
        "{e}"
    );
}

// ---------------------------------------------------------------- PSROIPooling

#[test]
fn psroi_pooling_averages_each_bins_own_channel() {
    let _rng = rng_exclusive();
    // 2 output channels of 2×2 bins: 8 channels on a 4×6 map, channel c filled with c·100 + row·10 + col.
    let x = Tensor::from_slice(
        &(0..8 * 4 * 6).map(|i| ((i / 24) * 100 + (i % 24) / 6 * 10 + i % 6) as f64).collect::<Vec<_>>(),
    )
    .reshape([1, 8, 4, 6]);
    let text = "type: 'PSROIPooling' psroi_pooling_param { spatial_scale: 1 output_dim: 2 group_size: 2 }";
    // Region [0, 0, 0, 3, 1]: x 0..4, y 0..2 (the end one pixel further); bins 2×1 cells.
    // Bin (i, j) of output k reads channel (2k + i)·2 + j over rows i, cols 2j..2j+2.
    let rois = t(&[0., 0., 0., 3., 1.], &[1, 5]);
    let y = run(text, &[x.shallow_clone(), rois], &[]);
    let want: Vec<f64> = (0..2)
        .flat_map(|k| {
            (0..2).flat_map(move |i| {
                (0..2).map(move |j| {
                    let channel = ((2 * k + i) * 2 + j) as f64;
                    channel * 100.0 + i as f64 * 10.0 + (2 * j) as f64 + 0.5
                })
            })
        })
        .collect();
    layer::assert_shaped_values("bins", &y, &want, &[1, 2, 2, 2]);
    // Corners round half away from zero before scaling; a region off the map has empty bins (0).
    let rois = t(&[0., -0.5, -0.5, 0.5, 0.5, 0., 50., 50., 60., 60.], &[2, 5]);
    let y = run(text, &[x.shallow_clone(), rois], &[]);
    // Region 0: round(-0.5) = -1, round(0.5) = 1 → x from -1 to 2 (3 px), bins 1.5 wide:
    // bin 0 covers floor(-1)..ceil(0.5) = -1..1 → clipped 0..1; bin 1 covers floor(0.5)..ceil(2) = 0..2.
    let v = values(&y);
    assert_eq!(v[0], 0.0, "channel 0, cell (0, 0)");
    assert_eq!(v[1], 100.0 + 0.5, "channel 1 over cells (0, 0) and (0, 1)");
    assert!(v[8..].iter().all(|&a| a == 0.0), "off the map: {:?}", &v[8..]);
    // The gradient spreads each bin's over its cells.
    layer::gradcheck(
        "type: 'PSROIPooling' psroi_pooling_param { spatial_scale: 0.5 output_dim: 2 group_size: 3 }",
        &[
            randn(&[2, 18, 7, 8], 81),
            t(&[0., 0., 0., 13., 11., 1., 3.4, 2.6, 10.2, 12.7, 0., -3., -3., 5., 5.], &[3, 5]),
        ],
        GradCheck { skip_bottoms: vec![1], ..Default::default() },
    );
    // Errors.
    let e = setup_err(text, &[vec![1, 6, 4, 6], vec![1, 5]]);
    assert!(e.contains("bottom[0] has 6 channels; output_dim 2 × group_size² 4 needs 8"), "{e}");
    let e = setup_err("type: 'PSROIPooling' psroi_pooling_param { output_dim: 2 }", &[vec![1, 8, 4, 6], vec![1, 5]]);
    assert!(e.contains("output_dim and group_size must be > 0"), "{e}");
    let e = forward_err(text, &[x.shallow_clone(), t(&[3., 0., 0., 1., 1.], &[1, 5])], &[], Phase::Test);
    assert!(e.contains("batch index 3 is outside the 1 images"), "{e}");
}

// ---------------------------------------------------------------- MultiBoxLoss

/// The four quadrants of the unit square as priors.
const QUADRANTS: [[f64; 4]; 4] =
    [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]];

/// The fork's CENTER_SIZE encoding with SSD's variances, in f64.
fn encode_center_size(p: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    let (pw, ph, bw, bh) = (p[2] - p[0], p[3] - p[1], b[2] - b[0], b[3] - b[1]);
    [
        ((b[0] + b[2]) / 2.0 - (p[0] + p[2]) / 2.0) / pw / VAR[0],
        ((b[1] + b[3]) / 2.0 - (p[1] + p[3]) / 2.0) / ph / VAR[1],
        (bw / pw).ln() / VAR[2],
        (bh / ph).ln() / VAR[3],
    ]
}

fn smooth_l1(d: f64) -> f64 {
    if d.abs() < 1.0 {
        0.5 * d * d
    } else {
        d.abs() - 0.5
    }
}

/// −log softmax(x)[label].
fn cross_entropy(x: &[f64], label: usize) -> f64 {
    let max = x.iter().copied().fold(f64::MIN, f64::max);
    max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - x[label]
}

/// Runs a MultiBoxLoss on (loc, conf, priors, truth); returns the loss and
/// the gradients of loc and conf.
fn multibox(params: &str, loc: &Tensor, conf: &Tensor, prior: &Tensor, truth: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let text = format!("name: 'mbox_loss' type: 'MultiBoxLoss' multibox_loss_param {{ {params} }}");
    let (loc, conf) = (loc.detach().set_requires_grad(true), conf.detach().set_requires_grad(true));
    let gt = t(truth, &[1, 1, truth.len() as i64 / 8, 8]);
    let (_, tops) = run_phase(
        text.as_str(),
        &[loc.shallow_clone(), conf.shallow_clone(), prior.shallow_clone(), gt],
        &[],
        Phase::Train,
    );
    tops[0].backward();
    (tops[0].double_value(&[]), values(&loc.grad()), values(&conf.grad()))
}

const MBOX_LOC: [f64; 16] = [0.1, -0.2, 0.3, 0.05, 0.4, 0.1, -0.1, 0.2, -0.3, 0.2, 0.1, 0.0, 0.2, 0.2, -0.2, 0.1];
/// Three classes per quadrant; background first. As background, quadrant 2
/// is the easiest and quadrant 3 the hardest.
const MBOX_CONF: [f64; 12] = [0.2, 1.0, -0.5, 0.0, 0.3, 0.1, 2.0, -1.0, 0.0, -0.4, 0.6, 0.2];
/// One box of class 1 over quadrant 0 (IoU 0.72), and a padding row.
const MBOX_TRUTH: [f64; 16] =
    [0.0, 1.0, 0.0, 0.05, 0.05, 0.45, 0.5, 0.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0];

#[test]
fn multibox_loss_matches_mines_and_normalizes() {
    let (loc, conf, pr) = (t(&MBOX_LOC, &[1, 16]), t(&MBOX_CONF, &[1, 12]), priors(&QUADRANTS));
    let c = |p: usize| &MBOX_CONF[p * 3..p * 3 + 3];
    let target = encode_center_size(QUADRANTS[0], [0.05, 0.05, 0.45, 0.5]);
    let loc_term: f64 = (0..4).map(|k| smooth_l1(MBOX_LOC[k] - target[k])).sum();
    let base = "num_classes: 3 code_type: CENTER_SIZE";
    // Two negatives per positive: the hardest backgrounds, quadrants 3 and 1.
    let (loss, gloc, gconf) = multibox(&format!("{base} neg_pos_ratio: 2"), &loc, &conf, &pr, &MBOX_TRUTH);
    let want = loc_term + cross_entropy(c(0), 1) + cross_entropy(c(3), 0) + cross_entropy(c(1), 0);
    assert!((loss - want).abs() < 1e-5, "loss {loss} vs {want}");
    assert!(gloc[4..].iter().all(|&g| g == 0.0), "only quadrant 0 localizes: {gloc:?}");
    assert!(gloc[..4].iter().all(|&g| g != 0.0), "{gloc:?}");
    assert!(gconf[6..9].iter().all(|&g| g == 0.0), "quadrant 2 is not mined: {gconf:?}");
    // Three per positive: every other quadrant; loc_weight scales the first term.
    let (loss, ..) = multibox(&format!("{base} loc_weight: 2"), &loc, &conf, &pr, &MBOX_TRUTH);
    let all_neg: f64 = (1..4).map(|p| cross_entropy(c(p), 0)).sum();
    let want3 = 2.0 * loc_term + cross_entropy(c(0), 1) + all_neg;
    assert!((loss - want3).abs() < 1e-5, "loss {loss} vs {want3}");
    // FULL divides by images × priors; mining NONE takes every prior.
    let (loss, ..) = multibox(&format!("{base} mining_type: NONE"), &loc, &conf, &pr, &MBOX_TRUTH);
    assert!((loss - want3 + loc_term).abs() < 1e-5, "NONE: {loss}");
    let text = format!("{base} mining_type: NONE }} loss_param {{ normalization: FULL");
    let (loss, ..) = multibox(&text, &loc, &conf, &pr, &MBOX_TRUTH);
    assert!((loss - (want3 - loc_term) / 4.0).abs() < 1e-6, "FULL: {loss}");
    // An image with no box adds nothing when mining (its priors are never
    // negatives), and all its priors as background without.
    let loc2 = Tensor::cat(&[&loc, &loc], 0);
    let conf2 = Tensor::cat(&[&conf, &conf], 0);
    let (loss, ..) = multibox(&format!("{base} neg_pos_ratio: 2"), &loc2, &conf2, &pr, &MBOX_TRUTH);
    assert!((loss - want).abs() < 1e-5, "two images, one boxed: {loss} vs {want}");
    let text = format!("{base} mining_type: NONE }} loss_param {{ normalization: BATCH_SIZE");
    let (loss, ..) = multibox(&text, &loc2, &conf2, &pr, &MBOX_TRUTH);
    let want_none = loc_term + cross_entropy(c(0), 1) + all_neg + (0..4).map(|p| cross_entropy(c(p), 0)).sum::<f64>();
    assert!((loss - want_none / 2.0).abs() < 1e-5, "BATCH_SIZE: {loss} vs {}", want_none / 2.0);
    // No box at all: the loss is 0, and so are the gradients.
    let (loss, gloc, gconf) = multibox(base, &loc, &conf, &pr, &MBOX_TRUTH[8..]);
    assert_eq!(loss, 0.0);
    assert!(gloc.iter().chain(&gconf).all(|&g| g == 0.0));
    // A difficult box is skipped unless use_difficult_gt.
    let mut difficult = MBOX_TRUTH;
    difficult[7] = 1.0;
    let (loss, ..) = multibox(&format!("{base} use_difficult_gt: false"), &loc, &conf, &pr, &difficult);
    assert_eq!(loss, 0.0);
    let (loss, ..) = multibox(&format!("{base} neg_pos_ratio: 2"), &loc, &conf, &pr, &difficult);
    assert!((loss - want).abs() < 1e-5);
}

#[test]
fn multibox_loss_gradients() {
    let _rng = rng_exclusive();
    // Eight priors (two sizes at four centres), two images, three boxes.
    let mut boxes = Vec::new();
    for (cx, cy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
        for half in [0.2, 0.3] {
            boxes.push([cx - half, cy - half, cx + half, cy + half]);
        }
    }
    let pr = priors(&boxes);
    let truth = [
        0.0, 1.0, 0.0, 0.1, 0.1, 0.45, 0.5, 0.0, //
        0.0, 2.0, 1.0, 0.5, 0.5, 0.95, 0.9, 0.0, //
        1.0, 1.0, 0.0, 0.3, 0.2, 0.8, 0.7, 0.0,
    ];
    let gt = t(&truth, &[1, 1, 3, 8]);
    for params in [
        "num_classes: 3 code_type: CENTER_SIZE neg_pos_ratio: 1",
        "num_classes: 3 code_type: CENTER_SIZE mining_type: NONE conf_loss_type: LOGISTIC loc_loss_type: L2",
        "num_classes: 3 mining_type: HARD_EXAMPLE sample_size: 5 match_type: BIPARTITE",
        // (With encode_variance_in_target the fork's backward is not the
        // gradient: python/tests/test_multibox_loss.py checks it.)
        "num_classes: 3 code_type: CORNER_SIZE bp_inside: true",
        "num_classes: 3 share_location: false mining_type: NONE use_prior_for_matching: false overlap_threshold: 0.3",
    ] {
        let lc = if params.contains("share_location: false") { 3 } else { 1 };
        let text = format!("name: 'mbox_loss' type: 'MultiBoxLoss' multibox_loss_param {{ {params} }}");
        let loc = randn(&[2, 8 * 4 * lc], 11) * 0.3;
        let conf = randn(&[2, 8 * 3], 12);
        layer::gradcheck(
            text.as_str(),
            &[loc, conf, pr.shallow_clone(), gt.shallow_clone()],
            GradCheck { skip_bottoms: vec![2, 3], ..GradCheck::default() },
        );
    }
}

#[test]
fn multibox_loss_errors() {
    let (loc, conf, pr) = (t(&MBOX_LOC, &[1, 16]), t(&MBOX_CONF, &[1, 12]), priors(&QUADRANTS));
    let gt = |rows: &[f64]| t(rows, &[1, 1, rows.len() as i64 / 8, 8]);
    let bottoms = |truth: Tensor| [loc.shallow_clone(), conf.shallow_clone(), pr.shallow_clone(), truth];
    let shapes = [vec![1, 16], vec![1, 12], vec![1, 2, 16], vec![1, 1, 1, 8]];
    let e = setup_err("name: 'm' type: 'MultiBoxLoss'", &shapes);
    assert!(e.contains("must specify num_classes"), "{e}");
    let e = setup_err("name: 'm' type: 'MultiBoxLoss' multibox_loss_param { num_classes: 4 }", &shapes);
    assert!(e.contains("Number of priors must match number of confidence predictions"), "{e}");
    let e = setup_err(
        "name: 'm' type: 'MultiBoxLoss' multibox_loss_param { num_classes: 3 share_location: false }",
        &shapes,
    );
    assert!(e.contains("only support negative mining if share_location is true"), "{e}");
    let e = setup_err(
        "name: 'm' type: 'MultiBoxLoss' multibox_loss_param { num_classes: 3 do_neg_mining: false }",
        &shapes,
    );
    assert!(e.contains("contradicts mining_type MAX_NEGATIVE"), "{e}");
    let e = setup_err(
        "name: 'm' type: 'MultiBoxLoss' multibox_loss_param { num_classes: 3 }",
        &[vec![1, 16], vec![1, 12], vec![1, 2, 16], vec![1, 1, 1, 7]],
    );
    assert!(e.contains("rows of 8 values"), "{e}");
    let text = "name: 'm' type: 'MultiBoxLoss' multibox_loss_param { num_classes: 3 }";
    let mut row = MBOX_TRUTH[..8].to_vec();
    row[1] = 0.0;
    let e = forward_err(text, &bottoms(gt(&row)), &[], Phase::Train);
    assert!(e.contains("Found background label in the dataset: ground-truth row 0"), "{e}");
    row[1] = 3.0;
    let e = forward_err(text, &bottoms(gt(&row)), &[], Phase::Train);
    assert!(e.contains("label 3, outside the 3 classes"), "{e}");
    row[1] = 1.0;
    row[0] = 1.0;
    let e = forward_err(text, &bottoms(gt(&row)), &[], Phase::Train);
    assert!(e.contains("is not one of the batch's 1"), "{e}");
    // A box with no width overlaps nothing: it is never matched (and never
    // encoded, which it could not be).
    let (loss, gloc, _) = multibox(
        "num_classes: 3 code_type: CENTER_SIZE overlap_threshold: 0",
        &loc,
        &conf,
        &pr,
        &[0.0, 1.0, 0.0, 0.2, 0.1, 0.2, 0.4, 0.0],
    );
    assert_eq!(loss, 0.0);
    assert!(gloc.iter().all(|&g| g == 0.0));
}

// ---------------------------------------------------------------- DetectionEvaluate

fn evaluate(params: &str, det: &[f64], gt: &[f64]) -> Vec<Vec<f64>> {
    let text = format!("name: 'eval' type: 'DetectionEvaluate' detection_evaluate_param {{ {params} }}");
    let d = t(det, &[1, 1, det.len() as i64 / 7, 7]);
    let g = t(gt, &[1, 1, gt.len() as i64 / 8, 8]);
    values(&run(text.as_str(), &[d, g], &[])).chunks(5).map(|r| r.to_vec()).collect()
}

#[test]
fn detection_evaluate_marks_true_and_false_positives() {
    #[rustfmt::skip]
    let det = [
        0.0, 1.0, 0.8, 0.1, 0.1, 0.4, 0.4,   // a second hit on the same box: false
        0.0, 1.0, 0.9, 0.1, 0.1, 0.4, 0.42,  // the best hit: true
        0.0, 2.0, 0.7, 0.1, 0.1, 0.4, 0.4,   // no class-2 box in image 0: false
        1.0, 1.0, 0.6, 0.5, 0.5, 0.9, 0.9,   // on a difficult box: neither
        1.0, 2.0, 0.5, 0.0, 0.0, 0.2, 0.2,   // misses the class-2 box: false
    ];
    #[rustfmt::skip]
    let gt = [
        0.0, 1.0, 0.0, 0.1, 0.1, 0.4, 0.4, 0.0,
        1.0, 1.0, 0.0, 0.5, 0.5, 0.9, 0.9, 1.0,
        1.0, 2.0, 1.0, 0.6, 0.6, 0.8, 0.8, 0.0,
        -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0,
        1.0, 2.0, 2.0, 0.0, 0.0, 0.2, 0.2, 0.0, // after the padding row: not read
    ];
    let rows = evaluate("num_classes: 3 evaluate_difficult_gt: false", &det, &gt);
    let want: Vec<Vec<f64>> = vec![
        vec![-1.0, 1.0, 1.0, -1.0, -1.0],
        vec![-1.0, 2.0, 1.0, -1.0, -1.0],
        vec![0.0, 1.0, f32v(0.9), 1.0, 0.0],
        vec![0.0, 1.0, f32v(0.8), 0.0, 1.0],
        vec![0.0, 2.0, f32v(0.7), 0.0, 1.0],
        vec![1.0, 1.0, f32v(0.6), 0.0, 0.0],
        vec![1.0, 2.0, f32v(0.5), 0.0, 1.0],
    ];
    assert_eq!(rows, want);
    // Difficult boxes counted: two class-1 boxes, and the hit on one is true.
    let rows = evaluate("num_classes: 3", &det, &gt);
    assert_eq!(rows[0], vec![-1.0, 1.0, 2.0, -1.0, -1.0]);
    assert_eq!(rows[5], vec![1.0, 1.0, f32v(0.6), 1.0, 0.0]);
}

#[test]
fn detection_evaluate_in_pixels_counts_sides_inclusively() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = dir.path().join("test_name_size.txt");
    std::fs::write(&sizes, "000001 10 10\n").unwrap();
    // Two adjacent one-pixel-wide boxes: no overlap as normalized boxes; in
    // pixels, with inclusive sides, IoU 2/6.
    let det = [0.0, 1.0, 0.9, 0.0, 0.0, 0.1, 0.1];
    let gt = [0.0, 1.0, 0.0, 0.1, 0.0, 0.2, 0.1, 0.0];
    let rows = evaluate("num_classes: 2 overlap_threshold: 0.3", &det, &gt);
    assert_eq!(&rows[1][3..], &[0.0, 1.0]);
    let params = format!("num_classes: 2 overlap_threshold: 0.3 name_size_file: '{}'", sizes.display());
    let rows = evaluate(&params, &det, &gt);
    assert_eq!(&rows[1][3..], &[1.0, 0.0]);
    let e = setup_err("name: 'e' type: 'DetectionEvaluate' detection_evaluate_param { num_classes: 2 name_size_file: '/nonexistent/sizes.txt' }", &[vec![1, 1, 1, 7], vec![1, 1, 1, 8]]);
    assert!(e.contains("/nonexistent/sizes.txt"), "{e}");
    let e = setup_err("name: 'e' type: 'DetectionEvaluate'", &[vec![1, 1, 1, 7], vec![1, 1, 1, 8]]);
    assert!(e.contains("Must provide num_classes"), "{e}");
    let e = setup_err(
        "name: 'e' type: 'DetectionEvaluate' detection_evaluate_param { num_classes: 2 }",
        &[vec![1, 1, 1, 6], vec![1, 1, 1, 8]],
    );
    assert!(e.contains("1×1×D×7"), "{e}");
}

#[test]
fn average_precision_in_the_three_versions() {
    use caffe_tch::layers::detection::detection_evaluate::average_precision;
    // Ranked: hit, miss, hit, of two boxes: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    let tp = [(0.9f32, 1), (0.8, 0), (0.7, 1)];
    let fp = [(0.9f32, 0), (0.8, 1), (0.7, 0)];
    let ap = |v: &str| average_precision(&tp, &fp, 2, v).unwrap() as f64;
    assert!((ap("Integral") - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-6);
    assert!((ap("MaxIntegral") - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-6);
    // VOC2007: the best precision at recall ≥ 0, 0.1, …, 1: six of 1, five of 2/3.
    assert!((ap("11point") - (6.0 + 5.0 * 2.0 / 3.0) / 11.0).abs() < 1e-6);
    assert_eq!(average_precision(&[], &[], 3, "Integral").unwrap(), 0.0);
    let e = average_precision(&tp, &fp, 2, "VOC").unwrap_err().to_string();
    assert!(e.contains("Unknown ap_version: 'VOC'"), "{e}");
}

#[test]
fn detection_output_saves_the_benchmarks_result_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("labelmap.prototxt"), "item { name: 'none' label: 0 } item { name: 'cat' label: 1 }")
        .unwrap();
    std::fs::write(d.join("sizes.txt"), "000001 100 200\n397133 50 50\n").unwrap();
    // Two images: one box of class 1 each, at p0 (0.1..0.3 of the image; the
    // second image scores it 0.7).
    let p = [[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.8]];
    let loc = t(&[0.0; 16], &[2, 8]);
    let conf = t(&[0.1, 0.9, 0.8, 0.2, 0.3, 0.7, 0.9, 0.1], &[2, 4]);
    let run_with = |format: &str, per_pass: u32| {
        let params = format!(
            "num_classes: 2 code_type: CENTER_SIZE confidence_threshold: 0.5 save_output_param {{ output_directory: '{}' \
             output_name_prefix: 'comp4_det_test_' output_format: '{format}' label_map_file: '{}' name_size_file: '{}' \
             num_test_image: {per_pass} }}",
            d.join("out").display(),
            d.join("labelmap.prototxt").display(),
            d.join("sizes.txt").display()
        );
        let rows = detections(&params, &loc, &conf, &priors(&p));
        assert_eq!(rows.size(), [1, 1, 2, 7]);
    };
    let read = |f: &str| std::fs::read_to_string(d.join("out").join(f)).unwrap();
    run_with("VOC", 2);
    // In pixels of each image (200×100, then 50×50), corners truncated.
    assert_eq!(read("comp4_det_test_cat.txt"), "000001 0.9 20 10 60 30\n397133 0.7 5 5 15 15\n");
    run_with("ILSVRC", 2);
    assert_eq!(read("comp4_det_test_.txt"), "000001 1 0.9 20 10 60 30\n397133 1 0.7 5 5 15 15\n");
    run_with("COCO", 2);
    let json = read("comp4_det_test_.json");
    assert!(
        json.contains(
            "{\"image_id\": \"000001\", \"category_id\": \"cat\", \"bbox\": [20, 10, 40, 20], \"score\": 0.9}"
        ),
        "{json}"
    );
    assert!(json.contains("\"image_id\": 397133,"), "{json}");
    // One image per pass: each image is a pass of its own, named (and sized)
    // from the list's start again, and rewrites the files.
    run_with("VOC", 1);
    assert_eq!(read("comp4_det_test_cat.txt"), "000001 0.7 20 10 60 30\n");
    let params = format!(
        "num_classes: 2 save_output_param {{ output_directory: '{}' output_format: 'KITTI' label_map_file: '{}' \
         name_size_file: '{}' }}",
        d.join("out").display(),
        d.join("labelmap.prototxt").display(),
        d.join("sizes.txt").display()
    );
    let e = setup_err(
        format!("name: 'det' type: 'DetectionOutput' detection_output_param {{ {params} }}").as_str(),
        &[vec![2, 8], vec![2, 4], vec![1, 2, 8]],
    );
    assert!(e.contains("output_format 'KITTI' is not VOC, COCO or ILSVRC"), "{e}");
}

// ---------------------------------------------------------------- Yolov3DetectionOutput

/// A 2×2 YOLOv3 map (one anchor, two classes) of `image` logits -20 but
/// for the cells set here; returns N × 7 × 2 × 2.
fn yolo_map(images: usize, cells: &[(usize, [f64; 7])]) -> Tensor {
    let mut v = vec![-20.0; images * 7 * 4];
    for &(cell, logits) in cells {
        for (c, l) in logits.iter().enumerate() {
            v[c * 4 + cell] = *l;
        }
    }
    t(&v, &[images as i64, 7, 2, 2])
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

#[test]
fn yolov3_detection_output_decodes_and_suppresses_across_classes() {
    let one = "name: 'det' type: 'Yolov3DetectionOutput' yolov3_detection_output_param { num_classes: 2 num_box: 1 \
               biases: 16 biases: 32 biases: 32 biases: 32 anchors_scale: 8 mask_group_num: 1 mask: 0 }";
    // Cell 1 (row 0, column 1): centre (0.75, 0.25), 1 × 1 (e^0 · 16 / (2 · 8), e^ln½ · 32 / 16),
    // objectness 0.9, class 0 at 0.8 and class 1 at 0.5; cell 2: objectness ½, class 1 at 0.8.
    let map = yolo_map(
        2,
        &[
            (1, [0.0, 0.0, 0.0, 0.5f64.ln(), logit(0.9), logit(0.8), 0.0]),
            (2, [0.0, 0.0, 0.0, 0.5f64.ln(), 0.0, -20.0, logit(0.8)]),
        ],
    );
    let y = run(one, &[map.shallow_clone()], &[]);
    // Class 1 at cell 1 is the same box as class 0 there: suppressed though of another class.
    assert_rows(
        "one scale",
        &y,
        &[row(0.0, 1.0, 0.72, [0.25, -0.25, 1.25, 0.75]), row(0.0, 2.0, 0.4, [-0.25, 0.25, 0.75, 1.25])],
    );
    // A second scale (1×1, stride 16, the second anchor): a 2 × 2 box at the centre, best of all.
    let two = one.replace(
        "anchors_scale: 8 mask_group_num: 1 mask: 0",
        "anchors_scale: 8 anchors_scale: 16 mask_group_num: 2 mask: 0 mask: 1",
    );
    let coarse = t(&[0.0, 0.0, 0.0, 0.0, logit(0.9), logit(0.9), -20.0], &[1, 7, 1, 1]);
    let y = run(two.as_str(), &[map.narrow(0, 0, 1), coarse], &[]);
    assert_rows(
        "two scales",
        &y,
        &[
            row(0.0, 1.0, 0.81, [-0.5, -0.5, 1.5, 1.5]),
            row(0.0, 1.0, 0.72, [0.25, -0.25, 1.25, 0.75]),
            row(0.0, 2.0, 0.4, [-0.25, 0.25, 0.75, 1.25]),
        ],
    );
    // Nothing above the threshold: one row of -1 per image.
    let y = run(one, &[yolo_map(2, &[])], &[]);
    assert_rows("none", &y, &[row(0.0, -1.0, -1.0, [-1.0; 4]), row(1.0, -1.0, -1.0, [-1.0; 4])]);
}

/// The greedy suppression across classes keeps what the plain quadratic pass
/// over every (box, class) candidate keeps, in the same order, though it
/// first keeps only the best candidate of each box.
#[test]
fn yolov3_suppression_keeps_what_the_plain_greedy_pass_keeps() {
    use caffe_tch::layers::detection::yolov3_detection_output::{iou, suppress_across_classes, Candidate};
    fn plain(mut c: Vec<Candidate>, threshold: f32) -> Vec<Candidate> {
        c.sort_by(|a, b| b.confidence.partial_cmp(&a.confidence).unwrap());
        let mut kept: Vec<Candidate> = Vec::new();
        let mut gone = vec![false; c.len()];
        for i in 0..c.len() {
            if gone[i] {
                continue;
            }
            for j in i + 1..c.len() {
                gone[j] = gone[j] || iou(&c[i], &c[j]) >= threshold;
            }
            kept.push(c[i]);
        }
        kept
    }
    let _rng = rng_exclusive();
    tch::manual_seed(5);
    let u = |n: i64| values(&Tensor::rand([n], (Kind::Float, tch::Device::Cpu)));
    for (threshold, boxes, classes) in [(0.45f32, 300usize, 6usize), (0.7, 200, 3), (1.0, 50, 4), (1.5, 40, 3)] {
        let (xy, wh, conf) = (u(2 * boxes as i64), u(2 * boxes as i64), u((boxes * classes) as i64));
        let mut candidates = Vec::new();
        for b in 0..boxes {
            for class in 0..classes {
                // Some confidences tie within a box, some boxes are empty.
                let confidence = ((conf[b * classes + class] * 8.0).round() / 8.0) as f32;
                let w = if b % 17 == 0 { 0.0 } else { 0.05 + 0.3 * wh[2 * b] as f32 };
                if confidence > 0.2 {
                    let (x, y, h) = (xy[2 * b] as f32, xy[2 * b + 1] as f32, 0.05 + 0.3 * wh[2 * b + 1] as f32);
                    candidates.push(Candidate { x, y, w, h, class, confidence });
                }
            }
        }
        let want = plain(candidates.clone(), threshold);
        assert!(want.len() > 10, "threshold {threshold}: too few kept to compare: {}", want.len());
        let got = suppress_across_classes(candidates, threshold);
        let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(
            got.len() == want.len() && first_difference.is_none(),
            "threshold {threshold}: {} kept, the plain pass keeps {}; first difference at {first_difference:?}",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn yolov3_detection_output_errors() {
    let p = "num_classes: 2 num_box: 1 biases: 16 biases: 32 anchors_scale: 8 mask_group_num: 1";
    let text = |extra: &str| {
        format!("name: 'det' type: 'Yolov3DetectionOutput' yolov3_detection_output_param {{ {p} {extra} }}")
    };
    let e = setup_err(text("mask: 0").as_str(), &[vec![1, 6, 2, 2]]);
    assert!(e.contains("N × 7 × H × W (1 anchors of 5 + 2 classes)"), "{e}");
    let e = setup_err(text("mask: 1").as_str(), &[vec![1, 7, 2, 2]]);
    assert!(e.contains("mask 1 names an anchor past the 2 biases"), "{e}");
    let e = setup_err(text("mask: 0").as_str(), &[vec![1, 7, 2, 2], vec![1, 7, 1, 1]]);
    assert!(e.contains("mask_group_num is 1, but the layer has 2 bottoms"), "{e}");
    let e = setup_err(text("").as_str(), &[vec![1, 7, 2, 2]]);
    assert!(e.contains("fewer than num_box 1"), "{e}");
}

// ---------------------------------------------------------------- YoloDetectionOutput (YOLOv2)

#[test]
fn yolo_detection_output_decodes_softmax_classes_and_suppresses() {
    let spec = "name: 'det' type: 'YoloDetectionOutput' yolo_detection_output_param { num_classes: 2 num_box: 1 \
                biases: 1 biases: 2 }";
    // Cell 1 (row 0, column 1): centre (0.75, 0.25), 0.5 × 0.5 (e^0 · 1 / 2, e^ln½ · 2 / 2), objectness 0.9,
    // classes softmax(ln 3, 0) = (¾, ¼): class 0 at 0.675. Cell 2 (row 1, column 0): objectness ½,
    // softmax(0, ln 4) = (⅕, ⅘): class 1 at 0.4.
    let map = yolo_map(
        2,
        &[
            (1, [0.0, 0.0, 0.0, 0.5f64.ln(), logit(0.9), 3f64.ln(), 0.0]),
            (2, [0.0, 0.0, 0.0, 0.5f64.ln(), 0.0, 0.0, 4f64.ln()]),
        ],
    );
    let y = run(spec, &[map.shallow_clone()], &[]);
    // Image 1 (every logit -20) has none.
    let (a, b) = (row(0.0, 1.0, 0.675, [0.5, 0.0, 1.0, 0.5]), row(0.0, 2.0, 0.4, [0.0, 0.5, 0.5, 1.0]));
    assert_rows("one map", &y, &[a, b]);
    // A second, 1 × 1 map: the whole image at 0.99 · ¾, which overlaps each box above by 0.25 ≥ 0.2.
    let coarse = t(&[0.0, 0.0, 0.0, 0.5f64.ln(), logit(0.99), 3f64.ln(), 0.0], &[1, 7, 1, 1]);
    let tight = spec.replace("biases: 2 }", "biases: 2 nms_threshold: 0.2 }");
    let y = run(tight.as_str(), &[map.narrow(0, 0, 1), coarse], &[]);
    assert_rows("two maps", &y, &[row(0.0, 1.0, 0.7425, [0.0, 0.0, 1.0, 1.0])]);
    // Nothing at the threshold: one row of -1 per image.
    let high = spec.replace("biases: 2 }", "biases: 2 confidence_threshold: 0.99 }");
    let y = run(high.as_str(), &[map], &[]);
    assert_rows("none", &y, &[row(0.0, -1.0, -1.0, [-1.0; 4]), row(1.0, -1.0, -1.0, [-1.0; 4])]);
    // Errors: a map that is not square, too few biases, the wrong channel count.
    let e = setup_err(spec, &[vec![1, 7, 2, 3]]);
    assert!(e.contains("is 2×3: the fork reads square maps only"), "{e}");
    let e = setup_err(spec.replace("biases: 1 biases: 2", "biases: 1").as_str(), &[vec![1, 7, 2, 2]]);
    assert!(e.contains("1 anchors need 2 biases"), "{e}");
    let e = setup_err(spec, &[vec![1, 8, 2, 2]]);
    assert!(e.contains("N × 7 × S × S"), "{e}");
}
