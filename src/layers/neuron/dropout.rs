//! Dropout, with the fork's `scale_train` option.
use crate::Result;
use tch::Tensor;

use super::same_shape;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Dropout",
        family: family_of(file!()),
        params: "dropout_ratio, scale_train (caffe-tch extension, default true)",
        tests: "gradient check (TRAIN, fixed seed), TRAIN/TEST numeric tests (tests/layers_activation.rs)",
        create: |p| Ok(Box::new(Dropout::new(p)?)),
    });
}

/// Dropout: in TRAIN, keeps each unit with probability 1 − ratio and scales
/// kept units by 1/(1 − ratio); TEST is the identity. With `scale_train: false`
/// (a fork option) TRAIN does not scale and TEST multiplies by 1 − ratio instead.
pub struct Dropout {
    ratio: f64,
    scale_train: bool,
}

impl Dropout {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.dropout_param.unwrap_or_default();
        let ratio = p.dropout_ratio() as f64;
        // Caffe only DCHECKs 0 < ratio < 1; ratio 1 would give 0·∞ = NaN in its release builds.
        if !(0.0..1.0).contains(&ratio) {
            bail!("dropout_ratio must be in [0, 1), got {ratio}");
        }
        Ok(Dropout { ratio, scale_train: p.scale_train() })
    }
}

impl Layer for Dropout {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        same_shape(bottoms)
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let keep = 1.0 - self.ratio;
        if !ctx.train() {
            return Ok(vec![if self.scale_train { x.shallow_clone() } else { x.f_mul_scalar(keep)? }]);
        }
        let mask = x.detach().f_bernoulli_p(keep)?;
        let y = x.f_mul(&mask)?;
        Ok(vec![if self.scale_train { y.f_mul_scalar(1.0 / keep)? } else { y }])
    }
}
