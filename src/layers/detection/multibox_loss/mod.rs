//! MultiBoxLoss (SSD fork): SSD's training loss. Priors are matched to the
//! ground-truth boxes, hard negatives are mined by their confidence loss,
//! and the loss is a localization term over the matched priors plus a
//! confidence term over the matched and mined ones.
use tch::{Device, Tensor};

use super::bbox::{descending, prediction_dims, suppress, BBox, BoxCoder};
use crate::bail;
use crate::layers::loss::{normalization_of, normalizer, value_with_grad_of};
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::multi_box_loss_parameter::{ConfLossType, LocLossType, MatchType, MiningType};
use crate::proto::caffe::LayerParameter;
use crate::util::tensor_values;
use crate::Result;

mod matching;

use matching::{Matches, Truth};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "MultiBoxLoss",
        family: family_of(file!()),
        params: "multibox_loss_param: num_classes, share_location (false: mining_type NONE only, as the fork), \
                 match_type (BIPARTITE, PER_PREDICTION), overlap_threshold, use_prior_for_matching, \
                 background_label_id, use_difficult_gt, mining_type (NONE, MAX_NEGATIVE, HARD_EXAMPLE), \
                 neg_pos_ratio, neg_overlap, sample_size, nms_param and use_prior_for_nms (mining), code_type, \
                 encode_variance_in_target, map_object_to_agnostic, ignore_cross_boundary_bbox, bp_inside, \
                 loc_loss_type (SMOOTH_L1, L2), conf_loss_type (SOFTMAX, LOGISTIC), loc_weight; \
                 loss_param.normalization (default VALID: the matched priors); bottoms: locations, \
                 confidences, PriorBox's priors, ground truth (1×1×G×8 rows [image, label, instance, xmin, \
                 ymin, xmax, ymax, difficult]) (SSD fork)",
        tests: "layers_detection: multibox_loss_* (matching, mining, normalization, gradient checks, errors); \
                python/tests/test_multibox_loss.py (the fork's rules in numpy); tests/forks.rs (ssd_tiny trains)",
        create: |p| Ok(Box::new(MultiBoxLoss::new(p)?)),
    });
}

/// bottom[0]: N × (priors · loc classes · 4) location predictions;
/// bottom[1]: N × (priors · classes) confidences; bottom[2]: PriorBox's
/// 1 × 2 × (priors · 4); bottom[3]: the ground truth, one row of 8 per box
/// (AnnotatedData's label top; rows of image -1 are padding). Matching and
/// mining run on the host in f32 as the fork's CPU code does; the loss is
/// built from the selected rows with libtorch, so its gradient is the
/// fork's backward: nothing for priors and boxes that were not selected,
/// none for the priors and the ground truth, and, with
/// encode_variance_in_target, the gradient of the prediction divided by its
/// variance passed back undivided, as the fork does. Where the fork's sort
/// leaves ties to chance, the lower prior index goes first. LOGISTIC without
/// mining gives every unmatched prior a one-hot background target (the fork
/// fills that target with the background id, and misplaces the positives of
/// every image after the first).
pub struct MultiBoxLoss {
    num_classes: usize,
    share_location: bool,
    background: i64,
    use_difficult_gt: bool,
    match_type: MatchType,
    overlap_threshold: f32,
    use_prior_for_matching: bool,
    neg_pos_ratio: f32,
    neg_overlap: f32,
    coder: BoxCoder,
    map_object_to_agnostic: bool,
    ignore_cross_boundary: bool,
    bp_inside: bool,
    mining: MiningType,
    /// Suppression before mining: threshold and top_k (the fork reads an
    /// unset top_k as 0, which keeps no candidate).
    nms: Option<(f32, i32)>,
    use_prior_for_nms: bool,
    sample_size: i32,
    loc_loss: LocLossType,
    conf_loss: ConfLossType,
    loc_weight: f32,
    normalization: NormalizationMode,
    /// The fork adds a term only where its bottom propagates down.
    loc_term: bool,
    conf_term: bool,
}

/// The shapes the bottoms give: images, priors, ground-truth rows.
struct Dims {
    num: usize,
    priors: usize,
    rows: usize,
}

impl MultiBoxLoss {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.multibox_loss_param.unwrap_or_default();
        let Some(num_classes) = p.num_classes else { bail!("multibox_loss_param must specify num_classes") };
        if num_classes == 0 {
            bail!("multibox_loss_param.num_classes must be at least 1");
        }
        let background = p.background_label_id() as i64;
        let mining = p.mining_type();
        if let Some(neg) = p.do_neg_mining {
            if neg != (mining != MiningType::None) {
                bail!(
                    "do_neg_mining ({neg}) contradicts mining_type {}: do_neg_mining is deprecated, give mining_type alone",
                    mining.as_str_name()
                );
            }
        }
        if mining != MiningType::None && !p.share_location() {
            bail!("Currently only support negative mining if share_location is true (mining_type {} with share_location false)", mining.as_str_name());
        }
        if mining == MiningType::HardExample && p.sample_size() <= 0 {
            bail!("mining_type HARD_EXAMPLE needs a positive sample_size, got {}", p.sample_size());
        }
        if p.conf_loss_type() == ConfLossType::Softmax && background >= num_classes as i64 {
            bail!(
                "background_label_id should be within [0, num_classes) for Softmax: {background} with {num_classes} classes"
            );
        }
        if p.map_object_to_agnostic() && num_classes != 2 {
            bail!("map_object_to_agnostic needs num_classes 2 (background and object), got {num_classes}");
        }
        for (what, v) in [("overlap_threshold", p.overlap_threshold()), ("neg_overlap", p.neg_overlap())] {
            if !v.is_finite() {
                bail!("multibox_loss_param.{what} must be a finite number, got {v}");
            }
        }
        if !(p.neg_pos_ratio() >= 0.0 && p.neg_pos_ratio().is_finite()) {
            bail!("multibox_loss_param.neg_pos_ratio must be finite and non-negative, got {}", p.neg_pos_ratio());
        }
        let nms = p.nms_param.as_ref().map(|n| (n.nms_threshold(), n.top_k.unwrap_or(0)));
        let down = |k: usize| lp.propagate_down.get(k).copied().unwrap_or(true);
        Ok(MultiBoxLoss {
            num_classes: num_classes as usize,
            share_location: p.share_location(),
            background,
            use_difficult_gt: p.use_difficult_gt(),
            match_type: p.match_type(),
            overlap_threshold: p.overlap_threshold(),
            use_prior_for_matching: p.use_prior_for_matching(),
            neg_pos_ratio: p.neg_pos_ratio(),
            neg_overlap: p.neg_overlap(),
            coder: BoxCoder { code_type: p.code_type(), variance_in_target: p.encode_variance_in_target() },
            map_object_to_agnostic: p.map_object_to_agnostic(),
            ignore_cross_boundary: p.ignore_cross_boundary_bbox(),
            bp_inside: p.bp_inside(),
            mining,
            nms,
            use_prior_for_nms: p.use_prior_for_nms(),
            sample_size: p.sample_size(),
            loc_loss: p.loc_loss_type(),
            conf_loss: p.conf_loss_type(),
            loc_weight: p.loc_weight(),
            normalization: normalization_of(lp, NormalizationMode::Valid),
            loc_term: down(0),
            conf_term: down(1),
        })
    }

    fn loc_classes(&self) -> usize {
        if self.share_location {
            1
        } else {
            self.num_classes
        }
    }

    fn dims(&self, bottoms: &[Shape]) -> Result<Dims> {
        let (num, priors) = prediction_dims(bottoms, self.loc_classes(), self.num_classes, false)?;
        let truth: i64 = bottoms[3].iter().product();
        if truth % 8 != 0 {
            bail!(
                "bottom[3] (the ground truth) must hold rows of 8 values [image, label, instance, xmin, ymin, xmax, \
                 ymax, difficult], got shape {:?}",
                bottoms[3]
            );
        }
        Ok(Dims { num: num.max(0) as usize, priors: priors as usize, rows: (truth / 8) as usize })
    }

    /// The class a matched prior learns.
    fn positive_label(&self, truth: &Truth) -> i64 {
        if self.map_object_to_agnostic {
            self.background + 1
        } else {
            truth.label
        }
    }

    /// The fork's ComputeConfLoss for one image's priors, in f32: against
    /// the matched box's label, or the background.
    fn confidence_losses(&self, conf: &[f32], matches: &[Matches], truths: &[Truth]) -> Vec<f32> {
        let classes = self.num_classes;
        conf.chunks_exact(classes)
            .enumerate()
            .map(|(p, x)| {
                let label = matches
                    .iter()
                    .find_map(|m| (m.indices[p] > -1).then(|| self.positive_label(&truths[m.indices[p] as usize])))
                    .unwrap_or(self.background);
                match self.conf_loss {
                    ConfLossType::Softmax => {
                        let max = x.iter().copied().fold(x[0], f32::max);
                        let sum: f32 = x.iter().map(|&v| (v - max).exp()).sum();
                        let prob = (x[label as usize] - max).exp() / sum;
                        -prob.max(f32::MIN_POSITIVE).ln()
                    }
                    ConfLossType::Logistic => x
                        .iter()
                        .enumerate()
                        .map(|(c, &v)| {
                            let t = if c as i64 == label { 1.0 } else { 0.0 };
                            let pos = if v >= 0.0 { 1.0 } else { 0.0 };
                            -(v * (t - pos) - (1.0 + (v - 2.0 * v * pos).exp()).ln())
                        })
                        .sum(),
                }
            })
            .collect()
    }

    /// A matched prior's location prediction and target as the fork's
    /// EncodeLocPrediction gives them; `Some(k)` in the mask where bp_inside
    /// puts the target in place of the prediction (no gradient there).
    fn loc_pair(
        &self,
        pred: &[f32],
        prior: &BBox,
        var: &[f32],
        truth: &Truth,
    ) -> Result<([f32; 4], [f32; 4], [bool; 4])> {
        let target = self.coder.encode(prior, var, &truth.bbox)?;
        let mut pred = [pred[0], pred[1], pred[2], pred[3]];
        let mut frozen = [false; 4];
        if self.bp_inside {
            let matched = if self.use_prior_for_matching { *prior } else { self.coder.decode(prior, var, &pred)? };
            for (k, v) in matched.corners().iter().enumerate() {
                if !(0.0..=1.0).contains(v) {
                    frozen[k] = true;
                    pred[k] = target[k];
                }
            }
        }
        let mut target = target;
        if self.coder.variance_in_target {
            for k in 0..4 {
                if var[k].is_nan() || var[k] <= 0.0 {
                    bail!("a prior's variances {:?} must be positive with encode_variance_in_target", &var[..4]);
                }
                pred[k] /= var[k];
                target[k] /= var[k];
            }
        }
        Ok((pred, target, frozen))
    }

    fn loc_value(&self, d: f32) -> f32 {
        match self.loc_loss {
            LocLossType::SmoothL1 if d.abs() < 1.0 => 0.5 * d * d,
            LocLossType::SmoothL1 => d.abs() - 0.5,
            LocLossType::L2 => 0.5 * d * d,
        }
    }

    /// The fork's MineHardExamples for one image: the negatives chosen, and
    /// (HARD_EXAMPLE) the positives dropped. Returns the negatives, ascending.
    #[allow(clippy::too_many_arguments)]
    fn mine(
        &self,
        matches: &mut [Matches],
        truths: &[Truth],
        loc: &[f32],
        conf: &[f32],
        priors: &[BBox],
        variances: &[f32],
        num_matches: &mut usize,
    ) -> Result<Vec<usize>> {
        if self.mining == MiningType::None || matches.is_empty() {
            return Ok(Vec::new());
        }
        let mut loss = self.confidence_losses(conf, matches, truths);
        if self.mining == MiningType::HardExample {
            for m in matches.iter() {
                for (p, &g) in m.indices.iter().enumerate().filter(|(_, &g)| g > -1) {
                    let (pred, target, _) = self.loc_pair(
                        &loc[p * 4..p * 4 + 4],
                        &priors[p],
                        &variances[p * 4..p * 4 + 4],
                        &truths[g as usize],
                    )?;
                    loss[p] += (0..4).map(|k| self.loc_value(pred[k] - target[k])).sum::<f32>();
                }
            }
        }
        let mut negatives = Vec::new();
        for m in matches.iter_mut() {
            let eligible = |p: usize| match self.mining {
                MiningType::MaxNegative => m.indices[p] == -1 && m.overlaps[p] < self.neg_overlap,
                _ => true,
            };
            let candidates: Vec<usize> = (0..m.indices.len()).filter(|&p| eligible(p)).collect();
            let mut wanted = candidates.len();
            if self.mining == MiningType::MaxNegative {
                let positives = m.indices.iter().filter(|&&g| g > -1).count();
                wanted = wanted.min((positives as f32 * self.neg_pos_ratio) as usize);
            } else {
                wanted = wanted.min(self.sample_size as usize);
            }
            let mut selected = vec![false; m.indices.len()];
            match self.nms {
                Some((threshold, top_k)) if threshold > 0.0 => {
                    let boxes: Vec<BBox> = if self.use_prior_for_nms {
                        candidates.iter().map(|&p| priors[p]).collect()
                    } else {
                        let decoded = self.decoded(loc, priors, variances, 0)?;
                        candidates.iter().map(|&p| decoded[p]).collect()
                    };
                    let scores: Vec<f32> = candidates.iter().map(|&p| loss[p]).collect();
                    let kept = suppress(&boxes, &scores, threshold, top_k);
                    for &k in kept.iter().take(wanted) {
                        selected[candidates[k]] = true;
                    }
                }
                _ => {
                    let mut order = candidates;
                    order.sort_by(|&a, &b| descending(loss[a], loss[b]));
                    for &p in order.iter().take(wanted) {
                        selected[p] = true;
                    }
                }
            }
            for (p, g) in m.indices.iter_mut().enumerate() {
                if *g > -1 {
                    if self.mining == MiningType::HardExample && !selected[p] {
                        *g = -1;
                        *num_matches -= 1;
                    }
                } else if *g == -1 && selected[p] {
                    negatives.push(p);
                }
            }
        }
        Ok(negatives)
    }
}

/// A zero that is still part of the graph of `x` (its gradient is zero).
fn connected_zero(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_reshape([-1])?.f_narrow(0, 0, 0)?.f_sum(x.kind())?)
}

fn index_tensor(rows: &[i64], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(rows)?.f_to_device(device)?)
}

impl Layer for MultiBoxLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 4, 4)?;
        self.dims(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let Dims { num, priors: np, rows } = self.dims(&shapes)?;
        let (loc_x, conf_x) = (&bottoms[0], &bottoms[1]);
        let (kind, device) = (loc_x.kind(), loc_x.device());
        let loc = tensor_values(loc_x)?;
        let conf = tensor_values(conf_x)?;
        let prior_data = tensor_values(&bottoms[2])?;
        let gt = tensor_values(&bottoms[3])?;
        let priors: Vec<BBox> = prior_data[..np * 4].chunks_exact(4).map(BBox::from_slice).collect();
        let variances = &prior_data[np * 4..np * 8];
        let truths = self.ground_truth(&gt[..rows * 8], num)?;
        let (lc, classes) = (self.loc_classes(), self.num_classes);
        let (loc_len, conf_len) = (np * lc * 4, np * classes);

        let mut all_matches = Vec::with_capacity(num);
        for (i, t) in truths.iter().enumerate() {
            all_matches.push(self.find_matches(t, &loc[i * loc_len..(i + 1) * loc_len], &priors, variances)?);
        }
        let mut num_matches: usize =
            all_matches.iter().flatten().map(|m| m.indices.iter().filter(|&&g| g > -1).count()).sum();
        let mut negatives = Vec::with_capacity(num);
        for (i, matches) in all_matches.iter_mut().enumerate() {
            let (l, c) = (&loc[i * loc_len..(i + 1) * loc_len], &conf[i * conf_len..(i + 1) * conf_len]);
            negatives.push(self.mine(matches, &truths[i], l, c, &priors, variances, &mut num_matches)?);
        }
        let norm = normalizer(self.normalization, num as i64, np as i64, Some(num_matches as i64));

        // Positives in the fork's order: image, location class, prior.
        let (mut loc_rows, mut targets, mut frozen, mut pred_div) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut conf_rows, mut conf_labels) = (Vec::new(), Vec::new());
        let mut dense_labels = vec![self.background; if self.mining == MiningType::None { num * np } else { 0 }];
        for (i, matches) in all_matches.iter().enumerate() {
            for m in matches {
                let c = if self.share_location { 0 } else { m.class as usize };
                for (p, &g) in m.indices.iter().enumerate().filter(|(_, &g)| g > -1) {
                    let truth = &truths[i][g as usize];
                    let start = i * loc_len + (p * lc + c) * 4;
                    let var = &variances[p * 4..p * 4 + 4];
                    let (_, target, f) = self.loc_pair(&loc[start..start + 4], &priors[p], var, truth)?;
                    loc_rows.push(((i * np + p) * lc + c) as i64);
                    targets.extend_from_slice(&target);
                    frozen.extend(f);
                    pred_div.extend(var.iter().map(|&v| if self.coder.variance_in_target { v } else { 1.0 }));
                    if self.mining == MiningType::None {
                        dense_labels[i * np + p] = self.positive_label(truth);
                    } else {
                        conf_rows.push((i * np + p) as i64);
                        conf_labels.push(self.positive_label(truth));
                    }
                }
            }
            for &p in &negatives[i] {
                conf_rows.push((i * np + p) as i64);
                conf_labels.push(self.background);
            }
        }

        let mut loss = connected_zero(loc_x)?.f_add(&connected_zero(conf_x)?)?;
        if self.loc_term && !loc_rows.is_empty() {
            let m = loc_rows.len() as i64;
            let pred = loc_x.f_reshape([-1, 4])?.f_index_select(0, &index_tensor(&loc_rows, device)?)?;
            let to = |v: &[f32]| -> Result<Tensor> {
                Ok(Tensor::f_from_slice(v)?.f_reshape([m, 4])?.f_to_kind(kind)?.f_to_device(device)?)
            };
            let target = to(&targets)?;
            // Divided by the variances where they are in the target, with the
            // fork's backward: the gradient of the divided value, undivided.
            let divided = pred.f_div(&to(&pred_div)?)?;
            let pred = pred.f_add(&divided.f_sub(&pred)?.f_detach()?)?;
            let frozen = Tensor::f_from_slice(&frozen)?.f_reshape([m, 4])?.f_to_device(device)?;
            let pred = target.f_where_self(&frozen, &pred)?;
            let d = pred.f_sub(&target)?;
            let errors = match self.loc_loss {
                LocLossType::SmoothL1 => {
                    let abs = d.f_abs()?;
                    d.f_square()?.f_mul_scalar(0.5)?.f_where_self(&abs.f_lt(1.0)?, &abs.f_sub_scalar(0.5)?)?
                }
                LocLossType::L2 => d.f_square()?.f_mul_scalar(0.5)?,
            };
            loss = loss.f_add(&errors.f_sum(kind)?.f_mul_scalar(self.loc_weight as f64 / norm)?)?;
        }
        let (rows_used, labels): (Option<Tensor>, Vec<i64>) = if self.mining == MiningType::None {
            (None, dense_labels)
        } else {
            (Some(index_tensor(&conf_rows, device)?), conf_labels)
        };
        if self.conf_term && !labels.is_empty() {
            let all = conf_x.f_reshape([-1, classes as i64])?;
            let x = match &rows_used {
                Some(r) => all.f_index_select(0, r)?,
                None => all,
            };
            let labels = index_tensor(&labels, device)?;
            let sum = match self.conf_loss {
                ConfLossType::Softmax => {
                    let logp = x.f_log_softmax(1, kind)?.f_gather(1, &labels.f_unsqueeze(1)?, false)?;
                    let clamped = logp.f_clamp_min((f32::MIN_POSITIVE as f64).ln())?;
                    value_with_grad_of(&clamped, &logp)?.f_sum(kind)?.f_neg()?
                }
                ConfLossType::Logistic => {
                    // A background id outside the classes has no column (no target 1).
                    let inside = labels.f_lt(classes as i64)?;
                    let t = labels
                        .f_clamp_max(classes as i64 - 1)?
                        .f_one_hot(classes as i64)?
                        .f_mul(&inside.f_unsqueeze(1)?)?
                        .f_to_kind(kind)?;
                    let per =
                        x.f_clamp_min(0.0)?.f_sub(&x.f_mul(&t)?)?.f_add(&x.f_abs()?.f_neg()?.f_exp()?.f_log1p()?)?;
                    per.f_sum(kind)?
                }
            };
            loss = loss.f_add(&sum.f_div_scalar(norm)?)?;
        }
        Ok(vec![loss])
    }
}
