//! Eltwise: the element-wise SUM (with coefficients), PROD or MAX of its bottoms.
use crate::Result;
use tch::Tensor;

use super::at_least_bottoms;
use crate::bail;
use crate::layers::fold::Epilogue;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::eltwise_parameter::EltwiseOp;
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Eltwise",
        family: family_of(file!()),
        params: "operation (SUM, PROD, MAX), coeff (SUM only; one per bottom); MAX sends the gradient where Caffe's max_idx does (a bottom[0]/bottom[1] tie goes to bottom[1], later ties stay with the earlier bottom); stable_prod_grad is accepted (autograd's PROD gradient is exact, zeros included)",
        tests: "layers_common: eltwise_sum_matches_caffe_resnet (resnet_small res2a_sum vs BVLC Caffe), eltwise_* (coeff, PROD gradient with zeros, MAX gradient routing on ties, gradient checks)",
        create: |p| Ok(Box::new(Eltwise::new(p)?)),
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

    fn forward_with_epilogues(
        &mut self,
        ctx: &Ctx,
        bottoms: &[Tensor],
        params: &[Tensor],
        epilogues: &[Epilogue],
    ) -> Option<Result<Vec<Tensor>>> {
        // A sum followed by a ReLU in place (a residual block's end): one pass
        // for two bottoms, else the ReLU on the sum's own fresh tensor.
        if self.op != EltwiseOp::Sum || !matches!(epilogues, [Epilogue::Relu]) {
            return None;
        }
        let unit_coeffs = self.coeffs.iter().all(|&c| c == 1.0);
        if let ([a, b], true) = (bottoms, unit_coeffs) {
            if a.size() == b.size() {
                return Some(a.f_internal_add_relu(b).map(|y| vec![y]).map_err(Into::into));
            }
        }
        let sum = match self.forward(ctx, bottoms, params) {
            Ok(tops) => tops,
            Err(e) => return Some(Err(e)),
        };
        Some(sum.into_iter().map(|mut y| y.f_relu_().map(|_| y).map_err(Into::into)).collect())
    }
}
