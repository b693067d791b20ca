//! Exp: base^(shift + scale·x), base −1 meaning e (`Op::Exp` in elementwise.rs).
use crate::Result;

use super::elementwise::{ln_base, Elementwise, Op};
use super::GRAD_TESTS;
use crate::layers::registry::{family_of, LayerInfo};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Exp",
        family: family_of(file!()),
        params: "base (-1 = e), scale, shift",
        tests: GRAD_TESTS,
        create: |p| Ok(Box::new(Elementwise::new(exp_op(p)?))),
    });
}

fn exp_op(p: &LayerParameter) -> Result<Op> {
    let q = p.exp_param.unwrap_or_default();
    let log_base = ln_base(q.base())?;
    let (scale, shift) = (q.scale() as f64, q.shift() as f64);
    let outer = if shift == 0.0 { 1.0 } else { (log_base * shift).exp() };
    Ok(Op::Exp { inner: log_base * scale, outer })
}
