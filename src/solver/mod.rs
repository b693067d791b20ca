//! Caffe's solvers: the training loop (`Solver`, after Caffe's Solver and
//! SGDSolver), the update rules (one file each), the learning-rate policies and
//! snapshots. `cli` holds `caffe train` and `caffe test`.
//!
//! Each iteration, as in Caffe: clear the diffs; test when due; forward and
//! backward `iter_size` times (gradients add up); log; then the update: clip the
//! gradients to `clip_gradients` (global L2 norm), divide by `iter_size`, add
//! the regularization (L2: decay·decay_mult·w, L1: decay·decay_mult·sign(w)),
//! compute each rule's update with local_rate = rate·lr_mult, and w ← w − update.
//! All of it runs in the parameters' own float type under `no_grad`.
//!
//! In a data-parallel run (`set_distributed`), as Caffe with several solvers:
//! rank 0's weights are broadcast when solving starts, the gradients are
//! averaged over the ranks (summed, times 1/world) after backward and before
//! the update, only rank 0 tests, logs and snapshots, and the loss shown is
//! the mean over the ranks. Requests (signals) travel with the gradients, so
//! every rank acts on them at the same iteration.
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::dist::Dist;
use crate::error::Context;
use crate::log::progress;
use crate::net::graph::GraphRunner;
use crate::net::{Net, NetSource};
use crate::proto::caffe::{solver_parameter, NetParameter, NetState, Phase, SolverParameter};
use crate::proto::print::to_text;
use crate::proto::{text, upgrade};
use crate::util::format_g;
use crate::{info, warn, Error, Result};

mod adadelta;
mod adagrad;
mod adam;
pub mod cli;
pub mod hdf5_snapshot;
pub mod lr_policy;
mod nesterov;
mod recorded_update;
mod rmsprop;
mod setup;
mod sgd;
pub mod snapshot;
mod step;
mod testing;
mod update;

use lr_policy::LrPolicy;
use snapshot::SnapshotFiles;
pub use step::StepRun;
use testing::loss_note;

/// Caffe's solver types, by their registry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolverType {
    Sgd,
    Nesterov,
    AdaGrad,
    RmsProp,
    AdaDelta,
    Adam,
}

impl SolverType {
    pub const ALL: [SolverType; 6] = [
        SolverType::AdaDelta,
        SolverType::AdaGrad,
        SolverType::Adam,
        SolverType::Nesterov,
        SolverType::RmsProp,
        SolverType::Sgd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SolverType::Sgd => "SGD",
            SolverType::Nesterov => "Nesterov",
            SolverType::AdaGrad => "AdaGrad",
            SolverType::RmsProp => "RMSProp",
            SolverType::AdaDelta => "AdaDelta",
            SolverType::Adam => "Adam",
        }
    }

    /// Caffe's names are case-sensitive, as its solver registry is.
    pub fn from_name(name: &str) -> Option<SolverType> {
        SolverType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// History blobs per learnable parameter in the solverstate (Adam and
    /// AdaDelta keep two: all the first ones, then all the second ones).
    pub fn histories_per_param(self) -> usize {
        match self {
            SolverType::AdaDelta | SolverType::Adam => 2,
            _ => 1,
        }
    }
}

/// What the update rules read besides the gradient and the rate.
#[derive(Debug, Clone, Copy)]
pub struct UpdateHyper {
    /// `momentum`, or the cyclical policies' scheduled momentum (β1 for Adam).
    pub momentum: f32,
    /// Adam's β2.
    pub momentum2: f32,
    pub delta: f32,
    pub rms_decay: f32,
    /// The iteration being applied (Adam's t = iter + 1).
    pub iter: i64,
}

/// What an outside request (a signal) asks of the solver (Caffe's SolverAction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolverAction {
    None,
    /// Finish the iteration, snapshot if `snapshot_after_train`, and stop.
    Stop,
    /// Write a snapshot and go on.
    Snapshot,
}

/// Which of the solver's nets a feeder is asked to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetRole {
    Train,
    Test(usize),
}

/// Called before every forward pass, to feed nets whose inputs come from the
/// caller (Input layers) rather than from data layers.
pub type Feeder = Box<dyn FnMut(NetRole, &mut Net) -> Result<()>>;
pub type ActionFn = Box<dyn FnMut() -> SolverAction>;

/// How to build a solver besides its SolverParameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct SolverOptions {
    /// The device for all nets; `None` follows `solver_mode`/`device_id`.
    pub device: Option<Device>,
    pub text: text::TextOptions,
}

pub struct Solver {
    param: SolverParameter,
    /// The solver file (or a stand-in) for messages.
    file: String,
    kind: SolverType,
    policy: LrPolicy,
    device: Device,
    net: Net,
    test_nets: Vec<Net>,
    history: Vec<Tensor>,
    iter: i64,
    current_step: i32,
    losses: Vec<f32>,
    smoothed_loss: f32,
    loss_log: Vec<(i64, f32)>,
    rate: f32,
    requested_early_exit: bool,
    action: Option<ActionFn>,
    feeder: Option<Feeder>,
    test_scores: Vec<Vec<(String, f32)>>,
    last_snapshot: Option<SnapshotFiles>,
    progress: progress::Progress,
    /// The data-parallel group this solver is a rank of.
    dist: Option<Rc<Dist>>,
    /// The train net's pass in a CUDA graph (`-cuda_graph`).
    graph: Option<GraphRunner>,
    /// The update in a CUDA graph, once the pass replays (`-cuda_graph`).
    update_graph: recorded_update::UpdateGraph,
    /// The eager update reads its coefficients from a tensor (`set_tensor_coefficients`).
    tensor_coefficients: bool,
    /// CAFFE_TCH_CUDA_GRAPH was looked at (by the first run of iterations).
    graph_env_seen: bool,
}

impl Solver {
    // ----- accessors -------------------------------------------------------

    pub fn param(&self) -> &SolverParameter {
        &self.param
    }
    pub fn solver_type(&self) -> SolverType {
        self.kind
    }
    pub fn policy(&self) -> &LrPolicy {
        &self.policy
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn net(&self) -> &Net {
        &self.net
    }
    pub fn net_mut(&mut self) -> &mut Net {
        &mut self.net
    }
    pub fn test_nets(&self) -> &[Net] {
        &self.test_nets
    }
    pub fn test_nets_mut(&mut self) -> &mut [Net] {
        &mut self.test_nets
    }
    /// The train net and the test nets at once (to share weights between them).
    pub fn nets_mut(&mut self) -> (&mut Net, &mut [Net]) {
        (&mut self.net, &mut self.test_nets)
    }
    /// How many nets: the train net and the test nets.
    pub fn net_count(&self) -> usize {
        1 + self.test_nets.len()
    }
    /// Net `i` as the front ends number them: 0 the train net, then the test nets.
    pub fn net_at_mut(&mut self, i: usize) -> Option<&mut Net> {
        match i {
            0 => Some(&mut self.net),
            _ => self.test_nets.get_mut(i - 1),
        }
    }
    /// The number of updates applied so far.
    pub fn iter(&self) -> i64 {
        self.iter
    }
    pub fn current_step(&self) -> i32 {
        self.current_step
    }
    /// The history blobs, in the solverstate's order.
    pub fn history(&self) -> &[Tensor] {
        &self.history
    }
    /// The loss of every iteration trained so far (before its update), by iteration.
    pub fn losses(&self) -> &[(i64, f32)] {
        &self.loss_log
    }
    pub fn smoothed_loss(&self) -> f32 {
        self.smoothed_loss
    }
    /// Each test net's mean outputs from its latest test, in output order.
    pub fn test_scores(&self) -> &[Vec<(String, f32)>] {
        &self.test_scores
    }
    pub fn last_snapshot(&self) -> Option<&SnapshotFiles> {
        self.last_snapshot.as_ref()
    }
    pub fn set_feeder(&mut self, feeder: Feeder) {
        self.feeder = Some(feeder);
    }
    pub fn set_action_function(&mut self, action: ActionFn) {
        self.action = Some(action);
    }
    /// Turns the terminal progress line on or off (on by default when stderr is a terminal).
    pub fn set_progress(&mut self, on: bool) {
        self.progress = progress::Progress::new(on);
    }

    /// Records the train net's pass in a CUDA graph from the next iterations
    /// on (`-cuda_graph`); where it cannot be, says why and trains eagerly.
    pub fn use_cuda_graph(&mut self) {
        self.graph_env_seen = true;
        match GraphRunner::new(&self.net) {
            Ok(runner) => {
                self.graph = Some(runner);
                let why_not = if self.param.iter_size() > 1 {
                    Some("iter_size > 1 copies the gradients it adds up")
                } else if self.param.clip_gradients() >= 0.0 {
                    Some("clip_gradients reads the gradients' norm on the host")
                } else if self.net.debug_info() {
                    Some("debug_info logs each update")
                } else {
                    None
                };
                self.update_graph = match why_not {
                    None => recorded_update::UpdateGraph::Wanted,
                    Some(why) => {
                        info!("solver.cpp:1", "CUDA graph: the update runs eagerly ({why})");
                        recorded_update::UpdateGraph::Off
                    }
                };
            }
            Err(e) => warn!("solver.cpp:1", "{e}; the net trains eagerly"),
        }
    }

    /// Whether the training pass and the update now replay CUDA graphs (`-cuda_graph`).
    pub fn replaying_graphs(&self) -> (bool, bool) {
        let pass = self.graph.as_ref().is_some_and(GraphRunner::is_replaying);
        (pass, matches!(self.update_graph, recorded_update::UpdateGraph::Ready(_)))
    }

    /// Makes this solver a rank of a data-parallel group (before `solve`).
    /// The ranks other than 0 show no progress line.
    pub fn set_distributed(&mut self, dist: Rc<Dist>) {
        if !dist.is_root() {
            self.set_progress(false);
        }
        self.dist = Some(dist);
    }

    /// Rank 0 of a data-parallel run, or a solver on its own: the one that
    /// tests, logs and snapshots.
    pub fn is_root(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.is_root())
    }

    /// Gives every rank rank 0's weights and solver history (Caffe's NCCL
    /// broadcast at the start, after -weights or -snapshot were loaded).
    pub fn broadcast_weights(&mut self) -> Result<()> {
        let Some(dist) = self.dist.clone() else { return Ok(()) };
        let mut tensors: Vec<Tensor> = self.net.learnable_params().iter().map(|p| p.data.shallow_clone()).collect();
        tensors.extend(self.history.iter().map(Tensor::shallow_clone));
        dist.broadcast(&mut tensors, "broadcast of rank 0's weights")
    }

    // ----- nets ------------------------------------------------------------

    fn error(&self, msg: String) -> Error {
        Error::Solver { file: self.file.clone(), msg }
    }

    fn feed(&mut self, role: NetRole) -> Result<()> {
        let Some(feeder) = self.feeder.as_mut() else {
            return Ok(());
        };
        let net = match role {
            NetRole::Train => &mut self.net,
            NetRole::Test(i) => &mut self.test_nets[i],
        };
        feeder(role, net)
    }

    fn requested_action(&mut self) -> SolverAction {
        self.action.as_mut().map(|f| f()).unwrap_or(SolverAction::None)
    }

    // ----- training --------------------------------------------------------

    /// Trains to `max_iter` (Caffe's Solve): then the final snapshot (unless one
    /// was just written), a last display and test when due, and "Optimization Done.".
    pub fn solve(&mut self) -> Result<()> {
        let start_iter = self.solve_begin()?;
        self.step(self.param.max_iter() as i64 - self.iter)?;
        self.solve_end(start_iter)
    }

    /// What [`Solver::solve`] does before its iterations: the opening log lines
    /// and rank 0's weights to every rank. Returns the iteration it starts at,
    /// for [`Solver::solve_end`].
    pub fn solve_begin(&mut self) -> Result<i64> {
        info!("solver.cpp:289", "Solving {}", self.net.name);
        info!("solver.cpp:290", "Learning Rate Policy: {}", self.param.lr_policy());
        if let Some(d) = &self.dist {
            info!(
                "parallel.cpp:1",
                "Data-parallel over {} ranks ({}): each rank reads 1 record in {}; gradients are averaged",
                d.world(),
                d.backend(),
                d.world()
            );
        }
        self.broadcast_weights()?;
        self.requested_early_exit = false;
        Ok(self.iter)
    }

    /// What [`Solver::solve`] does after its iterations (see there).
    pub fn solve_end(&mut self, start_iter: i64) -> Result<()> {
        let snapshot = self.param.snapshot() as i64;
        if self.param.snapshot_after_train() && (snapshot == 0 || self.iter % snapshot != 0) {
            self.snapshot_on_root()?;
        }
        if self.requested_early_exit {
            info!("solver.cpp:307", "Optimization stopped early.");
            return Ok(());
        }
        let display = self.param.display() as i64;
        if display > 0 && self.iter % display == 0 {
            // Forward only: the weights were already updated max_iter times.
            self.net.set_iteration(self.iter);
            self.feed(NetRole::Train)?;
            let mut loss = self.net.forward_inference()? as f32;
            if let Some(d) = &self.dist {
                loss = d.mean_values(&[loss], "mean of the final loss")?[0];
            }
            self.update_smoothed_loss(loss, start_iter, self.param.average_loss() as usize);
            info!("solver.cpp:327", "Iteration {}, loss = {}", self.iter, g(self.smoothed_loss));
        }
        let interval = self.param.test_interval() as i64;
        if interval > 0 && self.iter % interval == 0 && self.is_root() {
            self.test_all()?;
        }
        if let Some(d) = &self.dist {
            let (calls, time) = d.reduce_stats();
            info!(
                "parallel.cpp:1",
                "All-reduce: {calls} calls, {} s in all ({} ms each)",
                g(time.as_secs_f32()),
                g(time.as_secs_f32() * 1000.0 / calls.max(1) as f32)
            );
        }
        info!("solver.cpp:332", "Optimization Done.");
        Ok(())
    }

    // ----- snapshots -------------------------------------------------------

    /// Writes `<prefix>_iter_<N>.caffemodel` and `.solverstate`.
    pub fn snapshot(&mut self) -> Result<SnapshotFiles> {
        let write = if self.param.snapshot_format() == solver_parameter::SnapshotFormat::Hdf5 {
            hdf5_snapshot::write
        } else {
            snapshot::write
        };
        let files = write(
            &self.net,
            &self.history,
            self.iter,
            self.current_step,
            self.param.snapshot_prefix(),
            self.param.snapshot_diff(),
        )?;
        self.last_snapshot = Some(files.clone());
        Ok(files)
    }

    /// Resumes from a `.solverstate`: the iteration, the weights from its
    /// learned_net, the current step and the history (Caffe's Restore).
    pub fn restore(&mut self, state_path: &Path) -> Result<()> {
        let state = snapshot::read_state(state_path)?;
        let bad = |msg: String| Error::Solver { file: state_path.display().to_string(), msg };
        if state.history.len() != self.history.len() {
            return Err(bad(format!(
                "it holds {} history blobs, but a {} solver for this net needs {} ({} per learnable parameter × {}); \
                 was it written by another solver type or for another net?",
                state.history.len(),
                self.kind.name(),
                self.history.len(),
                self.kind.histories_per_param(),
                self.net.learnable_params().len()
            )));
        }
        if let Some(learned) = &state.learned_net {
            let model = snapshot::resolve_learned_net(learned, state_path)?;
            self.net.load_weights(&model)?;
        }
        self.iter = state.iter() as i64;
        self.current_step = state.current_step();
        info!("sgd_solver.cpp:339", "SGDSolver: restoring history");
        for (i, (h, blob)) in self.history.iter_mut().zip(&state.history).enumerate() {
            snapshot::copy_history(h, blob, &format!("history blob {i}")).with_context(|| state_path.display())?;
        }
        // Beyond Caffe (which reads its DB from the first record again): the
        // train data goes on where an uninterrupted run of this solver's shape
        // (ranks × iter_size × batch) would be, so a resumed run continues the
        // trace, also at another number of ranks when that product is kept.
        let batches = (self.iter.max(0) as u64).saturating_mul(self.param.iter_size().max(1) as u64);
        self.net.skip_data_to_batch(batches)?;
        Ok(())
    }
}

/// A blob's values as f32, in order.
fn blob_values(t: Option<&Tensor>) -> Result<Vec<f32>> {
    let Some(t) = t else { return Ok(Vec::new()) };
    crate::util::tensor_values(t)
}

/// A float as C++ streams print it (6 significant digits).
pub fn g(v: f32) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan".into() } else { "nan".into() };
    }
    format_g(v as f64, 6)
}
