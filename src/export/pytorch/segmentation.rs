//! The emitters of the segmentation and normalization forks' layers
//! (Interp, Upsample, BN), listed in layers.rs's table; each follows its file
//! in src/layers.
use super::layers::{blobs_module, f, f64_py};
use super::{Code, Site};
use crate::layers::common::bn::{bn_fork, BnFork, SEGNET_EPS};
use crate::layers::vision::interp::interp_sizes;
use crate::layers::vision::upsample::{upsample_kind, UpsampleKind};
use crate::proto::caffe::bn_parameter::BnMode;
use crate::proto::caffe::Phase;
use crate::{bail, Result};

/// Interp (vision/interp.rs): the size rule is the helper's, so the model
/// follows the input's size as the layer does.
pub(super) fn interp(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.interp_param.unwrap_or_default();
    // Checks the parameters as the layer does.
    interp_sizes(&p, s.bottom_shape(0), s.bottoms.get(1).map(|_| s.bottom_shape(1)))?;
    let mut args = vec![s.b(0).to_string()];
    if s.bottoms.len() > 1 {
        args.push(format!("like={}", s.b(1)));
    } else if p.shrink_factor.is_some() || p.zoom_factor.is_some() {
        if let Some(f) = p.shrink_factor {
            args.push(format!("shrink={f}"));
        }
        if let Some(f) = p.zoom_factor {
            args.push(format!("zoom={f}"));
        }
    } else {
        args.push(format!("height={}, width={}", p.height(), p.width()));
    }
    if p.pad_beg() != 0 || p.pad_end() != 0 {
        args.push(format!("pad_beg={}, pad_end={}", p.pad_beg(), p.pad_end()));
    }
    c.helper("caffe_interp");
    c.assign(&s.tops, format!("caffe_interp({})", args.join(", ")));
    Ok(())
}

/// Upsample (vision/upsample.rs): the YOLOv3 forks' repeat, or SegNet's unpooling.
pub(super) fn upsample(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.upsample_param.unwrap_or_default();
    let shapes: Vec<Vec<i64>> = (0..s.bottoms.len()).map(|i| s.bottom_shape(i).to_vec()).collect();
    match upsample_kind(&p, &shapes)? {
        UpsampleKind::Nearest([sh, sw]) => {
            c.assign(&s.tops, format!("{}.repeat_interleave({sh}, 2).repeat_interleave({sw}, 3)", s.b(0)));
        }
        UpsampleKind::Unpool([oh, ow]) => {
            c.helper("caffe_unpool");
            c.assign(&s.tops, format!("caffe_unpool({}, {}, {oh}, {ow})", s.b(0), s.b(1)));
        }
    }
    Ok(())
}

/// The forks' BN (common/bn.rs): SegNet's blobs are `weight` and `bias`,
/// yjxiong's add `running_mean` and `running_var`.
pub(super) fn bn(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.bn_param.clone().unwrap_or_default();
    let shape = s.bottom_shape(0);
    if shape.len() < 2 {
        bail!("BN needs a bottom with a channel axis");
    }
    let [_, ch, h, w] = crate::layers::legacy_dims(shape)?;
    let blob = vec![1, ch, 1, 1];
    let fork = bn_fork(&p);
    let buffers: &[(&str, Vec<i64>)] = match fork {
        BnFork::SegNet => &[],
        BnFork::Xiong => &[("running_mean", blob.clone()), ("running_var", blob.clone())],
    };
    blobs_module(c, &s.module, &[("weight", blob.clone()), ("bias", blob)], buffers);
    let m = &s.module;
    let x = if shape.len() == 4 { s.b(0).to_string() } else { format!("{}.reshape(-1, {ch}, {h}, {w})", s.b(0)) };
    let y = match fork {
        BnFork::SegNet if p.bn_mode() == BnMode::Inference => format!("{x} * {m}.weight + {m}.bias"),
        BnFork::SegNet => {
            c.helper("caffe_bn_batch");
            format!("caffe_bn_batch({x}, {m}.weight, {m}.bias, {}, centred=False)", f64_py(SEGNET_EPS))
        }
        BnFork::Xiong if s.l.param.phase() == Phase::Train && !p.frozen() => {
            c.helper("caffe_bn_batch");
            format!("caffe_bn_batch({x}, {m}.weight, {m}.bias, {}, centred=True)", f(p.eps()))
        }
        BnFork::Xiong => {
            format!("({x} - {m}.running_mean) * torch.rsqrt({m}.running_var + {}) * {m}.weight + {m}.bias", f(p.eps()))
        }
    };
    let y = if shape.len() == 4 { y } else { format!("({y}).reshape({}.shape)", s.b(0)) };
    c.assign(&s.tops, y);
    Ok(())
}
