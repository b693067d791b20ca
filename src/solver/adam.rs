//! Adam (Caffe's AdamSolver). Two histories per parameter: m (the first N blobs)
//! and v (the next N): m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
//! update = local_rate·√(1 − β2^t)/(1 − β1^t) · m/(√v + delta), with t = iter + 1.
use tch::{TchError, Tensor};

use super::UpdateHyper;

pub(super) fn compute_update(
    diff: &mut Tensor,
    history: &mut [Tensor],
    local_rate: f32,
    hp: &UpdateHyper,
) -> Result<(), TchError> {
    let (beta1, beta2) = (hp.momentum, hp.momentum2);
    let t = (hp.iter + 1) as i32;
    // As in Caffe: the powers in double, the correction stored as float.
    let correction = ((1.0 - (beta2 as f64).powi(t)).sqrt() / (1.0 - (beta1 as f64).powi(t))) as f32;
    let (first, second) = history.split_at_mut(1);
    let (m, v) = (&mut first[0], &mut second[0]);
    let _ = m.f_mul_scalar_(beta1 as f64)?;
    let _ = m.f_add_(&diff.f_mul_scalar((1.0f32 - beta1) as f64)?)?;
    let _ = v.f_mul_scalar_(beta2 as f64)?;
    let _ = v.f_add_(&diff.f_square()?.f_mul_scalar((1.0f32 - beta2) as f64)?)?;
    let denom = v.f_sqrt()?.f_add_scalar(hp.delta as f64)?;
    let update = m.f_div(&denom)?.f_mul_scalar((local_rate * correction) as f64)?;
    diff.f_copy_(&update)
}
