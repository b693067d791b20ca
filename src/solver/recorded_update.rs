//! The update recorded in a CUDA graph (`-cuda_graph`), beside the training
//! pass the net records (`net::graph`): the rules' many small kernels, one
//! replay. It reads the gradients where the recorded pass writes them, so it
//! is recorded once that pass replays, and used while every parameter's data
//! and diff are still the tensors it was recorded on; the coefficients that
//! change with the iteration are a small device tensor filled before each
//! replay. Gradient clipping and debug_info keep the eager update (both log
//! what they find on the host).
use tch::{Device, Tensor};

use super::update::{
    coefficients_as_floats, coefficients_on, update_param, Coef, Coefs, UpdateShared, SHARED_COEFFICIENTS,
};
use super::{Solver, UpdateHyper};
use crate::util::cuda_graph::CudaGraph;
use crate::{info, Error, Result};

/// Where the solver is with its recorded update.
pub(super) enum UpdateGraph {
    /// Not asked for, or given up.
    Off,
    /// Asked for: recorded at the first update after the pass replays.
    Wanted,
    Ready(Box<RecordedUpdate>),
}

pub(super) struct RecordedUpdate {
    graph: CudaGraph,
    /// The coefficients, as [`super::update::coefficient_values`] lists them.
    coefficients: Tensor,
    /// Per parameter: its data and the diff the graph updates.
    data_ptrs: Vec<usize>,
    diffs: Vec<Tensor>,
    /// Per parameter: the diff was cleared when recorded (no gradient reaches
    /// it), and the graph zeroes a diff of its own first.
    own_zero_diff: Vec<bool>,
}

fn ptr(t: &Tensor) -> usize {
    t.data_ptr() as usize
}

impl RecordedUpdate {
    /// Whether the parameters still hold the tensors the graph was recorded on.
    fn matches(&self, params: &[crate::net::Param]) -> bool {
        params.len() == self.diffs.len()
            && params.iter().enumerate().all(|(i, p)| {
                ptr(&p.data) == self.data_ptrs[i]
                    && (self.own_zero_diff[i] || p.diff_ptr() == Some(ptr(&self.diffs[i])))
            })
    }
}

impl Solver {
    /// Runs this iteration's update as a replay of the recorded one (recording
    /// it first if due). False when the eager update must run instead.
    pub(super) fn replay_recorded_update(
        &mut self,
        hp: &UpdateHyper,
        shared: &UpdateShared,
        values: &[f64],
    ) -> Result<bool> {
        if matches!(self.update_graph, UpdateGraph::Off) || !self.graph.as_ref().is_some_and(|g| g.is_replaying()) {
            return Ok(false);
        }
        if matches!(self.update_graph, UpdateGraph::Wanted) {
            match self.record_update(hp, shared, values) {
                Ok(recorded) => {
                    info!("sgd_solver.cpp:1", "CUDA graph: recorded the update of {} parameters", recorded.diffs.len());
                    self.update_graph = UpdateGraph::Ready(Box::new(recorded));
                }
                Err(e) => {
                    info!("sgd_solver.cpp:1", "CUDA graph: the update is not recorded ({e}); it runs eagerly");
                    self.update_graph = UpdateGraph::Off;
                    return Ok(false);
                }
            }
        }
        let UpdateGraph::Ready(rec) = &mut self.update_graph else { return Ok(false) };
        if !rec.matches(self.net.learnable_params()) {
            info!(
                "sgd_solver.cpp:1",
                "CUDA graph: the parameters moved since the update was recorded; it runs eagerly"
            );
            self.update_graph = UpdateGraph::Off;
            return Ok(false);
        }
        let floats = coefficients_as_floats(values)?;
        tch::no_grad(|| rec.coefficients.f_copy_(&floats))?;
        rec.graph.replay()?;
        // The diffs hold the update, as the eager rules leave them.
        for (i, p) in self.net.learnable_params_mut().iter_mut().enumerate() {
            if rec.own_zero_diff[i] {
                p.set_diff(Some(rec.diffs[i].shallow_clone()));
            }
        }
        Ok(true)
    }

    fn record_update(&mut self, hp: &UpdateHyper, shared: &UpdateShared, values: &[f64]) -> Result<RecordedUpdate> {
        let device = self.device;
        let Device::Cuda(_) = device else { return Err(Error::unsupported("the update graph needs a CUDA device")) };
        let (coefficients, views) = coefficients_on(device, values)?;
        let mut graph = CudaGraph::new(device)?;
        let n = self.net.learnable_params().len();
        let own_zero_diff: Vec<bool> = self.net.learnable_params().iter().map(|p| p.diff_ptr().is_none()).collect();
        let history = &self.history;
        let params = self.net.learnable_params_mut();
        let recorded = graph.on_side_stream(|g| {
            g.capture(|| {
                tch::no_grad(|| -> Result<()> {
                    for (i, p) in params.iter_mut().enumerate() {
                        if own_zero_diff[i] {
                            let _ = p.diff_mut().f_zero_()?;
                        }
                        let mut h: Vec<Tensor> = (0..shared.kind.histories_per_param())
                            .map(|k| history[k * n + i].shallow_clone())
                            .collect();
                        let coefs = Coefs {
                            momentum: Coef::Device(&views[0]),
                            one_minus_momentum: Coef::Device(&views[1]),
                            one_plus_momentum: Coef::Device(&views[2]),
                            rate: Coef::Device(&views[SHARED_COEFFICIENTS + i]),
                            hyper: hp,
                        };
                        update_param(p, &mut h, &coefs, shared)?;
                    }
                    Ok(())
                })
            })
        });
        let params = self.net.learnable_params_mut();
        if let Err(e) = recorded {
            // The zeros a failed recording made for cleared diffs were never written.
            for (i, p) in params.iter_mut().enumerate() {
                if own_zero_diff[i] {
                    p.set_diff(None);
                }
            }
            return Err(e);
        }
        let data_ptrs = params.iter().map(|p| ptr(&p.data)).collect();
        let diffs = params.iter_mut().map(|p| p.diff_mut().shallow_clone()).collect();
        Ok(RecordedUpdate { graph, coefficients, data_ptrs, diffs, own_zero_diff })
    }
}
