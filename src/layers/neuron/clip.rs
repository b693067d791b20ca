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

/// ReLU6 (several MobileNet forks): Clip to [0, 6]. Its gradient passes at 0
/// and 6 themselves, as Clip's does (the forks' stops there; only an input of
/// exactly 0 or 6 tells them apart).
pub fn register_relu6(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ReLU6",
        family: family_of(file!()),
        params: "(none) min(max(x, 0), 6) (MobileNet forks)",
        tests: GRAD_TESTS,
        create: |_| Ok(Box::new(Elementwise::new(Op::Clip { min: 0.0, max: 6.0 }))),
    });
}
