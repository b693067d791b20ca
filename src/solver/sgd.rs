//! SGD with momentum (Caffe's SGDSolver::ComputeUpdateValue):
//! h ← momentum·h + local_rate·g; the update is h.
use tch::{TchError, Tensor};

use super::update::Coefs;

pub(super) fn compute_update(diff: &mut Tensor, history: &mut [Tensor], c: &Coefs) -> Result<(), TchError> {
    let h = &mut history[0];
    c.momentum.mul_(h)?;
    let _ = h.f_add_(&c.rate.mul(diff)?)?;
    diff.f_copy_(h)
}
