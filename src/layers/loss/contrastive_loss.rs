//! ContrastiveLoss: pulls similar pairs together, pushes dissimilar ones past a margin.
use crate::Result;
use tch::Tensor;

use super::{check_one_per_sample, check_same_num, legacy_dim, value_with_grad_of};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ContrastiveLoss",
        family: family_of(file!()),
        params: "contrastive_loss_param.margin, contrastive_loss_param.legacy_version",
        tests: "gradient check, numeric tests incl. Caffe's ε-regularised gradient (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(ContrastiveLoss::new(p))),
    });
}

/// ContrastiveLoss over pairs (a, b) with similarity y:
/// (1/2N) Σ [y·d² + (1−y)·max(margin − d, 0)²] (legacy: max(margin − d², 0)).
/// Caffe's non-legacy backward divides by (d + 1e-4), not d: reproduced here.
pub struct ContrastiveLoss {
    margin: f64,
    legacy: bool,
}

impl ContrastiveLoss {
    fn new(lp: &LayerParameter) -> Self {
        let p = lp.contrastive_loss_param.unwrap_or_default();
        ContrastiveLoss { margin: p.margin() as f64, legacy: p.legacy_version() }
    }
}

fn check_contrastive(bottoms: &[Shape]) -> Result<()> {
    let (a, b, y) = (&bottoms[0], &bottoms[1], &bottoms[2]);
    check_same_num(a, b)?;
    if legacy_dim(a, 1)? != legacy_dim(b, 1)? {
        bail!("the two feature bottoms must have the same channels: {a:?} vs {b:?}");
    }
    for (s, what) in [(a, "bottom[0]"), (b, "bottom[1]")] {
        if legacy_dim(s, 2)? != 1 || legacy_dim(s, 3)? != 1 {
            bail!("{what} must be N×C×1×1, got shape {s:?}");
        }
    }
    check_one_per_sample(y, "the similarity bottom")?;
    if y.is_empty() || y[0] != a[0] {
        bail!("the similarity bottom needs one value per pair: {} pairs, shape {y:?}", a[0]);
    }
    Ok(())
}

impl Layer for ContrastiveLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 3, 3)?;
        check_contrastive(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        check_contrastive(&shapes)?;
        let (a, b) = (&bottoms[0], &bottoms[1]);
        let kind = a.kind();
        let num = shapes[0][0];
        let channels = legacy_dim(&shapes[0], 1)?;
        let diff = a.f_reshape([num, channels])?.f_sub(&b.f_reshape([num, channels])?)?;
        let dist_sq = diff.f_square()?.f_sum_dim_intlist([1i64].as_slice(), false, kind)?;
        let similar = bottoms[2].detach().f_reshape([num])?.f_trunc()?.f_ne(0)?;
        let dissimilar = if self.legacy {
            dist_sq.f_neg()?.f_add_scalar(self.margin)?.f_relu()?
        } else {
            let dist = dist_sq.detach().f_sqrt()?;
            let mdist = dist.f_neg()?.f_add_scalar(self.margin)?;
            let value = mdist.f_relu()?.f_square()?;
            // d(term)/d(diff) = −2·mdist/(d + 1e-4)·diff where mdist > 0, else 0:
            // the gradient of k·d² with a detached k = −mdist/(d + 1e-4).
            let k = mdist.f_div(&dist.f_add_scalar(1e-4)?)?.f_neg()?.f_mul(&mdist.f_gt(0.0)?.f_to_kind(kind)?)?;
            value_with_grad_of(&value, &dist_sq.f_mul(&k)?)?
        };
        let per_pair = dist_sq.f_where_self(&similar, &dissimilar)?;
        Ok(vec![per_pair.f_sum(kind)?.f_div_scalar(2.0 * num.max(1) as f64)?])
    }
}
