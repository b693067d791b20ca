//! RMSProp (Caffe's RMSPropSolver): h ← (1 − rms_decay)·g² + rms_decay·h;
//! update = local_rate·g / (√h + delta).
use tch::{TchError, Tensor};

use super::update::Coefs;

pub(super) fn compute_update(diff: &mut Tensor, history: &mut [Tensor], c: &Coefs) -> Result<(), TchError> {
    let decay = c.hyper.rms_decay;
    let h = &mut history[0];
    let _ = h.f_mul_scalar_(decay as f64)?;
    let _ = h.f_add_(&diff.f_square()?.f_mul_scalar((1.0f32 - decay) as f64)?)?;
    let denom = h.f_sqrt()?.f_add_scalar(c.hyper.delta as f64)?;
    let update = c.rate.mul(&diff.f_div(&denom)?)?;
    diff.f_copy_(&update)
}
