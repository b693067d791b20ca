//! Utility layers: InnerProduct, Split, Embed, Parameter here; the per-family
//! submodules hold the rest (affine: Bias, Scale; math: Eltwise, Softmax,
//! ArgMax, Reduction; shape: Concat, Slice, Flatten, Reshape, Tile, Silence,
//! Filter, BatchReindex).
use crate::Result;
use tch::{Kind, Tensor};

use super::{canonical_axis, check_bottoms, count, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::proto::caffe::{EmbedParameter, InnerProductParameter, LayerParameter};

pub mod affine;
pub mod math;
pub mod shape;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "InnerProduct",
        family: family_of(file!()),
        params: "num_output, bias_term, weight_filler, bias_filler, axis, transpose",
        tests: "parity (lenet, cifar10, resnet_small), gradient check (layers_common: inner_product_*)",
        create: |p| Ok(Box::new(InnerProduct::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Split",
        family: family_of(file!()),
        params: "(none: one copy of the bottom per top; inserted automatically)",
        tests: "parity (lenet: label/ip2 splits), gradient check (layers_common: split_*)",
        create: |p| Ok(Box::new(Split { tops: p.top.len() })),
    });
    r.push(LayerInfo {
        type_name: "Embed",
        family: family_of(file!()),
        params: "num_output, input_dim, bias_term, weight_filler, bias_filler (bottom: indices stored as floats; out of range is an error)",
        tests: "layers_common: embed_* (lookup values, bad index errors, gradient check of weight and bias)",
        create: |p| Ok(Box::new(Embed::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Parameter",
        family: family_of(file!()),
        params: "parameter_param.shape (the blob starts at zero, as in Caffe)",
        tests: "layers_common: parameter_* (net-level gradient, gradient check)",
        create: |p| Ok(Box::new(Parameter::new(p)?)),
    });
    affine::register(r);
    math::register(r);
    shape::register(r);
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

pub struct InnerProduct {
    p: InnerProductParameter,
    axis: usize,
}

impl InnerProduct {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.inner_product_param.clone().unwrap_or_default();
        if p.num_output.is_none() {
            bail!("inner_product_param.num_output is required");
        }
        Ok(InnerProduct { p, axis: 1 })
    }
}

impl Layer for InnerProduct {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        self.axis = canonical_axis(self.p.axis(), s.len())?;
        let k = count(s, self.axis, s.len());
        let n = self.p.num_output() as i64;
        let mut top = s[..self.axis].to_vec();
        top.push(n);
        let wshape = if self.p.transpose() { vec![k, n] } else { vec![n, k] };
        let mut params = vec![ParamDecl::new(wshape, self.p.weight_filler.clone().unwrap_or_default())];
        if self.p.bias_term() {
            params.push(ParamDecl::new(vec![n], self.p.bias_filler.clone().unwrap_or_default()));
        }
        Ok(SetupOut { tops: vec![top], params })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = x.size();
        let m = count(&s, 0, self.axis);
        let x2 = x.f_reshape([m, -1])?;
        let w = &params[0];
        let y = if self.p.transpose() {
            match params.get(1) {
                Some(b) => b.f_addmm(&x2, w)?,
                None => x2.f_matmul(w)?,
            }
        } else {
            x2.f_linear(w, params.get(1))?
        };
        let mut top = s[..self.axis].to_vec();
        top.push(self.p.num_output() as i64);
        Ok(vec![y.f_reshape(top.as_slice())?])
    }
}

/// Split: the same blob for each reader; each top is its own autograd node
/// so the readers' gradients are summed into the bottom.
pub struct Split {
    tops: usize,
}

impl Layer for Split {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        Ok(SetupOut { tops: vec![bottoms[0].clone(); self.tops], params: vec![] })
    }
    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok((0..self.tops).map(|_| bottoms[0].alias()).collect())
    }
}

/// Embed: a lookup table. Each bottom value is a row index into the weight
/// [input_dim, num_output] (InnerProduct's layout transposed); top shape is
/// the bottom's shape plus num_output. The indices get no gradient (Caffe
/// refuses to backpropagate to them); repeated indices accumulate into the
/// same weight row, as Caffe's backward does.
pub struct Embed {
    p: EmbedParameter,
}

impl Embed {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.embed_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            bail!("embed_param.num_output must be positive");
        }
        if p.input_dim() == 0 {
            bail!("embed_param.input_dim must be positive");
        }
        Ok(Embed { p })
    }
}

impl Layer for Embed {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let n = self.p.num_output() as i64;
        let k = self.p.input_dim() as i64;
        let mut top = bottoms[0].clone();
        top.push(n);
        let mut params = vec![ParamDecl::new(vec![k, n], self.p.weight_filler.clone().unwrap_or_default())];
        if self.p.bias_term() {
            params.push(ParamDecl::new(vec![n], self.p.bias_filler.clone().unwrap_or_default()));
        }
        Ok(SetupOut { tops: vec![top], params })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let idx = float_indices(x, self.p.input_dim() as i64, "Embed")?;
        let mut y = params[0].f_index_select(0, &idx.f_to_device(params[0].device())?)?;
        if let Some(b) = params.get(1) {
            y = y.f_add(b)?;
        }
        let mut top = x.size();
        top.push(self.p.num_output() as i64);
        Ok(vec![y.f_reshape(top.as_slice())?])
    }
}

/// Parameter: exposes one learnable blob of `parameter_param.shape` as its
/// top; gradients reaching the top train the blob. Caffe allocates the blob
/// without a filler, so it starts at zero (or at the loaded weights).
pub struct Parameter {
    shape: Shape,
}

impl Parameter {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let shape =
            lp.parameter_param.as_ref().and_then(|p| p.shape.as_ref()).map(|s| s.dim.clone()).unwrap_or_default();
        if let Some(d) = shape.iter().find(|&&d| d < 0) {
            bail!("parameter_param.shape {shape:?} has a negative dimension ({d})");
        }
        Ok(Parameter { shape })
    }
}

impl Layer for Parameter {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 0, 0)?;
        Ok(SetupOut { tops: vec![self.shape.clone()], params: vec![ParamDecl::constant(self.shape.clone(), 0.0)] })
    }

    fn forward(&mut self, _ctx: &Ctx, _bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![params[0].alias()])
    }
}
