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
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::net::{Net, NetSource};
use crate::proto::caffe::{solver_parameter, NetParameter, NetState, Phase, SolverParameter};
use crate::proto::print::{format_g, to_text};
use crate::proto::{text, upgrade};
use crate::{info, warn, Error, Result};

mod adadelta;
mod adagrad;
mod adam;
pub mod cli;
pub mod lr_policy;
pub mod hdf5_snapshot;
mod nesterov;
pub mod progress;
mod rmsprop;
mod sgd;
pub mod snapshot;

use lr_policy::LrPolicy;
use snapshot::SnapshotFiles;

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
    solver_dir: Option<PathBuf>,
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
}

impl Solver {
    /// Reads a solver prototxt as Caffe does: upgrades the legacy `solver_type`
    /// and defaults `snapshot_prefix` to the file's path without extension.
    pub fn read_param(path: &Path, opts: text::TextOptions) -> Result<SolverParameter> {
        let file = path.display().to_string();
        let parsed = text::read_file_nonempty::<SolverParameter>(path, opts)?;
        for w in &parsed.warnings {
            warn!("text_format.cpp:1", "{w}");
        }
        let mut param = parsed.message;
        let report = upgrade::upgrade_solver(&mut param, &file)?;
        if !report.steps.is_empty() {
            info!("upgrade_proto.cpp:1096", "{file}: {}", report.describe());
        }
        if let Some(msg) = upgrade::default_snapshot_prefix(&mut param, &file) {
            info!("upgrade_proto.cpp:1117", "{msg}");
        }
        Ok(param)
    }

    /// Builds a solver from a solver prototxt.
    pub fn from_file(path: &Path, options: SolverOptions) -> Result<Solver> {
        let param = Solver::read_param(path, options.text)?;
        Solver::new(param, Some(path), options)
    }

    /// Builds the solver: checks the parameters, seeds, builds the train and test
    /// nets, loads `weights` and zeroes the history (Caffe's Solver::Init and
    /// PreSolve). `solver_file` is where the parameters came from, for messages.
    pub fn new(
        mut param: SolverParameter,
        solver_file: Option<&Path>,
        options: SolverOptions,
    ) -> Result<Solver> {
        let file = solver_file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<solver>".into());
        upgrade::upgrade_solver(&mut param, &file)?;
        let bad = |msg: String| Error::Solver {
            file: file.clone(),
            msg,
        };
        info!(
            "solver.cpp:45",
            "Initializing solver from parameters: \n{}",
            to_text(&param).trim_end()
        );

        let kind = SolverType::from_name(param.r#type()).ok_or_else(|| {
            bad(format!(
                "Unknown solver type: {} (known types: {})",
                param.r#type(),
                SolverType::ALL.map(|t| t.name()).join(", ")
            ))
        })?;
        check_param(&param, kind).map_err(&bad)?;
        let policy = LrPolicy::from_param(&param).map_err(&bad)?;
        if param.snapshot() > 0 || param.snapshot_after_train() {
            if param.snapshot() > 0 && param.snapshot_prefix.is_none() {
                return Err(bad(
                    "In solver params, snapshot is specified but snapshot_prefix is not".into(),
                ));
            }
            snapshot::check_writable(param.snapshot_prefix()).map_err(&bad)?;
        }
        if param.random_seed() >= 0 {
            tch::manual_seed(param.random_seed());
        }
        let device = options.device.unwrap_or_else(|| device_from_param(&param));

        let mut solver = Solver {
            file: file.clone(),
            solver_dir: solver_file.map(|p| p.parent().unwrap_or(Path::new("")).to_path_buf()),
            kind,
            policy,
            device,
            net: placeholder_net()?,
            test_nets: Vec::new(),
            history: Vec::new(),
            iter: 0,
            current_step: 0,
            losses: Vec::new(),
            smoothed_loss: 0.0,
            loss_log: Vec::new(),
            rate: 0.0,
            requested_early_exit: false,
            action: None,
            feeder: None,
            test_scores: Vec::new(),
            last_snapshot: None,
            progress: progress::Progress::for_stderr(),
            param,
        };
        solver.net = solver.init_train_net(options.text)?;
        solver.test_nets = solver.init_test_nets(options.text)?;
        let weights: Vec<String> = solver.param.weights.clone();
        for list in &weights {
            for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                let path = solver.resolve(w, "weights file")?;
                info!("solver.cpp:113", "Finetuning from {w}");
                solver.net.load_weights(&path)?;
                for t in &mut solver.test_nets {
                    t.load_weights(&path)?;
                }
            }
        }
        info!("solver.cpp:57", "Solver scaffolding done.");

        let per_param = kind.histories_per_param();
        let mut history = Vec::new();
        for _ in 0..per_param {
            for p in solver.net.learnable_params() {
                history.push(Tensor::f_zeros(
                    p.data.size().as_slice(),
                    (Kind::Float, device),
                )?);
            }
        }
        solver.history = history;
        solver.test_scores = vec![Vec::new(); solver.test_nets.len()];
        Ok(solver)
    }

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
    /// The rate used by the last update.
    pub fn last_rate(&self) -> f32 {
        self.rate
    }
    /// Each test net's mean outputs from its latest test, in output order.
    pub fn test_scores(&self) -> &[Vec<(String, f32)>] {
        &self.test_scores
    }
    pub fn last_snapshot(&self) -> Option<&SnapshotFiles> {
        self.last_snapshot.as_ref()
    }
    /// Whether a Stop request ended the last `solve`/`step` early.
    pub fn stopped_early(&self) -> bool {
        self.requested_early_exit
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

    // ----- nets ------------------------------------------------------------

    /// A path named in the solver: relative to the working directory, as in
    /// Caffe. When missing, the error also names the solver's folder.
    fn resolve(&self, name: &str, what: &str) -> Result<PathBuf> {
        let p = PathBuf::from(name);
        if p.exists() {
            return Ok(p);
        }
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let mut msg = format!("{what} '{name}' not found (paths in a solver are relative to the working directory, {cwd}");
        if let Some(dir) = &self.solver_dir {
            msg.push_str(&format!("; the solver file is in '{}'", dir.display()));
            let beside = dir.join(&p);
            if !dir.as_os_str().is_empty() && beside.exists() {
                msg.push_str(&format!(
                    ", where '{}' exists: run from there or fix the path",
                    beside.display()
                ));
            }
        }
        msg.push(')');
        Err(Error::Solver {
            file: self.file.clone(),
            msg,
        })
    }

    fn read_net_file(
        &self,
        name: &str,
        opts: text::TextOptions,
    ) -> Result<(NetParameter, NetSource)> {
        let path = self.resolve(name, "net file")?;
        let parsed = text::read_file_nonempty::<NetParameter>(&path, opts)?;
        for w in &parsed.warnings {
            warn!("text_format.cpp:1", "{w}");
        }
        let source = NetSource::from_parsed(
            &path.display().to_string(),
            &parsed.message,
            &parsed.source_map,
        );
        Ok((parsed.message, source))
    }

    fn init_train_net(&self, opts: text::TextOptions) -> Result<Net> {
        let p = &self.param;
        let count = [
            p.net.is_some(),
            p.net_param.is_some(),
            p.train_net.is_some(),
            p.train_net_param.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        let fields = "net, net_param, train_net, train_net_param";
        if count == 0 {
            return Err(self.error(format!(
                "SolverParameter must specify a train net using one of these fields: {fields}"
            )));
        }
        if count > 1 {
            return Err(self.error(format!(
                "SolverParameter must not contain more than one of these fields specifying a train_net: {fields}"
            )));
        }
        let (net_param, source) = if let Some(np) = &p.train_net_param {
            info!(
                "solver.cpp:85",
                "Creating training net specified in train_net_param."
            );
            (
                np.clone(),
                NetSource::new(format!("{} (train_net_param)", self.file)),
            )
        } else if let Some(f) = &p.train_net {
            info!(
                "solver.cpp:89",
                "Creating training net from train_net file: {f}"
            );
            self.read_net_file(f, opts)?
        } else if let Some(np) = &p.net_param {
            info!(
                "solver.cpp:95",
                "Creating training net specified in net_param."
            );
            (
                np.clone(),
                NetSource::new(format!("{} (net_param)", self.file)),
            )
        } else {
            let f = p.net();
            info!("solver.cpp:102", "Creating training net from net file: {f}");
            self.read_net_file(f, opts)?
        };
        // Solver default (TRAIN), then the net's own state, then train_state.
        let mut state = NetState {
            phase: Some(Phase::Train as i32),
            ..Default::default()
        };
        merge_state(&mut state, net_param.state.as_ref());
        merge_state(&mut state, p.train_state.as_ref());
        let mut net_param = net_param;
        net_param.state = Some(state.clone());
        // The solver's debug_info turns on the train net's (as Caffe does).
        if p.debug_info() {
            net_param.debug_info = Some(true);
        }
        Net::from_param_upgrading(net_param, &state, source, self.device)
    }

    fn init_test_nets(&self, opts: text::TextOptions) -> Result<Vec<Net>> {
        let p = &self.param;
        let generic = p.net.is_some() as usize + p.net_param.is_some() as usize;
        if generic > 1 {
            return Err(self.error("Both net_param and net_file may not be specified.".into()));
        }
        let specific = p.test_net_param.len() + p.test_net.len();
        let test_iters = p.test_iter.len();
        if (generic > 0 && test_iters < specific) || (generic == 0 && test_iters != specific) {
            return Err(self.error(format!(
                "test_iter must be specified for each test network ({specific} test net(s) given, {test_iters} test_iter)"
            )));
        }
        let instances = if generic > 0 { test_iters } else { specific };
        if !p.test_state.is_empty() && p.test_state.len() != instances {
            return Err(self.error(format!(
                "test_state must be unspecified or specified once per test net ({instances} test net(s), {} test_state)",
                p.test_state.len()
            )));
        }
        if instances > 0 && p.test_interval() <= 0 {
            return Err(self.error(format!(
                "test_interval must be > 0 when there are test nets (got {}; {instances} test net(s) from test_iter)",
                p.test_interval()
            )));
        }
        let mut specs: Vec<(String, NetParameter, NetSource)> = Vec::new();
        for np in &p.test_net_param {
            specs.push((
                "test_net_param".into(),
                np.clone(),
                NetSource::new(format!("{} (test_net_param)", self.file)),
            ));
        }
        for f in &p.test_net {
            let (np, src) = self.read_net_file(f, opts)?;
            specs.push((format!("test_net file: {f}"), np, src));
        }
        let remaining = instances - specs.len();
        if let Some(np) = &p.net_param {
            for _ in 0..remaining {
                specs.push((
                    "net_param".into(),
                    np.clone(),
                    NetSource::new(format!("{} (net_param)", self.file)),
                ));
            }
        }
        if let Some(f) = &p.net {
            for _ in 0..remaining {
                let (np, src) = self.read_net_file(f, opts)?;
                specs.push((format!("net file: {f}"), np, src));
            }
        }
        let mut nets = Vec::new();
        for (i, (what, mut np, source)) in specs.into_iter().enumerate() {
            let mut state = NetState {
                phase: Some(Phase::Test as i32),
                ..Default::default()
            };
            merge_state(&mut state, np.state.as_ref());
            merge_state(&mut state, p.test_state.get(i));
            np.state = Some(state.clone());
            info!(
                "solver.cpp:190",
                "Creating test net (#{i}) specified by {what}"
            );
            nets.push(Net::from_param_upgrading(np, &state, source, self.device)?);
        }
        Ok(nets)
    }

    fn error(&self, msg: String) -> Error {
        Error::Solver {
            file: self.file.clone(),
            msg,
        }
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
        self.action
            .as_mut()
            .map(|f| f())
            .unwrap_or(SolverAction::None)
    }

    // ----- training --------------------------------------------------------

    /// Trains to `max_iter` (Caffe's Solve): then the final snapshot (unless one
    /// was just written), a last display and test when due, and "Optimization Done.".
    pub fn solve(&mut self) -> Result<()> {
        info!("solver.cpp:289", "Solving {}", self.net.name);
        info!(
            "solver.cpp:290",
            "Learning Rate Policy: {}",
            self.param.lr_policy()
        );
        self.requested_early_exit = false;
        let start_iter = self.iter;
        let remaining = self.param.max_iter() as i64 - self.iter;
        self.step(remaining)?;
        let snapshot = self.param.snapshot() as i64;
        if self.param.snapshot_after_train() && (snapshot == 0 || self.iter % snapshot != 0) {
            self.snapshot()?;
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
            let loss = self.net.forward_inference()? as f32;
            self.update_smoothed_loss(loss, start_iter, self.param.average_loss() as usize);
            info!(
                "solver.cpp:327",
                "Iteration {}, loss = {}",
                self.iter,
                g(self.smoothed_loss)
            );
        }
        let interval = self.param.test_interval() as i64;
        if interval > 0 && self.iter % interval == 0 {
            self.test_all()?;
        }
        info!("solver.cpp:332", "Optimization Done.");
        Ok(())
    }

    /// Runs `iters` iterations (Caffe's Step).
    pub fn step(&mut self, iters: i64) -> Result<()> {
        let start_iter = self.iter;
        let stop_iter = self.iter + iters;
        let average_loss = self.param.average_loss() as usize;
        let display_every = self.param.display() as i64;
        let test_interval = self.param.test_interval() as i64;
        let iter_size = self.param.iter_size();
        self.losses.clear();
        self.smoothed_loss = 0.0;
        let mut timer = Instant::now();
        let mut iterations_last = self.iter;
        self.progress.start(self.iter);

        while self.iter < stop_iter {
            self.net.clear_param_diffs();
            if test_interval > 0
                && self.iter % test_interval == 0
                && (self.iter > 0 || self.param.test_initialization())
            {
                self.test_all()?;
                if self.requested_early_exit {
                    break;
                }
            }
            let display = display_every > 0 && self.iter % display_every == 0;
            let mut loss = 0.0f32;
            for _ in 0..iter_size {
                self.net.set_iteration(self.iter);
                self.feed(NetRole::Train)?;
                loss += self.net.forward()? as f32;
                self.net.backward()?;
            }
            loss /= iter_size as f32;
            self.update_smoothed_loss(loss, start_iter, average_loss);
            self.loss_log.push((self.iter, loss));
            if display {
                let lapse = timer.elapsed().as_secs_f32();
                let per_s =
                    (self.iter - iterations_last) as f32 / if lapse > 0.0 { lapse } else { 1.0 };
                info!(
                    "solver.cpp:239",
                    "Iteration {} ({} iter/s, {}s/{} iters), loss = {}",
                    self.iter,
                    g(per_s),
                    g(lapse),
                    display_every,
                    g(self.smoothed_loss)
                );
                timer = Instant::now();
                iterations_last = self.iter;
                self.log_outputs()?;
            }
            if !loss.is_finite() {
                return Err(self.stop_on_nonfinite(loss));
            }
            self.apply_update(display)?;
            self.iter += 1;
            self.progress.update(
                self.iter,
                self.param.max_iter() as i64,
                self.smoothed_loss,
                self.rate,
            );

            let request = self.requested_action();
            let snapshot = self.param.snapshot() as i64;
            if (snapshot > 0 && self.iter % snapshot == 0) || request == SolverAction::Snapshot {
                self.snapshot()?;
            }
            if request == SolverAction::Stop {
                self.requested_early_exit = true;
                break;
            }
        }
        self.progress.finish();
        Ok(())
    }

    /// Writes a snapshot of the current weights, then fails naming the iteration.
    fn stop_on_nonfinite(&mut self, loss: f32) -> Error {
        self.progress.finish();
        let written = match self.snapshot() {
            Ok(files) => format!(
                "the weights before this iteration are in {}",
                files.model.display()
            ),
            Err(e) => format!("the snapshot could not be written either: {e}"),
        };
        self.error(format!(
            "Iteration {}: the loss is {} (not finite); training stopped ({written}). Lower base_lr, or set clip_gradients",
            self.iter,
            if loss.is_nan() { "NaN".to_string() } else { g(loss) }
        ))
    }

    /// The train net's outputs, as Caffe's display prints them.
    fn log_outputs(&self) -> Result<()> {
        let mut index = 0;
        for name in self.net.output_blob_names() {
            let weight = self.net.blob_loss_weight(name);
            for v in blob_values(self.net.blob(name))? {
                info!(
                    "solver.cpp:258",
                    "    Train net output #{index}: {name} = {}{}",
                    g(v),
                    loss_note(weight, v)
                );
                index += 1;
            }
        }
        Ok(())
    }

    fn update_smoothed_loss(&mut self, loss: f32, start_iter: i64, average_loss: usize) {
        if self.losses.len() < average_loss {
            self.losses.push(loss);
            let size = self.losses.len() as f32;
            self.smoothed_loss = (self.smoothed_loss * (size - 1.0) + loss) / size;
        } else {
            let idx = ((self.iter - start_iter) as usize) % average_loss;
            self.smoothed_loss += (loss - self.losses[idx]) / average_loss as f32;
            self.losses[idx] = loss;
        }
    }

    /// Caffe's SGDSolver::ApplyUpdate for every rule.
    fn apply_update(&mut self, display: bool) -> Result<()> {
        let rate = self.policy.rate(self.iter, &mut self.current_step);
        let momentum = self.policy.momentum(self.iter, self.param.momentum());
        self.rate = rate;
        if display {
            if self.policy.momentum_cycle.is_some() {
                info!(
                    "sgd_solver.cpp:112",
                    "Iteration {}, lr = {}, momentum = {}",
                    self.iter,
                    g(rate),
                    g(momentum)
                );
            } else {
                info!(
                    "sgd_solver.cpp:112",
                    "Iteration {}, lr = {}",
                    self.iter,
                    g(rate)
                );
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
                    sumsq += p.diff.f_square()?.f_sum(Kind::Double)?.double_value(&[]);
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
                        let _ = p.diff.f_mul_scalar_(scale as f64)?;
                    }
                }
            }
            for (i, p) in params.iter_mut().enumerate() {
                if iter_size > 1 {
                    let _ = p.diff.f_mul_scalar_((1.0f32 / iter_size as f32) as f64)?;
                }
                let local_decay = weight_decay * p.decay_mult;
                if local_decay != 0.0 {
                    let term = if l1 {
                        p.data.f_sign()?
                    } else {
                        p.data.f_detach()?
                    };
                    let _ = p.diff.f_add_(&term.f_mul_scalar(local_decay as f64)?)?;
                }
                let local_rate = rate * p.lr_mult;
                // Shallow clones share storage: the rules update the history in place.
                let mut h: Vec<Tensor> = (0..kind.histories_per_param())
                    .map(|k| history[k * n + i].shallow_clone())
                    .collect();
                let update = match kind {
                    SolverType::Sgd => sgd::compute_update,
                    SolverType::Nesterov => nesterov::compute_update,
                    SolverType::AdaGrad => adagrad::compute_update,
                    SolverType::RmsProp => rmsprop::compute_update,
                    SolverType::AdaDelta => adadelta::compute_update,
                    SolverType::Adam => adam::compute_update,
                };
                update(&mut p.diff, &mut h, local_rate, &hp)?;
                let _ = p.data.f_sub_(&p.diff)?;
                if debug {
                    // Caffe's [Update] line names the layer and the blob index.
                    let (layer, index) = p.display.rsplit_once('[').unwrap_or((p.display.as_str(), "0]"));
                    info!(
                        "net.cpp:684",
                        "    [Update] Layer {layer}, param {} data: {}; diff: {}",
                        index.trim_end_matches(']'),
                        g(crate::net::mean_abs(&p.data) as f32),
                        g(crate::net::mean_abs(&p.diff) as f32)
                    );
                }
            }
            Ok(())
        })
    }

    // ----- testing ---------------------------------------------------------

    /// Tests every test net (Caffe's TestAll).
    pub fn test_all(&mut self) -> Result<()> {
        for i in 0..self.test_nets.len() {
            if self.requested_early_exit {
                break;
            }
            self.test(i)?;
        }
        Ok(())
    }

    /// Runs test net `i` for its `test_iter` batches with the train net's
    /// current weights, and logs the mean of each output.
    pub fn test(&mut self, i: usize) -> Result<()> {
        info!(
            "solver.cpp:347",
            "Iteration {}, Testing net (#{i})", self.iter
        );
        share_trained_layers(&self.net, &mut self.test_nets[i])?;
        let test_iter = self.param.test_iter.get(i).copied().unwrap_or(0) as i64;
        let compute_loss = self.param.test_compute_loss();
        let mut scores: Vec<f32> = Vec::new();
        let mut score_names: Vec<(String, f32)> = Vec::new();
        let mut loss = 0.0f32;
        for k in 0..test_iter {
            // Serve requests until none is left (a Stop ends the test).
            loop {
                match self.requested_action() {
                    SolverAction::None => break,
                    SolverAction::Snapshot => {
                        self.snapshot()?;
                    }
                    SolverAction::Stop => {
                        self.requested_early_exit = true;
                        break;
                    }
                }
            }
            if self.requested_early_exit {
                break;
            }
            self.test_nets[i].set_iteration(self.iter);
            self.feed(NetRole::Test(i))?;
            let iter_loss = self.test_nets[i].forward_inference()? as f32;
            if compute_loss {
                loss += iter_loss;
            }
            let net = &self.test_nets[i];
            let mut idx = 0;
            for name in net.output_blob_names() {
                for v in blob_values(net.blob(name))? {
                    if k == 0 {
                        scores.push(v);
                        score_names.push((name.to_string(), net.blob_loss_weight(name)));
                    } else if let Some(s) = scores.get_mut(idx) {
                        *s += v;
                    }
                    idx += 1;
                }
            }
        }
        if self.requested_early_exit {
            info!("solver.cpp:375", "Test interrupted.");
            return Ok(());
        }
        if compute_loss {
            loss /= test_iter as f32;
            info!("solver.cpp:381", "Test loss: {}", g(loss));
        }
        let mut means = Vec::new();
        for (j, (score, (name, weight))) in scores.iter().zip(&score_names).enumerate() {
            let mean = score / test_iter as f32;
            info!(
                "solver.cpp:414",
                "    Test net output #{j}: {name} = {}{}",
                g(mean),
                loss_note(*weight, mean)
            );
            means.push((name.clone(), mean));
        }
        self.test_scores[i] = means;
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
        let bad = |msg: String| Error::Solver {
            file: state_path.display().to_string(),
            msg,
        };
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
            snapshot::copy_history(h, blob, &format!("history blob {i}")).map_err(&bad)?;
        }
        Ok(())
    }
}

/// Checks Caffe makes (as CHECK failures) and a few it leaves to chance.
fn check_param(p: &SolverParameter, kind: SolverType) -> std::result::Result<(), String> {
    if p.average_loss() < 1 {
        return Err(format!(
            "average_loss must be at least 1, got {}",
            p.average_loss()
        ));
    }
    if p.iter_size() < 1 {
        return Err(format!(
            "iter_size must be at least 1, got {}",
            p.iter_size()
        ));
    }
    for (name, v) in [
        ("max_iter", p.max_iter()),
        ("display", p.display()),
        ("test_interval", p.test_interval()),
        ("snapshot", p.snapshot()),
    ] {
        if v < 0 {
            return Err(format!("{name} must be ≥ 0, got {v}"));
        }
    }
    if let Some((i, v)) = p.test_iter.iter().enumerate().find(|(_, &v)| v < 0) {
        return Err(format!("test_iter must be ≥ 0, got {v} (test net #{i})"));
    }
    if !matches!(p.regularization_type(), "L1" | "L2") {
        return Err(format!(
            "Unknown regularization type: {} (use L1 or L2)",
            p.regularization_type()
        ));
    }
    match kind {
        SolverType::AdaGrad if p.momentum() != 0.0 => {
            return Err("Momentum cannot be used with AdaGrad.".into())
        }
        SolverType::RmsProp if p.momentum() != 0.0 => {
            return Err("Momentum cannot be used with RMSProp.".into())
        }
        SolverType::RmsProp if !(0.0..1.0).contains(&p.rms_decay()) => {
            return Err(format!(
                "rms_decay should lie between 0 and 1, got {}",
                p.rms_decay()
            ))
        }
        _ => {}
    }
    Ok(())
}

/// protobuf MergeFrom for NetState: set fields override, stages append.
fn merge_state(into: &mut NetState, from: Option<&NetState>) {
    let Some(from) = from else { return };
    if from.phase.is_some() {
        into.phase = from.phase;
    }
    if from.level.is_some() {
        into.level = from.level;
    }
    into.stage.extend(from.stage.iter().cloned());
}

/// `solver_mode: GPU` (written in the file) selects `device_id` when CUDA is
/// there; otherwise the CPU, with a warning.
fn device_from_param(p: &SolverParameter) -> Device {
    if p.solver_mode.is_some() && p.solver_mode() == solver_parameter::SolverMode::Gpu {
        let id = p.device_id().max(0) as usize;
        if (id as i64) < tch::Cuda::device_count() {
            return Device::Cuda(id);
        }
        warn!(
            "caffe.cpp:190",
            "solver_mode is GPU but CUDA device {id} is not available; using the CPU"
        );
    }
    Device::Cpu
}

/// Gives the test net the train net's current weights, by layer name (Caffe's
/// ShareTrainedLayersWith; here a copy).
fn share_trained_layers(train: &Net, test: &mut Net) -> Result<()> {
    let names: Vec<String> = test.layer_names().iter().map(|s| s.to_string()).collect();
    tch::no_grad(|| -> Result<()> {
        for name in &names {
            let (Some(src), Some(dst)) = (train.layer_blobs(name), test.layer_blobs(name)) else {
                continue;
            };
            if src.len() != dst.len() {
                return Err(Error::msg(format!(
                    "layer '{name}' has {} blobs in the train net but {} in the test net",
                    src.len(),
                    dst.len()
                )));
            }
            for (j, (s, d)) in src.iter().zip(dst).enumerate() {
                if s.size() != d.size() {
                    return Err(Error::msg(format!(
                        "layer '{name}' param {j}: shape {:?} in the train net, {:?} in the test net",
                        s.size(),
                        d.size()
                    )));
                }
                d.shallow_clone().f_copy_(s)?;
            }
        }
        Ok(())
    })
}

/// A blob's values as f32, in order.
fn blob_values(t: Option<&Tensor>) -> Result<Vec<f32>> {
    let Some(t) = t else { return Ok(Vec::new()) };
    let flat = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_view([-1])?;
    Ok(Vec::<f32>::try_from(&flat)?)
}

/// ` (* w = w·v loss)` for loss outputs, as Caffe prints it.
fn loss_note(weight: f32, value: f32) -> String {
    if weight != 0.0 {
        format!(" (* {} = {} loss)", g(weight), g(weight * value))
    } else {
        String::new()
    }
}

/// A float as C++ streams print it (6 significant digits).
pub fn g(v: f32) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    format_g(v as f64, 6)
}

/// An empty net, so `Solver` can be built field by field before its nets exist.
fn placeholder_net() -> Result<Net> {
    Net::new(
        &NetParameter::default(),
        &NetState::default(),
        NetSource::new("<none>"),
        Device::Cpu,
    )
}
