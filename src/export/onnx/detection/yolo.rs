//! The YOLO forks' detection outputs: Yolov3DetectionOutput (YOLOv3) and
//! YoloDetectionOutput (YOLOv2), sharing their suppression and rows.
use super::no_detection_rows;
use crate::export::onnx::{attr_i, Graph};
use crate::export::PlanLayer;
use crate::layers::legacy_dims;
use crate::{bail, Result};

/// Yolov3DetectionOutput: each scale's boxes decoded (σ and the anchors as
/// the layer computes them), one candidate per (cell, anchor, class) with
/// confidence σ(class)·σ(objectness), and ONNX's NonMaxSuppression over all
/// of an image's candidates at once (YOLOv3 suppresses across classes), with
/// confidence_threshold as its score threshold; rows best first within
/// each image, and the layer's row of -1 per image when nothing is kept. The
/// corners handed to it are the layer's centre ± half size, so overlaps are
/// the layer's term for term; the areas are (x2 − x1)·(y2 − y1) where the
/// layer takes w·h, and a pair at exactly nms_threshold is kept where the
/// layer drops it (its test is ≥): within float rounding of the threshold
/// a pair can be decided the other way.
pub fn yolov3_detection_output(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let Some(t) = l.tops.first() else { bail!("Yolov3DetectionOutput needs a top") };
    let p = l.param.yolov3_detection_output_param.clone().unwrap_or_default();
    let (classes, boxes, scales) = (i64::from(p.num_classes()), i64::from(p.num_box()), p.mask_group_num() as usize);
    if classes <= 0 || boxes <= 0 || scales == 0 || l.bottoms.len() != scales || p.anchors_scale.len() < scales {
        bail!("yolov3_detection_output_param does not match the layer's {} bottoms", l.bottoms.len());
    }
    let per_scale = p.mask.len() / scales;
    let images = l.bottom_shapes.first().and_then(|s| s.first()).copied().unwrap_or(0);
    if images <= 0 {
        bail!("Yolov3DetectionOutput needs at least one image");
    }
    g.static_batch = true;
    let len = 5 + classes;
    let (mut all_boxes, mut all_scores) = (Vec::new(), Vec::new());
    for (s, b) in l.bottoms.iter().enumerate() {
        let shape = l.bottom_shapes.get(s).cloned().unwrap_or_default();
        let [_, _, h, w] = legacy_dims(&shape)?;
        let plane = h * w;
        let stride = p.anchors_scale[s] as f32;
        let YoloMap { tx, ty, tw, th, obj, cls, cols, rows } = YoloMap::cut(g, b, images, boxes, len, h, w)?;
        let centre = |g: &mut Graph, t: &str, offset: &str, extent: i64| {
            let sg = g.node("Sigmoid", &[t], vec![]);
            let v = g.node("Add", &[offset, &sg], vec![]);
            let e = g.scalar("extent", extent as f32);
            g.node("Div", &[&v, &e], vec![])
        };
        let (cx, cy) = (centre(g, &tx, &cols, w), centre(g, &ty, &rows, h));
        let anchor = |k: i64, j: usize| {
            let m = p.mask.get(s * per_scale + k as usize).copied().unwrap_or(0) as usize;
            p.biases.get(2 * m + j).copied().unwrap_or(0.0)
        };
        let side = |g: &mut Graph, t: &str, j: usize, extent: i64| {
            let bias: Vec<f32> = (0..boxes).map(|k| anchor(k, j)).collect();
            let bias = g.const_f32("anchor", &[boxes, 1], &bias);
            let e = g.node("Exp", &[t], vec![]);
            let v = g.node("Mul", &[&e, &bias], vec![]);
            let d = g.scalar("extent", extent as f32 * stride);
            g.node("Div", &[&v, &d], vec![])
        };
        let (bw, bh) = (side(g, &tw, 0, w), side(g, &th, 1, h));
        // One box per (cell, anchor), repeated for each class: N × (plane·anchors·classes) × 4, as y1, x1, y2, x2.
        let corners = corners(g, &cx, &cy, &bw, &bh);
        let spread = g.const_i64("classes", &[images, plane, boxes, classes, 4]);
        let axis3 = g.const_i64("axis", &[3]);
        let corners = g.node("Unsqueeze", &[&corners, &axis3], vec![]);
        let corners = g.node("Expand", &[&corners, &spread], vec![]);
        let flat = g.const_i64("flat", &[images, -1, 4]);
        all_boxes.push(g.node("Reshape", &[&corners, &flat], vec![]));
        let objectness = g.node("Sigmoid", &[&obj], vec![]);
        let class_p = g.node("Sigmoid", &[&cls], vec![]);
        let confidence = g.node("Mul", &[&class_p, &objectness], vec![]);
        let flat = g.const_i64("flat", &[images, -1]);
        all_scores.push(g.node("Reshape", &[&confidence, &flat], vec![]));
    }
    let classes = YoloClasses::EveryClass(classes);
    yolo_rows(g, t, &all_boxes, &all_scores, classes, p.nms_threshold(), p.confidence_threshold(), images);
    Ok(())
}

/// YoloDetectionOutput (YOLOv2): each square map's boxes decoded as the
/// layer does, one candidate per (cell, anchor) with the arg-max class of the
/// softmax of its scores (written out as the layer computes it: less the
/// maximum, exponentials over their sum) and confidence σ(objectness) times
/// that probability; then NonMaxSuppression over each image's candidates,
/// as for Yolov3DetectionOutput (the same overlaps; the layer keeps a
/// confidence equal to the threshold and drops a pair at exactly
/// nms_threshold, which NonMaxSuppression does the other way round).
pub fn yolo_detection_output(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let Some(t) = l.tops.first() else { bail!("YoloDetectionOutput needs a top") };
    let p = l.param.yolo_detection_output_param.clone().unwrap_or_default();
    let (classes, boxes) = (i64::from(p.num_classes()), i64::from(p.num_box()));
    if classes <= 0 || boxes <= 0 || p.biases.len() < 2 * boxes as usize {
        bail!("yolo_detection_output_param: {boxes} anchors need {} biases", 2 * boxes);
    }
    let images = l.bottom_shapes.first().and_then(|s| s.first()).copied().unwrap_or(0);
    if images <= 0 {
        bail!("YoloDetectionOutput needs at least one image");
    }
    g.static_batch = true;
    let len = 5 + classes;
    let (mut all_boxes, mut all_scores, mut all_classes) = (Vec::new(), Vec::new(), Vec::new());
    for (s, b) in l.bottoms.iter().enumerate() {
        let shape = l.bottom_shapes.get(s).cloned().unwrap_or_default();
        let [_, _, _, side] = legacy_dims(&shape)?;
        let YoloMap { tx, ty, tw, th, obj, cls, cols, rows } = YoloMap::cut(g, b, images, boxes, len, side, side)?;
        let extent = g.scalar("side", side as f32);
        let centre = |g: &mut Graph, t: &str, offset: &str| {
            let sg = g.node("Sigmoid", &[t], vec![]);
            let v = g.node("Add", &[offset, &sg], vec![]);
            g.node("Div", &[&v, &extent], vec![])
        };
        let (cx, cy) = (centre(g, &tx, &cols), centre(g, &ty, &rows));
        let size = |g: &mut Graph, t: &str, j: usize| {
            let bias: Vec<f32> = (0..boxes as usize).map(|k| p.biases[2 * k + j]).collect();
            let bias = g.const_f32("anchor", &[boxes, 1], &bias);
            let e = g.node("Exp", &[t], vec![]);
            let v = g.node("Mul", &[&e, &bias], vec![]);
            g.node("Div", &[&v, &extent], vec![])
        };
        let (bw, bh) = (size(g, &tw, 0), size(g, &th, 1));
        let corners = corners(g, &cx, &cy, &bw, &bh);
        let flat = g.const_i64("flat", &[images, -1, 4]);
        all_boxes.push(g.node("Reshape", &[&corners, &flat], vec![]));
        // Softmax over the classes as the layer writes it, then its arg-max (the first on ties).
        let top = g.reduce("ReduceMax", &cls, &[3], true);
        let shifted = g.node("Sub", &[&cls, &top], vec![]);
        let e = g.node("Exp", &[&shifted], vec![]);
        let sum = g.reduce("ReduceSum", &e, &[3], true);
        let prob = g.node("Div", &[&e, &sum], vec![]);
        let best = g.reduce("ReduceMax", &prob, &[3], true);
        let class = g.node("ArgMax", &[&prob], vec![attr_i("axis", 3), attr_i("keepdims", 1)]);
        let objectness = g.node("Sigmoid", &[&obj], vec![]);
        let confidence = g.node("Mul", &[&objectness, &best], vec![]);
        let flat = g.const_i64("flat", &[images, -1]);
        all_scores.push(g.node("Reshape", &[&confidence, &flat], vec![]));
        all_classes.push(g.node("Reshape", &[&class, &flat], vec![]));
    }
    let classes = YoloClasses::Chosen(&all_classes);
    yolo_rows(g, t, &all_boxes, &all_scores, classes, p.nms_threshold(), p.confidence_threshold(), images);
    Ok(())
}

/// One YOLO map (N × anchors·(5 + classes) × H × W) as N × plane × anchors ×
/// (5 + classes), cut into its fields, with each cell's column and row
/// (plane × 1 × 1 constants).
struct YoloMap {
    tx: String,
    ty: String,
    tw: String,
    th: String,
    obj: String,
    cls: String,
    cols: String,
    rows: String,
}

impl YoloMap {
    #[allow(clippy::too_many_arguments)]
    fn cut(g: &mut Graph, bottom: &str, images: i64, boxes: i64, len: i64, h: i64, w: i64) -> Result<YoloMap> {
        let plane = h * w;
        let x = g.value(bottom)?;
        let split = g.const_i64("split", &[images, boxes, len, plane]);
        let x = g.node("Reshape", &[&x, &split], vec![]);
        let x = g.node("Transpose", &[&x], vec![crate::export::onnx::attr_ints("perm", &[0, 3, 1, 2])]);
        let field = |g: &mut Graph, from: i64, to: i64| {
            let (st, en, ax) = (g.const_i64("start", &[from]), g.const_i64("end", &[to]), g.const_i64("axis", &[3]));
            g.node("Slice", &[&x, &st, &en, &ax], vec![])
        };
        let (tx, ty, tw, th, obj) = (field(g, 0, 1), field(g, 1, 2), field(g, 2, 3), field(g, 3, 4), field(g, 4, 5));
        let cls = field(g, 5, len);
        let cols: Vec<f32> = (0..plane).map(|c| (c % w) as f32).collect();
        let rows: Vec<f32> = (0..plane).map(|c| (c / w) as f32).collect();
        let cols = g.const_f32("column", &[plane, 1, 1], &cols);
        let rows = g.const_f32("row", &[plane, 1, 1], &rows);
        Ok(YoloMap { tx, ty, tw, th, obj, cls, cols, rows })
    }
}

/// The corners of centre ± half size, concatenated on axis 3 as y1, x1, y2,
/// x2 (NonMaxSuppression's order).
fn corners(g: &mut Graph, cx: &str, cy: &str, bw: &str, bh: &str) -> String {
    let two = g.scalar("two", 2.0);
    let (hw, hh) = (g.node("Div", &[bw, &two], vec![]), g.node("Div", &[bh, &two], vec![]));
    let (x1, x2) = (g.node("Sub", &[cx, &hw], vec![]), g.node("Add", &[cx, &hw], vec![]));
    let (y1, y2) = (g.node("Sub", &[cy, &hh], vec![]), g.node("Add", &[cy, &hh], vec![]));
    g.node("Concat", &[&y1, &x1, &y2, &x2], vec![attr_i("axis", 3)])
}

/// Where a YOLO candidate's class comes from.
enum YoloClasses<'a> {
    /// One candidate per class of each box, in class order: the class is the
    /// candidate's index modulo the class count (YOLOv3).
    EveryClass(i64),
    /// One candidate per box, its class in these values, one per map (YOLOv2).
    Chosen(&'a [String]),
}

/// The YOLO layers' rows: each map's candidates (N × candidates × 4 corners
/// as y1, x1, y2, x2, and N × candidates confidences) joined, one
/// NonMaxSuppression per image with the confidence threshold, then rows
/// [image, class + 1, confidence, x1, y1, x2, y2] bound to `top`, or the
/// forks' -1 row per image when none is kept.
#[allow(clippy::too_many_arguments)]
fn yolo_rows(
    g: &mut Graph,
    top: &str,
    boxes: &[String],
    scores: &[String],
    classes: YoloClasses,
    nms_threshold: f32,
    confidence_threshold: f32,
    images: i64,
) {
    use crate::proto::onnx::tensor_proto::DataType;
    fn joined(g: &mut Graph, parts: &[String]) -> String {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        g.node("Concat", &refs, vec![attr_i("axis", 1)])
    }
    let candidates = joined(g, boxes);
    let scores = joined(g, scores);
    let one = g.const_i64("one", &[1]);
    let nms_scores = g.node("Unsqueeze", &[&scores, &one], vec![]);
    let most = g.const_i64("most", &[i64::from(i32::MAX)]);
    let thresh = g.const_f32("nms_threshold", &[1], &[nms_threshold]);
    let score_thresh = g.const_f32("confidence_threshold", &[1], &[confidence_threshold]);
    let selected = g.node("NonMaxSuppression", &[&candidates, &nms_scores, &most, &thresh, &score_thresh], vec![]);
    let pick = |g: &mut Graph, cols: &[i64]| {
        let c = g.const_i64("pick", cols);
        g.node("Gather", &[&selected, &c], vec![attr_i("axis", 1)])
    };
    let at = pick(g, &[0, 2]);
    let last = g.const_i64("last", &[-1]);
    let image = pick(g, &[0]);
    let image = g.node("Reshape", &[&image, &last], vec![]);
    let class = match classes {
        YoloClasses::EveryClass(count) => {
            let candidate = pick(g, &[2]);
            let candidate = g.node("Reshape", &[&candidate, &last], vec![]);
            let per_box = g.const_i64_shaped("classes", &[], &[count]);
            g.node("Mod", &[&candidate, &per_box], vec![])
        }
        YoloClasses::Chosen(parts) => {
            let labels = joined(g, parts);
            g.node("GatherND", &[&labels, &at], vec![])
        }
    };
    let first = g.const_i64_shaped("first", &[], &[1]);
    let label = g.node("Add", &[&class, &first], vec![]);
    let as_float = |g: &mut Graph, x: &str| {
        let f = g.node("Cast", &[x], vec![attr_i("to", DataType::Float as i64)]);
        g.node("Unsqueeze", &[&f, &one], vec![])
    };
    let (image_col, label_col) = (as_float(g, &image), as_float(g, &label));
    let score = g.node("GatherND", &[&scores, &at], vec![]);
    let score_col = g.node("Unsqueeze", &[&score, &one], vec![]);
    let corners = g.node("GatherND", &[&candidates, &at], vec![]);
    let xy = g.const_i64("xy", &[1, 0, 3, 2]);
    let corners = g.node("Gather", &[&corners, &xy], vec![attr_i("axis", 1)]);
    let rows = g.node("Concat", &[&image_col, &label_col, &score_col, &corners], vec![attr_i("axis", 1)]);
    let y = no_detection_rows(g, &rows, images);
    g.bind(top, y);
    g.dynamic_rows.insert(top.to_string(), 2);
}
