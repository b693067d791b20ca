//! Element-wise activations (Caffe's neuron layers): one bottom, one top of the
//! same shape. All may run in place except AbsVal, which Caffe forbids.
//!
//! Backward is autograd; each forward is written so that its gradient is
//! Caffe's Backward_cpu, including at the kinks (x == 0 takes Caffe's branch).
use crate::Result;
use tch::Tensor;

use super::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::proto::caffe::{FillerParameter, LayerParameter};

const GRAD_TESTS: &str = "gradient check, numeric tests (tests/layers_activation.rs)";

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ReLU",
        family: family_of(file!()),
        params: "negative_slope",
        tests: "parity (lenet, cifar10, resnet_small), gradient check, numeric tests (tests/layers_activation.rs)",
        create: |p| {
            Ok(Box::new(ReLU { slope: p.relu_param.as_ref().map(|r| r.negative_slope()).unwrap_or(0.0) as f64 }))
        },
    });
    r.push(LayerInfo {
        type_name: "PReLU",
        family: family_of(file!()),
        params: "channel_shared, filler (default constant 0.25)",
        tests: "gradient check (bottom and slopes), numeric tests (tests/layers_activation.rs)",
        create: |p| Ok(Box::new(PReLU::new(p))),
    });
    r.push(LayerInfo {
        type_name: "ELU",
        family: family_of(file!()),
        params: "alpha",
        tests: GRAD_TESTS,
        create: |p| {
            Ok(Box::new(Elementwise::new(Op::Elu {
                alpha: p.elu_param.as_ref().map(|e| e.alpha()).unwrap_or(1.0) as f64,
            })))
        },
    });
    r.push(LayerInfo {
        type_name: "Sigmoid",
        family: family_of(file!()),
        params: "(engine ignored)",
        tests: GRAD_TESTS,
        create: |_| Ok(Box::new(Elementwise::new(Op::Sigmoid))),
    });
    r.push(LayerInfo {
        type_name: "TanH",
        family: family_of(file!()),
        params: "(engine ignored)",
        tests: GRAD_TESTS,
        create: |_| Ok(Box::new(Elementwise::new(Op::TanH))),
    });
    r.push(LayerInfo {
        type_name: "AbsVal",
        family: family_of(file!()),
        params: "(none; in-place rejected as in Caffe)",
        tests: GRAD_TESTS,
        create: |p| {
            if !p.top.is_empty() && p.top.first() == p.bottom.first() {
                bail!("AbsVal Layer does not allow in-place computation");
            }
            Ok(Box::new(Elementwise::new(Op::AbsVal)))
        },
    });
    r.push(LayerInfo {
        type_name: "BNLL",
        family: family_of(file!()),
        params: "(none)",
        tests: GRAD_TESTS,
        create: |_| Ok(Box::new(Elementwise::new(Op::Bnll))),
    });
    r.push(LayerInfo {
        type_name: "Power",
        family: family_of(file!()),
        params: "power, scale, shift",
        tests: GRAD_TESTS,
        create: |p| {
            let q = p.power_param.unwrap_or_default();
            Ok(Box::new(Elementwise::new(Op::Power {
                power: q.power() as f64,
                scale: q.scale() as f64,
                shift: q.shift() as f64,
            })))
        },
    });
    r.push(LayerInfo {
        type_name: "Exp",
        family: family_of(file!()),
        params: "base (-1 = e), scale, shift",
        tests: GRAD_TESTS,
        create: |p| Ok(Box::new(Elementwise::new(exp_op(p)?))),
    });
    r.push(LayerInfo {
        type_name: "Log",
        family: family_of(file!()),
        params: "base (-1 = e), scale, shift",
        tests: GRAD_TESTS,
        create: |p| Ok(Box::new(Elementwise::new(log_op(p)?))),
    });
    r.push(LayerInfo {
        type_name: "Threshold",
        family: family_of(file!()),
        params: "threshold (no gradient: Caffe has no backward)",
        tests: "numeric tests (tests/layers_activation.rs)",
        create: |p| {
            let t = p.threshold_param.as_ref().map(|t| t.threshold()).unwrap_or(0.0) as f64;
            Ok(Box::new(Elementwise::new(Op::Threshold { threshold: t })))
        },
    });
    r.push(LayerInfo {
        type_name: "Dropout",
        family: family_of(file!()),
        params: "dropout_ratio, scale_train (caffe-tch extension, default true)",
        tests: "gradient check (TRAIN, fixed seed), TRAIN/TEST numeric tests (tests/layers_activation.rs)",
        create: |p| Ok(Box::new(Dropout::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Clip",
        family: family_of(file!()),
        params: "min, max",
        tests: GRAD_TESTS,
        create: |p| {
            let c = p.clip_param.unwrap_or_default();
            Ok(Box::new(Elementwise::new(Op::Clip { min: c.min as f64, max: c.max as f64 })))
        },
    });
    r.push(LayerInfo {
        type_name: "Swish",
        family: family_of(file!()),
        params: "beta",
        tests: GRAD_TESTS,
        create: |p| {
            Ok(Box::new(Elementwise::new(Op::Swish {
                beta: p.swish_param.as_ref().map(|s| s.beta()).unwrap_or(1.0) as f64,
            })))
        },
    });
}

/// Shapes pass through unchanged (one bottom, one top).
pub fn same_shape(bottoms: &[Shape]) -> Result<SetupOut> {
    check_bottoms(bottoms, 1, 1)?;
    Ok(SetupOut { tops: vec![bottoms[0].clone()], params: vec![] })
}

pub struct ReLU {
    slope: f64,
}

impl Layer for ReLU {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        same_shape(bottoms)
    }
    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        if self.slope == 0.0 {
            return Ok(vec![x.f_relu()?]);
        }
        // Caffe's leaky form: x for x > 0, slope·x otherwise (any slope).
        Ok(vec![x.f_where_self(&x.f_gt(0.0)?, &x.f_mul_scalar(self.slope)?)?])
    }
}

/// The parameter-free element-wise functions.
#[derive(Debug, Clone, Copy)]
enum Op {
    Sigmoid,
    TanH,
    AbsVal,
    Bnll,
    Elu {
        alpha: f64,
    },
    Power {
        power: f64,
        scale: f64,
        shift: f64,
    },
    /// y = outer·exp(inner·x), Caffe's precomputed form of base^(shift + scale·x).
    Exp {
        inner: f64,
        outer: f64,
    },
    /// y = base_scale·ln(shift + scale·x).
    Log {
        base_scale: f64,
        scale: f64,
        shift: f64,
    },
    Threshold {
        threshold: f64,
    },
    Clip {
        min: f64,
        max: f64,
    },
    Swish {
        beta: f64,
    },
}

/// ln(base), with Caffe's rule that base -1 means e; other bases must be > 0.
fn ln_base(base: f32) -> Result<f64> {
    if base == -1.0 {
        return Ok(1.0);
    }
    if base.is_nan() || base <= 0.0 {
        bail!("base must be strictly positive (or -1 for e), got {base}");
    }
    let l = (base as f64).ln();
    if !l.is_finite() {
        bail!("log(base) = log({base}) is not finite");
    }
    Ok(l)
}

fn exp_op(p: &LayerParameter) -> Result<Op> {
    let q = p.exp_param.unwrap_or_default();
    let log_base = ln_base(q.base())?;
    let (scale, shift) = (q.scale() as f64, q.shift() as f64);
    let outer = if shift == 0.0 { 1.0 } else { (log_base * shift).exp() };
    Ok(Op::Exp { inner: log_base * scale, outer })
}

fn log_op(p: &LayerParameter) -> Result<Op> {
    let q = p.log_param.unwrap_or_default();
    let log_base = ln_base(q.base())?;
    let base_scale = 1.0 / log_base;
    if !base_scale.is_finite() {
        bail!("1 / log(base) is not finite for base {}", q.base());
    }
    Ok(Op::Log { base_scale, scale: q.scale() as f64, shift: q.shift() as f64 })
}

/// A parameter-free neuron layer.
pub struct Elementwise {
    op: Op,
}

impl Elementwise {
    fn new(op: Op) -> Self {
        Elementwise { op }
    }
}

impl Layer for Elementwise {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        same_shape(bottoms)
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let y = match self.op {
            Op::Sigmoid => x.f_sigmoid()?,
            Op::TanH => x.f_tanh()?,
            // d|x|/dx = sign(x), 0 at 0, as Caffe.
            Op::AbsVal => x.f_abs()?,
            // softplus = Caffe's stable BNLL; its gradient is sigmoid(x) (0.5 at 0, as Caffe).
            Op::Bnll => x.f_softplus()?,
            Op::Elu { alpha } => {
                // max(x,0) + α(exp(min(x,0)) − 1): min keeps exp finite on the unused side.
                let neg = x.f_clamp_max(0.0)?.f_exp()?.f_sub_scalar(1.0)?.f_mul_scalar(alpha)?;
                x.f_relu()?.f_add(&neg)?
            }
            Op::Power { power, scale, shift } => {
                if power * scale == 0.0 {
                    // Caffe ignores the input: a constant with zero gradient.
                    let v = if power == 0.0 { 1.0 } else { (shift as f32).powf(power as f32) as f64 };
                    return Ok(vec![x.detach().f_full_like(v)?]);
                }
                let mut y = x.shallow_clone();
                if scale != 1.0 {
                    y = y.f_mul_scalar(scale)?;
                }
                if shift != 0.0 {
                    y = y.f_add_scalar(shift)?;
                }
                if power != 1.0 {
                    y = y.f_pow_tensor_scalar(power)?;
                }
                y
            }
            Op::Exp { inner, outer } => {
                let mut y = if inner == 1.0 { x.f_exp()? } else { x.f_mul_scalar(inner)?.f_exp()? };
                if outer != 1.0 {
                    y = y.f_mul_scalar(outer)?;
                }
                y
            }
            Op::Log { base_scale, scale, shift } => {
                let mut y = x.shallow_clone();
                if scale != 1.0 {
                    y = y.f_mul_scalar(scale)?;
                }
                if shift != 0.0 {
                    y = y.f_add_scalar(shift)?;
                }
                let mut y = y.f_log()?;
                if base_scale != 1.0 {
                    y = y.f_mul_scalar(base_scale)?;
                }
                y
            }
            // A step function: Caffe has no backward for it, so the top carries no gradient.
            Op::Threshold { threshold } => x.detach().f_gt(threshold)?.f_to_kind(x.kind())?,
            // max(min, min(x, max)) as Caffe (min wins when min > max); the gradient passes
            // where min ≤ x ≤ max, both ends included.
            Op::Clip { min, max } => x.f_clamp_max(max)?.f_clamp_min(min)?,
            Op::Swish { beta } => x.f_mul(&x.f_mul_scalar(beta)?.f_sigmoid()?)?,
        };
        Ok(vec![y])
    }
}

/// PReLU: max(x,0) + a_c·min(x,0) with a learnable slope per channel (axis 1),
/// or one shared slope (a 0-D blob, as Caffe stores it).
pub struct PReLU {
    channel_shared: bool,
    filler: FillerParameter,
    channels: i64,
}

impl PReLU {
    fn new(lp: &LayerParameter) -> Self {
        let p = lp.prelu_param.clone().unwrap_or_default();
        let filler = p.filler.clone().unwrap_or_else(|| FillerParameter {
            r#type: Some("constant".into()),
            value: Some(0.25),
            ..Default::default()
        });
        PReLU { channel_shared: p.channel_shared(), filler, channels: 0 }
    }
}

impl Layer for PReLU {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.len() < 2 {
            bail!("Number of axes of bottom blob must be >=2, got shape {s:?}");
        }
        self.channels = s[1];
        let shape = if self.channel_shared { vec![] } else { vec![self.channels] };
        Ok(SetupOut { tops: vec![s.clone()], params: vec![ParamDecl::new(shape, self.filler.clone())] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = x.size();
        if s.len() < 2 {
            bail!("Number of axes of bottom blob must be >=2, got shape {s:?}");
        }
        let Some(a) = params.first() else { bail!("PReLU needs its slope blob") };
        let slope = if self.channel_shared {
            if a.numel() != 1 {
                bail!(
                    "Negative slope size is inconsistent with prototxt config: {} values, channel_shared needs 1",
                    a.numel()
                );
            }
            a.f_reshape([] as [i64; 0])?
        } else {
            if a.numel() as i64 != s[1] {
                bail!(
                    "Negative slope size is inconsistent with prototxt config: {} values for {} channels",
                    a.numel(),
                    s[1]
                );
            }
            let mut view = vec![1i64; s.len()];
            view[1] = s[1];
            a.f_reshape(view.as_slice())?
        };
        // At x == 0 the bottom gets slope (Caffe's x <= 0 branch): relu' is 0 there, clamp_max' is 1.
        let neg = x.f_clamp_max(0.0)?.f_mul(&slope.f_to_kind(x.kind())?)?;
        Ok(vec![x.f_relu()?.f_add(&neg)?])
    }
}

/// Dropout: in TRAIN, keeps each unit with probability 1 − ratio and scales
/// kept units by 1/(1 − ratio); TEST is the identity. With `scale_train: false`
/// (a fork option) TRAIN does not scale and TEST multiplies by 1 − ratio instead.
pub struct Dropout {
    ratio: f64,
    scale_train: bool,
}

impl Dropout {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.dropout_param.unwrap_or_default();
        let ratio = p.dropout_ratio() as f64;
        // Caffe only DCHECKs 0 < ratio < 1; ratio 1 would give 0·∞ = NaN in its release builds.
        if !(0.0..1.0).contains(&ratio) {
            bail!("dropout_ratio must be in [0, 1), got {ratio}");
        }
        Ok(Dropout { ratio, scale_train: p.scale_train() })
    }
}

impl Layer for Dropout {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        same_shape(bottoms)
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let keep = 1.0 - self.ratio;
        if !ctx.train() {
            return Ok(vec![if self.scale_train { x.shallow_clone() } else { x.f_mul_scalar(keep)? }]);
        }
        let mask = x.detach().f_bernoulli_p(keep)?;
        let y = x.f_mul(&mask)?;
        Ok(vec![if self.scale_train { y.f_mul_scalar(1.0 / keep)? } else { y }])
    }
}
