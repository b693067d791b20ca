//! Losses and metrics (Caffe's LossLayer family, and Accuracy): one file per
//! type (SoftmaxWithLoss, SigmoidCrossEntropyLoss, EuclideanLoss, HingeLoss,
//! InfogainLoss, MultinomialLogisticLoss, ContrastiveLoss, Fast R-CNN's
//! SmoothL1Loss, Accuracy); this file holds what they share: the
//! normalization, the label checks and the tops.
//!
//! Loss tops are 0-D scalars. Labels (and Infogain's H, Contrastive's
//! similarity) never get gradients. Where Caffe's backward is not the exact
//! gradient of its forward (clamped logs, Contrastive's ε), the forward is
//! built so autograd yields Caffe's backward: see `value_with_grad_of`.
use crate::Result;

use tch::{Kind, Tensor};

use super::registry::LayerInfo;
use super::{count, Shape};
use crate::bail;
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::LayerParameter;

pub mod accuracy;
pub mod contrastive_loss;
pub mod euclidean_loss;
pub mod hinge_loss;
pub mod infogain_loss;
pub mod multinomial_logistic_loss;
pub mod seg_accuracy;
pub mod sigmoid_cross_entropy_loss;
pub mod smooth_l1_loss;
pub mod softmax_with_loss;

/// Caffe's `kLOG_THRESHOLD`: probabilities are clamped here before a log.
const LOG_THRESHOLD: f64 = 1e-20;

pub fn register(r: &mut Vec<LayerInfo>) {
    softmax_with_loss::register(r);
    sigmoid_cross_entropy_loss::register(r);
    euclidean_loss::register(r);
    hinge_loss::register(r);
    infogain_loss::register(r);
    multinomial_logistic_loss::register(r);
    contrastive_loss::register(r);
    smooth_l1_loss::register(r);
    accuracy::register(r);
    seg_accuracy::register(r);
}

/// Caffe's loss normalizer: the divisor for a summed loss, at least 1 (so a
/// batch with every label ignored gives loss 0, not NaN).
pub fn normalizer(mode: NormalizationMode, outer: i64, inner: i64, valid: Option<i64>) -> f64 {
    let n = match mode {
        NormalizationMode::Full => (outer * inner) as f64,
        NormalizationMode::Valid => valid.unwrap_or(outer * inner) as f64,
        NormalizationMode::BatchSize => outer as f64,
        NormalizationMode::None => 1.0,
    };
    n.max(1.0)
}

/// A summed loss divided by Caffe's normalizer. `valid` (the entries not
/// ignored) is counted only where the mode divides by it (VALID with an
/// ignore label): on the host, or on the device while a CUDA graph records
/// the pass (as a reciprocal times the sum, which is how a division by a
/// host number runs on CUDA).
fn normalize_sum(
    sum: &Tensor,
    mode: NormalizationMode,
    outer: i64,
    inner: i64,
    valid: Option<&Tensor>,
) -> Result<Tensor> {
    match valid {
        Some(valid) if mode == NormalizationMode::Valid => {
            if super::capture::recording() {
                let count = valid.f_sum(sum.kind())?.f_clamp_min(1.0)?;
                return Ok(sum.f_mul(&count.f_reciprocal()?)?);
            }
            let n = valid.f_sum(Kind::Int64)?.int64_value(&[]);
            Ok(sum.f_div_scalar(normalizer(mode, outer, inner, Some(n)))?)
        }
        _ => Ok(sum.f_div_scalar(normalizer(mode, outer, inner, None))?),
    }
}

/// The normalization mode: an explicit `normalization` wins; otherwise the
/// legacy `normalize` flag (true → VALID, false → BATCH_SIZE); otherwise `default`.
pub fn normalization_of(lp: &LayerParameter, default: NormalizationMode) -> NormalizationMode {
    let lossp = lp.loss_param.unwrap_or_default();
    if lossp.normalization.is_some() {
        return lossp.normalization();
    }
    match lossp.normalize {
        Some(true) => NormalizationMode::Valid,
        Some(false) => NormalizationMode::BatchSize,
        None => default,
    }
}

fn loss_ignore_label(lp: &LayerParameter) -> Option<i64> {
    lp.loss_param.as_ref().and_then(|l| l.ignore_label).map(|v| v as i64)
}

/// Caffe's LossLayer::Reshape check: bottoms 0 and 1 share their first axis.
fn check_same_num(a: &Shape, b: &Shape) -> Result<()> {
    if a.is_empty() || b.is_empty() {
        bail!("loss bottoms need at least one axis, got shapes {a:?} and {b:?}");
    }
    if a[0] != b[0] {
        bail!("The data and label should have the same first dimension: {a:?} vs {b:?}");
    }
    Ok(())
}

/// One of Caffe's legacy num/channels/height/width ([`crate::layers::legacy_dims`]).
fn legacy_dim(shape: &[i64], index: usize) -> Result<i64> {
    Ok(crate::layers::legacy_dims(shape)?[index])
}

/// Requires legacy channels, height and width of 1 (one value per sample).
fn check_one_per_sample(shape: &[i64], what: &str) -> Result<()> {
    for i in 1..4 {
        if legacy_dim(shape, i)? != 1 {
            bail!("{what} must be N×1×1×1 (one value per sample), got shape {shape:?}");
        }
    }
    Ok(())
}

/// A tensor whose value is `value` but whose gradient is that of `grad_source`:
/// reproduces Caffe backward passes that differ from the gradient of their forward.
pub(crate) fn value_with_grad_of(value: &Tensor, grad_source: &Tensor) -> Result<Tensor> {
    let correction = value.detach().f_sub(&grad_source.detach())?;
    Ok(grad_source.f_add(&correction)?)
}

/// Labels as int64 class indices over (outer, inner), truncated toward zero as
/// Caffe's `static_cast<int>`, checked against `classes` (ignoring `ignore`).
/// Out-of-range labels are an error, not a crash. While a CUDA graph records
/// the pass, the check is left to the net, which runs it on every batch
/// before the graph (a recorded pass cannot stop on a value).
fn class_labels(label: &Tensor, outer: i64, inner: i64, classes: i64, ignore: Option<i64>) -> Result<Tensor> {
    if label.numel() as i64 != outer * inner {
        bail!("number of labels ({}) must match the number of predictions ({outer}×{inner})", label.numel());
    }
    let l = label.detach().f_to_kind(Kind::Int64)?.f_reshape([outer, inner])?;
    if super::capture::recording() {
        super::capture::defer(label, move |label| {
            check_label_range(&label.detach().f_to_kind(Kind::Int64)?, classes, ignore)
        });
    } else {
        check_label_range(&l, classes, ignore)?;
    }
    Ok(l)
}

/// Fails naming the first label (as int64) outside 0..classes that is not `ignore`.
fn check_label_range(l: &Tensor, classes: i64, ignore: Option<i64>) -> Result<()> {
    let valid = valid_mask(l, ignore)?;
    let bad = l.f_lt(0)?.f_logical_or(&l.f_ge(classes)?)?.f_logical_and(&valid)?;
    if bad.f_any()?.int64_value(&[]) != 0 {
        let first = l.f_masked_select(&bad)?.int64_value(&[0]);
        bail!("label {first} is out of range for {classes} classes (labels must be in 0..{})", classes - 1);
    }
    Ok(())
}

/// True where a (truncated int) label is not the ignore label.
fn valid_mask(labels: &Tensor, ignore: Option<i64>) -> Result<Tensor> {
    Ok(match ignore {
        Some(i) => labels.f_ne(i)?,
        None => labels.f_ones_like()?.f_to_kind(Kind::Bool)?,
    })
}

/// The class indices with ignored positions replaced by 0 (safe for gather).
fn safe_labels(labels: &Tensor, valid: &Tensor) -> Result<Tensor> {
    Ok(labels.f_where_self(valid, &labels.f_zeros_like()?)?)
}

/// Splits a shape around the class axis: (outer, classes, inner).
fn around_axis(shape: &[i64], axis: usize) -> (i64, i64, i64) {
    (count(shape, 0, axis), shape[axis], count(shape, axis + 1, shape.len()))
}

/// Tops of a loss with an optional second top of `second` shape.
fn loss_tops(lp: &LayerParameter, second: Option<Shape>) -> Result<Vec<Shape>> {
    let max = if second.is_some() { 2 } else { 1 };
    if lp.top.len() > max {
        bail!("takes at most {max} top blob(s), got {}", lp.top.len());
    }
    let mut tops = vec![vec![]];
    if lp.top.len() > 1 {
        tops.extend(second);
    }
    Ok(tops)
}
