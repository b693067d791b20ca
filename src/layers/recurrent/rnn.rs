//! RNN: h_t = tanh(W_hh·(cont_t·h_{t−1}) + W_xh·x_t + b_h (+ W_xh_static·x_static))
//! and o_t = tanh(W_ho·h_t + b_o). The blobs, the time loop and the carried
//! state are base_recurrent.rs's, shared with LSTM; the two steps below are
//! the RNN's own.
use crate::Result;
use tch::Tensor;

use super::base_recurrent::{Cell, Recurrent};
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "RNN",
        family: family_of(file!()),
        params: "recurrent_param: num_output, weight_filler, bias_filler, expose_hidden (debug_info ignored); bottoms x (T×N×…), cont (T×N), optional x_static (N×…)",
        tests: "gradient check, scalar reference, continuation reset, state carried across batches, expose_hidden, shape errors (tests/layers_recurrent.rs)",
        create: |p| Ok(Box::new(Recurrent::new(p, Cell::Rnn)?)),
    });
}

/// One step's hidden state from its pre-activation (everything inside the tanh).
pub(super) fn step(pre: &Tensor) -> Result<Tensor> {
    Ok(pre.f_tanh()?)
}

/// The outputs of all steps at once: tanh(W_ho·h_t + b_o).
pub(super) fn output(hs: &Tensor, w_ho: &Tensor, b_o: &Tensor) -> Result<Tensor> {
    Ok(hs.f_linear(w_ho, Some(b_o))?.f_tanh()?)
}
