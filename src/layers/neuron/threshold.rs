//! Threshold: 1 where x > threshold, else 0 (`Op::Threshold` in elementwise.rs).
use super::elementwise::{Elementwise, Op};
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Threshold",
        family: family_of(file!()),
        params: "threshold (no gradient: Caffe has no backward)",
        tests: "numeric tests (tests/layers_activation.rs)",
        create: |p| {
            let t = p.threshold_param.as_ref().map(|t| t.threshold()).unwrap_or(0.0) as f64;
            Ok(Box::new(Elementwise::new(Op::Threshold { threshold: t })))
        },
    });
}
