//! BatchNorm, Caffe's way (normalization only; a Scale layer follows).
use crate::{Error, Result};
use tch::{Kind, Tensor};

use crate::bail;
use crate::layers::fold::Epilogue;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{BatchNormParameter, LayerParameter, Phase};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "BatchNorm",
        family: family_of(file!()),
        params: "use_global_stats (default: TEST phase), moving_average_fraction, eps; blobs mean_sum, var_sum, scale_factor (never learned)",
        tests: "parity (resnet_small forward, train_backward incl. running-stat update, and the training step with each BatchNorm, Scale and ReLU run as one batch norm), gradient checks (batch and global stats), running-average test, one-layer training form against the layers one by one (batch and global stats)",
        create: |p| Ok(Box::new(BatchNorm::new(p)?)),
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

    fn param_learnable(&self, _index: usize) -> bool {
        false
    }

    fn inference_epilogue(&self, ctx: &Ctx, params: &[Tensor]) -> Option<Epilogue> {
        let [mean_sum, var_sum, factor] = params else { return None };
        self.use_global_stats(ctx.phase).then(|| Epilogue::BatchNorm {
            mean_sum: mean_sum.shallow_clone(),
            var_sum: var_sum.shallow_clone(),
            factor: factor.shallow_clone(),
            eps: self.p.eps() as f64,
        })
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        // One channel for a 1-axis bottom: view it as (N, 1).
        let xs = if shape.len() == 1 { x.f_reshape([-1, 1])? } else { x.shallow_clone() };
        let c = xs.size()[1];
        if xs.numel() == 0 {
            // An empty blob (a zero dimension) normalizes to itself.
            return Ok(vec![x.shallow_clone()]);
        }
        if c != self.channels {
            bail!("bottom has {c} channels, the layer was set up for {}", self.channels);
        }
        if params.len() != 3 {
            bail!("BatchNorm needs its 3 blobs, got {}", params.len());
        }
        let y = if self.one_value_per_channel(ctx, &xs) {
            // libtorch refuses one value per channel; the formula still holds (y = 0).
            let dims: Vec<i64> = (0..xs.dim() as i64).filter(|&d| d != 1).collect();
            let (var, mean) = xs.f_var_mean_dim(dims.as_slice(), false, true)?;
            let y = xs.f_sub(&mean)?.f_div(&var.f_add_scalar(self.p.eps() as f64)?.f_sqrt()?)?;
            self.update_running_stats(&xs, &dims, 1, params)?;
            y
        } else {
            self.normalize(ctx, &xs, params, None, None)?
        };
        Ok(vec![if shape.len() == 1 { y.f_reshape(shape.as_slice())? } else { y }])
    }

    fn forward_with_epilogues(
        &mut self,
        ctx: &Ctx,
        bottoms: &[Tensor],
        params: &[Tensor],
        epilogues: &[Epilogue],
    ) -> Option<Result<Vec<Tensor>>> {
        // Where no convolution took the chain (the BatchNorm writes a blob of
        // its own, which pycaffe can read, or follows a Concat): the single
        // batch norm with the Scale as its affine part, as in training.
        self.forward_with_training_epilogues(ctx, bottoms, params, epilogues)
    }

    fn forward_with_training_epilogues(
        &mut self,
        ctx: &Ctx,
        bottoms: &[Tensor],
        params: &[Tensor],
        epilogues: &[Epilogue],
    ) -> Option<Result<Vec<Tensor>>> {
        // A Scale along the channels (and a ReLU after it): libtorch's batch
        // norm takes the scale and bias as its affine part, one pass forward
        // and one backward for the two layers; the ReLU then runs in place on
        // that fresh output, which the batch norm's backward does not read.
        let (scale, bias, relu) = match epilogues {
            [Epilogue::Scale { scale, bias }] => (scale, bias.as_ref(), false),
            [Epilogue::Scale { scale, bias }, Epilogue::Relu] => (scale, bias.as_ref(), true),
            _ => return None,
        };
        let ([x], [_, _, _]) = (bottoms, params) else { return None };
        let c = self.channels;
        let fits = |t: &Tensor| t.size() == [c] && t.kind() == x.kind() && t.device() == x.device();
        let per_channel = x.dim() >= 2 && x.size()[1] == c && fits(scale) && bias.is_none_or(fits);
        if !per_channel || x.numel() == 0 || self.one_value_per_channel(ctx, x) {
            return None;
        }
        Some(self.normalize(ctx, x, params, Some(scale), bias).and_then(|mut y| {
            if relu {
                let _ = y.f_relu_()?;
            }
            Ok(vec![y])
        }))
    }
}

impl BatchNorm {
    /// Batch statistics over one value per channel, which libtorch's batch
    /// norm refuses (`xs` is (N, C, ...) and not empty).
    fn one_value_per_channel(&self, ctx: &Ctx, xs: &Tensor) -> bool {
        !self.use_global_stats(ctx.phase) && xs.numel() as i64 / self.channels <= 1
    }

    /// libtorch's batch norm of `xs` (N, C, ...) with Caffe's statistics
    /// (global or this batch's, then the running sums updated) and an
    /// optional affine part; at least two values per channel.
    fn normalize(
        &self,
        ctx: &Ctx,
        xs: &Tensor,
        params: &[Tensor],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let eps = self.p.eps() as f64;
        let kind = xs.kind();
        if self.use_global_stats(ctx.phase) {
            let (mean, var) = if crate::layers::capture::recording() {
                // A recorded pass reads nothing back: 1/factor stays on the
                // device, divided in double and rounded once, as below.
                let f = params[2].f_reshape([-1])?.f_narrow(0, 0, 1)?.f_to_kind(Kind::Double)?;
                let inv = f.f_reciprocal()?.f_where_self(&f.f_ne(0.0)?, &f.f_zeros_like()?)?.f_to_kind(kind)?;
                (params[0].f_to_kind(kind)?.f_mul(&inv)?, params[1].f_to_kind(kind)?.f_mul(&inv)?)
            } else {
                let factor = params[2].f_reshape([-1])?.double_value(&[0]);
                let factor = if factor == 0.0 { 0.0 } else { 1.0 / factor };
                (params[0].f_to_kind(kind)?.f_mul_scalar(factor)?, params[1].f_to_kind(kind)?.f_mul_scalar(factor)?)
            };
            return Ok(xs.f_batch_norm(weight, bias, Some(&mean), Some(&var), false, 0.0, eps, true)?);
        }
        let c = xs.size()[1];
        let m = xs.numel() as i64 / c;
        let dims: Vec<i64> = (0..xs.dim() as i64).filter(|&d| d != 1).collect();
        let y = xs.f_batch_norm(weight, bias, None::<&Tensor>, None::<&Tensor>, true, 0.0, eps, true)?;
        self.update_running_stats(xs, &dims, m, params)?;
        Ok(y)
    }

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
