//! ELU: x for x > 0, α·(exp(x) − 1) otherwise (`Op::Elu` in elementwise.rs).
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ELU",
        family: family_of(file!()),
        params: "alpha",
        tests: GRAD_TESTS,
        create: |p| {
            Ok(Box::new(Elementwise::new(Op::Elu {
                alpha: p.elu_param.as_ref().map(|e| e.alpha()).unwrap_or(1.0) as f64,
            })))
        },
    });
}
