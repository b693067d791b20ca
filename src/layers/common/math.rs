//! Arithmetic layers: Eltwise, Softmax, ArgMax, Reduction.
use crate::Result;
use tch::Tensor;

use super::at_least_bottoms;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::eltwise_parameter::EltwiseOp;
use crate::proto::caffe::reduction_parameter::ReductionOp;
use crate::proto::caffe::{ArgMaxParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Eltwise",
        family: family_of(file!()),
        params: "operation (SUM, PROD, MAX), coeff (SUM only; one per bottom); MAX sends the gradient where Caffe's max_idx does (a bottom[0]/bottom[1] tie goes to bottom[1], later ties stay with the earlier bottom); stable_prod_grad is accepted (autograd's PROD gradient is exact, zeros included)",
        tests: "layers_common: eltwise_sum_matches_caffe_resnet (resnet_small res2a_sum vs BVLC Caffe), eltwise_* (coeff, PROD gradient with zeros, MAX gradient routing on ties, gradient checks)",
        create: |p| Ok(Box::new(Eltwise::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Softmax",
        family: family_of(file!()),
        params: "axis (engine is ignored)",
        tests: "layers_common: softmax_matches_caffe_resnet (resnet_small prob vs BVLC Caffe), softmax_* (axis, gradient checks)",
        create: |p| Ok(Box::new(Softmax { axis: p.softmax_param.as_ref().map(|s| s.axis()).unwrap_or(1), canonical: 1 })),
    });
    r.push(LayerInfo {
        type_name: "ArgMax",
        family: family_of(file!()),
        params: "out_max_val, top_k, axis (unset: top is (N, 1 or 2, top_k) over the flattened item, indices then values); ties go to the higher index, as Caffe's sort does; no backward",
        tests: "layers_common: argmax_* (layouts with and without axis, out_max_val, top_k order, ties)",
        create: |p| Ok(Box::new(ArgMax::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Reduction",
        family: family_of(file!()),
        params: "operation (SUM, ASUM, SUMSQ, MEAN), axis (reduces all axes from it on), coeff",
        tests: "layers_common: reduction_* (each operation's values, axis, gradient checks)",
        create: |p| Ok(Box::new(Reduction::new(p))),
    });
}

pub struct Eltwise {
    op: EltwiseOp,
    coeffs: Vec<f64>,
}

impl Eltwise {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.eltwise_param.clone().unwrap_or_default();
        let op = p.operation();
        if op == EltwiseOp::Prod && !p.coeff.is_empty() {
            bail!(
                "Eltwise layer only takes coefficients for summation (operation PROD was given {} coeff)",
                p.coeff.len()
            );
        }
        Ok(Eltwise { op, coeffs: p.coeff.iter().map(|&c| c as f64).collect() })
    }
}

impl Layer for Eltwise {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        at_least_bottoms(bottoms, 2)?;
        if !self.coeffs.is_empty() && self.coeffs.len() != bottoms.len() {
            bail!(
                "Eltwise layer takes one coefficient per bottom blob: {} coeff for {} bottoms",
                self.coeffs.len(),
                bottoms.len()
            );
        }
        for (i, b) in bottoms.iter().enumerate().skip(1) {
            if b != &bottoms[0] {
                bail!("Eltwise bottoms must have the same shape: bottom[0] is {:?}, bottom[{i}] is {b:?}", bottoms[0]);
            }
        }
        Ok(SetupOut { tops: vec![bottoms[0].clone()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shape0 = bottoms[0].size();
        if let Some((i, b)) = bottoms.iter().enumerate().find(|(_, b)| b.size() != shape0) {
            bail!("Eltwise bottoms must have the same shape: bottom[0] is {shape0:?}, bottom[{i}] is {:?}", b.size());
        }
        let top = match self.op {
            EltwiseOp::Sum => {
                let coeff = |i: usize| self.coeffs.get(i).copied().unwrap_or(1.0);
                let term = |i: usize| -> Result<Tensor> {
                    let c = coeff(i);
                    Ok(if c == 1.0 { bottoms[i].shallow_clone() } else { bottoms[i].f_mul_scalar(c)? })
                };
                let mut acc = term(0)?;
                for i in 1..bottoms.len() {
                    acc = acc.f_add(&term(i)?)?;
                }
                acc
            }
            // A chain of products: autograd's gradient for each bottom is the
            // product of the others, exact even where a bottom is zero.
            EltwiseOp::Prod => {
                let mut acc = bottoms[0].f_mul(&bottoms[1])?;
                for b in &bottoms[2..] {
                    acc = acc.f_mul(b)?;
                }
                acc
            }
            // Caffe's routing: bottom[0] wins against bottom[1] only when
            // strictly greater (ties go to bottom[1]); each later bottom wins
            // only when strictly greater than the running max (ties stay).
            // `where` sends the gradient to the branch it took, so backward
            // routes to the same bottom as Caffe's max_idx mask.
            EltwiseOp::Max => {
                let (a, b) = (&bottoms[0], &bottoms[1]);
                let mut acc = a.f_where_self(&a.f_gt_tensor(b)?, b)?;
                for x in &bottoms[2..] {
                    acc = x.f_where_self(&x.f_gt_tensor(&acc)?, &acc)?;
                }
                acc
            }
        };
        Ok(vec![top])
    }
}

pub struct Softmax {
    axis: i32,
    canonical: usize,
}

impl Layer for Softmax {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        self.canonical = canonical_axis(self.axis, bottoms[0].len())?;
        Ok(SetupOut { tops: vec![bottoms[0].clone()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        Ok(vec![x.f_softmax(self.canonical as i64, x.kind())?])
    }
}

/// ArgMax: the top_k indices (or values) along `axis`, or over each flattened
/// item when `axis` is unset. Not differentiable: its top is detached.
pub struct ArgMax {
    p: ArgMaxParameter,
    axis: Option<usize>,
}

impl ArgMax {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.argmax_param.unwrap_or_default();
        if p.top_k() < 1 {
            bail!("argmax_param.top_k must not be less than 1");
        }
        Ok(ArgMax { p, axis: None })
    }

    fn top_shape(&self, bottom: &[i64]) -> Shape {
        let k = self.p.top_k() as i64;
        match self.axis {
            Some(a) => {
                let mut s = bottom.to_vec();
                s[a] = k;
                s
            }
            None => {
                // Caffe's layout: at least 3 axes, (N, 1, top_k, 1...), or
                // (N, 2, top_k, ...) holding indices then values.
                let mut s = vec![1i64; bottom.len().max(3)];
                s[0] = bottom[0];
                s[1] = if self.p.out_max_val() { 2 } else { 1 };
                s[2] = k;
                s
            }
        }
    }
}

/// The top k of `x` along `dim`, ordered as Caffe's `partial_sort` with
/// `greater<pair<value, index>>`: by value descending, and among equal values
/// the higher index first. Sorting the flipped tensor stably gives that order.
fn caffe_top_k(x: &Tensor, dim: i64, k: i64) -> Result<(Tensor, Tensor)> {
    let n = x.size()[dim as usize];
    let (values, flipped_idx) = x.f_flip([dim])?.f_sort_stable(true, dim, true)?;
    let values = values.f_narrow(dim, 0, k)?;
    let idx = flipped_idx.f_narrow(dim, 0, k)?.f_neg()?.f_add_scalar(n - 1)?;
    Ok((values, idx))
}

impl Layer for ArgMax {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        let k = self.p.top_k() as i64;
        if s.is_empty() {
            bail!("ArgMax needs a bottom with at least one axis");
        }
        match self.p.axis {
            Some(a) => {
                let axis = canonical_axis(a, s.len())?;
                if k > s[axis] {
                    bail!(
                        "top_k ({k}) must be less than or equal to the dimension of the axis ({} at axis {axis})",
                        s[axis]
                    );
                }
                self.axis = Some(axis);
            }
            None => {
                let dim = count(s, 1, s.len());
                if k > dim {
                    bail!("top_k ({k}) must be less than or equal to the dimension of the flattened bottom blob per instance ({dim})");
                }
            }
        }
        Ok(SetupOut { tops: vec![self.top_shape(s)], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = bottoms[0].detach();
        let shape = x.size();
        let k = self.p.top_k() as i64;
        let top = match self.axis {
            Some(a) => {
                let (values, idx) = caffe_top_k(&x, a as i64, k)?;
                if self.p.out_max_val() {
                    values
                } else {
                    idx.f_to_kind(x.kind())?
                }
            }
            None => {
                let flat = x.f_reshape([shape[0], -1])?;
                if k > flat.size()[1] {
                    bail!("top_k ({k}) exceeds the flattened item size {}", flat.size()[1]);
                }
                let (values, idx) = caffe_top_k(&flat, 1, k)?;
                let idx = idx.f_to_kind(x.kind())?;
                if self.p.out_max_val() {
                    Tensor::f_cat(&[idx, values], 1)?
                } else {
                    idx
                }
            }
        };
        Ok(vec![top.f_reshape(self.top_shape(&shape).as_slice())?])
    }
}

pub struct Reduction {
    op: ReductionOp,
    axis: i32,
    coeff: f64,
    canonical: usize,
}

impl Reduction {
    fn new(lp: &LayerParameter) -> Self {
        let p = lp.reduction_param.unwrap_or_default();
        Reduction { op: p.operation(), axis: p.axis(), coeff: p.coeff() as f64, canonical: 0 }
    }
}

impl Layer for Reduction {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        self.canonical = canonical_axis(self.axis, bottoms[0].len())?;
        // The top keeps the axes before `axis`: a scalar when axis is 0.
        Ok(SetupOut { tops: vec![bottoms[0][..self.canonical].to_vec()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        let outer = count(&shape, 0, self.canonical);
        let dim = count(&shape, self.canonical, shape.len());
        let rows = x.f_reshape([outer, dim])?;
        let per_row = match self.op {
            ReductionOp::Sum | ReductionOp::Mean => rows,
            ReductionOp::Asum => rows.f_abs()?,
            ReductionOp::Sumsq => rows.f_mul(&rows)?,
        };
        let summed = per_row.f_sum_dim_intlist([1i64].as_slice(), false, x.kind())?;
        let coeff = if self.op == ReductionOp::Mean { self.coeff / dim as f64 } else { self.coeff };
        let top = if coeff == 1.0 { summed } else { summed.f_mul_scalar(coeff)? };
        Ok(vec![top.f_reshape(&shape[..self.canonical])?])
    }
}
