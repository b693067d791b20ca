//! SoftmaxWithLoss: the softmax and the multinomial logistic loss in one layer.
use crate::Result;
use tch::Tensor;

use super::{
    around_axis, check_same_num, class_labels, loss_ignore_label, loss_tops, normalization_of, normalize_sum,
    safe_labels, valid_mask, value_with_grad_of,
};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SoftmaxWithLoss",
        family: family_of(file!()),
        params: "softmax_param.axis, loss_param.ignore_label, loss_param.normalization (FULL, VALID, BATCH_SIZE, NONE), loss_param.normalize (legacy), second top (softmax probabilities)",
        tests: "parity (lenet, cifar10, resnet_small), gradient check, normalization/ignore_label/axis tests (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(SoftmaxWithLoss::new(p))),
    });
}

/// SoftmaxWithLoss: −log softmax(x)[label], normalized. The loss value clamps
/// the probability at FLT_MIN (Caffe reports 87.3365 for a hopeless sample);
/// the gradient is the unclamped softmax − one-hot, as Caffe's backward.
pub struct SoftmaxWithLoss {
    lp: LayerParameter,
    axis: usize,
    ignore: Option<i64>,
    mode: NormalizationMode,
}

impl SoftmaxWithLoss {
    fn new(lp: &LayerParameter) -> Self {
        SoftmaxWithLoss {
            lp: lp.clone(),
            axis: 1,
            ignore: loss_ignore_label(lp),
            mode: normalization_of(lp, NormalizationMode::Valid),
        }
    }

    fn check(&mut self, bottoms: &[Shape]) -> Result<()> {
        check_same_num(&bottoms[0], &bottoms[1])?;
        let axis = self.lp.softmax_param.as_ref().map(|s| s.axis()).unwrap_or(1);
        self.axis = canonical_axis(axis, bottoms[0].len())?;
        let (outer, _, inner) = around_axis(&bottoms[0], self.axis);
        let labels: i64 = bottoms[1].iter().product();
        if outer * inner != labels {
            bail!(
                "Number of labels ({labels}) must match number of predictions ({outer}×{inner}); e.g., if softmax axis == 1 and prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, with integer values in {{0, 1, ..., C-1}}"
            );
        }
        Ok(())
    }
}

impl Layer for SoftmaxWithLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        self.check(bottoms)?;
        Ok(SetupOut { tops: loss_tops(&self.lp, Some(bottoms[0].clone()))?, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        self.check(&[shape.clone(), bottoms[1].size()])?;
        let (outer, classes, inner) = around_axis(&shape, self.axis);
        let logp = x.f_log_softmax(self.axis as i64, x.kind())?.f_reshape([outer, classes, inner])?;
        let labels = class_labels(&bottoms[1], outer, inner, classes, self.ignore)?;
        let valid = valid_mask(&labels, self.ignore)?;
        let picked = logp.f_gather(1, &safe_labels(&labels, &valid)?.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
        let picked = value_with_grad_of(&picked.f_clamp_min((f32::MIN_POSITIVE as f64).ln())?, &picked)?;
        let picked = picked.f_where_self(&valid, &picked.f_zeros_like()?)?;
        let counted = self.ignore.map(|_| &valid);
        let loss = normalize_sum(&picked.f_sum(x.kind())?.f_neg()?, self.mode, outer, inner, counted)?;
        let mut tops = vec![loss];
        if self.lp.top.len() > 1 {
            // Caffe's backward ignores the probability top's diff.
            tops.push(x.detach().f_softmax(self.axis as i64, x.kind())?);
        }
        Ok(tops)
    }
}
