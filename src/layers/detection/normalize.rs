//! Normalize (SSD fork): L2 normalization with a learned scale.
use tch::{Kind, Tensor};

use crate::bail;
use crate::layers::legacy_dims;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{FillerParameter, NormalizeParameter};
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Normalize",
        family: family_of(file!()),
        params: "norm_param.across_spatial, channel_shared, eps, scale_filler (default constant 1); \
                 Caffe's backward with a per-channel scale (SSD fork)",
        tests: "layers_detection: normalize_* (values, the fork's backward, gradient check, errors); \
                python/tests/test_ssd_opencv.py (OpenCV 4's implementation)",
        create: |p| Ok(Box::new(Normalize { p: p.norm_param.clone().unwrap_or_default() })),
    });
}

/// top = x / ‖x‖ · scale, where ‖x‖ = sqrt(Σx² + eps) over each sample's
/// C×H×W values (`across_spatial`) or over the channels at each position,
/// and the scale is one learned value (`channel_shared`) or one per channel.
///
/// With a per-channel scale the fork's backward is not the gradient of its
/// forward: it passes the top's gradient through the normalization first and
/// multiplies by the channel's scale after, s_c·J·g, where the gradient is
/// J·(s⊙g) (J, the normalization's Jacobian, is symmetric). We reproduce the
/// fork's. Its scale gradient Σ top·g / s is Σ (x/‖x‖)·g, which is what
/// autograd gives (also where s = 0, which the fork divides by).
pub struct Normalize {
    p: NormalizeParameter,
}

impl Normalize {
    /// x/‖x‖ on an N×C×(H·W) view.
    fn normalized(&self, x: &Tensor) -> Result<Tensor> {
        let sq = x.f_square()?;
        let eps = self.p.eps() as f64;
        if self.p.across_spatial() {
            let norm = sq.f_sum_dim_intlist([1i64, 2].as_slice(), true, None::<Kind>)?.f_add_scalar(eps)?.f_sqrt()?;
            // The fork multiplies by 1/‖x‖, rounded to the blob's precision.
            let inv = norm.f_to_kind(Kind::Double)?.f_reciprocal()?.f_to_kind(x.kind())?;
            Ok(x.f_mul(&inv)?)
        } else {
            let norm = sq.f_sum_dim_intlist([1i64].as_slice(), true, None::<Kind>)?.f_add_scalar(eps)?.f_sqrt()?;
            Ok(x.f_div(&norm)?)
        }
    }
}

impl Layer for Normalize {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.len() < 2 {
            bail!("Normalize needs a bottom of at least 2 axes, got shape {s:?}");
        }
        let channels = legacy_dims(s)?[1];
        let shape = if self.p.channel_shared() { vec![] } else { vec![channels] };
        let filler = self.p.scale_filler.clone().unwrap_or_else(|| FillerParameter {
            r#type: Some("constant".into()),
            value: Some(1.0),
            ..Default::default()
        });
        Ok(SetupOut { tops: vec![s.clone()], params: vec![ParamDecl::new(shape, filler)] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        if shape.len() < 2 {
            bail!("Normalize needs a bottom of at least 2 axes, got shape {shape:?}");
        }
        let [n, c, h, w] = legacy_dims(&shape)?;
        let Some(scale) = params.first() else { bail!("Normalize needs its scale blob") };
        let want = if self.p.channel_shared() { 1 } else { c };
        if scale.numel() as i64 != want {
            bail!(
                "the scale blob has {} values; norm_param.channel_shared {} needs {want}",
                scale.numel(),
                self.p.channel_shared()
            );
        }
        let x3 = x.f_reshape([n, c, h * w])?;
        let s = scale.f_to_kind(x.kind())?.f_reshape(if self.p.channel_shared() {
            vec![1, 1, 1]
        } else {
            vec![1, c, 1]
        })?;
        let y = if self.p.channel_shared() || !x3.requires_grad() {
            self.normalized(&x3)?.f_mul(&s)?
        } else {
            // Value x/‖x‖·s. Gradient to x: the scale applied after the
            // normalization's Jacobian (z has x's value and Jacobian diag(s)).
            let sd = s.detach();
            let xs = x3.f_mul(&sd)?;
            let z = x3.detach().f_add(&xs.f_sub(&xs.detach())?)?;
            let u = self.normalized(&z)?;
            let ud = u.detach();
            ud.f_mul(&s)?.f_add(&u.f_sub(&ud)?)?
        };
        Ok(vec![y.f_reshape(shape.as_slice())?])
    }
}
