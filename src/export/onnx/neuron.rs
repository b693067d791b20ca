//! Element-wise layers: one ONNX op each, or a short chain for Caffe's
//! scale/shift/base forms.
use super::{attr_f, Graph};
use crate::export::PlanLayer;
use crate::{bail, Result};

/// Applies a one-input op to the bottom and binds the top.
fn unary(g: &mut Graph, l: &PlanLayer, f: impl FnOnce(&mut Graph, &str) -> Result<String>) -> Result<()> {
    let (Some(b), Some(t)) = (l.bottoms.first(), l.tops.first()) else { bail!("needs one bottom and one top") };
    let x = g.value(b)?;
    let y = f(g, &x)?;
    g.bind(t, y);
    Ok(())
}

pub fn relu(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let slope = l.param.relu_param.as_ref().map_or(0.0, |p| p.negative_slope());
    unary(g, l, |g, x| {
        Ok(if slope == 0.0 {
            g.node("Relu", &[x], vec![])
        } else {
            g.node("LeakyRelu", &[x], vec![attr_f("alpha", slope)])
        })
    })
}

pub fn sigmoid(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    unary(g, l, |g, x| Ok(g.node("Sigmoid", &[x], vec![])))
}

pub fn tanh(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    unary(g, l, |g, x| Ok(g.node("Tanh", &[x], vec![])))
}

pub fn abs_val(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    unary(g, l, |g, x| Ok(g.node("Abs", &[x], vec![])))
}

/// BNLL is log(1 + eˣ): ONNX's Softplus.
pub fn bnll(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    unary(g, l, |g, x| Ok(g.node("Softplus", &[x], vec![])))
}

pub fn elu(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let alpha = l.param.elu_param.as_ref().map_or(1.0, |p| p.alpha());
    unary(g, l, |g, x| Ok(g.node("Elu", &[x], vec![attr_f("alpha", alpha)])))
}

/// SeLu: ONNX's Selu (γ·x for x > 0, γ·α·(exp(x) − 1) otherwise), γ = λ.
pub fn selu(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let p = l.param.selu_param.unwrap_or_default();
    unary(g, l, |g, x| Ok(g.node("Selu", &[x], vec![attr_f("alpha", p.alpha()), attr_f("gamma", p.lambda())])))
}

/// SeLuDropout at TEST is the identity.
pub fn selu_dropout(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    if l.param.phase() == crate::proto::caffe::Phase::Train {
        bail!("SeLuDropout in the TRAIN phase is random; export the TEST phase (-phase TEST)");
    }
    unary(g, l, |g, x| Ok(g.identity(x)))
}

/// Dropout at TEST is the identity (with the fork's `scale_train: false`, a
/// multiplication by 1 − ratio).
pub fn dropout(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let p = l.param.dropout_param.unwrap_or_default();
    if l.param.phase() == crate::proto::caffe::Phase::Train {
        bail!("Dropout in the TRAIN phase is random; export the TEST phase (-phase TEST)");
    }
    unary(g, l, |g, x| Ok(if p.scale_train() { g.identity(x) } else { g.affine(x, 1.0 - p.dropout_ratio(), 0.0) }))
}

/// Caffe's Power: (shift + scale·x)^power.
pub fn power(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let p = l.param.power_param.unwrap_or_default();
    unary(g, l, |g, x| {
        if p.power() * p.scale() == 0.0 {
            // Caffe ignores the input: a constant of the input's shape.
            let v = if p.power() == 0.0 { 1.0 } else { p.shift().powf(p.power()) };
            let zero = g.affine(x, 0.0, 0.0);
            let zeros = g.node("Mul", &[x, &zero], vec![]);
            return Ok(g.affine(&zeros, 1.0, v));
        }
        let y = g.affine(x, p.scale(), p.shift());
        if p.power() == 1.0 {
            return Ok(if y == x { g.identity(x) } else { y });
        }
        let e = g.scalar("power", p.power());
        Ok(g.node("Pow", &[&y, &e], vec![]))
    })
}

/// Caffe's Exp: base^(shift + scale·x) = outer·exp(inner·x).
pub fn exp(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let p = l.param.exp_param.unwrap_or_default();
    let lb = crate::layers::neuron::elementwise::ln_base(p.base())?;
    let inner = (lb * p.scale() as f64) as f32;
    let outer = if p.shift() == 0.0 { 1.0 } else { (lb * p.shift() as f64).exp() as f32 };
    unary(g, l, |g, x| {
        let y = g.affine(x, inner, 0.0);
        let y = g.node("Exp", &[&y], vec![]);
        Ok(g.affine(&y, outer, 0.0))
    })
}

/// Caffe's Log: log_base(shift + scale·x).
pub fn log(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let p = l.param.log_param.unwrap_or_default();
    let base_scale = (1.0 / crate::layers::neuron::elementwise::ln_base(p.base())?) as f32;
    unary(g, l, |g, x| {
        let y = g.affine(x, p.scale(), p.shift());
        let y = g.node("Log", &[&y], vec![]);
        Ok(g.affine(&y, base_scale, 0.0))
    })
}

/// 1 where x > threshold, else 0.
pub fn threshold(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let t = l.param.threshold_param.as_ref().map_or(0.0, |p| p.threshold());
    unary(g, l, |g, x| {
        let c = g.scalar("threshold", t);
        let gt = g.node("Greater", &[x, &c], vec![]);
        Ok(g.node("Cast", &[&gt], vec![super::attr_i("to", 1)]))
    })
}

/// max(min, min(x, max)), as Caffe (min wins when min > max).
pub fn clip(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let p = l.param.clip_param.unwrap_or_default();
    unary(g, l, |g, x| {
        let hi = g.scalar("max", p.max);
        let lo = g.scalar("min", p.min);
        let y = g.node("Min", &[x, &hi], vec![]);
        Ok(g.node("Max", &[&y, &lo], vec![]))
    })
}

/// ReLU6 (neuron/clip.rs): x clipped to [0, 6].
pub fn relu6(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    unary(g, l, |g, x| {
        let hi = g.scalar("max", 6.0);
        let lo = g.scalar("min", 0.0);
        let y = g.node("Min", &[x, &hi], vec![]);
        Ok(g.node("Max", &[&y, &lo], vec![]))
    })
}

/// x · sigmoid(β·x).
pub fn swish(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let beta = l.param.swish_param.as_ref().map_or(1.0, |p| p.beta());
    unary(g, l, |g, x| {
        let bx = g.affine(x, beta, 0.0);
        let s = g.node("Sigmoid", &[&bx], vec![]);
        Ok(g.node("Mul", &[x, &s], vec![]))
    })
}

/// PReLU: the slope blob broadcast over the channel axis (or one shared slope).
pub fn prelu(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let Some(slope) = l.blobs.first() else { bail!("PReLU needs its slope blob") };
    let shape = l.bottom_shapes.first().cloned().unwrap_or_default();
    if shape.len() < 2 {
        bail!("PReLU needs a bottom with a channel axis, got {shape:?}");
    }
    let n = slope.numel() as i64;
    let mut bshape = vec![n];
    bshape.extend(std::iter::repeat_n(1, shape.len() - 2));
    if n == 1 {
        bshape = vec![1];
    }
    let w = g.weight("slope", slope, &bshape)?;
    unary(g, l, |g, x| Ok(g.node("PRelu", &[x, &w], vec![])))
}
