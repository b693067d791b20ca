//! Normalization layers: BatchNorm and MVN.
use crate::{Error, Result};
use tch::{Kind, Tensor};

use super::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::proto::caffe::{BatchNormParameter, LayerParameter, MvnParameter, Phase};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "BatchNorm",
        family: family_of(file!()),
        params: "use_global_stats (default: TEST phase), moving_average_fraction, eps; blobs mean_sum, var_sum, scale_factor (never learned)",
        tests: "parity (resnet_small forward and train_backward incl. running-stat update), gradient checks (batch and global stats), running-average test",
        create: |p| Ok(Box::new(BatchNorm::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "MVN",
        family: family_of(file!()),
        params: "normalize_variance, across_channels, eps",
        tests: "layers_vision (naive reference, Caffe's backward formula, gradient check)",
        create: |p| Ok(Box::new(Mvn { p: p.mvn_param.unwrap_or_default() })),
    });
}

/// BatchNorm, Caffe's way: no scale or shift (a Scale layer follows), and three
/// state blobs: the running sums of means and of (unbiased) variances, and the
/// scale factor that turns them into averages. With batch statistics the
/// output uses the biased batch variance and each forward pass updates the
/// blobs in place: `factor = factor·maf + 1`, `mean_sum = maf·mean_sum + mean`,
/// `var_sum = maf·var_sum + m/(m−1)·var` (m = values per channel). With
/// global statistics `mean = mean_sum/factor` (0 when the factor is 0).
/// Caffe's backward is the true gradient in both modes.
pub struct BatchNorm {
    p: BatchNormParameter,
    channels: i64,
}

impl BatchNorm {
    fn new(lp: &LayerParameter) -> Result<Self> {
        // Caffe refuses learning-rate multipliers other than 0 on the statistics.
        for (i, spec) in lp.param.iter().enumerate().take(3) {
            if spec.lr_mult() != 0.0 {
                bail!(
                    "Cannot configure batch normalization statistics as layer parameters (param {i} has lr_mult {})",
                    spec.lr_mult()
                );
            }
        }
        Ok(BatchNorm { p: lp.batch_norm_param.unwrap_or_default(), channels: 0 })
    }

    fn use_global_stats(&self, phase: Phase) -> bool {
        self.p.use_global_stats.unwrap_or(phase == Phase::Test)
    }
}

impl Layer for BatchNorm {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.is_empty() {
            bail!("BatchNorm needs at least one axis");
        }
        self.channels = if s.len() == 1 { 1 } else { s[1] };
        let c = self.channels;
        Ok(SetupOut {
            tops: vec![s.clone()],
            params: vec![
                ParamDecl::constant(vec![c], 0.0),
                ParamDecl::constant(vec![c], 0.0),
                ParamDecl::constant(vec![1], 0.0),
            ],
        })
    }

    fn params_learnable(&self) -> bool {
        false
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        // One channel for a 1-axis bottom: view it as (N, 1).
        let xs = if shape.len() == 1 { x.f_reshape([-1, 1])? } else { x.shallow_clone() };
        let c = xs.size()[1];
        if c != self.channels {
            bail!("bottom has {c} channels, the layer was set up for {}", self.channels);
        }
        if params.len() != 3 {
            bail!("BatchNorm needs its 3 blobs, got {}", params.len());
        }
        let eps = self.p.eps() as f64;
        let kind = x.kind();
        let y = if self.use_global_stats(ctx.phase) {
            let factor = params[2].f_reshape([-1])?.double_value(&[0]);
            let factor = if factor == 0.0 { 0.0 } else { 1.0 / factor };
            let mean = params[0].f_to_kind(kind)?.f_mul_scalar(factor)?;
            let var = params[1].f_to_kind(kind)?.f_mul_scalar(factor)?;
            xs.f_batch_norm(None::<&Tensor>, None, Some(&mean), Some(&var), false, 0.0, eps, true)?
        } else {
            let m = xs.numel() as i64 / c;
            let dims: Vec<i64> = (0..xs.dim() as i64).filter(|&d| d != 1).collect();
            let y = if m > 1 {
                xs.f_batch_norm(None::<&Tensor>, None, None, None, true, 0.0, eps, true)?
            } else {
                // libtorch refuses one value per channel; the formula still holds (y = 0).
                let (var, mean) = xs.f_var_mean_dim(dims.as_slice(), false, true)?;
                xs.f_sub(&mean)?.f_div(&var.f_add_scalar(eps)?.f_sqrt()?)?
            };
            self.update_running_stats(&xs, &dims, m, params)?;
            y
        };
        Ok(vec![if shape.len() == 1 { y.f_reshape(shape.as_slice())? } else { y }])
    }
}

impl BatchNorm {
    /// Caffe's moving-average update of the three blobs, in place.
    fn update_running_stats(&self, xs: &Tensor, dims: &[i64], m: i64, params: &[Tensor]) -> Result<()> {
        let maf = self.p.moving_average_fraction() as f64;
        let correction = if m > 1 { m as f64 / (m - 1) as f64 } else { 1.0 };
        tch::no_grad(|| -> Result<(), tch::TchError> {
            let (var, mean) = xs.detach().f_var_mean_dim(dims, false, false)?;
            let mut mean_sum = params[0].shallow_clone();
            let mut var_sum = params[1].shallow_clone();
            let mut factor = params[2].shallow_clone();
            let _ = factor.f_mul_scalar_(maf)?.f_add_scalar_(1.0)?;
            let _ = mean_sum.f_mul_scalar_(maf)?.f_add_(&mean.f_to_kind(mean_sum.kind())?)?;
            let _ = var_sum.f_mul_scalar_(maf)?.f_add_(&var.f_mul_scalar(correction)?.f_to_kind(var_sum.kind())?)?;
            Ok(())
        })
        .map_err(|e| Error::Invalid(format!("libtorch: {e}")))
    }
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
        let rows = if self.p.across_channels() { s[0] } else { s[0] * s[1] };
        let flat = x.f_reshape([rows, -1])?;
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
