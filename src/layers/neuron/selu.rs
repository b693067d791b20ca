//! SeLu, the self-normalizing networks' activation: λ·x for x > 0,
//! λ·α·(exp(x) − 1) otherwise (`Op::Selu` in elementwise.rs), as the SNN
//! Caffe reimplementation computes it.
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SeLu",
        family: family_of(file!()),
        params: "lambda, alpha (selu_param, the SNN fork's field 161)",
        tests: GRAD_TESTS,
        create: |p| {
            let s = p.selu_param.unwrap_or_default();
            Ok(Box::new(Elementwise::new(Op::Selu { lambda: s.lambda() as f64, alpha: s.alpha() as f64 })))
        },
    });
}
