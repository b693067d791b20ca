//! Losses and metrics: SoftmaxWithLoss, SigmoidCrossEntropyLoss, EuclideanLoss,
//! HingeLoss, InfogainLoss, MultinomialLogisticLoss, ContrastiveLoss, Accuracy.
//!
//! Loss tops are 0-D scalars. Labels (and Infogain's H, Contrastive's
//! similarity) never get gradients. Where Caffe's backward is not the exact
//! gradient of its forward (clamped logs, Contrastive's ε), the forward is
//! built so autograd yields Caffe's backward: see `value_with_grad_of`.
use crate::Result;
use std::path::Path;

use tch::{Kind, Tensor};

use super::{canonical_axis, check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::proto::caffe::hinge_loss_parameter::Norm;
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::{BlobProto, LayerParameter};

/// Caffe's `kLOG_THRESHOLD`: probabilities are clamped here before a log.
const LOG_THRESHOLD: f64 = 1e-20;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SoftmaxWithLoss",
        family: family_of(file!()),
        params: "softmax_param.axis, loss_param.ignore_label, loss_param.normalization (FULL, VALID, BATCH_SIZE, NONE), loss_param.normalize (legacy), second top (softmax probabilities)",
        tests: "parity (lenet, cifar10, resnet_small), gradient check, normalization/ignore_label/axis tests (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(SoftmaxWithLoss::new(p))),
    });
    r.push(LayerInfo {
        type_name: "SigmoidCrossEntropyLoss",
        family: family_of(file!()),
        params: "loss_param.ignore_label, loss_param.normalization (default BATCH_SIZE), loss_param.normalize (legacy)",
        tests: "gradient check, numeric and normalization tests (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(SigmoidCrossEntropyLoss::new(p))),
    });
    r.push(LayerInfo {
        type_name: "EuclideanLoss",
        family: family_of(file!()),
        params: "(none; both bottoms get gradients)",
        tests: "gradient check, numeric tests (tests/layers_loss.rs)",
        create: |_| Ok(Box::new(EuclideanLoss)),
    });
    r.push(LayerInfo {
        type_name: "HingeLoss",
        family: family_of(file!()),
        params: "hinge_loss_param.norm (L1, L2)",
        tests: "gradient check, numeric tests (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(HingeLoss { norm: p.hinge_loss_param.unwrap_or_default().norm() })),
    });
    r.push(LayerInfo {
        type_name: "InfogainLoss",
        family: family_of(file!()),
        params: "infogain_loss_param.source (BlobProto) or third bottom H, infogain_loss_param.axis, loss_param.ignore_label, loss_param.normalization, second top (softmax probabilities)",
        tests: "gradient check, numeric tests with H from a file and from a bottom (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(InfogainLoss::new(p))),
    });
    r.push(LayerInfo {
        type_name: "MultinomialLogisticLoss",
        family: family_of(file!()),
        params: "(none; input is probabilities, clamped at 1e-20)",
        tests: "gradient check, numeric tests incl. Caffe's clamped gradient (tests/layers_loss.rs)",
        create: |_| Ok(Box::new(MultinomialLogisticLoss)),
    });
    r.push(LayerInfo {
        type_name: "ContrastiveLoss",
        family: family_of(file!()),
        params: "contrastive_loss_param.margin, contrastive_loss_param.legacy_version",
        tests: "gradient check, numeric tests incl. Caffe's ε-regularised gradient (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(ContrastiveLoss::new(p))),
    });
    r.push(LayerInfo {
        type_name: "Accuracy",
        family: family_of(file!()),
        params:
            "top_k, axis, ignore_label, second top (per-class accuracy); ties count against the true class, as Caffe",
        tests: "parity (lenet), top_k/ties/ignore_label/axis/per-class tests (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(Accuracy::new(p))),
    });
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

/// Caffe's legacy num/channels/height/width accessor: missing axes read as 1,
/// and blobs of more than 4 axes have no such view.
fn legacy_dim(shape: &[i64], index: usize) -> Result<i64> {
    if shape.len() > 4 {
        bail!("this layer reads its bottoms as N×C×H×W, but a bottom has {} axes ({shape:?})", shape.len());
    }
    Ok(shape.get(index).copied().unwrap_or(1))
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
fn value_with_grad_of(value: &Tensor, grad_source: &Tensor) -> Result<Tensor> {
    let correction = value.detach().f_sub(&grad_source.detach())?;
    Ok(grad_source.f_add(&correction)?)
}

/// Labels as int64 class indices over (outer, inner), truncated toward zero as
/// Caffe's `static_cast<int>`, checked against `classes` (ignoring `ignore`).
/// Out-of-range labels are an error, not a crash.
fn class_labels(label: &Tensor, outer: i64, inner: i64, classes: i64, ignore: Option<i64>) -> Result<Tensor> {
    if label.numel() as i64 != outer * inner {
        bail!("number of labels ({}) must match the number of predictions ({outer}×{inner})", label.numel());
    }
    let l = label.detach().f_to_kind(Kind::Int64)?.f_reshape([outer, inner])?;
    let valid = valid_mask(&l, ignore)?;
    let bad = l.f_lt(0)?.f_logical_or(&l.f_ge(classes)?)?.f_logical_and(&valid)?;
    if bad.f_any()?.int64_value(&[]) != 0 {
        let first = l.f_masked_select(&bad)?.int64_value(&[0]);
        bail!("label {first} is out of range for {classes} classes (labels must be in 0..{})", classes - 1);
    }
    Ok(l)
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
        let n_valid = valid.f_sum(Kind::Int64)?.int64_value(&[]);
        let norm = normalizer(self.mode, outer, inner, Some(n_valid));
        let loss = picked.f_sum(x.kind())?.f_neg()?.f_div_scalar(norm)?;
        let mut tops = vec![loss];
        if self.lp.top.len() > 1 {
            // Caffe's backward ignores the probability top's diff.
            tops.push(x.detach().f_softmax(self.axis as i64, x.kind())?);
        }
        Ok(tops)
    }
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
        let (per, n_valid) = match self.ignore {
            Some(i) => {
                let valid = target.f_trunc()?.f_ne(i)?;
                let n = valid.f_sum(Kind::Int64)?.int64_value(&[]);
                (per.f_where_self(&valid, &per.f_zeros_like()?)?, n)
            }
            None => (per, outer * inner),
        };
        let norm = normalizer(self.mode, outer, inner, Some(n_valid));
        Ok(vec![per.f_sum(x.kind())?.f_div_scalar(norm)?])
    }
}

/// EuclideanLoss: Σ(a − b)² / (2N); both bottoms get gradients.
pub struct EuclideanLoss;

fn check_euclidean(bottoms: &[Shape]) -> Result<()> {
    check_same_num(&bottoms[0], &bottoms[1])?;
    let (a, b) = (&bottoms[0], &bottoms[1]);
    if count(a, 1, a.len()) != count(b, 1, b.len()) {
        bail!("Inputs must have the same dimension: {a:?} vs {b:?}");
    }
    Ok(())
}

impl Layer for EuclideanLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        check_euclidean(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let (a, b) = (&bottoms[0], &bottoms[1]);
        let shape = a.size();
        check_euclidean(&[shape.clone(), b.size()])?;
        let diff = a.f_sub(&b.f_reshape(shape.as_slice())?)?;
        let num = shape[0].max(1) as f64;
        Ok(vec![diff.f_square()?.f_sum(a.kind())?.f_div_scalar(2.0 * num)?])
    }
}

/// HingeLoss (one-vs-all): Σ max(0, 1 − δ·x)^p / N with δ = +1 at the label and
/// −1 elsewhere, p = 1 (L1) or 2 (L2).
pub struct HingeLoss {
    norm: Norm,
}

fn check_per_sample_labels(bottoms: &[Shape]) -> Result<()> {
    check_same_num(&bottoms[0], &bottoms[1])?;
    let labels: i64 = bottoms[1].iter().product();
    if labels != bottoms[0][0] {
        bail!("expects one label per sample: {} samples, label shape {:?}", bottoms[0][0], bottoms[1]);
    }
    Ok(())
}

impl Layer for HingeLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        check_per_sample_labels(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        check_per_sample_labels(&[shape.clone(), bottoms[1].size()])?;
        let num = shape[0];
        let dim = count(&shape, 1, shape.len());
        let x = x.f_reshape([num, dim])?;
        let labels = class_labels(&bottoms[1], num, 1, dim, None)?;
        let onehot = x.detach().f_zeros_like()?.f_scatter_value(1, &labels, 1.0)?;
        // −1 at the label, +1 elsewhere: the margin is max(0, 1 + sign·x).
        let sign = onehot.f_mul_scalar(-2.0)?.f_add_scalar(1.0)?;
        // relu' is 0 at the hinge, as Caffe's sign(0) = 0.
        let margin = x.f_mul(&sign)?.f_add_scalar(1.0)?.f_relu()?;
        let total = match self.norm {
            Norm::L1 => margin.f_sum(x.kind())?,
            Norm::L2 => margin.f_square()?.f_sum(x.kind())?,
        };
        Ok(vec![total.f_div_scalar(num.max(1) as f64)?])
    }
}

/// InfogainLoss (Caffe master: softmax inside): −Σ_l H[label, l]·log(max(p_l, 1e-20))
/// over the class axis, normalized. The gradient is Caffe's p·ΣH[label] − H[label],
/// i.e. that of the unclamped log-softmax.
pub struct InfogainLoss {
    lp: LayerParameter,
    axis: usize,
    ignore: Option<i64>,
    /// H from `infogain_param.source` (when there is no third bottom).
    h_file: Option<(Vec<f32>, usize)>,
}

impl InfogainLoss {
    fn new(lp: &LayerParameter) -> Self {
        InfogainLoss { lp: lp.clone(), axis: 1, ignore: loss_ignore_label(lp), h_file: None }
    }

    fn check(&mut self, bottoms: &[Shape]) -> Result<(i64, i64, i64)> {
        check_same_num(&bottoms[0], &bottoms[1])?;
        let axis = self.lp.infogain_loss_param.as_ref().map(|p| p.axis()).unwrap_or(1);
        self.axis = canonical_axis(axis, bottoms[0].len())?;
        let (outer, classes, inner) = around_axis(&bottoms[0], self.axis);
        let labels: i64 = bottoms[1].iter().product();
        if outer * inner != labels {
            bail!(
                "Number of labels ({labels}) must match number of predictions ({outer}×{inner}); e.g., if infogain axis == 1 and prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, with integer values in {{0, 1, ..., C-1}}"
            );
        }
        let h_count = match (bottoms.get(2), &self.h_file) {
            (Some(h), _) => h.iter().product::<i64>(),
            (None, Some((_, n))) => *n as i64,
            (None, None) => bail!("Infogain matrix source must be specified"),
        };
        if h_count != classes * classes {
            bail!("H must be {classes}x{classes} ({} values), got {h_count} values", classes * classes);
        }
        Ok((outer, classes, inner))
    }
}

/// Reads H from a BlobProto file (Caffe's `ReadProtoFromBinaryFile`).
fn read_infogain_matrix(source: &str) -> Result<Vec<f32>> {
    let blob: BlobProto = crate::proto::binary::read_message(Path::new(source))
        .map_err(|e| super::Error::Invalid(format!("cannot read the infogain matrix: {e}")))?;
    let data = crate::proto::binary::blob_data_f32(&blob);
    let want: i64 = crate::proto::binary::blob_shape(&blob).iter().product();
    if want != data.len() as i64 {
        bail!("infogain matrix {source}: its shape needs {want} values but it holds {}", data.len());
    }
    Ok(data)
}

impl Layer for InfogainLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 3)?;
        if self.lp.loss_param.as_ref().is_some_and(|l| l.normalize.is_some()) {
            bail!("normalize is deprecated. use \"normalization\"");
        }
        if bottoms.len() < 3 {
            let source = self.lp.infogain_loss_param.as_ref().and_then(|p| p.source.clone());
            let Some(source) = source else { bail!("Infogain matrix source must be specified") };
            let h = read_infogain_matrix(&source)?;
            let n = h.len();
            self.h_file = Some((h, n));
        }
        self.check(bottoms)?;
        Ok(SetupOut { tops: loss_tops(&self.lp, Some(bottoms[0].clone()))?, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let (outer, classes, inner) = self.check(&shapes)?;
        let h = match (bottoms.get(2), &self.h_file) {
            (Some(h), _) => h.detach().f_to_kind(x.kind())?,
            (None, Some((data, _))) => Tensor::f_from_slice(data)?.f_to_kind(x.kind())?.f_to(x.device())?,
            (None, None) => bail!("Infogain matrix source must be specified"),
        }
        .f_reshape([classes, classes])?;
        let logp = x.f_log_softmax(self.axis as i64, x.kind())?.f_reshape([outer, classes, inner])?;
        let logp = value_with_grad_of(&logp.f_clamp_min(LOG_THRESHOLD.ln())?, &logp)?;
        let labels = class_labels(&bottoms[1], outer, inner, classes, self.ignore)?;
        let valid = valid_mask(&labels, self.ignore)?;
        // Row H[label] for every position, laid out as (outer, classes, inner).
        let rows = h
            .f_index_select(0, &safe_labels(&labels, &valid)?.f_flatten(0, -1)?)?
            .f_reshape([outer, inner, classes])?
            .f_permute([0, 2, 1])?
            .f_mul(&valid.f_unsqueeze(1)?.f_to_kind(x.kind())?)?;
        let n_valid = valid.f_sum(Kind::Int64)?.int64_value(&[]);
        let norm = normalizer(self.lp.loss_param.unwrap_or_default().normalization(), outer, inner, Some(n_valid));
        let loss = rows.f_mul(&logp)?.f_sum(x.kind())?.f_neg()?.f_div_scalar(norm)?;
        let mut tops = vec![loss];
        if self.lp.top.len() > 1 {
            tops.push(x.detach().f_softmax(self.axis as i64, x.kind())?);
        }
        Ok(tops)
    }
}

/// MultinomialLogisticLoss: −Σ log(max(p[label], 1e-20)) / N over probabilities.
/// Caffe's gradient is −1/(N·max(p, 1e-20)) at the label even where the clamp is active.
pub struct MultinomialLogisticLoss;

fn check_multinomial(bottoms: &[Shape]) -> Result<()> {
    check_same_num(&bottoms[0], &bottoms[1])?;
    check_one_per_sample(&bottoms[1], "the label")
}

impl Layer for MultinomialLogisticLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        check_multinomial(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        check_multinomial(&[shape.clone(), bottoms[1].size()])?;
        let num = shape[0];
        let dim = count(&shape, 1, shape.len());
        let labels = class_labels(&bottoms[1], num, 1, dim, None)?;
        let p = x.f_reshape([num, dim])?.f_gather(1, &labels, false)?;
        let clamped = p.detach().f_clamp_min(LOG_THRESHOLD)?;
        // Value log(clamped); gradient 1/clamped (a linear term in p with a detached slope).
        let grad_source = p.f_div(&clamped)?;
        let term = value_with_grad_of(&clamped.f_log()?, &grad_source)?;
        Ok(vec![term.f_sum(x.kind())?.f_neg()?.f_div_scalar(num.max(1) as f64)?])
    }
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
