//! Power: (shift + scale·x)^power (`Op::Power` in elementwise.rs).
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Power",
        family: family_of(file!()),
        params: "power, scale, shift",
        tests: GRAD_TESTS,
        create: |p| {
            let q = p.power_param.unwrap_or_default();
            Ok(Box::new(Elementwise::new(Op::Power {
                power: q.power() as f64,
                scale: q.scale() as f64,
                shift: q.shift() as f64,
            })))
        },
    });
}
