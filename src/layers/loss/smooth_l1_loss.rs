//! SmoothL1Loss (Fast/Faster R-CNN's fork, rbgirshick/caffe-fast-rcnn): the
//! box regression loss.
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SmoothL1Loss",
        family: family_of(file!()),
        params: "smooth_l1_loss_param.sigma; bottoms: predictions, targets, and optionally inside and outside weights \
                 (Fast R-CNN's fork; the weights get no gradient)",
        tests: "layers_loss: smooth_l1_loss_* (values worked out by hand, sigma, weights, gradient checks, errors)",
        create: |p| Ok(Box::new(SmoothL1Loss { sigma: p.smooth_l1_loss_param.unwrap_or_default().sigma() as f64 })),
    });
}

/// With d = inside·(prediction − target): Σ outside·f(d) / N, where f(d) is
/// ½σ²d² for |d| < 1/σ² and |d| − ½/σ² beyond (the fork's GPU code; its CPU
/// code is not written). Both the predictions and the targets get gradients.
pub struct SmoothL1Loss {
    sigma: f64,
}

fn check(bottoms: &[Shape]) -> Result<()> {
    check_bottoms(bottoms, 2, 4)?;
    if bottoms.len() == 3 {
        bail!("with weights, give both the inside and the outside weights (4 bottoms), got 3 bottoms");
    }
    let (a, b) = (&bottoms[0], &bottoms[1]);
    let count = |s: &Shape| s.iter().product::<i64>();
    if a.is_empty() || b.first() != a.first() || count(a) != count(b) {
        bail!("predictions {a:?} and targets {b:?} must have the same shape");
    }
    for (k, w) in bottoms.iter().enumerate().skip(2) {
        if count(w) != count(a) {
            bail!("bottom {k} (weights) has shape {w:?}, the predictions {a:?}: they must hold as many values");
        }
    }
    Ok(())
}

impl Layer for SmoothL1Loss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check(bottoms)?;
        if !(self.sigma.is_finite() && self.sigma != 0.0) {
            bail!("smooth_l1_loss_param.sigma must be finite and non-zero, got {}", self.sigma);
        }
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        check(&shapes)?;
        let shape = shapes[0].as_slice();
        let mut d = bottoms[0].f_sub(&bottoms[1].f_reshape(shape)?)?;
        if bottoms.len() == 4 {
            d = d.f_mul(&bottoms[2].detach().f_reshape(shape)?)?;
        }
        let sigma2 = self.sigma * self.sigma;
        let abs = d.f_abs()?;
        let quadratic = d.f_square()?.f_mul_scalar(0.5 * sigma2)?;
        let linear = abs.f_sub_scalar(0.5 / sigma2)?;
        let mut errors = quadratic.f_where_self(&abs.f_lt(1.0 / sigma2)?, &linear)?;
        if bottoms.len() == 4 {
            errors = errors.f_mul(&bottoms[3].detach().f_reshape(shape)?)?;
        }
        let num = shape[0].max(1) as f64;
        Ok(vec![errors.f_sum(d.kind())?.f_div_scalar(num)?])
    }
}
