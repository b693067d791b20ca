//! Faster R-CNN's Proposal and R-FCN's PSROIPooling.
use crate::export::onnx::Graph;
use crate::export::PlanLayer;
use crate::layers::legacy_dims;
use crate::{bail, Result};

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
    use crate::export::onnx::attr_i;
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
    let fg = g.node("Transpose", &[&fg], vec![crate::export::onnx::attr_ints("perm", &[0, 2, 3, 1])]);
    let flat = g.const_i64("flat", &[-1]);
    let fg = g.node("Reshape", &[&fg, &flat], vec![]);
    // Deltas: channel 4k + j of anchor k, as (row, column, anchor) × 4.
    let d = g.value(deltas)?;
    let split = g.const_i64("split", &[1, a, 4, h, w]);
    let d = g.node("Reshape", &[&d, &split], vec![]);
    let d = g.node("Transpose", &[&d], vec![crate::export::onnx::attr_ints("perm", &[0, 3, 4, 1, 2])]);
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
    use crate::export::onnx::attr_i;
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
