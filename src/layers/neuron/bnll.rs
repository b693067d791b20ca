//! BNLL: log(1 + exp(x)), the binomial normal log likelihood (`Op::Bnll` in
//! elementwise.rs).
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "BNLL",
        family: family_of(file!()),
        params: "(none)",
        tests: GRAD_TESTS,
        create: |_| Ok(Box::new(Elementwise::new(Op::Bnll))),
    });
}
