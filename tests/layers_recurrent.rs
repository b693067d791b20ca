//! RNN, LSTM and LSTMUnit: Caffe's blob order and shapes, a scalar-loop
//! reference, gradient checks (with a sequence restart mid-batch), the
//! continuation reset, the state Caffe carries from one batch to the next,
//! expose_hidden, Caffe's gradient cut-offs, shape errors, and a net in the
//! style of Caffe's LRCN captioning net.
use caffe_tch::layers::gradcheck::GradCheck;
use caffe_tch::layers::{create_layer, Layer, SetupOut, Shape};
use caffe_tch::net::Net;
use caffe_tch::proto::binary::make_blob;
use caffe_tch::proto::caffe::{LayerParameter, NetParameter, Phase};

use tch::{Device, Kind, Tensor};

use crate::common::layer::{ctx, lp as layer_param, setup_err, values};
use crate::common::rng_exclusive;

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

fn rnn_param(kind: &str, hidden: usize, expose: bool) -> LayerParameter {
    layer_param(&format!(
        r#"name: "rec" type: "{kind}"
           recurrent_param {{ num_output: {hidden} expose_hidden: {expose}
             weight_filler {{ type: "gaussian" std: 0.5 }}
             bias_filler {{ type: "gaussian" std: 0.3 }} }}"#
    ))
}

fn setup(lp: &LayerParameter, bottoms: &[&Tensor]) -> (Box<dyn Layer>, SetupOut) {
    let mut layer = create_layer(lp).expect("create");
    let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
    let out = layer.setup(&shapes).expect("setup");
    (layer, out)
}

/// Random f64 values for each declared blob.
fn random_params(out: &SetupOut, seed: i64) -> Vec<Tensor> {
    tch::manual_seed(seed);
    out.params.iter().map(|d| Tensor::randn(d.shape.as_slice(), F64) * 0.5).collect()
}

fn uniform(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand(shape, F64) * 2.0 - 1.0
}

fn cont_tensor(rows: &[&[f64]]) -> Tensor {
    let t = rows.len() as i64;
    let n = rows[0].len() as i64;
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).reshape([t, n])
}

fn forward(layer: &mut Box<dyn Layer>, bottoms: &[&Tensor], params: &[Tensor]) -> Vec<Tensor> {
    let b: Vec<Tensor> = bottoms.iter().map(|t| t.shallow_clone()).collect();
    layer.forward(&ctx(Phase::Train), &b, params).expect("forward")
}

fn assert_close(what: &str, ours: &[f64], reference: &[f64], tol: f64) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}[{i}]: {a} vs reference {b}");
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// Row-major matrix-vector product: rows of `w` (rows×cols) with `v`.
fn matvec(w: &[f64], rows: usize, v: &[f64]) -> Vec<f64> {
    let cols = v.len();
    (0..rows).map(|r| (0..cols).map(|c| w[r * cols + c] * v[c]).sum()).collect()
}

/// The naive time loop, one scalar at a time, for RNN (`lstm == false`) or LSTM.
/// `x` is T×N×D, `cont` T×N, `x_static` N×S; params in Caffe's blob order.
/// Returns the output (T×N×H, flattened), the final h and (LSTM) c.
#[allow(clippy::too_many_arguments)]
fn reference(
    lstm: bool,
    hidden: usize,
    x: &[f64],
    cont: &[f64],
    t_len: usize,
    n: usize,
    x_static: Option<&[f64]>,
    params: &[Vec<f64>],
    h0: Option<(&[f64], &[f64])>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = x.len() / (t_len * n);
    let gates = if lstm { 4 * hidden } else { hidden };
    let (w_x, b_x) = (&params[0], &params[1]);
    let (w_s, rest) = match x_static {
        Some(_) => (Some(&params[2]), &params[3..]),
        None => (None, &params[2..]),
    };
    let w_h = &rest[0];
    let mut h = vec![vec![0.0; hidden]; n];
    let mut c = vec![vec![0.0; hidden]; n];
    if let Some((h_init, c_init)) = h0 {
        for s in 0..n {
            h[s].copy_from_slice(&h_init[s * hidden..(s + 1) * hidden]);
            if lstm {
                c[s].copy_from_slice(&c_init[s * hidden..(s + 1) * hidden]);
            }
        }
    }
    let mut out = Vec::new();
    for t in 0..t_len {
        for s in 0..n {
            let k = cont[t * n + s];
            let xt = &x[(t * n + s) * d..(t * n + s + 1) * d];
            let h_conted: Vec<f64> = h[s].iter().map(|v| v * k).collect();
            let from_x = matvec(w_x, gates, xt);
            let from_h = matvec(w_h, gates, &h_conted);
            let mut pre: Vec<f64> = (0..gates).map(|j| from_h[j] + from_x[j] + b_x[j]).collect();
            if let (Some(ws), Some(xs)) = (w_s, x_static) {
                let sd = xs.len() / n;
                let from_s = matvec(ws, gates, &xs[s * sd..(s + 1) * sd]);
                for j in 0..gates {
                    pre[j] += from_s[j];
                }
            }
            if lstm {
                for j in 0..hidden {
                    let i = sigmoid(pre[j]);
                    let f = k * sigmoid(pre[hidden + j]);
                    let o = sigmoid(pre[2 * hidden + j]);
                    let g = pre[3 * hidden + j].tanh();
                    c[s][j] = f * c[s][j] + i * g;
                    h[s][j] = o * c[s][j].tanh();
                }
                out.extend_from_slice(&h[s]);
            } else {
                for j in 0..hidden {
                    h[s][j] = pre[j].tanh();
                }
                let (w_o, b_o) = (&rest[1], &rest[2]);
                let o = matvec(w_o, hidden, &h[s]);
                out.extend((0..hidden).map(|j| (o[j] + b_o[j]).tanh()));
            }
        }
    }
    (out, h.concat(), c.concat())
}

// ---------------------------------------------------------------- blob layout

#[test]
fn blobs_follow_caffe_order_and_shapes() {
    let _rng = rng_exclusive();
    let x = Tensor::zeros([5, 2, 3, 2], F64);
    let cont = Tensor::zeros([5, 2], F64);
    let xs = Tensor::zeros([2, 4, 1], F64);
    let h0 = Tensor::zeros([1, 2, 7], F64);
    let shapes = |o: &SetupOut| o.params.iter().map(|p| p.shape.clone()).collect::<Vec<_>>();

    // RNN: W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o.
    let (_, o) = setup(&rnn_param("RNN", 7, false), &[&x, &cont]);
    assert_eq!(shapes(&o), vec![vec![7, 6], vec![7], vec![7, 7], vec![7, 7], vec![7]]);
    assert_eq!(o.tops, vec![vec![5, 2, 7]]);
    let (_, o) = setup(&rnn_param("RNN", 7, false), &[&x, &cont, &xs]);
    assert_eq!(shapes(&o), vec![vec![7, 6], vec![7], vec![7, 4], vec![7, 7], vec![7, 7], vec![7]]);
    let (_, o) = setup(&rnn_param("RNN", 7, true), &[&x, &cont, &xs, &h0]);
    assert_eq!(o.params.len(), 6);
    assert_eq!(o.tops, vec![vec![5, 2, 7], vec![1, 2, 7]]);

    // LSTM: W_xc, b_c, [W_xc_static], W_hc, with 4·H gate rows.
    let (_, o) = setup(&rnn_param("LSTM", 7, false), &[&x, &cont]);
    assert_eq!(shapes(&o), vec![vec![28, 6], vec![28], vec![28, 7]]);
    assert_eq!(o.tops, vec![vec![5, 2, 7]]);
    let (_, o) = setup(&rnn_param("LSTM", 7, false), &[&x, &cont, &xs]);
    assert_eq!(shapes(&o), vec![vec![28, 6], vec![28], vec![28, 4], vec![28, 7]]);
    let (_, o) = setup(&rnn_param("LSTM", 7, true), &[&x, &cont, &h0, &h0]);
    assert_eq!(o.params.len(), 3);
    assert_eq!(o.tops, vec![vec![5, 2, 7], vec![1, 2, 7], vec![1, 2, 7]]);
    // Fillers: weights from weight_filler, biases from bias_filler.
    assert_eq!(o.params[0].filler.std(), 0.5);
    assert_eq!(o.params[1].filler.std(), 0.3);
    assert_eq!(o.params[2].filler.std(), 0.5);

    // LSTMUnit: no blobs; tops c and h shaped like c_prev.
    let unit = layer_param(r#"name: "u" type: "LSTMUnit""#);
    let (_, o) = setup(&unit, &[&h0, &Tensor::zeros([1, 2, 28], F64), &Tensor::zeros([1, 2], F64)]);
    assert!(o.params.is_empty());
    assert_eq!(o.tops, vec![vec![1, 2, 7], vec![1, 2, 7]]);
}

// ------------------------------------------------------- scalar reference

fn check_against_reference(kind: &str, t_len: i64, with_static: bool) {
    let lstm = kind == "LSTM";
    let (n, hidden) = (3i64, 4usize);
    let x = uniform(&[t_len, n, 2, 3], 11);
    // Stream 1 restarts at step 2, stream 2 at the last step.
    let mut rows: Vec<Vec<f64>> = vec![vec![0.0; n as usize]];
    for t in 1..t_len {
        rows.push(vec![1.0, if t == 1 { 0.0 } else { 1.0 }, if t == t_len - 1 { 0.0 } else { 1.0 }]);
    }
    let row_refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
    let cont = cont_tensor(&row_refs);
    let xs = uniform(&[n, 5], 12);
    let mut bottoms = vec![&x, &cont];
    if with_static {
        bottoms.push(&xs);
    }
    let (mut layer, o) = setup(&rnn_param(kind, hidden, false), &bottoms);
    let params = random_params(&o, 13);
    let tops = forward(&mut layer, &bottoms, &params);
    let pv: Vec<Vec<f64>> = params.iter().map(values).collect();
    let xs_v = values(&xs);
    let (want, _, _) = reference(
        lstm,
        hidden,
        &values(&x),
        &values(&cont),
        t_len as usize,
        n as usize,
        with_static.then_some(xs_v.as_slice()),
        &pv,
        None,
    );
    assert_eq!(tops.len(), 1);
    assert_eq!(tops[0].size(), vec![t_len, n, hidden as i64]);
    assert_close(&format!("{kind} T={t_len} static={with_static}"), &values(&tops[0]), &want, 1e-12);
}

#[test]
fn rnn_matches_scalar_reference() {
    let _rng = rng_exclusive();
    check_against_reference("RNN", 2, false);
    check_against_reference("RNN", 4, false);
    check_against_reference("RNN", 3, true);
}

#[test]
fn lstm_matches_scalar_reference() {
    let _rng = rng_exclusive();
    check_against_reference("LSTM", 2, false);
    check_against_reference("LSTM", 4, false);
    check_against_reference("LSTM", 3, true);
}

#[test]
fn lstm_two_steps_by_hand() {
    let _rng = rng_exclusive();
    // H = 1, one input feature, one stream: every number can be followed on paper.
    let lp = layer_param(r#"name: "l" type: "LSTM" recurrent_param { num_output: 1 }"#);
    let x = Tensor::from_slice(&[0.5f64, -1.0]).reshape([2, 1, 1]);
    let cont = Tensor::from_slice(&[0.0f64, 1.0]).reshape([2, 1]);
    let (mut layer, _) = setup(&lp, &[&x, &cont]);
    // Gate rows i, f, o, g.
    let w_xc = Tensor::from_slice(&[1.0f64, 2.0, -1.0, 0.5]).reshape([4, 1]);
    let b_c = Tensor::from_slice(&[0.1f64, 0.2, 0.3, 0.4]);
    let w_hc = Tensor::from_slice(&[0.7f64, -0.3, 0.2, 1.5]).reshape([4, 1]);
    let tops = forward(&mut layer, &[&x, &cont], &[w_xc, b_c, w_hc]);
    let h = values(&tops[0]);
    // Step 1 (cont 0): gates = W_xc·0.5 + b = [0.6, 1.2, -0.2, 0.65].
    let c1 = sigmoid(0.6) * 0.65f64.tanh();
    let h1 = sigmoid(-0.2) * c1.tanh();
    // Step 2 (cont 1): gates = W_xc·(−1) + b + W_hc·h1.
    let g = [-0.9 + 0.7 * h1, -1.8 - 0.3 * h1, 1.3 + 0.2 * h1, -0.1 + 1.5 * h1];
    let c2 = sigmoid(g[1]) * c1 + sigmoid(g[0]) * g[3].tanh();
    let h2 = sigmoid(g[2]) * c2.tanh();
    assert_close("lstm by hand", &h, &[h1, h2], 1e-14);
}

#[test]
fn lstm_unit_matches_scalar_reference() {
    let _rng = rng_exclusive();
    let (n, h) = (3i64, 4i64);
    let c_prev = uniform(&[1, n, h], 21);
    let gates = uniform(&[1, n, 4 * h], 22) * 2.0;
    let cont = Tensor::from_slice(&[1.0f64, 0.0, 1.0]).reshape([1, n]);
    let unit = layer_param(r#"name: "u" type: "LSTMUnit""#);
    let (mut layer, _) = setup(&unit, &[&c_prev, &gates, &cont]);
    let tops = forward(&mut layer, &[&c_prev, &gates, &cont], &[]);
    let (cp, gv, kv) = (values(&c_prev), values(&gates), values(&cont));
    let (mut want_c, mut want_h) = (Vec::new(), Vec::new());
    for s in 0..n as usize {
        let hd = h as usize;
        let x = &gv[s * 4 * hd..(s + 1) * 4 * hd];
        for d in 0..hd {
            let f = kv[s] * sigmoid(x[hd + d]);
            let c = f * cp[s * hd + d] + sigmoid(x[d]) * x[3 * hd + d].tanh();
            want_c.push(c);
            want_h.push(sigmoid(x[2 * hd + d]) * c.tanh());
        }
    }
    assert_close("LSTMUnit c", &values(&tops[0]), &want_c, 1e-14);
    assert_close("LSTMUnit h", &values(&tops[1]), &want_h, 1e-14);
}

// ------------------------------------------------------------ gradient checks

fn checker() -> GradCheck {
    GradCheck { skip_bottoms: vec![1], tolerance: 1e-6, step: 1e-5, ..Default::default() }
}

/// Every stream starts a sequence at step 0 (the carried state must not leak
/// between the checker's passes) and stream 1 restarts mid-batch.
fn grad_cont() -> Tensor {
    cont_tensor(&[&[0.0, 0.0], &[1.0, 1.0], &[1.0, 0.0], &[1.0, 1.0]])
}

#[test]
fn rnn_gradient_check() {
    let _rng = rng_exclusive();
    let x = uniform(&[4, 2, 3], 31);
    let xs = uniform(&[2, 2, 2], 32);
    let lp = rnn_param("RNN", 3, false);
    let r = checker().run(&lp, &[x.shallow_clone(), grad_cont()]).expect("RNN gradient");
    assert!(r.checked > 50, "checked {}", r.checked);
    checker().run(&lp, &[x, grad_cont(), xs]).expect("RNN gradient with static input");
}

#[test]
fn lstm_gradient_check() {
    let _rng = rng_exclusive();
    let x = uniform(&[4, 2, 3], 33);
    let xs = uniform(&[2, 2, 2], 34);
    let lp = rnn_param("LSTM", 3, false);
    let r = checker().run(&lp, &[x.shallow_clone(), grad_cont()]).expect("LSTM gradient");
    assert!(r.checked > 100, "checked {}", r.checked);
    checker().run(&lp, &[x, grad_cont(), xs]).expect("LSTM gradient with static input");
}

#[test]
fn lstm_unit_gradient_check() {
    let _rng = rng_exclusive();
    let c_prev = uniform(&[1, 3, 4], 35);
    let gates = uniform(&[1, 3, 16], 36);
    let cont = Tensor::from_slice(&[1.0f64, 0.0, 1.0]).reshape([1, 3]);
    let lp = layer_param(r#"name: "u" type: "LSTMUnit""#);
    let check = GradCheck { skip_bottoms: vec![2], ..checker() };
    let r = check.run(&lp, &[c_prev, gates, cont]).expect("LSTMUnit gradient");
    assert_eq!(r.checked, 12 + 48);
}

/// For cont outside {0, 1}, Caffe's LSTMUnit backpropagates the forget gate
/// f = cont·σ(x_f) with f·(1 − f), not the true cont·σ·(1 − σ). Reproduced.
#[test]
fn lstm_unit_uses_caffe_forget_derivative_for_fractional_cont() {
    let _rng = rng_exclusive();
    let (n, h) = (2i64, 3usize);
    let c_prev = uniform(&[1, n, h as i64], 41);
    let gates = uniform(&[1, n, 4 * h as i64], 42).set_requires_grad(true);
    let cont = Tensor::from_slice(&[0.5f64, 1.0]).reshape([1, n]);
    let c_prev_g = c_prev.set_requires_grad(true);
    let unit = layer_param(r#"name: "u" type: "LSTMUnit""#);
    let (mut layer, _) = setup(&unit, &[&c_prev_g, &gates, &cont]);
    let tops = forward(&mut layer, &[&c_prev_g, &gates, &cont], &[]);
    let dc = uniform(&[1, n, h as i64], 43);
    let dh = uniform(&[1, n, h as i64], 44);
    let obj = (&tops[0] * &dc).sum(Kind::Double) + (&tops[1] * &dh).sum(Kind::Double);
    let grads = Tensor::run_backward(&[&obj], &[&gates, &c_prev_g], false, false);

    // Caffe's LSTMUnit backward, element by element.
    let (cp, xv, kv, dcv, dhv) = (values(&c_prev_g), values(&gates), values(&cont), values(&dc), values(&dh));
    let (mut want_dx, mut want_dc) = (vec![0.0; xv.len()], vec![0.0; cp.len()]);
    for s in 0..n as usize {
        for d in 0..h {
            let x = &xv[s * 4 * h..(s + 1) * 4 * h];
            let (i, o, g) = (sigmoid(x[d]), sigmoid(x[2 * h + d]), x[3 * h + d].tanh());
            let f = kv[s] * sigmoid(x[h + d]);
            let c = f * cp[s * h + d] + i * g;
            let tc = c.tanh();
            let c_term = dcv[s * h + d] + dhv[s * h + d] * o * (1.0 - tc * tc);
            want_dc[s * h + d] = c_term * f;
            want_dx[s * 4 * h + d] = c_term * g * i * (1.0 - i);
            want_dx[s * 4 * h + h + d] = c_term * cp[s * h + d] * f * (1.0 - f);
            want_dx[s * 4 * h + 2 * h + d] = dhv[s * h + d] * tc * o * (1.0 - o);
            want_dx[s * 4 * h + 3 * h + d] = c_term * i * (1.0 - g * g);
        }
    }
    assert_close("d gates", &values(&grads[0]), &want_dx, 1e-12);
    assert_close("d c_prev", &values(&grads[1]), &want_dc, 1e-12);
    // And the forward value is still cont·σ(x_f)·c_prev + i·g.
    let x = &xv[..4 * h];
    let c0 = 0.5 * sigmoid(x[h]) * cp[0] + sigmoid(x[0]) * x[3 * h].tanh();
    assert!((values(&tops[0])[0] - c0).abs() < 1e-14);
}

// ------------------------------------------------------ continuation semantics

#[test]
fn zero_cont_resets_the_state_mid_sequence() {
    let _rng = rng_exclusive();
    for kind in ["RNN", "LSTM"] {
        let x = uniform(&[5, 1, 2], 51);
        let restart = cont_tensor(&[&[0.0], &[1.0], &[1.0], &[0.0], &[1.0]]);
        let (mut layer, o) = setup(&rnn_param(kind, 3, false), &[&x, &restart]);
        let params = random_params(&o, 52);
        let full = forward(&mut layer, &[&x, &restart], &params).remove(0);

        // Steps 3..5 on their own, from a fresh layer (zero state).
        let tail = x.narrow(0, 3, 2);
        let tail_cont = cont_tensor(&[&[0.0], &[1.0]]);
        let (mut fresh, _) = setup(&rnn_param(kind, 3, false), &[&tail, &tail_cont]);
        let alone = forward(&mut fresh, &[&tail, &tail_cont], &params).remove(0);
        assert!(max_abs_diff(&full.narrow(0, 3, 2), &alone) < 1e-14, "{kind}: restart differs from a fresh sequence");

        // Without the restart, step 3 does depend on the past.
        let through = cont_tensor(&[&[0.0], &[1.0], &[1.0], &[1.0], &[1.0]]);
        let (mut other, _) = setup(&rnn_param(kind, 3, false), &[&x, &through]);
        let cont_out = forward(&mut other, &[&x, &through], &params).remove(0);
        assert!(max_abs_diff(&full.narrow(0, 0, 3), &cont_out.narrow(0, 0, 3)) < 1e-14);
        assert!(max_abs_diff(&full.get(3), &cont_out.get(3)) > 1e-6, "{kind}: cont had no effect");
    }
}

/// Caffe's TestForward: the final state of one forward is the initial state of
/// the next, so stepping one timestep per batch equals the full sequence.
#[test]
fn state_carries_from_one_batch_to_the_next() {
    let _rng = rng_exclusive();
    for kind in ["RNN", "LSTM"] {
        let (t_len, n) = (4i64, 2i64);
        let x = uniform(&[t_len, n, 3], 61);
        let mut rows = vec![vec![0.0; n as usize]];
        rows.extend((1..t_len).map(|_| vec![1.0; n as usize]));
        let row_refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
        let cont = cont_tensor(&row_refs);
        let (mut full_layer, o) = setup(&rnn_param(kind, 5, false), &[&x, &cont]);
        let params = random_params(&o, 62);
        let full = forward(&mut full_layer, &[&x, &cont], &params).remove(0);

        let step_x = x.narrow(0, 0, 1);
        let one = cont_tensor(&[&[1.0, 1.0]]);
        let zero = cont_tensor(&[&[0.0, 0.0]]);
        let (mut stepper, _) = setup(&rnn_param(kind, 5, false), &[&step_x, &zero]);
        let (mut resetting, _) = setup(&rnn_param(kind, 5, false), &[&step_x, &zero]);
        for t in 0..t_len {
            let xt = x.narrow(0, t, 1);
            let c = if t == 0 { &zero } else { &one };
            let y = forward(&mut stepper, &[&xt, c], &params).remove(0);
            assert!(max_abs_diff(&y.get(0), &full.get(t)) < 1e-14, "{kind} step {t}");
            // With cont 0 at every batch, nothing carries over.
            let r = forward(&mut resetting, &[&xt, &zero], &params).remove(0);
            let d = max_abs_diff(&r.get(0), &full.get(t));
            if t == 0 {
                assert!(d < 1e-14);
            } else {
                assert!(d > 1e-6, "{kind} step {t}: state leaked through cont = 0");
            }
        }
    }
}

/// expose_hidden: h_0/c_0 come in as bottoms and h_T/c_T go out as tops, so a
/// long sequence can be run in chunks.
#[test]
fn expose_hidden_chains_chunks() {
    let _rng = rng_exclusive();
    for kind in ["RNN", "LSTM"] {
        let lstm = kind == "LSTM";
        let (n, hidden) = (2i64, 3i64);
        let x = uniform(&[4, n, 2], 71);
        let cont = cont_tensor(&[&[0.0, 0.0], &[1.0, 1.0], &[1.0, 0.0], &[1.0, 1.0]]);
        let zeros = Tensor::zeros([1, n, hidden], F64);
        let states: Vec<&Tensor> = if lstm { vec![&zeros, &zeros] } else { vec![&zeros] };
        let mut bottoms = vec![&x, &cont];
        bottoms.extend(&states);
        let lp = rnn_param(kind, hidden as usize, true);
        let (mut whole, o) = setup(&lp, &bottoms);
        let params = random_params(&o, 72);
        let full = forward(&mut whole, &bottoms, &params);
        assert_eq!(full.len(), 1 + states.len());
        if lstm {
            // h_T is the last step of the output.
            assert!(max_abs_diff(&full[1].get(0), &full[0].get(3)) < 1e-15);
        }

        let (x1, x2) = (x.narrow(0, 0, 2), x.narrow(0, 2, 2));
        let (c1, c2) = (cont.narrow(0, 0, 2), cont.narrow(0, 2, 2));
        let mut b1 = vec![&x1, &c1];
        b1.extend(&states);
        let (mut chunker, _) = setup(&lp, &b1);
        let first = forward(&mut chunker, &b1, &params);
        let mut b2 = vec![&x2, &c2];
        b2.extend(first[1..].iter());
        let second = forward(&mut chunker, &b2, &params);
        let joined = Tensor::cat(&[&first[0], &second[0]], 0);
        assert!(max_abs_diff(&joined, &full[0]) < 1e-14, "{kind}: chunked output differs");
        for k in 1..full.len() {
            assert!(max_abs_diff(&second[k], &full[k]) < 1e-14, "{kind}: final state {k} differs");
        }

        // A non-zero h_0 changes the first step only where cont is 1.
        let h0 = uniform(&[1, n, hidden], 73);
        let c_keep = cont_tensor(&[&[1.0, 0.0], &[1.0, 1.0]]);
        let mut b3 = vec![&x1, &c_keep, &h0];
        if lstm {
            b3.push(&h0);
        }
        let y = forward(&mut chunker, &b3, &params).remove(0);
        let mut b4 = vec![&x1, &c_keep];
        b4.extend(&states);
        let y0 = forward(&mut chunker, &b4, &params).remove(0);
        assert!(max_abs_diff(&y.get(0).get(0), &y0.get(0).get(0)) > 1e-6);
        assert!(max_abs_diff(&y.get(0).get(1), &y0.get(0).get(1)) < 1e-15);
    }
}

/// Caffe shares only the data of the exposed states and of `cont` with its
/// inner net: no gradient reaches h_0/c_0 or cont, and none leaves h_T/c_T.
#[test]
fn caffe_gradient_cutoffs() {
    let _rng = rng_exclusive();
    let (n, hidden) = (2i64, 3i64);
    let x = uniform(&[3, n, 2], 81).set_requires_grad(true);
    let cont = cont_tensor(&[&[1.0, 1.0], &[1.0, 0.0], &[1.0, 1.0]]).set_requires_grad(true);
    let h0 = uniform(&[1, n, hidden], 82).set_requires_grad(true);
    let c0 = uniform(&[1, n, hidden], 83).set_requires_grad(true);
    let lp = rnn_param("LSTM", hidden as usize, true);
    let (mut layer, o) = setup(&lp, &[&x, &cont, &h0, &c0]);
    let params: Vec<Tensor> = random_params(&o, 84).into_iter().map(|p| p.set_requires_grad(true)).collect();
    let tops = forward(&mut layer, &[&x, &cont, &h0, &c0], &params);
    assert!(tops[0].requires_grad());
    assert!(!tops[1].requires_grad() && !tops[2].requires_grad(), "h_T/c_T must not pass gradients back");
    let obj = tops[0].sum(Kind::Double);
    let grads = Tensor::run_backward(&[&obj], &[&x, &params[0], &h0, &c0, &cont], false, false);
    assert!(grads[0].abs().sum(Kind::Double).double_value(&[]) > 0.0);
    assert!(grads[1].abs().sum(Kind::Double).double_value(&[]) > 0.0);
    // The cut-off inputs are not part of the graph at all.
    for (k, name) in [(2, "h_0"), (3, "c_0"), (4, "cont")] {
        let g = &grads[k];
        assert!(!g.defined() || g.abs().sum(Kind::Double).double_value(&[]) == 0.0, "{name} got a gradient");
    }
}

// ---------------------------------------------------------------- shape errors

#[test]
fn shape_errors_are_reported() {
    let _rng = rng_exclusive();
    let lstm = rnn_param("LSTM", 4, false);
    let exposed = rnn_param("LSTM", 4, true);
    let rnn_exposed = rnn_param("RNN", 4, true);
    let cases: Vec<(&LayerParameter, Vec<Shape>, &str)> = vec![
        (&lstm, vec![vec![3, 2, 5]], "bottom"),
        (&lstm, vec![vec![3, 2, 5], vec![3, 2], vec![2, 1], vec![1]], "bottom"),
        (&lstm, vec![vec![3, 2], vec![3, 2]], "at least 3 axes"),
        (&lstm, vec![vec![3, 2, 5], vec![3, 3]], "cont"),
        (&lstm, vec![vec![3, 2, 5], vec![2, 2]], "cont"),
        (&lstm, vec![vec![3, 2, 5], vec![3, 2, 1]], "cont"),
        (&lstm, vec![vec![3, 2, 5], vec![3, 2], vec![3, 4]], "x_static"),
        (&lstm, vec![vec![3, 2, 5], vec![3, 2], vec![2]], "x_static"),
        (&exposed, vec![vec![3, 2, 5], vec![3, 2], vec![1, 2, 4]], "bottom"),
        (&exposed, vec![vec![3, 2, 5], vec![3, 2], vec![1, 2, 4], vec![1, 2, 3]], "c_0"),
        (&rnn_exposed, vec![vec![3, 2, 5], vec![3, 2], vec![2, 2, 4]], "h_0"),
    ];
    for (lp, shapes, needle) in cases {
        let e = setup_err(lp, &shapes);
        assert!(e.contains(needle), "{shapes:?}: error '{e}' lacks '{needle}'");
    }
    let e = setup_err(&layer_param(r#"name: "r" type: "RNN" recurrent_param { }"#), &[vec![3, 2, 5], vec![3, 2]]);
    assert!(e.contains("num_output"), "{e}");

    let unit = layer_param(r#"name: "u" type: "LSTMUnit""#);
    for (shapes, needle) in [
        (vec![vec![1, 2, 4], vec![1, 2, 12], vec![1, 2]], "4·H"),
        (vec![vec![1, 2, 4], vec![1, 3, 16], vec![1, 2]], "bottom[1]"),
        (vec![vec![2, 2, 4], vec![2, 2, 16], vec![2, 2]], "bottom[0]"),
        (vec![vec![1, 2, 4], vec![1, 2, 16], vec![1, 2, 1]], "cont"),
        (vec![vec![1, 2, 4], vec![1, 2, 16]], "bottom"),
    ] {
        let e = setup_err(&unit, &shapes);
        assert!(e.contains(needle), "{shapes:?}: error '{e}' lacks '{needle}'");
    }

    // At forward: the number of timesteps is fixed at setup (as in Caffe).
    let x = uniform(&[3, 2, 5], 91);
    let cont = Tensor::zeros([3, 2], F64);
    let (mut layer, o) = setup(&lstm, &[&x, &cont]);
    let params = random_params(&o, 92);
    let (x4, c4) = (uniform(&[4, 2, 5], 93), Tensor::zeros([4, 2], F64));
    let e = layer.forward(&ctx(Phase::Train), &[x4, c4], &params).expect_err("T change must fail").to_string();
    assert!(e.contains("timesteps changed"), "{e}");
    let e = layer
        .forward(&ctx(Phase::Train), &[uniform(&[3, 2, 6], 94), cont.shallow_clone()], &params)
        .expect_err("features")
        .to_string();
    assert!(e.contains("features"), "{e}");
    // A new number of streams is fine.
    let y = layer
        .forward(&ctx(Phase::Train), &[uniform(&[3, 5, 5], 95), Tensor::zeros([3, 5], F64)], &params)
        .expect("new N");
    assert_eq!(y[0].size(), vec![3, 5, 4]);
}

// ------------------------------------------------------------------- in a net

/// The recurrent part of Caffe's LRCN captioning net (embedded words, cont,
/// image features as LSTM's static input, two stacked LSTMs, a per-step
/// classifier and loss), with the data layers replaced by Input.
const LRCN_STYLE: &str = r#"
name: "lrcn_style"
layer {
  name: "input" type: "Input"
  top: "embedded_input_sentence" top: "cont_sentence" top: "fc8" top: "target_sentence"
  input_param {
    shape { dim: 5 dim: 3 dim: 8 } shape { dim: 5 dim: 3 }
    shape { dim: 3 dim: 6 } shape { dim: 5 dim: 3 }
  }
}
layer {
  name: "lstm1" type: "LSTM"
  bottom: "embedded_input_sentence" bottom: "cont_sentence" bottom: "fc8"
  top: "lstm1"
  recurrent_param {
    num_output: 7
    weight_filler { type: "uniform" min: -0.08 max: 0.08 }
    bias_filler { type: "constant" value: 0 }
  }
}
layer {
  name: "lstm2" type: "LSTM"
  bottom: "lstm1" bottom: "cont_sentence"
  top: "lstm2"
  recurrent_param {
    num_output: 7
    weight_filler { type: "uniform" min: -0.08 max: 0.08 }
    bias_filler { type: "constant" value: 0 }
  }
}
layer {
  name: "predict" type: "InnerProduct"
  bottom: "lstm2" top: "predict"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param {
    num_output: 11 axis: 2
    weight_filler { type: "uniform" min: -0.08 max: 0.08 }
    bias_filler { type: "constant" value: 0 }
  }
}
layer {
  name: "cross_entropy_loss" type: "SoftmaxWithLoss"
  bottom: "predict" bottom: "target_sentence"
  top: "cross_entropy_loss"
  loss_weight: 20
  loss_param { ignore_label: -1 }
  softmax_param { axis: 2 }
}
"#;

fn build_net(text: &str, phase: Phase) -> Net {
    crate::common::net(text, "net", phase).expect("build net")
}

#[test]
fn lrcn_style_net_builds_and_backpropagates() {
    let _rng = rng_exclusive();
    let mut net = build_net(LRCN_STYLE, Phase::Train);
    assert_eq!(net.blob_shape("lstm1"), Some(&vec![5, 3, 7]));
    assert_eq!(net.blob_shape("predict"), Some(&vec![5, 3, 11]));
    let shapes: Vec<Vec<i64>> = net.layer_blobs("lstm1").unwrap().iter().map(|b| b.size()).collect();
    assert_eq!(shapes, vec![vec![28, 8], vec![28], vec![28, 6], vec![28, 7]]);
    assert_eq!(net.learnable_params().len(), 4 + 3 + 2);

    tch::manual_seed(5);
    let cont = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
        .reshape([5, 3]);
    let target = Tensor::randint(11, [5, 3], (Kind::Float, Device::Cpu));
    let _ = target.get(4).get(2).fill_(-1.0);
    net.set_input("embedded_input_sentence", &Tensor::randn([5, 3, 8], (Kind::Float, Device::Cpu))).unwrap();
    net.set_input("cont_sentence", &cont).unwrap();
    net.set_input("fc8", &Tensor::randn([3, 6], (Kind::Float, Device::Cpu))).unwrap();
    net.set_input("target_sentence", &target).unwrap();
    let loss = net.forward().expect("forward");
    // Near-uniform predictions: 20 · ln 11.
    assert!((loss - 20.0 * 11f64.ln()).abs() < 0.5, "loss {loss}");
    net.backward().expect("backward");
    for p in net.learnable_params() {
        let g = p.diff().abs().sum(Kind::Double).double_value(&[]);
        assert!(g > 0.0 && g.is_finite(), "{}: gradient {g}", p.display());
    }

    // The TEST net runs without autograd.
    let mut test = build_net(LRCN_STYLE, Phase::Test);
    test.set_input("cont_sentence", &cont).unwrap();
    assert!(test.forward_inference().expect("test forward").is_finite());
}

/// Blobs in a .caffemodel load in Caffe's order (W_xc, b_c, W_xc_static, W_hc);
/// any other order is a shape mismatch.
#[test]
fn caffemodel_blobs_load_in_caffe_order() {
    let _rng = rng_exclusive();
    let mut net = build_net(LRCN_STYLE, Phase::Test);
    let blob = |shape: &[i64], base: f32| {
        let n: i64 = shape.iter().product();
        make_blob(shape, (0..n).map(|i| base + i as f32 * 1e-3).collect())
    };
    let mut layer = LayerParameter { name: Some("lstm1".into()), r#type: Some("LSTM".into()), ..Default::default() };
    layer.blobs = vec![blob(&[28, 8], 1.0), blob(&[28], 2.0), blob(&[28, 6], 3.0), blob(&[28, 7], 4.0)];
    let trained = NetParameter { layer: vec![layer.clone()], ..Default::default() };
    net.copy_trained_layers_from(&trained, "trained.caffemodel").expect("load");
    let blobs = net.layer_blobs("lstm1").unwrap();
    for (j, base) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
        let first = blobs[j].flatten(0, -1).double_value(&[0]);
        assert!((first - base).abs() < 1e-6, "blob {j} starts with {first}, expected {base}");
    }
    layer.blobs.swap(2, 3);
    let trained = NetParameter { layer: vec![layer], ..Default::default() };
    let e = net.copy_trained_layers_from(&trained, "swapped.caffemodel").expect_err("swapped blobs must fail");
    assert!(e.to_string().contains("shape mismatch"), "{e}");
}
