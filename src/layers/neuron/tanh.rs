//! TanH: tanh(x) (`Op::TanH` in elementwise.rs).
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "TanH",
        family: family_of(file!()),
        params: "(engine ignored)",
        tests: GRAD_TESTS,
        create: |_| Ok(Box::new(Elementwise::new(Op::TanH))),
    });
}
