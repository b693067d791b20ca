//! RNN and LSTM, unrolled over their T steps as Caffe unrolls them: the
//! continuation input `cont` multiplies the previous hidden state (and the
//! forget gate) at every step, so sequences that restart mid-batch compute as
//! in Caffe — ONNX's own LSTM/RNN ops have no such input. Caffe's gate order
//! (i, f, o, g) is kept; the exported model starts each forward from zero
//! states (or the exposed h_0/c_0 inputs), as a freshly loaded Caffe net does.
use super::{attr_i, Graph};
use crate::export::PlanLayer;
use crate::util::tensor_values;
use crate::{bail, Result};

#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Rnn,
    Lstm,
}

/// Wᵀ as an initializer, for x·Wᵀ with MatMul.
fn transposed(g: &mut Graph, hint: &str, w: &tch::Tensor) -> Result<String> {
    let s = w.size();
    if s.len() != 2 {
        bail!("blob '{hint}' must be 2-D, got {s:?}");
    }
    g.weight(hint, &w.f_t_copy()?, &[s[1], s[0]])
}

fn recurrent(g: &mut Graph, l: &PlanLayer, cell: Cell) -> Result<()> {
    let p = l.param.recurrent_param.clone().unwrap_or_default();
    let hidden = p.num_output() as i64;
    let states = if cell == Cell::Lstm { 2 } else { 1 };
    let exposed = if p.expose_hidden() { states } else { 0 };
    let static_input = l.bottoms.len() > 2 + exposed;
    let (Some(xs), Some(top)) = (l.bottom_shapes.first(), l.tops.first()) else { bail!("needs x, cont and a top") };
    if l.bottoms.len() < 2 {
        bail!("needs bottoms x and cont");
    }
    let steps = xs[0];
    let gates = if cell == Cell::Lstm { 4 * hidden } else { hidden };
    let blobs = &l.blobs;
    let want = 3 + static_input as usize + if cell == Cell::Rnn { 2 } else { 0 };
    if blobs.len() != want {
        bail!("expects {want} blobs, got {}", blobs.len());
    }
    // Input transform for all steps at once: x·W_xᵀ + b (+ x_static·W_staticᵀ).
    let x = g.value(&l.bottoms[0])?;
    let flat_shape = g.const_i64("shape", &[0, 0, -1]);
    let x3 = g.node("Reshape", &[&x, &flat_shape], vec![]);
    let wx = transposed(g, "w_x", &blobs[0])?;
    let bx = g.weight("b_x", &blobs[1], &[gates])?;
    let xw = g.node("MatMul", &[&x3, &wx], vec![]);
    let mut x_part = g.node("Add", &[&xw, &bx], vec![]);
    let mut next = 2;
    if static_input {
        let s = g.value(&l.bottoms[2])?;
        let sf = g.node("Flatten", &[&s], vec![attr_i("axis", 1)]);
        let ws = transposed(g, "w_static", &blobs[2])?;
        let sw = g.node("MatMul", &[&sf, &ws], vec![]);
        let zero = g.const_i64("axes", &[0]);
        let sw = g.node("Unsqueeze", &[&sw, &zero], vec![]);
        x_part = g.node("Add", &[&x_part, &sw], vec![]);
        next = 3;
    }
    let wh = transposed(g, "w_h", &blobs[next])?;
    let cont = g.value(&l.bottoms[1])?;
    // Initial states: the exposed inputs (1×N×H), or zeros N×H.
    let first_state = 2 + static_input as usize;
    let mut state: Vec<String> = Vec::new();
    for k in 0..states {
        if p.expose_hidden() {
            let v = g.value(&l.bottoms[first_state + k])?;
            let zero = g.const_i64("axes", &[0]);
            state.push(g.node("Squeeze", &[&v, &zero], vec![]));
        } else {
            let shape = g.node("Shape", &[&cont], vec![]);
            let (st, en, ax) = (g.const_i64("start", &[1]), g.const_i64("end", &[2]), g.const_i64("axes", &[0]));
            let n = g.node("Slice", &[&shape, &st, &en, &ax], vec![]);
            let h = g.const_i64("hidden", &[hidden]);
            let nh = g.node("Concat", &[&n, &h], vec![attr_i("axis", 0)]);
            let zero = crate::proto::onnx::AttributeProto {
                name: Some("value".into()),
                r#type: Some(crate::proto::onnx::attribute_proto::AttributeType::Tensor as i32),
                t: Some(crate::proto::onnx::TensorProto {
                    dims: vec![1],
                    data_type: Some(crate::proto::onnx::tensor_proto::DataType::Float as i32),
                    raw_data: Some(0f32.to_le_bytes().to_vec()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            state.push(g.node("ConstantOfShape", &[&nh], vec![zero]));
        }
    }
    let one = g.const_i64("axes", &[1]);
    let zero_axis = g.const_i64("axes", &[0]);
    let mut hs = Vec::new();
    for t in 0..steps {
        let idx = g.const_i64_shaped("t", &[], &[t]);
        let x_t = g.node("Gather", &[&x_part, &idx], vec![attr_i("axis", 0)]);
        let c_t = g.node("Gather", &[&cont, &idx], vec![attr_i("axis", 0)]);
        let c_t = g.node("Unsqueeze", &[&c_t, &one], vec![]);
        let h_cont = g.node("Mul", &[&state[0], &c_t], vec![]);
        let hw = g.node("MatMul", &[&h_cont, &wh], vec![]);
        let pre = g.node("Add", &[&x_t, &hw], vec![]);
        match cell {
            Cell::Rnn => state[0] = g.node("Tanh", &[&pre], vec![]),
            Cell::Lstm => {
                let split = g.const_i64("split", &[hidden; 4]);
                let parts = g.node_n("Split", &[&pre, &split], 4, vec![attr_i("axis", 1)]);
                let i = g.node("Sigmoid", &[&parts[0]], vec![]);
                let f = g.node("Sigmoid", &[&parts[1]], vec![]);
                let f = g.node("Mul", &[&f, &c_t], vec![]);
                let o = g.node("Sigmoid", &[&parts[2]], vec![]);
                let gg = g.node("Tanh", &[&parts[3]], vec![]);
                let keep = g.node("Mul", &[&f, &state[1]], vec![]);
                let add = g.node("Mul", &[&i, &gg], vec![]);
                state[1] = g.node("Add", &[&keep, &add], vec![]);
                let tc = g.node("Tanh", &[&state[1]], vec![]);
                state[0] = g.node("Mul", &[&o, &tc], vec![]);
            }
        }
        hs.push(g.node("Unsqueeze", &[&state[0], &zero_axis], vec![]));
    }
    let refs: Vec<&str> = hs.iter().map(|s| s.as_str()).collect();
    let mut out = if refs.len() == 1 { g.identity(refs[0]) } else { g.node("Concat", &refs, vec![attr_i("axis", 0)]) };
    if cell == Cell::Rnn {
        let who = transposed(g, "w_o", &blobs[next + 1])?;
        let bo = g.weight("b_o", &blobs[next + 2], &[tensor_values(&blobs[next + 2])?.len() as i64])?;
        let ow = g.node("MatMul", &[&out, &who], vec![]);
        let ob = g.node("Add", &[&ow, &bo], vec![]);
        out = g.node("Tanh", &[&ob], vec![]);
    }
    g.bind(top, out);
    for (k, t) in l.tops.iter().enumerate().skip(1) {
        let v = g.node("Unsqueeze", &[&state[k - 1], &zero_axis], vec![]);
        g.bind(t, v);
    }
    Ok(())
}

pub fn lstm(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    recurrent(g, l, Cell::Lstm)
}

pub fn rnn(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    recurrent(g, l, Cell::Rnn)
}

/// LSTMUnit: one LSTM step on (…, 4H) gates, the continuation flag scaling
/// the forget gate; tops c and h.
pub fn lstm_unit(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (Some(gs), true, true) = (l.bottom_shapes.get(1), l.bottoms.len() == 3, l.tops.len() == 2) else {
        bail!("needs bottoms c_prev, gates, cont and tops c, h")
    };
    let Some(&width) = gs.last() else { bail!("the gates bottom has no axes") };
    let hidden = width / 4;
    let axis = gs.len() as i64 - 1;
    let c_prev = g.value(&l.bottoms[0])?;
    let pre = g.value(&l.bottoms[1])?;
    let cont = g.value(&l.bottoms[2])?;
    let last = g.const_i64("axes", &[axis]);
    let cont = g.node("Unsqueeze", &[&cont, &last], vec![]);
    let split = g.const_i64("split", &[hidden; 4]);
    let parts = g.node_n("Split", &[&pre, &split], 4, vec![attr_i("axis", axis)]);
    let i = g.node("Sigmoid", &[&parts[0]], vec![]);
    let f = g.node("Sigmoid", &[&parts[1]], vec![]);
    let f = g.node("Mul", &[&f, &cont], vec![]);
    let o = g.node("Sigmoid", &[&parts[2]], vec![]);
    let gg = g.node("Tanh", &[&parts[3]], vec![]);
    let keep = g.node("Mul", &[&f, &c_prev], vec![]);
    let add = g.node("Mul", &[&i, &gg], vec![]);
    let c = g.node("Add", &[&keep, &add], vec![]);
    let tc = g.node("Tanh", &[&c], vec![]);
    let h = g.node("Mul", &[&o, &tc], vec![]);
    g.bind(&l.tops[0], c);
    g.bind(&l.tops[1], h);
    Ok(())
}
