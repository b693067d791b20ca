//! Sigmoid: 1 / (1 + exp(−x)) (`Op::Sigmoid` in elementwise.rs).
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Sigmoid",
        family: family_of(file!()),
        params: "(engine ignored)",
        tests: GRAD_TESTS,
        create: |_| Ok(Box::new(Elementwise::new(Op::Sigmoid))),
    });
}
