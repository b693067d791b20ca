//! Which in-place layers a forward folds into the layer before them
//! ([`crate::layers::fold`]): a chain of layers that each read and write
//! only the previous layer's single top, right after it, with no loss weight
//! and autograd's backward, each able to describe itself as an epilogue
//! (BatchNorm with global statistics, a per-channel Scale, a plain ReLU; a
//! ReLU ends the chain). The layer before them decides whether it can run
//! them: without autograd ([`crate::layers::Layer::forward_with_epilogues`])
//! a convolution, and an Eltwise sum a ReLU; where autograd records
//! ([`crate::layers::Layer::forward_with_training_epilogues`]) a BatchNorm a
//! Scale and a ReLU.
use tch::Tensor;

use super::Net;
use crate::layers::fold::Epilogue;
use crate::layers::Ctx;

impl Net {
    /// Whether no one would see a folded layer's own output in a forward:
    /// no per-layer timing, debug lines, blob diffs or per-layer callbacks.
    /// Without autograd the net may then fold its in-place chains
    /// ([`crate::layers::Layer::forward_with_epilogues`]); where autograd
    /// records, the chains a layer can run for training
    /// ([`crate::layers::Layer::forward_with_training_epilogues`]).
    pub(super) fn folded_layers_unseen(&self, traced: bool) -> bool {
        !traced && !self.record_blob_diffs && !self.debug_info && self.callbacks.is_none()
    }

    /// The epilogues that follow layer `i` among layers `..end`, and the index
    /// of the last; `None` where there are none.
    pub(super) fn epilogue_chain(&self, i: usize, end: usize, ctx: &Ctx) -> Option<(Vec<Epilogue>, usize)> {
        let e = &self.layers[i];
        let &[top] = e.tops.as_slice() else { return None };
        if e.loss_weights.iter().any(|&w| w != 0.0) || e.layer.own_backward() {
            return None;
        }
        let mut chain = Vec::new();
        let mut last = i;
        for j in i + 1..end {
            let f = &self.layers[j];
            let in_place = f.bottoms == [top] && f.tops == [top];
            if !in_place || f.loss_weights.iter().any(|&w| w != 0.0) || f.layer.own_backward() {
                break;
            }
            let params: Vec<Tensor> = f.params.iter().map(|&s| self.param_slots[s].tensor.shallow_clone()).collect();
            let Some(epilogue) = f.layer.inference_epilogue(ctx, &params) else { break };
            let ends = matches!(epilogue, Epilogue::Relu);
            chain.push(epilogue);
            last = j;
            if ends {
                break;
            }
        }
        (!chain.is_empty()).then_some((chain, last))
    }
}
