//! YoloDetectionOutput (eric612/MobileNet-YOLO): YOLOv2's detections from
//! its output map (or two), as rows like DetectionOutput's, so MobileNet-YOLO's
//! YOLOv2 deploy nets run.
use tch::Tensor;

use super::yolov3_detection_output::{sigmoid, suppress_across_classes, Candidate};
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;
use crate::util::tensor_values;
use crate::{bail, Result};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "YoloDetectionOutput",
        family: family_of(file!()),
        params: "yolo_detection_output_param: num_classes, num_box, confidence_threshold, nms_threshold, biases \
                 (anchors in cells); one or two square bottoms, N × num_box·(5 + classes) × S × S (MobileNet-YOLO's \
                 YOLOv2)",
        tests: "layers_detection: yolo_detection_output_* (decoding and softmax worked out by hand, two maps, \
                suppression, no detection, errors)",
        create: |p| Ok(Box::new(YoloDetectionOutput::new(p)?)),
    });
}

/// For each map, cell (row j, column i) and anchor n, whose channels
/// n·(5 + classes) + k hold tx, ty, tw, th, objectness and the class scores:
/// x = (i + σ(tx)) / S, y = (j + σ(ty)) / S, w = e^tw · bias_w / S, h
/// likewise; the class is the arg-max of the softmax of the class scores
/// (the first on ties) and the confidence σ(objectness) times its
/// probability. Those at or above confidence_threshold are sorted by
/// confidence and suppressed greedily across classes (IoU ≥ nms_threshold).
/// Top: 1 × 1 × kept × 7, rows [image, class + 1, confidence, xmin, ymin,
/// xmax, ymax] (normalized, unclipped), best first within each image; one
/// row [image, -1, …, -1] per image when nothing is kept. The fork numbers
/// every row image 0 and suppresses across the images of a batch; here each
/// image is its own, and equal confidences keep their order (the fork's sort
/// leaves it open).
pub struct YoloDetectionOutput {
    classes: usize,
    boxes: usize,
    confidence_threshold: f32,
    nms_threshold: f32,
    biases: Vec<f32>,
}

impl YoloDetectionOutput {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.yolo_detection_output_param.clone().unwrap_or_default();
        if p.num_classes() == 0 || p.num_box() == 0 {
            bail!("yolo_detection_output_param: num_classes and num_box must be positive");
        }
        if p.biases.len() < 2 * p.num_box() as usize {
            bail!(
                "yolo_detection_output_param: {} anchors need {} biases (width, height pairs), got {}",
                p.num_box(),
                2 * p.num_box(),
                p.biases.len()
            );
        }
        Ok(YoloDetectionOutput {
            classes: p.num_classes() as usize,
            boxes: p.num_box() as usize,
            confidence_threshold: p.confidence_threshold(),
            nms_threshold: p.nms_threshold(),
            biases: p.biases.clone(),
        })
    }

    fn check(&self, bottoms: &[Shape]) -> Result<usize> {
        let want = (self.boxes * (5 + self.classes)) as i64;
        for (t, s) in bottoms.iter().enumerate() {
            if s.len() != 4 || s[1] != want || s[0] != bottoms[0][0] {
                bail!(
                    "bottom {t} must be N × {want} × S × S ({} anchors of 5 + {} classes), the batch of bottom 0; \
                     got shape {s:?}",
                    self.boxes,
                    self.classes
                );
            }
            if s[2] != s[3] {
                bail!("bottom {t} is {}×{}: the fork reads square maps only (its side is the width)", s[2], s[3]);
            }
        }
        Ok(bottoms[0][0].max(0) as usize)
    }
}

impl Layer for YoloDetectionOutput {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        self.check(bottoms)?;
        Ok(SetupOut { tops: vec![vec![1, 1, 1, 7]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let num = self.check(&shapes)?;
        let maps: Vec<Vec<f32>> = bottoms.iter().map(tensor_values).collect::<Result<_>>()?;
        let len = 5 + self.classes;
        let mut rows: Vec<[f32; 7]> = Vec::new();
        let mut probabilities = vec![0f32; self.classes];
        for image in 0..num {
            let mut candidates = Vec::new();
            for (map, s) in maps.iter().zip(&shapes) {
                let side = s[3] as usize;
                let plane = side * side;
                let item = &map[image * self.boxes * len * plane..(image + 1) * self.boxes * len * plane];
                for j in 0..side {
                    for i in 0..side {
                        let cell = j * side + i;
                        for n in 0..self.boxes {
                            let at = |k: usize| item[(n * len + k) * plane + cell];
                            // Softmax over the classes, less their maximum, in f32.
                            let top = (0..self.classes).map(|c| at(5 + c)).fold(at(5), f32::max);
                            let mut sum = 0f32;
                            for (c, p) in probabilities.iter_mut().enumerate() {
                                *p = (at(5 + c) - top).exp();
                                sum += *p;
                            }
                            let (mut class, mut best) = (0, probabilities[0] / sum);
                            for (c, p) in probabilities.iter().enumerate().skip(1) {
                                if p / sum > best {
                                    (class, best) = (c, p / sum);
                                }
                            }
                            let confidence = sigmoid(at(4)) * best;
                            if confidence >= self.confidence_threshold {
                                candidates.push(Candidate {
                                    x: (i as f32 + sigmoid(at(0))) / side as f32,
                                    y: (j as f32 + sigmoid(at(1))) / side as f32,
                                    w: at(2).exp() * self.biases[2 * n] / side as f32,
                                    h: at(3).exp() * self.biases[2 * n + 1] / side as f32,
                                    class,
                                    confidence,
                                });
                            }
                        }
                    }
                }
            }
            for c in &suppress_across_classes(candidates, self.nms_threshold) {
                // The fork takes the corners in double.
                let corner = |centre: f32, size: f32, sign: f64| (centre as f64 + sign * size as f64 / 2.0) as f32;
                rows.push([
                    image as f32,
                    (c.class + 1) as f32,
                    c.confidence,
                    corner(c.x, c.w, -1.0),
                    corner(c.y, c.h, -1.0),
                    corner(c.x, c.w, 1.0),
                    corner(c.y, c.h, 1.0),
                ]);
            }
        }
        Ok(vec![super::detection_rows_top(rows, num, &bottoms[0])?])
    }
}
