//! The detection forks' layers: Permute (Transpose), Normalize, PriorBox (a
//! constant: its boxes depend only on the shapes, which the graph fixes) and
//! ROIPooling (MaxRoiPool), PSROIPooling (bins and an integral image),
//! Proposal (its arithmetic, then NonMaxSuppression); DetectionOutput and
//! Yolov3DetectionOutput (decoding, then NonMaxSuppression).
use super::{io, Graph};
use crate::export::PlanLayer;
use crate::layers::detection::{permute, prior_box};
use crate::layers::legacy_dims;
use crate::{bail, Result};

pub fn permute(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let order = permute::full_order(&l.param.permute_param.clone().unwrap_or_default().order, shape.len())?;
    if order.first() != Some(&0) {
        g.static_batch = true;
    }
    let x = g.value(b)?;
    let y = g.node("Transpose", &[&x], vec![super::attr_ints("perm", &order)]);
    g.bind(t, y);
    Ok(())
}

/// x / sqrt(Σx² + eps) over the sample or over the channels, times the scale.
pub fn normalize(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.norm_param.clone().unwrap_or_default();
    if shape.len() < 2 {
        bail!("Normalize needs a bottom of at least 2 axes, got shape {shape:?}");
    }
    let [_, c, h, w] = legacy_dims(shape)?;
    let Some(scale) = l.blobs.first() else { bail!("Normalize needs its scale blob") };
    let x = g.value(b)?;
    let rows = g.const_i64("rows", &[0, c, h * w]);
    let x3 = g.node("Reshape", &[&x, &rows], vec![]);
    let axes: &[i64] = if p.across_spatial() { &[1, 2] } else { &[1] };
    let sumsq = g.reduce("ReduceSumSquare", &x3, axes, true);
    let shifted = g.affine(&sumsq, 1.0, p.eps());
    let norm = g.node("Sqrt", &[&shifted], vec![]);
    let y = g.node("Div", &[&x3, &norm], vec![]);
    let sshape: Vec<i64> = if p.channel_shared() { vec![1] } else { vec![1, c, 1] };
    let s = g.weight("scale", scale, &sshape)?;
    let y = g.node("Mul", &[&y, &s], vec![]);
    let back: Vec<i64> = std::iter::once(0).chain(shape[1..].iter().copied()).collect();
    let bs = g.const_i64("shape", &back);
    let y = g.node("Reshape", &[&y, &bs], vec![]);
    g.bind(t, y);
    Ok(())
}

pub fn prior_box(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let Some(t) = l.tops.first() else { bail!("PriorBox needs a top") };
    let values = prior_box::prior_values(&l.param.prior_box_param.clone().unwrap_or_default(), &l.bottom_shapes)?;
    let priors = g.const_f32("priors", &[1, 2, values.len() as i64 / 2], &values);
    // A node makes the value, so that it can carry the blob's name.
    let y = g.node("Identity", &[&priors], vec![]);
    g.bind(t, y);
    Ok(())
}

/// ROIPooling is ONNX's MaxRoiPool, which follows Fast R-CNN's definition.
pub fn roi_pooling(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (Some(t), [b, r]) = (l.tops.first(), l.bottoms.as_slice()) else {
        bail!("ROIPooling needs two bottoms and a top")
    };
    let p = l.param.roi_pooling_param.unwrap_or_default();
    let rois_shape = l.bottom_shapes.get(1).cloned().unwrap_or_default();
    let x = g.value(b)?;
    let mut rois = g.value(r)?;
    if rois_shape.len() != 2 {
        let rows = g.const_i64("rois", &[-1, 5]);
        rois = g.node("Reshape", &[&rois, &rows], vec![]);
    }
    let shape = vec![p.pooled_h() as i64, p.pooled_w() as i64];
    let y = g.node(
        "MaxRoiPool",
        &[&x, &rois],
        vec![super::attr_ints("pooled_shape", &shape), super::attr_f("spatial_scale", p.spatial_scale())],
    );
    g.bind(t, y);
    Ok(())
}

/// Proposal for one image, in the layer's own f32 arithmetic: anchors
/// (constants: the map's size is fixed) moved by their deltas and clipped to
/// im_info's image, boxes under min_size·scale dropped (NonZero), the
/// foreground scores sorted (TopK, ties with the later box first as numpy's
/// argsort()[::-1] orders them, hence the reversal before it), the first
/// pre_nms_topn kept, then ONNX's NonMaxSuppression. Pixel boxes count their
/// last pixel (width x2 − x1 + 1), which NonMaxSuppression does not: it is
/// given the corners (x2 + 1, y2 + 1), whose overlaps and areas are those of
/// the +1 rule. Only the last bit of a float can differ from the layer's, so
/// a pair whose overlap is within float rounding of nms_thresh may be decided
/// the other way.
pub fn proposal(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    use super::attr_i;
    use crate::layers::detection::proposal::Proposal;
    let ([scores, deltas, info], [rois_top, rest @ ..]) = (l.bottoms.as_slice(), l.tops.as_slice()) else {
        bail!("Proposal needs three bottoms (scores, deltas, im_info) and one or two tops")
    };
    let p = l.param.proposal_param.clone().unwrap_or_default();
    let layer = Proposal::from_param(p.clone())?;
    let map = l.bottom_shapes.first().cloned().unwrap_or_default();
    let [n, c, h, w] = legacy_dims(&map)?;
    let a = layer.anchors().len() as i64;
    if n != 1 {
        bail!("Proposal exports to ONNX for one image (Faster R-CNN's test nets feed one); this net's batch is {n}");
    }
    if c != 2 * a {
        bail!("bottom[0] (scores) has {c} channels; {a} anchors need {}", 2 * a);
    }
    g.static_batch = true;
    let m = h * w * a;
    // Each anchor placed at every cell, in the layer's order (row, column, anchor).
    let stride = p.feat_stride() as f32;
    let (mut bw, mut bh, mut cx, mut cy) = (vec![], vec![], vec![], vec![]);
    for y in 0..h {
        for x in 0..w {
            for anchor in layer.anchors() {
                let (sx, sy) = (x as f32 * stride, y as f32 * stride);
                let (x1, y1, x2, y2) = (anchor[0] + sx, anchor[1] + sy, anchor[2] + sx, anchor[3] + sy);
                let (width, height) = (x2 - x1 + 1.0, y2 - y1 + 1.0);
                bw.push(width);
                bh.push(height);
                cx.push(x1 + 0.5 * width);
                cy.push(y1 + 0.5 * height);
            }
        }
    }
    let (bw, bh) = (g.const_f32("anchor_w", &[m], &bw), g.const_f32("anchor_h", &[m], &bh));
    let (cx, cy) = (g.const_f32("anchor_cx", &[m], &cx), g.const_f32("anchor_cy", &[m], &cy));

    // Foreground scores (the second half of the channels) as (row, column, anchor).
    let s = g.value(scores)?;
    let (st, en, ax) = (g.const_i64("start", &[a]), g.const_i64("end", &[2 * a]), g.const_i64("axis", &[1]));
    let fg = g.node("Slice", &[&s, &st, &en, &ax], vec![]);
    let fg = g.node("Transpose", &[&fg], vec![super::attr_ints("perm", &[0, 2, 3, 1])]);
    let flat = g.const_i64("flat", &[-1]);
    let fg = g.node("Reshape", &[&fg, &flat], vec![]);
    // Deltas: channel 4k + j of anchor k, as (row, column, anchor) × 4.
    let d = g.value(deltas)?;
    let split = g.const_i64("split", &[1, a, 4, h, w]);
    let d = g.node("Reshape", &[&d, &split], vec![]);
    let d = g.node("Transpose", &[&d], vec![super::attr_ints("perm", &[0, 3, 4, 1, 2])]);
    let rows = g.const_i64("rows", &[m, 4]);
    let d = g.node("Reshape", &[&d, &rows], vec![]);
    let column = |g: &mut Graph, x: &str, j: i64| {
        let i = g.const_i64_shaped("column", &[], &[j]);
        g.node("Gather", &[x, &i], vec![attr_i("axis", 1)])
    };
    let (dx, dy, dw, dh) = (column(g, &d, 0), column(g, &d, 1), column(g, &d, 2), column(g, &d, 3));
    let centre = |g: &mut Graph, dv: &str, size: &str, c: &str| {
        let moved = g.node("Mul", &[dv, size], vec![]);
        g.node("Add", &[&moved, c], vec![])
    };
    let (pcx, pcy) = (centre(g, &dx, &bw, &cx), centre(g, &dy, &bh, &cy));
    let side = |g: &mut Graph, dv: &str, size: &str| {
        let e = g.node("Exp", &[dv], vec![]);
        g.node("Mul", &[&e, size], vec![])
    };
    let (pw, ph) = (side(g, &dw, &bw), side(g, &dh, &bh));

    // im_info's row: height, width, scale.
    let i = g.value(info)?;
    let i = g.node("Reshape", &[&i, &flat], vec![]);
    let info_at = |g: &mut Graph, k: i64| {
        let idx = g.const_i64_shaped("info", &[], &[k]);
        g.node("Gather", &[&i, &idx], vec![attr_i("axis", 0)])
    };
    let (im_h, im_w, im_scale) = (info_at(g, 0), info_at(g, 1), info_at(g, 2));
    let one = g.scalar("one", 1.0);
    let zero = g.scalar("zero", 0.0);
    let half = g.scalar("half", 0.5);
    let x_max = g.node("Sub", &[&im_w, &one], vec![]);
    let y_max = g.node("Sub", &[&im_h, &one], vec![]);
    let corner = |g: &mut Graph, centre: &str, size: &str, sub: bool, hi: &str| {
        let half_size = g.node("Mul", &[&half, size], vec![]);
        let v = g.node(if sub { "Sub" } else { "Add" }, &[centre, &half_size], vec![]);
        let v = g.node("Min", &[&v, hi], vec![]);
        g.node("Max", &[&v, &zero], vec![])
    };
    let x1 = corner(g, &pcx, &pw, true, &x_max);
    let y1 = corner(g, &pcy, &ph, true, &y_max);
    let x2 = corner(g, &pcx, &pw, false, &x_max);
    let y2 = corner(g, &pcy, &ph, false, &y_max);

    // Boxes with both sides at least min_size·scale, in their order.
    let min_size = g.scalar("min_size", p.min_size() as f32);
    let min_side = g.node("Mul", &[&min_size, &im_scale], vec![]);
    let wide_enough = |g: &mut Graph, lo: &str, hi: &str| {
        let span = g.node("Sub", &[hi, lo], vec![]);
        let span = g.node("Add", &[&span, &one], vec![]);
        g.node("GreaterOrEqual", &[&span, &min_side], vec![])
    };
    let (wide, tall) = (wide_enough(g, &x1, &x2), wide_enough(g, &y1, &y2));
    let keep = g.node("And", &[&wide, &tall], vec![]);
    let kept = g.node("NonZero", &[&keep], vec![]);
    let kept = g.node("Reshape", &[&kept, &flat], vec![]);
    // Highest score first; among equal scores the later box first.
    let (last, before_first, axis0, back) = (
        g.const_i64("last", &[-1]),
        g.const_i64("before_first", &[i64::MIN]),
        g.const_i64("axis", &[0]),
        g.const_i64("step", &[-1]),
    );
    let reversed = g.node("Slice", &[&kept, &last, &before_first, &axis0, &back], vec![]);
    let candidate_scores = g.node("Gather", &[&fg, &reversed], vec![attr_i("axis", 0)]);
    let mut k = g.node("Shape", &[&candidate_scores], vec![]);
    if p.pre_nms_topn() > 0 {
        let cap = g.const_i64("pre_nms_topn", &[i64::from(p.pre_nms_topn())]);
        k = g.node("Min", &[&k, &cap], vec![]);
    }
    let top = g.node_n("TopK", &[&candidate_scores, &k], 2, vec![attr_i("largest", 1), attr_i("sorted", 1)]);
    let order = g.node("Gather", &[&reversed, &top[1]], vec![attr_i("axis", 0)]);

    // Suppression on (y1, x1, y2 + 1, x2 + 1).
    let unsqueeze = |g: &mut Graph, x: &str, axes: &[i64]| {
        let ax = g.const_i64("axes", axes);
        g.node("Unsqueeze", &[x, &ax], vec![])
    };
    let y2_end = g.node("Add", &[&y2, &one], vec![]);
    let x2_end = g.node("Add", &[&x2, &one], vec![]);
    let nms_cols: Vec<String> = [&y1, &x1, &y2_end, &x2_end].iter().map(|c| unsqueeze(g, c, &[1])).collect();
    let nms_refs: Vec<&str> = nms_cols.iter().map(String::as_str).collect();
    let nms_boxes = g.node("Concat", &nms_refs, vec![attr_i("axis", 1)]);
    let nms_boxes = g.node("Gather", &[&nms_boxes, &order], vec![attr_i("axis", 0)]);
    let nms_boxes = unsqueeze(g, &nms_boxes, &[0]);
    let nms_scores = unsqueeze(g, &top[0], &[0, 1]);
    // post_nms_topn 0 keeps every box (NonMaxSuppression's 0 would keep none).
    let most = if p.post_nms_topn() > 0 { i64::from(p.post_nms_topn()) } else { m.max(1) };
    let most = g.const_i64("post_nms_topn", &[most]);
    let thresh = g.const_f32("nms_thresh", &[1], &[p.nms_thresh()]);
    let selected = g.node("NonMaxSuppression", &[&nms_boxes, &nms_scores, &most, &thresh], vec![]);
    let two = g.const_i64_shaped("box_column", &[], &[2]);
    let selected = g.node("Gather", &[&selected, &two], vec![attr_i("axis", 1)]);
    let chosen = g.node("Gather", &[&order, &selected], vec![attr_i("axis", 0)]);

    // [image 0, x1, y1, x2, y2] per region; its score.
    let cols: Vec<String> = [&x1, &y1, &x2, &y2]
        .iter()
        .map(|c| {
            let v = g.node("Gather", &[c, &chosen], vec![attr_i("axis", 0)]);
            unsqueeze(g, &v, &[1])
        })
        .collect();
    let count = g.node("Shape", &[&chosen], vec![]);
    let width_one = g.const_i64("one", &[1]);
    let image_shape = g.node("Concat", &[&count, &width_one], vec![attr_i("axis", 0)]);
    let image_zero = g.const_f32("image", &[1, 1], &[0.0]);
    let image = g.node("Expand", &[&image_zero, &image_shape], vec![]);
    let mut parts: Vec<&str> = vec![&image];
    parts.extend(cols.iter().map(String::as_str));
    let regions = g.node("Concat", &parts, vec![attr_i("axis", 1)]);
    g.bind(rois_top, regions);
    g.dynamic_rows.insert(rois_top.clone(), 0);
    if let Some(score_top) = rest.first() {
        let v = g.node("Gather", &[&fg, &chosen], vec![attr_i("axis", 0)]);
        let v = unsqueeze(g, &v, &[1]);
        g.bind(score_top, v);
        g.dynamic_rows.insert(score_top.clone(), 0);
    }
    Ok(())
}

/// PSROIPooling as the layer computes it: each region's bins in f32 (corners
/// rounded half away from zero, which ONNX's Round does not do, so it is
/// written out), and each bin's mean from an integral image summed in double,
/// gathered at the bin's four corners.
pub fn psroi_pooling(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    use super::attr_i;
    use crate::proto::onnx::tensor_proto::DataType;
    let (Some(t), [b, r]) = (l.tops.first(), l.bottoms.as_slice()) else {
        bail!("PSROIPooling needs two bottoms and a top")
    };
    let p = l.param.psroi_pooling_param.unwrap_or_default();
    let (k, group, scale) = (p.output_dim() as i64, p.group_size() as i64, p.spatial_scale());
    let [_, c, h, w] = legacy_dims(l.bottom_shapes.first().map(Vec::as_slice).unwrap_or_default())?;
    if k <= 0 || group <= 0 || c != k * group * group {
        bail!("bottom[0] has {c} channels; output_dim {k} × group_size² {} needs {}", group * group, k * group * group);
    }
    let rois = g.value(r)?;
    let rows = g.const_i64("rois", &[-1, 5]);
    let rois = g.node("Reshape", &[&rois, &rows], vec![]);
    let column = |g: &mut Graph, j: i64| {
        let i = g.const_i64("column", &[j]);
        g.node("Gather", &[&rois, &i], vec![attr_i("axis", 1)]) // R × 1
    };
    let cast = |g: &mut Graph, x: &str, to: DataType| g.node("Cast", &[x], vec![attr_i("to", to as i64)]);
    // round half away from zero: sign(v)·floor(|v| + 0.5).
    let half = g.scalar("half", 0.5);
    let round = |g: &mut Graph, v: &str| {
        let a = g.node("Abs", &[v], vec![]);
        let a = g.node("Add", &[&a, &half], vec![]);
        let a = g.node("Floor", &[&a], vec![]);
        let s = g.node("Sign", &[v], vec![]);
        g.node("Mul", &[&s, &a], vec![])
    };
    let scale_c = g.scalar("spatial_scale", scale);
    let one = g.scalar("one", 1.0);
    let tenth = g.scalar("least", 0.1);
    let groups = g.scalar("group_size", group as f32);
    let steps: Vec<f32> = (0..group).map(|p| p as f32).collect();
    let step_lo = g.const_f32("bin", &[1, group], &steps);
    let steps: Vec<f32> = (1..=group).map(|p| p as f32).collect();
    let step_hi = g.const_f32("bin_end", &[1, group], &steps);
    let zero_i = g.const_i64_shaped("zero", &[], &[0]);
    // One axis's bins: [start, end) per bin, R × group_size, clipped to the map.
    let bins = |g: &mut Graph, lo_col: i64, hi_col: i64, extent: i64| {
        let lo = column(g, lo_col);
        let hi = column(g, hi_col);
        let lo = round(g, &lo);
        let start = g.node("Mul", &[&lo, &scale_c], vec![]);
        let hi = round(g, &hi);
        let hi = g.node("Add", &[&hi, &one], vec![]);
        let end = g.node("Mul", &[&hi, &scale_c], vec![]);
        let span = g.node("Sub", &[&end, &start], vec![]);
        let span = g.node("Max", &[&span, &tenth], vec![]);
        let bin = g.node("Div", &[&span, &groups], vec![]);
        let a = g.node("Mul", &[&step_lo, &bin], vec![]);
        let a = g.node("Add", &[&a, &start], vec![]);
        let a = g.node("Floor", &[&a], vec![]);
        let z = g.node("Mul", &[&step_hi, &bin], vec![]);
        let z = g.node("Add", &[&z, &start], vec![]);
        let z = g.node("Ceil", &[&z], vec![]);
        let top = g.const_i64_shaped("extent", &[], &[extent]);
        let clip = |g: &mut Graph, v: &str| {
            let v = cast(g, v, DataType::Int64);
            let v = g.node("Max", &[&v, &zero_i], vec![]);
            g.node("Min", &[&v, &top], vec![])
        };
        let a = clip(g, &a);
        let z = clip(g, &z);
        let z = g.node("Max", &[&z, &a], vec![]);
        (a, z)
    };
    let (h0, h1) = bins(g, 2, 4, h);
    let (w0, w1) = bins(g, 1, 3, w);
    // Shapes for broadcasting to R × output_dim × g × g.
    let as_rows = g.const_i64("as_rows", &[-1, 1, group, 1]);
    let as_cols = g.const_i64("as_cols", &[-1, 1, 1, group]);
    let (h0, h1) = (g.node("Reshape", &[&h0, &as_rows], vec![]), g.node("Reshape", &[&h1, &as_rows], vec![]));
    let (w0, w1) = (g.node("Reshape", &[&w0, &as_cols], vec![]), g.node("Reshape", &[&w1, &as_cols], vec![]));
    let image = column(g, 0);
    let image = cast(g, &image, DataType::Int64);
    let as_image = g.const_i64("as_image", &[-1, 1, 1, 1]);
    let image = g.node("Reshape", &[&image, &as_image], vec![]);
    let (hp, wp) = (h + 1, w + 1);
    // Offset of each bin's plane: (image·C + (k·g + i)·g + j)·(h + 1)·(w + 1).
    let planes: Vec<i64> = (0..k * group * group).collect();
    let planes = g.const_i64_shaped("channel", &[1, k, group, group], &planes);
    let channels = g.const_i64_shaped("channels", &[], &[c]);
    let plane = g.node("Mul", &[&image, &channels], vec![]);
    let plane = g.node("Add", &[&plane, &planes], vec![]);
    let plane_size = g.const_i64_shaped("plane", &[], &[hp * wp]);
    let plane = g.node("Mul", &[&plane, &plane_size], vec![]);
    let row_size = g.const_i64_shaped("row", &[], &[wp]);
    let x = g.value(b)?;
    let x = cast(g, &x, DataType::Double);
    let axis2 = g.const_i64_shaped("axis", &[], &[2]);
    let axis3 = g.const_i64_shaped("axis", &[], &[3]);
    let x = g.node("CumSum", &[&x, &axis2], vec![]);
    let x = g.node("CumSum", &[&x, &axis3], vec![]);
    let pads = g.const_i64("pads", &[0, 0, 1, 1, 0, 0, 0, 0]);
    let x = g.node("Pad", &[&x, &pads], vec![]);
    let flat = g.const_i64("flat", &[-1]);
    let integral = g.node("Reshape", &[&x, &flat], vec![]);
    let at = |g: &mut Graph, row: &str, col: &str| {
        let i = g.node("Mul", &[row, &row_size], vec![]);
        let i = g.node("Add", &[&i, col], vec![]);
        let i = g.node("Add", &[&plane, &i], vec![]);
        g.node("Gather", &[&integral, &i], vec![attr_i("axis", 0)])
    };
    let (a, bb, cc, d) = (at(g, &h1, &w1), at(g, &h0, &w1), at(g, &h1, &w0), at(g, &h0, &w0));
    let sums = g.node("Sub", &[&a, &bb], vec![]);
    let sums = g.node("Sub", &[&sums, &cc], vec![]);
    let sums = g.node("Add", &[&sums, &d], vec![]);
    let dh = g.node("Sub", &[&h1, &h0], vec![]);
    let dw = g.node("Sub", &[&w1, &w0], vec![]);
    let area = g.node("Mul", &[&dh, &dw], vec![]);
    let area = cast(g, &area, DataType::Double);
    let one_d = g.node("Cast", &[&one], vec![attr_i("to", DataType::Double as i64)]);
    // An empty bin is 0: its sum is 0 and its area counted as 1.
    let area = g.node("Max", &[&area, &one_d], vec![]);
    let mean = g.node("Div", &[&sums, &area], vec![]);
    let y = cast(g, &mean, DataType::Float);
    g.bind(t, y);
    Ok(())
}

/// DetectionOutput as the fork computes it: the locations decoded against
/// the priors (bottom[2], a graph value), per image and class the top_k best
/// confidences (TopK; ties in prior order, as the fork's stable sort), then
/// ONNX's NonMaxSuppression with each (image, class) as a batch of its own
/// (its overlap is the fork's normalized Jaccard overlap, term for term) and
/// confidence_threshold as its score threshold; then each image's keep_top_k
/// best, the rows listed by image, label and confidence, and the fork's row
/// [i, -1, …, -1] per image when nothing is kept at all.
pub fn detection_output(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    use super::attr_i;
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
    let decoded = g.node("Transpose", &[&decoded], vec![super::attr_ints("perm", &[0, 2, 1, 3])]);
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
    let conf = g.node("Transpose", &[&conf], vec![super::attr_ints("perm", &[0, 2, 1])]);
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
    // NonMaxSuppression would turn it around: it is given as a point.
    let yx = g.const_i64("yx", &[1, 0, 3, 2]);
    let nms_boxes = g.node("Gather", &[&candidates, &yx], vec![attr_i("axis", 2)]);
    let (lo, hi) = (g.const_i64("lo", &[0, 1]), g.const_i64("hi", &[2, 3]));
    let lower = g.node("Gather", &[&nms_boxes, &lo], vec![attr_i("axis", 2)]);
    let upper = g.node("Gather", &[&nms_boxes, &hi], vec![attr_i("axis", 2)]);
    let inverted = g.node("Less", &[&upper, &lower], vec![]);
    let inverted = g.node("Cast", &[&inverted], vec![attr_i("to", DataType::Float as i64)]);
    let inverted = g.reduce("ReduceMax", &inverted, &[2], true);
    let inverted = g.node("Cast", &[&inverted], vec![attr_i("to", DataType::Bool as i64)]);
    let point = g.node("Concat", &[&lower, &lower], vec![attr_i("axis", 2)]);
    let nms_boxes = g.node("Where", &[&inverted, &point, &nms_boxes], vec![]);
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
    use super::attr_i;
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
        // N × plane × anchors × (5 + classes)
        let x = g.value(b)?;
        let split = g.const_i64("split", &[images, boxes, len, plane]);
        let x = g.node("Reshape", &[&x, &split], vec![]);
        let x = g.node("Transpose", &[&x], vec![super::attr_ints("perm", &[0, 3, 1, 2])]);
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
        let two = g.scalar("two", 2.0);
        let half = |g: &mut Graph, v: &str| g.node("Div", &[v, &two], vec![]);
        let (hw, hh) = (half(g, &bw), half(g, &bh));
        let (x1, x2) = (g.node("Sub", &[&cx, &hw], vec![]), g.node("Add", &[&cx, &hw], vec![]));
        let (y1, y2) = (g.node("Sub", &[&cy, &hh], vec![]), g.node("Add", &[&cy, &hh], vec![]));
        // One box per (cell, anchor), repeated for each class: N × (plane·anchors·classes) × 4, as y1, x1, y2, x2.
        let corners = g.node("Concat", &[&y1, &x1, &y2, &x2], vec![attr_i("axis", 3)]);
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

/// The rows as 1 × 1 × rows × 7, or the forks' row [i, -1, …, -1] per image
/// when there is none.
fn no_detection_rows(g: &mut Graph, rows: &str, images: i64) -> String {
    use super::attr_i;
    use crate::proto::onnx::tensor_proto::DataType;
    let none: Vec<f32> = (0..images).flat_map(|i| [i as f32, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]).collect();
    let none = g.const_f32("none", &[images, 7], &none);
    let padded = g.node("Concat", &[rows, &none], vec![attr_i("axis", 0)]);
    let zero = g.const_i64("zero", &[0]);
    let n = g.node("Shape", &[rows], vec![]);
    let n = g.node("Gather", &[&n, &zero], vec![attr_i("axis", 0)]);
    let empty = g.node("Equal", &[&n, &zero], vec![]);
    let empty = g.node("Cast", &[&empty], vec![attr_i("to", DataType::Int64 as i64)]);
    let fake = g.const_i64("images", &[images]);
    let fake = g.node("Mul", &[&empty, &fake], vec![]);
    let end = g.node("Add", &[&n, &fake], vec![]);
    let axis0 = g.const_i64("axis", &[0]);
    let rows = g.node("Slice", &[&padded, &zero, &end, &axis0], vec![]);
    let out_shape = g.const_i64("shape", &[1, 1, -1, 7]);
    g.node("Reshape", &[&rows, &out_shape], vec![])
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
    use super::attr_i;
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
        let plane = side * side;
        let x = g.value(b)?;
        let split = g.const_i64("split", &[images, boxes, len, plane]);
        let x = g.node("Reshape", &[&x, &split], vec![]);
        let x = g.node("Transpose", &[&x], vec![super::attr_ints("perm", &[0, 3, 1, 2])]);
        let field = |g: &mut Graph, from: i64, to: i64| {
            let (st, en, ax) = (g.const_i64("start", &[from]), g.const_i64("end", &[to]), g.const_i64("axis", &[3]));
            g.node("Slice", &[&x, &st, &en, &ax], vec![])
        };
        let (tx, ty, tw, th, obj) = (field(g, 0, 1), field(g, 1, 2), field(g, 2, 3), field(g, 3, 4), field(g, 4, 5));
        let cls = field(g, 5, len);
        let cols: Vec<f32> = (0..plane).map(|c| (c % side) as f32).collect();
        let rows: Vec<f32> = (0..plane).map(|c| (c / side) as f32).collect();
        let cols = g.const_f32("column", &[plane, 1, 1], &cols);
        let rows = g.const_f32("row", &[plane, 1, 1], &rows);
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
        let two = g.scalar("two", 2.0);
        let (hw, hh) = (g.node("Div", &[&bw, &two], vec![]), g.node("Div", &[&bh, &two], vec![]));
        let (x1, x2) = (g.node("Sub", &[&cx, &hw], vec![]), g.node("Add", &[&cx, &hw], vec![]));
        let (y1, y2) = (g.node("Sub", &[&cy, &hh], vec![]), g.node("Add", &[&cy, &hh], vec![]));
        let corners = g.node("Concat", &[&y1, &x1, &y2, &x2], vec![attr_i("axis", 3)]);
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
    use super::attr_i;
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
