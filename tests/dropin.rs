//! DropIn and Resize: the paper's semantics, checked unit by unit.
use caffe_tch::layers::gradcheck::{rng_lock, GradCheck};
use caffe_tch::layers::{create_layer, Ctx, Layer};
use caffe_tch::proto::caffe::{LayerParameter, Phase};
use tch::{Device, Kind, Tensor};

use crate::common::layer::lp as layer;
use crate::common::rng_exclusive;

fn ctx(phase: Phase, iteration: i64) -> Ctx {
    Ctx { phase, iteration, device: Device::Cpu }
}

/// Runs a DropIn on (skip = 0s + marker, new = 1s) so each top unit says where it came from.
fn run(lp: &LayerParameter, shape: &[i64], phase: Phase, iteration: i64) -> (Tensor, Tensor, Tensor) {
    let _rng = rng_lock();
    let mut l: Box<dyn Layer> = create_layer(lp).unwrap();
    l.setup(&[shape.to_vec(), shape.to_vec()]).unwrap();
    let skip = Tensor::randn(shape, (Kind::Float, Device::Cpu));
    let new = Tensor::randn(shape, (Kind::Float, Device::Cpu)) + 10.0;
    let top = l.forward(&ctx(phase, iteration), &[skip.shallow_clone(), new.shallow_clone()], &[]).unwrap().remove(0);
    (skip, new, top)
}

const GRADUAL: &str = r#"name: "d" type: "DropIn" dropin_param { dropin_length: 1000 dropin_start: 200 }"#;

#[test]
fn gradual_at_start_passes_the_skip_path() {
    let _rng = rng_exclusive();
    for it in [0, 100, 200] {
        let (skip, _, top) = run(&layer(GRADUAL), &[4, 3, 5, 5], Phase::Train, it);
        assert!(top.equal(&skip), "iteration {it}");
    }
}

#[test]
fn gradual_after_the_ramp_passes_the_new_layer() {
    let _rng = rng_exclusive();
    for it in [1200, 5000, i64::MAX] {
        let (_, new, top) = run(&layer(GRADUAL), &[4, 3, 5, 5], Phase::Train, it);
        assert!(top.equal(&new), "iteration {it}");
    }
}

#[test]
fn gradual_midpoint_takes_ceil_q_n_units_from_the_skip_path_in_index_order() {
    let _rng = rng_exclusive();
    let shape = [3i64, 7, 3, 3];
    let n = 7 * 3 * 3;
    for it in [201, 450, 537, 700, 1199] {
        let (skip, _, top) = run(&layer(GRADUAL), &shape, Phase::Test, it);
        let q = 1.0 - (it as f64 - 200.0) / 1000.0;
        let expect = (q * n as f64).ceil() as i64;
        let from_skip = top.eq_tensor(&skip).view([3, n]);
        for s in 0..3 {
            let row = from_skip.get(s);
            assert_eq!(row.sum(Kind::Int64).int64_value(&[]), expect, "iteration {it} sample {s}");
            // The first ⌈q·n⌉ units in index order λ are the skipped ones.
            assert_eq!(row.narrow(0, 0, expect).all().int64_value(&[]), 1);
        }
    }
}

#[test]
fn regularizing_mode_mixes_q_of_units_in_train() {
    let _rng = rng_exclusive();
    let lp = layer(r#"name: "d" type: "DropIn" dropin_param { dropin_ratio: 0.3 }"#);
    let (skip, _, top) = run(&lp, &[10, 10, 10, 100], Phase::Train, 0);
    let frac = top.eq_tensor(&skip).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    assert!((frac - 0.3).abs() < 0.01, "skip fraction {frac}");
    // Redrawn each pass.
    let mut l = create_layer(&lp).unwrap();
    l.setup(&[vec![1, 1000], vec![1, 1000]]).unwrap();
    let a = Tensor::zeros([1, 1000], (Kind::Float, Device::Cpu));
    let b = Tensor::ones([1, 1000], (Kind::Float, Device::Cpu));
    let t1 = l.forward(&ctx(Phase::Train, 0), &[a.shallow_clone(), b.shallow_clone()], &[]).unwrap().remove(0);
    let t2 = l.forward(&ctx(Phase::Train, 0), &[a, b], &[]).unwrap().remove(0);
    assert!(!t1.equal(&t2));
}

#[test]
fn regularizing_mode_test_phase_is_the_expectation() {
    let _rng = rng_exclusive();
    let lp = layer(r#"name: "d" type: "DropIn" dropin_param { dropin_ratio: 0.3 }"#);
    let (skip, new, top) = run(&lp, &[2, 3, 4, 4], Phase::Test, 0);
    let expect = &skip * 0.3 + &new * 0.7;
    let d = (top - expect).abs().max().double_value(&[]);
    assert!(d < 1e-5, "{d}");
}

#[test]
fn gradient_reaches_exactly_the_selected_units() {
    let _rng = rng_exclusive();
    let lp = layer(GRADUAL);
    let mut l = create_layer(&lp).unwrap();
    let shape = [2i64, 5, 4, 4];
    l.setup(&[shape.to_vec(), shape.to_vec()]).unwrap();
    let skip = Tensor::randn(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let new = Tensor::randn(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let top = l.forward(&ctx(Phase::Train, 600), &[skip.shallow_clone(), new.shallow_clone()], &[]).unwrap().remove(0);
    let g = Tensor::f_run_backward(&[&top.sum(Kind::Float)], &[&skip, &new], false, false).unwrap();
    let n = 5 * 4 * 4;
    let k = (0.6f64 * n as f64).ceil() as i64; // q = 1 − 400/1000
    let gs = g[0].view([2, n]);
    let gn = g[1].view([2, n]);
    for s in 0..2 {
        assert_eq!(gs.get(s).narrow(0, 0, k).sum(Kind::Float).double_value(&[]), k as f64);
        assert_eq!(gs.get(s).narrow(0, k, n - k).abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(gn.get(s).narrow(0, 0, k).abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(gn.get(s).narrow(0, k, n - k).sum(Kind::Float).double_value(&[]), (n - k) as f64);
    }
}

#[test]
fn dropin_gradient_check_both_modes() {
    let _rng = rng_exclusive();
    let b = || -> Vec<Tensor> {
        let _rng = rng_lock();
        vec![
            Tensor::randn([2, 3, 3, 3], (Kind::Double, Device::Cpu)),
            Tensor::randn([2, 3, 3, 3], (Kind::Double, Device::Cpu)),
        ]
    };
    let g = GradCheck { iteration: 650, ..Default::default() };
    g.run(&layer(GRADUAL), &b()).unwrap();
    let reg = layer(r#"name: "d" type: "DropIn" dropin_param { dropin_ratio: 0.4 }"#);
    GradCheck::default().run(&reg, &b()).unwrap();
    GradCheck { phase: Phase::Test, ..Default::default() }.run(&reg, &b()).unwrap();
}

#[test]
fn dropin_shape_mismatch_suggests_resize() {
    let _rng = rng_exclusive();
    let mut l = create_layer(&layer(GRADUAL)).unwrap();
    let e = l.setup(&[vec![1, 3, 4, 4], vec![1, 4, 4, 4]]).err().unwrap().to_string();
    assert!(e.contains("Resize"), "{e}");
}

#[test]
fn resize_channels_and_spatial_size() {
    let _rng = rng_exclusive();
    let lp = layer(r#"name: "r" type: "Resize" resize_param { height: 6 width: 8 channels: 5 }"#);
    let mut l = create_layer(&lp).unwrap();
    let out = l.setup(&[vec![2, 2, 3, 4]]).unwrap();
    assert_eq!(out.tops[0], vec![2, 5, 6, 8]);
    let x = Tensor::arange(2 * 2 * 3 * 4, (Kind::Float, Device::Cpu)).view([2, 2, 3, 4]);
    let y = l.forward(&ctx(Phase::Test, 0), &[x.shallow_clone()], &[]).unwrap().remove(0);
    assert_eq!(y.size(), vec![2, 5, 6, 8]);
    // Channels repeat cyclically: 0,1,0,1,0.
    assert!(y.get(0).get(2).equal(&y.get(0).get(0)));
    assert!(y.get(0).get(3).equal(&y.get(0).get(1)));
    // Fewer channels keep the first ones; unset dims are kept.
    let lp = layer(r#"name: "r" type: "Resize" resize_param { channels: 1 }"#);
    let mut l = create_layer(&lp).unwrap();
    assert_eq!(l.setup(&[vec![2, 2, 3, 4]]).unwrap().tops[0], vec![2, 1, 3, 4]);
    let y = l.forward(&ctx(Phase::Test, 0), &[x.shallow_clone()], &[]).unwrap().remove(0);
    assert!(y.squeeze_dim(1).equal(&x.select(1, 0)));
    // A second bottom supplies the target shape.
    let lp = layer(r#"name: "r" type: "Resize" resize_param { interpolation: NEAREST }"#);
    let mut l = create_layer(&lp).unwrap();
    assert_eq!(l.setup(&[vec![2, 2, 3, 4], vec![2, 3, 6, 8]]).unwrap().tops[0], vec![2, 3, 6, 8]);
}

#[test]
fn resize_gradient_check() {
    let _rng = rng_exclusive();
    for text in [
        r#"name: "r" type: "Resize" resize_param { height: 5 width: 7 channels: 3 }"#,
        r#"name: "r" type: "Resize" resize_param { height: 2 width: 2 channels: 1 interpolation: NEAREST }"#,
    ] {
        let x = Tensor::randn([2, 2, 3, 4], (Kind::Double, Device::Cpu));
        GradCheck::default().run(&layer(text), &[x]).unwrap();
    }
}

/// Found by fuzzing (an out-of-memory kill): resizing a 3×4×30000 bottom to
/// 20000×4×4 made the 20000-channel copy first, at full width (9.6 GB). The
/// step that shrinks goes first now; the order does not change the values.
#[test]
fn resize_does_the_shrinking_step_first() {
    let lp = layer(r#"name: "r" type: "Resize" resize_param { height: 4 width: 4 channels: 20000 }"#);
    let mut l = create_layer(&lp).unwrap();
    assert_eq!(l.setup(&[vec![1, 3, 4, 30000]]).unwrap().tops[0], vec![1, 20000, 4, 4]);
    let x = Tensor::ones([1, 3, 4, 30000], (Kind::Float, Device::Cpu));
    let y = l.forward(&ctx(Phase::Test, 0), &[x], &[]).unwrap().remove(0);
    assert_eq!(y.size(), vec![1, 20000, 4, 4]);

    // The same values as channels first, then the bilinear resize.
    let lp = layer(r#"name: "r" type: "Resize" resize_param { height: 2 width: 3 channels: 5 }"#);
    let mut l = create_layer(&lp).unwrap();
    l.setup(&[vec![2, 2, 3, 40]]).unwrap();
    let x = Tensor::arange(2 * 2 * 3 * 40, (Kind::Float, Device::Cpu)).view([2, 2, 3, 40]);
    let y = l.forward(&ctx(Phase::Test, 0), &[x.shallow_clone()], &[]).unwrap().remove(0);
    let idx = Tensor::from_slice(&[0i64, 1, 0, 1, 0]);
    let expected = x.index_select(1, &idx).upsample_bilinear2d([2, 3], false, None, None);
    assert!(y.equal(&expected));
}

/// Found by fuzzing: a bottom whose size only the forward knows (here a
/// Filter that keeps no row) differs at forward from its set-up shape; DropIn
/// says so in every mode instead of failing inside libtorch.
#[test]
fn a_bottom_that_changes_size_at_forward_is_an_error() {
    let text = |dropin: &str| {
        format!(
            "layer {{ name: 'x' type: 'Input' top: 'x' input_param {{ shape {{ dim: 3 dim: 2 }} }} }}
             layer {{ name: 's' type: 'DummyData' top: 's' dummy_data_param {{ shape {{ dim: 3 }} }} }}
             layer {{ name: 'f' type: 'Filter' bottom: 'x' bottom: 's' top: 'f' }}
             layer {{ name: 'd' type: 'DropIn' bottom: 'x' bottom: 'f' top: 'y' dropin_param {{ {dropin} }} }}"
        )
    };
    for (dropin, phase) in [
        ("dropin_ratio: 0.3", Phase::Test),
        ("dropin_ratio: 0.3", Phase::Train),
        ("dropin_length: 100 dropin_start: 0", Phase::Test),
    ] {
        let mut net = crate::common::net(&text(dropin), "dropin.prototxt", phase).unwrap_or_else(|e| panic!("{e}"));
        let e = net.forward().expect_err("a Filter that keeps no row").to_string();
        assert!(
            e.contains("DropIn needs bottoms of the same shape, got [3, 2]") && e.contains("[0, 2]"),
            "{dropin}: {e}"
        );
    }
}
