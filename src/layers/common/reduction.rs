//! Reduction: SUM, ASUM, SUMSQ or MEAN over all axes from `axis` on, times `coeff`.
use crate::Result;
use tch::Tensor;

use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::reduction_parameter::ReductionOp;
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Reduction",
        family: family_of(file!()),
        params: "operation (SUM, ASUM, SUMSQ, MEAN), axis (reduces all axes from it on), coeff",
        tests: "layers_common: reduction_* (each operation's values, axis, gradient checks)",
        create: |p| Ok(Box::new(Reduction::new(p))),
    });
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
