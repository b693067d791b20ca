//! The neuron layers' emitters (ReLU, PReLU, ELU, Exp, Log, Power,
//! Threshold, Clip, Swish, Dropout), listed in layers.rs's table; each follows
//! src/layers/neuron/<type>.rs.
use super::layers::{blobs_module, f, f64_py, tup, view};
use super::{Code, Site};
use crate::proto::caffe::Phase;
use crate::{bail, Result};

pub(super) fn unary(s: &Site, c: &mut Code, template: &str) -> Result<()> {
    c.assign(&s.tops, template.replace("{x}", s.b(0)));
    Ok(())
}

pub(super) fn relu(s: &Site, c: &mut Code) -> Result<()> {
    let slope = s.l.param.relu_param.as_ref().map(|r| r.negative_slope()).unwrap_or(0.0);
    if slope == 0.0 {
        unary(s, c, "F.relu({x})")
    } else {
        c.assign(&s.tops, format!("F.leaky_relu({}, {})", s.b(0), f(slope)));
        Ok(())
    }
}

pub(super) fn prelu(s: &Site, c: &mut Code) -> Result<()> {
    let shape = s.blob_shape(0);
    blobs_module(c, &s.module, &[("weight", shape.clone())], &[]);
    let x = s.b(0);
    let slope = if shape.is_empty() {
        format!("{}.weight", s.module)
    } else {
        format!("{}.weight.reshape{}", s.module, tup(&view(&shape, 1, s.bottom_shape(0).len())))
    };
    c.assign(&s.tops, format!("F.relu({x}) + {x}.clamp(max=0) * {slope}"));
    Ok(())
}

pub(super) fn elu(s: &Site, c: &mut Code) -> Result<()> {
    let alpha = s.l.param.elu_param.as_ref().map(|e| e.alpha()).unwrap_or(1.0);
    c.assign(&s.tops, format!("F.elu({}, {})", s.b(0), f(alpha)));
    Ok(())
}

/// SeLu: λ·ELU_α.
pub(super) fn selu(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.selu_param.unwrap_or_default();
    c.assign(&s.tops, format!("{} * F.elu({}, {})", f(p.lambda()), s.b(0), f(p.alpha())));
    Ok(())
}

/// SeLuDropout at TEST is the identity.
pub(super) fn selu_dropout(s: &Site, c: &mut Code) -> Result<()> {
    if s.l.param.phase() == Phase::Train {
        bail!("SeLuDropout drops at random in the TRAIN phase; export the TEST phase");
    }
    c.assign(&s.tops, s.b(0).to_string());
    Ok(())
}

pub(super) fn exp(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.exp_param.unwrap_or_default();
    let ln = crate::layers::neuron::elementwise::ln_base(p.base())?;
    let inner = ln * p.scale() as f64;
    let mut y = if inner == 1.0 {
        format!("torch.exp({})", s.b(0))
    } else {
        format!("torch.exp({} * {})", s.b(0), f64_py(inner))
    };
    if p.shift() != 0.0 {
        y = format!("{y} * {}", f64_py((ln * p.shift() as f64).exp()));
    }
    c.assign(&s.tops, y);
    Ok(())
}

fn affine(x: &str, scale: f32, shift: f32) -> String {
    let mut y = x.to_string();
    if scale != 1.0 {
        y = format!("{y} * {}", f(scale));
    }
    if shift != 0.0 {
        y = format!("({y} + {})", f(shift));
    }
    y
}

pub(super) fn log(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.log_param.unwrap_or_default();
    let base_scale = 1.0 / crate::layers::neuron::elementwise::ln_base(p.base())?;
    if !base_scale.is_finite() {
        bail!("1 / log(base) is not finite for base {}", p.base());
    }
    let mut y = format!("torch.log({})", affine(s.b(0), p.scale(), p.shift()));
    if base_scale != 1.0 {
        y = format!("{y} * {}", f64_py(base_scale));
    }
    c.assign(&s.tops, y);
    Ok(())
}

pub(super) fn power(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.power_param.unwrap_or_default();
    let (pw, sc, sh) = (p.power(), p.scale(), p.shift());
    let y = if pw * sc == 0.0 {
        // Caffe's constant case: 1, or shift^power.
        let v = if pw == 0.0 { 1.0 } else { sh.powf(pw) };
        format!("torch.full_like({}, {})", s.b(0), f(v))
    } else if pw == 1.0 {
        affine(s.b(0), sc, sh)
    } else {
        format!("({}) ** {}", affine(s.b(0), sc, sh), f(pw))
    };
    c.assign(&s.tops, y);
    Ok(())
}

pub(super) fn threshold(s: &Site, c: &mut Code) -> Result<()> {
    let t = s.l.param.threshold_param.as_ref().map(|t| t.threshold()).unwrap_or(0.0);
    c.assign(&s.tops, format!("({x} > {}).to({x}.dtype)", f(t), x = s.b(0)));
    Ok(())
}

pub(super) fn clip(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.clip_param.unwrap_or_default();
    c.assign(&s.tops, format!("{}.clamp(max={}).clamp(min={})", s.b(0), f(p.max), f(p.min)));
    Ok(())
}

/// ReLU6 (neuron/clip.rs): Clip to [0, 6].
pub(super) fn relu6(s: &Site, c: &mut Code) -> Result<()> {
    c.assign(&s.tops, format!("{}.clamp(max=6.0).clamp(min=0.0)", s.b(0)));
    Ok(())
}

pub(super) fn swish(s: &Site, c: &mut Code) -> Result<()> {
    let beta = s.l.param.swish_param.as_ref().map(|p| p.beta()).unwrap_or(1.0);
    let x = s.b(0);
    let inner = if beta == 1.0 { x.to_string() } else { format!("{x} * {}", f(beta)) };
    c.assign(&s.tops, format!("{x} * torch.sigmoid({inner})"));
    Ok(())
}

/// Dropout at TEST (neuron/dropout.rs): identity, or times the keep ratio
/// when training did not scale (`scale_train: false`).
pub(super) fn dropout(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.dropout_param.unwrap_or_default();
    if s.l.param.phase() == Phase::Train {
        bail!("Dropout drops at random in the TRAIN phase; export the TEST phase");
    }
    let y = if p.scale_train() { s.b(0).to_string() } else { format!("{} * {}", s.b(0), f(1.0 - p.dropout_ratio())) };
    c.assign(&s.tops, y);
    Ok(())
}
