//! BN, the batch normalization of two Caffe forks under one type name (BVLC
//! Caffe's is BatchNorm + Scale), told apart by the `bn_param` fields given:
//! - SegNet's: y = scale·x̂ + shift with the batch's own statistics (mean and
//!   E[x²] − mean², eps 1e-9) in LEARN mode, whatever the phase, and
//!   y = scale·x + shift in INFERENCE mode, where SegNet's
//!   compute_bn_statistics.py has folded the statistics into the blobs. In
//!   LEARN mode two more tops give the batch's mean and variance.
//! - yjxiong/caffe's (PSPNet, TSN): y = slope·(x − mean)/√(var + eps) + bias
//!   with the batch's mean and (biased) variance in TRAIN, which also move the
//!   running averages (`avg = (1 − momentum)·batch + momentum·avg`), and the
//!   running ones in TEST or when `frozen` (which also stops slope and bias
//!   from learning).
//!
//! Statistics are over the batch and spatial axes (a bottom read as N×C×H×W);
//! the gradients are autograd's over these forwards, which is what both
//! forks' backward computes.
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, legacy_dims, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::bn_parameter::BnMode;
use crate::proto::caffe::{BnParameter, LayerParameter, Phase};
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "BN",
        family: family_of(file!()),
        params: "bn_param: SegNet's bn_mode (LEARN, INFERENCE), scale_filler, shift_filler, mean and variance tops; yjxiong/caffe's (PSPNet) slope_filler, bias_filler, momentum, eps, frozen",
        tests: "layers_common: bn_* (both forks' formulas, running averages, frozen, tops, errors, gradient checks); export cases",
        create: |p| Ok(Box::new(Bn::new(p)?)),
    });
}

/// Which fork's BN a layer is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BnFork {
    SegNet,
    Xiong,
}

/// The fork a `bn_param` belongs to: yjxiong's when it sets any of that
/// fork's fields, else SegNet's (the exporters ask too).
pub fn bn_fork(p: &BnParameter) -> BnFork {
    let xiong = p.slope_filler.is_some()
        || p.bias_filler.is_some()
        || p.momentum.is_some()
        || p.eps.is_some()
        || p.frozen.is_some();
    if xiong {
        BnFork::Xiong
    } else {
        BnFork::SegNet
    }
}

/// SegNet's variance guard.
pub const SEGNET_EPS: f64 = 1e-9;

pub struct Bn {
    p: BnParameter,
    fork: BnFork,
    /// SegNet's LEARN mode with its batch mean and variance as tops 1 and 2.
    statistics_tops: bool,
}

impl Bn {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.bn_param.clone().unwrap_or_default();
        let fork = bn_fork(&p);
        let segnet_only = p.scale_filler.is_some() || p.shift_filler.is_some() || p.bn_mode.is_some();
        if fork == BnFork::Xiong && segnet_only {
            bail!(
                "bn_param mixes SegNet's fields (scale_filler, shift_filler, bn_mode) with yjxiong/caffe's \
                 (slope_filler, bias_filler, momentum, eps, frozen); a BN layer is one fork's or the other's"
            );
        }
        let statistics_tops = match lp.top.len() {
            0 | 1 => false,
            3 if fork == BnFork::SegNet && p.bn_mode() == BnMode::Learn => true,
            n => bail!("BN takes 1 top (or 3 in SegNet's LEARN mode: the batch mean and variance), got {n}"),
        };
        Ok(Bn { p, fork, statistics_tops })
    }
}

/// A (1, C, 1, 1) blob viewed for broadcasting over (N, C, H, W).
fn per_channel(t: &Tensor, c: i64) -> Result<Tensor> {
    Ok(t.f_reshape([1, c, 1, 1])?)
}

impl Layer for Bn {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.len() < 2 {
            bail!("BN needs a bottom with a channel axis, got shape {s:?}");
        }
        let [_, c, _, _] = legacy_dims(s)?;
        let shape = vec![1, c, 1, 1];
        let filler = |f: &Option<crate::proto::caffe::FillerParameter>| f.clone().unwrap_or_default();
        let params = match self.fork {
            BnFork::SegNet => vec![
                ParamDecl::new(shape.clone(), filler(&self.p.scale_filler)),
                ParamDecl::new(shape, filler(&self.p.shift_filler)),
            ],
            BnFork::Xiong => vec![
                ParamDecl::new(shape.clone(), filler(&self.p.slope_filler)),
                ParamDecl::new(shape.clone(), filler(&self.p.bias_filler)),
                ParamDecl::constant(shape.clone(), 0.0),
                // A frozen layer starts from unit variance (the fork's choice).
                ParamDecl::constant(shape, if self.p.frozen() { 1.0 } else { 0.0 }),
            ],
        };
        let mut tops = vec![s.clone()];
        if self.statistics_tops {
            tops.extend([vec![1, c, 1, 1], vec![1, c, 1, 1]]);
        }
        Ok(SetupOut { tops, params })
    }

    fn param_learnable(&self, index: usize) -> bool {
        match self.fork {
            BnFork::SegNet => true,
            BnFork::Xiong => index < 2 && !self.p.frozen(),
        }
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        let [n, c, h, w] = legacy_dims(&shape)?;
        let x4 = x.f_reshape([n, c, h, w])?;
        let axes = [0i64, 2, 3];
        let mean_of = |t: &Tensor| t.f_mean_dim(axes.as_slice(), true, t.kind());
        let mut tops = Vec::new();
        let y = match self.fork {
            BnFork::SegNet => {
                let (scale, shift) = (per_channel(&params[0], c)?, per_channel(&params[1], c)?);
                if self.p.bn_mode() == BnMode::Inference {
                    x4.f_mul(&scale)?.f_add(&shift)?
                } else {
                    let mean = mean_of(&x4)?;
                    let var = mean_of(&x4.f_square()?)?.f_sub(&mean.f_square()?)?;
                    if self.statistics_tops {
                        tops.extend([mean.detach(), var.detach()]);
                    }
                    let normalized = x4.f_sub(&mean)?.f_div(&var.f_add_scalar(SEGNET_EPS)?.f_sqrt()?)?;
                    normalized.f_mul(&scale)?.f_add(&shift)?
                }
            }
            BnFork::Xiong => {
                let (slope, bias) = (per_channel(&params[0], c)?, per_channel(&params[1], c)?);
                let (mean, var) = if ctx.phase == Phase::Train && !self.p.frozen() {
                    let mean = mean_of(&x4)?;
                    let var = mean_of(&x4.f_sub(&mean)?.f_square()?)?;
                    let m = self.p.momentum() as f64;
                    tch::no_grad(|| -> Result<()> {
                        for (avg, batch) in [(&params[2], &mean), (&params[3], &var)] {
                            let moved = batch.f_reshape(avg.size().as_slice())?.f_mul_scalar(1.0 - m)?;
                            avg.shallow_clone().f_mul_scalar_(m)?.f_add_(&moved).map(drop)?;
                        }
                        Ok(())
                    })?;
                    (mean, var)
                } else {
                    (per_channel(&params[2], c)?, per_channel(&params[3], c)?)
                };
                let inv_std = var.f_add_scalar(self.p.eps() as f64)?.f_rsqrt()?;
                x4.f_sub(&mean)?.f_mul(&inv_std)?.f_mul(&slope)?.f_add(&bias)?
            }
        };
        tops.insert(0, y.f_reshape(shape.as_slice())?);
        Ok(tops)
    }
}
