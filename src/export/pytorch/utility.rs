//! The emitters of Caffe's utility layers (Concat, Slice, Split, Crop,
//! Reshape, Flatten, MVN, Reduction, ArgMax, Embed, Tile, Parameter, Filter,
//! ShuffleChannel, Reorg),
//! listed in layers.rs's table; each follows src/layers/common/<type>.rs.
use super::layers::{blobs_module, f, list, py_bool, tup};
use super::{Code, Site};
use crate::layers::canonical_axis;
use crate::proto::caffe::reduction_parameter::ReductionOp;
use crate::{bail, Result};

/// Concat's and Slice's axis: the legacy `*_dim` field, else `axis`.
pub(super) fn join_axis(legacy: Option<u32>, axis: i32, ndim: usize) -> Result<usize> {
    match legacy {
        Some(d) if (d as usize) < ndim => Ok(d as usize),
        Some(d) => bail!("dim {d} out of range for a {ndim}-D blob"),
        None => canonical_axis(axis, ndim),
    }
}

pub(super) fn concat(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.concat_param.unwrap_or_default();
    let axis = join_axis(p.concat_dim, p.axis(), s.bottom_shape(0).len())?;
    c.assign(&s.tops, format!("torch.cat([{}], dim={axis})", s.bottoms.join(", ")));
    Ok(())
}

pub(super) fn slice(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.slice_param.clone().unwrap_or_default();
    let axis = join_axis(p.slice_dim, p.axis(), s.bottom_shape(0).len())?;
    // The sizes as the net set them up (common/slice.rs's rules).
    let sizes: Vec<i64> = (0..s.tops.len()).map(|i| s.top_shape(i).get(axis).copied().unwrap_or(0)).collect();
    let call = format!("torch.split({}, {}, dim={axis})", s.b(0), list(&sizes));
    if s.tops.len() == 1 {
        c.assign(&s.tops, format!("{call}[0]"));
    } else {
        c.assign(&s.tops, call);
    }
    Ok(())
}

pub(super) fn split(s: &Site, c: &mut Code) -> Result<()> {
    // Caffe's Split copies; Python names can share the tensor since nothing is modified in place.
    c.fwd(format!("{} = {}", s.tops.join(" = "), s.b(0)));
    Ok(())
}

pub(super) fn crop(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.crop_param.clone().unwrap_or_default();
    let n = s.bottom_shape(0).len();
    let start = canonical_axis(p.axis(), n)?;
    let mut index = vec![":".to_string(); start];
    for i in start..n {
        let off = match p.offset.len() {
            0 => 0,
            1 => p.offset[0],
            _ => p.offset.get(i - start).copied().unwrap_or(0),
        };
        index.push(format!("{off}:{off} + {}.shape[{i}]", s.b(1)));
    }
    c.assign(&s.tops, format!("{}[{}]", s.b(0), index.join(", ")));
    Ok(())
}

pub(super) fn reshape(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.reshape_param.clone().unwrap_or_default();
    let dims = p.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
    c.helper("caffe_reshape");
    c.assign(&s.tops, format!("caffe_reshape({}, {}, {}, {})", s.b(0), list(&dims), p.axis(), p.num_axes()));
    Ok(())
}

pub(super) fn flatten(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.flatten_param.unwrap_or_default();
    let n = s.bottom_shape(0).len();
    let (a, e) = (canonical_axis(p.axis(), n)?, canonical_axis(p.end_axis(), n)?);
    c.assign(&s.tops, format!("torch.flatten({}, {a}, {e})", s.b(0)));
    Ok(())
}

pub(super) fn mvn(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.mvn_param.unwrap_or_default();
    c.helper("caffe_mvn");
    c.assign(
        &s.tops,
        format!(
            "caffe_mvn({}, {}, {}, {})",
            s.b(0),
            py_bool(p.normalize_variance()),
            py_bool(p.across_channels()),
            f(p.eps())
        ),
    );
    Ok(())
}

pub(super) fn reduction(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.reduction_param.unwrap_or_default();
    let axis = canonical_axis(p.axis(), s.bottom_shape(0).len())?;
    let op = match p.operation() {
        ReductionOp::Sum => "sum",
        ReductionOp::Asum => "asum",
        ReductionOp::Sumsq => "sumsq",
        ReductionOp::Mean => "mean",
    };
    c.helper("caffe_reduction");
    c.assign(&s.tops, format!("caffe_reduction({}, \"{op}\", {axis}, {})", s.b(0), f(p.coeff())));
    Ok(())
}

pub(super) fn arg_max(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.argmax_param.unwrap_or_default();
    let axis = match p.axis {
        Some(a) => canonical_axis(a, s.bottom_shape(0).len())?.to_string(),
        None => "None".to_string(),
    };
    c.helper("caffe_argmax");
    c.assign(&s.tops, format!("caffe_argmax({}, {}, {}, {axis})", s.b(0), p.top_k(), py_bool(p.out_max_val())));
    Ok(())
}

pub(super) fn embed(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.embed_param.clone().unwrap_or_default();
    let mut params = vec![("weight", s.blob_shape(0))];
    if p.bias_term() {
        params.push(("bias", s.blob_shape(1)));
    }
    blobs_module(c, &s.module, &params, &[]);
    let bias = if p.bias_term() { format!(" + {}.bias", s.module) } else { String::new() };
    // Caffe reads the indices as floats and truncates them.
    c.assign(&s.tops, format!("F.embedding({}.long(), {}.weight){bias}", s.b(0), s.module));
    Ok(())
}

pub(super) fn tile(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.tile_param.unwrap_or_default();
    let n = s.bottom_shape(0).len();
    let axis = canonical_axis(p.axis(), n)?;
    let mut reps = vec![1i64; n];
    reps[axis] = p.tiles() as i64;
    c.assign(&s.tops, format!("{}.repeat{}", s.b(0), tup(&reps)));
    Ok(())
}

pub(super) fn parameter(s: &Site, c: &mut Code) -> Result<()> {
    blobs_module(c, &s.module, &[("weight", s.blob_shape(0))], &[]);
    c.assign(&s.tops, format!("{}.weight", s.module));
    Ok(())
}

pub(super) fn filter(s: &Site, c: &mut Code) -> Result<()> {
    let selector = s.bottoms.last().cloned().unwrap_or_default();
    for (b, t) in s.bottoms.iter().zip(&s.tops) {
        c.fwd(format!("{t} = {b}[{selector}.reshape(-1) != 0]"));
    }
    Ok(())
}

/// MobileNet-YOLO's Reorg (darknet's order): six axes, permuted, reshaped to
/// the top, as the layer computes it (the forward only: the fork passes no
/// gradient through it, which the module does not copy).
pub(super) fn reorg(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.reorg_param.unwrap_or_default();
    let a = crate::layers::common::reorg::arrangement(s.bottom_shape(0), p.stride() as i64, p.reverse())?;
    let x = s.b(0);
    let dims = |d: &[i64]| d[1..].iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
    let perm = a.perm.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
    c.assign(
        &s.tops,
        format!(
            "{x}.reshape({x}.shape[0], {}).permute({perm}).reshape({x}.shape[0], {})",
            dims(&a.split),
            dims(&a.top)
        ),
    );
    Ok(())
}

/// ShuffleNet's ShuffleChannel: (N, g, C/g, ...) transposed to (N, C/g, g, ...).
pub(super) fn shuffle_channel(s: &Site, c: &mut Code) -> Result<()> {
    let group = s.l.param.shuffle_channel_param.unwrap_or_default().group() as i64;
    let per_group = crate::layers::common::shuffle_channel::channels_per_group(s.bottom_shape(0), group)?;
    let x = s.b(0);
    c.assign(
        &s.tops,
        format!("{x}.reshape({x}.shape[0], {group}, {per_group}, *{x}.shape[2:]).transpose(1, 2).reshape({x}.shape)"),
    );
    Ok(())
}
