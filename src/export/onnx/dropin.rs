//! The DropIn paper's layers: DropIn (gradual at the plan's iteration, or the
//! regularizing mode's TEST expectation) and Resize.
use super::{attr_i, attr_s, Graph};
use crate::export::PlanLayer;
use crate::proto::caffe::resize_parameter::Interpolation;
use crate::proto::caffe::Phase;
use crate::{bail, Result};

/// Gradual DropIn at iteration τ takes the first ⌈q·n⌉ units of each item from
/// the skip path (q the remaining fraction) and the rest from the new layer: a
/// fixed mask. Regularizing DropIn at TEST is the expectation q·skip + (1−q)·new.
pub fn drop_in(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let iteration = g.iteration;
    let (Some(t), Some(shape)) = (l.tops.first(), l.bottom_shapes.first()) else {
        bail!("needs two bottoms and a top")
    };
    if l.bottoms.len() != 2 {
        bail!("needs two bottoms (skip path, new layer)");
    }
    let p = l.param.dropin_param.unwrap_or_default();
    let skip = g.value(&l.bottoms[0])?;
    let new = g.value(&l.bottoms[1])?;
    let n: i64 = shape[1..].iter().product();
    let y = if p.dropin_length() > 0 {
        let d = p.dropin_length() as f64;
        let q = ((iteration as f64 - p.dropin_start() as f64) / d).clamp(0.0, 1.0);
        let k = (((1.0 - q) * n as f64).ceil() as i64).clamp(0, n);
        if k == 0 {
            g.identity(&new)
        } else if k == n {
            g.identity(&skip)
        } else {
            let mask: Vec<bool> = (0..n).map(|i| i < k).collect();
            let mut mshape = vec![1i64];
            mshape.extend(&shape[1..]);
            let m = g.const_bool("mask", &mshape, &mask);
            g.node("Where", &[&m, &skip, &new], vec![])
        }
    } else {
        if l.param.phase() == Phase::Train {
            bail!("regularizing DropIn in the TRAIN phase is random; export the TEST phase");
        }
        let q = p.dropin_ratio();
        let a = g.affine(&skip, q, 0.0);
        let b = g.affine(&new, 1.0 - q, 0.0);
        g.node("Add", &[&a, &b], vec![])
    };
    g.bind(t, y);
    Ok(())
}

/// Resize: channels repeated cyclically to the target count, then bilinear
/// (PyTorch's half-pixel rule, no corner alignment) or nearest (floor) to the
/// target height and width.
pub fn resize(g: &mut Graph, l: &PlanLayer) -> Result<()> {
    let (Some(b), Some(t), Some(s), Some(top)) =
        (l.bottoms.first(), l.tops.first(), l.bottom_shapes.first(), l.top_shapes.first())
    else {
        bail!("needs a bottom and a top")
    };
    let p = l.param.resize_param.unwrap_or_default();
    let mut x = g.value(b)?;
    if top[1] != s[1] {
        let idx: Vec<i64> = (0..top[1]).map(|c| c % s[1]).collect();
        let i = g.const_i64("channels", &idx);
        x = g.node("Gather", &[&x, &i], vec![attr_i("axis", 1)]);
    }
    let y = if (top[2], top[3]) == (s[2], s[3]) {
        g.identity(&x)
    } else {
        let shape = g.node("Shape", &[&x], vec![]);
        let (st, en, ax) = (g.const_i64("start", &[0]), g.const_i64("end", &[2]), g.const_i64("axes", &[0]));
        let nc = g.node("Slice", &[&shape, &st, &en, &ax], vec![]);
        let hw = g.const_i64("size", &[top[2], top[3]]);
        let sizes = g.node("Concat", &[&nc, &hw], vec![attr_i("axis", 0)]);
        let attrs = match p.interpolation() {
            Interpolation::Bilinear => {
                vec![attr_s("mode", "linear"), attr_s("coordinate_transformation_mode", "pytorch_half_pixel")]
            }
            Interpolation::Nearest => vec![
                attr_s("mode", "nearest"),
                attr_s("coordinate_transformation_mode", "asymmetric"),
                attr_s("nearest_mode", "floor"),
            ],
        };
        g.node("Resize", &[&x, "", "", &sizes], attrs)
    };
    g.bind(t, y);
    Ok(())
}
