//! Caffe's common layers: one file per type. What they do:
//! - blobs in, blobs out: InnerProduct, Embed, Parameter, Bias, Scale, and
//!   SENet's Axpy;
//! - arithmetic: Softmax, Eltwise, ArgMax, Reduction;
//! - normalization: BatchNorm, MVN, and the forks' BN (SegNet's, PSPNet's);
//! - moving data without arithmetic: Split, Concat, Slice, Flatten, Reshape,
//!   Tile, Silence, Filter, BatchReindex, ShuffleNet's ShuffleChannel and
//!   MobileNet-YOLO's Reorg.
//!   Their gradients are the matching gather/scatter, which autograd
//!   derives from the forward ops (Reorg passes none, as in its fork).
//!
//! This file holds the helpers several of them use; `broadcast.rs` holds the
//! blob broadcasting that Bias and Scale share.
use crate::Result;
use tch::{Kind, Tensor};

use super::registry::LayerInfo;
use super::Shape;
use crate::bail;
use crate::proto::caffe::LayerParameter;

pub mod arg_max;
pub mod axpy;
pub mod batch_norm;
pub mod batch_reindex;
pub mod bias;
pub mod bn;
pub mod broadcast;
pub mod concat;
pub mod eltwise;
pub mod embed;
pub mod filter;
pub mod flatten;
pub mod inner_product;
pub mod mvn;
pub mod parameter;
pub mod reduction;
pub mod reorg;
pub mod reshape;
pub mod scale;
pub mod shuffle_channel;
pub mod silence;
pub mod slice;
pub mod softmax;
pub mod split;
pub mod tile;

pub fn register(r: &mut Vec<LayerInfo>) {
    inner_product::register(r);
    split::register(r);
    embed::register(r);
    parameter::register(r);
    bias::register(r);
    scale::register(r);
    axpy::register(r);
    eltwise::register(r);
    softmax::register(r);
    arg_max::register(r);
    reduction::register(r);
    concat::register(r);
    slice::register(r);
    flatten::register(r);
    reshape::register(r);
    tile::register(r);
    silence::register(r);
    filter::register(r);
    batch_reindex::register(r);
    batch_norm::register(r);
    bn::register(r);
    mvn::register(r);
    shuffle_channel::register(r);
    reorg::register(r);
}

/// Requires at least `min` bottoms (layers with no upper limit).
pub(crate) fn at_least_bottoms(bottoms: &[Shape], min: usize) -> Result<()> {
    if bottoms.len() < min {
        bail!("takes at least {min} bottom blob(s), got {}", bottoms.len());
    }
    Ok(())
}

/// Fails when a layer that cannot run in place names its bottom as its top.
pub(crate) fn forbid_in_place(lp: &LayerParameter) -> Result<()> {
    if let (Some(b), Some(t)) = (lp.bottom.first(), lp.top.first()) {
        if b == t {
            bail!("{} layer does not allow in-place computation (bottom and top are both '{b}')", lp.r#type());
        }
    }
    Ok(())
}

/// Reads a blob of indices stored as floats (Embed, BatchReindex) the way
/// Caffe does — `static_cast<int>`, i.e. truncation toward zero — and checks
/// each lies in `[0, limit)`. Returns them flat, as int64.
pub(crate) fn float_indices(x: &Tensor, limit: i64, what: &str) -> Result<Tensor> {
    let x = x.detach().f_reshape([-1])?;
    if x.numel() == 0 {
        return Ok(x.f_to_kind(Kind::Int64)?);
    }
    if x.is_floating_point() && x.f_isfinite()?.f_all()?.int64_value(&[]) == 0 {
        bail!("{what}: indices must be finite numbers");
    }
    let idx = x.f_to_kind(Kind::Int64)?;
    let bad = idx.f_lt(0)?.f_logical_or(&idx.f_ge(limit)?)?;
    if bad.f_any()?.int64_value(&[]) != 0 {
        let first = x.f_masked_select(&bad)?.double_value(&[0]);
        bail!("{what}: index {first} is out of range [0, {limit})");
    }
    Ok(idx)
}

/// Caffe's legacy `concat_dim`/`slice_dim`: a uint32 axis, no negative indexing.
fn legacy_axis(dim: u32, ndim: usize, name: &str) -> Result<usize> {
    if dim as usize >= ndim {
        bail!("{name} {dim} out of range for a {ndim}-D blob");
    }
    Ok(dim as usize)
}
