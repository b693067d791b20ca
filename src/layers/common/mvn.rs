//! MVN: mean-variance normalization.
use crate::Result;
use tch::{Kind, Tensor};

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::MvnParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "MVN",
        family: family_of(file!()),
        params: "normalize_variance, across_channels, eps",
        tests: "layers_vision (naive reference, Caffe's backward formula, gradient check)",
        create: |p| Ok(Box::new(Mvn { p: p.mvn_param.unwrap_or_default() })),
    });
}

/// MVN: subtracts the mean of each (num, channel) slice, or of each num
/// across channels, and optionally divides by `sqrt(var) + eps` (eps on the
/// standard deviation, biased variance). The top takes Caffe's legacy 4-D
/// shape (num, channels, height, width) of the bottom.
///
/// Caffe's backward for the variance case is
/// `(dy − mean(dy) − mean(dy·y)·y) / (σ + eps)`; the true gradient's last
/// term carries an extra factor (σ + eps)/σ. We reproduce Caffe's: the path
/// through σ is scaled by the constant σ/(σ + eps). With the default eps
/// (1e-9) the two differ by about 1e-9/σ.
pub struct Mvn {
    p: MvnParameter,
}

/// A blob's legacy (num, channels, height, width) shape.
fn legacy_shape(s: &[i64]) -> Result<[i64; 4]> {
    if s.len() > 4 {
        bail!("MVN takes blobs with at most 4 axes (Caffe's legacy shape), got {s:?}");
    }
    let mut out = [1i64; 4];
    out[..s.len()].copy_from_slice(s);
    Ok(out)
}

impl Layer for Mvn {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = legacy_shape(&bottoms[0])?;
        Ok(SetupOut { tops: vec![s.to_vec()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = legacy_shape(&x.size())?;
        let (rows, per_row) =
            if self.p.across_channels() { (s[0], s[1] * s[2] * s[3]) } else { (s[0] * s[1], s[2] * s[3]) };
        let flat = x.f_reshape([rows, per_row])?;
        let centred = flat.f_sub(&flat.f_mean_dim([1i64].as_slice(), true, None::<Kind>)?)?;
        let y = if self.p.normalize_variance() {
            let var = centred.f_square()?.f_mean_dim([1i64].as_slice(), true, None::<Kind>)?;
            // σ in value; in gradient, σ/(σ + eps) times dσ (Caffe's backward).
            // The clamp keeps a constant slice's gradient finite (its output is 0).
            let sigma = var.detach().f_sqrt()?;
            let sigma_g = var.f_clamp_min(f32::MIN_POSITIVE as f64)?.f_sqrt()?;
            let damping = sigma.f_div(&sigma.f_add_scalar(self.p.eps() as f64)?)?;
            let sigma_eff = sigma.f_add(&sigma_g.f_sub(&sigma_g.detach())?.f_mul(&damping)?)?;
            centred.f_div(&sigma_eff.f_add_scalar(self.p.eps() as f64)?)?
        } else {
            centred
        };
        Ok(vec![y.f_reshape(s.as_slice())?])
    }
}
