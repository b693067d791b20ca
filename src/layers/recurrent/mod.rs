//! Recurrent layers: RNN, LSTM and LSTMUnit, with Caffe's semantics.
//!
//! Caffe builds RNN and LSTM as an unrolled inner net; here the time loop is
//! written directly with tensor ops and autograd does backpropagation through
//! time. What Caffe's unrolled net fixes, and these files reproduce:
//! - Layout is time-major: `x` is T×N×…, `cont` is T×N, outputs are T×N×H.
//!   `cont_t` multiplies the previous hidden state before it enters step t
//!   (and, in the LSTM, the forget gate), so a 0 starts a new sequence.
//! - Blobs, in the order the unrolled net owns them (so .caffemodel files load):
//!   RNN `W_xh [H×in], b_h [H], (W_xh_static [H×static]), W_hh [H×H], W_ho [H×H], b_o [H]`;
//!   LSTM `W_xc [4H×in], b_c [4H], (W_xc_static [4H×static]), W_hc [4H×H]`,
//!   gate blocks in the order i, f, o, g.
//! - Without `expose_hidden`, the final state of one forward is the initial
//!   state of the next (Caffe copies h_T → h_0); it starts at zeros (and
//!   restarts at zeros if the number of streams changes). Batches normally
//!   begin with cont = 0, which discards it. No gradient crosses batches.
//! - With `expose_hidden`, h_0 (and c_0) are extra bottoms and h_T (and c_T)
//!   extra tops. Caffe shares only their data with the inner net, never their
//!   diffs: no gradient reaches those bottoms, and gradients arriving at those
//!   tops are dropped. Both are detached here for the same effect.
//! - `cont` never gets a gradient.
//! - LSTMUnit's forget gate is `cont · σ(x_f)` and Caffe backpropagates it with
//!
//! Files: base_recurrent.rs holds the layer RNN and LSTM share (Caffe's
//! RecurrentLayer: the blobs, the time loop, the state carried across
//! batches); rnn.rs and lstm.rs register their type and hold their cell's
//! equations; lstm_unit.rs holds LSTMUnit, one step of lstm.rs's cell as a layer.
use super::registry::LayerInfo;

pub mod base_recurrent;
pub mod lstm;
pub mod lstm_unit;
pub mod rnn;

pub fn register(r: &mut Vec<LayerInfo>) {
    rnn::register(r);
    lstm::register(r);
    lstm_unit::register(r);
}
