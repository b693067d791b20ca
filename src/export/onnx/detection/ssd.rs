//! SSD's DetectionOutput.
use super::no_detection_rows;
use crate::export::onnx::Graph;
use crate::export::PlanLayer;
use crate::{bail, Result};

/// DetectionOutput as the fork computes it: the locations decoded against
/// the priors (bottom[2], a graph value), per image and class the top_k best
/// confidences (TopK; ties in prior order, as the fork's stable sort), then
/// ONNX's NonMaxSuppression with each (image, class) as a batch of its own
/// (its overlap is the fork's normalized Jaccard overlap, term for term) and
/// confidence_threshold as its score threshold; then each image's keep_top_k
/// best, the rows listed by image, label and confidence, and the fork's row
/// [i, -1, …, -1] per image when nothing is kept at all.
pub fn detection_output(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    use crate::export::onnx::attr_i;
    use crate::proto::caffe::prior_box_parameter::CodeType;
    use crate::proto::onnx::tensor_proto::DataType;
    let (Some(t), [loc_b, conf_b, prior_b, ..]) = (l.tops.first(), l.bottoms.as_slice()) else {
        bail!("DetectionOutput needs three bottoms (locations, confidences, priors) and a top")
    };
    let p = l.param.detection_output_param.clone().unwrap_or_default();
    let Some(classes) = p.num_classes.map(i64::from) else { bail!("detection_output_param must specify num_classes") };
    let nms = p.nms_param.unwrap_or_default();
    if nms.eta() < 1.0 {
        bail!("nms_param.eta {} (adaptive suppression) has no ONNX form; eta 1 exports", nms.eta());
    }
    let images = l.bottom_shapes.first().and_then(|s| s.first()).copied().unwrap_or(0);
    let prior_shape = l.bottom_shapes.get(2).cloned().unwrap_or_default();
    let priors = prior_shape.get(2).copied().unwrap_or(0) / 4;
    let loc_classes = if p.share_location() { 1 } else { classes };
    if images <= 0 || priors <= 0 || classes <= 0 {
        bail!("DetectionOutput needs images, priors and classes, got {images}, {priors} and {classes}");
    }
    g.static_batch = true;
    let background = i64::from(p.background_label_id());
    let labels: Vec<i64> = (0..classes).filter(|&c| c != background).collect();
    let kept_classes = labels.len() as i64;
    if kept_classes == 0 {
        bail!("DetectionOutput has no class besides the background");
    }

    // Priors (P × 1 × 1 per corner) and variances (P × 1 × 4).
    let pr = g.value(prior_b)?;
    let two_rows = g.const_i64("priors", &[2, priors, 4]);
    let pr = g.node("Reshape", &[&pr, &two_rows], vec![]);
    let row = |g: &mut Graph, k: i64| {
        let i = g.const_i64_shaped("row", &[], &[k]);
        g.node("Gather", &[&pr, &i], vec![attr_i("axis", 0)])
    };
    let (prior, variance) = (row(g, 0), row(g, 1));
    let column = |g: &mut Graph, x: &str, j: i64| {
        let i = g.const_i64("column", &[j]);
        g.node("Gather", &[x, &i], vec![attr_i("axis", -1)])
    };
    let as_prior = g.const_i64("as_prior", &[priors, 1, 1]);
    let corner = |g: &mut Graph, j: i64| {
        let c = column(g, &prior, j);
        g.node("Reshape", &[&c, &as_prior], vec![])
    };
    let (px0, py0, px1, py1) = (corner(g, 0), corner(g, 1), corner(g, 2), corner(g, 3));
    // Locations: N × P × loc classes × 4.
    let loc = g.value(loc_b)?;
    let loc_rows = g.const_i64("locations", &[images, priors, loc_classes, 4]);
    let loc = g.node("Reshape", &[&loc, &loc_rows], vec![]);
    let scaled = if p.variance_encoded_in_target() {
        loc
    } else {
        let var_rows = g.const_i64("variances", &[priors, 1, 4]);
        let v = g.node("Reshape", &[&variance, &var_rows], vec![]);
        g.node("Mul", &[&v, &loc], vec![])
    };
    let (d0, d1, d2, d3) = (column(g, &scaled, 0), column(g, &scaled, 1), column(g, &scaled, 2), column(g, &scaled, 3));
    let (x0, y0, x1, y1) = match p.code_type() {
        CodeType::Corner => (
            g.node("Add", &[&px0, &d0], vec![]),
            g.node("Add", &[&py0, &d1], vec![]),
            g.node("Add", &[&px1, &d2], vec![]),
            g.node("Add", &[&py1, &d3], vec![]),
        ),
        code => {
            let pw = g.node("Sub", &[&px1, &px0], vec![]);
            let ph = g.node("Sub", &[&py1, &py0], vec![]);
            if code == CodeType::CornerSize {
                let mut off = |c: &str, d: &str, s: &str| {
                    let m = g.node("Mul", &[d, s], vec![]);
                    g.node("Add", &[c, &m], vec![])
                };
                (off(&px0, &d0, &pw), off(&py0, &d1, &ph), off(&px1, &d2, &pw), off(&py1, &d3, &ph))
            } else {
                let two = g.scalar("two", 2.0);
                let mut centre = |a: &str, b: &str, d: &str, s: &str| {
                    let c = g.node("Add", &[a, b], vec![]);
                    let c = g.node("Div", &[&c, &two], vec![]);
                    let m = g.node("Mul", &[d, s], vec![]);
                    g.node("Add", &[&m, &c], vec![])
                };
                let (cx, cy) = (centre(&px0, &px1, &d0, &pw), centre(&py0, &py1, &d1, &ph));
                let mut half_side = |d: &str, s: &str| {
                    let e = g.node("Exp", &[d], vec![]);
                    let e = g.node("Mul", &[&e, s], vec![]);
                    g.node("Div", &[&e, &two], vec![])
                };
                let (hw, hh) = (half_side(&d2, &pw), half_side(&d3, &ph));
                (
                    g.node("Sub", &[&cx, &hw], vec![]),
                    g.node("Sub", &[&cy, &hh], vec![]),
                    g.node("Add", &[&cx, &hw], vec![]),
                    g.node("Add", &[&cy, &hh], vec![]),
                )
            }
        }
    };
    // Decoded boxes per (image, kept class): (N·C') × P × 4, as (xmin, ymin, xmax, ymax).
    let decoded = g.node("Concat", &[&x0, &y0, &x1, &y1], vec![attr_i("axis", 3)]);
    let decoded = g.node("Transpose", &[&decoded], vec![crate::export::onnx::attr_ints("perm", &[0, 2, 1, 3])]);
    let label_ids = g.const_i64("labels", &labels);
    let per_class = if p.share_location() {
        let expand = g.const_i64("classes", &[images, kept_classes, priors, 4]);
        g.node("Expand", &[&decoded, &expand], vec![])
    } else {
        g.node("Gather", &[&decoded, &label_ids], vec![attr_i("axis", 1)])
    };
    let batches = images * kept_classes;
    let box_rows = g.const_i64("boxes", &[batches, priors, 4]);
    let per_class = g.node("Reshape", &[&per_class, &box_rows], vec![]);
    // Confidences per (image, kept class): (N·C') × P; the top_k best of each.
    let conf = g.value(conf_b)?;
    let conf_rows = g.const_i64("confidences", &[images, priors, classes]);
    let conf = g.node("Reshape", &[&conf, &conf_rows], vec![]);
    let conf = g.node("Transpose", &[&conf], vec![crate::export::onnx::attr_ints("perm", &[0, 2, 1])]);
    let conf = g.node("Gather", &[&conf, &label_ids], vec![attr_i("axis", 1)]);
    let score_rows = g.const_i64("scores", &[batches, priors]);
    let conf = g.node("Reshape", &[&conf, &score_rows], vec![]);
    let k = match nms.top_k {
        Some(top_k) if top_k > -1 => i64::from(top_k).min(priors),
        _ => priors,
    };
    let kk = g.const_i64("top_k", &[k]);
    let best = g.node_n("TopK", &[&conf, &kk], 2, vec![attr_i("axis", 1), attr_i("largest", 1), attr_i("sorted", 1)]);
    let last = g.const_i64("last", &[-1]);
    let indices = g.node("Unsqueeze", &[&best[1], &last], vec![]);
    let candidates = g.node("GatherND", &[&per_class, &indices], vec![attr_i("batch_dims", 1)]);
    // An inverted box overlaps nothing in the fork (its area is 0), where
    // NonMaxSuppression would turn it around. It is given as a box of its own
    // far out on the negative side, disjoint from every other: a point would
    // do in onnxruntime, but OpenCV's DNN counts two empty boxes as one.
    let yx = g.const_i64("yx", &[1, 0, 3, 2]);
    let nms_boxes = g.node("Gather", &[&candidates, &yx], vec![attr_i("axis", 2)]);
    let (lo, hi) = (g.const_i64("lo", &[0, 1]), g.const_i64("hi", &[2, 3]));
    let lower = g.node("Gather", &[&nms_boxes, &lo], vec![attr_i("axis", 2)]);
    let upper = g.node("Gather", &[&nms_boxes, &hi], vec![attr_i("axis", 2)]);
    let inverted = g.node("Less", &[&upper, &lower], vec![]);
    let inverted = g.node("Cast", &[&inverted], vec![attr_i("to", DataType::Float as i64)]);
    let inverted = g.reduce("ReduceMax", &inverted, &[2], true);
    let inverted = g.node("Cast", &[&inverted], vec![attr_i("to", DataType::Bool as i64)]);
    let apart = g.const_f32("apart", &[1, k, 4], &boxes_apart(k));
    let nms_boxes = g.node("Where", &[&inverted, &apart, &nms_boxes], vec![]);
    let one = g.const_i64("one", &[1]);
    let nms_scores = g.node("Unsqueeze", &[&best[0], &one], vec![]);
    let most = g.const_i64("most", &[k]);
    let thresh = g.const_f32("nms_threshold", &[1], &[nms.nms_threshold()]);
    let mut inputs = vec![nms_boxes.as_str(), nms_scores.as_str(), most.as_str(), thresh.as_str()];
    let score_thresh = p.confidence_threshold.map(|c| g.const_f32("confidence_threshold", &[1], &[c]));
    if let Some(s) = &score_thresh {
        inputs.push(s);
    }
    // S × (image·C' + class, 0, candidate), by image, class, then confidence.
    let selected = g.node("NonMaxSuppression", &inputs, vec![]);
    let pick = |g: &mut Graph, cols: &[i64]| {
        let c = g.const_i64("pick", cols);
        g.node("Gather", &[&selected, &c], vec![attr_i("axis", 1)])
    };
    let at = pick(g, &[0, 2]);
    let batch = pick(g, &[0]);
    let batch = g.node("Reshape", &[&batch, &last], vec![]);
    let per_image = g.const_i64_shaped("classes", &[], &[kept_classes]);
    let image = g.node("Div", &[&batch, &per_image], vec![]);
    let class = g.node("Mod", &[&batch, &per_image], vec![]);
    let label = g.node("Gather", &[&label_ids, &class], vec![attr_i("axis", 0)]);
    let as_float = |g: &mut Graph, x: &str| {
        let f = g.node("Cast", &[x], vec![attr_i("to", DataType::Float as i64)]);
        g.node("Unsqueeze", &[&f, &one], vec![])
    };
    let (image_col, label_col) = (as_float(g, &image), as_float(g, &label));
    let score = g.node("GatherND", &[&best[0], &at], vec![]);
    let score_col = g.node("Unsqueeze", &[&score, &one], vec![]);
    let corners = g.node("GatherND", &[&candidates, &at], vec![]);
    let mut rows = g.node("Concat", &[&image_col, &label_col, &score_col, &corners], vec![attr_i("axis", 1)]);
    if p.keep_top_k() > -1 {
        let keep = g.const_i64("keep_top_k", &[i64::from(p.keep_top_k())]);
        let count = g.node("Shape", &[&score], vec![]);
        let keep = g.node("Min", &[&count, &keep], vec![]);
        let chosen = if images == 1 {
            // The keep_top_k best, back in their order.
            let top = g.node_n("TopK", &[&score, &keep], 2, vec![attr_i("largest", 1), attr_i("sorted", 1)]);
            g.node_n("TopK", &[&top[1], &keep], 2, vec![attr_i("largest", 0), attr_i("sorted", 1)]).swap_remove(0)
        } else {
            // Each row's rank in its image: the rows of that image scoring
            // higher, or as high and listed before it.
            let zero = g.const_i64("zero", &[0]);
            let n = g.node("Squeeze", &[&count, &zero], vec![]);
            let (start, step) = (g.const_i64_shaped("start", &[], &[0]), g.const_i64_shaped("step", &[], &[1]));
            let position = g.node("Range", &[&start, &n, &step], vec![]);
            let pair = |g: &mut Graph, op: &str, x: &str| {
                let row = g.node("Unsqueeze", &[x, &zero], vec![]);
                let col = g.node("Unsqueeze", &[x, &one], vec![]);
                g.node(op, &[&row, &col], vec![]) // [d, d'] = x[d'] op x[d]
            };
            let same_image = pair(g, "Equal", &image);
            let higher = pair(g, "Greater", &score);
            let tied = pair(g, "Equal", &score);
            let earlier = pair(g, "Less", &position);
            let tied_earlier = g.node("And", &[&tied, &earlier], vec![]);
            let ahead = g.node("Or", &[&higher, &tied_earlier], vec![]);
            let ahead = g.node("And", &[&ahead, &same_image], vec![]);
            let ahead = g.node("Cast", &[&ahead], vec![attr_i("to", DataType::Int64 as i64)]);
            let rank = g.reduce("ReduceSum", &ahead, &[1], false);
            let cap = g.const_i64_shaped("keep_top_k", &[], &[i64::from(p.keep_top_k())]);
            let kept = g.node("Less", &[&rank, &cap], vec![]);
            let kept = g.node("NonZero", &[&kept], vec![]);
            g.node("Reshape", &[&kept, &last], vec![])
        };
        rows = g.node("Gather", &[&rows, &chosen], vec![attr_i("axis", 0)]);
    }
    let y = no_detection_rows(g, &rows, images);
    g.bind(t, y);
    g.dynamic_rows.insert(t.clone(), 2);
    Ok(())
}

/// NonMaxSuppression boxes (y1, x1, y2, x2) for k candidates, disjoint from
/// one another and from any box of a real net: squares of side 2^60,
/// side by side along x, left of -2^60 and below -2^60. Their corners are
/// exact in f32 and their areas finite.
fn boxes_apart(k: i64) -> Vec<f32> {
    let side = 2f32.powi(60);
    (0..k)
        .flat_map(|i| {
            let i = i as f32;
            [-2.0 * side, -(i + 2.0) * side, -side, -(i + 1.0) * side]
        })
        .collect()
}
