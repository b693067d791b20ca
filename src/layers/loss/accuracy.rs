//! Accuracy: the fraction of samples whose true class is in the top k, overall and per class.
use crate::Result;
use tch::{Kind, Tensor};

use super::{around_axis, class_labels, safe_labels, valid_mask};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Accuracy",
        family: family_of(file!()),
        params:
            "top_k, axis, ignore_label, second top (per-class accuracy); ties count against the true class, as Caffe",
        tests: "parity (lenet), top_k/ties/ignore_label/axis/per-class tests (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(Accuracy::new(p))),
    });
}

/// Accuracy: a sample is correct when fewer than top_k classes score at least
/// as high as the true class (other than itself). Ties with the true class
/// count against it, as Caffe's `>=` count does.
pub struct Accuracy {
    lp: LayerParameter,
    axis: usize,
}

impl Accuracy {
    fn new(lp: &LayerParameter) -> Self {
        Accuracy { lp: lp.clone(), axis: 1 }
    }

    fn check(&mut self, bottoms: &[Shape]) -> Result<()> {
        let p = self.lp.accuracy_param.unwrap_or_default();
        let labels: i64 = bottoms[1].iter().product();
        let total: i64 = bottoms[0].iter().product();
        if labels == 0 || p.top_k() as i64 > total / labels {
            bail!("top_k must be less than or equal to the number of classes (top_k {}, {} predictions for {labels} labels)", p.top_k(), total);
        }
        self.axis = canonical_axis(p.axis(), bottoms[0].len())?;
        let (outer, _, inner) = around_axis(&bottoms[0], self.axis);
        if outer * inner != labels {
            bail!(
                "Number of labels ({labels}) must match number of predictions ({outer}×{inner}); e.g., if label axis == 1 and prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, with integer values in {{0, 1, ..., C-1}}"
            );
        }
        Ok(())
    }
}

impl Layer for Accuracy {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        self.check(bottoms)?;
        if self.lp.top.len() > 2 {
            bail!("takes at most 2 top blobs, got {}", self.lp.top.len());
        }
        let mut tops = vec![vec![]];
        if self.lp.top.len() > 1 {
            tops.push(vec![bottoms[0][self.axis]]);
        }
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let p = self.lp.accuracy_param.unwrap_or_default();
        let x = bottoms[0].detach();
        let shape = x.size();
        self.check(&[shape.clone(), bottoms[1].size()])?;
        let (outer, classes, inner) = around_axis(&shape, self.axis);
        let x = x.f_reshape([outer, classes, inner])?;
        let ignore = p.ignore_label.map(|v| v as i64);
        let labels = class_labels(&bottoms[1], outer, inner, classes, ignore)?;
        let valid = valid_mask(&labels, ignore)?;
        let safe = safe_labels(&labels, &valid)?;
        let true_score = x.f_gather(1, &safe.f_unsqueeze(1)?, false)?;
        // Classes scoring >= the true class, the true class itself excluded.
        let at_least = x.f_ge_tensor(&true_score)?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Int64)?;
        let better = at_least.f_sub_scalar(1)?;
        let correct = better.f_lt(p.top_k() as i64)?.f_logical_and(&valid)?;
        let n_valid = valid.f_sum(Kind::Float)?;
        let acc = correct.f_sum(Kind::Float)?.f_div(&n_valid.f_clamp_min(1.0)?)?;
        let mut tops = vec![acc.f_to_kind(bottoms[0].kind())?];
        if self.lp.top.len() > 1 {
            let per_class_count =
                safe.f_masked_select(&valid)?.f_bincount::<Tensor>(None, classes)?.f_to_kind(Kind::Float)?;
            let per_class_correct =
                safe.f_masked_select(&correct)?.f_bincount::<Tensor>(None, classes)?.f_to_kind(Kind::Float)?;
            // Classes without samples read 0, as Caffe.
            let per_class = per_class_correct.f_div(&per_class_count.f_clamp_min(1.0)?)?;
            tops.push(per_class.f_to_kind(bottoms[0].kind())?);
        }
        Ok(tops)
    }
}
