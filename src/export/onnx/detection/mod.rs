//! The detection forks' layers: Permute (Transpose), Normalize, PriorBox (a
//! constant: its boxes depend only on the shapes, which the graph fixes) and
//! ROIPooling (MaxRoiPool) here; Faster R-CNN's Proposal and R-FCN's
//! PSROIPooling in `rcnn`, SSD's DetectionOutput in `ssd`, the YOLO layers in
//! `yolo` (decoding, then NonMaxSuppression).
mod rcnn;
mod ssd;
mod yolo;

pub use rcnn::{proposal, psroi_pooling};
pub use ssd::detection_output;
pub use yolo::{yolo_detection_output, yolov3_detection_output};

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

/// The rows as 1 × 1 × rows × 7, or the forks' row [i, -1, …, -1] per image
/// when there is none.
pub(super) fn no_detection_rows(g: &mut Graph, rows: &str, images: i64) -> String {
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
