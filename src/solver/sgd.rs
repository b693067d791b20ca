//! SGD with momentum (Caffe's SGDSolver::ComputeUpdateValue):
//! h ← momentum·h + local_rate·g; the update is h.
use tch::{TchError, Tensor};

use super::UpdateHyper;

pub(super) fn compute_update(
    diff: &mut Tensor,
    history: &mut [Tensor],
    local_rate: f32,
    hp: &UpdateHyper,
) -> Result<(), TchError> {
    let h = &mut history[0];
    let _ = h.f_mul_scalar_(hp.momentum as f64)?;
    let _ = h.f_add_(&diff.f_mul_scalar(local_rate as f64)?)?;
    diff.f_copy_(h)
}
