//! Losses and metrics: SoftmaxWithLoss, Accuracy, and the other Caffe losses.
use tch::{Kind, Tensor};

use super::registry::LayerInfo;
use super::{canonical_axis, check_bottoms, count, Ctx, Layer, LayerResult, SetupOut, Shape};
use crate::layer_bail;
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SoftmaxWithLoss",
        family: "loss.rs",
        params: "softmax_param.axis, loss_param.ignore_label, loss_param.normalization (FULL, VALID, BATCH_SIZE, NONE), loss_param.normalize (legacy)",
        tests: "parity (lenet, cifar10, resnet_small), gradient check, normalization tests",
        create: |p| Ok(Box::new(SoftmaxWithLoss::new(p))),
    });
    r.push(LayerInfo {
        type_name: "Accuracy",
        family: "loss.rs",
        params: "top_k, axis, ignore_label, second top (per-class accuracy)",
        tests: "parity (lenet), top-k and ignore_label tests",
        create: |p| Ok(Box::new(Accuracy::new(p))),
    });
}

/// Caffe's loss normalizer: the divisor for a summed loss.
pub fn normalizer(mode: NormalizationMode, outer: i64, inner: i64, valid: Option<i64>) -> f64 {
    let n = match mode {
        NormalizationMode::Full => (outer * inner) as f64,
        NormalizationMode::Valid => valid.unwrap_or(outer * inner) as f64,
        NormalizationMode::BatchSize => outer as f64,
        NormalizationMode::None => 1.0,
    };
    n.max(1.0)
}

/// The normalization mode, honouring the legacy `normalize` flag.
pub fn normalization_of(lp: &LayerParameter) -> NormalizationMode {
    let lossp = lp.loss_param.clone().unwrap_or_default();
    match lossp.normalize {
        Some(true) => NormalizationMode::Valid,
        Some(false) => NormalizationMode::BatchSize,
        None => lossp.normalization(),
    }
}

/// Labels as int64 class indices over (outer, inner), checked against `classes`
/// (ignoring `ignore`). Out-of-range labels are an error, not a crash.
fn class_labels(label: &Tensor, outer: i64, inner: i64, classes: i64, ignore: Option<i64>) -> LayerResult<Tensor> {
    let l = label.detach().to_kind(Kind::Int64).reshape([outer, inner]);
    let valid = match ignore {
        Some(i) => l.ne(i),
        None => l.ones_like().to_kind(Kind::Bool),
    };
    let bad = (l.lt(0).logical_or(&l.ge(classes))).logical_and(&valid);
    if bad.any().int64_value(&[]) != 0 {
        let first = l.masked_select(&bad).int64_value(&[0]);
        layer_bail!("label {first} is out of range for {classes} classes");
    }
    Ok(l)
}

pub struct SoftmaxWithLoss {
    lp: LayerParameter,
    axis: usize,
}

impl SoftmaxWithLoss {
    fn new(lp: &LayerParameter) -> Self {
        SoftmaxWithLoss { lp: lp.clone(), axis: 1 }
    }
    fn ignore_label(&self) -> Option<i64> {
        self.lp.loss_param.as_ref().and_then(|l| l.ignore_label).map(|v| v as i64)
    }
}

impl Layer for SoftmaxWithLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }
    fn setup(&mut self, bottoms: &[Shape]) -> LayerResult<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        let axis = self.lp.softmax_param.as_ref().map(|s| s.axis()).unwrap_or(1);
        self.axis = canonical_axis(axis, bottoms[0].len())?;
        let outer = count(&bottoms[0], 0, self.axis);
        let inner = count(&bottoms[0], self.axis + 1, bottoms[0].len());
        let labels: i64 = bottoms[1].iter().product();
        if outer * inner != labels {
            layer_bail!(
                "number of labels ({labels}) must match the number of predictions ({outer}×{inner}); e.g., if softmax axis == 1 and prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W"
            );
        }
        let mut tops = vec![vec![]];
        if self.lp.top.len() > 1 {
            tops.push(bottoms[0].clone());
        }
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> LayerResult<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        let outer = count(&shape, 0, self.axis);
        let classes = shape[self.axis];
        let inner = count(&shape, self.axis + 1, shape.len());
        let logp = x.f_log_softmax(self.axis as i64, x.kind())?.reshape([outer, classes, inner]);
        let ignore = self.ignore_label();
        let labels = class_labels(&bottoms[1], outer, inner, classes, ignore)?;
        let valid = match ignore {
            Some(i) => labels.ne(i),
            None => labels.ones_like().to_kind(Kind::Bool),
        };
        let safe = labels.where_self(&valid, &labels.zeros_like());
        let picked = logp.gather(1, &safe.unsqueeze(1), false).squeeze_dim(1);
        let picked = picked.where_self(&valid, &picked.zeros_like());
        let valid_count = ignore.map(|_| valid.sum(Kind::Int64).int64_value(&[]));
        let norm = normalizer(normalization_of(&self.lp), outer, inner, valid_count);
        let loss = -picked.sum(x.kind()) / norm;
        let mut tops = vec![loss];
        if self.lp.top.len() > 1 {
            tops.push(x.f_softmax(self.axis as i64, x.kind())?);
        }
        Ok(tops)
    }
}

pub struct Accuracy {
    lp: LayerParameter,
    axis: usize,
}

impl Accuracy {
    fn new(lp: &LayerParameter) -> Self {
        Accuracy { lp: lp.clone(), axis: 1 }
    }
}

impl Layer for Accuracy {
    fn setup(&mut self, bottoms: &[Shape]) -> LayerResult<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        let p = self.lp.accuracy_param.clone().unwrap_or_default();
        self.axis = canonical_axis(p.axis(), bottoms[0].len())?;
        let classes = bottoms[0][self.axis];
        if p.top_k() as i64 > classes {
            layer_bail!("top_k ({}) must be at most the number of classes ({classes})", p.top_k());
        }
        let outer = count(&bottoms[0], 0, self.axis);
        let inner = count(&bottoms[0], self.axis + 1, bottoms[0].len());
        let labels: i64 = bottoms[1].iter().product();
        if outer * inner != labels {
            layer_bail!("number of labels ({labels}) must match the number of predictions ({outer}×{inner})");
        }
        let mut tops = vec![vec![]];
        if self.lp.top.len() > 1 {
            tops.push(vec![classes]);
        }
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> LayerResult<Vec<Tensor>> {
        let p = self.lp.accuracy_param.clone().unwrap_or_default();
        let x = bottoms[0].detach();
        let shape = x.size();
        let outer = count(&shape, 0, self.axis);
        let classes = shape[self.axis];
        let inner = count(&shape, self.axis + 1, shape.len());
        let x = x.reshape([outer, classes, inner]);
        let ignore = p.ignore_label.map(|v| v as i64);
        let labels = class_labels(&bottoms[1], outer, inner, classes, ignore)?;
        let valid = match ignore {
            Some(i) => labels.ne(i),
            None => labels.ones_like().to_kind(Kind::Bool),
        };
        let safe = labels.where_self(&valid, &labels.zeros_like());
        let true_score = x.gather(1, &safe.unsqueeze(1), false);
        // Caffe counts classes scoring strictly higher than the true class: ties count as correct.
        let better = x.gt_tensor(&true_score).sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
        let correct = better.lt(p.top_k() as i64).logical_and(&valid);
        let n_valid = valid.sum(Kind::Float);
        let acc = correct.sum(Kind::Float) / n_valid.clamp_min(1.0);
        let mut tops = vec![acc.to_kind(bottoms[0].kind())];
        if self.lp.top.len() > 1 {
            let onehot_valid = safe.masked_select(&valid);
            let onehot_correct = safe.masked_select(&correct);
            let per_class_count = onehot_valid.bincount::<Tensor>(None, classes).to_kind(Kind::Float);
            let per_class_correct = onehot_correct.bincount::<Tensor>(None, classes).to_kind(Kind::Float);
            let per_class = (per_class_correct / per_class_count.clamp_min(1.0)).to_kind(bottoms[0].kind());
            tops.push(per_class);
        }
        Ok(tops)
    }
}
