//! The parameter-free neuron functions as one layer: ELU, SeLu, Sigmoid, TanH,
//! AbsVal, BNLL, Power, Exp, Log, Threshold, Clip and Swish. Each type's file
//! (`sigmoid.rs`, `power.rs`, ...) registers it and builds its [`Op`]; the
//! forward below computes every `Op`.
use crate::Result;
use tch::Tensor;

use super::same_shape;
use crate::bail;
use crate::layers::{Ctx, Layer, SetupOut, Shape};

/// The parameter-free element-wise functions.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Sigmoid,
    TanH,
    AbsVal,
    Bnll,
    Elu {
        alpha: f64,
    },
    /// λ·ELU_α(x), the self-normalizing networks' activation.
    Selu {
        lambda: f64,
        alpha: f64,
    },
    Power {
        power: f64,
        scale: f64,
        shift: f64,
    },
    /// y = outer·exp(inner·x), Caffe's precomputed form of base^(shift + scale·x).
    Exp {
        inner: f64,
        outer: f64,
    },
    /// y = base_scale·ln(shift + scale·x).
    Log {
        base_scale: f64,
        scale: f64,
        shift: f64,
    },
    Threshold {
        threshold: f64,
    },
    Clip {
        min: f64,
        max: f64,
    },
    Swish {
        beta: f64,
    },
}

/// ln(base), with Caffe's rule that base -1 means e; other bases must be > 0.
pub fn ln_base(base: f32) -> Result<f64> {
    if base == -1.0 {
        return Ok(1.0);
    }
    if base.is_nan() || base <= 0.0 {
        bail!("base must be strictly positive (or -1 for e), got {base}");
    }
    let l = (base as f64).ln();
    if !l.is_finite() {
        bail!("log(base) = log({base}) is not finite");
    }
    Ok(l)
}

/// ELU_α(x) = max(x, 0) + α(exp(min(x, 0)) − 1): the min keeps exp finite
/// on the side that is not used.
fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let neg = x.f_clamp_max(0.0)?.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?;
    Ok(x.f_relu()?.f_add(&neg)?)
}

/// A parameter-free neuron layer.
pub struct Elementwise {
    op: Op,
}

impl Elementwise {
    pub(super) fn new(op: Op) -> Self {
        Elementwise { op }
    }
}

impl Layer for Elementwise {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        same_shape(bottoms)
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let y = match self.op {
            Op::Sigmoid => x.f_sigmoid()?,
            Op::TanH => x.f_tanh()?,
            // d|x|/dx = sign(x), 0 at 0, as Caffe.
            Op::AbsVal => x.f_abs()?,
            // softplus = Caffe's stable BNLL; its gradient is sigmoid(x) (0.5 at 0, as Caffe).
            Op::Bnll => x.f_softplus()?,
            Op::Elu { alpha } => elu(x, alpha)?,
            Op::Selu { lambda, alpha } => elu(x, alpha)?.f_mul_scalar(lambda)?,
            Op::Power { power, scale, shift } => {
                if power * scale == 0.0 {
                    // Caffe ignores the input: a constant with zero gradient.
                    let v = if power == 0.0 { 1.0 } else { (shift as f32).powf(power as f32) as f64 };
                    return Ok(vec![x.detach().f_full_like(v)?]);
                }
                let mut y = x.shallow_clone();
                if scale != 1.0 {
                    y = y.f_mul_scalar(scale)?;
                }
                if shift != 0.0 {
                    y = y.f_add_scalar(shift)?;
                }
                if power != 1.0 {
                    y = y.f_pow_tensor_scalar(power)?;
                }
                y
            }
            Op::Exp { inner, outer } => {
                let mut y = if inner == 1.0 { x.f_exp()? } else { x.f_mul_scalar(inner)?.f_exp()? };
                if outer != 1.0 {
                    y = y.f_mul_scalar(outer)?;
                }
                y
            }
            Op::Log { base_scale, scale, shift } => {
                let mut y = x.shallow_clone();
                if scale != 1.0 {
                    y = y.f_mul_scalar(scale)?;
                }
                if shift != 0.0 {
                    y = y.f_add_scalar(shift)?;
                }
                let mut y = y.f_log()?;
                if base_scale != 1.0 {
                    y = y.f_mul_scalar(base_scale)?;
                }
                y
            }
            // A step function: Caffe has no backward for it, so the top carries no gradient.
            Op::Threshold { threshold } => x.detach().f_gt(threshold)?.f_to_kind(x.kind())?,
            // max(min, min(x, max)) as Caffe (min wins when min > max); the gradient passes
            // where min ≤ x ≤ max, both ends included.
            Op::Clip { min, max } => x.f_clamp_max(max)?.f_clamp_min(min)?,
            Op::Swish { beta } => x.f_mul(&x.f_mul_scalar(beta)?.f_sigmoid()?)?,
        };
        Ok(vec![y])
    }
}
