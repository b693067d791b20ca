//! Swish: x·sigmoid(β·x) (`Op::Swish` in elementwise.rs).
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Swish",
        family: family_of(file!()),
        params: "beta",
        tests: GRAD_TESTS,
        create: |p| {
            Ok(Box::new(Elementwise::new(Op::Swish {
                beta: p.swish_param.as_ref().map(|s| s.beta()).unwrap_or(1.0) as f64,
            })))
        },
    });
}
