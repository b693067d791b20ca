//! Caffe's weight fillers (caffe_tch::layers::filler::fill), checked by the
//! numbers: exact values where the filler is deterministic, sample statistics
//! within sampling tolerance where it is random, and seeding.
use caffe_tch::layers::filler::fill;
use caffe_tch::layers::gradcheck::rng_lock;
use caffe_tch::proto::caffe::filler_parameter::VarianceNorm;
use caffe_tch::proto::caffe::FillerParameter;
use caffe_tch::proto::text::{parse_str, TextOptions};
use tch::{Device, Kind, Tensor};

use crate::common::layer::values;
use crate::common::rng_exclusive;

fn filler(text: &str) -> FillerParameter {
    parse_str::<FillerParameter>(text, "test", TextOptions::default()).unwrap_or_else(|e| panic!("{text}: {e}")).message
}

/// Fills under the RNG lock from a fixed seed.
fn draw(text: &str, shape: &[i64]) -> Tensor {
    let _guard = rng_lock();
    tch::manual_seed(1701);
    let t = fill(&filler(text), shape, Device::Cpu).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(t.size(), shape, "{text}");
    assert_eq!(t.kind(), Kind::Float, "{text}");
    t
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |a, x| a.max(x.abs()))
}

/// A conv weight blob: 64 outputs, 32 inputs, 3×3. fan_in 288, fan_out 576.
const CONV: [i64; 4] = [64, 32, 3, 3];

#[test]
fn constant_fills_the_value() {
    let _rng = rng_exclusive();
    let v = values(&draw(r#"type: "constant" value: 0.25"#, &[2, 3, 4]));
    assert!(v.iter().all(|&x| x == 0.25), "{v:?}");
    // Caffe's FillerParameter defaults: type constant, value 0.
    let v = values(&draw("", &[5]));
    assert!(v.iter().all(|&x| x == 0.0), "{v:?}");
}

#[test]
fn uniform_covers_min_to_max() {
    let _rng = rng_exclusive();
    let v = values(&draw(r#"type: "uniform" min: -0.3 max: 0.7"#, &[200, 500]));
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    assert!(lo >= -0.3 - 1e-7 && hi <= 0.7 + 1e-7, "range [{lo}, {hi}]");
    assert!(lo < -0.299 && hi > 0.699, "range [{lo}, {hi}] should reach the bounds");
    assert!((mean(&v) - 0.2).abs() < 0.005, "mean {}", mean(&v));
    // Uniform on [a, b): std (b - a) / sqrt(12).
    assert!((std(&v) - 1.0 / 12f64.sqrt()).abs() < 0.005, "std {}", std(&v));
    // Defaults: min 0, max 1.
    let v = values(&draw(r#"type: "uniform""#, &[10000]));
    assert!(v.iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert!((mean(&v) - 0.5).abs() < 0.02, "mean {}", mean(&v));
}

#[test]
fn gaussian_mean_and_std() {
    let _rng = rng_exclusive();
    let v = values(&draw(r#"type: "gaussian" mean: 1.5 std: 0.5"#, &[200, 500]));
    assert!((mean(&v) - 1.5).abs() < 0.005, "mean {}", mean(&v));
    assert!((std(&v) - 0.5).abs() < 0.005, "std {}", std(&v));
    assert!(v.iter().all(|&x| x != 0.0), "no sparsity by default");
    // Defaults: mean 0, std 1.
    let v = values(&draw(r#"type: "gaussian""#, &[100000]));
    assert!(mean(&v).abs() < 0.02 && (std(&v) - 1.0).abs() < 0.02, "{} {}", mean(&v), std(&v));
}

#[test]
fn sparse_gaussian_keeps_sparse_over_num_outputs() {
    let _rng = rng_exclusive();
    // 10 outputs, sparse 3: each weight is non-zero with probability 0.3.
    let v = values(&draw(r#"type: "gaussian" std: 2 sparse: 3"#, &[10, 20000]));
    let nonzero: Vec<f64> = v.iter().copied().filter(|&x| x != 0.0).collect();
    let fraction = nonzero.len() as f64 / v.len() as f64;
    assert!((fraction - 0.3).abs() < 0.01, "non-zero fraction {fraction}");
    // The kept weights are the gaussian draws themselves.
    assert!(mean(&nonzero).abs() < 0.05 && (std(&nonzero) - 2.0).abs() < 0.05, "{} {}", mean(&nonzero), std(&nonzero));
    // sparse 0 keeps nothing; sparse >= num_outputs keeps everything.
    let v = values(&draw(r#"type: "gaussian" sparse: 0"#, &[4, 100]));
    assert!(v.iter().all(|&x| x == 0.0));
    let v = values(&draw(r#"type: "gaussian" sparse: 4"#, &[4, 100]));
    assert!(v.iter().all(|&x| x != 0.0));
}

#[test]
fn positive_unitball_rows_sum_to_one() {
    let _rng = rng_exclusive();
    let shape = [5, 3, 4, 4];
    let t = draw(r#"type: "positive_unitball""#, &shape);
    let v = values(&t);
    assert!(v.iter().all(|&x| (0.0..=1.0).contains(&x)), "values outside [0, 1]");
    let row = (3 * 4 * 4) as usize;
    for (i, chunk) in v.chunks(row).enumerate() {
        let s: f64 = chunk.iter().sum();
        assert!((s - 1.0).abs() < 1e-5, "row {i} sums to {s}");
    }
    // Not all equal: the values are random before normalizing.
    assert!(std(&v[..row]) > 1e-3);
}

/// Checks a symmetric-uniform sample bounded by `bound`.
fn assert_uniform_bound(v: &[f64], bound: f64, what: &str) {
    let m = max_abs(v);
    assert!(m <= bound * (1.0 + 1e-6), "{what}: |x| max {m} exceeds {bound}");
    assert!(m >= bound * 0.99, "{what}: |x| max {m} should reach about {bound}");
    assert!(mean(v).abs() < bound * 0.02, "{what}: mean {}", mean(v));
    let expected_std = bound / 3f64.sqrt();
    assert!((std(v) - expected_std).abs() < expected_std * 0.02, "{what}: std {} vs {expected_std}", std(v));
}

#[test]
fn xavier_bound_follows_variance_norm() {
    let _rng = rng_exclusive();
    let (fan_in, fan_out): (f64, f64) = (288.0, 576.0);
    for (norm, n) in [
        ("", fan_in),
        ("variance_norm: FAN_IN", fan_in),
        ("variance_norm: FAN_OUT", fan_out),
        ("variance_norm: AVERAGE", (fan_in + fan_out) / 2.0),
    ] {
        let text = format!(r#"type: "xavier" {norm}"#);
        let v = values(&draw(&text, &CONV));
        assert_uniform_bound(&v, (3.0 / n).sqrt(), &text);
    }
    // A 1-axis blob: fan_in = count / shape[0] = 1, fan_out = count.
    let v = values(&draw(r#"type: "xavier""#, &[20000]));
    assert_uniform_bound(&v, 3f64.sqrt(), "xavier 1-D fan_in");
    let v = values(&draw(r#"type: "xavier" variance_norm: FAN_OUT"#, &[20000]));
    assert_uniform_bound(&v, (3.0 / 20000.0f64).sqrt(), "xavier 1-D fan_out");
    assert_eq!(filler(r#"type: "xavier""#).variance_norm(), VarianceNorm::FanIn);
}

#[test]
fn msra_std_follows_variance_norm() {
    let _rng = rng_exclusive();
    let (fan_in, fan_out): (f64, f64) = (288.0, 576.0);
    for (norm, n) in
        [("", fan_in), ("variance_norm: FAN_OUT", fan_out), ("variance_norm: AVERAGE", (fan_in + fan_out) / 2.0)]
    {
        let text = format!(r#"type: "msra" {norm}"#);
        let v = values(&draw(&text, &CONV));
        let expected = (2.0 / n).sqrt();
        assert!((std(&v) - expected).abs() < expected * 0.03, "{text}: std {} vs {expected}", std(&v));
        assert!(mean(&v).abs() < expected * 0.03, "{text}: mean {}", mean(&v));
    }
}

/// The bilinear weight at (x, y) of a k×k kernel, from Caffe's definition.
fn bilinear_weight(k: i64, x: i64, y: i64) -> f64 {
    let f = (k as f64 / 2.0).ceil();
    let c = (2.0 * f - 1.0 - f % 2.0) / (2.0 * f);
    (1.0 - (x as f64 / f - c).abs()) * (1.0 - (y as f64 / f - c).abs())
}

#[test]
fn bilinear_kernel_values() {
    let _rng = rng_exclusive();
    // k = 4: f = 2, c = 0.75, each axis weighs 0.25, 0.75, 0.75, 0.25.
    let axis = [0.25, 0.75, 0.75, 0.25];
    let t = draw(r#"type: "bilinear""#, &[2, 3, 4, 4]);
    let v = values(&t);
    for (plane, chunk) in v.chunks(16).enumerate() {
        for y in 0..4 {
            for x in 0..4 {
                let want = axis[y] * axis[x];
                assert_eq!(chunk[y * 4 + x], want, "plane {plane} ({x}, {y})");
                assert_eq!(bilinear_weight(4, x as i64, y as i64), want);
            }
        }
    }
    // k = 5 (odd): f = 3, c = 2/3; the centre weighs 1.
    let v = values(&draw(r#"type: "bilinear""#, &[1, 1, 5, 5]));
    for y in 0..5 {
        for x in 0..5 {
            let want = bilinear_weight(5, x, y);
            assert!(
                (v[(y * 5 + x) as usize] - want).abs() < 1e-6,
                "k=5 ({x}, {y}): {} vs {want}",
                v[(y * 5 + x) as usize]
            );
        }
    }
    assert!((v[12] - 1.0).abs() < 1e-6);
    // Caffe requires 4 axes and a square kernel.
    let _guard = rng_lock();
    for bad in [&[1i64, 1, 4, 3][..], &[4, 4], &[1, 4, 4]] {
        assert!(fill(&filler(r#"type: "bilinear""#), bad, Device::Cpu).is_err(), "bilinear {bad:?} should fail");
    }
}

#[test]
fn unknown_filler_is_an_error_listing_the_known_ones() {
    let _rng = rng_exclusive();
    let _guard = rng_lock();
    let err = match fill(&filler(r#"type: "glorot""#), &[3, 3], Device::Cpu) {
        Ok(_) => panic!("an unknown filler type should fail"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("glorot"), "{err}");
    for known in ["constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra", "bilinear"] {
        assert!(err.contains(known), "error should list {known}: {err}");
    }
}

#[test]
fn a_seed_gives_the_same_weights() {
    let _rng = rng_exclusive();
    let _guard = rng_lock();
    for text in [
        r#"type: "uniform" min: -1 max: 1"#,
        r#"type: "gaussian" std: 0.1"#,
        r#"type: "gaussian" std: 0.1 sparse: 20"#,
        r#"type: "positive_unitball""#,
        r#"type: "xavier""#,
        r#"type: "msra""#,
    ] {
        let f = filler(text);
        let once = |seed: i64| {
            tch::manual_seed(seed);
            fill(&f, &CONV, Device::Cpu).unwrap()
        };
        let (a, b, c) = (once(42), once(42), once(43));
        assert!(a.equal(&b), "{text}: same seed, different weights");
        assert!(!a.equal(&c), "{text}: different seeds, same weights");
    }
}
