//! What Bias and Scale share: add or multiply by a blob broadcast along
//! `axis`. The blob is learnable (one bottom) or the second bottom; its shape
//! must equal bottom[0]'s dims `axis .. axis + blob axes`.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::{canonical_axis, Shape};
use crate::proto::caffe::FillerParameter;

/// The shape of a learned Bias/Scale blob: bottom dims from `axis`, for
/// `num_axes` axes (-1: to the end).
pub(super) fn learned_blob_shape(bottom: &Shape, axis: i32, num_axes: i32, what: &str) -> Result<Shape> {
    let axis = canonical_axis(axis, bottom.len())?;
    if num_axes < -1 {
        bail!("num_axes must be non-negative, or -1 to extend to the end of bottom[0]; got {num_axes}");
    }
    let end = if num_axes == -1 { bottom.len() } else { axis + num_axes as usize };
    if end > bottom.len() {
        bail!(
            "{what} blob's shape extends past bottom[0]'s shape {bottom:?} when applied starting with bottom[0] axis {axis} (num_axes {num_axes})"
        );
    }
    Ok(bottom[axis..end].to_vec())
}

/// Checks that `blob` lines up with `bottom` and returns the axis it starts
/// at. A scalar blob (no axes) applies everywhere: its axis is 0.
pub(super) fn aligned_axis(bottom: &[i64], axis: i32, blob: &[i64], what: &str) -> Result<usize> {
    let axis = if blob.is_empty() { 0 } else { canonical_axis(axis, bottom.len())? };
    if axis + blob.len() > bottom.len() {
        bail!(
            "{what} blob's shape {blob:?} extends past bottom[0]'s shape {bottom:?} when applied starting with bottom[0] axis {axis}"
        );
    }
    for (i, &d) in blob.iter().enumerate() {
        if bottom[axis + i] != d {
            bail!(
                "dimension mismatch between bottom[0] shape {bottom:?} at axis {} ({}) and {what} shape {blob:?} at axis {i} ({d})",
                axis + i,
                bottom[axis + i]
            );
        }
    }
    Ok(axis)
}

/// `blob` viewed so it broadcasts against an `ndim`-axis bottom from `axis`.
pub(super) fn broadcast_view(blob: &Tensor, ndim: usize, axis: usize) -> Result<Tensor> {
    let mut shape = vec![1i64; axis];
    shape.extend(blob.size());
    shape.resize(ndim, 1);
    Ok(blob.f_reshape(shape.as_slice())?)
}

pub(super) fn default_filler(f: &Option<FillerParameter>, value: f32) -> FillerParameter {
    f.clone().unwrap_or(FillerParameter { r#type: Some("constant".into()), value: Some(value), ..Default::default() })
}
