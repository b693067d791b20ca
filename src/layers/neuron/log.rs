//! Log: log_base(shift + scale·x), base −1 meaning e (`Op::Log` in elementwise.rs).
use crate::Result;

use super::elementwise::{ln_base, Elementwise, Op};
use super::GRAD_TESTS;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Log",
        family: family_of(file!()),
        params: "base (-1 = e), scale, shift",
        tests: GRAD_TESTS,
        create: |p| Ok(Box::new(Elementwise::new(log_op(p)?))),
    });
}

fn log_op(p: &LayerParameter) -> Result<Op> {
    let q = p.log_param.unwrap_or_default();
    let log_base = ln_base(q.base())?;
    let base_scale = 1.0 / log_base;
    if !base_scale.is_finite() {
        bail!("1 / log(base) is not finite for base {}", q.base());
    }
    Ok(Op::Log { base_scale, scale: q.scale() as f64, shift: q.shift() as f64 })
}
