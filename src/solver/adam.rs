//! Adam (Caffe's AdamSolver). Two histories per parameter: m (the first N blobs)
//! and v (the next N): m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
//! update = local_rate·√(1 − β2^t)/(1 − β1^t) · m/(√v + delta), with t = iter + 1
//! (the rate coefficient holds local_rate times that correction: see `update::Coefs`).
use tch::{TchError, Tensor};

use super::update::Coefs;

pub(super) fn compute_update(diff: &mut Tensor, history: &mut [Tensor], c: &Coefs) -> Result<(), TchError> {
    let beta2 = c.hyper.momentum2;
    let (first, second) = history.split_at_mut(1);
    let (m, v) = (&mut first[0], &mut second[0]);
    c.momentum.mul_(m)?;
    let _ = m.f_add_(&c.one_minus_momentum.mul(diff)?)?;
    let _ = v.f_mul_scalar_(beta2 as f64)?;
    let _ = v.f_add_(&diff.f_square()?.f_mul_scalar((1.0f32 - beta2) as f64)?)?;
    let denom = v.f_sqrt()?.f_add_scalar(c.hyper.delta as f64)?;
    let update = c.rate.mul(&m.f_div(&denom)?)?;
    diff.f_copy_(&update)
}
