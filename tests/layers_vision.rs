//! Vision and normalization layers against naive implementations of Caffe's
//! CPU code (written out here loop by loop), plus gradient checks.
//! LRN, Pooling (output size rules, AVE border divisor, STOCHASTIC),
//! Deconvolution, SPP, Im2col, Crop, BatchNorm, MVN.
use caffe_tch::layers::gradcheck::GradCheck;
use caffe_tch::layers::vision::pooling::pooled_size;
use caffe_tch::layers::vision::spp::Spp;
use caffe_tch::layers::{create_layer, Ctx};
use caffe_tch::proto::caffe::{spp_parameter, LayerParameter, Phase, PoolingParameter};
use tch::{Device, Kind, Tensor};

use crate::common::layer::{self, lp, randn, run_phase, setup_err, t as from_vec, values};
use crate::common::rng_exclusive;

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// A prototxt float as the layer sees it (f32).
fn f32v(v: f64) -> f64 {
    v as f32 as f64
}

/// Sets the layer up on the bottoms' shapes and runs one forward pass;
/// checks the tops have the shapes setup announced.
fn run(l: &LayerParameter, bottoms: &[Tensor], params: &[Tensor], phase: Phase) -> Vec<Tensor> {
    let (setup, tops) = run_phase(l, bottoms, params, phase);
    for (t, s) in tops.iter().zip(&setup.tops) {
        assert_eq!(&t.size(), s, "top shape differs from setup's");
    }
    tops
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn assert_near(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    let d = max_diff(a, b);
    assert!(d <= tol, "{what}: max |Δ| = {d:e} > {tol:e}");
}

/// A gradient check at the checker's default tolerance; `skip` lists bottoms that get none.
fn gradcheck(l: &LayerParameter, bottoms: &[Tensor], phase: Phase, skip: Vec<usize>) {
    layer::gradcheck(l, bottoms, GradCheck { phase, skip_bottoms: skip, ..Default::default() });
}

// ---------------------------------------------------------------- LRN

/// Caffe's cross-channel LRN, element by element.
fn naive_lrn_across(x: &Tensor, n: i64, alpha: f64, beta: f64, k: f64) -> Tensor {
    let s = x.size();
    let (nn, c, h, w) = (s[0], s[1], s[2], s[3]);
    let v = values(x);
    let at = |a: i64, b: i64, i: i64, j: i64| v[(((a * c + b) * h + i) * w + j) as usize];
    let mut out = vec![0.0; v.len()];
    let pre = (n - 1) / 2;
    for a in 0..nn {
        for b in 0..c {
            for i in 0..h {
                for j in 0..w {
                    let mut sum = 0.0;
                    for cc in (b - pre).max(0)..(b - pre + n).min(c) {
                        sum += at(a, cc, i, j).powi(2);
                    }
                    let scale = k + alpha / n as f64 * sum;
                    out[(((a * c + b) * h + i) * w + j) as usize] = at(a, b, i, j) * scale.powf(-beta);
                }
            }
        }
    }
    from_vec(&out, &s)
}

/// Caffe's within-channel LRN: AVE pooling of x² (pad (n-1)/2, stride 1,
/// divisor clipped to the padded input), then (1 + alpha·avg)^-beta.
fn naive_lrn_within(x: &Tensor, n: i64, alpha: f64, beta: f64) -> Tensor {
    let s = x.size();
    let (h, w) = (s[2], s[3]);
    let v = values(x);
    let pad = (n - 1) / 2;
    let mut out = vec![0.0; v.len()];
    for plane in 0..(s[0] * s[1]) {
        let base = (plane * h * w) as usize;
        for i in 0..h {
            for j in 0..w {
                let (hs, ws) = (i - pad, j - pad);
                let (he, we) = ((hs + n).min(h + pad), (ws + n).min(w + pad));
                let size = ((he - hs) * (we - ws)) as f64;
                let mut sum = 0.0;
                for ii in hs.max(0)..he.min(h) {
                    for jj in ws.max(0)..we.min(w) {
                        sum += v[base + (ii * w + jj) as usize].powi(2);
                    }
                }
                let idx = base + (i * w + j) as usize;
                out[idx] = v[idx] * (1.0 + alpha * sum / size).powf(-beta);
            }
        }
    }
    from_vec(&out, &s)
}

#[test]
fn lrn_across_channels_matches_naive() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 7, 3, 4], 1) * 2.0;
    for (n, alpha, beta, k) in [(5, 0.3, 0.75, 2.0), (3, 1.0, 0.5, 1.0), (1, 0.1, 1.5, 0.5), (9, 2.0, 0.75, 1.0)] {
        let l =
            lp(&format!("name: 'n' type: 'LRN' lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} k: {k} }}"));
        let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
        assert_near(
            &format!("LRN across n={n}"),
            &y,
            &naive_lrn_across(&x, n, f32v(alpha), f32v(beta), f32v(k)),
            1e-12,
        );
    }
}

/// Caffe's cross-channel backward, element by element: the bottom's gradient
/// for top gradient `g`.
fn naive_lrn_across_backward(x: &Tensor, g: &Tensor, n: i64, alpha: f64, beta: f64, k: f64) -> Tensor {
    let s = x.size();
    let (nn, c, plane) = (s[0], s[1], s[2] * s[3]);
    let (xv, gv) = (values(x), values(g));
    let pre = (n - 1) / 2;
    let idx = |a: i64, b: i64, p: i64| ((a * c + b) * plane + p) as usize;
    let window = |b: i64| (b - pre).max(0)..(b - pre + n).min(c);
    let mut out = vec![0.0; xv.len()];
    for a in 0..nn {
        for p in 0..plane {
            let scale: Vec<f64> = (0..c)
                .map(|b| k + alpha / n as f64 * window(b).map(|cc| xv[idx(a, cc, p)].powi(2)).sum::<f64>())
                .collect();
            let ratio: Vec<f64> = (0..c)
                .map(|b| gv[idx(a, b, p)] * xv[idx(a, b, p)] * scale[b as usize].powf(-beta) / scale[b as usize])
                .collect();
            for b in 0..c {
                let sum: f64 = window(b).map(|cc| ratio[cc as usize]).sum();
                out[idx(a, b, p)] = gv[idx(a, b, p)] * scale[b as usize].powf(-beta)
                    - 2.0 * alpha * beta / n as f64 * xv[idx(a, b, p)] * sum;
            }
        }
    }
    from_vec(&out, &s)
}

/// Caffe's within-channel backward, element by element: the exact gradient
/// of `naive_lrn_within` for top gradient `g`.
fn naive_lrn_within_backward(x: &Tensor, g: &Tensor, n: i64, alpha: f64, beta: f64) -> Tensor {
    let s = x.size();
    let (h, w) = (s[2], s[3]);
    let (xv, gv) = (values(x), values(g));
    let pad = (n - 1) / 2;
    let area = (n * n) as f64;
    let window = |i: i64, j: i64| {
        let rows = (i - pad).max(0)..(i + pad + 1).min(h);
        rows.flat_map(move |ii| ((j - pad).max(0)..(j + pad + 1).min(w)).map(move |jj| (ii, jj)))
    };
    let mut out = vec![0.0; xv.len()];
    for plane in 0..(s[0] * s[1]) {
        let at = |i: i64, j: i64| (plane * h * w + i * w + j) as usize;
        let scale = |i: i64, j: i64| 1.0 + alpha * window(i, j).map(|(a, b)| xv[at(a, b)].powi(2)).sum::<f64>() / area;
        let ratio = |i: i64, j: i64| gv[at(i, j)] * xv[at(i, j)] * scale(i, j).powf(-beta) / scale(i, j);
        for i in 0..h {
            for j in 0..w {
                let sum: f64 = window(i, j).map(|(a, b)| ratio(a, b)).sum();
                out[at(i, j)] = gv[at(i, j)] * scale(i, j).powf(-beta) - 2.0 * alpha * beta / area * xv[at(i, j)] * sum;
            }
        }
    }
    from_vec(&out, &s)
}

/// `x` with the same values in channels-last memory order.
fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// The CPU kernel (csrc/lrn.cpp) for both regions, in both memory orders and
/// both float kinds, inference and recorded, for the betas with a closed
/// form and others, and windows wider than the blob: forward and backward
/// against Caffe's formulas; inference and recorded forwards are the same
/// numbers. A window far wider than the blob costs no more than one as wide.
#[test]
fn lrn_cpu_kernel_matches_naive_forward_and_backward() {
    let _rng = rng_exclusive();
    let x64 = randn(&[2, 7, 3, 5], 11) * 2.0;
    let g64 = randn(&[2, 7, 3, 5], 12);
    let cases = [
        (5, 0.3, 0.75, 2.0),
        (3, 1.0, 0.5, 1.0),
        (1, 0.1, 1.0, 0.5),
        (9, 2.0, 0.75, 1.0),
        (5, 0.5, 1.5, 1.0),
        (2_000_001, 1e5, 0.75, 1.0),
        (7, 3.0, 0.75, 1.0),
    ];
    for ((n, alpha, beta, k), within) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        let region = if within { "WITHIN_CHANNEL" } else { "ACROSS_CHANNELS" };
        let l = lp(&format!(
            "name: 'n' type: 'LRN' lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} k: {k} norm_region: {region} }}"
        ));
        let (alpha, beta, k) = (f32v(alpha), f32v(beta), f32v(k));
        let (want_y, want_dx) = if within {
            (naive_lrn_within(&x64, n, alpha, beta), naive_lrn_within_backward(&x64, &g64, n, alpha, beta))
        } else {
            (naive_lrn_across(&x64, n, alpha, beta, k), naive_lrn_across_backward(&x64, &g64, n, alpha, beta, k))
        };
        for (kind, tol) in [(Kind::Double, 1e-12), (Kind::Float, 2e-5)] {
            for nhwc in [false, true] {
                let what = format!("{region} n={n} beta={beta} {kind:?} {}", if nhwc { "NHWC" } else { "NCHW" });
                let x = x64.to_kind(kind);
                let x = if nhwc { channels_last(&x) } else { x };
                let inferred = tch::no_grad(|| run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0));
                assert_near(&format!("{what}: inference forward"), &inferred, &want_y, tol);
                assert_eq!(inferred.stride(), x.stride(), "{what}: the top keeps the bottom's memory order");

                let leaf = x.detach().set_requires_grad(true);
                let y = run(&l, &[leaf.shallow_clone()], &[], Phase::Train).remove(0);
                assert_eq!(max_diff(&y, &inferred), 0.0, "{what}: recorded and inference forwards differ");
                let objective = (&y * g64.to_kind(kind)).sum(kind);
                let dx = Tensor::run_backward(&[&objective], &[&leaf], false, false).remove(0);
                assert_near(&format!("{what}: backward"), &dx, &want_dx, tol * 10.0);
            }
        }
    }
    // A bottom neither layout can take (a strided view) runs the tensor ops.
    let l = lp("name: 'n' type: 'LRN' lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 }");
    let wide = randn(&[2, 4, 3, 10], 13);
    let view = wide.narrow(3, 2, 5);
    let y = tch::no_grad(|| run(&l, &[view.shallow_clone()], &[], Phase::Test).remove(0));
    assert_near("strided view", &y, &naive_lrn_across(&view.contiguous(), 3, 0.5, 0.75, 1.0), 1e-12);
}

#[test]
fn lrn_within_channel_matches_naive_and_ignores_k() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 5, 6], 2) * 2.0;
    for (n, alpha, beta) in [(3, 0.5, 0.75), (5, 2.0, 0.75), (1, 0.3, 1.0)] {
        let l = lp(&format!(
            "name: 'n' type: 'LRN' lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} k: 7 norm_region: WITHIN_CHANNEL }}"
        ));
        let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
        assert_near(&format!("LRN within n={n}"), &y, &naive_lrn_within(&x, n, f32v(alpha), f32v(beta)), 1e-12);
    }
}

#[test]
fn lrn_gradients() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 6, 3, 4], 3);
    gradcheck(
        &lp("name: 'a' type: 'LRN' lrn_param { local_size: 5 alpha: 0.8 beta: 0.75 k: 1.5 }"),
        &[x.shallow_clone()],
        Phase::Train,
        vec![],
    );
    gradcheck(
        &lp("name: 'w' type: 'LRN' lrn_param { local_size: 3 alpha: 0.8 beta: 0.75 norm_region: WITHIN_CHANNEL }"),
        &[x],
        Phase::Train,
        vec![],
    );
}

#[test]
fn lrn_rejects_even_size_and_non_4d() {
    let _rng = rng_exclusive();
    let e = setup_err(&lp("name: 'n' type: 'LRN' lrn_param { local_size: 4 }"), &[vec![1, 3, 4, 4]]);
    assert!(e.contains("odd"), "{e}");
    let e = setup_err(&lp("name: 'n' type: 'LRN'"), &[vec![3, 4, 4]]);
    assert!(e.contains("4 axes"), "{e}");
}

// ---------------------------------------------------------------- Pooling

/// Caffe's pooled size, written from its rules.
fn caffe_pooled(input: i64, k: i64, s: i64, p: i64, ceil: bool) -> i64 {
    let span = (input + 2 * p - k) as f64 / s as f64;
    let mut out = if ceil { span.ceil() } else { span.floor() } as i64 + 1;
    if p > 0 && (out - 1) * s >= input + p {
        out -= 1;
    }
    out
}

/// Caffe's CPU MAX / AVE pooling of one (N, C, H, W) blob.
fn naive_pool(x: &Tensor, max: bool, k: [i64; 2], s: [i64; 2], p: [i64; 2], ceil: bool) -> Tensor {
    let sz = x.size();
    let (h, w) = (sz[2], sz[3]);
    let oh = caffe_pooled(h, k[0], s[0], p[0], ceil);
    let ow = caffe_pooled(w, k[1], s[1], p[1], ceil);
    let v = values(x);
    let mut out = Vec::new();
    for plane in 0..(sz[0] * sz[1]) {
        let base = (plane * h * w) as usize;
        for i in 0..oh {
            for j in 0..ow {
                let (hs, ws) = (i * s[0] - p[0], j * s[1] - p[1]);
                if max {
                    let (he, we) = ((hs + k[0]).min(h), (ws + k[1]).min(w));
                    let mut m = -(f32::MAX as f64); // Caffe's -FLT_MAX start
                    for ii in hs.max(0)..he {
                        for jj in ws.max(0)..we {
                            m = m.max(v[base + (ii * w + jj) as usize]);
                        }
                    }
                    out.push(m);
                } else {
                    let (he, we) = ((hs + k[0]).min(h + p[0]), (ws + k[1]).min(w + p[1]));
                    let size = ((he - hs) * (we - ws)) as f64;
                    let mut sum = 0.0;
                    for ii in hs.max(0)..he.min(h) {
                        for jj in ws.max(0)..we.min(w) {
                            sum += v[base + (ii * w + jj) as usize];
                        }
                    }
                    out.push(sum / size);
                }
            }
        }
    }
    from_vec(&out, &[sz[0], sz[1], oh, ow])
}

#[test]
fn pooling_output_size_rules() {
    let _rng = rng_exclusive();
    // Ceil by default; floor on request; the last window is dropped when it
    // would start in the padding.
    assert_eq!(pooled_size(6, 3, 2, 0, true), 3);
    assert_eq!(pooled_size(6, 3, 2, 0, false), 2);
    assert_eq!(pooled_size(5, 2, 2, 1, true), 3); // ceil gives 4, whose last window starts in the pad
    assert_eq!(pooled_size(13, 3, 2, 0, true), 6);
    for input in 1..12 {
        for k in 1..5 {
            for s in 1..4 {
                for p in 0..k {
                    if input + 2 * p < k {
                        continue;
                    }
                    for ceil in [true, false] {
                        assert_eq!(
                            pooled_size(input, k, s, p, ceil),
                            caffe_pooled(input, k, s, p, ceil),
                            "{input} {k} {s} {p} {ceil}"
                        );
                    }
                }
            }
        }
    }
    let l = lp("name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 }");
    let y = run(&l, &[randn(&[1, 1, 5, 5], 4)], &[], Phase::Test).remove(0);
    assert_eq!(y.size(), vec![1, 1, 3, 3]);
    let l = lp("name: 'p' type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR }");
    let y = run(&l, &[randn(&[1, 1, 6, 8], 4)], &[], Phase::Test).remove(0);
    assert_eq!(y.size(), vec![1, 1, 2, 3]);
}

#[test]
fn pooling_max_and_ave_match_naive_with_padding_and_borders() {
    let _rng = rng_exclusive();
    let mut configs = 0;
    for (h, w) in [(5, 5), (6, 7), (7, 4)] {
        let x = randn(&[2, 2, h, w], h * 10 + w);
        for k in 2..=3i64 {
            for s in 1..=3i64 {
                for p in 0..k {
                    for ceil in [true, false] {
                        for max in [true, false] {
                            // Width gets its own kernel and pad so the axes differ.
                            let (kw, pw) = (if p > 0 { k } else { k + 1 }, p.min(1));
                            let text = format!(
                                "name: 'p' type: 'Pooling' pooling_param {{ pool: {} kernel_h: {k} kernel_w: {kw} stride: {s} pad_h: {p} pad_w: {pw} round_mode: {} }}",
                                if max { "MAX" } else { "AVE" },
                                if ceil { "CEIL" } else { "FLOOR" }
                            );
                            let l = lp(&text);
                            let (kk, pp) = ([k, kw], [p, pw]);
                            let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
                            let want = naive_pool(&x, max, kk, [s, s], pp, ceil);
                            // Caffe's empty windows (stride > kernel, ceil, no pad) give NaN for AVE.
                            assert!(y.isnan().equal(&want.isnan()), "{text}: NaN positions differ");
                            assert_near(
                                &text,
                                &y.nan_to_num(0.0, None, None),
                                &want.nan_to_num(0.0, None, None),
                                1e-12,
                            );
                            configs += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(configs > 100);
}

#[test]
fn pooling_follows_a_new_input_size() {
    let _rng = rng_exclusive();
    let l = lp("name: 'p' type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }");
    let mut layer = create_layer(&l).unwrap();
    layer.setup(&[vec![1, 2, 8, 8]]).unwrap();
    let ctx = Ctx { phase: Phase::Test, iteration: i64::MAX, device: Device::Cpu };
    let x = randn(&[2, 2, 11, 6], 47);
    let y = layer.forward(&ctx, &[x.shallow_clone()], &[]).unwrap().remove(0);
    assert_near("resized", &y, &naive_pool(&x, false, [3, 3], [2, 2], [1, 1], true), 1e-12);
}

#[test]
fn pooling_global_ave() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 4, 5], 5);
    let l = lp("name: 'g' type: 'Pooling' pooling_param { pool: AVE global_pooling: true }");
    let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
    assert_near("global AVE", &y, &x.mean_dim([2i64, 3].as_slice(), true, Kind::Double), 1e-12);
}

#[test]
fn pooling_gradients() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 2, 6, 5], 6);
    for text in [
        "name: 'm' type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }",
        "name: 'a' type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }",
        "name: 'a2' type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }",
        "name: 'm2' type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 2 }",
        "name: 'f' type: 'Pooling' pooling_param { pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR }",
    ] {
        gradcheck(&lp(text), &[x.shallow_clone()], Phase::Train, vec![]);
    }
}

#[test]
fn stochastic_pooling_test_phase_is_weighted_average() {
    let _rng = rng_exclusive();
    // Non-negative inputs with some all-zero windows; ceil windows at the border.
    let x = randn(&[2, 2, 7, 6], 7).relu();
    let _ = x.narrow(2, 0, 3).narrow(3, 0, 3).fill_(0.0);
    let l = lp("name: 's' type: 'Pooling' pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }");
    let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
    let (h, w) = (7, 6);
    let (oh, ow) = (caffe_pooled(h, 3, 2, 0, true), caffe_pooled(w, 3, 2, 0, true));
    let v = values(&x);
    let mut want = Vec::new();
    for plane in 0..4 {
        for i in 0..oh {
            for j in 0..ow {
                let (mut sum, mut sq) = (f32::MIN_POSITIVE as f64, 0.0);
                for ii in i * 2..(i * 2 + 3).min(h) {
                    for jj in j * 2..(j * 2 + 3).min(w) {
                        let e = v[(plane * h * w + ii * w + jj) as usize];
                        sum += e;
                        sq += e * e;
                    }
                }
                want.push(sq / sum);
            }
        }
    }
    assert_near("stochastic TEST", &y, &from_vec(&want, &[2, 2, oh, ow]), 1e-12);
    assert_eq!(y.double_value(&[0, 0, 0, 0]), 0.0);
}

#[test]
fn stochastic_pooling_train_samples_in_proportion() {
    let _rng = rng_exclusive();
    // Windows [1, 3]: the 3 must be drawn about 3/4 of the time.
    let n = 4000;
    let x = Tensor::from_slice(&[1.0f64, 3.0]).repeat([n, 1]).reshape([1, 1, n, 2]);
    let l = lp("name: 's' type: 'Pooling' pooling_param { pool: STOCHASTIC kernel_h: 1 kernel_w: 2 stride: 1 }");
    tch::manual_seed(11);
    let xg = x.set_requires_grad(true);
    let y = run(&l, &[xg.shallow_clone()], &[], Phase::Train).remove(0);
    let frac = y.eq(3.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    assert!((frac - 0.75).abs() < 0.03, "drew the 3 in {frac} of the windows");
    // The gradient reaches the drawn unit only.
    let g = Tensor::run_backward(&[y.sum(Kind::Double)], &[&xg], false, false).remove(0);
    assert_eq!(g.sum(Kind::Double).double_value(&[]), n as f64);
    assert_near("grad on drawn units", &(&g * &x).sum(Kind::Double), &y.sum(Kind::Double), 1e-9);
    // An all-zero window picks its first unit, as Caffe's search does.
    let z = Tensor::zeros([1, 1, 1, 2], F64).set_requires_grad(true);
    let y = run(&l, &[z.shallow_clone()], &[], Phase::Train).remove(0);
    let g = Tensor::run_backward(&[y.sum(Kind::Double)], &[&z], false, false).remove(0);
    assert_eq!(values(&g), vec![1.0, 0.0]);
}

#[test]
fn stochastic_pooling_rejects_padding() {
    let _rng = rng_exclusive();
    let e = setup_err(
        &lp("name: 's' type: 'Pooling' pooling_param { pool: STOCHASTIC kernel_size: 3 pad: 1 }"),
        &[vec![1, 1, 5, 5]],
    );
    assert!(e.contains("padding"), "{e}");
}

// ---------------------------------------------------------------- Deconvolution

/// Caffe's deconvolution (the conv's backward-data): every input unit
/// scatters weight·value onto the output. Weights are [in, out/group, kh, kw].
fn naive_deconv(x: &Tensor, wt: &Tensor, bias: &Tensor, group: i64, s: i64, p: i64, d: i64) -> Tensor {
    let xs = x.size();
    let ws = wt.size();
    let (n, ci, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (cog, kh, kw) = (ws[1], ws[2], ws[3]);
    let co = cog * group;
    let oh = s * (h - 1) + d * (kh - 1) + 1 - 2 * p;
    let ow = s * (w - 1) + d * (kw - 1) + 1 - 2 * p;
    let xv = values(x);
    let wv = values(wt);
    let bv = values(bias);
    let mut out = vec![0.0; (n * co * oh * ow) as usize];
    let cig = ci / group;
    for a in 0..n {
        for c in 0..ci {
            let g = c / cig;
            for i in 0..h {
                for j in 0..w {
                    let val = xv[(((a * ci + c) * h + i) * w + j) as usize];
                    for o in 0..cog {
                        for u in 0..kh {
                            for v in 0..kw {
                                let (y, z) = (i * s - p + u * d, j * s - p + v * d);
                                if y < 0 || y >= oh || z < 0 || z >= ow {
                                    continue;
                                }
                                let oc = g * cog + o;
                                out[(((a * co + oc) * oh + y) * ow + z) as usize] +=
                                    val * wv[(((c * cog + o) * kh + u) * kw + v) as usize];
                            }
                        }
                    }
                }
            }
        }
        for oc in 0..co {
            for e in 0..(oh * ow) {
                out[((a * co + oc) * oh * ow + e) as usize] += bv[oc as usize];
            }
        }
    }
    from_vec(&out, &[n, co, oh, ow])
}

#[test]
fn deconvolution_matches_caffe_layout_and_size() {
    let _rng = rng_exclusive();
    let l = lp("name: 'd' type: 'Deconvolution' convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 dilation: 2 }");
    let mut layer = create_layer(&l).unwrap();
    let setup = layer.setup(&[vec![2, 4, 5, 4]]).unwrap();
    // Output: stride·(in − 1) + dilation·(k − 1) + 1 − 2·pad.
    assert_eq!(setup.tops[0], vec![2, 6, 2 * 4 + 5 - 2, 2 * 3 + 5 - 2]);
    // Weights [in, out/group, k, k], then the bias [out].
    assert_eq!(setup.params[0].shape, vec![4, 3, 3, 3]);
    assert_eq!(setup.params[1].shape, vec![6]);
    let x = randn(&[2, 4, 5, 4], 8);
    let wt = randn(&[4, 3, 3, 3], 9);
    let b = randn(&[6], 10);
    let y = run(&l, &[x.shallow_clone()], &[wt.shallow_clone(), b.shallow_clone()], Phase::Test).remove(0);
    assert_near("deconv vs naive", &y, &naive_deconv(&x, &wt, &b, 2, 2, 1, 2), 1e-10);
    // Plain case, no group/dilation.
    let l = lp("name: 'd' type: 'Deconvolution' convolution_param { num_output: 2 kernel_h: 2 kernel_w: 3 stride: 3 }");
    let x = randn(&[1, 3, 3, 3], 11);
    let wt = randn(&[3, 2, 2, 3], 12);
    let b = randn(&[2], 13);
    let y = run(&l, &[x.shallow_clone()], &[wt.shallow_clone(), b.shallow_clone()], Phase::Test).remove(0);
    assert_eq!(y.size(), vec![1, 2, 3 * 2 + 2, 3 * 2 + 3]);
}

#[test]
fn deconvolution_gradients() {
    let _rng = rng_exclusive();
    let l = lp(
        "name: 'd' type: 'Deconvolution' convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2 \
         weight_filler { type: 'gaussian' std: 0.5 } bias_filler { type: 'gaussian' std: 0.5 } }",
    );
    gradcheck(&l, &[randn(&[2, 4, 3, 3], 14)], Phase::Train, vec![]);
}

#[test]
fn convolution_gradients() {
    let _rng = rng_exclusive();
    let l = lp(
        "name: 'c' type: 'Convolution' convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2 dilation: 1 \
         weight_filler { type: 'gaussian' std: 0.5 } bias_filler { type: 'gaussian' std: 0.5 } }",
    );
    gradcheck(&l, &[randn(&[2, 4, 5, 5], 15)], Phase::Train, vec![]);
}

// ---------------------------------------------------------------- SPP

#[test]
fn spp_level_geometry_is_caffes() {
    let _rng = rng_exclusive();
    // 13×13 input: bins 1, 2, 4 → kernels 13, 7, 4; pads 0, 1, 2.
    let p = Spp::level_param(0, 13, 13, spp_parameter::PoolMethod::Max);
    assert_eq!((p.kernel_h(), p.stride_h(), p.pad_h()), (13, 13, 0));
    let p = Spp::level_param(1, 13, 13, spp_parameter::PoolMethod::Max);
    assert_eq!((p.kernel_h(), p.stride_h(), p.pad_h()), (7, 7, 1));
    let p = Spp::level_param(2, 13, 10, spp_parameter::PoolMethod::Ave);
    assert_eq!((p.kernel_h(), p.pad_h(), p.kernel_w(), p.pad_w()), (4, 2, 3, 1));
}

fn pool_level(x: &Tensor, level: u32, method: spp_parameter::PoolMethod) -> Tensor {
    let s = x.size();
    let pp: PoolingParameter = Spp::level_param(level, s[2], s[3], method);
    let l = LayerParameter {
        name: Some("lvl".into()),
        r#type: Some("Pooling".into()),
        pooling_param: Some(pp),
        ..Default::default()
    };
    run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0)
}

#[test]
fn spp_concatenates_flattened_levels() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 13, 10], 16);
    for (method, name) in [(spp_parameter::PoolMethod::Max, "MAX"), (spp_parameter::PoolMethod::Ave, "AVE")] {
        let l = lp(&format!("name: 's' type: 'SPP' spp_param {{ pyramid_height: 3 pool: {name} }}"));
        let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
        assert_eq!(y.size(), vec![2, 3 * (1 + 4 + 16)]);
        let parts: Vec<Tensor> = (0..3).map(|lvl| pool_level(&x, lvl, method).flatten(1, -1)).collect();
        assert_near(name, &y, &Tensor::cat(&parts, 1), 0.0);
        // Level 0 is the global pool.
        let global = if name == "MAX" {
            x.amax([2i64, 3].as_slice(), false)
        } else {
            x.mean_dim([2i64, 3].as_slice(), false, Kind::Double)
        };
        assert_near("level 0", &y.narrow(1, 0, 3), &global, 1e-12);
    }
    // One level: the pooling's 4-D output itself.
    let l = lp("name: 's' type: 'SPP' spp_param { pyramid_height: 1 }");
    let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
    assert_eq!(y.size(), vec![2, 3, 1, 1]);
}

#[test]
fn spp_follows_a_new_input_size() {
    let _rng = rng_exclusive();
    let l = lp("name: 's' type: 'SPP' spp_param { pyramid_height: 2 }");
    let mut layer = create_layer(&l).unwrap();
    layer.setup(&[vec![1, 2, 8, 8]]).unwrap();
    let ctx = Ctx { phase: Phase::Test, iteration: i64::MAX, device: Device::Cpu };
    let x = randn(&[1, 2, 11, 7], 17);
    let y = layer.forward(&ctx, &[x.shallow_clone()], &[]).unwrap().remove(0);
    let parts: Vec<Tensor> =
        (0..2).map(|lvl| pool_level(&x, lvl, spp_parameter::PoolMethod::Max).flatten(1, -1)).collect();
    assert_near("resized", &y, &Tensor::cat(&parts, 1), 0.0);
}

#[test]
fn spp_gradients() {
    let _rng = rng_exclusive();
    gradcheck(
        &lp("name: 's' type: 'SPP' spp_param { pyramid_height: 3 pool: AVE }"),
        &[randn(&[2, 2, 9, 7], 18)],
        Phase::Train,
        vec![],
    );
    gradcheck(
        &lp("name: 's' type: 'SPP' spp_param { pyramid_height: 2 pool: MAX }"),
        &[randn(&[1, 2, 6, 6], 19)],
        Phase::Train,
        vec![],
    );
}

// ---------------------------------------------------------------- Im2col

/// Caffe's N-D im2col: column channel c·K + tap (row-major taps).
fn naive_im2col(x: &Tensor, k: &[i64], s: &[i64], p: &[i64], d: &[i64]) -> Tensor {
    let sz = x.size();
    let ns = k.len();
    let (n, c) = (sz[0], sz[1]);
    let dims = &sz[2..];
    let outs: Vec<i64> = (0..ns).map(|i| (dims[i] + 2 * p[i] - (d[i] * (k[i] - 1) + 1)) / s[i] + 1).collect();
    let taps: i64 = k.iter().product();
    let positions: i64 = outs.iter().product();
    let in_size: i64 = dims.iter().product();
    let v = values(x);
    let unravel = |mut idx: i64, shape: &[i64]| -> Vec<i64> {
        let mut r = vec![0; shape.len()];
        for i in (0..shape.len()).rev() {
            r[i] = idx % shape[i];
            idx /= shape[i];
        }
        r
    };
    let mut out = Vec::with_capacity((n * c * taps * positions) as usize);
    for a in 0..n {
        for ch in 0..c {
            for t in 0..taps {
                let tap = unravel(t, k);
                for q in 0..positions {
                    let pos = unravel(q, &outs);
                    let mut flat = 0;
                    let mut inside = true;
                    for i in 0..ns {
                        let coord = pos[i] * s[i] - p[i] + tap[i] * d[i];
                        inside &= coord >= 0 && coord < dims[i];
                        flat = flat * dims[i] + coord;
                    }
                    out.push(if inside { v[((a * c + ch) * in_size + flat) as usize] } else { 0.0 });
                }
            }
        }
    }
    let mut shape = vec![n, c * taps];
    shape.extend(&outs);
    from_vec(&out, &shape)
}

#[test]
fn im2col_matches_naive_in_1d_2d_3d() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 7, 6], 20);
    let l = lp("name: 'i' type: 'Im2col' convolution_param { kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2 dilation: 2 }");
    let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
    assert_near("2-D", &y, &naive_im2col(&x, &[3, 2], &[2, 1], &[1, 2], &[2, 2]), 0.0);
    let l = lp("name: 'i' type: 'Im2col' convolution_param { kernel_size: 3 stride: 2 pad: 1 force_nd_im2col: true }");
    let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
    assert_near("2-D nd", &y, &naive_im2col(&x, &[3, 3], &[2, 2], &[1, 1], &[1, 1]), 0.0);
    let x1 = randn(&[2, 3, 9], 21);
    let l = lp("name: 'i' type: 'Im2col' convolution_param { kernel_size: 4 stride: 2 pad: 1 dilation: 2 }");
    let y = run(&l, &[x1.shallow_clone()], &[], Phase::Test).remove(0);
    assert_near("1-D", &y, &naive_im2col(&x1, &[4], &[2], &[1], &[2]), 0.0);
    let x3 = randn(&[1, 2, 4, 5, 3], 22);
    let l = lp("name: 'i' type: 'Im2col' convolution_param { kernel_size: 2 kernel_size: 3 kernel_size: 2 stride: 1 stride: 2 stride: 1 pad: 1 }");
    let y = run(&l, &[x3.shallow_clone()], &[], Phase::Test).remove(0);
    assert_near("3-D", &y, &naive_im2col(&x3, &[2, 3, 2], &[1, 2, 1], &[1, 1, 1], &[1, 1, 1]), 0.0);
}

#[test]
fn im2col_axis_keeps_leading_axes() {
    let _rng = rng_exclusive();
    // Channel axis 2: axes 0 and 1 stay as they are.
    let x = randn(&[2, 3, 4, 6], 23);
    let l = lp("name: 'i' type: 'Im2col' convolution_param { kernel_size: 3 axis: 2 }");
    let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
    assert_eq!(y.size(), vec![2, 3, 12, 4]);
    let want = naive_im2col(&x.reshape([6, 4, 6]), &[3], &[1], &[0], &[1]).reshape([2, 3, 12, 4]);
    assert_near("axis 2", &y, &want, 0.0);
}

#[test]
fn im2col_gradients() {
    let _rng = rng_exclusive();
    let l = lp("name: 'i' type: 'Im2col' convolution_param { kernel_size: 3 stride: 2 pad: 1 }");
    gradcheck(&l, &[randn(&[1, 2, 5, 4], 24)], Phase::Train, vec![]);
    let l = lp("name: 'i' type: 'Im2col' convolution_param { kernel_size: 2 dilation: 2 pad: 1 }");
    gradcheck(&l, &[randn(&[1, 2, 5], 25)], Phase::Train, vec![]);
}

// ---------------------------------------------------------------- Crop

#[test]
fn crop_offsets() {
    let _rng = rng_exclusive();
    let x = Tensor::arange(2 * 3 * 6 * 7, F64).reshape([2, 3, 6, 7]);
    let like = Tensor::zeros([1, 1, 3, 4], F64);
    // Default axis 2, one offset for all cropped axes.
    let y = run(
        &lp("name: 'c' type: 'Crop' crop_param { offset: 2 }"),
        &[x.shallow_clone(), like.shallow_clone()],
        &[],
        Phase::Test,
    )
    .remove(0);
    assert_near("one offset", &y, &x.narrow(2, 2, 3).narrow(3, 2, 4), 0.0);
    // One offset per axis.
    let y = run(
        &lp("name: 'c' type: 'Crop' crop_param { offset: 1 offset: 3 }"),
        &[x.shallow_clone(), like.shallow_clone()],
        &[],
        Phase::Test,
    )
    .remove(0);
    assert_near("per axis", &y, &x.narrow(2, 1, 3).narrow(3, 3, 4), 0.0);
    // No offset: from 0.
    let y = run(&lp("name: 'c' type: 'Crop'"), &[x.shallow_clone(), like.shallow_clone()], &[], Phase::Test).remove(0);
    assert_near("no offset", &y, &x.narrow(2, 0, 3).narrow(3, 0, 4), 0.0);
    // axis 1 crops channels too; axis 0 stays.
    let y = run(
        &lp("name: 'c' type: 'Crop' crop_param { axis: 1 offset: 1 offset: 2 offset: 0 }"),
        &[x.shallow_clone(), like.shallow_clone()],
        &[],
        Phase::Test,
    )
    .remove(0);
    assert_near("axis 1", &y, &x.narrow(1, 1, 1).narrow(2, 2, 3).narrow(3, 0, 4), 0.0);
    // Negative axis.
    let y = run(
        &lp("name: 'c' type: 'Crop' crop_param { axis: -1 offset: 3 }"),
        &[x.shallow_clone(), like.shallow_clone()],
        &[],
        Phase::Test,
    )
    .remove(0);
    assert_near("axis -1", &y, &x.narrow(3, 3, 4), 0.0);
}

#[test]
fn crop_errors() {
    let _rng = rng_exclusive();
    let e = setup_err(&lp("name: 'c' type: 'Crop' crop_param { offset: 4 }"), &[vec![1, 1, 6, 7], vec![1, 1, 3, 4]]);
    assert!(e.contains("out-of-bounds"), "{e}");
    let e = setup_err(
        &lp("name: 'c' type: 'Crop' crop_param { offset: 1 offset: 1 offset: 1 }"),
        &[vec![1, 1, 6, 7], vec![1, 1, 3, 4]],
    );
    assert!(e.contains("number of offset values"), "{e}");
    let e = setup_err(&lp("name: 'c' type: 'Crop'"), &[vec![1, 1, 6, 7]]);
    assert!(e.contains("2 bottom"), "{e}");
}

#[test]
fn crop_gradients() {
    let _rng = rng_exclusive();
    let l = lp("name: 'c' type: 'Crop' crop_param { offset: 1 offset: 2 }");
    gradcheck(&l, &[randn(&[2, 2, 5, 6], 26), randn(&[1, 1, 3, 3], 27)], Phase::Train, vec![1]);
}

// ---------------------------------------------------------------- BatchNorm

fn bn_blobs(c: i64, factor: f64, seed: i64) -> Vec<Tensor> {
    tch::manual_seed(seed);
    vec![Tensor::randn([c], F64) * 0.3 * factor, (Tensor::rand([c], F64) + 0.5) * factor, Tensor::from_slice(&[factor])]
}

#[test]
fn batchnorm_global_stats() {
    let _rng = rng_exclusive();
    let x = randn(&[3, 4, 2, 5], 30);
    let l = lp("name: 'b' type: 'BatchNorm'");
    let blobs = bn_blobs(4, 2.5, 31);
    let y = run(&l, &[x.shallow_clone()], &blobs, Phase::Test).remove(0);
    let mean = (&blobs[0] / 2.5).view([1, 4, 1, 1]);
    let var = (&blobs[1] / 2.5).view([1, 4, 1, 1]);
    let want = (&x - &mean) / (var + f32v(1e-5)).sqrt();
    assert_near("global", &y, &want, 1e-12);
    // A zero scale factor means zero statistics: y = x / sqrt(eps).
    let zero = vec![blobs[0].shallow_clone(), blobs[1].shallow_clone(), Tensor::zeros([1], F64)];
    let l = lp("name: 'b' type: 'BatchNorm' batch_norm_param { eps: 0.01 }");
    let y = run(&l, &[x.shallow_clone()], &zero, Phase::Test).remove(0);
    assert_near("factor 0", &y, &(&x / f32v(0.01).sqrt()), 1e-12);
    // use_global_stats: true in TRAIN; the blobs do not change.
    let l = lp("name: 'b' type: 'BatchNorm' batch_norm_param { use_global_stats: true }");
    let before: Vec<Tensor> = blobs.iter().map(|b| b.copy()).collect();
    let y = run(&l, &[x.shallow_clone()], &blobs, Phase::Train).remove(0);
    assert_near(
        "global in TRAIN",
        &y,
        &((&x - &mean) / ((&blobs[1] / 2.5).view([1, 4, 1, 1]) + f32v(1e-5)).sqrt()),
        1e-12,
    );
    for (a, b) in blobs.iter().zip(&before) {
        assert_near("blobs unchanged", a, b, 0.0);
    }
}

#[test]
fn batchnorm_global_stats_backward_divides_by_std() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 4], 32).set_requires_grad(true);
    let blobs = bn_blobs(3, 1.0, 33);
    let y = run(&lp("name: 'b' type: 'BatchNorm'"), &[x.shallow_clone()], &blobs, Phase::Test).remove(0);
    let dy = randn(&[2, 3, 4], 34);
    let g = Tensor::run_backward(&[(&y * &dy).sum(Kind::Double)], &[&x], false, false).remove(0);
    assert_near("dx", &g, &(&dy / (blobs[1].view([1, 3, 1]) + f32v(1e-5)).sqrt()), 1e-12);
}

#[test]
fn batchnorm_batch_stats_and_running_average() {
    let _rng = rng_exclusive();
    let x = randn(&[4, 3, 2, 3], 35) * 2.0 + 1.0;
    let l = lp("name: 'b' type: 'BatchNorm' batch_norm_param { moving_average_fraction: 0.75 }");
    let blobs = vec![Tensor::zeros([3], F64), Tensor::zeros([3], F64), Tensor::zeros([1], F64)];
    let y = run(&l, &[x.shallow_clone()], &blobs, Phase::Train).remove(0);
    let dims = [0i64, 2, 3];
    let mean = x.mean_dim(dims.as_slice(), true, Kind::Double);
    let var = (&x - &mean).square().mean_dim(dims.as_slice(), true, Kind::Double);
    assert_near("batch", &y, &((&x - &mean) / (&var + f32v(1e-5)).sqrt()), 1e-10);
    let m = 4.0 * 6.0;
    assert_near("factor 1", &blobs[2], &Tensor::from_slice(&[1.0]), 1e-15);
    assert_near("mean_sum 1", &blobs[0], &mean.view([3]), 1e-12);
    assert_near("var_sum 1", &blobs[1], &(var.view([3]) * (m / (m - 1.0))), 1e-12);
    // A second pass on other data.
    let x2 = randn(&[4, 3, 2, 3], 36);
    run(&l, &[x2.shallow_clone()], &blobs, Phase::Train);
    let mean2 = x2.mean_dim(dims.as_slice(), false, Kind::Double);
    let var2 = x2.var_dim(dims.as_slice(), false, false);
    assert_near("factor 2", &blobs[2], &Tensor::from_slice(&[1.75]), 1e-15);
    assert_near("mean_sum 2", &blobs[0], &(mean.view([3]) * 0.75 + mean2), 1e-12);
    let unbiased = |v: Tensor| v * (m / (m - 1.0));
    assert_near("var_sum 2", &blobs[1], &(unbiased(var.view([3])) * 0.75 + unbiased(var2)), 1e-12);
    // The TEST phase then normalizes with the averages.
    let yt = run(&lp("name: 'b' type: 'BatchNorm'"), &[x2.shallow_clone()], &blobs, Phase::Test).remove(0);
    let gm = (&blobs[0] / 1.75).view([1, 3, 1, 1]);
    let gv = (&blobs[1] / 1.75).view([1, 3, 1, 1]);
    assert_near("test after train", &yt, &((&x2 - gm) / (gv + f32v(1e-5)).sqrt()), 1e-12);
}

#[test]
fn batchnorm_2d_and_single_value_per_channel() {
    let _rng = rng_exclusive();
    let x = randn(&[5, 3], 37);
    let blobs = vec![Tensor::zeros([3], F64), Tensor::zeros([3], F64), Tensor::zeros([1], F64)];
    let y = run(&lp("name: 'b' type: 'BatchNorm'"), &[x.shallow_clone()], &blobs, Phase::Train).remove(0);
    let mean = x.mean_dim([0i64].as_slice(), true, Kind::Double);
    let var = x.var_dim([0i64].as_slice(), false, true);
    assert_near("2-D", &y, &((&x - mean) / (var + f32v(1e-5)).sqrt()), 1e-10);
    // m = 1: y = 0 and the variance correction factor is 1.
    let x1 = randn(&[1, 3], 38);
    let y = run(&lp("name: 'b' type: 'BatchNorm'"), &[x1.shallow_clone()], &blobs, Phase::Train).remove(0);
    assert_near("m = 1", &y, &Tensor::zeros([1, 3], F64), 0.0);
}

#[test]
fn batchnorm_gradients_with_batch_stats() {
    let _rng = rng_exclusive();
    gradcheck(&lp("name: 'b' type: 'BatchNorm'"), &[randn(&[3, 4, 2, 3], 39)], Phase::Train, vec![]);
    gradcheck(&lp("name: 'b' type: 'BatchNorm'"), &[randn(&[6, 2], 40)], Phase::Train, vec![]);
}

#[test]
fn batchnorm_blobs_are_not_learnable_and_reject_lr_mult() {
    let _rng = rng_exclusive();
    let l = lp("name: 'b' type: 'BatchNorm'");
    let mut layer = create_layer(&l).unwrap();
    assert!((0..3).all(|j| !layer.param_learnable(j)));
    let setup = layer.setup(&[vec![2, 5, 3, 3]]).unwrap();
    let shapes: Vec<Vec<i64>> = setup.params.iter().map(|p| p.shape.clone()).collect();
    assert_eq!(shapes, vec![vec![5], vec![5], vec![1]]);
    // lr_mult: 0 specs are accepted (old prototxts carry them); others are refused.
    assert!(create_layer(&lp(
        "name: 'b' type: 'BatchNorm' param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 }"
    ))
    .is_ok());
    let e = setup_err(&lp("name: 'b' type: 'BatchNorm' param { lr_mult: 1 }"), &[vec![2, 5]]);
    assert!(e.contains("Cannot configure batch normalization statistics"), "{e}");
}

// ---------------------------------------------------------------- MVN

fn naive_mvn(x: &Tensor, rows: i64, normalize: bool, eps: f64) -> Tensor {
    let v = values(x);
    let dim = v.len() / rows as usize;
    let mut out = Vec::with_capacity(v.len());
    for r in v.chunks(dim) {
        let mean = r.iter().sum::<f64>() / dim as f64;
        let var = r.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / dim as f64;
        for e in r {
            out.push(if normalize { (e - mean) / (var.sqrt() + eps) } else { e - mean });
        }
    }
    from_vec(&out, &x.size())
}

#[test]
fn mvn_matches_naive() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 3, 4, 5], 41) * 3.0 + 2.0;
    for (across, normalize, eps) in [(false, true, 1e-9), (true, true, 0.1), (false, false, 1e-9), (true, false, 1e-9)]
    {
        let l = lp(&format!(
            "name: 'm' type: 'MVN' mvn_param {{ across_channels: {across} normalize_variance: {normalize} eps: {eps} }}"
        ));
        let y = run(&l, &[x.shallow_clone()], &[], Phase::Test).remove(0);
        let rows = if across { 2 } else { 6 };
        assert_near(&format!("MVN {across} {normalize}"), &y, &naive_mvn(&x, rows, normalize, f32v(eps)), 1e-12);
    }
    // The top takes the legacy 4-D shape; a 2-D bottom normalizes each single value to 0.
    let y = run(&lp("name: 'm' type: 'MVN'"), &[randn(&[3, 4], 42)], &[], Phase::Test).remove(0);
    assert_eq!(y.size(), vec![3, 4, 1, 1]);
    assert_near("2-D", &y, &Tensor::zeros([3, 4, 1, 1], F64), 0.0);
    let y =
        run(&lp("name: 'm' type: 'MVN' mvn_param { across_channels: true }"), &[randn(&[3, 4], 43)], &[], Phase::Test)
            .remove(0);
    assert_near("2-D across", &y, &naive_mvn(&randn(&[3, 4], 43), 3, true, f32v(1e-9)).view([3, 4, 1, 1]), 1e-12);
}

#[test]
fn mvn_backward_is_caffes_formula() {
    let _rng = rng_exclusive();
    // Caffe: dx = (dy − mean(dy) − mean(dy·y)·y) / (σ + eps). A large eps
    // makes the difference from the true gradient visible.
    let eps = 0.5; // exact in f32
    let x = (randn(&[2, 3, 4], 44) * 0.7).set_requires_grad(true);
    let l = lp(&format!("name: 'm' type: 'MVN' mvn_param {{ eps: {eps} }}"));
    let y = run(&l, &[x.shallow_clone()], &[], Phase::Train).remove(0);
    let dy = randn(&[2, 3, 4, 1], 45);
    let g = Tensor::run_backward(&[(&y * &dy).sum(Kind::Double)], &[&x], false, false).remove(0);
    let (xv, yv, dyv) = (x.detach().reshape([6, 4]), y.detach().reshape([6, 4]), dy.reshape([6, 4]));
    let d = [1i64];
    let mean = xv.mean_dim(d.as_slice(), true, Kind::Double);
    let sigma = (&xv - &mean).square().mean_dim(d.as_slice(), true, Kind::Double).sqrt();
    let want = (&dyv
        - dyv.mean_dim(d.as_slice(), true, Kind::Double)
        - (&dyv * &yv).mean_dim(d.as_slice(), true, Kind::Double) * &yv)
        / (sigma + eps);
    assert_near("Caffe's MVN backward", &g.reshape([6, 4]), &want, 1e-12);
    // A constant slice: finite gradient, zero output.
    let c = Tensor::ones([1, 1, 3], F64).set_requires_grad(true);
    let y = run(&lp("name: 'm' type: 'MVN'"), &[c.shallow_clone()], &[], Phase::Train).remove(0);
    let g = Tensor::run_backward(
        &[(&y * Tensor::from_slice(&[1.0, 2.0, 4.0]).view([1, 1, 3, 1])).sum(Kind::Double)],
        &[&c],
        false,
        false,
    )
    .remove(0);
    assert!(values(&g).iter().all(|v| v.is_finite()));
    assert_near("constant slice", &y, &Tensor::zeros([1, 1, 3, 1], F64), 0.0);
}

#[test]
fn mvn_gradients() {
    let _rng = rng_exclusive();
    // With the default eps (1e-9) Caffe's backward equals the true gradient to ~1e-9.
    let x = randn(&[2, 3, 3, 2], 46);
    gradcheck(&lp("name: 'm' type: 'MVN'"), &[x.shallow_clone()], Phase::Train, vec![]);
    gradcheck(
        &lp("name: 'm' type: 'MVN' mvn_param { across_channels: true }"),
        &[x.shallow_clone()],
        Phase::Train,
        vec![],
    );
    gradcheck(&lp("name: 'm' type: 'MVN' mvn_param { normalize_variance: false }"), &[x], Phase::Train, vec![]);
}

/// A forward that autograd does not record convolves on weights packed once
/// for oneDNN; every way the weights change must be seen: a write through
/// libtorch (the solver's update), weights copied in from a trained net,
/// another net's weights shared in; and a new input shape. Grouped, strided,
/// dilated and padded convolutions give libtorch's values.
#[test]
fn conv_inference_sees_every_change_of_its_weights() {
    let _rng = rng_exclusive();
    let text = r#"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "conv2" type: "Convolution" bottom: "conv" top: "conv2"
        convolution_param { num_output: 6 kernel_size: 3 pad: 2 stride: 2 dilation: 2 group: 2
                            weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }
"#;
    tch::manual_seed(21);
    let mut a = crate::common::net(text, "conv_cache.prototxt", Phase::Test).unwrap();
    tch::manual_seed(22);
    let b = crate::common::net(text, "conv_cache.prototxt", Phase::Test).unwrap();
    let check = |a: &mut caffe_tch::net::Net, x: &Tensor, what: &str| {
        if a.blob_shape("data") != Some(&x.size()) {
            a.reshape_input("data", &x.size()).unwrap();
            a.reshape().unwrap();
        }
        a.set_input("data", x).unwrap();
        a.forward_inference().unwrap();
        let (w, bias) = (a.layer_param(1, 0).unwrap(), a.layer_param(1, 1).unwrap());
        let conv = x.conv2d(&w, Some(&bias), [1, 1], [1, 1], [1, 1], 1);
        assert_near(what, a.blob("conv").unwrap(), &conv, 1e-5);
        let (w2, bias2) = (a.layer_param(2, 0).unwrap(), a.layer_param(2, 1).unwrap());
        let conv2 = conv.conv2d(&w2, Some(&bias2), [2, 2], [2, 2], [2, 2], 2);
        assert_near(what, a.blob("conv2").unwrap(), &conv2, 1e-4);
        a.blob("conv2").unwrap().copy()
    };
    let x = randn(&[2, 3, 9, 9], 23).to_kind(Kind::Float);
    let first = check(&mut a, &x, "first forward");
    let again = check(&mut a, &x, "second forward, weights unchanged");
    assert_eq!(max_diff(&first, &again), 0.0);

    // In place through libtorch, as the solver updates.
    for p in a.learnable_params() {
        tch::no_grad(|| p.data.shallow_clone().f_mul_scalar_(-2.0).map(drop)).unwrap();
    }
    let scaled = check(&mut a, &x, "after an in-place update");
    assert!(max_diff(&first, &scaled) > 0.1, "the output follows the new weights");

    // Another input shape.
    let _ = check(&mut a, &randn(&[3, 3, 11, 7], 25).to_kind(Kind::Float), "a new input shape");

    // Copied in from another net's weights (a caffemodel's layers).
    a.copy_trained_layers_from(&b.to_proto(false).unwrap(), "b").unwrap();
    let _ = check(&mut a, &x, "after copy_trained_layers_from");

    // Shared with another net: other tensors altogether.
    tch::manual_seed(24);
    let c = crate::common::net(text, "conv_cache.prototxt", Phase::Test).unwrap();
    a.share_weights_with(&c).unwrap();
    let _ = check(&mut a, &x, "after share_weights_with");
    tch::no_grad(|| c.learnable_params()[0].data.shallow_clone().f_add_scalar_(1.0).map(drop)).unwrap();
    let _ = check(&mut a, &x, "after the sharing net's weights changed");
}

// ---------------------------------------------------------------- Pooling's mask, Upsample, Interp

/// Caffe's CPU MAX pooling with its mask: the first strict maximum in row-major
/// order from -FLT_MAX, its index h·W + w in the input plane, -1 if none.
fn naive_pool_mask(x: &Tensor, k: [i64; 2], s: [i64; 2], p: [i64; 2], ceil: bool) -> (Tensor, Tensor) {
    let sz = x.size();
    let (h, w) = (sz[2], sz[3]);
    let oh = caffe_pooled(h, k[0], s[0], p[0], ceil);
    let ow = caffe_pooled(w, k[1], s[1], p[1], ceil);
    let v = values(x);
    let (mut out, mut mask) = (Vec::new(), Vec::new());
    for plane in 0..(sz[0] * sz[1]) {
        let base = (plane * h * w) as usize;
        for i in 0..oh {
            for j in 0..ow {
                let (hs, ws) = (i * s[0] - p[0], j * s[1] - p[1]);
                let (he, we) = ((hs + k[0]).min(h), (ws + k[1]).min(w));
                let (mut m, mut at) = (-(f32::MAX as f64), -1i64);
                for ii in hs.max(0)..he {
                    for jj in ws.max(0)..we {
                        let value = v[base + (ii * w + jj) as usize];
                        if value > m {
                            m = value;
                            at = ii * w + jj;
                        }
                    }
                }
                out.push(m);
                mask.push(at as f64);
            }
        }
    }
    (from_vec(&out, &[sz[0], sz[1], oh, ow]), from_vec(&mask, &[sz[0], sz[1], oh, ow]))
}

#[test]
fn pooling_mask_is_caffes_first_argmax() {
    let _rng = rng_exclusive();
    let mut configs = 0;
    for (h, w) in [(5, 5), (6, 7), (7, 4)] {
        // Values in tenths of a small range: many ties, which the mask breaks as Caffe does.
        let x = (randn(&[2, 2, h, w], h * 10 + w) * 2.0).round() / 10.0;
        for k in 2..=3i64 {
            for s in 1..=3i64 {
                for p in 0..k {
                    for ceil in [true, false] {
                        let (kw, pw) = (if p > 0 { k } else { k + 1 }, p.min(1));
                        let text = format!(
                            "name: 'p' type: 'Pooling' top: 'p' top: 'mask' pooling_param {{ pool: MAX kernel_h: {k} \
                             kernel_w: {kw} stride: {s} pad_h: {p} pad_w: {pw} round_mode: {} }}",
                            if ceil { "CEIL" } else { "FLOOR" }
                        );
                        let tops = run(&lp(&text), &[x.shallow_clone()], &[], Phase::Test);
                        assert_eq!(tops.len(), 2, "{text}");
                        let (want, want_mask) = naive_pool_mask(&x, [k, kw], [s, s], [p, pw], ceil);
                        assert_near(&text, &tops[0], &want, 0.0);
                        assert_near(&format!("{text}: mask"), &tops[1], &want_mask, 0.0);
                        configs += 1;
                    }
                }
            }
        }
    }
    assert!(configs > 50);
    // The mask gets no gradient; the pooled top's is MAX's.
    let x = randn(&[2, 2, 6, 5], 6);
    let text =
        "name: 'm' type: 'Pooling' top: 'p' top: 'mask' pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }";
    gradcheck(&lp(text), &[x], Phase::Train, vec![]);
    // Only MAX has the second top.
    let e = setup_err(
        "name: 'a' type: 'Pooling' top: 'p' top: 'mask' pooling_param { pool: AVE kernel_size: 2 }",
        &[vec![1, 1, 4, 4]],
    );
    assert!(e.contains("only MAX pooling has a second top"), "{e}");
}

#[test]
fn upsample_nearest_repeats_each_value() {
    let _rng = rng_exclusive();
    let x = from_vec(&[1., 2., 3., 4., 5., 6.], &[1, 1, 2, 3]);
    let tops = run(&lp("type: 'Upsample' upsample_param { scale: 2 }"), &[x.shallow_clone()], &[], Phase::Test);
    #[rustfmt::skip]
    let want = [1., 1., 2., 2., 3., 3.,
                1., 1., 2., 2., 3., 3.,
                4., 4., 5., 5., 6., 6.,
                4., 4., 5., 5., 6., 6.];
    layer::assert_shaped_values("scale 2", &tops[0], &want, &[1, 1, 4, 6]);
    // No scale: the YOLOv3 forks' default of 1.
    let tops = run(&lp("type: 'Upsample'"), &[x.shallow_clone()], &[], Phase::Test);
    layer::assert_shaped_values("scale 1", &tops[0], &values(&x), &[1, 1, 2, 3]);
    let tops = run(&lp("type: 'Upsample' upsample_param { scale: 3 }"), &[randn(&[2, 3, 4, 5], 3)], &[], Phase::Test);
    assert_eq!(tops[0].size(), vec![2, 3, 12, 15]);
    // The gradient sums over the copies.
    gradcheck(&lp("type: 'Upsample' upsample_param { scale: 3 }"), &[randn(&[2, 2, 3, 2], 4)], Phase::Train, vec![]);
    let e = setup_err("type: 'Upsample' upsample_param { scale: 0 }", &[vec![1, 1, 2, 2]]);
    assert!(e.contains("scale must be at least 1"), "{e}");
    let e = setup_err("type: 'Upsample' upsample_param { scale: 2 }", &[vec![1, 4]]);
    assert!(e.contains("needs a 4-D bottom"), "{e}");
    // No bottom at all (the fuzzer's first find: setup read the bottom before checking).
    let e = setup_err("type: 'Upsample'", &[]);
    assert!(e.contains("takes 1 to 2 bottom blobs, got 0"), "{e}");
}

/// SegNet's unpooling, as its CPU loop: a zero plane, each value written at its mask's index.
fn naive_unpool(x: &Tensor, mask: &Tensor, out: [i64; 2]) -> Tensor {
    let sz = x.size();
    let (v, m) = (values(x), values(mask));
    let plane_in = (sz[2] * sz[3]) as usize;
    let plane_out = (out[0] * out[1]) as usize;
    let mut y = vec![0.0; (sz[0] * sz[1]) as usize * plane_out];
    for plane in 0..(sz[0] * sz[1]) as usize {
        for i in 0..plane_in {
            y[plane * plane_out + m[plane * plane_in + i] as usize] = v[plane * plane_in + i];
        }
    }
    from_vec(&y, &[sz[0], sz[1], out[0], out[1]])
}

#[test]
fn upsample_unpools_at_the_pooling_mask() {
    let _rng = rng_exclusive();
    let pool =
        lp("name: 'pool' type: 'Pooling' top: 'p' top: 'mask' pooling_param { pool: MAX kernel_size: 2 stride: 2 }");
    for (h, w, upsample, out) in [
        (6, 8, "scale: 2", [6, 8]),
        (6, 8, "", [6, 8]), // SegNet's default scale is 2
        (5, 7, "scale: 2 pad_out_h: true pad_out_w: true", [5, 7]),
        (5, 7, "upsample_h: 5 upsample_w: 7", [5, 7]),
        (6, 8, "scale_h: 2 scale_w: 2", [6, 8]),
    ] {
        let x = randn(&[2, 3, h, w], h + w);
        let tops = run(&pool, &[x], &[], Phase::Test);
        let text = format!("type: 'Upsample' upsample_param {{ {upsample} }}");
        let y = run(&lp(&text), &[tops[0].shallow_clone(), tops[1].shallow_clone()], &[], Phase::Test).remove(0);
        assert_near(&text, &y, &naive_unpool(&tops[0], &tops[1], out), 0.0);
        // Each pooled maximum is back where it was; everything else is 0.
        assert_eq!(y.ne(0.0).sum(Kind::Int64).int64_value(&[]), tops[0].numel() as i64, "{text}");
    }
    // A hand-made mask: values at 0, 5, 10 and 15 of a 4x4 plane (the diagonal).
    let x = from_vec(&[1., 2., 3., 4.], &[1, 1, 2, 2]);
    let mask = from_vec(&[0., 5., 10., 15.], &[1, 1, 2, 2]);
    let y = run(
        &lp("type: 'Upsample' upsample_param { scale: 2 }"),
        &[x.shallow_clone(), mask.shallow_clone()],
        &[],
        Phase::Test,
    );
    let want: Vec<f64> = (0..16).map(|i| if i % 5 == 0 { (i / 5 + 1) as f64 } else { 0.0 }).collect();
    layer::assert_shaped_values("diagonal", &y[0], &want, &[1, 1, 4, 4]);
    // The gradient reads the top's gradient at the mask's index; the mask gets none.
    let x = randn(&[2, 2, 6, 4], 9);
    let tops = run(&pool, &[x], &[], Phase::Test);
    gradcheck(
        &lp("type: 'Upsample' upsample_param { scale: 2 }"),
        &[tops[0].shallow_clone(), tops[1].shallow_clone()],
        Phase::Train,
        vec![1],
    );
    // A mask index past the output is an error, not a write out of bounds.
    let e = layer::forward_err(
        "type: 'Upsample' upsample_param { scale: 2 }",
        &[x_small(), from_vec(&[0., 5., 10., 16.], &[1, 1, 2, 2])],
        &[],
        Phase::Test,
    );
    assert!(e.contains("mask holds index 16 where the 4x4 output has 0 to 15"), "{e}");
    let e = layer::forward_err(
        "type: 'Upsample' upsample_param { scale: 2 }",
        &[x_small(), from_vec(&[0., -1., 10., 15.], &[1, 1, 2, 2])],
        &[],
        Phase::Test,
    );
    assert!(e.contains("mask holds index -1"), "{e}");
    for (params, want) in [
        ("scale: 2", "the mask (second bottom) has shape [1, 1, 3, 2]"),
        ("scale: 1", "the scale must be over 1"),
        ("scale: 3 pad_out_h: true", "pad_out_h and pad_out_w need a scale of 2"),
        ("upsample_h: 1 upsample_w: 4", "upsample_h and upsample_w must be over 1"),
        ("scale: 2 scale_h: 2 scale_w: 2", "give upsample_h and upsample_w, or scale"),
    ] {
        let mask_shape = if params == "scale: 2" { vec![1, 1, 3, 2] } else { vec![1, 1, 2, 2] };
        let e = setup_err(&format!("type: 'Upsample' upsample_param {{ {params} }}"), &[vec![1, 1, 2, 2], mask_shape]);
        assert!(e.contains(want), "{params}: {e}");
    }
}

fn x_small() -> Tensor {
    from_vec(&[1., 2., 3., 4.], &[1, 1, 2, 2])
}

/// DeepLab's CPU interpolation in f32, as its loop computes it: corners
/// aligned, the ratio and weights in float, rows and columns cropped first.
fn naive_interp(x: &Tensor, crop: i64, eff: [i64; 2], out: [i64; 2]) -> Tensor {
    let sz = x.size();
    let (h, w) = (sz[2], sz[3]);
    let v: Vec<f32> = values(x).iter().map(|&a| a as f32).collect();
    let ratio = |i: i64, o: i64| if o > 1 { (i - 1) as f32 / (o - 1) as f32 } else { 0.0f32 };
    let (rh, rw) = (ratio(eff[0], out[0]), ratio(eff[1], out[1]));
    let mut y = Vec::new();
    for plane in 0..(sz[0] * sz[1]) {
        let at = |r: i64, c: i64| v[(plane * h * w + (r + crop) * w + c + crop) as usize];
        for i in 0..out[0] {
            let hr = rh * i as f32;
            let h1 = hr as i64;
            let hp = if h1 < eff[0] - 1 { 1 } else { 0 };
            let l1 = hr - h1 as f32;
            let l0 = 1.0f32 - l1;
            for j in 0..out[1] {
                let wr = rw * j as f32;
                let w1 = wr as i64;
                let wp = if w1 < eff[1] - 1 { 1 } else { 0 };
                let m1 = wr - w1 as f32;
                let m0 = 1.0f32 - m1;
                let value = l0 * (m0 * at(h1, w1) + m1 * at(h1, w1 + wp))
                    + l1 * (m0 * at(h1 + hp, w1) + m1 * at(h1 + hp, w1 + wp));
                y.push(value as f64);
            }
        }
    }
    from_vec(&y, &[sz[0], sz[1], out[0], out[1]]).to_kind(Kind::Float)
}

#[test]
fn interp_is_deeplabs_bilinear_interpolation() {
    let _rng = rng_exclusive();
    let x = layer::randn_f32(&[2, 3, 9, 13], 41);
    for (params, crop, eff, out) in [
        ("zoom_factor: 3", 0, [9, 13], [25, 37]),
        ("shrink_factor: 2", 0, [9, 13], [5, 7]),
        ("shrink_factor: 2 zoom_factor: 4", 0, [9, 13], [17, 25]),
        ("height: 65 width: 17", 0, [9, 13], [65, 17]),
        ("height: 1 width: 1", 0, [9, 13], [1, 1]),
        ("height: 9 width: 13", 0, [9, 13], [9, 13]),
        ("zoom_factor: 2 pad_beg: -1 pad_end: -2", 1, [6, 10], [11, 19]),
    ] {
        let text = format!("type: 'Interp' interp_param {{ {params} }}");
        let y = run(&lp(&text), &[x.shallow_clone()], &[], Phase::Test).remove(0);
        let want = naive_interp(&x, crop, eff, out);
        let scale = want.abs().max().double_value(&[]);
        assert_near(&text, &y, &want, 2e-7 * scale);
    }
    // The second bottom gives the output size.
    let reference = Tensor::zeros([2, 1, 20, 4], (Kind::Float, Device::Cpu));
    let y = run(&lp("type: 'Interp'"), &[x.shallow_clone(), reference.shallow_clone()], &[], Phase::Test).remove(0);
    let want = naive_interp(&x, 0, [9, 13], [20, 4]);
    assert_near("second bottom", &y, &want, 2e-7 * want.abs().max().double_value(&[]));
    // soeaver's fork says so with use_blob_size (its FPN nets): the same.
    let fork = lp("type: 'Interp' interp_param { use_blob_size: true }");
    let y = run(&fork, &[x.shallow_clone(), reference], &[], Phase::Test).remove(0);
    assert_near("use_blob_size", &y, &want, 2e-7 * want.abs().max().double_value(&[]));
    // The gradient is the interpolation's adjoint.
    for params in ["zoom_factor: 2", "height: 4 width: 7 pad_beg: -1", "shrink_factor: 3"] {
        let text = format!("type: 'Interp' interp_param {{ {params} }}");
        gradcheck(&lp(&text), &[randn(&[2, 2, 7, 8], 42)], Phase::Train, vec![]);
    }
    for (params, want) in [
        ("", "interp_param must give height and width, zoom_factor or shrink_factor"),
        ("height: 5", "interp_param must give height and width"),
        ("zoom_factor: 0", "zoom_factor (0) must be at least 1"),
        ("shrink_factor: -1", "shrink_factor (-1) must be at least 1"),
        ("zoom_factor: 2 pad_beg: 1", "must be zero or negative"),
        ("zoom_factor: 2 pad_beg: -3 pad_end: -3", "leaves nothing of the 6x6 input"),
        ("height: 0 width: 3", "output size 0x3 is not positive"),
        ("use_blob_size: true", "use_blob_size takes the output size from a second bottom, and this Interp has one"),
    ] {
        let e = setup_err(&format!("type: 'Interp' interp_param {{ {params} }}"), &[vec![1, 1, 6, 6]]);
        assert!(e.contains(want), "{params}: {e}");
    }
    let e = setup_err("type: 'Interp' interp_param { zoom_factor: 2 }", &[vec![1, 1, 6, 6], vec![1, 1, 3, 3]]);
    assert!(e.contains("cannot give one too"), "{e}");
}

#[test]
fn depthwise_convolutions_equal_a_convolution_with_a_group_per_channel() {
    let _rng = rng_exclusive();
    let x = randn(&[2, 6, 7, 8], 71);
    let (w, b) = (randn(&[6, 1, 3, 3], 72), randn(&[6], 73));
    let conv = "convolution_param { num_output: 6 group: 6 kernel_size: 3 pad: 1 stride: 2 dilation: 1 }";
    let want = run(
        &lp(&format!("type: 'Convolution' {conv}")),
        &[x.shallow_clone()],
        &[w.shallow_clone(), b.shallow_clone()],
        Phase::Test,
    )
    .remove(0);
    let y = run(
        &lp(&format!("type: 'DepthwiseConvolution' {conv}")),
        &[x.shallow_clone()],
        &[w.shallow_clone(), b.shallow_clone()],
        Phase::Test,
    );
    assert_near("DepthwiseConvolution", &y[0], &want, 0.0);
    // ConvolutionDepthwise reads neither num_output nor group: one filter per channel.
    let text = "type: 'ConvolutionDepthwise' convolution_param { num_output: 99 kernel_size: 3 pad: 1 stride: 2 }";
    let (setup, tops) = run_phase(text, &[x.shallow_clone()], &[w.shallow_clone(), b.shallow_clone()], Phase::Test);
    let shapes: Vec<Vec<i64>> = setup.params.iter().map(|p| p.shape.clone()).collect();
    assert_eq!(shapes, [vec![6, 1, 3, 3], vec![6]]);
    assert_near("ConvolutionDepthwise", &tops[0], &want, 0.0);
    gradcheck(
        &lp("type: 'ConvolutionDepthwise' convolution_param { kernel_size: 3 pad: 1 dilation: 2 weight_filler { type: 'gaussian' } }"),
        &[randn(&[2, 3, 6, 5], 74)],
        Phase::Train,
        vec![],
    );
}
