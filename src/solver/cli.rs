//! `caffe train` and `caffe test`, with Caffe's flags, checks and log lines.
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tch::Device;

use super::{g, loss_note, Solver, SolverAction, SolverOptions};
use crate::dist::{Dist, LaunchEnv};
use crate::net::Net;
use crate::proto::caffe::{solver_parameter::SolverMode, NetState, Phase, SolverParameter};
use crate::proto::text::TextOptions;
use crate::util::{comma_list, gpu_flag_device, gpu_flag_ids};
use crate::{info, warn, Error, Result};

/// `caffe train` flags.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    pub solver: Option<PathBuf>,
    /// Comma-separated .caffemodel files to fine-tune from.
    pub weights: Option<String>,
    /// A .solverstate to resume from.
    pub snapshot: Option<PathBuf>,
    pub gpu: Option<String>,
    pub level: Option<i32>,
    /// Comma-separated stages.
    pub stage: Option<String>,
    /// `stop` (default), `snapshot` or `none`.
    pub sigint_effect: String,
    /// `snapshot` (default), `stop` or `none`.
    pub sighup_effect: String,
    /// Seconds a data-parallel collective or the rendezvous may wait for the
    /// other ranks (default 300).
    pub dist_timeout: Option<u64>,
    /// `-ranks N`: the number of ranks the launcher started; under a launcher
    /// it must equal WORLD_SIZE.
    pub ranks: Option<usize>,
    /// `-cuda_graph`: record the training pass in a CUDA graph (`net::graph`).
    pub cuda_graph: bool,
    pub text: TextOptions,
}

/// `caffe test` flags.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    pub model: Option<PathBuf>,
    pub weights: Option<String>,
    pub iterations: i64,
    pub gpu: Option<String>,
    pub level: Option<i32>,
    pub stage: Option<String>,
    /// DropIn's iteration τ (None: fully grown).
    pub iteration: Option<i64>,
    pub text: TextOptions,
}

fn parse_effect(flag: &str, value: &str) -> Result<SolverAction> {
    match value {
        "stop" => Ok(SolverAction::Stop),
        "snapshot" => Ok(SolverAction::Snapshot),
        "none" => Ok(SolverAction::None),
        _ => Err(Error::invalid(format!(
            "Invalid signal effect \"{value}\" was specified for -{flag} (use stop, snapshot or none)"
        ))),
    }
}

fn stages(flag: &Option<String>) -> Vec<String> {
    flag.as_deref().map(comma_list).unwrap_or_default()
}

/// Caffe's SignalHandler: SIGINT and SIGHUP set flags that the solver polls
/// between iterations. A second SIGINT while the first is pending exits at once.
struct Signals {
    sigint: Arc<AtomicBool>,
    sighup: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT};
        let sigint = Arc::new(AtomicBool::new(false));
        let sighup = Arc::new(AtomicBool::new(false));
        let io = |e: std::io::Error| Error::invalid(format!("cannot install signal handlers: {e}"));
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&sigint)).map_err(io)?;
        signal_hook::flag::register(SIGINT, Arc::clone(&sigint)).map_err(io)?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&sighup)).map_err(io)?;
        Ok(Signals { sigint, sighup })
    }

    fn action(&self, on_sigint: SolverAction, on_sighup: SolverAction) -> super::ActionFn {
        let (sigint, sighup) = (Arc::clone(&self.sigint), Arc::clone(&self.sighup));
        let mut stopping = false;
        Box::new(move || {
            if sighup.swap(false, Ordering::SeqCst) {
                info!("signal_handler.cpp:58", "SIGHUP received: {}", describe(on_sighup));
                return on_sighup;
            }
            // A stop request stays set, so that a second SIGINT while the solver
            // winds down (final snapshot, test) exits at once.
            let got_sigint = if on_sigint == SolverAction::Stop {
                sigint.load(Ordering::SeqCst)
            } else {
                sigint.swap(false, Ordering::SeqCst)
            };
            if got_sigint {
                if !stopping {
                    info!("signal_handler.cpp:55", "SIGINT received: {}", describe(on_sigint));
                }
                stopping = on_sigint == SolverAction::Stop;
                return on_sigint;
            }
            SolverAction::None
        })
    }
}

fn describe(a: SolverAction) -> &'static str {
    match a {
        SolverAction::Stop => "stopping after this iteration (press Ctrl-C again to quit at once)",
        SolverAction::Snapshot => "writing a snapshot",
        SolverAction::None => "ignored",
    }
}

/// `caffe train -solver S [-weights a,b | -snapshot X] [-gpu N] [-level L] [-stage s]
/// [-sigint_effect stop|snapshot|none] [-sighup_effect snapshot|stop|none]`.
pub fn train(o: &TrainOptions) -> Result<()> {
    let solver_path =
        o.solver.as_ref().ok_or_else(|| Error::invalid("Need a solver definition to train (-solver FILE)."))?;
    if o.snapshot.is_some() && o.weights.is_some() {
        return Err(Error::invalid(
            "Give a snapshot to resume training or weights to finetune but not both (-snapshot and -weights).",
        ));
    }
    let on_sigint = parse_effect("sigint_effect", if o.sigint_effect.is_empty() { "stop" } else { &o.sigint_effect })?;
    let on_sighup =
        parse_effect("sighup_effect", if o.sighup_effect.is_empty() { "snapshot" } else { &o.sighup_effect })?;

    let mut param = Solver::read_param(solver_path, o.text)?;
    let env = LaunchEnv::from_env()?;
    if let (Some(n), Some(e)) = (o.ranks, &env) {
        if n != e.world {
            return Err(Error::usage(format!("-ranks {n} but the launcher set WORLD_SIZE={}", e.world)));
        }
    }
    let device = train_device(o, &param, env.as_ref())?;
    let dist = join_group(o, env, device)?;
    if device == Device::Cpu {
        info!("caffe.cpp:197", "Use CPU.");
    }
    if let Some(d) = &dist {
        d.group.check_same("solver", &solver_digest(&param))?;
        for_rank(&mut param, d);
    }
    if o.level.is_some() || o.stage.is_some() {
        let state = param.train_state.get_or_insert_with(NetState::default);
        if let Some(level) = o.level {
            state.level = Some(level);
        }
        state.stage.extend(stages(&o.stage));
    }
    let signals = Signals::install()?;
    if o.snapshot.is_some() {
        param.weights.clear();
    } else if let Some(w) = &o.weights {
        param.weights = vec![w.clone()];
    }

    let mut solver = Solver::new(param, Some(solver_path), SolverOptions { device: Some(device), text: o.text })?;
    solver.set_action_function(signals.action(on_sigint, on_sighup));
    if let Some(d) = &dist {
        join_solver(&mut solver, Rc::clone(&d.group))?;
    }
    if let Some(state) = &o.snapshot {
        info!("caffe.cpp:228", "Resuming from {}", state.display());
        solver.restore(state)?;
    }
    if o.cuda_graph {
        solver.use_cuda_graph();
    }
    info!("caffe.cpp:239", "Starting Optimization");
    solver.solve()?;
    // Rank 0 hosts the rendezvous store: no rank leaves while another may still need it.
    if let Some(d) = &dist {
        d.group.barrier("barrier at the end of training")?;
    }
    info!("caffe.cpp:250", "Optimization Done.");
    Ok(())
}

/// This process's place in a data-parallel run.
struct Member {
    group: Rc<Dist>,
}

/// The device `caffe train` runs on. On its own: `-gpu N`, or the solver's
/// `solver_mode: GPU` (its device_id) when there is a GPU, else the CPU.
/// Under a launcher, as torchrun expects: `cuda:LOCAL_RANK` (or the
/// LOCAL_RANK-th id of `-gpu 0,1`, as `caffe train -gpu` starts its ranks)
/// when `-gpu` is given, or when there is a GPU and the solver does not ask
/// for the CPU; else the CPU.
fn train_device(o: &TrainOptions, param: &SolverParameter, env: Option<&LaunchEnv>) -> Result<Device> {
    let says_gpu = param.solver_mode.is_some() && param.solver_mode() == SolverMode::Gpu;
    // Under a launcher an unset solver_mode (Caffe's default is GPU) means a
    // GPU where there is one; without an NVIDIA driver CUDA is not even loaded.
    let solver_wants_gpu =
        says_gpu || (env.is_some() && param.solver_mode.is_none() && crate::util::cuda::driver_present());
    let gpu_flag = o
        .gpu
        .clone()
        .or_else(|| (solver_wants_gpu && crate::util::cuda::device_count() > 0).then(|| param.device_id().to_string()));
    let Some(ids) = gpu_flag_ids(gpu_flag.as_deref())? else {
        if says_gpu {
            warn!(
                "caffe.cpp:190",
                "solver_mode is GPU but CUDA device {} is not available; using the CPU",
                param.device_id()
            );
        }
        return Ok(Device::Cpu);
    };
    let flag = gpu_flag.unwrap_or_default();
    let id = match env {
        None if ids.len() > 1 => {
            return Err(Error::usage(format!(
                "-gpu {flag}: several devices take one process each: `caffe train -gpu {flag}` starts them"
            )))
        }
        None => ids[0],
        Some(e) if ids.len() > 1 => *ids.get(e.local_rank).ok_or_else(|| {
            Error::usage(format!("LOCAL_RANK={} but -gpu {flag} lists {} devices", e.local_rank, ids.len()))
        })?,
        Some(e) => e.local_rank as i64,
    };
    let count = crate::util::cuda::device_count();
    if id >= count {
        return Err(Error::usage(format!(
            "this rank's device cuda:{id} does not exist ({count} CUDA device(s) found)"
        )));
    }
    Ok(Device::Cuda(id as usize))
}

/// How many ranks `caffe train` starts itself (it then waits for them instead
/// of training): `-ranks N` (N > 1), or one per device of `-gpu 0,1` / `-gpu
/// all`, each rank then joining an NCCL group. `None`: this process trains.
/// Under a launcher (WORLD_SIZE set) it never starts any.
pub fn ranks_to_start(o: &TrainOptions) -> Result<Option<usize>> {
    if std::env::var_os("WORLD_SIZE").is_some() {
        return Ok(None);
    }
    let flag = o.gpu.as_deref().map(str::trim).unwrap_or_default();
    let nccl = || {
        crate::dist::nccl::available()
            .map_err(|e| Error::usage(format!("-gpu {flag}: training on several GPUs needs NCCL: {e}")))
    };
    if flag.contains(',') {
        nccl()?;
    }
    let devices = match gpu_flag_ids(o.gpu.as_deref())? {
        Some(ids) if ids.len() > 1 => {
            nccl()?;
            Some(ids.len())
        }
        _ => None,
    };
    match (devices, o.ranks) {
        (Some(d), Some(n)) if n != d => {
            Err(Error::usage(format!("-ranks {n} but -gpu {flag} lists {d} devices (one rank per device)")))
        }
        (Some(d), _) => Ok(Some(d)),
        (None, Some(n)) if n > 1 => Ok(Some(n)),
        _ => Ok(None),
    }
}

/// Joins the group a launcher described in the environment (RANK, WORLD_SIZE,
/// LOCAL_RANK, MASTER_ADDR, MASTER_PORT): over NCCL on a CUDA device, over
/// Gloo on the CPU. `None` for a run on its own, and for a launcher's group
/// of one on the CPU (on CUDA a group of one still goes through NCCL).
fn join_group(o: &TrainOptions, env: Option<LaunchEnv>, device: Device) -> Result<Option<Member>> {
    let Some(env) = env.filter(|e| e.world > 1 || device.is_cuda()) else { return Ok(None) };
    let timeout = std::time::Duration::from_secs(o.dist_timeout.unwrap_or(crate::dist::DEFAULT_TIMEOUT_S).max(1));
    if env.rank != 0 {
        // One log, from rank 0, as Caffe; warnings and errors still show.
        crate::log::set_info_enabled(false);
    }
    info!(
        "caffe.cpp:218",
        "Rank {} of {} joining the group at {}:{} (timeout {} s)",
        env.rank,
        env.world,
        env.master_addr,
        env.master_port,
        timeout.as_secs()
    );
    let group = Dist::join(&env, timeout, device)?;
    Ok(Some(Member { group: Rc::new(group) }))
}

/// The solver's settings, less the file paths (which may differ between machines).
pub fn solver_digest(param: &SolverParameter) -> String {
    let mut p = param.clone();
    p.net = None;
    p.train_net = None;
    p.test_net.clear();
    p.snapshot_prefix = None;
    p.weights.clear();
    md5_hex(crate::proto::print::to_text(&p).as_bytes())
}

/// The train net's learnable blobs: layer, index and shape of each.
fn net_digest(net: &Net) -> String {
    let mut text = String::new();
    for p in net.learnable_params() {
        text.push_str(&format!("{} {} {:?}\n", p.layer, p.index, p.data.size()));
    }
    md5_hex(text.as_bytes())
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn for_rank(param: &mut SolverParameter, m: &Member) {
    rank_settings(param, m.group.rank(), m.group.world());
}

/// What differs between ranks in the solver: the seed (`random_seed + rank`,
/// as Caffe), the share of the TRAIN records (for the nets this thread builds
/// next), and rank 0 alone tests and snapshots. Applied before the solver is
/// built (also by pycaffe's `set_solver_rank`).
pub fn rank_settings(param: &mut SolverParameter, rank: usize, world: usize) {
    crate::data::set_train_shard(rank, world);
    crate::data::set_shared_seed((param.random_seed() >= 0).then_some(param.random_seed() as u64));
    if param.random_seed() >= 0 {
        param.random_seed = Some(param.random_seed() + rank as i64);
    }
    if rank != 0 {
        param.test_iter.clear();
        param.test_net.clear();
        param.test_net_param.clear();
        param.test_state.clear();
        param.test_interval = None;
        param.test_initialization = None;
        param.snapshot = None;
        param.snapshot_after_train = Some(false);
    }
}

/// Makes `solver` a rank of `group` once every rank has built the same train
/// net (checked by a digest of its learnable blobs' shapes).
pub fn join_solver(solver: &mut Solver, group: Rc<Dist>) -> Result<()> {
    group.check_same("train net", &net_digest(solver.net()))?;
    solver.set_distributed(group);
    Ok(())
}

/// `caffe test -model M -weights W [-iterations 50] [-gpu N] [-level L] [-stage s]`:
/// each batch's outputs, then their means (with loss weights), as Caffe prints them.
pub fn test(o: &TestOptions) -> Result<()> {
    let model = o.model.as_ref().ok_or_else(|| Error::invalid("Need a model definition to score (-model FILE)."))?;
    let weights = o.weights.as_ref().ok_or_else(|| Error::invalid("Need model weights to score (-weights FILE)."))?;
    if o.iterations < 1 {
        return Err(Error::invalid(format!("-iterations must be at least 1, got {}", o.iterations)));
    }
    let device = gpu_flag_device(o.gpu.as_deref())?;
    if device.is_none() {
        info!("caffe.cpp:275", "Use CPU.");
    }
    let state = NetState { phase: Some(Phase::Test as i32), level: o.level, stage: stages(&o.stage) };
    let mut net = Net::from_file(model, &state, o.text, device.unwrap_or(Device::Cpu))?;
    for w in weights.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        net.load_weights(std::path::Path::new(w))?;
    }
    net.use_dropin_iteration(o.iteration);
    // caffe test prints the outputs only.
    net.read_outputs_only();
    info!("caffe.cpp:281", "Running for {} iterations.", o.iterations);

    let mut scores: Vec<f32> = Vec::new();
    let mut outputs: Vec<(String, f32)> = Vec::new();
    let mut loss = 0.0f32;
    for i in 0..o.iterations {
        loss += net.forward_inference()? as f32;
        let mut idx = 0;
        for name in net.output_blob_names() {
            for v in super::blob_values(net.blob(name))? {
                if i == 0 {
                    scores.push(v);
                    outputs.push((name.to_string(), net.blob_loss_weight(name)));
                } else if let Some(s) = scores.get_mut(idx) {
                    *s += v;
                }
                idx += 1;
                info!("caffe.cpp:304", "Batch {i}, {name} = {}", g(v));
            }
        }
    }
    loss /= o.iterations as f32;
    info!("caffe.cpp:309", "Loss: {}", g(loss));
    for (score, (name, weight)) in scores.iter().zip(&outputs) {
        let mean = score / o.iterations as f32;
        info!("caffe.cpp:321", "{name} = {}{}", g(mean), loss_note(*weight, mean));
    }
    Ok(())
}
