//! Which in-place layers a forward folds into the layer before them
//! ([`crate::layers::fold`]): a chain of layers that each read and write
//! only the previous layer's single top, right after it, with no loss weight
//! and autograd's backward, each able to describe itself as an epilogue
//! (BatchNorm with global statistics, a per-channel Scale, a plain ReLU; a
//! ReLU ends the chain). The layer before them decides whether it can run
//! them: without autograd ([`crate::layers::Layer::forward_with_epilogues`])
//! a convolution, a BatchNorm a Scale and a ReLU (where no convolution took
//! them: the BatchNorm writes a blob of its own), and an Eltwise sum a ReLU;
//! where autograd records
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

    /// Says that after each forward only the net's outputs will be read
    /// (`caffe test`, the forward `caffe time` times), never its other blobs.
    /// An inference forward may then also fold a chain whose first layer
    /// writes a blob of its own (BatchNorm from `conv1` to `conv1/bn`, as
    /// many published nets have it) where only that layer reads the layer's
    /// top: the top then holds the chain's result, not its own value, which
    /// nobody reads. pycaffe, `caffe forward` and `caffe export` never set it.
    pub fn read_outputs_only(&mut self) {
        self.outputs_read_only = true;
    }

    /// Whether layer `j` is the only reader of blob `b`, which is no output.
    fn read_only_by(&self, b: usize, j: usize) -> bool {
        !self.output_blobs.contains(&b)
            && self.layers.iter().enumerate().all(|(k, l)| k == j || !l.bottoms.contains(&b))
    }

    /// The epilogues that follow layer `i` among layers `..end`, the index of
    /// the last, and the blob the chain writes when its first layer writes
    /// one of its own (only where `new_blob` allows it); `None` where there
    /// are none.
    pub(super) fn epilogue_chain(
        &self,
        i: usize,
        end: usize,
        ctx: &Ctx,
        new_blob: bool,
    ) -> Option<(Vec<Epilogue>, usize, Option<usize>)> {
        let e = &self.layers[i];
        let &[mut top] = e.tops.as_slice() else { return None };
        if e.loss_weights.iter().any(|&w| w != 0.0) || e.layer.own_backward() {
            return None;
        }
        let mut chain = Vec::new();
        let mut last = i;
        let mut written = None;
        for j in i + 1..end {
            let f = &self.layers[j];
            let in_place = f.bottoms == [top] && f.tops == [top];
            let starts_new_blob = new_blob
                && j == i + 1
                && f.bottoms == [top]
                && matches!(f.tops.as_slice(), &[t] if t != top)
                && self.read_only_by(top, j);
            if !(in_place || starts_new_blob) || f.loss_weights.iter().any(|&w| w != 0.0) || f.layer.own_backward() {
                break;
            }
            let params: Vec<Tensor> = f.params.iter().map(|&s| self.param_slots[s].tensor.shallow_clone()).collect();
            let Some(epilogue) = f.layer.inference_epilogue(ctx, &params) else { break };
            let ends = matches!(epilogue, Epilogue::Relu);
            chain.push(epilogue);
            last = j;
            if starts_new_blob {
                top = f.tops[0];
                written = Some(top);
            }
            if ends {
                break;
            }
        }
        (!chain.is_empty()).then_some((chain, last, written))
    }
}
