//! One parameter update, in Caffe's order: clip the gradients (global L2 norm),
//! divide by `iter_size`, regularize (L2 or L1, times `decay_mult`), then the
//! solver type's rule with local_rate = rate·lr_mult, and w ← w − update.
//!
//! The coefficients that change with the iteration (the rate, the momentum
//! of a cyclical policy, Adam's correction) reach the rules as [`Coef`]s,
//! host numbers here and device tensors in a recorded update.
//!
//! The update rules' `let _ = h.f_mul_scalar_(..)?;` lines: libtorch's in-place
//! ops return an alias of the tensor they changed; `?` has handled the error,
//! and only the unneeded alias is dropped.

use tch::TchError;

use super::*;

/// A coefficient of an update rule: a number from the host, or, in a
/// recorded update (`-cuda_graph`, `recorded_update.rs`), a 0-dim float
/// tensor on the device filled with that number before each replay. Both
/// multiply in the tensor's float type, so they give the same values.
#[derive(Clone, Copy)]
pub(super) enum Coef<'a> {
    Host(f64),
    Device(&'a Tensor),
}

impl Coef<'_> {
    pub(super) fn mul(&self, t: &Tensor) -> Result<Tensor, TchError> {
        match self {
            Coef::Host(v) => t.f_mul_scalar(*v),
            Coef::Device(d) => t.f_mul(d),
        }
    }

    pub(super) fn mul_(&self, t: &mut Tensor) -> Result<(), TchError> {
        match self {
            Coef::Host(v) => t.f_mul_scalar_(*v).map(drop),
            Coef::Device(d) => t.f_mul_(d).map(drop),
        }
    }
}

/// What one parameter's rule reads besides its gradient and history: the
/// coefficients that change with the iteration, and the solver's constants.
pub(super) struct Coefs<'a> {
    pub momentum: Coef<'a>,
    pub one_minus_momentum: Coef<'a>,
    pub one_plus_momentum: Coef<'a>,
    /// local_rate = rate·lr_mult (Adam: times its bias correction √(1 − β2^t)/(1 − β1^t)).
    pub rate: Coef<'a>,
    pub hyper: &'a UpdateHyper,
}

/// How many coefficients come before the per-parameter rates in
/// [`coefficient_values`]: momentum, 1 − momentum, 1 + momentum.
pub(super) const SHARED_COEFFICIENTS: usize = 3;

/// This iteration's coefficients as host numbers, computed as Caffe does
/// (float where Caffe's are float): the shared ones, then each parameter's rate.
pub(super) fn coefficient_values(
    kind: SolverType,
    hp: &UpdateHyper,
    rate: f32,
    lr_mults: impl IntoIterator<Item = f32>,
) -> Vec<f64> {
    let m = hp.momentum;
    let correction = if kind == SolverType::Adam {
        // As in Caffe: the powers in double, the correction stored as float.
        let t = (hp.iter + 1) as i32;
        ((1.0 - (hp.momentum2 as f64).powi(t)).sqrt() / (1.0 - (m as f64).powi(t))) as f32
    } else {
        1.0
    };
    let mut values = vec![m as f64, (1.0f32 - m) as f64, 1.0 + m as f64];
    for lr_mult in lr_mults {
        let local_rate = rate * lr_mult;
        values.push(if kind == SolverType::Adam { (local_rate * correction) as f64 } else { local_rate as f64 });
    }
    values
}

/// The coefficients as the float values a device tensor holds (each the
/// rounding of its host number that a multiplication by it makes).
pub(super) fn coefficients_as_floats(values: &[f64]) -> Result<Tensor> {
    let floats: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Ok(Tensor::f_from_slice(&floats)?)
}

/// The coefficients in one tensor on `device`, and a 0-dim view of each (what
/// the rules read as [`Coef::Device`]).
pub(super) fn coefficients_on(device: Device, values: &[f64]) -> Result<(Tensor, Vec<Tensor>)> {
    let all = coefficients_as_floats(values)?.f_to_device(device)?;
    let views = (0..values.len() as i64).map(|k| all.f_select(0, k)).collect::<Result<_, _>>()?;
    Ok((all, views))
}

/// What every parameter's update shares.
pub(super) struct UpdateShared {
    pub kind: SolverType,
    pub iter_size: i32,
    pub weight_decay: f32,
    pub l1: bool,
}

/// One parameter's update after clipping: normalize (iter_size), regularize,
/// the rule, w ← w − update.
pub(super) fn update_param(
    p: &mut crate::net::Param,
    history: &mut [Tensor],
    c: &Coefs,
    s: &UpdateShared,
) -> Result<()> {
    if s.iter_size > 1 {
        let _ = p.diff_mut().f_mul_scalar_((1.0f32 / s.iter_size as f32) as f64)?;
    }
    let local_decay = s.weight_decay * p.decay_mult;
    if local_decay != 0.0 {
        let term = if s.l1 { p.data.f_sign()? } else { p.data.f_detach()? };
        let _ = p.diff_mut().f_add_(&term.f_mul_scalar(local_decay as f64)?)?;
    }
    let rule = match s.kind {
        SolverType::Sgd => sgd::compute_update,
        SolverType::Nesterov => nesterov::compute_update,
        SolverType::AdaGrad => adagrad::compute_update,
        SolverType::RmsProp => rmsprop::compute_update,
        SolverType::AdaDelta => adadelta::compute_update,
        SolverType::Adam => adam::compute_update,
    };
    rule(p.diff_mut(), history, c)?;
    let _ = p.data.f_sub_(&p.diff())?;
    Ok(())
}

impl Solver {
    /// Passes the update's per-iteration coefficients to the rules as a
    /// tensor on the solver's device, as a recorded update (`-cuda_graph`)
    /// does, rather than as numbers. The values are the same; this checks
    /// that path on a machine where no graph records it.
    pub fn set_tensor_coefficients(&mut self, on: bool) {
        self.tensor_coefficients = on;
    }

    /// Caffe's SGDSolver::ApplyUpdate for every rule (`display` logs the
    /// rate); the iteration is not advanced (pycaffe's `apply_update`).
    pub fn apply_update(&mut self, display: bool) -> Result<()> {
        let rate = self.policy.rate(self.iter, &mut self.current_step);
        let momentum = self.policy.momentum(self.iter, self.param.momentum());
        self.rate = rate;
        if display {
            if self.policy.momentum_cycle.is_some() {
                info!("sgd_solver.cpp:112", "Iteration {}, lr = {}, momentum = {}", self.iter, g(rate), g(momentum));
            } else {
                info!("sgd_solver.cpp:112", "Iteration {}, lr = {}", self.iter, g(rate));
            }
        }
        let hp = UpdateHyper {
            momentum,
            momentum2: self.param.momentum2(),
            delta: self.param.delta(),
            rms_decay: self.param.rms_decay(),
            iter: self.iter,
        };
        let lr_mults = self.net.learnable_params().iter().map(|p| p.lr_mult);
        let values = coefficient_values(self.kind, &hp, rate, lr_mults);
        let shared = UpdateShared {
            kind: self.kind,
            iter_size: self.param.iter_size(),
            weight_decay: self.param.weight_decay(),
            l1: self.param.regularization_type() == "L1",
        };
        let clip = self.param.clip_gradients();
        if clip < 0.0 && !self.net.debug_info() && self.replay_recorded_update(&hp, &shared, &values)? {
            return Ok(());
        }
        // The coefficients as a tensor, as a recorded update reads them (`set_tensor_coefficients`).
        let on_device: Vec<Tensor> =
            if self.tensor_coefficients { coefficients_on(self.device, &values)?.1 } else { Vec::new() };
        let coef = |k: usize| on_device.get(k).map(Coef::Device).unwrap_or(Coef::Host(values[k]));
        let history = &self.history;
        let debug = self.net.debug_info();
        let params = self.net.learnable_params_mut();
        let n = params.len();
        tch::no_grad(|| -> Result<()> {
            if clip >= 0.0 {
                let mut sumsq = 0.0f64;
                for p in params.iter() {
                    sumsq += p.diff().f_square()?.f_sum(Kind::Double)?.double_value(&[]);
                }
                let l2norm = sumsq.sqrt() as f32;
                if l2norm > clip {
                    let scale = clip / l2norm;
                    info!(
                        "sgd_solver.cpp:98",
                        "Gradient clipping: scaling down gradients (L2 norm {} > {}) by scale factor {}",
                        g(l2norm),
                        g(clip),
                        g(scale)
                    );
                    for p in params.iter_mut() {
                        let _ = p.diff_mut().f_mul_scalar_(scale as f64)?;
                    }
                }
            }
            for (i, p) in params.iter_mut().enumerate() {
                // Shallow clones share storage: the rules update the history in place.
                let mut h: Vec<Tensor> =
                    (0..shared.kind.histories_per_param()).map(|k| history[k * n + i].shallow_clone()).collect();
                let coefs = Coefs {
                    momentum: coef(0),
                    one_minus_momentum: coef(1),
                    one_plus_momentum: coef(2),
                    rate: coef(SHARED_COEFFICIENTS + i),
                    hyper: &hp,
                };
                update_param(p, &mut h, &coefs, &shared)?;
                if debug {
                    // Caffe's [Update] line names the layer and the blob index.
                    info!(
                        "net.cpp:684",
                        "    [Update] Layer {}, param {} data: {}; diff: {}",
                        p.layer,
                        p.index,
                        g(crate::net::mean_abs(&p.data) as f32),
                        g(crate::net::mean_abs(&p.diff()) as f32)
                    );
                }
            }
            Ok(())
        })
    }
}
