//! AdaDelta (Caffe's AdaDeltaSolver). Two histories per parameter: h (squared
//! gradients, the first N blobs) and u (squared updates, the next N):
//! h ← (1 − m)·g² + m·h; Δ = g·√((u + delta)/(h + delta)); u ← (1 − m)·Δ² + m·u;
//! update = local_rate·Δ.
use tch::{TchError, Tensor};

use super::UpdateHyper;

pub(super) fn compute_update(
    diff: &mut Tensor,
    history: &mut [Tensor],
    local_rate: f32,
    hp: &UpdateHyper,
) -> Result<(), TchError> {
    let m = hp.momentum;
    let delta = hp.delta as f64;
    let (grads, updates) = history.split_at_mut(1);
    let (h, u) = (&mut grads[0], &mut updates[0]);
    let _ = h.f_mul_scalar_(m as f64)?;
    let _ = h.f_add_(&diff.f_square()?.f_mul_scalar((1.0f32 - m) as f64)?)?;
    let ratio = u.f_add_scalar(delta)?.f_div(&h.f_add_scalar(delta)?)?.f_sqrt()?;
    let step = diff.f_mul(&ratio)?;
    let _ = u.f_mul_scalar_(m as f64)?;
    let _ = u.f_add_(&step.f_square()?.f_mul_scalar((1.0f32 - m) as f64)?)?;
    diff.f_copy_(&step.f_mul_scalar(local_rate as f64)?)
}
