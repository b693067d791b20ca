//! One layer at a time: a layer from prototxt text (or a LayerParameter), run
//! through create → setup → forward, its setup and forward errors, its values,
//! and finite-difference gradient checks. Everything runs on the CPU.
use caffe_tch::layers::gradcheck::{self, GradCheck, GradReport};
use caffe_tch::layers::{create_layer, Ctx, SetupOut, Shape};
use caffe_tch::proto::caffe::{LayerParameter, Phase};
use caffe_tch::proto::text::{parse_str, TextOptions};
use tch::{Device, Kind, Tensor};

/// A layer given as prototxt text or as a parsed LayerParameter.
pub trait LayerSpec {
    fn param(&self) -> LayerParameter;
    /// What a failure message names: the text, or the layer's name.
    fn describe(&self) -> String;
}

impl LayerSpec for str {
    fn param(&self) -> LayerParameter {
        lp(self)
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl LayerSpec for String {
    fn param(&self) -> LayerParameter {
        lp(self)
    }
    fn describe(&self) -> String {
        self.clone()
    }
}

impl LayerSpec for LayerParameter {
    fn param(&self) -> LayerParameter {
        self.clone()
    }
    fn describe(&self) -> String {
        self.name().to_string()
    }
}

/// A LayerParameter from prototxt text (panics on a parse error).
pub fn lp(text: &str) -> LayerParameter {
    match parse_str::<LayerParameter>(text, "test", TextOptions::default()) {
        Ok(p) => p.message,
        Err(e) => panic!("parse failed: {e}\n{text}"),
    }
}

/// An f64 tensor of `shape` from values.
pub fn t(values: &[f64], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values).reshape(shape)
}

/// N(0, 1) values in f64 from libtorch's generator seeded with `seed`.
pub fn randn(shape: &[i64], seed: i64) -> Tensor {
    randn_kind(shape, seed, Kind::Double)
}

/// N(0, 1) values in f32 (libtorch draws f32 differently from f64: not a cast of [`randn`]).
pub fn randn_f32(shape: &[i64], seed: i64) -> Tensor {
    randn_kind(shape, seed, Kind::Float)
}

fn randn_kind(shape: &[i64], seed: i64, kind: Kind) -> Tensor {
    // The seed and the draw are one step for the library's gradient checks too.
    let _rng = gradcheck::rng_lock();
    tch::manual_seed(seed);
    Tensor::randn(shape, (kind, Device::Cpu))
}

/// A CPU context in `phase`, at an iteration past any DropIn ramp.
pub fn ctx(phase: Phase) -> Ctx {
    Ctx { phase, iteration: i64::MAX, device: Device::Cpu }
}

/// Creates, sets up and runs a layer in `phase`; returns the setup and the tops.
pub fn run_phase(
    layer: &(impl LayerSpec + ?Sized),
    bottoms: &[Tensor],
    params: &[Tensor],
    phase: Phase,
) -> (SetupOut, Vec<Tensor>) {
    let p = layer.param();
    let mut layer = create_layer(&p).unwrap_or_else(|e| panic!("create: {e}"));
    let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
    let setup = layer.setup(&shapes).unwrap_or_else(|e| panic!("setup: {e}"));
    let tops = layer.forward(&ctx(phase), bottoms, params).unwrap_or_else(|e| panic!("forward: {e}"));
    (setup, tops)
}

/// The error from create or setup for these bottom shapes.
pub fn setup_err(layer: &(impl LayerSpec + ?Sized), shapes: &[Shape]) -> String {
    match create_layer(&layer.param()) {
        Err(e) => e.to_string(),
        Ok(mut l) => match l.setup(shapes) {
            Err(e) => e.to_string(),
            Ok(s) => panic!("{}: expected a setup error for {shapes:?}, got tops {:?}", layer.describe(), s.tops),
        },
    }
}

/// The error from forward in `phase` (create and setup must pass).
pub fn forward_err(layer: &(impl LayerSpec + ?Sized), bottoms: &[Tensor], params: &[Tensor], phase: Phase) -> String {
    let mut l = create_layer(&layer.param()).unwrap_or_else(|e| panic!("create: {e}"));
    let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
    l.setup(&shapes).unwrap_or_else(|e| panic!("setup: {e}"));
    match l.forward(&ctx(phase), bottoms, params) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{}: expected a forward error", layer.describe()),
    }
}

/// A tensor's values as f64, flattened.
pub fn values(x: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&x.detach().to_kind(Kind::Double).contiguous().view(-1)).expect("values")
}

/// Each value within 1e-9·(1 + |expected|) (NaN where NaN is expected).
pub fn assert_values(what: &str, ours: &Tensor, expected: &[f64]) {
    let got = values(ours);
    assert_eq!(got.len(), expected.len(), "{what}: count");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let ok = (g - e).abs() <= 1e-9 * (1.0 + e.abs()) || (g.is_nan() && e.is_nan());
        assert!(ok, "{what}: element {i} is {g}, expected {e} (all: {got:?})");
    }
}

/// [`assert_values`] after checking the shape.
pub fn assert_shaped_values(what: &str, ours: &Tensor, expected: &[f64], shape: &[i64]) {
    assert_eq!(ours.size(), shape, "{what}: shape");
    assert_values(what, ours, expected);
}

/// Runs a gradient check and fails the test on a mismatch, or when nothing was
/// checked although the layer has bottoms.
pub fn gradcheck(layer: &(impl LayerSpec + ?Sized), bottoms: &[Tensor], check: GradCheck) -> GradReport {
    let param = layer.param();
    let report = check
        .run(&param, bottoms)
        // A check reseeds libtorch's process-wide generator before each pass,
        // but a test on another thread that draws without the check's lock
        // (building a net fills its weights) can draw between the reseed and
        // a random layer's mask. Every pass is seeded alike, so a real
        // mismatch repeats; a second run tells the two apart.
        .or_else(|first| check.run(&param, bottoms).map_err(|_| first))
        .unwrap_or_else(|e| panic!("{}: {e}", layer.describe()));
    assert!(report.checked > 0 || bottoms.is_empty(), "{}: nothing checked", layer.describe());
    report
}
