//! One emitter per Caffe layer type: the `__init__` and `forward` lines of
//! `model.py`. [`LAYERS`] is the single list of what `-format pytorch`
//! supports (`supports` and SUPPORTED-LAYERS.md read it), so the list and the
//! emitters cannot drift. Each emitter follows the semantics of the layer's
//! file in src/layers (named in its comment where not obvious).
use super::detection::{
    detection_output, normalize, permute, prior_box, proposal, psroi_pooling, roi_pooling, yolo_detection_output,
    yolov3_detection_output,
};
use super::neuron::{
    clip, dropout, elu, exp, log, power, prelu, relu, relu6, selu, selu_dropout, swish, threshold, unary,
};
use super::segmentation::{bn, interp, upsample};
use super::utility::{
    arg_max, concat, crop, embed, filter, flatten, mvn, parameter, reduction, reorg, reshape, shuffle_channel, slice,
    split, tile,
};
use super::{Code, Site};
use crate::layers::vision::base_conv::{effective_conv_param, geometry};
use crate::layers::{canonical_axis, count};
use crate::proto::caffe::eltwise_parameter::EltwiseOp;
use crate::proto::caffe::lrn_parameter::NormRegion;
use crate::proto::caffe::pooling_parameter::{PoolMethod, RoundMode};
use crate::proto::caffe::resize_parameter::Interpolation;
use crate::proto::caffe::spp_parameter::PoolMethod as SppPool;
use crate::proto::caffe::Phase;
use crate::{bail, Error, Result};

type Emit = fn(&Site, &mut Code) -> Result<()>;

/// Every layer type `model.py` can express, with its emitter.
pub(super) const LAYERS: &[(&str, Emit)] = &[
    ("Convolution", |s, c| conv(s, c, false)),
    ("Deconvolution", |s, c| conv(s, c, true)),
    ("DepthwiseConvolution", |s, c| conv(s, c, false)),
    ("ConvolutionDepthwise", |s, c| conv(s, c, false)),
    ("InnerProduct", inner_product),
    ("Pooling", pooling),
    ("LRN", lrn),
    ("BatchNorm", batch_norm),
    ("Scale", scale),
    ("Bias", bias),
    ("Eltwise", eltwise),
    ("Softmax", softmax),
    ("Concat", concat),
    ("Slice", slice),
    ("Split", split),
    ("Crop", crop),
    ("Reshape", reshape),
    ("Flatten", flatten),
    ("ReLU", relu),
    ("PReLU", prelu),
    ("Sigmoid", |s, c| unary(s, c, "torch.sigmoid({x})")),
    ("TanH", |s, c| unary(s, c, "torch.tanh({x})")),
    ("AbsVal", |s, c| unary(s, c, "torch.abs({x})")),
    ("BNLL", |s, c| unary(s, c, "F.softplus({x})")),
    ("ELU", elu),
    ("SeLu", selu),
    ("SeLuDropout", selu_dropout),
    ("Exp", exp),
    ("Log", log),
    ("Power", power),
    ("Threshold", threshold),
    ("Clip", clip),
    ("ReLU6", relu6),
    ("Axpy", |s, c| {
        // common/axpy.rs: a (N×C or N×C×1×1) times x, plus y.
        let ndim = s.bottom_shape(1).len();
        let view = format!("{}.reshape({}.shape[:2] + (1,) * {})", s.b(0), s.b(1), ndim - 2);
        c.assign(&s.tops, format!("{view} * {} + {}", s.b(1), s.b(2)));
        Ok(())
    }),
    ("Swish", swish),
    ("Dropout", dropout),
    ("MVN", mvn),
    ("Reduction", reduction),
    ("ArgMax", arg_max),
    ("Embed", embed),
    ("Tile", tile),
    ("Parameter", parameter),
    ("BatchReindex", |s, c| {
        c.assign(&s.tops, format!("{}.index_select(0, {}.long())", s.b(0), s.b(1)));
        Ok(())
    }),
    ("Filter", filter),
    ("SPP", spp),
    ("Im2col", im2col),
    ("DropIn", drop_in),
    ("Resize", resize),
    ("Permute", permute),
    ("Normalize", normalize),
    ("PriorBox", prior_box),
    ("ROIPooling", roi_pooling),
    ("Proposal", proposal),
    ("DetectionOutput", detection_output),
    ("YoloDetectionOutput", yolo_detection_output),
    ("Yolov3DetectionOutput", yolov3_detection_output),
    ("PSROIPooling", psroi_pooling),
    ("ShuffleChannel", shuffle_channel),
    ("Reorg", reorg),
    ("Interp", interp),
    ("BN", bn),
    ("Upsample", upsample),
    ("LSTM", |s, c| recurrent(s, c, true)),
    ("RNN", |s, c| recurrent(s, c, false)),
    ("LSTMUnit", |s, c| {
        c.helper("caffe_lstm_step");
        let cont = format!("{}.unsqueeze(-1).to({}.dtype)", s.b(2), s.b(1));
        c.assign(&s.tops, format!("caffe_lstm_step({}, {}, {cont})", s.b(0), s.b(1)));
        Ok(())
    }),
];

pub(super) fn emitter(layer_type: &str) -> Option<Emit> {
    LAYERS.iter().find(|(t, _)| *t == layer_type).map(|(_, e)| *e)
}

// ------------------------------------------------------------ formatting

/// A Python float for an f32 parameter (its shortest exact spelling).
pub(super) fn f(x: f32) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        f64_py(x as f64)
    }
}

pub(super) fn f64_py(x: f64) -> String {
    if x.is_nan() {
        "math.nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "math.inf" } else { "-math.inf" }.into()
    } else {
        format!("{x:?}")
    }
}

/// A Python tuple of ints: `(3, 3)`, `(5,)`.
pub(super) fn tup(v: &[i64]) -> String {
    match v {
        [one] => format!("({one},)"),
        _ => format!("({})", v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")),
    }
}

pub(super) fn list(v: &[i64]) -> String {
    format!("[{}]", v.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
}

pub(super) fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// `a * b`-style view shape for a blob of `blob` dims applied at `axis` of an `ndim`-D blob.
pub(super) fn view(blob: &[i64], axis: usize, ndim: usize) -> Vec<i64> {
    let mut v = vec![1i64; axis];
    v.extend(blob);
    v.resize(ndim.max(v.len()), 1);
    v
}

/// `Blobs(params=[...], buffers=[...])` for a layer's module.
pub(super) fn blobs_module(c: &mut Code, module: &str, params: &[(&str, Vec<i64>)], buffers: &[(&str, Vec<i64>)]) {
    c.helper("Blobs");
    let one =
        |v: &[(&str, Vec<i64>)]| v.iter().map(|(n, s)| format!("(\"{n}\", {})", tup(s))).collect::<Vec<_>>().join(", ");
    let mut args = Vec::new();
    if !params.is_empty() {
        args.push(format!("params=[{}]", one(params)));
    }
    if !buffers.is_empty() {
        args.push(format!("buffers=[{}]", one(buffers)));
    }
    c.init(format!("{module} = Blobs({})", args.join(", ")));
}

// ------------------------------------------------------------ layers

fn conv(s: &Site, c: &mut Code, transposed: bool) -> Result<()> {
    let shape = s.bottom_shape(0);
    let p = effective_conv_param(&s.l.param, shape.get(1).copied().unwrap_or(0));
    if canonical_axis(p.axis(), shape.len())? != 1 {
        bail!("convolution over an axis other than 1 has no torch.nn equivalent");
    }
    let n = shape.len().saturating_sub(2);
    if !(1..=3).contains(&n) {
        bail!("torch has {n}-D convolution only for 1 to 3 spatial axes");
    }
    let g = geometry(&p, n)?;
    let class = if transposed { "ConvTranspose" } else { "Conv" };
    c.init(format!(
        "{} = nn.{class}{n}d({}, {}, kernel_size={}, stride={}, padding={}, dilation={}, groups={}, bias={})",
        s.module,
        shape[1],
        p.num_output(),
        tup(&g.kernel),
        tup(&g.stride),
        tup(&g.pad),
        tup(&g.dilation),
        p.group(),
        py_bool(p.bias_term())
    ));
    // Several bottoms share the weights, one top each.
    for (b, t) in s.bottoms.iter().zip(&s.tops) {
        c.fwd(format!("{t} = {}({b})", s.module));
    }
    Ok(())
}

fn inner_product(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.inner_product_param.clone().unwrap_or_default();
    let shape = s.bottom_shape(0);
    let axis = canonical_axis(p.axis(), shape.len())?;
    let k = count(shape, axis, shape.len());
    let n = p.num_output() as i64;
    let x = if axis + 1 < shape.len() { format!("{}.flatten({axis})", s.b(0)) } else { s.b(0).to_string() };
    if p.transpose() {
        // Caffe keeps the weight as K x N here: no nn.Linear layout.
        let mut params = vec![("weight", vec![k, n])];
        if p.bias_term() {
            params.push(("bias", vec![n]));
        }
        blobs_module(c, &s.module, &params, &[]);
        let bias = if p.bias_term() { format!(" + {}.bias", s.module) } else { String::new() };
        c.assign(&s.tops, format!("{x} @ {}.weight{bias}", s.module));
    } else {
        c.init(format!("{} = nn.Linear({k}, {n}, bias={})", s.module, py_bool(p.bias_term())));
        c.assign(&s.tops, format!("{}({x})", s.module));
    }
    Ok(())
}

fn pooling(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.pooling_param.unwrap_or_default();
    let pool = match p.pool() {
        PoolMethod::Max => "max",
        PoolMethod::Ave => "ave",
        PoolMethod::Stochastic if s.l.param.phase() == Phase::Test => "stochastic",
        PoolMethod::Stochastic => {
            bail!("STOCHASTIC pooling samples at random in the TRAIN phase; export the TEST phase")
        }
    };
    if s.bottom_shape(0).len() != 4 {
        bail!("Pooling needs a 4-D bottom");
    }
    c.helper("caffe_pool2d");
    let x = s.b(0);
    if p.global_pooling() {
        c.assign(&s.tops, format!("caffe_pool2d({x}, \"{pool}\", tuple({x}.shape[2:]))"));
        return Ok(());
    }
    let pair = |v: Option<u32>, h: Option<u32>, w: Option<u32>, default: u32| match (h, w) {
        (Some(a), Some(b)) => [a as i64, b as i64],
        _ => [v.unwrap_or(default) as i64; 2],
    };
    let k = pair(p.kernel_size, p.kernel_h, p.kernel_w, 0);
    let st = pair(p.stride, p.stride_h, p.stride_w, 1);
    let pad = pair(p.pad, p.pad_h, p.pad_w, 0);
    let ceil = if p.round_mode() == RoundMode::Floor { ", ceil=False" } else { "" };
    if s.tops.len() > 1 {
        if p.pool() != PoolMethod::Max {
            bail!("only MAX pooling has a mask top");
        }
        c.helper("caffe_max_pool2d_mask");
        c.assign(&s.tops, format!("caffe_max_pool2d_mask({x}, {}, {}, {}{ceil})", tup(&k), tup(&st), tup(&pad)));
        return Ok(());
    }
    c.assign(&s.tops, format!("caffe_pool2d({x}, \"{pool}\", {}, {}, {}{ceil})", tup(&k), tup(&st), tup(&pad)));
    Ok(())
}

fn lrn(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.lrn_param.unwrap_or_default();
    c.helper("caffe_lrn");
    let region = match p.norm_region() {
        NormRegion::AcrossChannels => format!("k={}", f(p.k())),
        NormRegion::WithinChannel => "across_channels=False".to_string(),
    };
    c.assign(
        &s.tops,
        format!("caffe_lrn({}, {}, {}, {}, {region})", s.b(0), p.local_size(), f(p.alpha()), f(p.beta())),
    );
    Ok(())
}

/// BatchNorm (common/batch_norm.rs): with global statistics, the running
/// mean and variance, which the weights file holds already divided by Caffe's
/// scale factor; otherwise the batch's own statistics.
fn batch_norm(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.batch_norm_param.unwrap_or_default();
    let shape = s.bottom_shape(0);
    let channels = if shape.len() == 1 { 1 } else { shape.get(1).copied().unwrap_or(1) };
    blobs_module(c, &s.module, &[], &[("running_mean", vec![channels]), ("running_var", vec![channels])]);
    let global = p.use_global_stats.unwrap_or(s.l.param.phase() == Phase::Test);
    let x = if shape.len() == 1 { format!("{}.reshape(-1, 1)", s.b(0)) } else { s.b(0).to_string() };
    let stats = if global {
        format!("{m}.running_mean, {m}.running_var", m = s.module)
    } else {
        "None, None, training=True".to_string()
    };
    let mut y = format!("F.batch_norm({x}, {stats}, eps={})", f(p.eps()));
    if shape.len() == 1 {
        y = format!("{y}.reshape({}.shape)", s.b(0));
    }
    c.assign(&s.tops, y);
    Ok(())
}

/// The axis a Scale/Bias blob of `blob` dims applies at (common/broadcast.rs).
fn blob_axis(axis: i32, ndim: usize, blob: &[i64]) -> Result<usize> {
    if blob.is_empty() {
        Ok(0)
    } else {
        canonical_axis(axis, ndim)
    }
}

fn scale(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.scale_param.clone().unwrap_or_default();
    let ndim = s.bottom_shape(0).len();
    let two = s.bottoms.len() > 1;
    let (factor_shape, factor) = if two {
        (s.bottom_shape(1).to_vec(), s.b(1).to_string())
    } else {
        (s.blob_shape(0), format!("{}.weight", s.module))
    };
    let axis = blob_axis(p.axis(), ndim, &factor_shape)?;
    let mut y = format!("{} * {factor}.reshape{}", s.b(0), tup(&view(&factor_shape, axis, ndim)));
    let bias_index = usize::from(!two);
    let mut params = Vec::new();
    if !two {
        params.push(("weight", factor_shape.clone()));
    }
    if p.bias_term() {
        let bshape = s.blob_shape(bias_index);
        let baxis = blob_axis(p.axis(), ndim, &bshape)?;
        y = format!("{y} + {}.bias.reshape{}", s.module, tup(&view(&bshape, baxis, ndim)));
        params.push(("bias", bshape));
    }
    if !params.is_empty() {
        blobs_module(c, &s.module, &params, &[]);
    }
    c.assign(&s.tops, y);
    Ok(())
}

fn bias(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.bias_param.clone().unwrap_or_default();
    let ndim = s.bottom_shape(0).len();
    let (shape, b) = if s.bottoms.len() > 1 {
        (s.bottom_shape(1).to_vec(), s.b(1).to_string())
    } else {
        blobs_module(c, &s.module, &[("bias", s.blob_shape(0))], &[]);
        (s.blob_shape(0), format!("{}.bias", s.module))
    };
    let axis = blob_axis(p.axis(), ndim, &shape)?;
    c.assign(&s.tops, format!("{} + {b}.reshape{}", s.b(0), tup(&view(&shape, axis, ndim))));
    Ok(())
}

fn eltwise(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.eltwise_param.clone().unwrap_or_default();
    let y = match p.operation() {
        EltwiseOp::Sum => s
            .bottoms
            .iter()
            .enumerate()
            .map(|(i, b)| match p.coeff.get(i) {
                Some(&k) if k != 1.0 => format!("{} * {b}", f(k)),
                _ => b.clone(),
            })
            .collect::<Vec<_>>()
            .join(" + "),
        EltwiseOp::Prod => s.bottoms.join(" * "),
        EltwiseOp::Max => {
            let mut acc = s.b(0).to_string();
            for b in &s.bottoms[1..] {
                acc = format!("torch.maximum({acc}, {b})");
            }
            acc
        }
    };
    c.assign(&s.tops, y);
    Ok(())
}

fn softmax(s: &Site, c: &mut Code) -> Result<()> {
    let axis = s.l.param.softmax_param.as_ref().map(|p| p.axis()).unwrap_or(1);
    let axis = canonical_axis(axis, s.bottom_shape(0).len())?;
    c.assign(&s.tops, format!("torch.softmax({}, dim={axis})", s.b(0)));
    Ok(())
}

fn spp(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.spp_param.unwrap_or_default();
    let pool = match p.pool() {
        SppPool::Max => "max",
        SppPool::Ave => "ave",
        SppPool::Stochastic if s.l.param.phase() == Phase::Test => "stochastic",
        SppPool::Stochastic => bail!("STOCHASTIC pooling samples at random in the TRAIN phase; export the TEST phase"),
    };
    c.helper("caffe_spp");
    c.assign(&s.tops, format!("caffe_spp({}, {}, \"{pool}\")", s.b(0), p.pyramid_height()));
    Ok(())
}

fn im2col(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.convolution_param.clone().unwrap_or_default();
    let shape = s.bottom_shape(0);
    if shape.len() != 4 || canonical_axis(p.axis(), 4)? != 1 {
        bail!("torch's unfold has Caffe's column layout for 2-D inputs (N, C, H, W) only");
    }
    let g = geometry(&p, 2)?;
    let top = s.top_shape(0);
    c.assign(
        &s.tops,
        format!(
            "F.unfold({}, {}, dilation={}, padding={}, stride={}).reshape(-1, {}, {}, {})",
            s.b(0),
            tup(&g.kernel),
            tup(&g.dilation),
            tup(&g.pad),
            tup(&g.stride),
            top[1],
            top[2],
            top[3]
        ),
    );
    Ok(())
}

/// DropIn (dropin/drop_in.rs) at the plan's iteration τ: in the gradual mode
/// the first k = ceil(q·n) units of each item come from the skip path, q =
/// 1 − clamp((τ − start)/length, 0, 1); the regularizing mode's TEST form mixes.
fn drop_in(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.dropin_param.unwrap_or_default();
    let (skip, new) = (s.b(0), s.b(1));
    if p.dropin_length() == 0 {
        if s.l.param.phase() == Phase::Train {
            bail!("a regularizing DropIn picks units at random in the TRAIN phase; export the TEST phase");
        }
        let q = p.dropin_ratio();
        c.assign(&s.tops, format!("{skip} * {} + {new} * {}", f(q), f(1.0 - q)));
        return Ok(());
    }
    let n: i64 = s.bottom_shape(0).iter().skip(1).product();
    let progress = ((s.iteration as f64 - p.dropin_start() as f64) / p.dropin_length() as f64).clamp(0.0, 1.0);
    let k = crate::layers::dropin::drop_in::DropIn::skip_units(1.0 - progress, n);
    c.fwd(format!("# DropIn at iteration {}: {k} of {n} units from the skip path", s.iteration));
    let y = match k {
        0 => new.to_string(),
        k if k == n => skip.to_string(),
        k => {
            c.helper("caffe_dropin");
            format!("caffe_dropin({skip}, {new}, {k})")
        }
    };
    c.assign(&s.tops, y);
    Ok(())
}

fn resize(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.resize_param.unwrap_or_default();
    let t = s.top_shape(0);
    if t.len() != 4 {
        return Err(Error::invalid("Resize needs a 4-D top"));
    }
    let mode = match p.interpolation() {
        Interpolation::Bilinear => "bilinear",
        Interpolation::Nearest => "nearest",
    };
    c.helper("caffe_resize");
    c.assign(&s.tops, format!("caffe_resize({}, {}, {}, {}, \"{mode}\")", s.b(0), t[1], t[2], t[3]));
    Ok(())
}

/// LSTM and RNN (recurrent/base_recurrent.rs): blobs W_x, b_x, [W_static],
/// W_h, then RNN's W_o, b_o, kept under their indices. The state starts at
/// zero (or the exposed h_0/c_0) at every call: a new model.py net is a net
/// on its first forward, and Caffe's carrying of the state between forwards
/// is left to the caller (expose_hidden).
fn recurrent(s: &Site, c: &mut Code, lstm: bool) -> Result<()> {
    let p = s.l.param.recurrent_param.clone().unwrap_or_default();
    let states = if lstm { 2 } else { 1 };
    let hidden_bottoms = if p.expose_hidden() { states } else { 0 };
    let static_input = s.bottoms.len() > 2 + hidden_bottoms;
    let shapes: Vec<String> = (0..s.l.blobs.len()).map(|j| tup(&s.blob_shape(j))).collect();
    c.init(format!(
        "{} = nn.ParameterList([{}])",
        s.module,
        shapes.iter().map(|sh| format!("nn.Parameter(torch.empty({sh}))")).collect::<Vec<_>>().join(", ")
    ));
    c.helper("caffe_recurrent");
    let m = &s.module;
    let mut args =
        vec![py_bool(lstm).to_string(), s.b(0).to_string(), s.b(1).to_string(), format!("{m}[0]"), format!("{m}[1]")];
    let mut next = 2;
    if static_input {
        args.push(format!("{m}[3]"));
        args.push(format!("x_static={}, w_static={m}[2]", s.b(2)));
        next = 4;
    } else {
        args.push(format!("{m}[2]"));
        next += 1;
    }
    if p.expose_hidden() {
        let first = 2 + usize::from(static_input);
        args.push(format!("h0={}", s.b(first)));
        if lstm {
            args.push(format!("c0={}", s.b(first + 1)));
        }
    }
    if !lstm {
        args.push(format!("w_o={m}[{next}], b_o={m}[{}]", next + 1));
    }
    let call = format!("caffe_recurrent({})", args.join(", "));
    let n = s.tops.len();
    let picked = match n {
        1 => format!("{call}[0]"),
        _ => format!("{call}[:{n}]"),
    };
    c.assign(&s.tops, picked);
    Ok(())
}
