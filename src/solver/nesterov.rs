//! Nesterov's accelerated gradient (Caffe's NesterovSolver):
//! h ← momentum·h + local_rate·g; update = (1 + momentum)·h_new − momentum·h_old.
use tch::{TchError, Tensor};

use super::UpdateHyper;

pub(super) fn compute_update(
    diff: &mut Tensor,
    history: &mut [Tensor],
    local_rate: f32,
    hp: &UpdateHyper,
) -> Result<(), TchError> {
    let m = hp.momentum as f64;
    let h = &mut history[0];
    let previous = h.f_detach_copy()?;
    let _ = h.f_mul_scalar_(m)?;
    let _ = h.f_add_(&diff.f_mul_scalar(local_rate as f64)?)?;
    let update = h.f_mul_scalar(1.0 + m)?.f_sub(&previous.f_mul_scalar(m)?)?;
    diff.f_copy_(&update)
}
