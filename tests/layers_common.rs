//! The utility layers of `src/layers/common/`: values against hand-computed
//! results for Caffe's semantics, setup errors, gradient checks for every
//! layer with a backward, and the Scale/Eltwise/Softmax steps of the
//! resnet_small fixture against BVLC Caffe's blobs.
use caffe_tch::layers::gradcheck::GradCheck;
use caffe_tch::layers::{create_layer, SetupOut, Shape, REGISTRY};
use caffe_tch::net::Net;
use caffe_tch::proto::caffe::Phase;
use tch::{Device, Kind, Tensor};

use crate::common::layer::{self, assert_shaped_values, ctx, lp, randn, randn_f32, run_phase, setup_err, t};
use crate::common::{assert_close, caffe_ref, read_npy, rng_exclusive};

/// Creates, sets up and runs a layer in TEST; returns the setup and the tops.
fn run(text: &str, bottoms: &[Tensor], params: &[Tensor]) -> (SetupOut, Vec<Tensor>) {
    run_phase(text, bottoms, params, Phase::Test)
}

/// The error from a TEST forward pass (setup must pass).
fn forward_err(text: &str, bottoms: &[Tensor], params: &[Tensor]) -> String {
    layer::forward_err(text, bottoms, params, Phase::Test)
}

/// A gradient check at the checker's default tolerance; `skip` lists bottoms
/// that get none (indices, labels). Layers without bottoms check their blobs.
fn gradcheck(text: &str, bottoms: &[Tensor], skip: &[usize]) {
    layer::gradcheck(text, bottoms, GradCheck { skip_bottoms: skip.to_vec(), ..Default::default() });
}

/// Gradients of sum(top · g) with respect to each bottom.
fn bottom_grads(text: &str, bottoms: &[Tensor], g: &Tensor) -> Vec<Tensor> {
    let leaves: Vec<Tensor> = bottoms.iter().map(|b| b.detach().set_requires_grad(true)).collect();
    let (_, tops) = run(text, &leaves, &[]);
    let obj = (&tops[0] * g).sum(Kind::Double);
    Tensor::run_backward(&[&obj], &leaves, false, false)
}

/// A TRAIN net from prototxt text.
fn net(text: &str) -> Net {
    crate::common::net(text, "t.prototxt", Phase::Train).unwrap_or_else(|e| panic!("net: {e}"))
}

#[test]
fn registry_lists_every_common_layer() {
    let _rng = rng_exclusive();
    let types = [
        "InnerProduct",
        "Split",
        "Embed",
        "Parameter",
        "Bias",
        "Scale",
        "Eltwise",
        "Softmax",
        "ArgMax",
        "Reduction",
        "Concat",
        "Slice",
        "Flatten",
        "Reshape",
        "Tile",
        "Silence",
        "Filter",
        "BatchReindex",
    ];
    for ty in types {
        let info = REGISTRY.iter().find(|i| i.type_name == ty).unwrap_or_else(|| panic!("{ty} not registered"));
        assert!(info.family.starts_with("common/"), "{ty}: {}", info.family);
        let file = crate::common::repo().join("src/layers").join(info.family);
        assert!(file.exists(), "{ty}: {} does not exist", file.display());
        assert!(!info.params.is_empty() && !info.tests.is_empty(), "{ty}");
    }
}

// ---- InnerProduct, Split ----

#[test]
fn inner_product_gradient_check() {
    let _rng = rng_exclusive();
    let x = randn(&[3, 2, 2], 1);
    gradcheck(
        r#"type: "InnerProduct" inner_product_param { num_output: 4 weight_filler { type: "gaussian" } }"#,
        &[x.shallow_clone()],
        &[],
    );
    gradcheck(
        r#"type: "InnerProduct" inner_product_param { num_output: 3 transpose: true axis: 2 weight_filler { type: "gaussian" } }"#,
        &[x],
        &[],
    );
}

/// A TEST forward on the CPU picks x·Wᵀ, W·xᵀ or oneDNN's inner product by
/// shape; every form gives x·Wᵀ + b (float32 against a float64 reference),
/// and where autograd records, the gradient still flows (oneDNN's kernel
/// has no backward, so the layer must not use it there).
#[test]
fn inner_product_test_forms_agree_with_the_product() {
    let _rng = rng_exclusive();
    // rows, inputs, outputs: oneDNN (2M weights and more, from one row), W·xᵀ, x·Wᵀ.
    for (rows, inputs, outputs) in [(10, 4096, 4096), (1, 4096, 1024), (1, 2048, 1000), (10, 1024, 1000), (1, 64, 10)] {
        let x = randn_f32(&[rows, inputs], 1);
        let w = randn_f32(&[outputs, inputs], 2);
        let b = randn_f32(&[outputs], 3);
        let text = format!(r#"type: "InnerProduct" inner_product_param {{ num_output: {outputs} }}"#);
        let (_, tops) = run(&text, &[x.shallow_clone()], &[w.shallow_clone(), b.shallow_clone()]);
        let reference = x.to_kind(Kind::Double).matmul(&w.to_kind(Kind::Double).tr()) + b.to_kind(Kind::Double);
        let worst = (tops[0].to_kind(Kind::Double) - &reference).abs().max().double_value(&[]);
        let scale = reference.abs().max().double_value(&[]);
        assert!(worst <= 1e-5 * scale, "{rows}x{inputs} -> {outputs}: max |diff| {worst} at scale {scale}");

        let leaf = x.set_requires_grad(true);
        let (_, tops) = run(&text, &[leaf.shallow_clone()], &[w.shallow_clone(), b]);
        let grads = Tensor::run_backward(&[&tops[0].sum(Kind::Float)], &[&leaf], false, false);
        let expected = w.sum_dim_intlist([0i64].as_slice(), false, Kind::Float).expand([rows, inputs], false);
        assert_close(&format!("{rows}x{inputs} -> {outputs} bottom grad"), &grads[0], &expected, 1e-5);
    }
}

/// The layers that merge a 4-D bottom's axes (InnerProduct, Flatten, Reshape)
/// give a channels-last bottom its gradient channels-last (the pooling below
/// then takes its fast path), with the same values as for an NCHW bottom:
/// tops and gradients bit for bit.
#[test]
fn merging_layers_give_channels_last_bottoms_channels_last_gradients() {
    let _rng = rng_exclusive();
    let nchw = randn(&[3, 4, 5, 6], 11);
    let cl = nchw.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
    assert!(caffe_tch::layers::layout::is_channels_last(&cl));
    let (w, b) = (randn(&[7, 120], 12), randn(&[7], 13));
    let cases: [(&str, Vec<Tensor>); 3] = [
        (r#"type: "InnerProduct" inner_product_param { num_output: 7 }"#, vec![w, b]),
        (r#"type: "Flatten""#, vec![]),
        (r#"type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }"#, vec![]),
    ];
    for (text, params) in cases {
        let mut results = Vec::new();
        for x in [&nchw, &cl] {
            let leaf = x.detach().set_requires_grad(true);
            let (_, tops) = run(text, &[leaf.shallow_clone()], &params);
            let g = randn(&tops[0].size(), 14);
            let grads = Tensor::run_backward(&[&(&tops[0] * &g).sum(Kind::Double)], &[&leaf], false, false);
            results.push((tops[0].shallow_clone(), grads[0].shallow_clone()));
        }
        let ((top_nchw, grad_nchw), (top_cl, grad_cl)) = (&results[0], &results[1]);
        assert!(top_cl.equal(top_nchw), "{text}: tops differ");
        assert!(grad_cl.equal(grad_nchw), "{text}: gradients differ");
        assert!(
            caffe_tch::layers::layout::is_channels_last(grad_cl),
            "{text}: gradient strides {:?}",
            grad_cl.stride()
        );
    }
}

/// `layout::channels_last` hands back a tensor already channels-last as it
/// is (same storage, sizes and strides), as the copy it would otherwise make
/// through libtorch (permute, contiguous, permute back) does, including axes
/// of size 1 with strides of any value, and copies every other layout.
#[test]
fn channels_last_keeps_a_channels_last_tensor_as_it_is() {
    let _rng = rng_exclusive();
    let by_copy = |x: &Tensor| x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
    let nchw = randn(&[2, 3, 4, 5], 21);
    let nhwc = by_copy(&nchw);
    let one_image = by_copy(&randn(&[1, 6, 3, 3], 22));
    // N = 1 and W = 1 with strides no contiguous tensor has.
    let odd_strides = randn(&[6 * 3], 23).as_strided([1, 6, 3, 1], [999, 1, 6, 77], None::<i64>);
    let sliced = by_copy(&randn(&[2, 8, 4, 5], 24)).narrow(1, 2, 3);
    let empty = Tensor::zeros([0, 3, 4, 5], (Kind::Float, Device::Cpu));
    for (name, x) in [
        ("nchw", &nchw),
        ("nhwc", &nhwc),
        ("one image", &one_image),
        ("odd strides", &odd_strides),
        ("sliced", &sliced),
        ("empty", &empty),
    ] {
        let got = caffe_tch::layers::layout::channels_last(x).unwrap();
        let want = by_copy(x);
        assert_eq!(got.size(), want.size(), "{name}");
        assert_eq!(got.stride(), want.stride(), "{name}");
        assert_eq!(got.data_ptr() == x.data_ptr(), want.data_ptr() == x.data_ptr(), "{name}: copied or not");
        assert!(got.equal(x), "{name}: values");
    }
}

/// A training step runs BatchNorm, its in-place Scale and ReLU as one batch
/// norm with an affine part; with batch statistics and with global ones
/// (a frozen BatchNorm in a TRAIN net), the top, the gradient that reaches
/// the convolution below (its weights'), the Scale's gradients and the
/// running statistics match the layers run one by one (blob diffs recorded).
#[test]
fn batchnorm_scale_relu_run_as_one_layer_in_training() {
    let _rng = rng_exclusive();
    for global in [false, true] {
        let text = format!(
            r#"force_backward: true
layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ dim: 4 dim: 3 dim: 5 dim: 2 }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "x" top: "c"
  convolution_param {{ num_output: 3 kernel_size: 1 }} }}
layer {{ name: "bn" type: "BatchNorm" bottom: "c" top: "y" batch_norm_param {{ use_global_stats: {global} }} }}
layer {{ name: "sc" type: "Scale" bottom: "y" top: "y" scale_param {{ bias_term: true }} }}
layer {{ name: "relu" type: "ReLU" bottom: "y" top: "y" }}
layer {{ name: "sum" type: "Reduction" bottom: "y" top: "s" loss_weight: 1 }}
"#
        );
        let x = randn(&[4, 3, 5, 2], 21);
        let g = randn(&[4, 3, 5, 2], 22);
        let mut results = Vec::new();
        for separate in [false, true] {
            let mut net = net(&text);
            let (conv, bn, sc) =
                (net.layer_index("conv").unwrap(), net.layer_index("bn").unwrap(), net.layer_index("sc").unwrap());
            tch::no_grad(|| {
                net.layer_param(conv, 0).unwrap().copy_(&randn(&[3, 3, 1, 1], 27).to_kind(Kind::Float));
                net.layer_param(conv, 1).unwrap().copy_(&randn(&[3], 28).to_kind(Kind::Float));
                for (j, t) in [randn(&[3], 23).abs(), randn(&[3], 24).abs() + 0.5, Tensor::from_slice(&[2.0f64])]
                    .iter()
                    .enumerate()
                {
                    net.layer_param(bn, j).unwrap().copy_(&t.to_kind(Kind::Float));
                }
                net.layer_param(sc, 0).unwrap().copy_(&randn(&[3], 25).to_kind(Kind::Float));
                net.layer_param(sc, 1).unwrap().copy_(&randn(&[3], 26).to_kind(Kind::Float));
            });
            // A weighted sum, so the gradient is not the same everywhere.
            let xg = (&x * &g).to_kind(Kind::Float);
            net.set_input("x", &xg).unwrap();
            net.record_blob_diffs(separate);
            net.forward().unwrap();
            if separate {
                net.backward_with_blob_diffs().unwrap();
            } else {
                net.backward().unwrap();
            }
            let read = |t: Tensor| t.to_kind(Kind::Double);
            results.push(vec![
                read(net.blob("y").unwrap().shallow_clone()),
                read(net.layer_blob_diff("conv", 0).unwrap()),
                read(net.layer_blob_diff("sc", 0).unwrap()),
                read(net.layer_blob_diff("sc", 1).unwrap()),
                read(net.layer_param(bn, 0).unwrap()),
                read(net.layer_param(bn, 1).unwrap()),
            ]);
        }
        let what = ["top", "convolution weight gradient", "scale gradient", "bias gradient", "mean_sum", "var_sum"];
        for (k, what) in what.iter().enumerate() {
            assert_close(&format!("global {global}: {what}"), &results[0][k], &results[1][k], 1e-5);
        }
    }
}

/// The oneDNN kernel is there in this libtorch (else large fully connected
/// layers silently fall back to the slower MKL forms), and it declines where
/// autograd records.
#[test]
fn onednn_linear_runs_and_declines_under_autograd() {
    let _rng = rng_exclusive();
    let (x, w, b) = (randn_f32(&[8, 64], 4), randn_f32(&[32, 64], 5), randn_f32(&[32], 6));
    let y = caffe_tch::layers::onednn::linear(&x, &w, Some(&b)).expect("mkldnn::_linear_pointwise in this libtorch");
    assert_close("oneDNN linear", &y, &x.linear(&w, Some(&b)), 1e-5);
    let wg = w.set_requires_grad(true);
    assert!(caffe_tch::layers::onednn::linear(&x, &wg, Some(&b)).is_none(), "ran where autograd records");
    let y = tch::no_grad(|| caffe_tch::layers::onednn::linear(&x, &wg, Some(&b)));
    assert!(y.is_some(), "declined under no_grad");
}

#[test]
fn split_gradient_check() {
    let _rng = rng_exclusive();
    gradcheck(r#"type: "Split" top: "a" top: "b" top: "c""#, &[randn(&[2, 3], 2)], &[]);
}

// ---- Embed ----

const EMBED: &str = r#"type: "Embed" embed_param { num_output: 2 input_dim: 3 }"#;

#[test]
fn embed_looks_up_rows_and_adds_bias() {
    let _rng = rng_exclusive();
    let w = t(&[0., 1., 10., 11., 20., 21.], &[3, 2]);
    let b = t(&[0.5, -0.5], &[2]);
    let x = t(&[2., 0., 1., 2.], &[2, 2]);
    let (setup, tops) = run(EMBED, &[x], &[w.shallow_clone(), b]);
    assert_eq!(setup.tops, vec![vec![2, 2, 2]]);
    assert_eq!(setup.params.iter().map(|p| p.shape.clone()).collect::<Vec<_>>(), vec![vec![3, 2], vec![2]]);
    assert_shaped_values("embed", &tops[0], &[20.5, 20.5, 0.5, 0.5, 10.5, 10.5, 20.5, 20.5], &[2, 2, 2]);
    // No bias; fractional indices truncate like Caffe's static_cast<int>.
    let (setup, tops) =
        run(r#"type: "Embed" embed_param { num_output: 2 input_dim: 3 bias_term: false }"#, &[t(&[1.7], &[1])], &[w]);
    assert_eq!(setup.params.len(), 1);
    assert_shaped_values("embed truncation", &tops[0], &[10., 11.], &[1, 2]);
}

#[test]
fn embed_rejects_bad_indices_and_params() {
    let _rng = rng_exclusive();
    let w = Tensor::zeros([3, 2], (Kind::Double, Device::Cpu));
    let b = Tensor::zeros([2], (Kind::Double, Device::Cpu));
    let e = forward_err(EMBED, &[t(&[0., 3.], &[2])], &[w.shallow_clone(), b.shallow_clone()]);
    assert!(e.contains("index 3 is out of range [0, 3)"), "{e}");
    let e = forward_err(EMBED, &[t(&[-1.], &[1])], &[w.shallow_clone(), b.shallow_clone()]);
    assert!(e.contains("out of range"), "{e}");
    let e = forward_err(EMBED, &[t(&[f64::NAN], &[1])], &[w, b]);
    assert!(e.contains("finite"), "{e}");
    let e = setup_err(r#"type: "Embed" embed_param { num_output: 2 }"#, &[vec![2]]);
    assert!(e.contains("input_dim must be positive"), "{e}");
}

#[test]
fn embed_gradient_check_with_repeated_indices() {
    let _rng = rng_exclusive();
    let x = t(&[0., 2., 2., 1., 0., 2.], &[2, 3]);
    gradcheck(
        r#"type: "Embed" embed_param { num_output: 4 input_dim: 3 weight_filler { type: "gaussian" } }"#,
        &[x],
        &[0],
    );
}

// ---- Parameter ----

#[test]
fn parameter_blob_is_a_learnable_top() {
    let _rng = rng_exclusive();
    let text = r#"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } } }
layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "p" top: "s" }
layer { name: "loss" type: "Reduction" bottom: "s" top: "loss" reduction_param { operation: SUMSQ } loss_weight: 1 }
"#;
    let mut n = net(text);
    assert_eq!(n.layer_blobs("p").unwrap()[0].size(), vec![2, 3]);
    assert_eq!(
        n.layer_blobs("p").unwrap()[0].abs().sum(Kind::Float).double_value(&[]),
        0.0,
        "Caffe's Parameter blob starts at zero"
    );
    let x = Tensor::from_slice(&[1f32, -2., 3., 0.5, 0., 4.]).reshape([2, 3]);
    n.set_input("data", &x).unwrap();
    let loss = n.forward().unwrap();
    assert!((loss - (1. + 4. + 9. + 0.25 + 16.)).abs() < 1e-5, "loss {loss}");
    n.backward().unwrap();
    // d/dp Σ(x + p)² = 2(x + p) = 2x at p = 0.
    let diff = &n.learnable_params()[0].diff();
    assert_shaped_values("parameter diff", diff, &[2., -4., 6., 1., 0., 8.], &[2, 3]);
}

#[test]
fn parameter_gradient_check() {
    let _rng = rng_exclusive();
    gradcheck(r#"type: "Parameter" parameter_param { shape { dim: 3 dim: 2 } }"#, &[], &[]);
}

// ---- Bias ----

#[test]
fn bias_broadcasts_along_axis() {
    let _rng = rng_exclusive();
    let x = t(&(0..12).map(|v| v as f64).collect::<Vec<_>>(), &[2, 3, 2]);
    // Learned bias over the channel axis (default axis 1, num_axes 1).
    let b = t(&[100., 200., 300.], &[3]);
    let (setup, tops) = run(r#"type: "Bias""#, &[x.shallow_clone()], &[b]);
    assert_eq!(setup.params[0].shape, vec![3]);
    assert_eq!(setup.params[0].filler.r#type(), "constant");
    assert_eq!(setup.params[0].filler.value(), 0.0);
    assert_shaped_values(
        "bias axis 1",
        &tops[0],
        &[100., 101., 202., 203., 304., 305., 106., 107., 208., 209., 310., 311.],
        &[2, 3, 2],
    );
    // Second-bottom bias over axes 0..2.
    let b = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let (setup, tops) = run(r#"type: "Bias" bias_param { axis: 0 }"#, &[x.shallow_clone(), b], &[]);
    assert!(setup.params.is_empty());
    assert_shaped_values(
        "bias two bottoms",
        &tops[0],
        &[1., 2., 4., 5., 7., 8., 10., 11., 13., 14., 16., 17.],
        &[2, 3, 2],
    );
    // num_axes 0: a scalar bias.
    let (setup, tops) = run(r#"type: "Bias" bias_param { num_axes: 0 }"#, &[x], &[t(&[0.5], &[])]);
    assert_eq!(setup.params[0].shape, Vec::<i64>::new());
    assert_eq!(tops[0].double_value(&[1, 2, 1]), 11.5);
}

#[test]
fn bias_shape_errors() {
    let _rng = rng_exclusive();
    let e = setup_err(r#"type: "Bias""#, &[vec![2, 3, 4], vec![4]]);
    assert!(e.contains("dimension mismatch") && e.contains("[2, 3, 4]") && e.contains("[4]"), "{e}");
    let e = setup_err(r#"type: "Bias" bias_param { axis: 2 num_axes: 2 }"#, &[vec![2, 3, 4]]);
    assert!(e.contains("extends past"), "{e}");
    let e = setup_err(r#"type: "Bias" bias_param { num_axes: -2 }"#, &[vec![2, 3]]);
    assert!(e.contains("num_axes"), "{e}");
}

#[test]
fn bias_gradient_check() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 2], 3);
    gradcheck(r#"type: "Bias" bias_param { axis: 1 num_axes: -1 }"#, &[x.shallow_clone()], &[]);
    gradcheck(r#"type: "Bias" bias_param { axis: -1 }"#, &[x.shallow_clone(), randn(&[2], 4)], &[]);
    gradcheck(r#"type: "Bias""#, &[x, randn(&[3], 5)], &[]);
}

// ---- Scale ----

#[test]
fn scale_broadcasts_with_axis_and_num_axes() {
    let _rng = rng_exclusive();
    let x = t(&(1..=12).map(|v| v as f64).collect::<Vec<_>>(), &[2, 3, 2]);
    // axis 1, num_axes -1: one factor per (c, w).
    let s = t(&[1., 2., 3., 4., 5., 6.], &[3, 2]);
    let (setup, tops) = run(r#"type: "Scale" scale_param { num_axes: -1 }"#, &[x.shallow_clone()], &[s]);
    assert_eq!(setup.params[0].shape, vec![3, 2]);
    assert_eq!(
        (setup.params[0].filler.r#type(), setup.params[0].filler.value()),
        ("constant", 1.0),
        "default scale filler"
    );
    assert_shaped_values("scale c,w", &tops[0], &[1., 4., 9., 16., 25., 36., 7., 16., 27., 40., 55., 72.], &[2, 3, 2]);
    // axis -1 (last), learned scale and bias: blobs scale then bias.
    let (setup, tops) = run(
        r#"type: "Scale" scale_param { axis: -1 bias_term: true bias_filler { type: "constant" value: 3 } }"#,
        &[x.shallow_clone()],
        &[t(&[10., -1.], &[2]), t(&[0.5, 1.], &[2])],
    );
    let shapes: Vec<Shape> = setup.params.iter().map(|p| p.shape.clone()).collect();
    assert_eq!(shapes, vec![vec![2], vec![2]]);
    assert_eq!(setup.params[1].filler.value(), 3.0);
    assert_shaped_values(
        "scale last axis + bias",
        &tops[0],
        &[10.5, -1., 30.5, -3., 50.5, -5., 70.5, -7., 90.5, -9., 110.5, -11.],
        &[2, 3, 2],
    );
    // Two bottoms, axis 0: bottom[1] is the scale [2, 3]; the bias is the only blob, with its shape.
    let s = t(&[1., 0., -1., 2., 3., 0.5], &[2, 3]);
    let (setup, tops) = run(
        r#"type: "Scale" scale_param { axis: 0 bias_term: true }"#,
        &[x.shallow_clone(), s],
        &[t(&[0., 0., 0., 0., 0., 1.], &[2, 3])],
    );
    assert_eq!(setup.params.len(), 1);
    assert_eq!(setup.params[0].shape, vec![2, 3]);
    assert_shaped_values(
        "scale two bottoms",
        &tops[0],
        &[1., 2., 0., 0., -5., -6., 14., 16., 27., 30., 6.5, 7.],
        &[2, 3, 2],
    );
    // A scalar second bottom applies everywhere, whatever the axis says.
    let (_, tops) = run(r#"type: "Scale" scale_param { axis: 2 }"#, &[x, t(&[2.], &[])], &[]);
    assert_eq!(tops[0].double_value(&[1, 2, 1]), 24.0);
}

#[test]
fn scale_shape_errors() {
    let _rng = rng_exclusive();
    let e = setup_err(r#"type: "Scale""#, &[vec![2, 3, 4], vec![4]]);
    assert!(e.contains("dimension mismatch") && e.contains("axis 1 (3)"), "{e}");
    let e = setup_err(r#"type: "Scale" scale_param { axis: 3 }"#, &[vec![2, 3, 4]]);
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn scale_gradient_check() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 2, 2], 6);
    gradcheck(r#"type: "Scale" scale_param { bias_term: true }"#, &[x.shallow_clone()], &[]);
    gradcheck(
        r#"type: "Scale" scale_param { axis: 1 num_axes: 2 filler { type: "gaussian" } }"#,
        &[x.shallow_clone()],
        &[],
    );
    gradcheck(r#"type: "Scale" scale_param { num_axes: 0 bias_term: true }"#, &[x.shallow_clone()], &[]);
    gradcheck(r#"type: "Scale" scale_param { axis: 0 bias_term: true }"#, &[x.shallow_clone(), randn(&[2, 3], 7)], &[]);
    gradcheck(r#"type: "Scale""#, &[x, randn(&[], 8)], &[]);
}

// ---- resnet_small: Scale, Eltwise, Softmax against BVLC Caffe ----

fn resnet(rel: &str) -> Tensor {
    read_npy(&caffe_ref(&format!("fixtures/resnet_small/{rel}.npy"))).to_kind(Kind::Double)
}

#[test]
fn scale_matches_caffe_resnet() {
    let _rng = rng_exclusive();
    // res2a_conv2 → BatchNorm (global stats) → Scale, all in place: redo the
    // conv and BatchNorm here, then compare Scale's output with Caffe's blob.
    let x = resnet("blobs/res2a_conv1");
    let conv = x.conv2d(&resnet("params/res2a_conv2_0"), None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    let factor = resnet("params/res2a_conv2_bn_2").double_value(&[0]);
    let mean = resnet("params/res2a_conv2_bn_0") / factor;
    let var = resnet("params/res2a_conv2_bn_1") / factor;
    let bn = (conv - mean.reshape([1, -1, 1, 1])) / (var.reshape([1, -1, 1, 1]) + 1e-5).sqrt();
    let text = r#"type: "Scale" scale_param { bias_term: true }"#;
    let (_, tops) = run(text, &[bn], &[resnet("params/res2a_conv2_scale_0"), resnet("params/res2a_conv2_scale_1")]);
    assert_close("res2a_conv2 (Scale)", &tops[0], &resnet("blobs/res2a_conv2"), 1e-4);
}

#[test]
fn eltwise_sum_matches_caffe_resnet() {
    let _rng = rng_exclusive();
    // res2a_sum = Eltwise SUM(res2a_conv2, conv1), then ReLU in place.
    let (_, tops) = run(
        r#"type: "Eltwise" eltwise_param { operation: SUM }"#,
        &[resnet("blobs/res2a_conv2"), resnet("blobs/conv1")],
        &[],
    );
    assert_close("res2a_sum", &tops[0].relu(), &resnet("blobs/res2a_sum"), 1e-4);
}

#[test]
fn softmax_matches_caffe_resnet() {
    let _rng = rng_exclusive();
    let (_, tops) = run(r#"type: "Softmax""#, &[resnet("blobs/fc")], &[]);
    assert_close("prob", &tops[0], &resnet("blobs/prob"), 1e-4);
}

// ---- Eltwise ----

#[test]
fn eltwise_sum_with_coeff_and_prod() {
    let _rng = rng_exclusive();
    let a = t(&[1., 2., 3.], &[3]);
    let b = t(&[10., 20., 30.], &[3]);
    let c = t(&[0., -1., 4.], &[3]);
    let (_, tops) = run(
        r#"type: "Eltwise" eltwise_param { coeff: 1 coeff: -0.5 coeff: 2 }"#,
        &[a.shallow_clone(), b.shallow_clone(), c.shallow_clone()],
        &[],
    );
    assert_shaped_values("sum coeff", &tops[0], &[-4., -10., -4.], &[3]);
    let (_, tops) = run(r#"type: "Eltwise" eltwise_param { operation: PROD }"#, &[a, b, c], &[]);
    assert_shaped_values("prod", &tops[0], &[0., -40., 360.], &[3]);
}

#[test]
fn eltwise_prod_gradient_is_exact_with_zeros() {
    let _rng = rng_exclusive();
    // d(abc)/da = bc even where a (or another bottom) is zero.
    let a = t(&[0., 2., 3., 0.], &[4]);
    let b = t(&[5., 0., 7., 0.], &[4]);
    let c = t(&[2., 3., 0.5, 4.], &[4]);
    let g = t(&[1., 1., 1., 1.], &[4]);
    let grads = bottom_grads(r#"type: "Eltwise" eltwise_param { operation: PROD }"#, &[a, b, c], &g);
    assert_shaped_values("d/da", &grads[0], &[10., 0., 3.5, 0.], &[4]);
    assert_shaped_values("d/db", &grads[1], &[0., 6., 1.5, 0.], &[4]);
    assert_shaped_values("d/dc", &grads[2], &[0., 0., 21., 0.], &[4]);
    gradcheck(
        r#"type: "Eltwise" eltwise_param { operation: PROD }"#,
        &[t(&[0., 1.5, -2., 0.], &[2, 2]), t(&[3., 0., 1., 0.], &[2, 2]), randn(&[2, 2], 9)],
        &[],
    );
}

#[test]
fn eltwise_max_routes_gradient_like_caffe() {
    let _rng = rng_exclusive();
    // Caffe: bottom[0] beats bottom[1] only when strictly greater (a tie goes
    // to bottom[1]); later bottoms must be strictly greater than the running max.
    let a = t(&[1., 2., 0., 5., 1.], &[5]);
    let b = t(&[1., 1., 3., 1., 1.], &[5]);
    let c = t(&[0., 2., 3., 6., 1.], &[5]);
    let text = r#"type: "Eltwise" eltwise_param { operation: MAX }"#;
    let (_, tops) = run(text, &[a.shallow_clone(), b.shallow_clone(), c.shallow_clone()], &[]);
    assert_shaped_values("max", &tops[0], &[1., 2., 3., 6., 1.], &[5]);
    let g = t(&[1., 2., 3., 4., 5.], &[5]);
    let grads = bottom_grads(text, &[a, b, c], &g);
    assert_shaped_values("d/da", &grads[0], &[0., 2., 0., 0., 0.], &[5]);
    assert_shaped_values("d/db", &grads[1], &[1., 0., 3., 0., 5.], &[5]);
    assert_shaped_values("d/dc", &grads[2], &[0., 0., 0., 4., 0.], &[5]);
}

#[test]
fn eltwise_errors() {
    let _rng = rng_exclusive();
    let e = setup_err(r#"type: "Eltwise""#, &[vec![2, 3], vec![2, 4]]);
    assert!(e.contains("[2, 3]") && e.contains("bottom[1] is [2, 4]"), "{e}");
    let e = setup_err(r#"type: "Eltwise" eltwise_param { coeff: 1 }"#, &[vec![2], vec![2]]);
    assert!(e.contains("one coefficient per bottom"), "{e}");
    let e = setup_err(r#"type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 1 }"#, &[vec![2], vec![2]]);
    assert!(e.contains("only takes coefficients for summation"), "{e}");
    let e = setup_err(r#"type: "Eltwise""#, &[vec![2]]);
    assert!(e.contains("bottom"), "{e}");
}

#[test]
fn eltwise_gradient_checks() {
    let _rng = rng_exclusive();
    let bottoms = [randn(&[2, 3, 2], 10), randn(&[2, 3, 2], 11), randn(&[2, 3, 2], 12)];
    gradcheck(r#"type: "Eltwise" eltwise_param { coeff: 0.5 coeff: -2 coeff: 1 }"#, &bottoms, &[]);
    gradcheck(r#"type: "Eltwise" eltwise_param { operation: PROD }"#, &bottoms, &[]);
    gradcheck(r#"type: "Eltwise" eltwise_param { operation: MAX }"#, &bottoms, &[]);
}

// ---- Softmax ----

#[test]
fn softmax_along_axis() {
    let _rng = rng_exclusive();
    let x = t(&[0., 1., 2., 3., 0., 0.], &[1, 2, 3]);
    let (_, tops) = run(r#"type: "Softmax" softmax_param { axis: -1 }"#, &[x.shallow_clone()], &[]);
    let e: Vec<f64> = [0f64, 1., 2.].iter().map(|v| v.exp() / (1f64 + 1f64.exp() + 2f64.exp())).collect();
    let u = 3f64.exp() + 2.;
    assert_shaped_values("softmax last", &tops[0], &[e[0], e[1], e[2], 3f64.exp() / u, 1. / u, 1. / u], &[1, 2, 3]);
    let (_, tops) = run(r#"type: "Softmax""#, &[x], &[]);
    let s = |a: f64, b: f64| a.exp() / (a.exp() + b.exp());
    assert_shaped_values(
        "softmax axis 1",
        &tops[0],
        &[s(0., 3.), s(1., 0.), s(2., 0.), s(3., 0.), s(0., 1.), s(0., 2.)],
        &[1, 2, 3],
    );
    gradcheck(r#"type: "Softmax""#, &[randn(&[2, 3, 2], 13)], &[]);
    gradcheck(r#"type: "Softmax" softmax_param { axis: 0 }"#, &[randn(&[2, 3], 14)], &[]);
}

// ---- ArgMax ----

#[test]
fn argmax_without_axis_uses_caffe_layout() {
    let _rng = rng_exclusive();
    let x = t(&[0.1, 0.9, 0.3, 0.9, 0.2, 5., 4., 3., 2., 1.], &[2, 5]);
    // Ties go to the higher index, as Caffe's greater<pair<value, index>>.
    let (setup, tops) = run(r#"type: "ArgMax""#, &[x.shallow_clone()], &[]);
    assert_eq!(setup.tops, vec![vec![2, 1, 1]]);
    assert_shaped_values("argmax", &tops[0], &[3., 0.], &[2, 1, 1]);
    let (setup, tops) = run(r#"type: "ArgMax" argmax_param { top_k: 3 out_max_val: true }"#, &[x], &[]);
    assert_eq!(setup.tops, vec![vec![2, 2, 3]]);
    assert_shaped_values(
        "argmax top3 + values",
        &tops[0],
        &[3., 1., 2., 0.9, 0.9, 0.3, 0., 1., 2., 5., 4., 3.],
        &[2, 2, 3],
    );
    // A 4-D bottom: (N, 1, top_k, 1), over the flattened item.
    let x = t(&[1., 7., 3., 2., 9., 0., 4., 8.], &[2, 2, 2, 1]);
    let (setup, tops) = run(r#"type: "ArgMax" argmax_param { top_k: 2 }"#, &[x], &[]);
    assert_eq!(setup.tops, vec![vec![2, 1, 2, 1]]);
    assert_shaped_values("argmax 4-D", &tops[0], &[1., 2., 0., 3.], &[2, 1, 2, 1]);
}

#[test]
fn argmax_along_axis() {
    let _rng = rng_exclusive();
    // [2, 3, 2]: along axis 1, per (n, w).
    let x = t(&[1., 6., 5., 2., 3., 4., 0., 0., 9., 1., 9., 2.], &[2, 3, 2]);
    let (setup, tops) = run(r#"type: "ArgMax" argmax_param { axis: 1 top_k: 2 }"#, &[x.shallow_clone()], &[]);
    assert_eq!(setup.tops, vec![vec![2, 2, 2]]);
    assert_shaped_values("argmax axis 1", &tops[0], &[1., 0., 2., 2., 2., 2., 1., 1.], &[2, 2, 2]);
    let (_, tops) = run(r#"type: "ArgMax" argmax_param { axis: -2 out_max_val: true }"#, &[x], &[]);
    assert_shaped_values("max along axis 1", &tops[0], &[5., 6., 9., 2.], &[2, 1, 2]);
}

#[test]
fn argmax_errors_and_no_gradient() {
    let _rng = rng_exclusive();
    let e = setup_err(r#"type: "ArgMax" argmax_param { top_k: 6 }"#, &[vec![2, 5]]);
    assert!(e.contains("top_k (6)") && e.contains("(5)"), "{e}");
    let e = setup_err(r#"type: "ArgMax" argmax_param { axis: 1 top_k: 4 }"#, &[vec![2, 3, 5]]);
    assert!(e.contains("dimension of the axis"), "{e}");
    let x = randn(&[2, 3], 15).set_requires_grad(true);
    let (_, tops) = run(r#"type: "ArgMax" argmax_param { out_max_val: true }"#, &[x], &[]);
    assert!(!tops[0].requires_grad(), "ArgMax has no backward in Caffe");
}

// ---- Reduction ----

#[test]
fn reduction_operations() {
    let _rng = rng_exclusive();
    let x = t(&[1., -2., 3., -4., 5., 0.], &[2, 3]);
    let (setup, tops) = run(r#"type: "Reduction""#, &[x.shallow_clone()], &[]);
    assert_eq!(setup.tops, vec![Vec::<i64>::new()]);
    assert_shaped_values("sum", &tops[0], &[3.], &[]);
    let (_, tops) =
        run(r#"type: "Reduction" reduction_param { operation: ASUM axis: 1 coeff: 2 }"#, &[x.shallow_clone()], &[]);
    assert_shaped_values("asum", &tops[0], &[12., 18.], &[2]);
    let (_, tops) =
        run(r#"type: "Reduction" reduction_param { operation: SUMSQ axis: -1 }"#, &[x.shallow_clone()], &[]);
    assert_shaped_values("sumsq", &tops[0], &[14., 41.], &[2]);
    let (_, tops) = run(r#"type: "Reduction" reduction_param { operation: MEAN axis: 1 coeff: -3 }"#, &[x], &[]);
    assert_shaped_values("mean", &tops[0], &[-2., -1.], &[2]);
    let x = randn(&[2, 3, 2], 16);
    for op in ["SUM", "ASUM", "SUMSQ", "MEAN"] {
        for axis in [0, 1, 2] {
            gradcheck(
                &format!(r#"type: "Reduction" reduction_param {{ operation: {op} axis: {axis} coeff: 1.5 }}"#),
                &[x.shallow_clone()],
                &[],
            );
        }
    }
}

// ---- Concat ----

#[test]
fn concat_along_axis_and_legacy_dim() {
    let _rng = rng_exclusive();
    let a = t(&[1., 2., 3., 4.], &[2, 1, 2]);
    let b = t(&[5., 6., 7., 8., 9., 10., 11., 12.], &[2, 2, 2]);
    let (setup, tops) = run(r#"type: "Concat""#, &[a.shallow_clone(), b.shallow_clone()], &[]);
    assert_eq!(setup.tops, vec![vec![2, 3, 2]]);
    assert_shaped_values("concat axis 1", &tops[0], &[1., 2., 5., 6., 7., 8., 3., 4., 9., 10., 11., 12.], &[2, 3, 2]);
    let (_, tops) =
        run(r#"type: "Concat" concat_param { concat_dim: 0 }"#, &[a.shallow_clone(), a.shallow_clone()], &[]);
    assert_shaped_values("concat_dim 0", &tops[0], &[1., 2., 3., 4., 1., 2., 3., 4.], &[4, 1, 2]);
    let (_, tops) = run(r#"type: "Concat" concat_param { axis: -1 }"#, &[a.shallow_clone(), a], &[]);
    assert_shaped_values("concat axis -1", &tops[0], &[1., 2., 1., 2., 3., 4., 3., 4.], &[2, 1, 4]);
    gradcheck(r#"type: "Concat""#, &[randn(&[2, 1, 3], 17), randn(&[2, 2, 3], 18), randn(&[2, 3, 3], 19)], &[]);
}

#[test]
fn concat_errors_name_the_axis_and_shapes() {
    let _rng = rng_exclusive();
    let e = setup_err(r#"type: "Concat""#, &[vec![2, 3, 4], vec![2, 5, 6]]);
    assert!(
        e.contains("concat axis 1") && e.contains("[2, 3, 4]") && e.contains("[2, 5, 6]") && e.contains("at axis 2"),
        "{e}"
    );
    let e = setup_err(r#"type: "Concat""#, &[vec![2, 3], vec![2, 3, 1]]);
    assert!(e.contains("#axes"), "{e}");
    let e = setup_err(r#"type: "Concat" concat_param { axis: 1 concat_dim: 1 }"#, &[vec![2, 3]]);
    assert!(e.contains("not both"), "{e}");
    let e = setup_err(r#"type: "Concat" concat_param { concat_dim: 2 }"#, &[vec![2, 3], vec![2, 3]]);
    assert!(e.contains("concat_dim 2 out of range"), "{e}");
}

// ---- Slice ----

#[test]
fn slice_points_and_equal_split() {
    let _rng = rng_exclusive();
    let x = t(&(0..8).map(|v| v as f64).collect::<Vec<_>>(), &[2, 4]);
    let (setup, tops) = run(
        r#"type: "Slice" top: "a" top: "b" top: "c" slice_param { slice_point: 1 slice_point: 3 }"#,
        &[x.shallow_clone()],
        &[],
    );
    assert_eq!(setup.tops, vec![vec![2, 1], vec![2, 2], vec![2, 1]]);
    assert_shaped_values("a", &tops[0], &[0., 4.], &[2, 1]);
    assert_shaped_values("b", &tops[1], &[1., 2., 5., 6.], &[2, 2]);
    assert_shaped_values("c", &tops[2], &[3., 7.], &[2, 1]);
    let (_, tops) = run(r#"type: "Slice" top: "a" top: "b" slice_param { axis: -1 }"#, &[x.shallow_clone()], &[]);
    assert_shaped_values("equal a", &tops[0], &[0., 1., 4., 5.], &[2, 2]);
    assert_shaped_values("equal b", &tops[1], &[2., 3., 6., 7.], &[2, 2]);
    let (_, tops) = run(r#"type: "Slice" top: "a" top: "b" slice_param { slice_dim: 0 }"#, &[x.shallow_clone()], &[]);
    assert_shaped_values("slice_dim 0", &tops[1], &[4., 5., 6., 7.], &[1, 4]);
    // A last point at the end leaves an empty last top, as Caffe allows.
    let (setup, _) = run(r#"type: "Slice" top: "a" top: "b" slice_param { slice_point: 4 }"#, &[x], &[]);
    assert_eq!(setup.tops, vec![vec![2, 4], vec![2, 0]]);
    gradcheck(
        r#"type: "Slice" top: "a" top: "b" top: "c" slice_param { axis: 1 slice_point: 2 slice_point: 3 }"#,
        &[randn(&[2, 5, 2], 20)],
        &[],
    );
}

#[test]
fn slice_errors() {
    let _rng = rng_exclusive();
    let two = r#"type: "Slice" top: "a" top: "b" top: "c""#;
    let e = setup_err(two, &[vec![2, 4]]);
    assert!(e.contains("(3) should evenly divide input slice axis (4"), "{e}");
    let e = setup_err(&format!("{two} slice_param {{ slice_point: 2 }}"), &[vec![2, 4]]);
    assert!(e.contains("1 slice_point(s) given for 3 tops"), "{e}");
    let e = setup_err(&format!("{two} slice_param {{ slice_point: 2 slice_point: 2 }}"), &[vec![2, 4]]);
    assert!(e.contains("strictly increasing"), "{e}");
    let e = setup_err(&format!("{two} slice_param {{ slice_point: 1 slice_point: 5 }}"), &[vec![2, 4]]);
    assert!(e.contains("past the end"), "{e}");
    let e = setup_err(&format!("{two} slice_param {{ axis: 0 slice_dim: 0 }}"), &[vec![2, 4]]);
    assert!(e.contains("not both"), "{e}");
}

// ---- Flatten, Reshape ----

#[test]
fn flatten_shapes() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 4, 5], 21);
    let shape_of = |text: &str| run(text, &[x.shallow_clone()], &[]).1[0].size();
    assert_eq!(shape_of(r#"type: "Flatten""#), vec![2, 60]);
    assert_eq!(shape_of(r#"type: "Flatten" flatten_param { axis: 1 end_axis: 2 }"#), vec![2, 12, 5]);
    assert_eq!(shape_of(r#"type: "Flatten" flatten_param { axis: -2 }"#), vec![2, 3, 20]);
    assert_eq!(shape_of(r#"type: "Flatten" flatten_param { axis: 0 }"#), vec![120]);
    let e = setup_err(r#"type: "Flatten" bottom: "x" top: "x""#, &[vec![2, 3]]);
    assert!(e.contains("in-place"), "{e}");
    let e = setup_err(r#"type: "Flatten" flatten_param { axis: 3 end_axis: 1 }"#, &[vec![2, 3, 4, 5]]);
    assert!(e.contains("before axis"), "{e}");
    gradcheck(r#"type: "Flatten" flatten_param { axis: 1 end_axis: 2 }"#, &[randn(&[2, 2, 3, 2], 22)], &[]);
}

#[test]
fn reshape_infers_and_copies_dims() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 4, 5], 23);
    let shape_of = |text: &str| {
        let (setup, tops) = run(text, &[x.shallow_clone()], &[]);
        assert_eq!(setup.tops[0], tops[0].size());
        tops[0].size()
    };
    assert_eq!(shape_of(r#"type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }"#), vec![2, 60]);
    assert_eq!(
        shape_of(r#"type: "Reshape" reshape_param { shape { dim: 0 dim: 0 dim: -1 dim: 2 } }"#),
        vec![2, 3, 10, 2]
    );
    assert_eq!(shape_of(r#"type: "Reshape" reshape_param { shape { dim: -1 dim: 4 dim: 5 } }"#), vec![6, 4, 5]);
    // Replace axes 1..3 only; the 0 copies bottom axis 1 (start + position).
    assert_eq!(
        shape_of(r#"type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } axis: 1 num_axes: 2 }"#),
        vec![2, 3, 4, 5]
    );
    assert_eq!(shape_of(r#"type: "Reshape" reshape_param { shape { dim: -1 } axis: 1 num_axes: 2 }"#), vec![2, 12, 5]);
    // axis -1 with num_axes 0 appends axes; axis 0 num_axes 0 prepends.
    assert_eq!(
        shape_of(r#"type: "Reshape" reshape_param { shape { dim: 1 } axis: -1 num_axes: 0 }"#),
        vec![2, 3, 4, 5, 1]
    );
    assert_eq!(
        shape_of(r#"type: "Reshape" reshape_param { shape { dim: 1 dim: 1 } axis: 0 num_axes: 0 }"#),
        vec![1, 1, 2, 3, 4, 5]
    );
    assert_eq!(shape_of(r#"type: "Reshape" reshape_param { shape { dim: -1 } axis: -3 }"#), vec![2, 3, 20]);
    // Values are row-major order, untouched.
    let (_, tops) = run(r#"type: "Reshape" reshape_param { shape { dim: -1 } }"#, &[x.shallow_clone()], &[]);
    assert_eq!((tops[0].view([2, 3, 4, 5]) - &x).abs().max().double_value(&[]), 0.0);
}

#[test]
fn reshape_follows_a_new_batch_size() {
    let _rng = rng_exclusive();
    let p = lp(r#"type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }"#);
    let mut layer = create_layer(&p).unwrap();
    assert_eq!(layer.setup(&[vec![2, 3, 4]]).unwrap().tops, vec![vec![2, 12]]);
    let tops = layer.forward(&ctx(Phase::Test), &[randn(&[5, 3, 4], 24)], &[]).unwrap();
    assert_eq!(tops[0].size(), vec![5, 12]);
}

#[test]
fn reshape_errors() {
    let _rng = rng_exclusive();
    let e = setup_err(r#"type: "Reshape" reshape_param { shape { dim: -1 dim: -1 } }"#, &[vec![2, 3]]);
    assert!(e.contains("multiple -1"), "{e}");
    let e = setup_err(r#"type: "Reshape" reshape_param { shape { dim: 0 dim: 0 dim: 0 } }"#, &[vec![2, 3]]);
    assert!(e.contains("no corresponding bottom axis"), "{e}");
    let e = setup_err(r#"type: "Reshape" reshape_param { shape { dim: 4 dim: -1 } }"#, &[vec![2, 3]]);
    assert!(e.contains("divisible") && e.contains("(4)"), "{e}");
    let e = setup_err(r#"type: "Reshape" reshape_param { shape { dim: 4 dim: 2 } }"#, &[vec![2, 3]]);
    assert!(e.contains("output count must match input count"), "{e}");
    let e = setup_err(r#"type: "Reshape" reshape_param { shape { dim: -1 } axis: 3 }"#, &[vec![2, 3]]);
    assert!(e.contains("out of range"), "{e}");
    let e = setup_err(r#"type: "Reshape" reshape_param { shape { dim: -1 } axis: 1 num_axes: 2 }"#, &[vec![2, 3]]);
    assert!(e.contains("end_axis"), "{e}");
    let e = setup_err(r#"type: "Reshape" bottom: "x" top: "x" reshape_param { shape { dim: -1 } }"#, &[vec![2, 3]]);
    assert!(e.contains("in-place"), "{e}");
}

#[test]
fn reshape_gradient_check() {
    let _rng = rng_exclusive();
    gradcheck(r#"type: "Reshape" reshape_param { shape { dim: 0 dim: 2 dim: -1 } }"#, &[randn(&[2, 3, 4], 25)], &[]);
}

// ---- Tile ----

#[test]
fn tile_repeats_the_trailing_block() {
    let _rng = rng_exclusive();
    let x = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let (setup, tops) = run(r#"type: "Tile" tile_param { tiles: 2 }"#, &[x.shallow_clone()], &[]);
    assert_eq!(setup.tops, vec![vec![2, 6]]);
    assert_shaped_values("tile axis 1", &tops[0], &[1., 2., 3., 1., 2., 3., 4., 5., 6., 4., 5., 6.], &[2, 6]);
    let (_, tops) = run(r#"type: "Tile" tile_param { axis: 0 tiles: 2 }"#, &[x], &[]);
    assert_shaped_values("tile axis 0", &tops[0], &[1., 2., 3., 4., 5., 6., 1., 2., 3., 4., 5., 6.], &[4, 3]);
    let e = setup_err(r#"type: "Tile" tile_param { tiles: 0 }"#, &[vec![2]]);
    assert!(e.contains("positive"), "{e}");
    let e = setup_err(r#"type: "Tile""#, &[vec![2]]);
    assert!(e.contains("must be specified"), "{e}");
    gradcheck(r#"type: "Tile" tile_param { axis: 1 tiles: 3 }"#, &[randn(&[2, 2, 2], 26)], &[]);
}

// ---- Silence ----

#[test]
fn silence_consumes_blobs() {
    let _rng = rng_exclusive();
    let n = net(r#"
layer { name: "data" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 } } }
layer { name: "quiet" type: "Silence" bottom: "a" }
"#);
    assert_eq!(n.output_blob_names(), vec!["b"]);
    let (setup, tops) = run(r#"type: "Silence""#, &[randn(&[2], 27), randn(&[3], 28)], &[]);
    assert!(setup.tops.is_empty() && tops.is_empty());
}

// ---- Filter ----

const FILTER: &str = r#"type: "Filter" top: "fx" top: "fy""#;

#[test]
fn filter_keeps_selected_items() {
    let _rng = rng_exclusive();
    let x = t(&[0., 1., 10., 11., 20., 21., 30., 31.], &[4, 2]);
    let y = t(&[5., 6., 7., 8.], &[4]);
    let sel = t(&[0., 1., 0., 2.], &[4, 1]);
    let (setup, tops) = run(FILTER, &[x.shallow_clone(), y.shallow_clone(), sel], &[]);
    // Setup declares the bottoms' shapes: the kept count is only known from data.
    assert_eq!(setup.tops, vec![vec![4, 2], vec![4]]);
    assert_shaped_values("fx", &tops[0], &[10., 11., 30., 31.], &[2, 2]);
    assert_shaped_values("fy", &tops[1], &[6., 8.], &[2]);
    let (_, tops) = run(FILTER, &[x, y, t(&[0., 0., 0., 0.], &[4])], &[]);
    assert_eq!(tops[0].size(), vec![0, 2]);
    assert_eq!(tops[1].size(), vec![0]);
}

#[test]
fn filter_gradient_goes_to_kept_items_only() {
    let _rng = rng_exclusive();
    let x = randn(&[4, 3], 29);
    let sel = t(&[1., 0., 1., 0.], &[4]);
    let g = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let grads = bottom_grads(r#"type: "Filter""#, &[x.shallow_clone(), sel.shallow_clone()], &g);
    assert_shaped_values("dx", &grads[0], &[1., 2., 3., 0., 0., 0., 4., 5., 6., 0., 0., 0.], &[4, 3]);
    gradcheck(FILTER, &[x, randn(&[4, 2, 2], 30), sel], &[2]);
}

#[test]
fn filter_errors() {
    let _rng = rng_exclusive();
    let e = setup_err(r#"type: "Filter""#, &[vec![4, 2], vec![4, 2]]);
    assert!(e.contains("must be singletons"), "{e}");
    let e = setup_err(r#"type: "Filter""#, &[vec![3, 2], vec![4, 1]]);
    assert!(e.contains("same 0th dimension") && e.contains("[3, 2]"), "{e}");
}

#[test]
fn filter_in_a_net_has_a_data_dependent_shape() {
    let _rng = rng_exclusive();
    let mut n = net(r#"
layer { name: "data" type: "Input" top: "x" top: "sel" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "filter" type: "Filter" bottom: "x" bottom: "sel" top: "fx" }
layer { name: "loss" type: "Reduction" bottom: "fx" top: "loss" reduction_param { operation: SUMSQ } loss_weight: 1 }
"#);
    assert_eq!(n.blob_shape("fx").unwrap(), &vec![4, 3]);
    let x = Tensor::from_slice(&[1f32, 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4.]).reshape([4, 3]);
    n.set_input("x", &x).unwrap();
    n.set_input("sel", &Tensor::from_slice(&[0f32, 1., 1., 0.])).unwrap();
    let loss = n.forward().unwrap();
    assert_eq!(n.blob("fx").unwrap().size(), vec![2, 3]);
    assert!((loss - (12. + 27.)).abs() < 1e-5, "loss {loss}");
}

// ---- BatchReindex ----

const REINDEX: &str = r#"type: "BatchReindex""#;

#[test]
fn batch_reindex_gathers_items() {
    let _rng = rng_exclusive();
    let x = t(&[0., 1., 10., 11., 20., 21.], &[3, 2]);
    let idx = t(&[2., 0., 2., 1.], &[4]);
    let (setup, tops) = run(REINDEX, &[x.shallow_clone(), idx.shallow_clone()], &[]);
    assert_eq!(setup.tops, vec![vec![4, 2]]);
    assert_shaped_values("reindex", &tops[0], &[20., 21., 0., 1., 20., 21., 10., 11.], &[4, 2]);
    // Repeated indices accumulate, as Caffe's backward does.
    let g = t(&[1., 1., 2., 2., 3., 3., 4., 4.], &[4, 2]);
    let grads = bottom_grads(REINDEX, &[x.shallow_clone(), idx.shallow_clone()], &g);
    assert_shaped_values("dx", &grads[0], &[2., 2., 4., 4., 4., 4.], &[3, 2]);
    gradcheck(REINDEX, &[randn(&[3, 2, 2], 31), idx], &[1]);
}

#[test]
fn batch_reindex_errors() {
    let _rng = rng_exclusive();
    let x = t(&[0., 1., 2.], &[3]);
    let e = forward_err(REINDEX, &[x.shallow_clone(), t(&[0., 3.], &[2])], &[]);
    assert!(e.contains("index 3 is out of range [0, 3)"), "{e}");
    let e = forward_err(REINDEX, &[x, t(&[-1.], &[1])], &[]);
    assert!(e.contains("out of range"), "{e}");
    let e = setup_err(REINDEX, &[vec![3], vec![2, 1]]);
    assert!(e.contains("must be 1-D"), "{e}");
}

// ---- ShuffleChannel (ShuffleNet's fork) ----

#[test]
fn shuffle_channel_interleaves_groups() {
    let _rng = rng_exclusive();
    // Six channels in 2 groups [0 1 2 | 3 4 5] become 0 3 1 4 2 5; in 3 groups
    // [0 1 | 2 3 | 4 5] they become 0 2 4 1 3 5.
    let x = Tensor::arange(6, (Kind::Double, Device::Cpu)).reshape([1, 6, 1, 1]).repeat([2, 1, 1, 2]);
    for (group, order) in [(2, [0., 3., 1., 4., 2., 5.]), (3, [0., 2., 4., 1., 3., 5.]), (1, [0., 1., 2., 3., 4., 5.])]
    {
        let text = format!(r#"type: "ShuffleChannel" shuffle_channel_param {{ group: {group} }}"#);
        let (_, tops) = run(&text, &[x.shallow_clone()], &[]);
        let want: Vec<f64> = (0..2).flat_map(|_| order.iter().flat_map(|&c| [c, c])).collect();
        assert_shaped_values(&format!("group {group}"), &tops[0], &want, &[2, 6, 1, 2]);
    }
    gradcheck(r#"type: "ShuffleChannel" shuffle_channel_param { group: 3 }"#, &[randn(&[2, 6, 2, 2], 32)], &[]);
    let e = setup_err(r#"type: "ShuffleChannel" shuffle_channel_param { group: 4 }"#, &[vec![1, 6, 2, 2]]);
    assert!(e.contains("group 4 must divide the bottom's 6 channels"), "{e}");
    let e = setup_err(r#"type: "ShuffleChannel" shuffle_channel_param { group: 0 }"#, &[vec![1, 6, 2, 2]]);
    assert!(e.contains("group 0 must divide"), "{e}");
}

// ---- Reorg (MobileNet-YOLO's fork, darknet's reorg) ----

/// Darknet's reorg loop over a flat (n, c, h, w) array, written as darknet
/// does: the (c, h, w) index of one side and the (c/s², h·s, w·s) index of
/// the other; `forward` false is what the layer runs without `reverse`.
fn darknet_reorg(x: &[f64], n: usize, c: usize, h: usize, w: usize, s: usize, forward: bool) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    let out_c = c / (s * s);
    for b in 0..n {
        for k in 0..c {
            for j in 0..h {
                for i in 0..w {
                    let in_index = i + w * (j + h * (k + c * b));
                    let (c2, offset) = (k % out_c, k / out_c);
                    let (w2, h2) = (i * s + offset % s, j * s + offset / s);
                    let out_index = w2 + w * s * (h2 + h * s * (c2 + out_c * b));
                    if forward {
                        out[out_index] = x[in_index];
                    } else {
                        out[in_index] = x[out_index];
                    }
                }
            }
        }
    }
    out
}

#[test]
fn reorg_is_darknets_index_loop_both_ways() {
    let _rng = rng_exclusive();
    for (shape, stride) in [([2i64, 8, 4, 6], 2i64), ([1, 9, 6, 3], 3), ([1, 4, 2, 2], 1)] {
        let x = Tensor::arange(shape.iter().product::<i64>(), (Kind::Double, Device::Cpu)).reshape(shape);
        let flat: Vec<f64> = Vec::try_from(x.reshape([-1])).unwrap();
        let [n, c, h, w] = shape.map(|d| d as usize);
        let s = stride as usize;
        // Without reverse the layer runs darknet's loop with forward = 0; the
        // top is (N, C·s², H/s, W/s).
        let text = format!(r#"type: "Reorg" reorg_param {{ stride: {stride} }}"#);
        let (setup, tops) = run(&text, &[x.shallow_clone()], &[]);
        let top = [shape[0], shape[1] * stride * stride, shape[2] / stride, shape[3] / stride];
        assert_eq!(setup.tops, vec![top.to_vec()]);
        assert_shaped_values(
            &format!("{shape:?} / {stride}"),
            &tops[0],
            &darknet_reorg(&flat, n, c, h, w, s, false),
            &top,
        );
        // reverse runs it with forward = 1: (N, C/s², H·s, W·s).
        let text = format!(r#"type: "Reorg" reorg_param {{ stride: {stride} reverse: true }}"#);
        let (_, tops) = run(&text, &[x.shallow_clone()], &[]);
        let top = [shape[0], shape[1] / (stride * stride), shape[2] * stride, shape[3] * stride];
        assert_shaped_values(
            &format!("{shape:?} reversed"),
            &tops[0],
            &darknet_reorg(&flat, n, c, h, w, s, true),
            &top,
        );
    }
    // Not a plain space-to-depth: with stride 2 the first top channel holds
    // the even pixels of the first quarter of the bottom's memory.
    let x = Tensor::arange(16, (Kind::Double, Device::Cpu)).reshape([1, 4, 2, 2]);
    let (_, tops) = run(r#"type: "Reorg" reorg_param { stride: 2 }"#, &[x], &[]);
    assert_shaped_values(
        "1x4x2x2",
        &tops[0],
        &[0., 2., 8., 10., 1., 3., 9., 11., 4., 6., 12., 14., 5., 7., 13., 15.],
        &[1, 16, 1, 1],
    );
}

#[test]
fn reorg_passes_no_gradient_and_checks_its_shapes() {
    let _rng = rng_exclusive();
    // The fork's backward writes an unfilled buffer into the bottom's diff.
    let x = randn(&[1, 8, 4, 4], 5).set_requires_grad(true);
    let (_, tops) = run(r#"type: "Reorg" reorg_param { stride: 2 }"#, &[x.shallow_clone()], &[]);
    assert!(!tops[0].requires_grad(), "no gradient reaches the bottom");
    let e = setup_err(r#"type: "Reorg" reorg_param { stride: 2 }"#, &[vec![1, 6, 4, 4]]);
    assert!(e.contains("6 channels must be a multiple of stride² = 4"), "{e}");
    let e = setup_err(r#"type: "Reorg" reorg_param { stride: 2 }"#, &[vec![1, 8, 5, 4]]);
    assert!(e.contains("height 5 and width 4 must be multiples of reorg_param.stride 2"), "{e}");
    let e = setup_err(r#"type: "Reorg""#, &[vec![1, 8, 4, 4]]);
    assert!(e.contains("Reorg needs reorg_param.stride"), "{e}");
    let e = setup_err(r#"type: "Reorg" reorg_param { stride: 2 }"#, &[vec![8, 4, 4]]);
    assert!(e.contains("4 axes"), "{e}");
    let e = setup_err(r#"type: "Reorg" reorg_param { stride: 0 }"#, &[vec![1, 8, 4, 4]]);
    assert!(e.contains("stride must be positive"), "{e}");
}

// ---------------------------------------------------------------- the forks' BN

/// Per-channel statistics of an (N, C, H, W) f64 tensor, as the forks' loops
/// compute them: (mean, E[x²] − mean², mean of (x − mean)²).
fn channel_stats(x: &Tensor) -> Vec<(f64, f64, f64)> {
    let s = x.size();
    let v = crate::common::layer::values(x);
    let (n, c, hw) = (s[0] as usize, s[1] as usize, (s[2] * s[3]) as usize);
    (0..c)
        .map(|ch| {
            let at = |i: usize, k: usize| v[(i * c + ch) * hw + k];
            let m = (n * hw) as f64;
            let mean = (0..n).flat_map(|i| (0..hw).map(move |k| (i, k))).map(|(i, k)| at(i, k)).sum::<f64>() / m;
            let sq = (0..n).flat_map(|i| (0..hw).map(move |k| (i, k))).map(|(i, k)| at(i, k).powi(2)).sum::<f64>() / m;
            let centred =
                (0..n).flat_map(|i| (0..hw).map(move |k| (i, k))).map(|(i, k)| (at(i, k) - mean).powi(2)).sum::<f64>()
                    / m;
            (mean, sq - mean * mean, centred)
        })
        .collect()
}

/// y[n, c, :] = f(c, x[n, c, :]) element by element.
fn per_channel_map(x: &Tensor, f: impl Fn(usize, f64) -> f64) -> Vec<f64> {
    let s = x.size();
    let (c, hw) = (s[1] as usize, (s[2] * s[3]) as usize);
    crate::common::layer::values(x).iter().enumerate().map(|(i, &v)| f((i / hw) % c, v)).collect()
}

#[test]
fn bn_segnet_learn_and_inference() {
    let _rng = rng_exclusive();
    let x = randn(&[3, 2, 4, 5], 61) * 2.0 + 0.5;
    let (scale, shift) = (t(&[1.5, -0.5], &[1, 2, 1, 1]), t(&[0.25, 2.0], &[1, 2, 1, 1]));
    let stats = channel_stats(&x);
    let want = per_channel_map(&x, |ch, v| {
        let (mean, var, _) = stats[ch];
        [1.5, -0.5][ch] * (v - mean) / (var + 1e-9).sqrt() + [0.25, 2.0][ch]
    });
    // LEARN (the default, and a bare BN is SegNet's) uses the batch in TEST too.
    for phase in [Phase::Test, Phase::Train] {
        let (setup, tops) =
            run_phase("type: 'BN'", &[x.shallow_clone()], &[scale.shallow_clone(), shift.shallow_clone()], phase);
        assert_eq!(setup.params.len(), 2);
        assert_shaped_values(&format!("LEARN {phase:?}"), &tops[0], &want, &[3, 2, 4, 5]);
    }
    // Its batch mean and variance as tops 1 and 2.
    let text = "type: 'BN' top: 'y' top: 'mean' top: 'var' bn_param { bn_mode: LEARN }";
    let (_, tops) = run(text, &[x.shallow_clone()], &[scale.shallow_clone(), shift.shallow_clone()]);
    assert_shaped_values("mean", &tops[1], &[stats[0].0, stats[1].0], &[1, 2, 1, 1]);
    assert_shaped_values("variance", &tops[2], &[stats[0].1, stats[1].1], &[1, 2, 1, 1]);
    // INFERENCE: scale and shift only.
    let (_, tops) = run("type: 'BN' bn_param { bn_mode: INFERENCE }", &[x.shallow_clone()], &[scale, shift]);
    let want = per_channel_map(&x, |ch, v| [1.5, -0.5][ch] * v + [0.25, 2.0][ch]);
    assert_shaped_values("INFERENCE", &tops[0], &want, &[3, 2, 4, 5]);
    // A 2-D bottom is N×C×1×1.
    let (_, tops) = run(
        "type: 'BN' bn_param { bn_mode: INFERENCE }",
        &[t(&[1., 2., 3., 4.], &[2, 2])],
        &[t(&[2., 3.], &[1, 2, 1, 1]), t(&[0., 1.], &[1, 2, 1, 1])],
    );
    assert_shaped_values("2-D", &tops[0], &[2., 7., 6., 13.], &[2, 2]);
    gradcheck(
        "type: 'BN' bn_param { scale_filler { type: 'gaussian' } shift_filler { type: 'gaussian' } }",
        &[randn(&[3, 2, 3, 2], 62)],
        &[],
    );
    gradcheck(
        "type: 'BN' bn_param { bn_mode: INFERENCE scale_filler { type: 'gaussian' } }",
        &[randn(&[2, 3, 2, 2], 63)],
        &[],
    );
}

#[test]
fn bn_pspnet_batch_running_and_frozen_statistics() {
    let _rng = rng_exclusive();
    let x = randn(&[3, 2, 4, 5], 64) * 2.0 + 0.5;
    let (slope, bias) = (t(&[1.5, -0.5], &[1, 2, 1, 1]), t(&[0.25, 2.0], &[1, 2, 1, 1]));
    let stats = channel_stats(&x);
    let text = "type: 'BN' bn_param { momentum: 0.95 eps: 0.001 }";
    // TRAIN: the batch's mean and biased variance, and the running averages move.
    let (mean0, var0) = (t(&[0.5, -1.0], &[1, 2, 1, 1]), t(&[2.0, 0.5], &[1, 2, 1, 1]));
    let params = [slope.shallow_clone(), bias.shallow_clone(), mean0.copy(), var0.copy()];
    let (setup, tops) = run_phase(text, &[x.shallow_clone()], &params, Phase::Train);
    assert_eq!(setup.params.len(), 4);
    let want = per_channel_map(&x, |ch, v| {
        let (mean, _, var) = stats[ch];
        [1.5, -0.5][ch] * (v - mean) / (var + 0.001f32 as f64).sqrt() + [0.25, 2.0][ch]
    });
    assert_shaped_values("TRAIN", &tops[0], &want, &[3, 2, 4, 5]);
    let moved = |old: [f64; 2], k: usize| -> Vec<f64> {
        let m = 0.95f32 as f64; // the prototxt's float
        (0..2).map(|ch| (1.0 - m) * [stats[ch].0, stats[ch].2][k] + m * old[ch]).collect()
    };
    assert_shaped_values("running mean", &params[2], &moved([0.5, -1.0], 0), &[1, 2, 1, 1]);
    assert_shaped_values("running variance", &params[3], &moved([2.0, 0.5], 1), &[1, 2, 1, 1]);
    // TEST, or frozen in any phase: the running statistics, which stay put.
    let want = per_channel_map(&x, |ch, v| {
        [1.5, -0.5][ch] * (v - [0.5, -1.0][ch]) / ([2.0, 0.5][ch] + 0.001f32 as f64).sqrt() + [0.25, 2.0][ch]
    });
    for (text, phase) in [(text, Phase::Test), ("type: 'BN' bn_param { frozen: true eps: 0.001 }", Phase::Train)] {
        let params = [slope.shallow_clone(), bias.shallow_clone(), mean0.copy(), var0.copy()];
        let (_, tops) = run_phase(text, &[x.shallow_clone()], &params, phase);
        assert_shaped_values(&format!("{text} {phase:?}"), &tops[0], &want, &[3, 2, 4, 5]);
        assert!(params[2].equal(&mean0) && params[3].equal(&var0), "{text}: running statistics moved");
    }
    // Learnable: slope and bias unless frozen; never the statistics.
    let layer = create_layer(&lp(text)).unwrap();
    assert_eq!((0..4).map(|j| layer.param_learnable(j)).collect::<Vec<_>>(), [true, true, false, false]);
    let frozen = create_layer(&lp("type: 'BN' bn_param { frozen: true }")).unwrap();
    assert!((0..4).all(|j| !frozen.param_learnable(j)));
    // A frozen layer's variance starts at 1 (the fork's), an unfrozen one's at 0.
    let mut frozen = create_layer(&lp("type: 'BN' bn_param { frozen: true }")).unwrap();
    let setup = frozen.setup(&[vec![1, 3, 2, 2]]).unwrap();
    assert_eq!(setup.params[3].filler.value(), 1.0);
    gradcheck(
        "type: 'BN' bn_param { momentum: 0.9 slope_filler { type: 'gaussian' } bias_filler { type: 'gaussian' } }",
        &[randn(&[3, 2, 3, 2], 65)],
        &[],
    );
    layer::gradcheck(
        "type: 'BN' bn_param { frozen: true slope_filler { type: 'gaussian' } }",
        &[randn(&[2, 3, 2, 2], 66)],
        GradCheck { phase: Phase::Train, ..Default::default() },
    );
    // Errors.
    let e = setup_err("type: 'BN' bn_param { bn_mode: INFERENCE frozen: true }", &[vec![1, 2, 2, 2]]);
    assert!(e.contains("mixes SegNet's fields"), "{e}");
    let e = setup_err("type: 'BN' top: 'y' top: 'm' top: 'v' bn_param { bn_mode: INFERENCE }", &[vec![1, 2, 2, 2]]);
    assert!(e.contains("BN takes 1 top (or 3 in SegNet's LEARN mode"), "{e}");
    let e = setup_err("type: 'BN'", &[vec![4]]);
    assert!(e.contains("needs a bottom with a channel axis"), "{e}");
}

#[test]
fn bn_pspnet_statistics_get_no_learning_rate_in_a_net() {
    let _rng = rng_exclusive();
    let text = "layer { name: 'x' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
                layer { name: 'a' type: 'BN' bottom: 'x' top: 'a' bn_param { momentum: 0.9 } }
                layer { name: 'b' type: 'BN' bottom: 'a' top: 'b' bn_param { frozen: true } }
                layer { name: 's' type: 'BN' bottom: 'b' top: 's' }";
    let net = net(text);
    let lr: Vec<f32> = net.learnable_params().iter().map(|p| p.lr_mult).collect();
    assert_eq!(lr, [1., 1., 0., 0., 0., 0., 0., 0., 1., 1.]);
}

#[test]
fn axpy_scales_x_per_channel_and_adds_y() {
    let _rng = rng_exclusive();
    // N = 2, C = 2, 3 values per channel.
    let a = t(&[2., -1., 0.5, 0.], &[2, 2, 1, 1]);
    let x = t(&(1..=12).map(f64::from).collect::<Vec<_>>(), &[2, 2, 3]);
    let y = t(&[1.; 12], &[2, 2, 3]);
    let (_, tops) = run("type: 'Axpy'", &[a.shallow_clone(), x.shallow_clone(), y.shallow_clone()], &[]);
    let want = [3., 5., 7., -3., -4., -5., 4.5, 5., 5.5, 1., 1., 1.];
    assert_shaped_values("axpy", &tops[0], &want, &[2, 2, 3]);
    // a as N×C works the same.
    let (_, tops) = run("type: 'Axpy'", &[a.reshape([2, 2]), x.shallow_clone(), y.shallow_clone()], &[]);
    assert_shaped_values("axpy N×C", &tops[0], &want, &[2, 2, 3]);
    gradcheck("type: 'Axpy'", &[randn(&[2, 3, 1, 1], 51), randn(&[2, 3, 4, 2], 52), randn(&[2, 3, 4, 2], 53)], &[]);
    let e = setup_err("type: 'Axpy'", &[vec![2, 3, 2, 1], vec![2, 3, 4, 2], vec![2, 3, 4, 2]]);
    assert!(e.contains("a (bottom 0) must be N×C or N×C×1×1"), "{e}");
    let e = setup_err("type: 'Axpy'", &[vec![2, 3], vec![2, 3, 4, 2], vec![2, 3, 4, 3]]);
    assert!(e.contains("must have one shape"), "{e}");
}
