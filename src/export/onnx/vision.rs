//! Convolution, pooling, LRN, crop, im2col and SPP.
use super::{attr_f, attr_i, attr_ints, io, Graph};
use crate::export::PlanLayer;
use crate::layers::vision::base_conv::{geometry, Geometry};
use crate::layers::vision::pooling::pooled_size;
use crate::layers::vision::spp::Spp;
use crate::proto::caffe::lrn_parameter::NormRegion;
use crate::proto::caffe::pooling_parameter::{PoolMethod, RoundMode};
use crate::proto::caffe::{Phase, PoolingParameter};
use crate::{bail, Result};

fn conv_geometry(l: &PlanLayer, shape: &[i64]) -> Result<(crate::proto::caffe::ConvolutionParameter, Geometry)> {
    let p = l.param.convolution_param.clone().unwrap_or_default();
    if p.axis() != 1 {
        bail!("only axis 1 convolutions export (got axis {})", p.axis());
    }
    let g = geometry(&p, shape.len().saturating_sub(2))?;
    Ok((p, g))
}

fn conv_like(g: &mut Graph, l: &PlanLayer, op: &str) -> Result<()> {
    let (_, _, shape) = io(l)?;
    let (p, geom) = conv_geometry(l, shape)?;
    let Some(w) = l.blobs.first() else { bail!("needs its weight blob") };
    let w = g.weight("weight", w, &w.size())?;
    let mut inputs = vec![w];
    if p.bias_term() {
        let Some(b) = l.blobs.get(1) else { bail!("bias_term is set but the layer has no bias blob") };
        inputs.push(g.weight("bias", b, &[b.numel() as i64])?);
    }
    let pads: Vec<i64> = geom.pad.iter().chain(&geom.pad).copied().collect();
    let attrs = vec![
        attr_ints("kernel_shape", &geom.kernel),
        attr_ints("strides", &geom.stride),
        attr_ints("pads", &pads),
        attr_ints("dilations", &geom.dilation),
        attr_i("group", p.group() as i64),
    ];
    // Several bottoms share the weights, each giving its own top.
    for (b, t) in l.bottoms.iter().zip(&l.tops) {
        let x = g.value(b)?;
        let mut ins = vec![x.as_str()];
        ins.extend(inputs.iter().map(|s| s.as_str()));
        let y = g.node(op, &ins, attrs.clone());
        g.bind(t, y);
    }
    Ok(())
}

pub fn convolution(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    conv_like(g, l, "Conv")
}

/// Caffe's deconvolution weights are laid out as ONNX's ConvTranspose wants
/// them (C_in, C_out/group, k...), and its output size is ConvTranspose's
/// with no output padding.
pub fn deconvolution(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    conv_like(g, l, "ConvTranspose")
}

/// Im2col as a grouped convolution with one-hot kernels: output channel
/// c·K + k picks tap k of input channel c, Caffe's im2col order.
pub fn im2col(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let (_, geom) = conv_geometry(l, shape)?;
    let channels = shape[1];
    let taps: i64 = geom.kernel.iter().product();
    let mut values = vec![0f32; (channels * taps * taps) as usize];
    for c in 0..channels {
        for k in 0..taps {
            values[((c * taps + k) * taps + k) as usize] = 1.0;
        }
    }
    let mut wshape = vec![channels * taps, 1];
    wshape.extend(&geom.kernel);
    let w = g.const_f32("taps", &wshape, &values);
    let x = g.value(b)?;
    let pads: Vec<i64> = geom.pad.iter().chain(&geom.pad).copied().collect();
    let y = g.node(
        "Conv",
        &[&x, &w],
        vec![
            attr_ints("kernel_shape", &geom.kernel),
            attr_ints("strides", &geom.stride),
            attr_ints("pads", &pads),
            attr_ints("dilations", &geom.dilation),
            attr_i("group", channels),
        ],
    );
    g.bind(t, y);
    Ok(())
}

/// A pooling window along H and W.
struct Window {
    k: [i64; 2],
    s: [i64; 2],
    p: [i64; 2],
}

fn window(p: &PoolingParameter, h: i64, w: i64) -> Window {
    let pair = |v: Option<u32>, hv: Option<u32>, wv: Option<u32>, default: i64| -> [i64; 2] {
        match (hv, wv) {
            (Some(a), Some(b)) => [a as i64, b as i64],
            _ => {
                let x = v.map_or(default, |x| x as i64);
                [x, x]
            }
        }
    };
    if p.global_pooling() {
        return Window { k: [h, w], s: [1, 1], p: [0, 0] };
    }
    Window {
        k: pair(p.kernel_size, p.kernel_h, p.kernel_w, 0),
        s: pair(p.stride, p.stride_h, p.stride_w, 1),
        p: pair(p.pad, p.pad_h, p.pad_w, 0),
    }
}

/// Pools `x` (N, C, H, W) as Caffe does, returning the value. Caffe's output
/// size (ceil, with the last window dropped when it starts in the padding)
/// becomes explicit end padding with `ceil_mode` 0, which every opset's
/// shape inference computes the same way as the runtime. AVE windows that
/// overhang the padded input are divided by their part inside it: explicit
/// zero padding, then `count_include_pad` 0 over the overhang.
fn pool(g: &mut Graph, x: &str, shape: &[i64], p: &PoolingParameter, phase: Phase) -> Result<String> {
    if shape.len() != 4 {
        bail!("Pooling needs a 4-D bottom, got {shape:?}");
    }
    let (h, w) = (shape[2], shape[3]);
    let win = window(p, h, w);
    let ceil = p.round_mode() == RoundMode::Ceil;
    let mut end_pad = [0i64; 2];
    for i in 0..2 {
        let input = [h, w][i];
        let out = pooled_size(input, win.k[i], win.s[i], win.p[i], ceil);
        if (out - 1) * win.s[i] >= input + win.p[i] {
            bail!(
                "its last {} window starts past the input (Caffe pools an empty window there; ONNX has no equivalent)",
                ["row", "column"][i]
            );
        }
        // The end padding that makes floor rounding give Caffe's size.
        end_pad[i] = win.p[i].max((out - 1) * win.s[i] + win.k[i] - input - win.p[i]);
    }
    let global = p.global_pooling();
    let pads = [win.p[0], win.p[1], end_pad[0], end_pad[1]];
    let attrs = |pads: [i64; 4], extra: Vec<crate::proto::onnx::AttributeProto>| {
        let mut a = vec![attr_ints("kernel_shape", &win.k), attr_ints("strides", &win.s), attr_ints("pads", &pads)];
        a.extend(extra);
        a
    };
    match p.pool() {
        PoolMethod::Max if global => Ok(g.node("GlobalMaxPool", &[x], vec![])),
        PoolMethod::Max => Ok(g.node("MaxPool", &[x], attrs(pads, vec![]))),
        PoolMethod::Ave if global => Ok(g.node("GlobalAveragePool", &[x], vec![])),
        PoolMethod::Ave => Ok(average(g, x, &win, end_pad, &attrs)),
        PoolMethod::Stochastic => {
            if phase == Phase::Train {
                bail!("STOCHASTIC pooling in the TRAIN phase samples at random; export the TEST phase");
            }
            // Caffe's TEST rule: Σx² / Σx over each window (padding is refused by Caffe).
            let sq = g.node("Mul", &[x, x], vec![]);
            let num = average(g, &sq, &win, end_pad, &attrs);
            let den = average(g, x, &win, end_pad, &attrs);
            let tiny = g.scalar("flt_min", f32::MIN_POSITIVE);
            let den = g.node("Add", &[&den, &tiny], vec![]);
            Ok(g.node("Div", &[&num, &den], vec![]))
        }
    }
}

fn average(
    g: &mut Graph,
    x: &str,
    win: &Window,
    end_pad: [i64; 2],
    attrs: &dyn Fn([i64; 4], Vec<crate::proto::onnx::AttributeProto>) -> Vec<crate::proto::onnx::AttributeProto>,
) -> String {
    let overhang = [end_pad[0] - win.p[0], end_pad[1] - win.p[1]];
    if overhang == [0, 0] {
        let pads = [win.p[0], win.p[1], win.p[0], win.p[1]];
        return g.node("AveragePool", &[x], attrs(pads, vec![attr_i("count_include_pad", 1)]));
    }
    let padded = if win.p != [0, 0] {
        let pads = g.const_i64("pads", &[0, 0, win.p[0], win.p[1], 0, 0, win.p[0], win.p[1]]);
        g.node("Pad", &[x, &pads], vec![])
    } else {
        x.to_string()
    };
    g.node("AveragePool", &[&padded], attrs([0, 0, overhang[0], overhang[1]], vec![attr_i("count_include_pad", 0)]))
}

pub fn pooling(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.pooling_param.unwrap_or_default();
    let x = g.value(b)?;
    let y = pool(g, &x, shape, &p, l.param.phase())?;
    g.bind(t, y);
    // Caffe's optional second top (the MAX argmax mask) has no ONNX counterpart.
    if l.tops.len() > 1 {
        bail!("the max-pooling mask top is not exported");
    }
    Ok(())
}

/// SPP: one pooling per pyramid level, each flattened, concatenated.
pub fn spp(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    if shape.len() != 4 {
        bail!("SPP needs a 4-D bottom, got {shape:?}");
    }
    let p = l.param.spp_param.unwrap_or_default();
    let x = g.value(b)?;
    let mut levels = Vec::new();
    for level in 0..p.pyramid_height() {
        let lp = Spp::level_param(level, shape[2], shape[3], p.pool());
        let y = pool(g, &x, shape, &lp, l.param.phase())?;
        if p.pyramid_height() == 1 {
            g.bind(t, y);
            return Ok(());
        }
        levels.push(g.node("Flatten", &[&y], vec![attr_i("axis", 1)]));
    }
    let refs: Vec<&str> = levels.iter().map(|s| s.as_str()).collect();
    let y = g.node("Concat", &refs, vec![attr_i("axis", 1)]);
    g.bind(t, y);
    Ok(())
}

/// LRN across channels is ONNX's LRN; within a channel it is Caffe's
/// decomposition: (1 + α·avgpool(x²))^−β · x.
pub fn lrn(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    if shape.len() != 4 {
        bail!("LRN needs a 4-D bottom, got {shape:?}");
    }
    let p = l.param.lrn_param.unwrap_or_default();
    let n = p.local_size() as i64;
    if n % 2 != 1 {
        bail!("LRN only supports odd values for local_size, got {n}");
    }
    let x = g.value(b)?;
    let y = match p.norm_region() {
        NormRegion::AcrossChannels => g.node(
            "LRN",
            &[&x],
            vec![attr_i("size", n), attr_f("alpha", p.alpha()), attr_f("beta", p.beta()), attr_f("bias", p.k())],
        ),
        NormRegion::WithinChannel => {
            let pad = (n - 1) / 2;
            let sq = g.node("Mul", &[&x, &x], vec![]);
            let avg = g.node(
                "AveragePool",
                &[&sq],
                vec![
                    attr_ints("kernel_shape", &[n, n]),
                    attr_ints("strides", &[1, 1]),
                    attr_ints("pads", &[pad, pad, pad, pad]),
                    attr_i("count_include_pad", 1),
                ],
            );
            let scale = g.affine(&avg, p.alpha(), 1.0);
            let e = g.scalar("minus_beta", -p.beta());
            let factor = g.node("Pow", &[&scale, &e], vec![]);
            g.node("Mul", &[&x, &factor], vec![])
        }
    };
    g.bind(t, y);
    Ok(())
}

/// Crop: a Slice of bottom 0 to bottom 1's size from `axis` on, at the offsets.
pub fn crop(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let Some(top) = l.top_shapes.first() else { bail!("needs a top") };
    let p = l.param.crop_param.clone().unwrap_or_default();
    let n = shape.len();
    let start = crate::layers::canonical_axis(p.axis(), n)?;
    let (mut starts, mut ends, mut axes) = (vec![], vec![], vec![]);
    for i in start..n {
        let off = match p.offset.len() {
            0 => 0,
            1 => p.offset[0] as i64,
            _ => p.offset.get(i - start).copied().unwrap_or(0) as i64,
        };
        if top[i] != shape[i] {
            starts.push(off);
            ends.push(off + top[i]);
            axes.push(i as i64);
        }
    }
    let x = g.value(b)?;
    if axes.is_empty() {
        let y = g.identity(&x);
        g.bind(t, y);
        return Ok(());
    }
    if axes.contains(&0) {
        g.static_batch = true;
    }
    let s = g.const_i64("starts", &starts);
    let e = g.const_i64("ends", &ends);
    let a = g.const_i64("axes", &axes);
    let y = g.node("Slice", &[&x, &s, &e, &a], vec![]);
    g.bind(t, y);
    Ok(())
}
