//! Yolov3DetectionOutput (eric612/MobileNet-YOLO): YOLOv3's detections from
//! its output maps, as rows like DetectionOutput's, so MobileNet-YOLO's
//! deploy nets run (OpenCV's Caffe importer has no such layer).
use tch::Tensor;

use super::bbox::descending;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;
use crate::util::tensor_values;
use crate::{bail, Result};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Yolov3DetectionOutput",
        family: family_of(file!()),
        params: "yolov3_detection_output_param: num_classes, num_box, confidence_threshold, nms_threshold, biases, \
                 anchors_scale, mask_group_num, mask; one bottom per scale, N × num_box·(5 + classes) × H × W \
                 (MobileNet-YOLO's fork)",
        tests: "layers_detection: yolov3_detection_output_* (decoding worked out by hand, two scales, suppression \
                across classes, no detection, errors)",
        create: |p| Ok(Box::new(Yolov3DetectionOutput::new(p)?)),
    });
}

/// For each scale, cell and anchor: x = (column + σ(tx)) / W, y = (row +
/// σ(ty)) / H, w = e^tw · anchor width / (W · stride), h likewise, and per
/// class a confidence σ(class) · σ(objectness); the boxes above
/// confidence_threshold are sorted by confidence and suppressed greedily
/// across classes (IoU ≥ nms_threshold). The top is 1 × 1 × kept × 7, rows
/// [image, class + 1, confidence, xmin, ymin, xmax, ymax] (normalized,
/// unclipped), best first within each image; one row [image, -1, …, -1]
/// per image when nothing is kept. The fork numbers every row image 0 and
/// suppresses across the images of a batch; here each image is its own.
pub struct Yolov3DetectionOutput {
    classes: usize,
    boxes: usize,
    confidence_threshold: f32,
    nms_threshold: f32,
    biases: Vec<f32>,
    strides: Vec<u32>,
    scales: usize,
    mask: Vec<u32>,
}

/// A candidate: centre, size, class, confidence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub class: usize,
    pub confidence: f32,
}

pub(super) fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// The fork's IoU of two centre-size boxes, in f32.
pub fn iou(a: &Candidate, b: &Candidate) -> f32 {
    let overlap =
        |c1: f32, s1: f32, c2: f32, s2: f32| (c1 + s1 / 2.0).min(c2 + s2 / 2.0) - (c1 - s1 / 2.0).max(c2 - s2 / 2.0);
    let (w, h) = (overlap(a.x, a.w, b.x, b.w), overlap(a.y, a.h, b.y, b.h));
    let inter = if w < 0.0 || h < 0.0 { 0.0 } else { w * h };
    inter / (a.w * a.h + b.w * b.h - inter)
}

/// The forks' greedy suppression across classes: the candidates best first
/// (equal confidences keep their order), each one kept dropping the later
/// ones it overlaps at nms_threshold or more. Returns the kept, best first.
pub fn suppress_across_classes(candidates: Vec<Candidate>, nms_threshold: f32) -> Vec<Candidate> {
    let mut candidates = best_of_each_box(candidates, nms_threshold);
    candidates.sort_by(|a, b| descending(a.confidence, b.confidence));
    let mut suppressed = vec![false; candidates.len()];
    let mut kept = Vec::new();
    for i in 0..candidates.len() {
        if suppressed[i] {
            continue;
        }
        for j in i + 1..candidates.len() {
            if !suppressed[j] && iou(&candidates[i], &candidates[j]) >= nms_threshold {
                suppressed[j] = true;
            }
        }
        kept.push(candidates[i]);
    }
    kept
}

/// The candidates of one box (one per class above the threshold, made one
/// after another) reduced to their best, the first of equals: it comes before
/// the others in the sorted order, and whichever box is kept first among
/// them and their suppressors drops the rest (a box overlaps itself fully).
/// So the greedy pass keeps the same boxes, in a pass over boxes rather than
/// over boxes times classes (an untrained net's candidates run to millions).
/// A box whose overlap with itself is under the threshold (an empty one, or
/// a threshold above 1) keeps all its candidates, as the greedy pass does.
fn best_of_each_box(candidates: Vec<Candidate>, nms_threshold: f32) -> Vec<Candidate> {
    let same_box =
        |a: &Candidate, b: &Candidate| [a.x, a.y, a.w, a.h].map(f32::to_bits) == [b.x, b.y, b.w, b.h].map(f32::to_bits);
    let mut out: Vec<Candidate> = Vec::with_capacity(candidates.len());
    let mut run_start = 0;
    for c in candidates {
        let continues = out.get(run_start).is_some_and(|first| same_box(first, &c));
        if !continues {
            run_start = out.len();
            out.push(c);
        } else if !suppresses_itself(&c, nms_threshold) {
            out.push(c);
        } else if c.confidence > out[run_start].confidence {
            out[run_start] = c;
        }
    }
    out
}

/// Whether a box overlaps itself at the threshold (not an empty one, nor a
/// threshold above 1): then the first of its candidates kept drops the rest.
fn suppresses_itself(c: &Candidate, nms_threshold: f32) -> bool {
    iou(c, c) >= nms_threshold
}

impl Yolov3DetectionOutput {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.yolov3_detection_output_param.clone().unwrap_or_default();
        let scales = p.mask_group_num() as usize;
        if p.num_classes() == 0 || p.num_box() == 0 || scales == 0 {
            bail!("yolov3_detection_output_param: num_classes, num_box and mask_group_num must be positive");
        }
        let per_scale = p.mask.len() / scales;
        if (p.num_box() as usize) > per_scale {
            bail!(
                "yolov3_detection_output_param: {} mask entries for {scales} scales leave {per_scale} anchors per \
                 scale, fewer than num_box {}",
                p.mask.len(),
                p.num_box()
            );
        }
        if let Some(m) = p.mask.iter().find(|&&m| 2 * m as usize + 1 >= p.biases.len()) {
            bail!("yolov3_detection_output_param: mask {m} names an anchor past the {} biases", p.biases.len());
        }
        if p.anchors_scale.len() < scales || p.anchors_scale.contains(&0) {
            bail!(
                "yolov3_detection_output_param: give a positive anchors_scale (stride) per scale: {} for {scales} scales",
                p.anchors_scale.len()
            );
        }
        Ok(Yolov3DetectionOutput {
            classes: p.num_classes() as usize,
            boxes: p.num_box() as usize,
            confidence_threshold: p.confidence_threshold(),
            nms_threshold: p.nms_threshold(),
            biases: p.biases.clone(),
            strides: p.anchors_scale.clone(),
            scales,
            mask: p.mask.clone(),
        })
    }

    fn check(&self, bottoms: &[Shape]) -> Result<usize> {
        if bottoms.len() != self.scales {
            bail!("mask_group_num is {}, but the layer has {} bottoms (one per scale)", self.scales, bottoms.len());
        }
        let want = (self.boxes * (5 + self.classes)) as i64;
        for (t, s) in bottoms.iter().enumerate() {
            if s.len() != 4 || s[1] != want || s[0] != bottoms[0][0] {
                bail!(
                    "bottom {t} must be N × {want} × H × W ({} anchors of 5 + {} classes), the batch of bottom 0; got \
                     shape {s:?}",
                    self.boxes,
                    self.classes
                );
            }
        }
        Ok(bottoms[0][0].max(0) as usize)
    }
}

impl Layer for Yolov3DetectionOutput {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, usize::MAX)?;
        self.check(bottoms)?;
        Ok(SetupOut { tops: vec![vec![1, 1, 1, 7]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let num = self.check(&shapes)?;
        let maps: Vec<Vec<f32>> = bottoms.iter().map(tensor_values).collect::<Result<_>>()?;
        let len = 5 + self.classes;
        let per_scale = self.mask.len() / self.scales;
        let mut rows: Vec<[f32; 7]> = Vec::new();
        for image in 0..num {
            let mut candidates = Vec::new();
            for (t, (map, s)) in maps.iter().zip(&shapes).enumerate() {
                let (h, w) = (s[2] as usize, s[3] as usize);
                let plane = h * w;
                let item = &map[image * self.boxes * len * plane..(image + 1) * self.boxes * len * plane];
                let stride = self.strides[t] as f32;
                for cell in 0..plane {
                    let (row, col) = (cell / w, cell % w);
                    for n in 0..self.boxes {
                        let at = |c: usize| item[(n * len + c) * plane + cell];
                        let anchor = self.mask[t * per_scale + n] as usize;
                        let objectness = sigmoid(at(4));
                        let x = (col as f32 + sigmoid(at(0))) / w as f32;
                        let y = (row as f32 + sigmoid(at(1))) / h as f32;
                        let bw = at(2).exp() * self.biases[2 * anchor] / (w as f32 * stride);
                        let bh = at(3).exp() * self.biases[2 * anchor + 1] / (h as f32 * stride);
                        for class in 0..self.classes {
                            let confidence = sigmoid(at(5 + class)) * objectness;
                            if confidence > self.confidence_threshold {
                                candidates.push(Candidate { x, y, w: bw, h: bh, class, confidence });
                            }
                        }
                    }
                }
            }
            for c in &suppress_across_classes(candidates, self.nms_threshold) {
                rows.push([
                    image as f32,
                    (c.class + 1) as f32,
                    c.confidence,
                    c.x - c.w / 2.0,
                    c.y - c.h / 2.0,
                    c.x + c.w / 2.0,
                    c.y + c.h / 2.0,
                ]);
            }
        }
        Ok(vec![super::detection_rows_top(rows, num, &bottoms[0])?])
    }
}
