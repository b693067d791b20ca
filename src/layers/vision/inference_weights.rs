//! A convolution's weights packed once for oneDNN, kept between forwards run
//! without autograd (inference: `caffe test`, `caffe forward`, a solver's test
//! passes, pycaffe's forward of a net with no loss). libtorch's convolution
//! reorders plain weights into oneDNN's blocked order inside every call, which
//! at batch 1 costs about as much as a small convolution; packed weights skip it.
//! The in-place layers the net found right after the convolution
//! ([`crate::layers::fold`]: BatchNorm, Scale, ReLU) are folded into the pack
//! and its bias, a final ReLU run as oneDNN's post-op.
//!
//! The pack is made again whenever the weight, the bias or a folded layer's
//! blob may have changed: another tensor
//! or storage (by address; the old storage is held until then, so its address
//! cannot be reused meanwhile); a write through libtorch (its version counter:
//! how the solver, weight loading and sharing write); a write libtorch cannot
//! see, which the front end that allowed it reports
//! ([`crate::layers::weights_written_outside_libtorch`]: pycaffe's numpy views
//! of weights); or another input shape, which the pack is chosen for.
use tch::{Device, Kind, Tensor};

use crate::layers::fold::{self, Epilogue, Recipe};
use crate::layers::layout::is_channels_last;
use crate::layers::onednn::{self, Conv2dGeometry};
use crate::Result;

#[derive(Default)]
pub struct InferenceConvWeights {
    kept: Option<Kept>,
}

/// A blob the pack was computed from.
struct Source {
    /// An alias of the blob's storage: keeps its address from being reused.
    held: Tensor,
    address: usize,
    version: i64,
}

impl Source {
    fn of(t: &Tensor) -> Result<Source> {
        Ok(Source { held: t.f_detach()?, address: t.data_ptr() as usize, version: t.f_internal_version()? })
    }

    fn unchanged(&self, t: &Tensor) -> bool {
        self.address == t.data_ptr() as usize
            && t.f_internal_version().is_ok_and(|v| v == self.version)
            && self.held.size() == t.size()
    }
}

struct Kept {
    sources: Vec<Source>,
    recipe: Vec<Recipe>,
    outside_writes: u64,
    input_size: Vec<i64>,
    packed: Tensor,
    bias: Option<Tensor>,
    relu: bool,
}

impl InferenceConvWeights {
    /// The convolution of `x` with `w` and `bias`, followed by `epilogues`
    /// (folded into the weights, a final ReLU as oneDNN's post-op), on packed
    /// weights; or `None` where this path does not apply (the caller then
    /// runs its general path): grad mode is on (a training forward keeps
    /// libtorch's differentiable convolution, and its numbers), not a 2-D CPU
    /// float convolution on a channels-last input, an epilogue that does not
    /// fit, or a libtorch without the kernels.
    pub fn convolve(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        epilogues: &[Epilogue],
        g: &Conv2dGeometry,
        groups: i64,
    ) -> Result<Option<Tensor>> {
        // A pass with grad mode on leaves the pack alone: `caffe time` and a
        // solver with test passes alternate the two kinds of forward.
        let applies = !grad_mode_enabled()
            && x.device() == Device::Cpu
            && x.kind() == Kind::Float
            && w.dim() == 4
            && is_channels_last(x);
        if !applies {
            return Ok(None);
        }
        let sources: Vec<&Tensor> =
            std::iter::once(w).chain(bias).chain(epilogues.iter().flat_map(|e| e.sources())).collect();
        let recipe: Vec<Recipe> = epilogues.iter().map(Epilogue::recipe).collect();
        let outside_writes = crate::layers::outside_weight_writes();
        let input_size = x.size();
        let current = self.kept.as_ref().is_some_and(|k| {
            k.outside_writes == outside_writes
                && k.input_size == input_size
                && k.recipe == recipe
                && k.sources.len() == sources.len()
                && k.sources.iter().zip(&sources).all(|(s, t)| s.unchanged(t))
        });
        if !current {
            self.kept = None;
            let Some(folded) = fold::fold_into_convolution(w, bias, epilogues)? else { return Ok(None) };
            let Some(packed) = onednn::pack_conv2d_weights(&folded.weights, g, groups, &input_size) else {
                return Ok(None);
            };
            let sources = sources.into_iter().map(Source::of).collect::<Result<Vec<_>>>()?;
            self.kept = Some(Kept {
                sources,
                recipe,
                outside_writes,
                input_size,
                packed,
                bias: folded.bias,
                relu: folded.relu,
            });
        }
        let Some(k) = &self.kept else { return Ok(None) };
        Ok(onednn::conv2d(x, &k.packed, k.bias.as_ref(), g, groups, k.relu))
    }
}

/// Whether autograd is on for this thread (libtorch's grad mode).
fn grad_mode_enabled() -> bool {
    // SAFETY: each call sets this thread's grad mode and returns the previous
    // one (no tensors involved); the second call restores what the first read.
    let enabled = unsafe { torch_sys::at_grad_set_enabled(1) };
    unsafe { torch_sys::at_grad_set_enabled(enabled) };
    enabled != 0
}
