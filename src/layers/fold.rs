//! What an inference forward may fold into the layer before it: the layers
//! that run in place on that layer's top right after it (BatchNorm with
//! global statistics, a per-channel Scale, a plain ReLU), so it writes their
//! result in one pass. Each such layer describes itself
//! ([`crate::layers::Layer::inference_epilogue`]); the net finds the chains
//! (`net/fusion.rs`); the layer before them runs them if it can
//! ([`crate::layers::Layer::forward_with_epilogues`]: a convolution folds
//! them into its packed weights, `vision/inference_weights.rs`; an Eltwise sum
//! adds and applies a ReLU in one pass). A chain only replaces values that
//! Caffe's in-place layers overwrite too, so every blob keeps Caffe's value
//! (to float rounding: the folded factors and biases are composed in double).
use tch::{Kind, Tensor};

use crate::Result;

/// One in-place layer folded into a convolution, holding the layer's own
/// blobs (not values derived from them), so the convolution can tell when
/// they change.
pub enum Epilogue {
    /// `(y − mean_sum/factor) / sqrt(var_sum/factor + eps)` per channel
    /// (Caffe's global statistics; a factor of 0 reads as statistics of 0).
    BatchNorm { mean_sum: Tensor, var_sum: Tensor, factor: Tensor, eps: f64 },
    /// `scale·y (+ bias)` per channel.
    Scale { scale: Tensor, bias: Option<Tensor> },
    /// `max(y, 0)`: oneDNN applies it as the convolution's post-op; only last.
    Relu,
}

/// What distinguishes one chain's arithmetic from another's, beyond the
/// blobs' values: two forwards with equal recipes and unchanged blobs fold to
/// the same weights.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    BatchNorm { eps: f64 },
    Scale { bias: bool },
    Relu,
}

impl Epilogue {
    pub fn recipe(&self) -> Recipe {
        match self {
            Epilogue::BatchNorm { eps, .. } => Recipe::BatchNorm { eps: *eps },
            Epilogue::Scale { bias, .. } => Recipe::Scale { bias: bias.is_some() },
            Epilogue::Relu => Recipe::Relu,
        }
    }

    /// The blobs the folded weights are computed from.
    pub fn sources(&self) -> Vec<&Tensor> {
        match self {
            Epilogue::BatchNorm { mean_sum, var_sum, factor, .. } => vec![mean_sum, var_sum, factor],
            Epilogue::Scale { scale, bias } => std::iter::once(scale).chain(bias.as_ref()).collect(),
            Epilogue::Relu => vec![],
        }
    }

    /// This layer as `y ↦ a·y + b` per channel (double), or `None` for ReLU.
    fn channel_affine(&self) -> Result<Option<(Tensor, Tensor)>> {
        let double = |t: &Tensor| t.f_detach().and_then(|t| t.f_to_kind(Kind::Double)).and_then(|t| t.f_reshape([-1]));
        Ok(match self {
            Epilogue::BatchNorm { mean_sum, var_sum, factor, eps } => {
                let factor = factor.f_reshape([-1])?.f_double_value(&[0])?;
                let factor = if factor == 0.0 { 0.0 } else { 1.0 / factor };
                // The averages in the blobs' own kind, as the layer computes
                // them: equal statistics stored under another factor (a
                // PyTorch-named weights file keeps factor 1) fold equally.
                let mean = double(&mean_sum.f_detach()?.f_mul_scalar(factor)?)?;
                let var = double(&var_sum.f_detach()?.f_mul_scalar(factor)?)?;
                let inv_std = var.f_add_scalar(*eps)?.f_rsqrt()?;
                let shift = mean.f_neg()?.f_mul(&inv_std)?;
                Some((inv_std, shift))
            }
            Epilogue::Scale { scale, bias } => {
                let a = double(scale)?;
                let b = match bias {
                    Some(b) => double(b)?,
                    None => a.f_zeros_like()?,
                };
                Some((a, b))
            }
            Epilogue::Relu => None,
        })
    }
}

/// A convolution with its epilogues folded in.
pub struct Folded {
    pub weights: Tensor,
    pub bias: Option<Tensor>,
    /// A ReLU ends the chain: the convolution's post-op.
    pub relu: bool,
}

/// The weights and bias of one convolution that computes `w`'s convolution
/// (plus `bias`) followed by every affine epilogue in turn, and whether a
/// ReLU ends the chain. The weights have `w`'s kind; each epilogue's values
/// must number the convolution's output channels (`w`'s first axis): `None`
/// where one does not.
pub fn fold_into_convolution(w: &Tensor, bias: Option<&Tensor>, epilogues: &[Epilogue]) -> Result<Option<Folded>> {
    let outputs = w.size()[0];
    let mut a = Tensor::f_ones([outputs], (Kind::Double, w.device()))?;
    let mut b = match bias {
        Some(b) => b.f_detach()?.f_to_kind(Kind::Double)?.f_reshape([-1])?,
        None => Tensor::f_zeros([outputs], (Kind::Double, w.device()))?,
    };
    let mut relu = false;
    let mut affine = false;
    for e in epilogues {
        match e.channel_affine()? {
            Some((scale, shift)) => {
                if scale.numel() != outputs as usize || shift.numel() != outputs as usize {
                    return Ok(None);
                }
                a = a.f_mul(&scale)?;
                b = b.f_mul(&scale)?.f_add(&shift)?;
                affine = true;
            }
            None => relu = true,
        }
    }
    if !affine {
        return Ok(Some(Folded { weights: w.f_detach()?, bias: bias.map(|b| b.shallow_clone()), relu }));
    }
    let mut per_output = vec![outputs];
    per_output.resize(w.dim(), 1);
    // The per-channel factors are composed in double; the weights are scaled
    // in their own kind, one rounded product each, without a double copy of
    // every weight (the first forward of a large net pays for the fold).
    let factors = a.f_to_kind(w.kind())?.f_reshape(per_output.as_slice())?;
    let folded = w.f_detach()?.f_mul(&factors)?;
    Ok(Some(Folded { weights: folded, bias: Some(b.f_to_kind(w.kind())?), relu }))
}
