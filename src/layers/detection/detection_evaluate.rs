//! DetectionEvaluate (SSD fork): each detection of the test batch marked a
//! true or false positive against the ground truth, with the number of
//! ground-truth boxes per class, for the solver's mean average precision
//! (`eval_type: "detection"`).
use std::collections::BTreeMap;

use tch::Tensor;

use super::bbox::{descending, to_pixels, BBox};
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, legacy_dims, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::ssd_resize_parameter::ResizeMode;
use crate::proto::caffe::{LayerParameter, SsdResizeParameter};
use crate::util::tensor_values;
use crate::{bail, Result};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "DetectionEvaluate",
        family: family_of(file!()),
        params: "detection_evaluate_param.num_classes, background_label_id, overlap_threshold, \
                 evaluate_difficult_gt, name_size_file (boxes compared in pixels, IoU with +1 sizes), resize_param \
                 (WARP, FIT_LARGE_SIZE_AND_PAD); bottoms: DetectionOutput's rows, the ground truth rows \
                 (SSD fork)",
        tests: "layers_detection: detection_evaluate_* (true/false positives, difficult boxes, pixel sizes); \
                solver: detection_map_* (eval_type detection, the three ap_versions)",
        create: |p| Ok(Box::new(DetectionEvaluate::new(p)?)),
    });
}

/// bottom[0]: DetectionOutput's 1×1×D×7 rows [image, label, score, xmin,
/// ymin, xmax, ymax]; bottom[1]: the ground truth's 1×1×G×8 rows (the first
/// row of image -1 ends them). The top is 1×1×(classes + detections)×5:
/// first one row [-1, label, boxes of that label, -1, -1] per class but the
/// background, then per detection [image, label, score, true positive,
/// false positive], images in order, labels in order, best score first.
pub struct DetectionEvaluate {
    num_classes: i64,
    background: i64,
    overlap_threshold: f32,
    evaluate_difficult: bool,
    /// Image sizes (height, width) in test order from name_size_file: the
    /// boxes are compared in pixels. Empty: in normalized coordinates.
    sizes: Vec<(f32, f32)>,
    resize: Option<SsdResizeParameter>,
    /// The next image's entry in `sizes`.
    count: usize,
}

/// A ground-truth or detected box.
#[derive(Clone, Copy)]
struct Scored {
    bbox: BBox,
    score: f32,
    difficult: bool,
}

impl DetectionEvaluate {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.detection_evaluate_param.clone().unwrap_or_default();
        let Some(num_classes) = p.num_classes else { bail!("Must provide num_classes (detection_evaluate_param)") };
        if p.overlap_threshold().is_nan() || p.overlap_threshold() <= 0.0 {
            bail!("overlap_threshold must be positive, got {}", p.overlap_threshold());
        }
        let sizes = match &p.name_size_file {
            Some(f) => super::read_name_sizes(f)?.into_iter().map(|(_, size)| size).collect(),
            None => Vec::new(),
        };
        if let Some(r) = &p.resize_param {
            if r.resize_mode() == ResizeMode::FitSmallSize {
                bail!("detection_evaluate_param.resize_param: FIT_SMALL_SIZE is not supported");
            }
            if r.height() == 0 || r.width() == 0 {
                bail!("detection_evaluate_param.resize_param needs a positive height and width");
            }
        }
        Ok(DetectionEvaluate {
            num_classes: num_classes as i64,
            background: p.background_label_id() as i64,
            overlap_threshold: p.overlap_threshold(),
            evaluate_difficult: p.evaluate_difficult_gt(),
            sizes,
            resize: p.resize_param,
            count: 0,
        })
    }

    fn check(&self, bottoms: &[Shape]) -> Result<(usize, usize)> {
        let det = legacy_dims(&bottoms[0])?;
        let gt = legacy_dims(&bottoms[1])?;
        if det[0] != 1 || det[1] != 1 || det[3] != 7 {
            bail!("bottom[0] must be DetectionOutput's 1×1×D×7 rows, got shape {:?}", bottoms[0]);
        }
        if gt[0] != 1 || gt[1] != 1 || gt[3] != 8 {
            bail!("bottom[1] must be the ground truth's 1×1×G×8 rows, got shape {:?}", bottoms[1]);
        }
        Ok((det[2] as usize, gt[2] as usize))
    }

    fn positive_classes(&self) -> i64 {
        if self.background == -1 {
            self.num_classes
        } else {
            self.num_classes - 1
        }
    }
}

/// Intersection over union of boxes in pixels, each side counted inclusive
/// (+1), as the fork does outside normalized coordinates.
fn pixel_jaccard(a: &BBox, b: &BBox) -> f32 {
    let Some(i) = a.intersection(b) else { return 0.0 };
    let (w, h) = (i.xmax - i.xmin + 1.0, i.ymax - i.ymin + 1.0);
    if !(w > 0.0 && h > 0.0) {
        return 0.0;
    }
    let area = |b: &BBox| {
        if b.xmax < b.xmin || b.ymax < b.ymin {
            0.0
        } else {
            (b.xmax - b.xmin + 1.0) * (b.ymax - b.ymin + 1.0)
        }
    };
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

type ByImage = BTreeMap<i64, BTreeMap<i64, Vec<Scored>>>;

impl Layer for DetectionEvaluate {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        let (det, _) = self.check(bottoms)?;
        Ok(SetupOut { tops: vec![vec![1, 1, self.positive_classes() + det as i64, 5]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let (det_rows, gt_rows) = self.check(&shapes)?;
        let det = tensor_values(&bottoms[0])?;
        let gt = tensor_values(&bottoms[1])?;
        let mut detections: ByImage = BTreeMap::new();
        for (r, row) in det.chunks_exact(7).take(det_rows).enumerate() {
            let image = row[0] as i64;
            if image == -1 {
                continue;
            }
            let label = row[1] as i64;
            if label == self.background {
                bail!("Found background label in the detection results: row {r} {row:?}");
            }
            let d = Scored { bbox: BBox::from_slice(&row[3..7]), score: row[2], difficult: false };
            detections.entry(image).or_default().entry(label).or_default().push(d);
        }
        let mut truth: ByImage = BTreeMap::new();
        for (r, row) in gt.chunks_exact(8).take(gt_rows).enumerate() {
            let image = row[0] as i64;
            if image == -1 {
                break;
            }
            let label = row[1] as i64;
            if label == self.background {
                bail!("Found background label in the dataset: ground-truth row {r} {row:?}");
            }
            let t = Scored { bbox: BBox::from_slice(&row[3..7]), score: 0.0, difficult: row[7] != 0.0 };
            truth.entry(image).or_default().entry(label).or_default().push(t);
        }
        let mut positives: BTreeMap<i64, usize> = BTreeMap::new();
        for labels in truth.values() {
            for (&label, boxes) in labels {
                let n = boxes.iter().filter(|b| self.evaluate_difficult || !b.difficult).count();
                *positives.entry(label).or_default() += n;
            }
        }
        let mut rows: Vec<[f32; 5]> = (0..self.num_classes)
            .filter(|&c| c != self.background)
            .map(|c| [-1.0, c as f32, positives.get(&c).copied().unwrap_or(0) as f32, -1.0, -1.0])
            .collect();
        for (&image, labels) in &detections {
            let size = if self.sizes.is_empty() {
                None
            } else {
                match self.sizes.get(self.count) {
                    Some(&s) => Some(s),
                    None => bail!("name_size_file lists {} images; the test has more", self.sizes.len()),
                }
            };
            for (&label, found) in labels.iter().filter(|(&l, _)| l != -1) {
                let Some(gts) = truth.get(&image).and_then(|t| t.get(&label)) else {
                    rows.extend(found.iter().map(|d| [image as f32, label as f32, d.score, 0.0, 1.0]));
                    continue;
                };
                let gts: Vec<Scored> = match size {
                    Some(s) => {
                        gts.iter().map(|g| Scored { bbox: to_pixels(&g.bbox, s, self.resize.as_ref()), ..*g }).collect()
                    }
                    None => gts.clone(),
                };
                let mut found = found.clone();
                found.sort_by(|a, b| descending(a.score, b.score));
                let mut visited = vec![false; gts.len()];
                for d in &found {
                    let b = match size {
                        Some(s) => to_pixels(&d.bbox, s, self.resize.as_ref()),
                        None => d.bbox,
                    };
                    let mut best: Option<(usize, f32)> = None;
                    for (j, g) in gts.iter().enumerate() {
                        let o = if size.is_some() { pixel_jaccard(&b, &g.bbox) } else { b.jaccard(&g.bbox) };
                        if best.is_none_or(|(_, m)| o > m) {
                            best = Some((j, o));
                        }
                    }
                    let (tp, fp) = match best {
                        Some((j, o)) if o >= self.overlap_threshold => {
                            if !self.evaluate_difficult && gts[j].difficult {
                                (0.0, 0.0)
                            } else if !visited[j] {
                                visited[j] = true;
                                (1.0, 0.0)
                            } else {
                                (0.0, 1.0)
                            }
                        }
                        _ => (0.0, 1.0),
                    };
                    rows.push([image as f32, label as f32, d.score, tp, fp]);
                }
            }
            if !self.sizes.is_empty() {
                self.count = (self.count + 1) % self.sizes.len();
            }
        }
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let x = &bottoms[0];
        Ok(vec![Tensor::f_from_slice(&flat)?
            .f_reshape([1, 1, rows.len() as i64, 5])?
            .f_to_kind(x.kind())?
            .f_to_device(x.device())?])
    }
}

/// The fork's ComputeAP: average precision of one class from its detections
/// (score, true positive) and (score, false positive) and its number of
/// ground-truth boxes, as "11point" (VOC2007), "MaxIntegral" (VOC2012,
/// ILSVRC) or "Integral".
pub fn average_precision(tp: &[(f32, i32)], fp: &[(f32, i32)], positives: i64, version: &str) -> Result<f32> {
    if !matches!(version, "11point" | "MaxIntegral" | "Integral") {
        bail!("Unknown ap_version: '{version}' (11point, MaxIntegral or Integral)");
    }
    if tp.is_empty() || positives == 0 {
        return Ok(0.0);
    }
    let cumsum = |pairs: &[(f32, i32)]| -> Vec<i64> {
        let mut sorted = pairs.to_vec();
        sorted.sort_by(|a, b| descending(a.0, b.0));
        sorted
            .iter()
            .scan(0i64, |s, p| {
                *s += p.1 as i64;
                Some(*s)
            })
            .collect()
    };
    let (tps, fps) = (cumsum(tp), cumsum(fp));
    let prec: Vec<f32> = tps.iter().zip(&fps).map(|(&t, &f)| t as f32 / (t + f) as f32).collect();
    let rec: Vec<f32> = tps.iter().map(|&t| t as f32 / positives as f32).collect();
    let n = prec.len();
    let eps = 1e-6f32;
    let mut ap = 0f32;
    match version {
        "11point" => {
            let mut max_precs = [0f32; 11];
            let mut start = n as i64 - 1;
            for j in (0..=10usize).rev() {
                let mut i = start;
                while i >= 0 {
                    let k = i as usize;
                    if (rec[k] as f64) < j as f64 / 10.0 {
                        start = i;
                        if j > 0 {
                            max_precs[j - 1] = max_precs[j];
                        }
                        break;
                    }
                    if max_precs[j] < prec[k] {
                        max_precs[j] = prec[k];
                    }
                    i -= 1;
                }
            }
            for j in (0..=10).rev() {
                ap += max_precs[j] / 11.0;
            }
        }
        "MaxIntegral" => {
            let (mut cur_rec, mut cur_prec) = (rec[n - 1], prec[n - 1]);
            for i in (0..n.saturating_sub(1)).rev() {
                cur_prec = cur_prec.max(prec[i]);
                if (cur_rec - rec[i]).abs() > eps {
                    ap += cur_prec * (cur_rec - rec[i]).abs();
                }
                cur_rec = rec[i];
            }
            ap += cur_rec * cur_prec;
        }
        _ => {
            let mut prev = 0f32;
            for i in 0..n {
                if (rec[i] - prev).abs() > eps {
                    ap += prec[i] * (rec[i] - prev).abs();
                }
                prev = rec[i];
            }
        }
    }
    Ok(ap)
}
