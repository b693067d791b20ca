//! Common layers: inner product, normalisation, arithmetic, shape and
//! selection layers (BatchNorm and BN in `normalization.rs`).

use super::{attr_i, io, Graph};
use crate::export::PlanLayer;
use crate::layers::canonical_axis;
use crate::proto::caffe::eltwise_parameter::EltwiseOp;
use crate::proto::caffe::reduction_parameter::ReductionOp;
use crate::{bail, Result};

pub(super) fn top_shape(l: &PlanLayer) -> Result<&[i64]> {
    l.top_shapes.first().map(|s| s.as_slice()).ok_or_else(|| crate::Error::invalid("needs a top"))
}

/// SENet's Axpy (common/axpy.rs): a reshaped to N×C×1…, times x, plus y.
pub fn axpy(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (Some(t), Some(x_shape)) = (l.tops.first(), l.bottom_shapes.get(1)) else { bail!("needs 3 bottoms and a top") };
    let [a, x, y] = [0, 1, 2].map(|i| g.value(&l.bottoms[i]));
    let (a, x, y) = (a?, x?, y?);
    let mut shape = vec![0, 0];
    shape.extend(std::iter::repeat_n(1, x_shape.len().saturating_sub(2)));
    let shape = g.const_i64("shape", &shape);
    let a = g.node("Reshape", &[&a, &shape], vec![]);
    let ax = g.node("Mul", &[&a, &x], vec![]);
    let out = g.node("Add", &[&ax, &y], vec![]);
    g.bind(t, out);
    Ok(())
}

/// A blob applied from `axis` on (Scale, Bias) in a shape ONNX broadcasts:
/// its own dims, then 1s to the end of the bottom.
fn broadcast_shape(blob: &[i64], axis: usize, rank: usize) -> Vec<i64> {
    let mut s = blob.to_vec();
    s.extend(std::iter::repeat_n(1, rank.saturating_sub(axis + blob.len())));
    if s.is_empty() {
        s.push(1);
    }
    s
}

/// A second bottom (Scale/Bias) reshaped to broadcast: trailing unit axes.
fn broadcast_bottom(g: &mut Graph, l: &PlanLayer, axis: usize, rank: usize) -> Result<String> {
    let v = g.value(&l.bottoms[1])?;
    let shape = &l.bottom_shapes[1];
    let trailing = rank.saturating_sub(axis + shape.len());
    if trailing == 0 {
        return Ok(v);
    }
    let axes: Vec<i64> = (shape.len()..shape.len() + trailing).map(|a| a as i64).collect();
    let a = g.const_i64("axes", &axes);
    Ok(g.node("Unsqueeze", &[&v, &a], vec![]))
}

pub fn scale(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.scale_param.clone().unwrap_or_default();
    let x = g.value(b)?;
    let (factor, bias_blob) = if l.bottoms.len() == 2 {
        let blob_shape = &l.bottom_shapes[1];
        let axis = if blob_shape.is_empty() { 0 } else { canonical_axis(p.axis(), shape.len())? };
        (broadcast_bottom(g, l, axis, shape.len())?, l.blobs.first())
    } else {
        let Some(w) = l.blobs.first() else { bail!("needs its scale blob") };
        let axis = if w.dim() == 0 { 0 } else { canonical_axis(p.axis(), shape.len())? };
        (g.weight("scale", w, &broadcast_shape(&w.size(), axis, shape.len()))?, l.blobs.get(1))
    };
    let mut y = g.node("Mul", &[&x, &factor], vec![]);
    if p.bias_term() {
        let Some(bias) = bias_blob else { bail!("bias_term is set but the layer has no bias blob") };
        let axis = if bias.dim() == 0 { 0 } else { canonical_axis(p.axis(), shape.len())? };
        let bb = g.weight("bias", bias, &broadcast_shape(&bias.size(), axis, shape.len()))?;
        y = g.node("Add", &[&y, &bb], vec![]);
    }
    g.bind(t, y);
    Ok(())
}

pub fn bias(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.bias_param.clone().unwrap_or_default();
    let x = g.value(b)?;
    let bias = if l.bottoms.len() == 2 {
        let axis = if l.bottom_shapes[1].is_empty() { 0 } else { canonical_axis(p.axis(), shape.len())? };
        broadcast_bottom(g, l, axis, shape.len())?
    } else {
        let Some(w) = l.blobs.first() else { bail!("needs its bias blob") };
        let axis = if w.dim() == 0 { 0 } else { canonical_axis(p.axis(), shape.len())? };
        g.weight("bias", w, &broadcast_shape(&w.size(), axis, shape.len()))?
    };
    let y = g.node("Add", &[&x, &bias], vec![]);
    g.bind(t, y);
    Ok(())
}

/// InnerProduct: the bottom flattened from `axis`, times Wᵀ (W itself with
/// `transpose`), plus the bias; reshaped back when axis > 1.
pub fn inner_product(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.inner_product_param.clone().unwrap_or_default();
    let axis = canonical_axis(p.axis(), shape.len())?;
    let Some(w) = l.blobs.first() else { bail!("needs its weight blob") };
    let x = g.value(b)?;
    let flat =
        if shape.len() == 2 && axis == 1 { x } else { g.node("Flatten", &[&x], vec![attr_i("axis", axis as i64)]) };
    let wv = g.weight("weight", w, &w.size())?;
    let mut inputs = vec![flat, wv];
    if p.bias_term() {
        let Some(bias) = l.blobs.get(1) else { bail!("bias_term is set but the layer has no bias blob") };
        inputs.push(g.weight("bias", bias, &[bias.numel() as i64])?);
    }
    let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
    let mut y = g.node("Gemm", &refs, vec![attr_i("transB", if p.transpose() { 0 } else { 1 })]);
    let top = top_shape(l)?;
    if top.len() != 2 {
        let flat_shape = [shape[..axis].iter().product::<i64>(), *top.last().unwrap_or(&1)];
        y = g.reshape(&y, &flat_shape, top);
    }
    g.bind(t, y);
    Ok(())
}

pub fn softmax(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let axis = canonical_axis(l.param.softmax_param.as_ref().map_or(1, |p| p.axis()), shape.len())?;
    let x = g.value(b)?;
    let y = g.node("Softmax", &[&x], vec![attr_i("axis", axis as i64)]);
    g.bind(t, y);
    Ok(())
}

pub fn concat(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (_, t, shape) = io(l)?;
    let p = l.param.concat_param.unwrap_or_default();
    let axis = match p.concat_dim {
        Some(d) => d as usize,
        None => canonical_axis(p.axis(), shape.len())?,
    };
    if l.bottoms.len() == 1 {
        let x = g.value(&l.bottoms[0])?;
        let y = g.identity(&x);
        g.bind(t, y);
        return Ok(());
    }
    let xs = l.bottoms.iter().map(|b| g.value(b)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&str> = xs.iter().map(|s| s.as_str()).collect();
    let y = g.node("Concat", &refs, vec![attr_i("axis", axis as i64)]);
    g.bind(t, y);
    Ok(())
}

/// Slice: ONNX Split with each top's size along the axis (from the tops' shapes).
pub fn slice(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, _, shape) = io(l)?;
    let p = l.param.slice_param.clone().unwrap_or_default();
    let axis = match p.slice_dim {
        Some(d) => d as usize,
        None => canonical_axis(p.axis(), shape.len())?,
    };
    let sizes: Vec<i64> = l.top_shapes.iter().map(|s| s.get(axis).copied().unwrap_or(0)).collect();
    if axis == 0 {
        g.static_batch = true;
    }
    let x = g.value(b)?;
    if l.tops.len() == 1 {
        let y = g.identity(&x);
        g.bind(&l.tops[0], y);
        return Ok(());
    }
    let split = g.const_i64("split", &sizes);
    let outs = g.node_n("Split", &[&x, &split], l.tops.len(), vec![attr_i("axis", axis as i64)]);
    for (t, v) in l.tops.iter().zip(outs) {
        g.bind(t, v);
    }
    Ok(())
}

/// Split (Caffe's fan-out): every top is the bottom's value.
pub fn split(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let Some(b) = l.bottoms.first() else { bail!("needs a bottom") };
    let x = g.value(b)?;
    for t in &l.tops {
        g.bind(t, x.clone());
    }
    Ok(())
}

pub fn flatten(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let top = top_shape(l)?.to_vec();
    let x = g.value(b)?;
    let y = g.reshape(&x, shape, &top);
    g.bind(t, y);
    Ok(())
}

/// Reshape to the shape Caffe computed; a batch axis Caffe copies (dim 0 of
/// 0, or an axis after the batch) stays symbolic.
pub fn reshape(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.reshape_param.clone().unwrap_or_default();
    let top = top_shape(l)?.to_vec();
    let axis = if p.axis() < 0 { shape.len() as i64 + 1 + p.axis() as i64 } else { p.axis() as i64 };
    let dims = p.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
    if axis == 0 && dims.first().is_some_and(|&d| d != 0) {
        g.static_batch = true;
    }
    let x = g.value(b)?;
    let y = g.reshape(&x, shape, &top);
    g.bind(t, y);
    Ok(())
}

pub fn tile(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.tile_param.unwrap_or_default();
    let axis = canonical_axis(p.axis(), shape.len())?;
    let mut repeats = vec![1i64; shape.len()];
    repeats[axis] = p.tiles() as i64;
    if axis == 0 {
        g.static_batch = true;
    }
    let x = g.value(b)?;
    let r = g.const_i64("repeats", &repeats);
    let y = g.node("Tile", &[&x, &r], vec![]);
    g.bind(t, y);
    Ok(())
}

/// Eltwise: SUM with coefficients, PROD, MAX.
pub fn eltwise(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (_, t, _) = io(l)?;
    let p = l.param.eltwise_param.clone().unwrap_or_default();
    let xs = l.bottoms.iter().map(|b| g.value(b)).collect::<Result<Vec<_>>>()?;
    let mut y = xs[0].clone();
    match p.operation() {
        EltwiseOp::Sum => {
            if !p.coeff.is_empty() && p.coeff.len() != xs.len() {
                bail!("Eltwise SUM needs one coeff per bottom, got {} for {} bottoms", p.coeff.len(), xs.len());
            }
            let coeff = |i: usize| p.coeff.get(i).copied().unwrap_or(1.0);
            y = g.affine(&xs[0], coeff(0), 0.0);
            for (i, x) in xs.iter().enumerate().skip(1) {
                let term = g.affine(x, coeff(i), 0.0);
                y = g.node("Add", &[&y, &term], vec![]);
            }
        }
        EltwiseOp::Prod => {
            for x in &xs[1..] {
                y = g.node("Mul", &[&y, x], vec![]);
            }
        }
        EltwiseOp::Max => {
            let refs: Vec<&str> = xs.iter().map(|s| s.as_str()).collect();
            y = g.node("Max", &refs, vec![]);
        }
    }
    if y == xs[0] {
        y = g.identity(&y);
    }
    g.bind(t, y);
    Ok(())
}

/// Embed: rows of W picked by the bottom's values (truncated to integers, as Caffe), plus the bias.
pub fn embed(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, _) = io(l)?;
    let p = l.param.embed_param.clone().unwrap_or_default();
    let Some(w) = l.blobs.first() else { bail!("needs its weight blob") };
    let x = g.value(b)?;
    let idx = g.node("Cast", &[&x], vec![attr_i("to", 7)]);
    let wv = g.weight("weight", w, &w.size())?;
    let mut y = g.node("Gather", &[&wv, &idx], vec![attr_i("axis", 0)]);
    if p.bias_term() {
        let Some(bias) = l.blobs.get(1) else { bail!("bias_term is set but the layer has no bias blob") };
        let bv = g.weight("bias", bias, &[bias.numel() as i64])?;
        y = g.node("Add", &[&y, &bv], vec![]);
    }
    g.bind(t, y);
    Ok(())
}

/// Parameter: its blob as the top.
pub fn parameter(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (Some(t), Some(w)) = (l.tops.first(), l.blobs.first()) else { bail!("needs a top and its blob") };
    let v = g.weight("value", w, &w.size())?;
    let y = g.identity(&v);
    g.bind(t, y);
    Ok(())
}

pub fn batch_reindex(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, _) = io(l)?;
    let Some(perm) = l.bottoms.get(1) else { bail!("needs the index bottom") };
    let x = g.value(b)?;
    let p = g.value(perm)?;
    let idx = g.node("Cast", &[&p], vec![attr_i("to", 7)]);
    let y = g.node("Gather", &[&x, &idx], vec![attr_i("axis", 0)]);
    g.bind(t, y);
    Ok(())
}

/// Reduction over the axes from `axis` to the end, times `coeff`.
pub fn reduction(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.reduction_param.unwrap_or_default();
    // The axis indexes the shape, so at least one axis is reduced.
    let axis = canonical_axis(p.axis(), shape.len())?;
    let axes: Vec<i64> = (axis as i64..shape.len() as i64).collect();
    let x = g.value(b)?;
    let op = match p.operation() {
        ReductionOp::Sum => "ReduceSum",
        ReductionOp::Asum => "ReduceL1",
        ReductionOp::Sumsq => "ReduceSumSquare",
        ReductionOp::Mean => "ReduceMean",
    };
    let y = g.reduce(op, &x, &axes, false);
    if axis == 0 {
        g.static_batch = true;
    }
    let y = if p.coeff() != 1.0 { g.affine(&y, p.coeff(), 0.0) } else { y };
    let y = if y == x { g.identity(&x) } else { y };
    g.bind(t, y);
    Ok(())
}

/// MVN: per item (across channels) or per channel, subtract the mean and,
/// with normalize_variance, divide by (std + eps) as Caffe does.
pub fn mvn(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.mvn_param.unwrap_or_default();
    if shape.len() < 2 {
        bail!("MVN needs a bottom with a channel axis, got {shape:?}");
    }
    let x = g.value(b)?;
    let rows: Vec<i64> = if p.across_channels() { vec![0, -1] } else { vec![0, shape[1], -1] };
    let rs = g.const_i64("rows", &rows);
    let flat = g.node("Reshape", &[&x, &rs], vec![]);
    let last = rows.len() as i64 - 1;
    let mean = g.reduce("ReduceMean", &flat, &[last], true);
    let mut y = g.node("Sub", &[&flat, &mean], vec![]);
    if p.normalize_variance() {
        let sq = g.node("Mul", &[&y, &y], vec![]);
        let var = g.reduce("ReduceMean", &sq, &[last], true);
        let sd = g.node("Sqrt", &[&var], vec![]);
        let den = g.affine(&sd, 1.0, p.eps());
        y = g.node("Div", &[&y, &den], vec![]);
    }
    let back: Vec<i64> = std::iter::once(0).chain(shape[1..].iter().copied()).collect();
    let bs = g.const_i64("shape", &back);
    let y = g.node("Reshape", &[&y, &bs], vec![]);
    g.bind(t, y);
    Ok(())
}

/// ArgMax: TopK along `axis`, or over each item flattened (then Caffe's
/// (N, 1 or 2, top_k) layout, indices first when out_max_val).
pub fn arg_max(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.argmax_param.unwrap_or_default();
    let top = top_shape(l)?.to_vec();
    let k = g.const_i64("k", &[p.top_k() as i64]);
    let x = g.value(b)?;
    let y = match p.axis {
        Some(a) => {
            let axis = canonical_axis(a, shape.len())? as i64;
            let outs = g.node_n("TopK", &[&x, &k], 2, vec![attr_i("axis", axis)]);
            if p.out_max_val() {
                outs[0].clone()
            } else {
                g.node("Cast", &[&outs[1]], vec![attr_i("to", 1)])
            }
        }
        None => {
            let flat = g.node("Flatten", &[&x], vec![attr_i("axis", 1)]);
            let outs = g.node_n("TopK", &[&flat, &k], 2, vec![attr_i("axis", 1)]);
            let idx = g.node("Cast", &[&outs[1]], vec![attr_i("to", 1)]);
            let joined =
                if p.out_max_val() { g.node("Concat", &[&idx, &outs[0]], vec![attr_i("axis", 1)]) } else { idx };
            let flat_shape = [shape[0], top[1..].iter().product()];
            g.reshape(&joined, &flat_shape, &top)
        }
    };
    g.bind(t, y);
    Ok(())
}

/// Filter: the items (axis 0) whose selector (the last bottom) is non-zero,
/// with ONNX's Compress. The batch of the tops depends on the data, which
/// ONNX shape inference leaves symbolic.
pub fn filter(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let Some(sel) = l.bottoms.last() else { bail!("needs a selector bottom") };
    let s = g.value(sel)?;
    let flat = g.const_i64("shape", &[-1]);
    let s = g.node("Reshape", &[&s, &flat], vec![]);
    let zero = g.scalar("zero", 0.0);
    let is_zero = g.node("Equal", &[&s, &zero], vec![]);
    let keep = g.node("Not", &[&is_zero], vec![]);
    for (b, t) in l.bottoms.iter().zip(&l.tops) {
        let x = g.value(b)?;
        let y = g.node("Compress", &[&x, &keep], vec![attr_i("axis", 0)]);
        g.bind(t, y);
    }
    Ok(())
}

/// ShuffleChannel: (N, g, C/g, ...) transposed to (N, C/g, g, ...).
pub fn shuffle_channel(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let group = l.param.shuffle_channel_param.unwrap_or_default().group() as i64;
    let per_group = crate::layers::common::shuffle_channel::channels_per_group(shape, group)?;
    let mut grouped = vec![0, group, per_group];
    grouped.extend_from_slice(&shape[2..]);
    let mut perm: Vec<i64> = (0..grouped.len() as i64).collect();
    perm.swap(1, 2);
    let back: Vec<i64> = std::iter::once(0).chain(shape[1..].iter().copied()).collect();
    let x = g.value(b)?;
    let gs = g.const_i64("groups", &grouped);
    let y = g.node("Reshape", &[&x, &gs], vec![]);
    let y = g.node("Transpose", &[&y], vec![super::attr_ints("perm", &perm)]);
    let bs = g.const_i64("shape", &back);
    let y = g.node("Reshape", &[&y, &bs], vec![]);
    g.bind(t, y);
    Ok(())
}

/// Reorg (MobileNet-YOLO's darknet order): Reshape to six axes, Transpose,
/// Reshape to the top, as the layer computes it.
pub fn reorg(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.reorg_param.unwrap_or_default();
    let a = crate::layers::common::reorg::arrangement(shape, p.stride() as i64, p.reverse())?;
    // 0 keeps the batch axis as the input has it.
    let mut split = a.split;
    split[0] = 0;
    let mut top = a.top;
    top[0] = 0;
    let x = g.value(b)?;
    let split = g.const_i64("split", &split);
    let y = g.node("Reshape", &[&x, &split], vec![]);
    let y = g.node("Transpose", &[&y], vec![super::attr_ints("perm", &a.perm)]);
    let top = g.const_i64("shape", &top);
    let y = g.node("Reshape", &[&y, &top], vec![]);
    g.bind(t, y);
    Ok(())
}
