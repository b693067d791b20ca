//! AdaGrad (Caffe's AdaGradSolver): h ← h + g²; update = local_rate·g / (√h + delta).
use tch::{TchError, Tensor};

use super::update::Coefs;

pub(super) fn compute_update(diff: &mut Tensor, history: &mut [Tensor], c: &Coefs) -> Result<(), TchError> {
    let h = &mut history[0];
    let _ = h.f_add_(&diff.f_square()?)?;
    let denom = h.f_sqrt()?.f_add_scalar(c.hyper.delta as f64)?;
    let update = c.rate.mul(&diff.f_div(&denom)?)?;
    diff.f_copy_(&update)
}
