//! Nesterov's accelerated gradient (Caffe's NesterovSolver):
//! h ← momentum·h + local_rate·g; update = (1 + momentum)·h_new − momentum·h_old.
use tch::{TchError, Tensor};

use super::update::Coefs;

pub(super) fn compute_update(diff: &mut Tensor, history: &mut [Tensor], c: &Coefs) -> Result<(), TchError> {
    let h = &mut history[0];
    let previous = h.f_detach_copy()?;
    c.momentum.mul_(h)?;
    let _ = h.f_add_(&c.rate.mul(diff)?)?;
    let update = c.one_plus_momentum.mul(h)?.f_sub(&c.momentum.mul(&previous)?)?;
    diff.f_copy_(&update)
}
