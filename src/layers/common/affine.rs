//! Bias and Scale: add or multiply by a blob broadcast along `axis`. The blob
//! is learnable (one bottom) or the second bottom; its shape must equal
//! bottom[0]'s dims `axis .. axis + blob axes`.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{BiasParameter, FillerParameter, LayerParameter, ScaleParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Bias",
        family: family_of(file!()),
        params: "axis, num_axes (-1: to the end), filler (default constant 0); one bottom (learned bias) or two (bottom[1] is the bias)",
        tests: "layers_common: bias_* (broadcast values, shape errors, gradient check in both forms)",
        create: |p| Ok(Box::new(Bias::new(p))),
    });
    r.push(LayerInfo {
        type_name: "Scale",
        family: family_of(file!()),
        params: "axis, num_axes (-1: to the end), filler (default constant 1), bias_term, bias_filler; one bottom (learned scale) or two (bottom[1] is the scale); blobs: scale then bias",
        tests: "layers_common: scale_matches_caffe_resnet (resnet_small res2a_conv2 vs BVLC Caffe), scale_* (axis/num_axes broadcasting, scalar scale, blob order, gradient checks in both forms)",
        create: |p| Ok(Box::new(Scale::new(p))),
    });
}

/// The shape of a learned Bias/Scale blob: bottom dims from `axis`, for
/// `num_axes` axes (-1: to the end).
fn learned_blob_shape(bottom: &Shape, axis: i32, num_axes: i32, what: &str) -> Result<Shape> {
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
fn aligned_axis(bottom: &[i64], axis: i32, blob: &[i64], what: &str) -> Result<usize> {
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
fn broadcast_view(blob: &Tensor, ndim: usize, axis: usize) -> Result<Tensor> {
    let mut shape = vec![1i64; axis];
    shape.extend(blob.size());
    shape.resize(ndim, 1);
    Ok(blob.f_reshape(shape.as_slice())?)
}

fn default_filler(f: &Option<FillerParameter>, value: f32) -> FillerParameter {
    f.clone().unwrap_or(FillerParameter { r#type: Some("constant".into()), value: Some(value), ..Default::default() })
}

pub struct Bias {
    p: BiasParameter,
}

impl Bias {
    fn new(lp: &LayerParameter) -> Self {
        Bias { p: lp.bias_param.clone().unwrap_or_default() }
    }
}

impl Layer for Bias {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        let mut params = vec![];
        let bias_shape = match bottoms.get(1) {
            Some(s) => s.clone(),
            None => {
                let s = learned_blob_shape(&bottoms[0], self.p.axis(), self.p.num_axes(), "bias")?;
                params.push(ParamDecl::new(s.clone(), default_filler(&self.p.filler, 0.0)));
                s
            }
        };
        aligned_axis(&bottoms[0], self.p.axis(), &bias_shape, "bias")?;
        Ok(SetupOut { tops: vec![bottoms[0].clone()], params })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let b = match bottoms.get(1) {
            Some(b) => b,
            None => &params[0],
        };
        let axis = aligned_axis(&x.size(), self.p.axis(), &b.size(), "bias")?;
        Ok(vec![x.f_add(&broadcast_view(b, x.dim(), axis)?)?])
    }
}

/// Scale, with Caffe's optional bias. With two bottoms the bias covers the
/// same axes as bottom[1].
pub struct Scale {
    p: ScaleParameter,
}

impl Scale {
    fn new(lp: &LayerParameter) -> Self {
        Scale { p: lp.scale_param.clone().unwrap_or_default() }
    }
}

impl Layer for Scale {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        let mut params = vec![];
        let scale_shape = match bottoms.get(1) {
            Some(s) => s.clone(),
            None => {
                let s = learned_blob_shape(&bottoms[0], self.p.axis(), self.p.num_axes(), "scale")?;
                params.push(ParamDecl::new(s.clone(), default_filler(&self.p.filler, 1.0)));
                s
            }
        };
        aligned_axis(&bottoms[0], self.p.axis(), &scale_shape, "scale")?;
        if self.p.bias_term() {
            // Caffe builds an inner Bias layer at the same axis covering as
            // many axes as the scale: its blob has the scale's shape.
            let num_axes = if bottoms.len() > 1 { scale_shape.len() as i32 } else { self.p.num_axes() };
            let s = learned_blob_shape(&bottoms[0], self.p.axis(), num_axes, "bias")?;
            params.push(ParamDecl::new(s, default_filler(&self.p.bias_filler, 0.0)));
        }
        Ok(SetupOut { tops: vec![bottoms[0].clone()], params })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let (s, rest) = match bottoms.get(1) {
            Some(s) => (s, params),
            None => (&params[0], &params[1..]),
        };
        let axis = aligned_axis(&x.size(), self.p.axis(), &s.size(), "scale")?;
        let mut y = x.f_mul(&broadcast_view(s, x.dim(), axis)?)?;
        if let Some(b) = rest.first() {
            let axis = aligned_axis(&x.size(), self.p.axis(), &b.size(), "bias")?;
            y = y.f_add(&broadcast_view(b, x.dim(), axis)?)?;
        }
        Ok(vec![y])
    }
}
