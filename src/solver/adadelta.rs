//! AdaDelta (Caffe's AdaDeltaSolver). Two histories per parameter: h (squared
//! gradients, the first N blobs) and u (squared updates, the next N):
//! h ← (1 − m)·g² + m·h; Δ = g·√((u + delta)/(h + delta)); u ← (1 − m)·Δ² + m·u;
//! update = local_rate·Δ.
use tch::{TchError, Tensor};

use super::update::Coefs;

pub(super) fn compute_update(diff: &mut Tensor, history: &mut [Tensor], c: &Coefs) -> Result<(), TchError> {
    let delta = c.hyper.delta as f64;
    let (grads, updates) = history.split_at_mut(1);
    let (h, u) = (&mut grads[0], &mut updates[0]);
    c.momentum.mul_(h)?;
    let _ = h.f_add_(&c.one_minus_momentum.mul(&diff.f_square()?)?)?;
    let ratio = u.f_add_scalar(delta)?.f_div(&h.f_add_scalar(delta)?)?.f_sqrt()?;
    let step = diff.f_mul(&ratio)?;
    c.momentum.mul_(u)?;
    let _ = u.f_add_(&c.one_minus_momentum.mul(&step.f_square()?)?)?;
    diff.f_copy_(&c.rate.mul(&step)?)
}
