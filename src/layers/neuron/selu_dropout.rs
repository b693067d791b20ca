//! SeLuDropout, the self-normalizing networks' alpha dropout.
use crate::Result;
use tch::Tensor;

use super::same_shape;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SeLuDropout",
        family: family_of(file!()),
        params: "dropout_ratio, alpha (selu_dropout_param, the SNN fork's field 162)",
        tests: "gradient check (TRAIN, fixed seed), TRAIN/TEST numeric tests (tests/layers_activation.rs)",
        create: |p| Ok(Box::new(SeLuDropout::new(p)?)),
    });
}

/// In TRAIN, each unit is kept with probability q = 1 − ratio and a dropped
/// one takes the value α; then y = a·x + b with a = (q·(1 + α²·(1 − q)))^−½
/// and b = −a·(1 − q)·α, which keep zero mean and unit variance. The
/// gradient is a on kept units, 0 on dropped ones. TEST is the identity.
pub struct SeLuDropout {
    alpha: f64,
    keep: f64,
    a: f64,
    b: f64,
}

impl SeLuDropout {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.selu_dropout_param.unwrap_or_default();
        let ratio = p.dropout_ratio() as f64;
        let alpha = p.alpha() as f64;
        // The fork DCHECKs 0 < ratio < 1: at either end a or b is not finite.
        if !(ratio > 0.0 && ratio < 1.0) {
            bail!("selu_dropout_param.dropout_ratio must be in (0, 1), got {ratio}");
        }
        if !alpha.is_finite() {
            bail!("selu_dropout_param.alpha must be finite, got {alpha}");
        }
        // In f32, as the fork computes them.
        let q = 1.0 - ratio as f32;
        let a32 = (q * (1.0 + alpha as f32 * alpha as f32 * (1.0 - q))).powf(-0.5);
        let b32 = -a32 * (1.0 - q) * alpha as f32;
        Ok(SeLuDropout { alpha, keep: q as f64, a: a32 as f64, b: b32 as f64 })
    }
}

impl Layer for SeLuDropout {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        same_shape(bottoms)
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        if !ctx.train() {
            return Ok(vec![x.shallow_clone()]);
        }
        let mask = x.detach().f_bernoulli_p(self.keep)?;
        // mask·x + (1 − mask)·α, then a·(…) + b.
        let dropped = mask.f_neg()?.f_add_scalar(1.0)?.f_mul_scalar(self.alpha)?;
        let y = x.f_mul(&mask)?.f_add(&dropped)?.f_mul_scalar(self.a)?.f_add_scalar(self.b)?;
        Ok(vec![y])
    }
}
