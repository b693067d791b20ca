//! One parameter update, in Caffe's order: clip the gradients (global L2 norm),
//! divide by `iter_size`, regularize (L2 or L1, times `decay_mult`), then the
//! solver type's rule with local_rate = rate·lr_mult, and w ← w − update.
//!
//! The update rules' `let _ = h.f_mul_scalar_(..)?;` lines: libtorch's in-place
//! ops return an alias of the tensor they changed; `?` has handled the error,
//! and only the unneeded alias is dropped.

use super::*;

impl Solver {
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
        let clip = self.param.clip_gradients();
        let iter_size = self.param.iter_size();
        let weight_decay = self.param.weight_decay();
        let l1 = self.param.regularization_type() == "L1";
        let kind = self.kind;
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
                if iter_size > 1 {
                    let _ = p.diff_mut().f_mul_scalar_((1.0f32 / iter_size as f32) as f64)?;
                }
                let local_decay = weight_decay * p.decay_mult;
                if local_decay != 0.0 {
                    let term = if l1 { p.data.f_sign()? } else { p.data.f_detach()? };
                    let _ = p.diff_mut().f_add_(&term.f_mul_scalar(local_decay as f64)?)?;
                }
                let local_rate = rate * p.lr_mult;
                // Shallow clones share storage: the rules update the history in place.
                let mut h: Vec<Tensor> =
                    (0..kind.histories_per_param()).map(|k| history[k * n + i].shallow_clone()).collect();
                let update = match kind {
                    SolverType::Sgd => sgd::compute_update,
                    SolverType::Nesterov => nesterov::compute_update,
                    SolverType::AdaGrad => adagrad::compute_update,
                    SolverType::RmsProp => rmsprop::compute_update,
                    SolverType::AdaDelta => adadelta::compute_update,
                    SolverType::Adam => adam::compute_update,
                };
                update(p.diff_mut(), &mut h, local_rate, &hp)?;
                let _ = p.data.f_sub_(&p.diff())?;
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
