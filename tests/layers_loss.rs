//! The loss and metric layers of `src/layers/loss/`: values against formulas
//! computed here in plain f64, Caffe's normalization modes and ignore_label,
//! Caffe's backward where it is not the exact gradient (clamped logs,
//! Contrastive's ε), gradient checks (labels skipped), input errors, and the
//! default loss weight inside a net.
use std::path::Path;

use caffe_tch::layers::gradcheck::GradCheck;
use caffe_tch::layers::{create_layer, SetupOut};
use caffe_tch::proto::caffe::{BlobProto, BlobShape, Phase};
use tch::{Device, Kind, Tensor};

use crate::common::layer::{self, assert_values, ctx, lp, randn, run_phase, setup_err, t, values};
use crate::common::{net, rng_exclusive};

/// Creates, sets up and runs a layer in TRAIN (no blobs).
fn run_full(text: &str, bottoms: &[Tensor]) -> (SetupOut, Vec<Tensor>) {
    run_phase(text, bottoms, &[], Phase::Train)
}

fn run(text: &str, bottoms: &[Tensor]) -> Vec<Tensor> {
    run_full(text, bottoms).1
}

/// The scalar top 0 (a loss or an accuracy), checked to be 0-D.
fn scalar(text: &str, bottoms: &[Tensor]) -> f64 {
    let tops = run(text, bottoms);
    assert_eq!(tops[0].size(), Vec::<i64>::new(), "{text}: top 0 must be a 0-D scalar");
    tops[0].double_value(&[])
}

/// d(top 0)/d(bottom k) for each k in `wrt` (other bottoms as given).
fn grads(text: &str, bottoms: &[Tensor], wrt: &[usize]) -> Vec<Tensor> {
    let b: Vec<Tensor> = bottoms
        .iter()
        .enumerate()
        .map(|(i, x)| if wrt.contains(&i) { x.detach().set_requires_grad(true) } else { x.shallow_clone() })
        .collect();
    let tops = run(text, &b);
    let inputs: Vec<&Tensor> = wrt.iter().map(|&i| &b[i]).collect();
    Tensor::run_backward(&[&tops[0]], &inputs, false, false)
}

/// The error from a TRAIN forward pass (setup must pass).
fn forward_err(text: &str, bottoms: &[Tensor]) -> String {
    layer::forward_err(text, bottoms, &[], Phase::Train)
}

fn close(what: &str, got: f64, expected: f64, tol: f64) {
    assert!((got - expected).abs() <= tol * (1.0 + expected.abs()), "{what}: got {got}, expected {expected}");
}

/// A TRAIN gradient check at `tolerance`; `skip` lists bottoms that get none (labels).
fn gradcheck(text: &str, bottoms: &[Tensor], skip: &[usize], tolerance: f64) {
    layer::gradcheck(text, bottoms, GradCheck { skip_bottoms: skip.to_vec(), tolerance, ..Default::default() });
}

/// log softmax of one row, in plain f64.
fn log_softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    row.iter().map(|v| v - lse).collect()
}

// ---------------------------------------------------------------- SoftmaxWithLoss

/// A 2×3×2 prediction (N=2, C=3, inner 2) and its per-position −log p[label].
const SM_X: [f64; 12] = [1.0, -1.0, 2.0, 0.5, 0.0, 3.0, /* n=1 */ -2.0, 1.0, 0.5, 0.5, 4.0, -1.0];

fn sm_nll(labels: &[usize; 4]) -> Vec<f64> {
    let mut out = Vec::new();
    for n in 0..2 {
        for s in 0..2 {
            let row: Vec<f64> = (0..3).map(|c| SM_X[n * 6 + c * 2 + s]).collect();
            out.push(-log_softmax(&row)[labels[n * 2 + s]]);
        }
    }
    out
}

fn sm_bottoms(labels: &[f64; 4]) -> Vec<Tensor> {
    vec![t(&SM_X, &[2, 3, 2]), t(labels, &[2, 2])]
}

#[test]
fn softmax_loss_value_and_gradient() {
    let _rng = rng_exclusive();
    let text = r#"name: "l" type: "SoftmaxWithLoss""#;
    let nll = sm_nll(&[0, 2, 1, 0]);
    let loss = scalar(text, &sm_bottoms(&[0.0, 2.0, 1.0, 0.0]));
    close("loss", loss, nll.iter().sum::<f64>() / 4.0, 1e-12);
    // Labels are cast to int as Caffe's static_cast: 2.7 → 2.
    close("truncated labels", scalar(text, &sm_bottoms(&[0.2, 2.7, 1.0, 0.9])), loss, 1e-12);
    // Gradient: (softmax − one-hot) / 4.
    let g = &grads(text, &sm_bottoms(&[0.0, 2.0, 1.0, 0.0]), &[0])[0];
    let labels = [0, 2, 1, 0];
    let mut expected = vec![0.0; 12];
    for n in 0..2 {
        for s in 0..2 {
            let row: Vec<f64> = (0..3).map(|c| SM_X[n * 6 + c * 2 + s]).collect();
            let p: Vec<f64> = log_softmax(&row).iter().map(|v| v.exp()).collect();
            for c in 0..3 {
                expected[n * 6 + c * 2 + s] = (p[c] - (c == labels[n * 2 + s]) as i32 as f64) / 4.0;
            }
        }
    }
    assert_values("gradient", g, &expected);
    gradcheck(text, &sm_bottoms(&[0.0, 2.0, 1.0, 0.0]), &[1], 1e-6);
    gradcheck(
        text,
        &[randn(&[3, 5, 2, 2], 1), t(&[0., 1., 2., 3., 4., 0., 1., 2., 3., 4., 0., 1.], &[3, 1, 2, 2])],
        &[1],
        1e-6,
    );
}

#[test]
fn softmax_loss_normalization_modes() {
    let _rng = rng_exclusive();
    // Position 1 (n=0, s=1) carries the ignore label 7.
    let nll = sm_nll(&[0, 0, 1, 2]);
    let valid_sum = nll[0] + nll[2] + nll[3];
    let b = sm_bottoms(&[0.0, 7.0, 1.0, 2.0]);
    let base = r#"name: "l" type: "SoftmaxWithLoss" loss_param { ignore_label: 7 "#;
    let cases = [
        ("", valid_sum / 3.0),
        ("normalization: VALID", valid_sum / 3.0),
        ("normalization: FULL", valid_sum / 4.0),
        ("normalization: BATCH_SIZE", valid_sum / 2.0),
        ("normalization: NONE", valid_sum),
        ("normalize: true", valid_sum / 3.0),
        ("normalize: false", valid_sum / 2.0),
        // An explicit normalization wins over the legacy flag.
        ("normalize: false normalization: FULL", valid_sum / 4.0),
        ("normalize: true normalization: NONE", valid_sum),
    ];
    for (extra, expected) in cases {
        let text = format!("{base} {extra} }}");
        close(&text, scalar(&text, &b), expected, 1e-12);
    }
    // Ignored positions get no gradient; the rest get (p − 1[label]) / normalizer.
    let g = &grads(&format!("{base} normalization: NONE }}"), &b, &[0])[0];
    let gv = values(g);
    for c in 0..3 {
        assert_eq!(gv[c * 2 + 1], 0.0, "ignored position, class {c}");
    }
    gradcheck(&format!("{base} normalization: FULL }}"), &b, &[1], 1e-6);
    // Every label ignored: the normalizer is max(1, 0) and the loss 0, not NaN.
    let all_ignored = sm_bottoms(&[7.0, 7.0, 7.0, 7.0]);
    assert_eq!(scalar(&format!("{base} }}"), &all_ignored), 0.0);
    // Without ignore_label, VALID counts every position.
    let text = r#"name: "l" type: "SoftmaxWithLoss" loss_param { normalization: VALID }"#;
    close("valid, no ignore", scalar(text, &sm_bottoms(&[0.0, 0.0, 1.0, 2.0])), nll.iter().sum::<f64>() / 4.0, 1e-12);
}

#[test]
fn softmax_loss_probability_top_and_axis() {
    let _rng = rng_exclusive();
    let text = r#"name: "l" type: "SoftmaxWithLoss" top: "loss" top: "prob""#;
    let (setup, tops) = run_full(text, &sm_bottoms(&[0.0, 2.0, 1.0, 0.0]));
    assert_eq!(setup.tops, vec![vec![], vec![2, 3, 2]]);
    let probs = values(&tops[1]);
    for n in 0..2 {
        for s in 0..2 {
            let row: Vec<f64> = (0..3).map(|c| SM_X[n * 6 + c * 2 + s]).collect();
            for (c, lp) in log_softmax(&row).iter().enumerate() {
                close("prob", probs[n * 6 + c * 2 + s], lp.exp(), 1e-12);
            }
        }
    }
    // Caffe's backward ignores the probability top: it carries no gradient.
    let b = sm_bottoms(&[0.0, 2.0, 1.0, 0.0]);
    let tops = run(text, &[b[0].detach().set_requires_grad(true), b[1].shallow_clone()]);
    assert!(tops[0].requires_grad() && !tops[1].requires_grad());
    let err = setup_err(r#"name: "l" type: "SoftmaxWithLoss" top: "a" top: "b" top: "c""#, &[vec![2, 3], vec![2]]);
    assert!(err.contains("at most 2"), "{err}");

    // axis: -1 over a 2×2×3 blob: classes last, 4 positions.
    let x = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0, -1.0, 5.0, 2.0, 0.3, 0.2, 0.1];
    let labels = [2usize, 0, 1, 2];
    let expected: f64 = (0..4).map(|i| -log_softmax(&x[i * 3..i * 3 + 3])[labels[i]]).sum::<f64>() / 4.0;
    let text = r#"name: "l" type: "SoftmaxWithLoss" softmax_param { axis: -1 }"#;
    let bottoms = [t(&x, &[2, 2, 3]), t(&[2.0, 0.0, 1.0, 2.0], &[2, 2])];
    close("axis -1", scalar(text, &bottoms), expected, 1e-12);
    gradcheck(text, &bottoms, &[1], 1e-6);
}

#[test]
fn softmax_loss_clamps_hopeless_samples_like_caffe() {
    let _rng = rng_exclusive();
    // In f32 the true-class probability underflows: Caffe logs −log(FLT_MIN) = 87.3365,
    // while the gradient stays softmax − one-hot.
    let text = r#"name: "l" type: "SoftmaxWithLoss""#;
    let x = Tensor::from_slice(&[0.0f32, 200.0]).reshape([1, 2]);
    let label = Tensor::from_slice(&[0.0f32]);
    let loss = scalar(text, &[x.shallow_clone(), label.shallow_clone()]);
    close("clamped loss", loss, -(f32::MIN_POSITIVE as f64).ln(), 1e-6);
    let g = &grads(text, &[x, label], &[0])[0];
    assert_values("clamped gradient", g, &[-1.0, 1.0]);
}

#[test]
fn softmax_loss_bad_inputs() {
    let _rng = rng_exclusive();
    let text = r#"name: "l" type: "SoftmaxWithLoss""#;
    let err = forward_err(text, &sm_bottoms(&[0.0, 3.0, 1.0, 0.0]));
    assert!(err.contains("out of range"), "{err}");
    let err = forward_err(text, &sm_bottoms(&[0.0, -1.0, 1.0, 0.0]));
    assert!(err.contains("out of range"), "{err}");
    // A negative label is fine when it is the ignore label.
    scalar(r#"name: "l" type: "SoftmaxWithLoss" loss_param { ignore_label: -1 }"#, &sm_bottoms(&[0.0, -1.0, 1.0, 0.0]));
    let err = setup_err(text, &[vec![2, 3, 2], vec![2, 3]]);
    assert!(err.contains("Number of labels"), "{err}");
    let err = setup_err(text, &[vec![4, 3], vec![2, 2]]);
    assert!(err.contains("first dimension"), "{err}");
    let err = setup_err(text, &[vec![4, 3]]);
    assert!(err.contains("bottom"), "{err}");
    let err = setup_err(r#"name: "l" type: "SoftmaxWithLoss" softmax_param { axis: 3 }"#, &[vec![4, 3], vec![4]]);
    assert!(err.contains("axis"), "{err}");
    // A later batch with mismatched shapes is an error too, not a crash.
    let mut layer = create_layer(&lp(text)).unwrap();
    layer.setup(&[vec![2, 3], vec![2]]).unwrap();
    let err = layer
        .forward(&ctx(Phase::Train), &[randn(&[3, 3], 1), t(&[0.0, 1.0], &[2])], &[])
        .expect_err("error")
        .to_string();
    assert!(err.contains("first dimension"), "{err}");
}

// ---------------------------------------------------------------- SigmoidCrossEntropyLoss

fn sce(x: f64, t: f64) -> f64 {
    x.max(0.0) - x * t + (1.0 + (-x.abs()).exp()).ln()
}

#[test]
fn sigmoid_cross_entropy_values_and_normalization() {
    let _rng = rng_exclusive();
    let x = [-2.0, 0.0, 3.0, 40.0, -40.0, 0.5];
    let tv = [0.0, 1.0, 1.0, 0.0, 0.25, -1.0];
    let b = [t(&x, &[2, 3]), t(&tv, &[2, 3])];
    let per: Vec<f64> = x.iter().zip(&tv).map(|(&a, &b)| sce(a, b)).collect();
    let sum: f64 = per.iter().sum();
    // Caffe's default here is BATCH_SIZE (N = 2), not VALID.
    let text = r#"name: "l" type: "SigmoidCrossEntropyLoss""#;
    close("default", scalar(text, &b), sum / 2.0, 1e-12);
    let cases = [
        ("normalization: FULL", sum / 6.0),
        ("normalization: VALID", sum / 6.0),
        ("normalization: NONE", sum),
        ("normalize: true", sum / 6.0),
        ("normalize: false", sum / 2.0),
    ];
    for (extra, expected) in cases {
        let text = format!(r#"name: "l" type: "SigmoidCrossEntropyLoss" loss_param {{ {extra} }}"#);
        close(&text, scalar(&text, &b), expected, 1e-12);
    }
    // ignore_label -1: the last target is skipped; VALID divides by the 5 left.
    let ignore = r#"name: "l" type: "SigmoidCrossEntropyLoss" loss_param { ignore_label: -1 normalization: VALID }"#;
    let valid_sum: f64 = per[..5].iter().sum();
    close("ignore", scalar(ignore, &b), valid_sum / 5.0, 1e-12);
    // Gradient (σ(x) − t)/normalizer, 0 where ignored; σ(0) = 0.5 at the kink.
    let g = &grads(ignore, &b, &[0])[0];
    let expected: Vec<f64> = x
        .iter()
        .zip(&tv)
        .enumerate()
        .map(|(i, (&a, &b))| if i == 5 { 0.0 } else { (1.0 / (1.0 + (-a).exp()) - b) / 5.0 })
        .collect();
    assert_values("gradient", g, &expected);
    gradcheck(ignore, &[randn(&[3, 4], 2), Tensor::rand([3, 4], (Kind::Double, Device::Cpu))], &[1], 1e-6);
    gradcheck(text, &[randn(&[2, 3, 2], 3), Tensor::rand([2, 3, 2], (Kind::Double, Device::Cpu)).round()], &[1], 1e-6);
    // Targets never get a gradient.
    let b2 = [t(&x, &[2, 3]), t(&tv, &[2, 3]).set_requires_grad(true)];
    assert!(!run(text, &b2)[0].requires_grad());
}

#[test]
fn sigmoid_cross_entropy_bad_inputs() {
    let _rng = rng_exclusive();
    let text = r#"name: "l" type: "SigmoidCrossEntropyLoss""#;
    let err = setup_err(text, &[vec![2, 3], vec![2, 2]]);
    assert!(err.contains("same count"), "{err}");
    let err = setup_err(text, &[vec![2, 3], vec![3, 2]]);
    assert!(err.contains("first dimension"), "{err}");
    let err = setup_err(text, &[vec![2, 3], vec![2, 3], vec![2, 3]]);
    assert!(err.contains("bottom"), "{err}");
}

// ---------------------------------------------------------------- EuclideanLoss

#[test]
fn euclidean_loss() {
    let _rng = rng_exclusive();
    let a = [1.0, 2.0, 3.0, -1.0, 0.5, 4.0];
    let b = [0.0, 2.5, 1.0, 1.0, 0.5, 3.0];
    let sq: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let text = r#"name: "l" type: "EuclideanLoss""#;
    // Shapes may differ past the first axis when the counts agree.
    let bottoms = [t(&a, &[2, 3]), t(&b, &[2, 3, 1, 1])];
    close("loss", scalar(text, &bottoms), sq / 2.0 / 2.0, 1e-12);
    let g = grads(text, &bottoms, &[0, 1]);
    let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (x - y) / 2.0).collect();
    assert_values("d/da", &g[0], &d);
    assert_values("d/db", &g[1], &d.iter().map(|v| -v).collect::<Vec<_>>());
    gradcheck(text, &[randn(&[3, 4], 4), randn(&[3, 4], 5)], &[], 1e-6);
    let err = setup_err(text, &[vec![2, 3], vec![2, 4]]);
    assert!(err.contains("same dimension"), "{err}");
    let err = setup_err(text, &[vec![2, 3], vec![3, 2]]);
    assert!(err.contains("first dimension"), "{err}");
    let err = setup_err(text, &[vec![], vec![]]);
    assert!(err.contains("axis"), "{err}");
}

// ---------------------------------------------------------------- HingeLoss

#[test]
fn hinge_loss_l1_and_l2() {
    let _rng = rng_exclusive();
    let x = [0.5, -0.2, 2.0, -1.5, 0.3, 0.9];
    let labels = [2usize, 0];
    let mut l1 = 0.0;
    let mut l2 = 0.0;
    for n in 0..2 {
        for c in 0..3 {
            let delta: f64 = if c == labels[n] { 1.0 } else { -1.0 };
            let m = (1.0 - delta * x[n * 3 + c]).max(0.0);
            l1 += m;
            l2 += m * m;
        }
    }
    let bottoms = [t(&x, &[2, 3]), t(&[2.0, 0.0], &[2])];
    let text = r#"name: "l" type: "HingeLoss""#;
    close("L1", scalar(text, &bottoms), l1 / 2.0, 1e-12);
    let l2_text = r#"name: "l" type: "HingeLoss" hinge_loss_param { norm: L2 }"#;
    close("L2", scalar(l2_text, &bottoms), l2 / 2.0, 1e-12);
    // L1 gradient: −δ/N where the margin is active, 0 elsewhere (and at the hinge).
    let g = &grads(text, &bottoms, &[0])[0];
    let mut expected = vec![0.0; 6];
    for n in 0..2 {
        for c in 0..3 {
            let delta: f64 = if c == labels[n] { 1.0 } else { -1.0 };
            if 1.0 - delta * x[n * 3 + c] > 0.0 {
                expected[n * 3 + c] = -delta / 2.0;
            }
        }
    }
    assert_values("L1 gradient", g, &expected);
    let at_hinge = [t(&[1.0, -1.0], &[1, 2]), t(&[0.0], &[1])];
    assert_values("hinge kink", &grads(text, &at_hinge, &[0])[0], &[0.0, 0.0]);
    let labels4 = t(&[0.0, 3.0, 1.0], &[3, 1, 1, 1]);
    gradcheck(text, &[randn(&[3, 4], 6) * 2.0, labels4.shallow_clone()], &[1], 1e-6);
    gradcheck(l2_text, &[randn(&[3, 2, 2], 7) * 2.0, labels4], &[1], 1e-6);
    let err = forward_err(text, &[t(&x, &[2, 3]), t(&[3.0, 0.0], &[2])]);
    assert!(err.contains("out of range"), "{err}");
    let err = setup_err(text, &[vec![2, 3], vec![2, 2]]);
    assert!(err.contains("one label per sample"), "{err}");
}

// ---------------------------------------------------------------- InfogainLoss

const H: [f64; 9] = [1.0, 0.5, 0.0, 0.2, 2.0, 0.1, 0.0, 0.3, 1.5];

/// −Σ_l H[label, l]·log p_l per position, for an N×3 prediction.
fn infogain_terms(x: &[f64], labels: &[usize]) -> Vec<f64> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let lp = log_softmax(&x[i * 3..i * 3 + 3]);
            -(0..3).map(|l| H[y * 3 + l] * lp[l]).sum::<f64>()
        })
        .collect()
}

fn write_h(dir: &Path, legacy_shape: bool) -> String {
    let mut blob = BlobProto { data: H.iter().map(|&v| v as f32).collect(), ..Default::default() };
    if legacy_shape {
        (blob.num, blob.channels, blob.height, blob.width) = (Some(1), Some(1), Some(3), Some(3));
    } else {
        blob.shape = Some(BlobShape { dim: vec![3, 3] });
    }
    let path = dir.join(if legacy_shape { "h_legacy.binaryproto" } else { "h.binaryproto" });
    caffe_tch::proto::binary::write_message(&path, &blob).unwrap();
    path.display().to_string()
}

#[test]
fn infogain_loss_with_h_from_bottom_and_file() {
    let _rng = rng_exclusive();
    let x = [1.0, -1.0, 0.5, 0.0, 2.0, -0.5, 3.0, 0.1, 0.2, -1.0, -2.0, 1.0];
    let labels = [0usize, 2, 1, 2];
    let terms = infogain_terms(&x, &labels);
    let bottoms = [t(&x, &[4, 3]), t(&[0.0, 2.0, 1.0, 2.0], &[4]), t(&H, &[1, 1, 3, 3])];
    let text = r#"name: "l" type: "InfogainLoss""#;
    // Default normalization VALID: all 4 positions.
    close("H bottom", scalar(text, &bottoms), terms.iter().sum::<f64>() / 4.0, 1e-12);
    // Gradient: (p·ΣH[label] − H[label]) / 4.
    let g = values(&grads(text, &bottoms, &[0])[0]);
    for (i, &y) in labels.iter().enumerate() {
        let p: Vec<f64> = log_softmax(&x[i * 3..i * 3 + 3]).iter().map(|v| v.exp()).collect();
        let row_sum: f64 = (0..3).map(|l| H[y * 3 + l]).sum();
        for l in 0..3 {
            close("gradient", g[i * 3 + l], (p[l] * row_sum - H[y * 3 + l]) / 4.0, 1e-12);
        }
    }
    gradcheck(text, &bottoms, &[1, 2], 1e-6);

    // The same H from a BlobProto file (current and legacy 4-D shapes).
    let dir = tempfile::tempdir().unwrap();
    for legacy in [false, true] {
        let path = write_h(dir.path(), legacy);
        let text = format!(r#"name: "l" type: "InfogainLoss" infogain_loss_param {{ source: "{path}" }}"#);
        close("H file", scalar(&text, &bottoms[..2]), terms.iter().sum::<f64>() / 4.0, 1e-6);
    }
    let path = write_h(dir.path(), false);
    let text =
        format!(r#"name: "l" type: "InfogainLoss" infogain_loss_param {{ source: "{path}" }} top: "loss" top: "prob""#);
    let (setup, tops) = run_full(&text, &bottoms[..2]);
    assert_eq!(setup.tops, vec![vec![], vec![4, 3]]);
    close("prob", values(&tops[1])[0], log_softmax(&x[0..3])[0].exp(), 1e-12);
    let text = format!(r#"name: "l" type: "InfogainLoss" infogain_loss_param {{ source: "{path}" }}"#);
    gradcheck(&text, &bottoms[..2], &[1], 1e-6);
}

#[test]
fn infogain_loss_axis_ignore_and_normalization() {
    let _rng = rng_exclusive();
    // 2×3×2 with classes on axis 1; position (n=1, s=0) ignored.
    let x = SM_X;
    let mut rows = Vec::new();
    for n in 0..2 {
        for s in 0..2 {
            rows.extend((0..3).map(|c| x[n * 6 + c * 2 + s]));
        }
    }
    let labels = [1usize, 2, 0, 0];
    let terms = infogain_terms(&rows, &labels);
    let valid = terms[0] + terms[1] + terms[3];
    let bottoms = [t(&x, &[2, 3, 2]), t(&[1.0, 2.0, 5.0, 0.0], &[2, 2]), t(&H, &[3, 3])];
    for (norm, expected) in
        [("VALID", valid / 3.0), ("FULL", valid / 4.0), ("BATCH_SIZE", valid / 2.0), ("NONE", valid)]
    {
        let text = format!(r#"name: "l" type: "InfogainLoss" loss_param {{ ignore_label: 5 normalization: {norm} }}"#);
        close(norm, scalar(&text, &bottoms), expected, 1e-12);
    }
    let text = r#"name: "l" type: "InfogainLoss" loss_param { ignore_label: 5 }"#;
    gradcheck(text, &bottoms, &[1, 2], 1e-6);
    // axis 2 over a 2×2×3 blob equals the transposed layout with axis 1.
    let text2 = r#"name: "l" type: "InfogainLoss" loss_param { ignore_label: 5 } infogain_loss_param { axis: 2 }"#;
    let moved = t(&x, &[2, 3, 2]).permute([0, 2, 1]).contiguous();
    close(
        "axis 2",
        scalar(text2, &[moved, bottoms[1].shallow_clone(), bottoms[2].shallow_clone()]),
        valid / 3.0,
        1e-12,
    );
}

#[test]
fn infogain_loss_bad_inputs() {
    let _rng = rng_exclusive();
    let text = r#"name: "l" type: "InfogainLoss""#;
    let err = setup_err(text, &[vec![4, 3], vec![4]]);
    assert!(err.contains("source must be specified"), "{err}");
    let err = setup_err(text, &[vec![4, 3], vec![4], vec![2, 2]]);
    assert!(err.contains("H must be 3x3"), "{err}");
    let err = setup_err(
        r#"name: "l" type: "InfogainLoss" infogain_loss_param { source: "/nonexistent/h.binaryproto" }"#,
        &[vec![4, 3], vec![4]],
    );
    assert!(err.contains("infogain matrix"), "{err}");
    let err = setup_err(
        r#"name: "l" type: "InfogainLoss" loss_param { normalize: true }"#,
        &[vec![4, 3], vec![4], vec![3, 3]],
    );
    assert!(err.contains("normalize is deprecated"), "{err}");
    let err = setup_err(text, &[vec![4, 3], vec![2], vec![3, 3]]);
    assert!(err.contains("first dimension"), "{err}");
    let err = forward_err(text, &[randn(&[2, 3], 1), t(&[0.0, 3.0], &[2]), t(&H, &[3, 3])]);
    assert!(err.contains("out of range"), "{err}");
    // A file that is not a BlobProto is an error, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.binaryproto");
    std::fs::write(&bad, [0xffu8, 0xff, 0xff]).unwrap();
    let err = setup_err(
        &format!(r#"name: "l" type: "InfogainLoss" infogain_loss_param {{ source: "{}" }}"#, bad.display()),
        &[vec![4, 3], vec![4]],
    );
    assert!(err.contains("infogain matrix"), "{err}");
}

// ---------------------------------------------------------------- MultinomialLogisticLoss

#[test]
fn multinomial_logistic_loss() {
    let _rng = rng_exclusive();
    let p = [0.2, 0.5, 0.3, 0.1, 0.1, 0.8];
    let bottoms = [t(&p, &[2, 3]), t(&[1.0, 2.0], &[2, 1, 1, 1])];
    let text = r#"name: "l" type: "MultinomialLogisticLoss""#;
    close("loss", scalar(text, &bottoms), -(0.5f64.ln() + 0.8f64.ln()) / 2.0, 1e-12);
    assert_values(
        "gradient",
        &grads(text, &bottoms, &[0])[0],
        &[0.0, -1.0 / (2.0 * 0.5), 0.0, 0.0, 0.0, -1.0 / (2.0 * 0.8)],
    );
    // p = 0 at the label: the loss uses log(1e-20), and Caffe's gradient is
    // −1/(N·1e-20) even though the clamp makes the true gradient 0.
    let zero = [t(&[0.0, 1.0], &[1, 2]), t(&[0.0], &[1])];
    close("clamped loss", scalar(text, &zero), -(1e-20f64).ln(), 1e-12);
    let g = values(&grads(text, &zero, &[0])[0]);
    close("clamped gradient", g[0], -1e20, 1e-12);
    assert_eq!(g[1], 0.0);
    let probs = Tensor::rand([3, 4], (Kind::Double, Device::Cpu)) + 0.1;
    gradcheck(text, &[probs, t(&[3.0, 0.0, 2.0], &[3])], &[1], 1e-5);
    let err = setup_err(text, &[vec![2, 3], vec![2, 2]]);
    assert!(err.contains("one value per sample"), "{err}");
    let err = forward_err(text, &[t(&p, &[2, 3]), t(&[1.0, 3.0], &[2])]);
    assert!(err.contains("out of range"), "{err}");
}

// ---------------------------------------------------------------- ContrastiveLoss

#[test]
fn contrastive_loss_values() {
    let _rng = rng_exclusive();
    // Pairs: 0 similar, 1 dissimilar inside the margin, 2 dissimilar outside it.
    let a = [0.0, 0.0, 1.0, 0.0, 3.0, 0.0];
    let b = [0.3, 0.4, 1.0, 0.5, 0.0, 0.0];
    let y = [1.0, 0.0, 0.0];
    let bottoms = [t(&a, &[3, 2, 1, 1]), t(&b, &[3, 2, 1, 1]), t(&y, &[3, 1, 1, 1])];
    let margin = 1.5f64;
    let d = [0.5f64, 0.5, 3.0];
    let text = r#"name: "l" type: "ContrastiveLoss" contrastive_loss_param { margin: 1.5 }"#;
    let expected = (d[0] * d[0] + (margin - d[1]).max(0.0).powi(2) + (margin - d[2]).max(0.0).powi(2)) / 3.0 / 2.0;
    close("loss", scalar(text, &bottoms), expected, 1e-12);
    let legacy = r#"name: "l" type: "ContrastiveLoss" contrastive_loss_param { margin: 1.5 legacy_version: true }"#;
    let expected = (d[0] * d[0] + (margin - d[1] * d[1]).max(0.0) + (margin - d[2] * d[2]).max(0.0)) / 3.0 / 2.0;
    close("legacy loss", scalar(legacy, &bottoms), expected, 1e-12);
    // y is cast to int: 0.9 is dissimilar.
    let truncated = [bottoms[0].shallow_clone(), bottoms[1].shallow_clone(), t(&[0.9, 0.0, 0.0], &[3, 1, 1, 1])];
    let expected = ((margin - d[0]).powi(2) + (margin - d[1]).powi(2)) / 3.0 / 2.0;
    close("truncated y", scalar(text, &truncated), expected, 1e-12);
    // Default margin 1 and 2-D features.
    let flat = [t(&a, &[3, 2]), t(&b, &[3, 2]), t(&y, &[3])];
    let expected = (d[0] * d[0] + (1.0 - d[1]).max(0.0).powi(2)) / 3.0 / 2.0;
    close("default margin", scalar(r#"name: "l" type: "ContrastiveLoss""#, &flat), expected, 1e-12);
}

#[test]
fn contrastive_loss_gradients_follow_caffe() {
    let _rng = rng_exclusive();
    let a = [0.0, 0.0, 1.0, 0.0, 3.0, 0.0];
    let b = [0.3, 0.4, 1.0, 0.5, 0.0, 0.0];
    let bottoms = [t(&a, &[3, 2]), t(&b, &[3, 2]), t(&[1.0, 0.0, 0.0], &[3])];
    let text = r#"name: "l" type: "ContrastiveLoss" contrastive_loss_param { margin: 1.5 }"#;
    let g = grads(text, &bottoms, &[0, 1]);
    // Similar: diff/N. Dissimilar in the margin: −(margin − d)/(d + 1e-4)·diff/N. Outside: 0.
    let n = 3.0;
    let beta = -(1.5 - 0.5) / (0.5 + 1e-4) / n;
    let da = [-0.3 / n, -0.4 / n, 0.0, beta * -0.5, 0.0, 0.0];
    assert_values("d/da", &g[0], &da);
    assert_values("d/db", &g[1], &da.iter().map(|v| -v).collect::<Vec<_>>());
    let legacy = r#"name: "l" type: "ContrastiveLoss" contrastive_loss_param { margin: 1.5 legacy_version: true }"#;
    let g = grads(legacy, &bottoms, &[0]);
    assert_values("legacy d/da", &g[0], &[-0.3 / n, -0.4 / n, 0.0, 0.5 / n, 0.0, 0.0]);

    let feats = |seed| randn(&[6, 3], seed) * 0.6;
    let y = t(&[1.0, 0.0, 1.0, 0.0, 0.0, 0.0], &[6, 1, 1, 1]);
    gradcheck(legacy, &[feats(8), feats(9), y.shallow_clone()], &[2], 1e-6);
    // Caffe's ε in d + 1e-4 makes its gradient differ from the exact one by ~1e-4/d.
    gradcheck(text, &[feats(8), feats(9), y.shallow_clone()], &[2], 2e-3);

    let err = setup_err(text, &[vec![3, 2], vec![3, 4], vec![3]]);
    assert!(err.contains("same channels"), "{err}");
    let err = setup_err(text, &[vec![3, 2, 2], vec![3, 2, 2], vec![3]]);
    assert!(err.contains("N×C×1×1"), "{err}");
    let err = setup_err(text, &[vec![3, 2], vec![3, 2], vec![3, 2]]);
    assert!(err.contains("one value per sample"), "{err}");
    let err = setup_err(text, &[vec![3, 2], vec![2, 2], vec![3]]);
    assert!(err.contains("first dimension"), "{err}");
    let err = setup_err(text, &[vec![3, 2], vec![3, 2]]);
    assert!(err.contains("bottom"), "{err}");
}

// ---------------------------------------------------------------- Accuracy

#[test]
fn accuracy_top_k_and_ties() {
    let _rng = rng_exclusive();
    let x = [0.1, 0.7, 0.2, /**/ 0.5, 0.3, 0.2, /**/ 0.3, 0.3, 0.4, /**/ 0.6, 0.6, 0.1];
    let labels = t(&[1.0, 1.0, 0.0, 0.0], &[4]);
    let bottoms = [t(&x, &[4, 3]), labels];
    // The true class ranks: row 0 first; row 1 second; row 2 tied with class 1
    // and below class 2; row 3 tied with class 1 for first.
    let top1 = r#"name: "a" type: "Accuracy""#;
    // Ties count against the true class (Caffe counts scores >= it): row 3 is wrong at top-1.
    close("top1", scalar(top1, &bottoms), 1.0 / 4.0, 1e-12);
    let top2 = r#"name: "a" type: "Accuracy" accuracy_param { top_k: 2 }"#;
    // Row 2: classes 1 (tie) and 2 score >= 0.3, so it is 3rd, not in the top 2.
    close("top2", scalar(top2, &bottoms), 3.0 / 4.0, 1e-12);
    let top3 = r#"name: "a" type: "Accuracy" accuracy_param { top_k: 3 }"#;
    close("top3", scalar(top3, &bottoms), 1.0, 1e-12);
    let err = setup_err(r#"name: "a" type: "Accuracy" accuracy_param { top_k: 4 }"#, &[vec![4, 3], vec![4]]);
    assert!(err.contains("top_k"), "{err}");
    // Never a gradient.
    let xg = t(&x, &[4, 3]).set_requires_grad(true);
    assert!(!run(top1, &[xg, t(&[1.0, 1.0, 0.0, 0.0], &[4])])[0].requires_grad());
}

#[test]
fn accuracy_ignore_label_axis_and_per_class() {
    let _rng = rng_exclusive();
    let x = [0.1, 0.7, 0.2, /**/ 0.5, 0.3, 0.2, /**/ 0.3, 0.3, 0.4, /**/ 0.9, 0.05, 0.05];
    let labels = [1.0, 1.0, 2.0, 0.0];
    let bottoms = [t(&x, &[4, 3]), t(&labels, &[4])];
    let text = r#"name: "a" type: "Accuracy" top: "acc" top: "per_class""#;
    let (setup, tops) = run_full(text, &bottoms);
    assert_eq!(setup.tops, vec![vec![], vec![3]]);
    close("acc", tops[0].double_value(&[]), 3.0 / 4.0, 1e-12);
    // Class 0: 1/1, class 1: 1/2, class 2: 1/1.
    assert_values("per class", &tops[1], &[1.0, 0.5, 1.0]);

    let ignore = r#"name: "a" type: "Accuracy" accuracy_param { ignore_label: 1 } top: "acc" top: "per_class""#;
    let (_, tops) = run_full(ignore, &bottoms);
    close("ignore", tops[0].double_value(&[]), 1.0, 1e-12);
    // A class with no (counted) samples reads 0.
    assert_values("per class, ignored", &tops[1], &[1.0, 0.0, 1.0]);
    // Everything ignored: 0, not NaN.
    let all = [t(&x, &[4, 3]), t(&[1.0; 4], &[4])];
    assert_eq!(scalar(r#"name: "a" type: "Accuracy" accuracy_param { ignore_label: 1 }"#, &all), 0.0);
    // An ignore label outside 0..C is fine; other out-of-range labels are errors.
    scalar(
        r#"name: "a" type: "Accuracy" accuracy_param { ignore_label: 255 }"#,
        &[t(&x, &[4, 3]), t(&[255.0, 1.0, 2.0, 0.0], &[4])],
    );
    let err = forward_err(r#"name: "a" type: "Accuracy""#, &[t(&x, &[4, 3]), t(&[3.0, 1.0, 2.0, 0.0], &[4])]);
    assert!(err.contains("out of range"), "{err}");

    // Spatial: N=2, C=3, inner 2, classes on axis 1; and the same data with axis -1.
    let sp = [/* n0 */ 0.9, 0.1, 0.05, 0.8, 0.05, 0.1, /* n1 */ 0.2, 0.3, 0.7, 0.1, 0.1, 0.6];
    let sp_labels = [0.0, 0.0, 1.0, 2.0];
    // n0s0: label 0, scores 0.9/0.05/0.05 ✓; n0s1: label 0, 0.1/0.8/0.1 ✗;
    // n1s0: label 1, 0.2/0.7/0.1 ✓; n1s1: label 2, 0.3/0.1/0.6 ✓.
    let acc = scalar(r#"name: "a" type: "Accuracy""#, &[t(&sp, &[2, 3, 2]), t(&sp_labels, &[2, 2])]);
    close("spatial", acc, 3.0 / 4.0, 1e-12);
    let moved = t(&sp, &[2, 3, 2]).permute([0, 2, 1]).contiguous();
    let acc = scalar(r#"name: "a" type: "Accuracy" accuracy_param { axis: -1 }"#, &[moved, t(&sp_labels, &[2, 2])]);
    close("axis -1", acc, 3.0 / 4.0, 1e-12);
    let err = setup_err(r#"name: "a" type: "Accuracy""#, &[vec![2, 3, 2], vec![2, 3]]);
    assert!(err.contains("Number of labels"), "{err}");
}

// ---------------------------------------------------------------- in a net

#[test]
fn loss_layers_default_to_loss_weight_one_in_a_net() {
    let _rng = rng_exclusive();
    let text = r#"
        name: "n"
        layer { name: "in" type: "Input" top: "x" top: "y" top: "lab"
                input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } shape { dim: 2 } } }
        layer { name: "euc" type: "EuclideanLoss" bottom: "x" bottom: "y" top: "euc" }
        layer { name: "sce" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "y" top: "sce" loss_weight: 2 }
        layer { name: "sm" type: "SoftmaxWithLoss" bottom: "x" bottom: "lab" top: "sm" }
        layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "lab" top: "acc" }
    "#;
    let mut net = net(text, "test", Phase::Train).unwrap();
    let x = [0.5, -1.0, 2.0, 0.0, 1.0, -0.5];
    let y = [0.0, 1.0, 1.0, 0.0, 0.25, 1.0];
    net.set_input("x", &Tensor::from_slice(&x.map(|v| v as f32)).reshape([2, 3])).unwrap();
    net.set_input("y", &Tensor::from_slice(&y.map(|v| v as f32)).reshape([2, 3])).unwrap();
    net.set_input("lab", &Tensor::from_slice(&[2.0f32, 1.0])).unwrap();
    let loss = net.forward().unwrap();
    let euc: f64 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / 4.0;
    let sce_v: f64 = x.iter().zip(&y).map(|(&a, &b)| sce(a, b)).sum::<f64>() / 2.0;
    let sm = -(log_softmax(&x[0..3])[2] + log_softmax(&x[3..6])[1]) / 2.0;
    close("euclidean", net.blob("euc").unwrap().double_value(&[]), euc, 1e-6);
    close("sigmoid ce", net.blob("sce").unwrap().double_value(&[]), sce_v, 1e-6);
    close("softmax", net.blob("sm").unwrap().double_value(&[]), sm, 1e-6);
    // Accuracy is not a loss: weight 0. The others: 1, 2, 1.
    close("net loss", loss, euc + 2.0 * sce_v + sm, 1e-5);
    close("accuracy", net.blob("acc").unwrap().double_value(&[]), 1.0, 1e-12);
}

// ---------------------------------------------------------------- SmoothL1Loss

#[test]
fn smooth_l1_loss_values_weights_and_gradients() {
    let _rng = rng_exclusive();
    // N = 2, four values each; differences 0.5, −2, 0, 1.5 | 0.25, 3, −0.5, 0.
    let pred = t(&[0.5, -1., 2., 3., 1.25, 4., 0., 1.], &[2, 4]);
    let target = t(&[0., 1., 2., 1.5, 1., 1., 0.5, 1.], &[2, 4]);
    // σ = 1: ½d² below 1, |d| − ½ above: 0.125 + 1.5 + 0 + 1 + 0.03125 + 2.5 + 0.125 + 0 = 5.28125; / N.
    let loss = scalar("type: 'SmoothL1Loss'", &[pred.shallow_clone(), target.shallow_clone()]);
    assert!((loss - 5.28125 / 2.0).abs() < 1e-12, "{loss}");
    // σ = 2 (σ² = 4): ½·4·d² below 0.25, |d| − 0.125 above:
    // 0.375 + 1.875 + 0 + 1.375 + 0.125 + 2.875 + 0.375 + 0 = 7.0.
    let loss = scalar(
        "type: 'SmoothL1Loss' smooth_l1_loss_param { sigma: 2 }",
        &[pred.shallow_clone(), target.shallow_clone()],
    );
    assert!((loss - 7.0 / 2.0).abs() < 1e-12, "{loss}");
    // Inside weights scale the difference, outside weights the error.
    let inside = t(&[1., 0.5, 1., 0., 2., 1., 1., 1.], &[2, 4]);
    let outside = t(&[2., 1., 1., 1., 1., 0., 1., 1.], &[2, 4]);
    // d: 0.5, −1, 0, 0 | 0.5, 3, −0.5, 0 → errors 0.125, 0.5, 0, 0 | 0.125, 2.5, 0.125, 0;
    // outside: 0.25 + 0.5 + 0.125 + 0 + 0.125 = 1.0.
    let four = [pred.shallow_clone(), target.shallow_clone(), inside.shallow_clone(), outside.shallow_clone()];
    let loss = scalar("type: 'SmoothL1Loss'", &four);
    assert!((loss - 1.0 / 2.0).abs() < 1e-12, "{loss}");
    // Predictions and targets get opposite gradients; the weights none.
    let g = grads("type: 'SmoothL1Loss'", &four, &[0, 1]);
    // d/dpred = outside·inside·f'(d)/N, f'(d) = d below 1, sign(d) above.
    assert_values("d pred", &g[0], &[0.5, -0.25, 0., 0., 0.5, 0., -0.25, 0.]);
    assert_values("d target", &g[1], &[-0.5, 0.25, 0., 0., -0.5, 0., 0.25, 0.]);
    let x = || randn(&[3, 2, 2, 2], 91) * 2.0;
    layer::gradcheck(
        "type: 'SmoothL1Loss' smooth_l1_loss_param { sigma: 3 }",
        &[x(), randn(&[3, 2, 2, 2], 92)],
        GradCheck::default(),
    );
    layer::gradcheck(
        "type: 'SmoothL1Loss'",
        &[x(), randn(&[3, 8], 93), randn(&[3, 2, 2, 2], 94).abs(), randn(&[3, 2, 2, 2], 95).abs()],
        GradCheck { skip_bottoms: vec![2, 3], ..Default::default() },
    );
    // Errors.
    let e = setup_err("type: 'SmoothL1Loss'", &[vec![2, 4], vec![2, 4], vec![2, 4]]);
    assert!(e.contains("give both the inside and the outside weights"), "{e}");
    let e = setup_err("type: 'SmoothL1Loss'", &[vec![2, 4], vec![2, 5]]);
    assert!(e.contains("must have the same shape"), "{e}");
    let e = setup_err("type: 'SmoothL1Loss' smooth_l1_loss_param { sigma: 0 }", &[vec![2, 4], vec![2, 4]]);
    assert!(e.contains("sigma must be finite and non-zero"), "{e}");
}

/// DeepLab's SegAccuracy on a 1 × 3 × 2 × 3 score map: arg-max per pixel (the
/// higher class on ties), a confusion matrix worked out by hand, and its
/// pixel accuracy, mean recall and mean Jaccard index.
#[test]
fn seg_accuracy_counts_a_confusion_matrix_worked_out_by_hand() {
    let spec = "name: 'a' type: 'SegAccuracy' seg_accuracy_param { ignore_label: 255 }";
    // Per pixel, the scores of classes 0, 1, 2 (pixel p at [c * 6 + p]).
    let pixels: [[f64; 3]; 6] = [
        [0.9, 0.1, 0.0], // predicts 0
        [0.2, 0.7, 0.1], // predicts 1
        [0.5, 0.5, 0.0], // tie of 0 and 1: predicts 1
        [0.1, 0.2, 0.3], // predicts 2
        [0.3, 0.3, 0.3], // three-way tie: predicts 2
        [0.0, 0.0, 1.0], // predicts 2, but its label is ignored
    ];
    let scores: Vec<f64> = (0..3).flat_map(|c| pixels.iter().map(move |p| p[c])).collect();
    let labels = [0.0, 1.0, 0.0, 2.0, 1.0, 255.0];
    let top = run(spec, &[t(&scores, &[1, 3, 2, 3]), t(&labels, &[1, 1, 2, 3])]);
    assert_eq!(top[0].size(), [1, 1, 1, 3]);
    // counts[label][predicted]: 0→{0:1, 1:1}, 1→{1:1, 2:1}, 2→{2:1}.
    let accuracy = 3.0 / 5.0;
    let recall = (1.0 / 2.0 + 1.0 / 2.0 + 1.0) / 3.0;
    // Jaccard per class: 0: 1 / (2 + 1 - 1); 1: 1 / (2 + 2 - 1); 2: 1 / (1 + 2 - 1).
    let jaccard = (1.0 / 2.0 + 1.0 / 3.0 + 1.0 / 2.0) / 3.0;
    let v = values(&top[0]);
    for (what, got, want) in [("accuracy", v[0], accuracy), ("recall", v[1], recall), ("jaccard", v[2], jaccard)] {
        close(what, got, want, 1e-6);
    }
    // A class with neither pixels nor predictions counts 1 in the Jaccard mean, none in the recall.
    let two = run(spec, &[t(&[1.0, 1.0, 0.0, 0.0, 0.0, 0.0], &[1, 3, 1, 2]), t(&[0.0, 0.0], &[1, 1, 1, 2])]);
    let v = values(&two[0]);
    close("accuracy", v[0], 1.0, 1e-6);
    close("recall", v[1], 1.0, 1e-6);
    close("jaccard", v[2], 1.0, 1e-6);
}

/// Without reset the counts carry over from one forward to the next; an
/// unexpected label and mismatched shapes are errors.
#[test]
fn seg_accuracy_accumulates_without_reset_and_rejects_bad_labels() {
    let p = lp("name: 'a' type: 'SegAccuracy' seg_accuracy_param { reset: false }");
    let mut l = create_layer(&p).unwrap();
    l.setup(&[vec![1, 2, 1, 2], vec![1, 1, 1, 2]]).unwrap();
    let scores = t(&[1.0, 0.0, 0.0, 1.0], &[1, 2, 1, 2]); // predicts 0, 1
    let first = l.forward(&ctx(Phase::Test), &[scores.shallow_clone(), t(&[0.0, 1.0], &[1, 1, 1, 2])], &[]).unwrap();
    close("first accuracy", values(&first[0])[0], 1.0, 1e-6);
    let second = l.forward(&ctx(Phase::Test), &[scores, t(&[1.0, 0.0], &[1, 1, 1, 2])], &[]).unwrap();
    // 2 right of 4 over both forwards.
    close("accumulated accuracy", values(&second[0])[0], 0.5, 1e-6);
    let spec = "name: 'a' type: 'SegAccuracy'";
    let e = forward_err(spec, &[t(&[1.0, 0.0, 0.0, 1.0], &[1, 2, 1, 2]), t(&[0.0, 7.0], &[1, 1, 1, 2])]);
    assert!(e.contains("Unexpected label 7"), "{e}");
    let e = setup_err(spec, &[vec![1, 2, 3, 3], vec![1, 1, 2, 3]]);
    assert!(e.contains("N × 1 × H × W"), "{e}");
}
