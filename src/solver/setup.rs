//! Building a solver from a SolverParameter: checking the fields as Caffe does,
//! resolving the net files, creating the train and test nets with their
//! NetStates, and the device.

use super::*;
use crate::error::Context;
use crate::util::comma_list;
use crate::{Error, Result};

impl Solver {
    /// Reads a solver prototxt as Caffe does: upgrades the legacy `solver_type`
    /// and defaults `snapshot_prefix` to the file's path without extension.
    pub fn read_param(path: &Path, opts: text::TextOptions) -> Result<SolverParameter> {
        let parsed = text::read_file_nonempty::<SolverParameter>(path, opts)?;
        Solver::upgraded_param(parsed, &path.display().to_string(), true)
    }

    /// Parses solver parameters from prototxt text (pycaffe's
    /// `get_solver_from_string`); `origin` names it in messages. As in Caffe,
    /// a missing `snapshot_prefix` stays empty (there is no file to name it after).
    pub fn parse_param(text_format: &str, origin: &str, opts: text::TextOptions) -> Result<SolverParameter> {
        let parsed = text::parse_str::<SolverParameter>(text_format, origin, opts)?;
        Solver::upgraded_param(parsed, origin, false)
    }

    fn upgraded_param(
        parsed: text::Parsed<SolverParameter>,
        file: &str,
        default_prefix: bool,
    ) -> Result<SolverParameter> {
        for w in &parsed.warnings {
            warn!("text_format.cpp:1", "{w}");
        }
        let mut param = parsed.message;
        let report = upgrade::upgrade_solver(&mut param, file)?;
        if !report.steps.is_empty() {
            info!("upgrade_proto.cpp:1096", "{file}: {}", report.describe());
        }
        if default_prefix {
            if let Some(msg) = upgrade::default_snapshot_prefix(&mut param, file) {
                info!("upgrade_proto.cpp:1117", "{msg}");
            }
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
    pub fn new(mut param: SolverParameter, solver_file: Option<&Path>, options: SolverOptions) -> Result<Solver> {
        let file = solver_file.map(|p| p.display().to_string()).unwrap_or_else(|| "<solver>".into());
        upgrade::upgrade_solver(&mut param, &file)?;
        let bad = |msg: String| Error::Solver { file: file.clone(), msg };
        info!("solver.cpp:45", "Initializing solver from parameters: \n{}", to_text(&param).trim_end());

        let kind = SolverType::from_name(param.r#type()).ok_or_else(|| {
            bad(format!(
                "Unknown solver type: {} (known types: {})",
                param.r#type(),
                SolverType::ALL.map(|t| t.name()).join(", ")
            ))
        })?;
        check_param(&param, kind).context(&file)?;
        let policy = LrPolicy::from_param(&param).context(&file)?;
        if param.snapshot() > 0 || param.snapshot_after_train() {
            if param.snapshot() > 0 && param.snapshot_prefix.is_none() {
                return Err(bad("In solver params, snapshot is specified but snapshot_prefix is not".into()));
            }
            snapshot::check_writable(param.snapshot_prefix()).context(&file)?;
        }
        if param.random_seed() >= 0 {
            crate::layers::set_random_seed(param.random_seed());
        }
        let device = options.device.unwrap_or_else(|| device_from_param(&param));
        let solver_dir = solver_file.map(|p| p.parent().unwrap_or(Path::new("")).to_path_buf());

        let plan = NetPlan { param: &param, file: &file, solver_dir: solver_dir.as_deref(), device };
        let mut net = plan.train_net(options.text)?;
        let mut test_nets = plan.test_nets(options.text)?;
        for list in &param.weights {
            for w in comma_list(list) {
                let path = plan.resolve(&w, "weights file")?;
                info!("solver.cpp:113", "Finetuning from {w}");
                net.load_weights(&path)?;
                for t in &mut test_nets {
                    t.load_weights(&path)?;
                }
            }
        }
        info!("solver.cpp:57", "Solver scaffolding done.");

        let per_param = kind.histories_per_param();
        let mut history = Vec::new();
        for _ in 0..per_param {
            for p in net.learnable_params() {
                history.push(Tensor::f_zeros(p.data.size().as_slice(), (Kind::Float, device))?);
            }
        }
        let test_scores = vec![Vec::new(); test_nets.len()];
        Ok(Solver {
            file,
            kind,
            policy,
            device,
            net,
            test_nets,
            history,
            iter: 0,
            current_step: 0,
            losses: Vec::new(),
            smoothed_loss: 0.0,
            loss_log: Vec::new(),
            rate: 0.0,
            requested_early_exit: false,
            action: None,
            feeder: None,
            test_scores,
            last_snapshot: None,
            progress: progress::Progress::for_stderr(),
            dist: None,
            graph: None,
            update_graph: super::recorded_update::UpdateGraph::Off,
            tensor_coefficients: false,
            graph_env_seen: false,
            param,
        })
    }
}

/// What building the solver's nets needs, before the solver exists: the
/// parameters, the file they came from (for messages and for paths relative
/// to it) and the device.
struct NetPlan<'a> {
    param: &'a SolverParameter,
    file: &'a str,
    solver_dir: Option<&'a Path>,
    device: Device,
}

impl NetPlan<'_> {
    fn error(&self, msg: String) -> Error {
        Error::Solver { file: self.file.to_string(), msg }
    }

    /// A path named in the solver: relative to the working directory, as in
    /// Caffe. When missing, the error also names the solver's folder.
    fn resolve(&self, name: &str, what: &str) -> Result<PathBuf> {
        let p = PathBuf::from(name);
        if p.exists() {
            return Ok(p);
        }
        let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
        let mut msg =
            format!("{what} '{name}' not found (paths in a solver are relative to the working directory, {cwd}");
        if let Some(dir) = self.solver_dir {
            msg.push_str(&format!("; the solver file is in '{}'", dir.display()));
            let beside = dir.join(&p);
            if !dir.as_os_str().is_empty() && beside.exists() {
                msg.push_str(&format!(", where '{}' exists: run from there or fix the path", beside.display()));
            }
        }
        msg.push(')');
        Err(self.error(msg))
    }

    fn read_net_file(&self, name: &str, opts: text::TextOptions) -> Result<(NetParameter, NetSource)> {
        let path = self.resolve(name, "net file")?;
        let parsed = text::read_file_nonempty::<NetParameter>(&path, opts)?;
        for w in &parsed.warnings {
            warn!("text_format.cpp:1", "{w}");
        }
        let source = NetSource::from_parsed(&path.display().to_string(), &parsed.message, &parsed.source_map);
        Ok((parsed.message, source))
    }

    /// The train net (Caffe's Solver::InitTrainNet).
    fn train_net(&self, opts: text::TextOptions) -> Result<Net> {
        let p = self.param;
        let count = [p.net.is_some(), p.net_param.is_some(), p.train_net.is_some(), p.train_net_param.is_some()]
            .iter()
            .filter(|&&b| b)
            .count();
        let fields = "net, net_param, train_net, train_net_param";
        if count == 0 {
            return Err(
                self.error(format!("SolverParameter must specify a train net using one of these fields: {fields}"))
            );
        }
        if count > 1 {
            return Err(self.error(format!(
                "SolverParameter must not contain more than one of these fields specifying a train_net: {fields}"
            )));
        }
        let (net_param, source) = if let Some(np) = &p.train_net_param {
            info!("solver.cpp:85", "Creating training net specified in train_net_param.");
            (np.clone(), NetSource::new(format!("{} (train_net_param)", self.file)))
        } else if let Some(f) = &p.train_net {
            info!("solver.cpp:89", "Creating training net from train_net file: {f}");
            self.read_net_file(f, opts)?
        } else if let Some(np) = &p.net_param {
            info!("solver.cpp:95", "Creating training net specified in net_param.");
            (np.clone(), NetSource::new(format!("{} (net_param)", self.file)))
        } else {
            let f = p.net();
            info!("solver.cpp:102", "Creating training net from net file: {f}");
            self.read_net_file(f, opts)?
        };
        // Solver default (TRAIN), then the net's own state, then train_state.
        let mut state = NetState { phase: Some(Phase::Train as i32), ..Default::default() };
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

    /// The test nets, one per test_iter (Caffe's Solver::InitTestNets).
    fn test_nets(&self, opts: text::TextOptions) -> Result<Vec<Net>> {
        let p = self.param;
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
                specs.push(("net_param".into(), np.clone(), NetSource::new(format!("{} (net_param)", self.file))));
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
            let mut state = NetState { phase: Some(Phase::Test as i32), ..Default::default() };
            merge_state(&mut state, np.state.as_ref());
            merge_state(&mut state, p.test_state.get(i));
            np.state = Some(state.clone());
            info!("solver.cpp:190", "Creating test net (#{i}) specified by {what}");
            nets.push(Net::from_param_upgrading(np, &state, source, self.device)?);
        }
        Ok(nets)
    }
}

/// Checks Caffe makes (as CHECK failures) and a few it leaves to chance.
pub(super) fn check_param(p: &SolverParameter, kind: SolverType) -> Result<()> {
    if p.average_loss() < 1 {
        return Err(Error::invalid(format!("average_loss must be at least 1, got {}", p.average_loss())));
    }
    if p.iter_size() < 1 {
        return Err(Error::invalid(format!("iter_size must be at least 1, got {}", p.iter_size())));
    }
    for (name, v) in [
        ("max_iter", p.max_iter()),
        ("display", p.display()),
        ("test_interval", p.test_interval()),
        ("snapshot", p.snapshot()),
    ] {
        if v < 0 {
            return Err(Error::invalid(format!("{name} must be ≥ 0, got {v}")));
        }
    }
    if let Some((i, v)) = p.test_iter.iter().enumerate().find(|(_, &v)| v < 0) {
        return Err(Error::invalid(format!("test_iter must be ≥ 0, got {v} (test net #{i})")));
    }
    if !matches!(p.regularization_type(), "L1" | "L2") {
        return Err(Error::invalid(format!("Unknown regularization type: {} (use L1 or L2)", p.regularization_type())));
    }
    match kind {
        SolverType::AdaGrad if p.momentum() != 0.0 => {
            return Err(Error::invalid("Momentum cannot be used with AdaGrad."))
        }
        SolverType::RmsProp if p.momentum() != 0.0 => {
            return Err(Error::invalid("Momentum cannot be used with RMSProp."))
        }
        SolverType::RmsProp if !(0.0..1.0).contains(&p.rms_decay()) => {
            return Err(Error::invalid(format!("rms_decay should lie between 0 and 1, got {}", p.rms_decay())))
        }
        _ => {}
    }
    Ok(())
}

/// protobuf MergeFrom for NetState: set fields override, stages append.
pub(super) fn merge_state(into: &mut NetState, from: Option<&NetState>) {
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
pub(super) fn device_from_param(p: &SolverParameter) -> Device {
    if p.solver_mode.is_some() && p.solver_mode() == solver_parameter::SolverMode::Gpu {
        let id = p.device_id().max(0) as usize;
        if (id as i64) < crate::util::cuda::device_count() {
            return Device::Cuda(id);
        }
        warn!("caffe.cpp:190", "solver_mode is GPU but CUDA device {id} is not available; using the CPU");
    }
    Device::Cpu
}
