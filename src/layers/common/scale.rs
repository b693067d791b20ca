//! Scale: multiplies by a blob (learned, or the second bottom) broadcast
//! along `axis`, then optionally adds a learned bias.
use crate::Result;
use tch::Tensor;

use super::broadcast::{aligned_axis, broadcast_view, default_filler, learned_blob_shape};
use crate::layers::fold::Epilogue;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{LayerParameter, ScaleParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Scale",
        family: family_of(file!()),
        params: "axis, num_axes (-1: to the end), filler (default constant 1), bias_term, bias_filler; one bottom (learned scale) or two (bottom[1] is the scale); blobs: scale then bias",
        tests: "layers_common: scale_matches_caffe_resnet (resnet_small res2a_conv2 vs BVLC Caffe), scale_* (axis/num_axes broadcasting, scalar scale, blob order, gradient checks in both forms)",
        create: |p| Ok(Box::new(Scale::new(p))),
    });
}

/// Scale, with Caffe's optional bias. With two bottoms the bias covers the
/// same axes as bottom[1].
pub struct Scale {
    p: ScaleParameter,
    /// One bottom: the scale is the layer's first blob.
    learned_scale: bool,
}

impl Scale {
    fn new(lp: &LayerParameter) -> Self {
        Scale { p: lp.scale_param.clone().unwrap_or_default(), learned_scale: false }
    }
}

impl Layer for Scale {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        self.learned_scale = bottoms.len() == 1;
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

    fn inference_epilogue(&self, _ctx: &Ctx, params: &[Tensor]) -> Option<Epilogue> {
        // Only a learned scale along the channels of a convolution's 4-D top.
        let channels = self.learned_scale && matches!(self.p.axis(), 1 | -3) && self.p.num_axes() == 1;
        let (scale, bias) = match params {
            [scale] if channels && !self.p.bias_term() => (scale, None),
            [scale, bias] if channels && self.p.bias_term() => (scale, Some(bias.shallow_clone())),
            _ => return None,
        };
        Some(Epilogue::Scale { scale: scale.shallow_clone(), bias })
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
