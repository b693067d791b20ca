//! LSTM: at each step the gates' pre-activations, W_xc·x_t + b_c
//! (+ W_xc_static·x_static) plus W_hc·(cont_t·h_{t−1}), in the order i, f, o,
//! g, go through the LSTM step below (`lstm_unit`, which LSTMUnit also runs).
//! The blobs, the time loop and the carried state are base_recurrent.rs's,
//! shared with RNN.
use crate::Result;
use tch::Tensor;

use super::base_recurrent::{Cell, Recurrent};
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "LSTM",
        family: family_of(file!()),
        params: "recurrent_param: num_output, weight_filler, bias_filler, expose_hidden (debug_info ignored); bottoms x (T×N×…), cont (T×N), optional x_static (N×…)",
        tests: "gradient check, scalar reference, continuation reset, state carried across batches, expose_hidden, caffemodel blob order, net build, shape errors (tests/layers_recurrent.rs)",
        create: |p| Ok(Box::new(Recurrent::new(p, Cell::Lstm)?)),
    });
}

/// True when every continuation indicator is 0 or 1.
pub(super) fn is_binary(cont: &Tensor) -> Result<bool> {
    let ok = cont.f_eq(0.0)?.f_logical_or(&cont.f_eq(1.0)?)?.f_all()?;
    Ok(ok.int64_value(&[]) != 0)
}

/// One LSTM step on N×… tensors: `gates` holds the pre-activations (i, f, o, g)
/// along the last axis, `cont` (N×1) scales the forget gate. Returns (c, h).
pub(super) fn lstm_unit(
    c_prev: &Tensor,
    gates: &Tensor,
    cont: &Tensor,
    caffe_forget: bool,
) -> Result<(Tensor, Tensor)> {
    let parts = gates.f_chunk(4, -1)?;
    let i = parts[0].f_sigmoid()?;
    let o = parts[2].f_sigmoid()?;
    let g = parts[3].f_tanh()?;
    let x_f = &parts[1];
    let f = if caffe_forget {
        // Value cont·σ(x_f), derivative f·(1−f) as Caffe's backward has it.
        let value = x_f.detach().f_sigmoid()?.f_mul(cont)?;
        let slope = value.f_mul(&value.f_neg()?.f_add_scalar(1.0)?)?;
        value.f_add(&x_f.f_sub(&x_f.detach())?.f_mul(&slope)?)?
    } else {
        x_f.f_sigmoid()?.f_mul(cont)?
    };
    let c = f.f_mul(c_prev)?.f_add(&i.f_mul(&g)?)?;
    let h = o.f_mul(&c.f_tanh()?)?;
    Ok((c, h))
}
