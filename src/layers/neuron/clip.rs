//! Clip: x clamped to [min, max] (`Op::Clip` in elementwise.rs).
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Clip",
        family: family_of(file!()),
        params: "min, max",
        tests: GRAD_TESTS,
        create: |p| {
            let c = p.clip_param.unwrap_or_default();
            Ok(Box::new(Elementwise::new(Op::Clip { min: c.min as f64, max: c.max as f64 })))
        },
    });
}
