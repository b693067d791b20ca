//! Convolution, pooling (with MAX's mask), LRN, crop, im2col, SPP, and the
//! forks' Interp and Upsample.
use super::{attr_f, attr_i, attr_ints, attr_s, io, Graph};
use crate::export::PlanLayer;
use crate::layers::vision::base_conv::{effective_conv_param, geometry, Geometry};
use crate::layers::vision::interp::interp_sizes;
use crate::layers::vision::pooling::pooled_size;
use crate::layers::vision::spp::Spp;
use crate::layers::vision::upsample::{upsample_kind, UpsampleKind};
use crate::proto::caffe::lrn_parameter::NormRegion;
use crate::proto::caffe::pooling_parameter::{PoolMethod, RoundMode};
use crate::proto::caffe::{Phase, PoolingParameter};
use crate::proto::onnx::tensor_proto::DataType;
use crate::{bail, Result};

fn conv_geometry(l: &PlanLayer, shape: &[i64]) -> Result<(crate::proto::caffe::ConvolutionParameter, Geometry)> {
    let p = effective_conv_param(&l.param, shape.get(1).copied().unwrap_or(0));
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

/// A pooling's window and the end padding that makes ONNX's floor rounding
/// give Caffe's output size.
fn pool_geometry(shape: &[i64], p: &PoolingParameter) -> Result<(Window, [i64; 2])> {
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
        end_pad[i] = win.p[i].max((out - 1) * win.s[i] + win.k[i] - input - win.p[i]);
    }
    Ok((win, end_pad))
}

/// Pools `x` (N, C, H, W) as Caffe does, returning the value. Caffe's output
/// size (ceil, with the last window dropped when it starts in the padding)
/// becomes explicit end padding with `ceil_mode` 0, which every opset's
/// shape inference computes the same way as the runtime. AVE windows that
/// overhang the padded input are divided by their part inside it: explicit
/// zero padding, then `count_include_pad` 0 over the overhang.
fn pool(g: &mut Graph, x: &str, shape: &[i64], p: &PoolingParameter, phase: Phase) -> Result<String> {
    let (win, end_pad) = pool_geometry(shape, p)?;
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
    let Some(mask_top) = l.tops.get(1) else {
        let y = pool(g, &x, shape, &p, l.param.phase())?;
        g.bind(t, y);
        return Ok(());
    };
    // MAX's mask: MaxPool's indices count over the whole N·C·H·W tensor
    // (padding not counted); Caffe's count within the H·W plane.
    if p.pool() != PoolMethod::Max {
        bail!("only MAX pooling has a mask top");
    }
    let (win, end_pad) = pool_geometry(shape, &p)?;
    let pads = [win.p[0], win.p[1], end_pad[0], end_pad[1]];
    let attrs = vec![attr_ints("kernel_shape", &win.k), attr_ints("strides", &win.s), attr_ints("pads", &pads)];
    let outs = g.node_n("MaxPool", &[&x], 2, attrs);
    let (y, indices) = (outs[0].clone(), &outs[1]);
    let plane = g.const_i64("plane", &[shape[2] * shape[3]]);
    let within = g.node("Mod", &[indices, &plane], vec![]);
    let mask = g.node("Cast", &[&within], vec![attr_i("to", DataType::Float as i64)]);
    g.bind(t, y);
    g.bind(mask_top, mask);
    Ok(())
}

/// Interp (DeepLab v2): the crop as a Slice, then a linear Resize with the
/// corners aligned.
pub fn interp(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.interp_param.unwrap_or_default();
    let (eff, out) = interp_sizes(&p, shape, l.bottom_shapes.get(1).map(|s| s.as_slice()))?;
    let mut x = g.value(b)?;
    if [eff[0], eff[1]] != [shape[2], shape[3]] {
        let start = -p.pad_beg() as i64;
        let starts = g.const_i64("starts", &[start, start]);
        let ends = g.const_i64("ends", &[start + eff[0], start + eff[1]]);
        let axes = g.const_i64("axes", &[2, 3]);
        x = g.node("Slice", &[&x, &starts, &ends, &axes], vec![]);
    }
    let sizes = batch_and_channels_then(g, &x, &[out[0], out[1]]);
    let attrs = vec![attr_s("mode", "linear"), attr_s("coordinate_transformation_mode", "align_corners")];
    let y = g.node("Resize", &[&x, "", "", &sizes], attrs);
    g.bind(t, y);
    Ok(())
}

/// The shape (N, C, rest...) of `x`'s batch and channels followed by `rest`.
fn batch_and_channels_then(g: &mut Graph, x: &str, rest: &[i64]) -> String {
    let shape = g.node("Shape", &[x], vec![]);
    let (start, end, axes) = (g.const_i64("start", &[0]), g.const_i64("end", &[2]), g.const_i64("axes", &[0]));
    let nc = g.node("Slice", &[&shape, &start, &end, &axes], vec![]);
    let rest = g.const_i64("rest", rest);
    g.node("Concat", &[&nc, &rest], vec![attr_i("axis", 0)])
}

/// Upsample: the YOLOv3 forks' nearest neighbour as a Resize by whole
/// scales (floor of the asymmetric source index is the repeat); SegNet's
/// unpooling as ScatterElements of the values at their mask indices into a
/// zero plane.
pub fn upsample(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.upsample_param.unwrap_or_default();
    let x = g.value(b)?;
    let y = match upsample_kind(&p, &l.bottom_shapes)? {
        UpsampleKind::Nearest([sh, sw]) => {
            let scales = g.const_f32("scales", &[4], &[1.0, 1.0, sh as f32, sw as f32]);
            let attrs = vec![
                attr_s("mode", "nearest"),
                attr_s("coordinate_transformation_mode", "asymmetric"),
                attr_s("nearest_mode", "floor"),
            ];
            g.node("Resize", &[&x, "", &scales], attrs)
        }
        UpsampleKind::Unpool([oh, ow]) => {
            let [h, w] = [shape[2], shape[3]];
            let Some(mask) = l.bottoms.get(1) else { bail!("needs the mask bottom") };
            let mask = g.value(mask)?;
            let flat_in = g.const_i64("flat_in", &[0, 0, h * w]);
            let values = g.node("Reshape", &[&x, &flat_in], vec![]);
            let index = g.node("Reshape", &[&mask, &flat_in], vec![]);
            let index = g.node("Cast", &[&index], vec![attr_i("to", DataType::Int64 as i64)]);
            let zero = g.scalar("zero", 0.0);
            let plane = batch_and_channels_then(g, &x, &[oh * ow]);
            let zeros = g.node("Expand", &[&zero, &plane], vec![]);
            let scattered = g.node("ScatterElements", &[&zeros, &index, &values], vec![attr_i("axis", 2)]);
            let out = g.const_i64("out", &[0, 0, oh, ow]);
            g.node("Reshape", &[&scattered, &out], vec![])
        }
    };
    g.bind(t, y);
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
