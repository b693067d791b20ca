//! DetectionOutput (SSD fork): decoded boxes, non-maximum suppression per
//! class, and the kept detections as rows.
use tch::Tensor;

use super::bbox::{descending, prediction_dims, BBox, BoxCoder};
use super::save_output::SaveOutput;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::prior_box_parameter::CodeType;
use crate::proto::caffe::LayerParameter;
use crate::util::tensor_values;
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "DetectionOutput",
        family: family_of(file!()),
        params: "detection_output_param.num_classes, share_location, background_label_id, code_type (CORNER, \
                 CENTER_SIZE, CORNER_SIZE), variance_encoded_in_target, keep_top_k, confidence_threshold, \
                 nms_param (nms_threshold, top_k, eta), save_output_param (VOC, COCO, ILSVRC result files); visualize is not done \
                 (a warning); no backward (SSD fork)",
        tests: "layers_detection: detection_output_* (decoding, suppression, keep_top_k, no detection, errors); \
                python/tests/test_ssd_opencv.py",
        create: |p| Ok(Box::new(DetectionOutput::new(p)?)),
    });
}

/// bottom[0]: location predictions, N × (priors · loc classes · 4); bottom[1]:
/// confidences, N × (priors · classes); bottom[2]: PriorBox's 1 × 2 × (priors
/// · 4); a fourth bottom (the image the fork draws on) is not read. The top
/// is 1 × 1 × kept × 7, a row [image, label, confidence, xmin, ymin, xmax,
/// ymax] per kept box, images in order, then labels in increasing order, then
/// confidence (highest first); with no box kept at all, one row
/// [image, -1, -1, -1, -1, -1, -1] per image. Computed on the CPU in f32 as
/// the fork's CPU code does.
pub struct DetectionOutput {
    num_classes: usize,
    share_location: bool,
    background: i64,
    code_type: CodeType,
    variance_encoded_in_target: bool,
    keep_top_k: i32,
    confidence_threshold: f32,
    nms_threshold: f32,
    eta: f32,
    top_k: i32,
    /// The result files of save_output_param, when asked for.
    save: Option<SaveOutput>,
}

impl DetectionOutput {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.detection_output_param.clone().unwrap_or_default();
        let Some(num_classes) = p.num_classes else { bail!("detection_output_param must specify num_classes") };
        if num_classes == 0 {
            bail!("detection_output_param.num_classes must be at least 1");
        }
        let nms = p.nms_param.unwrap_or_default();
        if nms.nms_threshold().partial_cmp(&0.0).is_none_or(|o| o == std::cmp::Ordering::Less) {
            bail!("nms_param.nms_threshold must be non-negative, got {}", nms.nms_threshold());
        }
        if !(nms.eta() > 0.0 && nms.eta() <= 1.0) {
            bail!("nms_param.eta must be in (0, 1], got {}", nms.eta());
        }
        let save = SaveOutput::new(
            &p.save_output_param.clone().unwrap_or_default(),
            lp.name(),
            p.background_label_id() as i64,
            num_classes as usize,
        )?;
        if p.visualize() {
            crate::warn!(
                crate::here!("detection_output.rs"),
                "layer '{}': visualize (drawing the detections in a window) is not supported",
                lp.name()
            );
        }
        Ok(DetectionOutput {
            num_classes: num_classes as usize,
            share_location: p.share_location(),
            background: p.background_label_id() as i64,
            code_type: p.code_type(),
            variance_encoded_in_target: p.variance_encoded_in_target(),
            keep_top_k: p.keep_top_k(),
            confidence_threshold: p.confidence_threshold.unwrap_or(f32::MIN),
            nms_threshold: nms.nms_threshold(),
            eta: nms.eta(),
            top_k: nms.top_k.unwrap_or(-1),
            save,
        })
    }

    fn loc_classes(&self) -> usize {
        if self.share_location {
            1
        } else {
            self.num_classes
        }
    }

    /// The number of priors, with the bottoms' shapes checked against it.
    fn num_priors(&self, bottoms: &[Shape]) -> Result<usize> {
        let (_, priors) = prediction_dims(bottoms, self.loc_classes(), self.num_classes, true)?;
        Ok(priors as usize)
    }

    /// The fork's ApplyNMSFast: the boxes scoring above the threshold, best
    /// first (ties in index order), at most top_k of them, each kept unless it
    /// overlaps a kept one by more than the (adaptive) threshold.
    fn nms(&self, boxes: &[BBox], scores: &[f32]) -> Vec<usize> {
        let mut order: Vec<(f32, usize)> =
            scores.iter().enumerate().filter(|(_, &s)| s > self.confidence_threshold).map(|(i, &s)| (s, i)).collect();
        order.sort_by(|a, b| descending(a.0, b.0));
        if self.top_k > -1 && (self.top_k as usize) < order.len() {
            order.truncate(self.top_k as usize);
        }
        let mut threshold = self.nms_threshold;
        let mut kept: Vec<usize> = Vec::new();
        for (_, idx) in order {
            let keep = kept.iter().all(|&k| boxes[idx].jaccard(&boxes[k]) <= threshold);
            if keep {
                kept.push(idx);
                if self.eta < 1.0 && threshold > 0.5 {
                    threshold *= self.eta;
                }
            }
        }
        kept
    }

    /// One image's detections, (label, confidence, box), by label and then
    /// confidence as the fork lists them.
    fn detect(&self, loc: &[f32], conf: &[f32], priors: &[BBox], variances: &[f32]) -> Result<Vec<(usize, f32, BBox)>> {
        let (loc_classes, classes) = (self.loc_classes(), self.num_classes);
        let coder = BoxCoder { code_type: self.code_type, variance_in_target: self.variance_encoded_in_target };
        let mut decoded: Vec<Vec<BBox>> = Vec::with_capacity(loc_classes);
        for c in 0..loc_classes {
            if !self.share_location && c as i64 == self.background {
                decoded.push(Vec::new());
                continue;
            }
            let mut boxes = Vec::with_capacity(priors.len());
            for (p, prior) in priors.iter().enumerate() {
                let start = (p * loc_classes + c) * 4;
                boxes.push(coder.decode(prior, &variances[p * 4..p * 4 + 4], &loc[start..start + 4])?);
            }
            decoded.push(boxes);
        }
        let boxes_of = |c: usize| &decoded[if self.share_location { 0 } else { c }];
        let score = |c: usize, p: usize| conf[p * classes + c];
        // (label, kept priors) in increasing label order.
        let mut per_label: Vec<(usize, Vec<usize>)> = Vec::new();
        for c in (0..classes).filter(|&c| c as i64 != self.background) {
            let scores: Vec<f32> = (0..priors.len()).map(|p| score(c, p)).collect();
            per_label.push((c, self.nms(boxes_of(c), &scores)));
        }
        let detections: usize = per_label.iter().map(|(_, kept)| kept.len()).sum();
        if self.keep_top_k > -1 && detections > self.keep_top_k as usize {
            // The best keep_top_k over all labels, listed again by label.
            let mut best: Vec<(f32, usize, usize)> =
                per_label.iter().flat_map(|(c, kept)| kept.iter().map(move |&p| (score(*c, p), *c, p))).collect();
            best.sort_by(|a, b| descending(a.0, b.0));
            best.truncate(self.keep_top_k as usize);
            for (c, kept) in per_label.iter_mut() {
                kept.clear();
                kept.extend(best.iter().filter(|d| d.1 == *c).map(|d| d.2));
            }
        }
        Ok(per_label
            .iter()
            .flat_map(|(c, kept)| kept.iter().map(move |&p| (*c, score(*c, p), boxes_of(*c)[p])))
            .collect())
    }
}

impl Layer for DetectionOutput {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 3, 4)?;
        self.num_priors(bottoms)?;
        // The number of detections is known only after the forward.
        Ok(SetupOut { tops: vec![vec![1, 1, 1, 7]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let priors = self.num_priors(&shapes)?;
        let num = shapes[0].first().copied().unwrap_or(1).max(0) as usize;
        let loc = tensor_values(&bottoms[0])?;
        let conf = tensor_values(&bottoms[1])?;
        let prior_data = tensor_values(&bottoms[2])?;
        let prior_boxes: Vec<BBox> =
            prior_data[..priors * 4].chunks_exact(4).map(|p| BBox::new(p[0], p[1], p[2], p[3])).collect();
        let variances = &prior_data[priors * 4..priors * 8];
        let (loc_len, conf_len) = (priors * self.loc_classes() * 4, priors * self.num_classes);
        let mut rows: Vec<[f32; 7]> = Vec::new();
        for i in 0..num {
            let loc_i = &loc[i * loc_len..(i + 1) * loc_len];
            let conf_i = &conf[i * conf_len..(i + 1) * conf_len];
            let found = self.detect(loc_i, conf_i, &prior_boxes, variances)?;
            for &(label, score, b) in &found {
                rows.push([i as f32, label as f32, score, b.xmin, b.ymin, b.xmax, b.ymax]);
            }
            if let Some(save) = &mut self.save {
                save.image(&found)?;
            }
        }
        Ok(vec![super::detection_rows_top(rows, num, &bottoms[0])?])
    }
}
