//! A convolution's weights packed once for oneDNN, kept between forwards that
//! autograd does not record (inference: `caffe test`, a solver's test passes,
//! a deploy net's forward). libtorch's convolution reorders plain weights into
//! oneDNN's blocked order inside every call, which at batch 1 costs about as
//! much as a small convolution; packed weights skip it.
//!
//! The pack is made again whenever the weight may have changed: another tensor
//! or storage (by address; the old storage is held, so its address cannot be
//! reused meanwhile), a write through libtorch (its version counter: how the
//! solver, weight loading and sharing write), or another input shape (the
//! pack is chosen for it), or a write libtorch cannot see, which the front end
//! that allowed it reports ([`crate::layers::weights_written_outside_libtorch`]:
//! pycaffe's numpy views of weights).
use tch::{Device, Kind, Tensor};

use crate::layers::layout::is_channels_last;
use crate::layers::onednn::{self, Conv2dGeometry};
use crate::Result;

#[derive(Default)]
pub struct InferenceConvWeights {
    kept: Option<Kept>,
}

struct Kept {
    /// An alias of the weight's storage: keeps its address from being reused.
    source: Tensor,
    address: usize,
    version: i64,
    outside_writes: u64,
    input_size: Vec<i64>,
    packed: Tensor,
}

impl InferenceConvWeights {
    /// The convolution of `x` with `w` and `bias` on packed weights, or `None`
    /// where this path does not apply: autograd records (the gradient must
    /// reach `w`), not a 2-D CPU float convolution on a channels-last input,
    /// or a libtorch without the kernels.
    /// The caller then runs its general path.
    pub fn convolve(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        g: &Conv2dGeometry,
        groups: i64,
    ) -> Result<Option<Tensor>> {
        // A pass that autograd records leaves the pack alone: `caffe time`
        // and a solver with test passes alternate the two kinds of forward.
        let applies = x.device() == Device::Cpu
            && x.kind() == Kind::Float
            && w.dim() == 4
            && is_channels_last(x)
            && !autograd_records(w, bias);
        if !applies {
            return Ok(None);
        }
        let address = w.data_ptr() as usize;
        let version = w.f_internal_version()?;
        let outside_writes = crate::layers::outside_weight_writes();
        let input_size = x.size();
        let current = self.kept.as_ref().is_some_and(|k| {
            k.address == address
                && k.version == version
                && k.outside_writes == outside_writes
                && k.input_size == input_size
                && k.source.size() == w.size()
        });
        if !current {
            self.kept = None;
            let Some(packed) = onednn::pack_conv2d_weights(w, g, groups, &input_size) else { return Ok(None) };
            self.kept = Some(Kept { source: w.f_detach()?, address, version, outside_writes, input_size, packed });
        }
        let Some(k) = &self.kept else { return Ok(None) };
        Ok(onednn::conv2d(x, &k.packed, bias, g, groups))
    }
}

/// Whether autograd records ops on the weights (grad mode on and one of them
/// requires grad).
fn autograd_records(w: &Tensor, bias: Option<&Tensor>) -> bool {
    if !w.requires_grad() && !bias.is_some_and(|b| b.requires_grad()) {
        return false;
    }
    // SAFETY: each call sets this thread's grad mode and returns the previous
    // one (no tensors involved); the second call restores what the first read.
    let enabled = unsafe { torch_sys::at_grad_set_enabled(1) };
    unsafe { torch_sys::at_grad_set_enabled(enabled) };
    enabled != 0
}
