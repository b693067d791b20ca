//! The neuron layers of `src/layers/neuron/`: values against formulas
//! computed here in plain f64, Caffe's gradient at the kinks (x = 0, the clip
//! ends), gradient checks, Dropout's TRAIN/TEST behaviour, and setup errors.
use caffe_tch::layers::gradcheck::GradCheck;
use caffe_tch::proto::caffe::Phase;
use tch::{Device, Kind, Tensor};

use crate::common::layer::{self, assert_values, run_phase, setup_err, t, values};
use crate::common::{net, rng_exclusive};

/// Values away from every kink the layers have (0, ±1 clip ends), seeded.
fn smooth_input(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let u = Tensor::rand(shape, (Kind::Double, Device::Cpu));
    let sign = Tensor::rand(shape, (Kind::Double, Device::Cpu)).gt(0.5).to_kind(Kind::Double) * 2.0 - 1.0;
    // |x| in [0.1, 0.9] ∪ [1.1, 1.9] with random sign.
    let mag = &u * 0.8 + 0.1 + u.gt(0.5).to_kind(Kind::Double) * 0.6;
    mag * sign
}

/// The tops of a TEST forward pass.
fn run(text: &str, bottoms: &[Tensor], params: &[Tensor]) -> Vec<Tensor> {
    run_phase(text, bottoms, params, Phase::Test).1
}

/// d(Σ top)/d(bottom) by autograd: the layer's elementwise derivative.
fn derivative(text: &str, x: &Tensor, params: &[Tensor], phase: Phase) -> Tensor {
    let xg = x.detach().set_requires_grad(true);
    let (_, tops) = run_phase(text, &[xg.shallow_clone()], params, phase);
    let s = tops[0].sum(Kind::Double);
    let g = Tensor::run_backward(&[&s], &[&xg], false, false);
    g[0].shallow_clone()
}

/// A TRAIN gradient check, 10x tighter than the checker's default tolerance.
fn gradcheck(text: &str, bottoms: &[Tensor]) {
    layer::gradcheck(text, bottoms, GradCheck { phase: Phase::Train, tolerance: 1e-5, ..Default::default() });
}

const X: [f64; 6] = [-2.0, -0.5, 0.0, 0.5, 2.0, 3.0];

fn x() -> Tensor {
    t(&X, &[2, 3])
}

fn map(f: impl Fn(f64) -> f64) -> Vec<f64> {
    X.iter().map(|&v| f(v)).collect()
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

#[test]
fn relu_and_leaky_relu() {
    let _rng = rng_exclusive();
    let y = &run(r#"name: "r" type: "ReLU""#, &[x()], &[])[0];
    assert_values("relu", y, &map(|v| v.max(0.0)));
    let leaky = r#"name: "r" type: "ReLU" relu_param { negative_slope: 0.1 }"#;
    let y = &run(leaky, &[x()], &[])[0];
    // Layer parameters are f32 in caffe.proto: 0.1 means 0.1f32.
    let slope = 0.1f32 as f64;
    assert_values("leaky relu", y, &map(|v| if v > 0.0 { v } else { slope * v }));
    // Caffe's backward: (x > 0) + slope·(x <= 0); at 0 that is the slope.
    assert_values(
        "relu'",
        &derivative(r#"name: "r" type: "ReLU""#, &x(), &[], Phase::Train),
        &map(|v| (v > 0.0) as i32 as f64),
    );
    assert_values("leaky'", &derivative(leaky, &x(), &[], Phase::Train), &map(|v| if v > 0.0 { 1.0 } else { slope }));
    gradcheck(leaky, &[smooth_input(&[2, 3, 4], 1)]);
    gradcheck(r#"name: "r" type: "ReLU""#, &[smooth_input(&[2, 3, 4], 2)]);
}

#[test]
fn prelu_per_channel_and_shared() {
    let _rng = rng_exclusive();
    // Default filler: constant 0.25, one slope per channel (axis 1).
    let (setup, _) = run_phase(
        r#"name: "p" type: "PReLU""#,
        &[x()],
        &[Tensor::full([3], 0.25, (Kind::Double, Device::Cpu))],
        Phase::Test,
    );
    assert_eq!(setup.params.len(), 1);
    assert_eq!(setup.params[0].shape, vec![3]);
    assert_eq!(setup.params[0].filler.r#type(), "constant");
    assert_eq!(setup.params[0].filler.value(), 0.25);
    // channel_shared: Caffe stores one slope as a 0-D blob.
    let shared =
        r#"name: "p" type: "PReLU" prelu_param { channel_shared: true filler { type: "constant" value: 0.5 } }"#;
    let (setup, tops) = run_phase(shared, &[x()], &[t(&[0.5], &[])], Phase::Test);
    assert_eq!(setup.params[0].shape, Vec::<i64>::new());
    assert_eq!(setup.params[0].filler.value(), 0.5);
    assert_values("prelu shared", &tops[0], &map(|v| if v > 0.0 { v } else { 0.5 * v }));

    // Per channel: x is 2×3, channel = column.
    let slopes = [0.1, 0.2, 0.3];
    let a = t(&slopes, &[3]);
    let y = &run(r#"name: "p" type: "PReLU""#, &[x()], &[a.shallow_clone()])[0];
    let expected: Vec<f64> = X.iter().enumerate().map(|(i, &v)| if v > 0.0 { v } else { slopes[i % 3] * v }).collect();
    assert_values("prelu", y, &expected);

    // Gradients: bottom gets a_c where x <= 0; a_c gets Σ x·(x <= 0) over its channel.
    let xg = x().set_requires_grad(true);
    let ag = a.set_requires_grad(true);
    let tops = run(r#"name: "p" type: "PReLU""#, &[xg.shallow_clone()], &[ag.shallow_clone()]);
    let g = Tensor::run_backward(&[&tops[0].sum(Kind::Double)], &[&xg, &ag], false, false);
    let dx: Vec<f64> = X.iter().enumerate().map(|(i, &v)| if v > 0.0 { 1.0 } else { slopes[i % 3] }).collect();
    assert_values("prelu dx", &g[0], &dx);
    let mut da = [0.0; 3];
    for (i, &v) in X.iter().enumerate() {
        if v <= 0.0 {
            da[i % 3] += v;
        }
    }
    assert_values("prelu da", &g[1], &da);

    gradcheck(r#"name: "p" type: "PReLU""#, &[smooth_input(&[2, 3, 2, 2], 3)]);
    gradcheck(shared, &[smooth_input(&[2, 3, 2], 4)]);
    let err = setup_err(r#"name: "p" type: "PReLU""#, &[vec![5]]);
    assert!(err.contains(">=2"), "{err}");
}

#[test]
fn prelu_slopes_load_from_a_net() {
    let _rng = rng_exclusive();
    // The slope blob is a learnable param of the net, shape [C], filled 0.25.
    let text = r#"
        name: "n"
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "p" type: "PReLU" bottom: "x" top: "x" }
    "#;
    let mut net = net(text, "test", Phase::Test).unwrap();
    assert_eq!(net.learnable_params().len(), 1);
    assert_values("slopes", &net.learnable_params()[0].data, &[0.25, 0.25, 0.25]);
    net.set_input("x", &x().to_kind(Kind::Float)).unwrap();
    net.forward_inference().unwrap();
    assert_values("in-place prelu", net.blob("x").unwrap(), &map(|v| if v > 0.0 { v } else { 0.25 * v }));
}

#[test]
fn elu() {
    let _rng = rng_exclusive();
    let text = r#"name: "e" type: "ELU" elu_param { alpha: 0.7 }"#;
    let alpha = 0.7f32 as f64;
    assert_values("elu", &run(text, &[x()], &[])[0], &map(|v| if v > 0.0 { v } else { alpha * (v.exp() - 1.0) }));
    // Caffe: 1 for x > 0, y + α for x <= 0 (α at 0).
    assert_values(
        "elu'",
        &derivative(text, &x(), &[], Phase::Train),
        &map(|v| if v > 0.0 { 1.0 } else { alpha * v.exp() }),
    );
    // A large input must not leak NaN through the unused exp branch.
    let big = t(&[100.0, -100.0, 1000.0], &[1, 3]);
    let g = derivative(text, &big, &[], Phase::Train);
    assert_values("elu' big", &g, &[1.0, alpha * (-100f64).exp(), 1.0]);
    gradcheck(text, &[smooth_input(&[2, 3, 4], 5)]);
    let default = r#"name: "e" type: "ELU""#;
    assert_values(
        "elu default alpha",
        &run(default, &[x()], &[])[0],
        &map(|v| if v > 0.0 { v } else { v.exp() - 1.0 }),
    );
}

/// The SNN reimplementation's SeLu: λ·x for x > 0, λ·α·(exp(x) − 1)
/// otherwise; its backward is λ there and y + λ·α below, the derivative.
#[test]
fn selu() {
    let _rng = rng_exclusive();
    let text = r#"name: "s" type: "SeLu" selu_param { lambda: 1.5 alpha: 0.5 }"#;
    let (lambda, alpha) = (1.5, 0.5);
    let f = |v: f64| if v > 0.0 { lambda * v } else { lambda * alpha * (v.exp() - 1.0) };
    assert_values("selu", &run(text, &[x()], &[])[0], &map(f));
    assert_values(
        "selu'",
        &derivative(text, &x(), &[], Phase::Train),
        &map(|v| if v > 0.0 { lambda } else { f(v) + lambda * alpha }),
    );
    gradcheck(text, &[smooth_input(&[2, 3, 4], 17)]);
    // The defaults: the self-normalizing constants, in f32 as the schema holds them.
    let schema = |text: &str| text.parse::<f32>().map(f64::from).unwrap();
    let (lambda, alpha) = (schema("1.050700987"), schema("1.67326324"));
    assert_values(
        "selu defaults",
        &run(r#"name: "s" type: "SeLu""#, &[x()], &[])[0],
        &map(|v| if v > 0.0 { lambda * v } else { lambda * alpha * (v.exp() - 1.0) }),
    );
}

/// SeLuDropout (alpha dropout): TEST is the identity; in TRAIN each unit is
/// a·x + b (kept) or a·α + b (dropped), with a and b the fork's, which keep a
/// standard normal input's mean and variance; the gradient is a on kept units.
#[test]
fn selu_dropout_train_and_test() {
    let _rng = rng_exclusive();
    let text = r#"name: "d" type: "SeLuDropout" selu_dropout_param { dropout_ratio: 0.2 }"#;
    let input = Tensor::ones([40, 50], (Kind::Double, Device::Cpu)) * 3.0;
    let (_, tops) = run_phase(text, &[input.shallow_clone()], &[], Phase::Test);
    assert_values("test", &tops[0], &[3.0; 2000]);
    let (q, alpha) = (1.0f32 - 0.2f32, "-1.75809934".parse::<f32>().unwrap());
    let a = (q * (1.0 + alpha * alpha * (1.0 - q))).powf(-0.5);
    let b = -a * (1.0 - q) * alpha;
    let (kept_value, dropped_value) = (a as f64 * 3.0 + b as f64, (a * alpha + b) as f64);
    tch::manual_seed(9);
    let (_, tops) = run_phase(text, &[input.shallow_clone()], &[], Phase::Train);
    let v = values(&tops[0]);
    let kept = v.iter().filter(|&&y| (y - kept_value).abs() < 1e-6).count();
    let dropped = v.iter().filter(|&&y| (y - dropped_value).abs() < 1e-6).count();
    assert_eq!(kept + dropped, v.len(), "every unit is a·x + b or a·α + b");
    assert!((kept as f64 / v.len() as f64 - 0.8).abs() < 0.04, "kept fraction {}", kept as f64 / v.len() as f64);
    tch::manual_seed(9);
    let g = values(&derivative(text, &input, &[], Phase::Train));
    for (y, d) in v.iter().zip(&g) {
        let want = if (y - kept_value).abs() < 1e-6 { a as f64 } else { 0.0 };
        assert!((d - want).abs() < 1e-6, "gradient {d}, want {want}");
    }
    // A standard normal input keeps zero mean and unit variance.
    tch::manual_seed(3);
    let normal = Tensor::randn([200_000], (Kind::Double, Device::Cpu));
    let (_, tops) = run_phase(text, &[normal], &[], Phase::Train);
    let (mean, var) = (tops[0].mean(Kind::Double).double_value(&[]), tops[0].var(true).double_value(&[]));
    assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {mean}, variance {var}");
    layer::gradcheck(
        text,
        &[smooth_input(&[4, 5], 18)],
        GradCheck { phase: Phase::Train, tolerance: 1e-5, ..Default::default() },
    );
    for bad in ["0", "1", "-0.1"] {
        let err = setup_err(
            &format!(r#"name: "d" type: "SeLuDropout" selu_dropout_param {{ dropout_ratio: {bad} }}"#),
            &[vec![2]],
        );
        assert!(err.contains("dropout_ratio"), "{err}");
    }
}

#[test]
fn sigmoid_tanh_absval() {
    let _rng = rng_exclusive();
    let s = r#"name: "s" type: "Sigmoid""#;
    assert_values("sigmoid", &run(s, &[x()], &[])[0], &map(sigmoid));
    assert_values("sigmoid'", &derivative(s, &x(), &[], Phase::Train), &map(|v| sigmoid(v) * (1.0 - sigmoid(v))));
    gradcheck(s, &[smooth_input(&[2, 3, 4], 6)]);

    let th = r#"name: "t" type: "TanH""#;
    assert_values("tanh", &run(th, &[x()], &[])[0], &map(f64::tanh));
    assert_values("tanh'", &derivative(th, &x(), &[], Phase::Train), &map(|v| 1.0 - v.tanh().powi(2)));
    gradcheck(th, &[smooth_input(&[2, 3, 4], 7)]);

    let abs = r#"name: "a" type: "AbsVal" bottom: "x" top: "y""#;
    assert_values("absval", &run(abs, &[x()], &[])[0], &map(f64::abs));
    // Caffe's sign(x): 0 at 0.
    assert_values(
        "absval'",
        &derivative(abs, &x(), &[], Phase::Train),
        &map(|v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
    );
    gradcheck(abs, &[smooth_input(&[2, 3, 4], 8)]);
    let err = setup_err(r#"name: "a" type: "AbsVal" bottom: "x" top: "x""#, &[vec![2, 3]]);
    assert!(err.contains("in-place"), "{err}");
}

#[test]
fn bnll() {
    let _rng = rng_exclusive();
    let text = r#"name: "b" type: "BNLL""#;
    let caffe = |v: f64| if v > 0.0 { v + (1.0 + (-v).exp()).ln() } else { (1.0 + v.exp()).ln() };
    assert_values("bnll", &run(text, &[x()], &[])[0], &map(caffe));
    // Caffe's backward: e^x / (e^x + 1), so 0.5 at 0.
    assert_values("bnll'", &derivative(text, &x(), &[], Phase::Train), &map(sigmoid));
    // Stable at both extremes.
    let ext = run(text, &[t(&[-800.0, 800.0], &[1, 2])], &[]);
    assert_values("bnll extremes", &ext[0], &[0.0, 800.0]);
    gradcheck(text, &[smooth_input(&[2, 3, 4], 9)]);
}

#[test]
fn power() {
    let _rng = rng_exclusive();
    let text = r#"name: "p" type: "Power" power_param { power: 2.5 scale: 0.5 shift: 3 }"#;
    assert_values("power", &run(text, &[x()], &[])[0], &map(|v| (3.0 + 0.5 * v).powf(2.5)));
    assert_values(
        "power'",
        &derivative(text, &x(), &[], Phase::Train),
        &map(|v| 2.5 * 0.5 * (3.0 + 0.5 * v).powf(1.5)),
    );
    gradcheck(text, &[smooth_input(&[2, 3, 4], 10)]);
    let square = r#"name: "p" type: "Power" power_param { power: 2 scale: -1.5 shift: 0.5 }"#;
    assert_values("square", &run(square, &[x()], &[])[0], &map(|v| (0.5 - 1.5 * v).powi(2)));
    gradcheck(square, &[smooth_input(&[2, 3, 4], 11)]);
    let linear = r#"name: "p" type: "Power" power_param { scale: 2 shift: -1 }"#;
    assert_values("linear", &run(linear, &[x()], &[])[0], &map(|v| 2.0 * v - 1.0));
    assert_values("linear'", &derivative(linear, &x(), &[], Phase::Train), &[2.0; 6]);
    // Caffe ignores the input when power or scale is 0: 1, or shift^power; no gradient.
    let zero_power = r#"name: "p" type: "Power" power_param { power: 0 scale: 2 shift: 3 }"#;
    assert_values("power 0", &run(zero_power, &[x()], &[])[0], &[1.0; 6]);
    let zero_scale = r#"name: "p" type: "Power" power_param { power: 3 scale: 0 shift: 2 }"#;
    assert_values("scale 0", &run(zero_scale, &[x()], &[])[0], &[8.0; 6]);
    let xg = x().set_requires_grad(true);
    assert!(!run(zero_scale, &[xg], &[])[0].requires_grad());
    assert_values("identity", &run(r#"name: "p" type: "Power""#, &[x()], &[])[0], &X);
}

#[test]
fn exp_and_log() {
    let _rng = rng_exclusive();
    let e = r#"name: "e" type: "Exp""#;
    assert_values("exp", &run(e, &[x()], &[])[0], &map(f64::exp));
    let e2 = r#"name: "e" type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }"#;
    assert_values("2^(1 + x/2)", &run(e2, &[x()], &[])[0], &map(|v| 2f64.powf(1.0 + 0.5 * v)));
    assert_values(
        "exp'",
        &derivative(e2, &x(), &[], Phase::Train),
        &map(|v| 2f64.powf(1.0 + 0.5 * v) * 0.5 * 2f64.ln()),
    );
    gradcheck(e2, &[smooth_input(&[2, 3, 4], 12)]);
    let ee = r#"name: "e" type: "Exp" exp_param { scale: 2 shift: -1 }"#;
    assert_values("e^(2x - 1)", &run(ee, &[x()], &[])[0], &map(|v| (2.0 * v - 1.0).exp()));

    let pos = t(&[0.5, 1.0, 2.0, 4.0, 10.0, 100.0], &[2, 3]);
    let pv = [0.5, 1.0, 2.0, 4.0, 10.0, 100.0];
    let l = r#"name: "l" type: "Log""#;
    assert_values("ln", &run(l, &[pos.shallow_clone()], &[])[0], &pv.map(f64::ln));
    let l10 = r#"name: "l" type: "Log" log_param { base: 10 scale: 2 shift: 1 }"#;
    assert_values("log10(1 + 2x)", &run(l10, &[pos.shallow_clone()], &[])[0], &pv.map(|v| (1.0 + 2.0 * v).log10()));
    assert_values("log'", &derivative(l10, &pos, &[], Phase::Train), &pv.map(|v| 2.0 / ((1.0 + 2.0 * v) * 10f64.ln())));
    gradcheck(l10, &[pos.abs() + 0.5]);

    for bad in [r#"name: "e" type: "Exp" exp_param { base: 0 }"#, r#"name: "e" type: "Exp" exp_param { base: -2 }"#] {
        let err = setup_err(bad, &[vec![2]]);
        assert!(err.contains("strictly positive"), "{err}");
    }
    let err = setup_err(r#"name: "l" type: "Log" log_param { base: 1 }"#, &[vec![2]]);
    assert!(err.contains("not finite"), "{err}");
}

#[test]
fn threshold_has_no_gradient() {
    let _rng = rng_exclusive();
    let text = r#"name: "t" type: "Threshold" threshold_param { threshold: 0.5 }"#;
    assert_values("threshold", &run(text, &[x()], &[])[0], &map(|v| (v > 0.5) as i32 as f64));
    assert_values(
        "threshold 0",
        &run(r#"name: "t" type: "Threshold""#, &[x()], &[])[0],
        &map(|v| (v > 0.0) as i32 as f64),
    );
    let xg = x().set_requires_grad(true);
    let y = &run(text, &[xg], &[])[0];
    assert!(!y.requires_grad(), "Caffe's Threshold has no backward");
    assert_eq!(y.kind(), Kind::Double);
}

#[test]
fn clip() {
    let _rng = rng_exclusive();
    let text = r#"name: "c" type: "Clip" clip_param { min: -1 max: 2 }"#;
    assert_values("clip", &run(text, &[x()], &[])[0], &map(|v| v.clamp(-1.0, 2.0)));
    // Caffe passes the gradient where min <= x <= max, both ends included.
    let ends = t(&[-1.5, -1.0, 0.0, 2.0, 2.5], &[1, 5]);
    assert_values("clip'", &derivative(text, &ends, &[], Phase::Train), &[0.0, 1.0, 1.0, 1.0, 0.0]);
    gradcheck(text, &[smooth_input(&[2, 3, 4], 13) * 1.3]);
    // min > max: Caffe's max(min, min(x, max)) gives min everywhere.
    let crossed = r#"name: "c" type: "Clip" clip_param { min: 1 max: -1 }"#;
    assert_values("crossed", &run(crossed, &[x()], &[])[0], &[1.0; 6]);
}

#[test]
fn swish() {
    let _rng = rng_exclusive();
    let text = r#"name: "s" type: "Swish" swish_param { beta: 1.5 }"#;
    assert_values("swish", &run(text, &[x()], &[])[0], &map(|v| v * sigmoid(1.5 * v)));
    // Caffe: β·y + σ(βx)·(1 − β·y).
    let caffe_grad = |v: f64| {
        let y = v * sigmoid(1.5 * v);
        1.5 * y + sigmoid(1.5 * v) * (1.0 - 1.5 * y)
    };
    assert_values("swish'", &derivative(text, &x(), &[], Phase::Train), &map(caffe_grad));
    gradcheck(text, &[smooth_input(&[2, 3, 4], 14)]);
    assert_values("swish default", &run(r#"name: "s" type: "Swish""#, &[x()], &[])[0], &map(|v| v * sigmoid(v)));
}

#[test]
fn dropout_train_and_test() {
    let _rng = rng_exclusive();
    let text = r#"name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.25 }"#;
    let input = Tensor::ones([40, 50], (Kind::Double, Device::Cpu)) * 3.0;
    // TEST: identity.
    let (_, tops) = run_phase(text, &[input.shallow_clone()], &[], Phase::Test);
    assert_values("test", &tops[0], &[3.0; 2000]);
    // TRAIN: each unit is 0 or x / (1 − ratio), about 75% kept.
    tch::manual_seed(7);
    let (_, tops) = run_phase(text, &[input.shallow_clone()], &[], Phase::Train);
    let v = values(&tops[0]);
    assert!(v.iter().all(|&y| y == 0.0 || (y - 4.0).abs() < 1e-12), "values must be 0 or 4");
    let kept = v.iter().filter(|&&y| y != 0.0).count() as f64 / v.len() as f64;
    assert!((kept - 0.75).abs() < 0.04, "kept fraction {kept}");
    // The gradient is the same mask times the scale.
    tch::manual_seed(7);
    let g = derivative(text, &input, &[], Phase::Train);
    let gv = values(&g);
    for (y, d) in v.iter().zip(&gv) {
        assert_eq!(*d, if *y == 0.0 { 0.0 } else { 4.0 / 3.0 });
    }
    layer::gradcheck(
        text,
        &[smooth_input(&[4, 5], 15)],
        GradCheck { phase: Phase::Train, tolerance: 1e-5, ..Default::default() },
    );

    // scale_train: false → TRAIN unscaled, TEST × (1 − ratio).
    let unscaled = r#"name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.25 scale_train: false }"#;
    let (_, tops) = run_phase(unscaled, &[input.shallow_clone()], &[], Phase::Test);
    assert_values("test unscaled", &tops[0], &[2.25; 2000]);
    let (_, tops) = run_phase(unscaled, &[input.shallow_clone()], &[], Phase::Train);
    assert!(values(&tops[0]).iter().all(|&y| y == 0.0 || y == 3.0));

    for bad in ["1", "1.5", "-0.1"] {
        let err =
            setup_err(&format!(r#"name: "d" type: "Dropout" dropout_param {{ dropout_ratio: {bad} }}"#), &[vec![2]]);
        assert!(err.contains("dropout_ratio"), "{err}");
    }
}

#[test]
fn neurons_take_exactly_one_bottom() {
    let _rng = rng_exclusive();
    for ty in [
        "ReLU",
        "PReLU",
        "ELU",
        "Sigmoid",
        "TanH",
        "AbsVal",
        "BNLL",
        "Power",
        "Exp",
        "Log",
        "Threshold",
        "Dropout",
        "Clip",
        "Swish",
        "SeLu",
        "SeLuDropout",
    ] {
        let err = setup_err(&format!(r#"name: "n" type: "{ty}""#), &[vec![2, 3], vec![2, 3]]);
        assert!(err.contains("bottom"), "{ty}: {err}");
        let err = setup_err(&format!(r#"name: "n" type: "{ty}""#), &[]);
        assert!(err.contains("bottom"), "{ty}: {err}");
    }
}

#[test]
fn neurons_work_in_f32_and_keep_shape() {
    let _rng = rng_exclusive();
    let input = smooth_input(&[2, 3, 2, 2], 16).to_kind(Kind::Float);
    for text in [
        r#"name: "n" type: "ELU""#,
        r#"name: "n" type: "Sigmoid""#,
        r#"name: "n" type: "BNLL""#,
        r#"name: "n" type: "Power" power_param { power: 2 shift: 3 }"#,
        r#"name: "n" type: "Exp""#,
        r#"name: "n" type: "Threshold""#,
        r#"name: "n" type: "Clip" clip_param { min: -1 max: 1 }"#,
        r#"name: "n" type: "Swish""#,
    ] {
        let (setup, tops) = run_phase(text, &[input.shallow_clone()], &[], Phase::Train);
        assert_eq!(setup.tops, vec![vec![2, 3, 2, 2]], "{text}");
        assert_eq!(tops[0].size(), vec![2, 3, 2, 2], "{text}");
        assert_eq!(tops[0].kind(), Kind::Float, "{text}");
    }
    let slopes = Tensor::full([3], 0.25, (Kind::Float, Device::Cpu));
    let (_, tops) = run_phase(r#"name: "n" type: "PReLU""#, &[input], &[slopes], Phase::Train);
    assert_eq!(tops[0].kind(), Kind::Float);
}

#[test]
fn relu6_is_clip_from_0_to_6() {
    let _rng = rng_exclusive();
    let text = r#"name: "r" type: "ReLU6""#;
    let v = t(&[-2.0, 0.0, 3.5, 6.0, 9.0], &[1, 5]);
    assert_values("relu6", &run(text, &[v.shallow_clone()], &[])[0], &[0.0, 0.0, 3.5, 6.0, 6.0]);
    assert_values("relu6'", &derivative(text, &v, &[], Phase::Train), &[0.0, 1.0, 1.0, 1.0, 0.0]);
    gradcheck(text, &[smooth_input(&[2, 3, 4], 17) * 5.0 + 2.0]);
}
