//! BatchNorm (alone, or with the Scale after it as one BatchNormalization)
//! and the forks' BN.
use std::collections::{HashMap, HashSet};

use super::common::top_shape;
use super::{attr_f, io, Graph};
use crate::export::{Plan, PlanLayer};
use crate::layers::canonical_axis;
use crate::layers::common::bn::{bn_fork, BnFork, SEGNET_EPS};
use crate::proto::caffe::bn_parameter::BnMode;
use crate::proto::caffe::Phase;
use crate::{bail, Result};

/// Layers lowered together: BatchNorm followed by a Scale on its output.
pub struct Fusions {
    /// Layers handled by an earlier layer's lowering.
    pub skipped: HashSet<usize>,
    /// BatchNorm index → the Scale folded into it.
    pub batch_norm_scale: HashMap<usize, usize>,
}

/// Finds BatchNorm layers whose only reader is the next layer, a Scale over
/// the channel axis; the pair becomes one `BatchNormalization`. With
/// `-blobs all` the pair is fused only when the Scale is in place (the
/// BatchNorm's own output is then not a blob of its own).
pub fn fusions(plan: &Plan, all_blobs: bool) -> Fusions {
    let mut f = Fusions { skipped: HashSet::new(), batch_norm_scale: HashMap::new() };
    for (k, l) in plan.layers.iter().enumerate() {
        let Some(next) = plan.layers.get(k + 1) else { continue };
        if l.layer_type() != "BatchNorm" || next.layer_type() != "Scale" || next.bottoms.len() != 1 {
            continue;
        }
        let (Some(bn_top), Some(shape)) = (l.tops.first(), l.bottom_shapes.first()) else { continue };
        let sp = next.param.scale_param.clone().unwrap_or_default();
        let readers = plan.layers.iter().filter(|o| o.bottoms.contains(bn_top)).count();
        let in_place = next.tops.first() == Some(bn_top);
        if next.bottoms[0] == *bn_top
            && readers == 1
            && shape.len() >= 2
            && canonical_axis(sp.axis(), shape.len()).ok() == Some(1)
            && sp.num_axes() == 1
            && (in_place || !all_blobs)
            && !plan.outputs.contains(bn_top)
        {
            f.batch_norm_scale.insert(k, k + 1);
            f.skipped.insert(k + 1);
        }
    }
    f
}

/// BatchNorm's statistics divided by its scale factor (0 stays 0, as Caffe).
fn batch_norm_stats(l: &PlanLayer) -> Result<(Vec<f32>, Vec<f32>, f32)> {
    let p = l.param.batch_norm_param.unwrap_or_default();
    if !p.use_global_stats.unwrap_or(l.param.phase() == Phase::Test) {
        bail!("BatchNorm with batch statistics (use_global_stats false, or the TRAIN phase) is not exported; export the TEST phase");
    }
    if l.blobs.len() != 3 {
        bail!("BatchNorm needs its 3 blobs, got {}", l.blobs.len());
    }
    let factor = crate::util::tensor_values(&l.blobs[2])?.first().copied().unwrap_or(0.0);
    let factor = if factor == 0.0 { 0.0 } else { 1.0 / factor };
    let mean = crate::util::tensor_values(&l.blobs[0])?.iter().map(|v| v * factor).collect();
    let var = crate::util::tensor_values(&l.blobs[1])?.iter().map(|v| v * factor).collect();
    Ok((mean, var, p.eps()))
}

fn batch_normalization(g: &mut Graph, l: &PlanLayer, gamma: &[f32], beta: &[f32], top: &str) -> Result<()> {
    let (b, _, shape) = io(l)?;
    if shape.len() < 2 {
        bail!("BatchNorm on a 1-D blob is not exported (ONNX needs a channel axis)");
    }
    let (mean, var, eps) = batch_norm_stats(l)?;
    let c = [mean.len() as i64];
    let x = g.value(b)?;
    let s = g.const_f32("scale", &c, gamma);
    let bias = g.const_f32("bias", &c, beta);
    let m = g.const_f32("mean", &c, &mean);
    let v = g.const_f32("var", &c, &var);
    let y = g.node("BatchNormalization", &[&x, &s, &bias, &m, &v], vec![attr_f("epsilon", eps)]);
    g.bind(top, y);
    Ok(())
}

pub fn batch_norm(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let c = l.blobs.first().map_or(0, |b| b.numel());
    let t = top_shape(l).map(|_| l.tops[0].clone())?;
    batch_normalization(g, l, &vec![1.0; c], &vec![0.0; c], &t)
}

/// The forks' BN (common/bn.rs): running statistics as BatchNormalization,
/// SegNet's INFERENCE mode as Mul and Add, batch statistics spelled out
/// with ReduceMean.
pub fn bn(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (b, t, shape) = io(l)?;
    let p = l.param.bn_param.clone().unwrap_or_default();
    if shape.len() < 2 {
        bail!("BN needs a bottom with a channel axis, got shape {shape:?}");
    }
    let [n, c, h, w] = crate::layers::legacy_dims(shape)?;
    let x = g.value(b)?;
    let x4 = if shape.len() == 4 { x } else { g.reshape(&x, shape, &[n, c, h, w]) };
    let blob = |j: usize| l.blobs.get(j).ok_or_else(|| crate::Error::invalid(format!("BN needs its blob {j}")));
    let fork = bn_fork(&p);
    let batch = match fork {
        BnFork::SegNet => p.bn_mode() == BnMode::Learn,
        BnFork::Xiong => l.param.phase() == Phase::Train && !p.frozen(),
    };
    let y = if fork == BnFork::Xiong && !batch {
        let inputs = [
            g.weight("slope", blob(0)?, &[c])?,
            g.weight("bias", blob(1)?, &[c])?,
            g.weight("mean", blob(2)?, &[c])?,
            g.weight("variance", blob(3)?, &[c])?,
        ];
        let refs: Vec<&str> = std::iter::once(x4.as_str()).chain(inputs.iter().map(|s| s.as_str())).collect();
        g.node("BatchNormalization", &refs, vec![attr_f("epsilon", p.eps())])
    } else {
        let scale = g.weight("scale", blob(0)?, &[1, c, 1, 1])?;
        let shift = g.weight("shift", blob(1)?, &[1, c, 1, 1])?;
        let normalized = if batch {
            let mean = g.reduce("ReduceMean", &x4, &[0, 2, 3], true);
            let centred = g.node("Sub", &[&x4, &mean], vec![]);
            let var = if fork == BnFork::Xiong {
                let sq = g.node("Mul", &[&centred, &centred], vec![]);
                g.reduce("ReduceMean", &sq, &[0, 2, 3], true)
            } else {
                let sq = g.node("Mul", &[&x4, &x4], vec![]);
                let mean_sq = g.reduce("ReduceMean", &sq, &[0, 2, 3], true);
                let sq_mean = g.node("Mul", &[&mean, &mean], vec![]);
                g.node("Sub", &[&mean_sq, &sq_mean], vec![])
            };
            let eps = if fork == BnFork::Xiong { p.eps() } else { SEGNET_EPS as f32 };
            let eps = g.scalar("eps", eps);
            let guarded = g.node("Add", &[&var, &eps], vec![]);
            let std = g.node("Sqrt", &[&guarded], vec![]);
            g.node("Div", &[&centred, &std], vec![])
        } else {
            x4
        };
        let scaled = g.node("Mul", &[&normalized, &scale], vec![]);
        g.node("Add", &[&scaled, &shift], vec![])
    };
    let y = if shape.len() == 4 { y } else { g.reshape(&y, &[n, c, h, w], shape) };
    g.bind(t, y);
    Ok(())
}

/// BatchNorm and the Scale after it as one BatchNormalization.
pub fn batch_norm_with_scale(g: &mut Graph, bn: &PlanLayer, scale: &PlanLayer) -> Result<()> {
    let sp = scale.param.scale_param.clone().unwrap_or_default();
    let Some(gamma) = scale.blobs.first() else { bail!("the Scale after it has no scale blob") };
    let gamma = crate::util::tensor_values(gamma)?;
    let beta = match (sp.bias_term(), scale.blobs.get(1)) {
        (true, Some(b)) => crate::util::tensor_values(b)?,
        _ => vec![0.0; gamma.len()],
    };
    let Some(top) = scale.tops.first() else { bail!("the Scale after it has no top") };
    batch_normalization(g, bn, &gamma, &beta, top)?;
    // The BatchNorm's own top (when not in place) is the Scale's input only.
    if let Some(bn_top) = bn.tops.first() {
        if bn_top != top {
            let v = g.value(top)?;
            g.bind(bn_top, v);
        }
    }
    Ok(())
}
