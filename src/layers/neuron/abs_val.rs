//! AbsVal: |x| (`Op::AbsVal` in elementwise.rs). Caffe forbids it in place.
use super::elementwise::{Elementwise, Op};
use super::GRAD_TESTS;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "AbsVal",
        family: family_of(file!()),
        params: "(none; in-place rejected as in Caffe)",
        tests: GRAD_TESTS,
        create: |p| {
            if !p.top.is_empty() && p.top.first() == p.bottom.first() {
                bail!("AbsVal Layer does not allow in-place computation");
            }
            Ok(Box::new(Elementwise::new(Op::AbsVal)))
        },
    });
}
