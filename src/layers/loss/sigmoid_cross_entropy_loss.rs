//! SigmoidCrossEntropyLoss: cross-entropy of targets in [0, 1] against sigmoid(x).
use crate::Result;
use tch::Tensor;

use super::{check_same_num, loss_ignore_label, normalization_of, normalize_sum};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SigmoidCrossEntropyLoss",
        family: family_of(file!()),
        params: "loss_param.ignore_label, loss_param.normalization (default BATCH_SIZE), loss_param.normalize (legacy)",
        tests: "gradient check, numeric and normalization tests (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(SigmoidCrossEntropyLoss::new(p))),
    });
}

/// SigmoidCrossEntropyLoss: Σ −[t·log σ(x) + (1−t)·log(1−σ(x))] in the stable
/// form, skipping targets whose int value is the ignore label; gradient σ(x) − t.
pub struct SigmoidCrossEntropyLoss {
    ignore: Option<i64>,
    mode: NormalizationMode,
}

impl SigmoidCrossEntropyLoss {
    fn new(lp: &LayerParameter) -> Self {
        // Unlike SoftmaxWithLoss, Caffe keeps the old BATCH_SIZE default here.
        SigmoidCrossEntropyLoss {
            ignore: loss_ignore_label(lp),
            mode: normalization_of(lp, NormalizationMode::BatchSize),
        }
    }
}

fn check_sigmoid_ce(bottoms: &[Shape]) -> Result<()> {
    check_same_num(&bottoms[0], &bottoms[1])?;
    let (a, b): (i64, i64) = (bottoms[0].iter().product(), bottoms[1].iter().product());
    if a != b {
        bail!("SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count ({a} vs {b})");
    }
    Ok(())
}

impl Layer for SigmoidCrossEntropyLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        check_sigmoid_ce(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        check_sigmoid_ce(&[shape.clone(), bottoms[1].size()])?;
        let target = bottoms[1].detach().f_to_kind(x.kind())?.f_reshape(shape.as_slice())?;
        let per = x.f_binary_cross_entropy_with_logits::<Tensor>(&target, None, None, tch::Reduction::None)?;
        let (outer, inner) = (shape[0], count(&shape, 1, shape.len()));
        let (per, valid) = match self.ignore {
            Some(i) => {
                let valid = target.f_trunc()?.f_ne(i)?;
                (per.f_where_self(&valid, &per.f_zeros_like()?)?, Some(valid))
            }
            None => (per, None),
        };
        Ok(vec![normalize_sum(&per.f_sum(x.kind())?, self.mode, outer, inner, valid.as_ref())?])
    }
}
