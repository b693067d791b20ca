//! Data-parallel training on PyTorch's distributed engine (c10d): one process
//! per rank, a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT (rank 0 hosts
//! it) and a process group: Gloo for CPU tensors, NCCL for CUDA tensors (its
//! shim opened on demand, [`nccl`]). The solver uses [`Dist`] to
//! broadcast rank 0's weights, to average gradients before each update, and to
//! agree on losses and signals; [`launch`] starts the ranks of one machine.
//!
//! Sits between `net` and `solver` in the module order: it knows tensors,
//! not nets.
use std::cell::Cell;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

pub mod group;
pub mod launch;
pub mod nccl;

pub use group::{GroupConfig, ProcessGroup};

/// The default of `-dist_timeout`, in seconds (PyTorch's default as well).
pub const DEFAULT_TIMEOUT_S: u64 = 300;

/// What a launcher (torchrun, `caffe train -ranks N`, or a user by hand) put
/// in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl LaunchEnv {
    /// The torchrun variables, or `None` when WORLD_SIZE is not set (a plain
    /// single-process run). Missing or malformed companions are errors.
    pub fn from_env() -> Result<Option<LaunchEnv>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`LaunchEnv::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<LaunchEnv>> {
        let Some(world) = get("WORLD_SIZE") else {
            if get("RANK").is_some() {
                return Err(Error::usage(
                    "RANK is set but WORLD_SIZE is not: set both (or neither) to train data-parallel",
                ));
            }
            return Ok(None);
        };
        let num = |name: &str, v: &str| -> Result<usize> {
            v.trim().parse::<usize>().map_err(|_| Error::usage(format!("{name}={v:?} is not a non-negative integer")))
        };
        let world = num("WORLD_SIZE", &world)?;
        if world == 0 {
            return Err(Error::usage("WORLD_SIZE=0: a group needs at least one rank"));
        }
        let rank = match get("RANK") {
            Some(r) => num("RANK", &r)?,
            None if world == 1 => 0,
            None => return Err(Error::usage(format!("WORLD_SIZE={world} but RANK is not set"))),
        };
        if rank >= world {
            return Err(Error::usage(format!("RANK={rank} is not below WORLD_SIZE={world}")));
        }
        let local_rank = match get("LOCAL_RANK") {
            Some(r) => num("LOCAL_RANK", &r)?,
            None => rank,
        };
        let master_addr = get("MASTER_ADDR").filter(|a| !a.trim().is_empty()).unwrap_or_else(|| "127.0.0.1".into());
        let master_port = match get("MASTER_PORT") {
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| Error::usage(format!("MASTER_PORT={p:?} is not a port number (1-65535)")))?,
            None if world == 1 => 29500,
            None => return Err(Error::usage("MASTER_PORT is not set (rank 0 hosts the rendezvous there)")),
        };
        Ok(Some(LaunchEnv { rank, world, local_rank, master_addr: master_addr.trim().to_string(), master_port }))
    }
}

/// A loopback master address: Gloo then listens on loopback too, so a group on
/// one machine needs no resolvable hostname.
fn is_loopback(addr: &str) -> bool {
    addr == "localhost" || addr.starts_with("127.") || addr == "::1"
}

/// What one process of the group knows about another, for error messages.
#[derive(Debug, Clone)]
struct Peer {
    host: String,
    pid: u32,
}

/// A member of a data-parallel group: its rank, the group, and the
/// collectives the solver runs on tensors of any device (gathered into one
/// flat CPU buffer, so each call is one Gloo operation).
pub struct Dist {
    group: ProcessGroup,
    rank: usize,
    world: usize,
    timeout: Duration,
    peers: Vec<Peer>,
    reduce_time: Cell<Duration>,
    reduce_calls: Cell<u64>,
}

impl Dist {
    /// Joins the group the launcher described: over NCCL when this rank
    /// trains on a CUDA device, else over Gloo.
    pub fn join(env: &LaunchEnv, timeout: Duration, device: Device) -> Result<Dist> {
        let config = GroupConfig {
            master_addr: env.master_addr.clone(),
            master_port: env.master_port,
            rank: env.rank,
            world: env.world,
            timeout,
            iface: std::env::var("GLOO_SOCKET_IFNAME").ok().filter(|s| !s.is_empty()),
            bind_host: is_loopback(&env.master_addr).then(|| "127.0.0.1".to_string()),
        };
        let joined = match device {
            Device::Cuda(d) => ProcessGroup::join_nccl(&config, d),
            _ => ProcessGroup::join(&config),
        };
        let group = joined.map_err(|e| {
            let role = if env.rank == 0 {
                format!(
                    "rank 0 hosts the rendezvous at {}:{} and waits for {} more rank(s)",
                    env.master_addr,
                    env.master_port,
                    env.world - 1
                )
            } else {
                format!("rank {} joins the rendezvous at {}:{}", env.rank, env.master_addr, env.master_port)
            };
            Error::invalid(format!(
                "data-parallel group of {} over {} could not be formed ({role}; timeout {} s): {e}",
                env.world,
                backend_name(device),
                timeout.as_secs()
            ))
        })?;
        let me = format!("{}\t{}", hostname(), std::process::id());
        group.store_set(&format!("caffe/peer/{}", env.rank), me.as_bytes())?;
        let mut peers = Vec::with_capacity(env.world);
        for r in 0..env.world {
            let v = group.store_get(&format!("caffe/peer/{r}"))?;
            let text = String::from_utf8_lossy(&v).to_string();
            let (host, pid) = text.split_once('\t').unwrap_or((text.as_str(), "0"));
            peers.push(Peer { host: host.to_string(), pid: pid.parse().unwrap_or(0) });
        }
        Ok(Dist {
            group,
            rank: env.rank,
            world: env.world,
            timeout,
            peers,
            reduce_time: Cell::new(Duration::ZERO),
            reduce_calls: Cell::new(0),
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn world(&self) -> usize {
        self.world
    }
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// "Gloo" or "NCCL".
    pub fn backend(&self) -> &'static str {
        backend_name(self.group.device())
    }
    /// All-reduces so far, and the time spent in them (copies included).
    pub fn reduce_stats(&self) -> (u64, Duration) {
        (self.reduce_calls.get(), self.reduce_time.get())
    }

    /// Replaces every tensor with rank 0's (weights at the start of training).
    pub fn broadcast(&self, tensors: &mut [Tensor], what: &str) -> Result<()> {
        let mut flat = flatten(tensors, self.group.device()).map_err(|e| self.fail(what, e.to_string()))?;
        if let Some(flat) = flat.as_mut() {
            self.group.broadcast(flat, 0).map_err(|e| self.fail(what, e))?;
            unflatten(flat, tensors).map_err(|e| self.fail(what, e.to_string()))?;
        }
        Ok(())
    }

    /// Replaces every tensor with its mean over the ranks (Caffe: the sum,
    /// then times 1/world), in one collective. Timed: [`Dist::reduce_stats`].
    pub fn all_reduce_mean(&self, tensors: &mut [Tensor], what: &str) -> Result<()> {
        let start = Instant::now();
        self.reduce_mean(tensors, what)?;
        self.reduce_time.set(self.reduce_time.get() + start.elapsed());
        self.reduce_calls.set(self.reduce_calls.get() + 1);
        Ok(())
    }

    fn reduce_mean(&self, tensors: &mut [Tensor], what: &str) -> Result<()> {
        let mut flat = flatten(tensors, self.group.device()).map_err(|e| self.fail(what, e.to_string()))?;
        if let Some(flat) = flat.as_mut() {
            self.group.all_reduce_sum(flat).map_err(|e| self.fail(what, e))?;
            if self.world > 1 {
                let _ = flat.f_mul_scalar_(1.0 / self.world as f64).map_err(|e| self.fail(what, e.to_string()))?;
            }
            unflatten(flat, tensors).map_err(|e| self.fail(what, e.to_string()))?;
        }
        Ok(())
    }

    /// The mean over ranks of a few numbers (losses, flags); not timed.
    pub fn mean_values(&self, values: &[f32], what: &str) -> Result<Vec<f32>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let mut t = [Tensor::from_slice(values)];
        self.reduce_mean(&mut t, what)?;
        crate::util::tensor_values(&t[0])
    }

    /// Fails on every rank whose `digest` of `what` (the solver, the net)
    /// differs from rank 0's; rank 0 names the ranks that differ.
    pub fn check_same(&self, what: &str, digest: &str) -> Result<()> {
        let key = |r: usize| format!("caffe/check/{what}/{r}");
        self.group.store_set(&key(self.rank), digest.as_bytes())?;
        let others: Vec<usize> = if self.rank == 0 { (1..self.world).collect() } else { vec![0] };
        let mut differ = Vec::new();
        for r in others {
            let theirs = String::from_utf8_lossy(&self.group.store_get(&key(r))?).into_owned();
            if theirs != digest {
                differ.push(format!("rank {r} has {theirs}"));
            }
        }
        if differ.is_empty() {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "the {what} differs across the ranks of the data-parallel group: rank {} has {digest}, {}; \
             every rank must train the same net with the same solver",
            self.rank,
            differ.join(", ")
        )))
    }

    /// Waits until every rank gets here.
    pub fn barrier(&self, what: &str) -> Result<()> {
        self.group.barrier().map_err(|e| self.fail(what, e))
    }

    /// A collective that failed: which ranks are known to be gone (same host,
    /// process no longer running), else who may have failed or hung.
    fn fail(&self, what: &str, err: String) -> Error {
        let here = hostname();
        let mut gone = Vec::new();
        let mut remote = Vec::new();
        // A killed peer's socket can close before the kernel has finished
        // tearing the process down: look again for a short while before
        // saying that no peer is known to be gone.
        for attempt in 0..20 {
            gone.clear();
            remote.clear();
            for (r, p) in self.peers.iter().enumerate() {
                if r == self.rank {
                    continue;
                }
                if p.host == here {
                    match process_state(p.pid) {
                        None | Some('Z' | 'X') => gone.push(format!("rank {r} (pid {}) is gone", p.pid)),
                        Some('T' | 't') => gone.push(format!("rank {r} (pid {}) is stopped", p.pid)),
                        Some(_) => {}
                    }
                } else {
                    remote.push(format!("rank {r} on {}", p.host));
                }
            }
            let local_peers = self.peers.iter().enumerate().any(|(r, p)| r != self.rank && p.host == here);
            if !gone.is_empty() || !local_peers || attempt == 19 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let who = if !gone.is_empty() {
            gone.join(", ")
        } else if !remote.is_empty() {
            format!("a peer failed or hung (ranks on other hosts: {})", remote.join(", "))
        } else {
            "a peer rank failed or hung".to_string()
        };
        Error::invalid(format!(
            "data-parallel {what} failed on rank {} of {}: {who} (timeout {} s): {err}",
            self.rank,
            self.world,
            self.timeout.as_secs()
        ))
    }
}

fn backend_name(device: Device) -> &'static str {
    match device {
        Device::Cuda(_) => "NCCL",
        _ => "Gloo",
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The state letter of a process of this machine (`ps`'s STAT: R, S, D, T,
/// Z for a zombie, killed but not yet reaped by its parent), `None` when gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state is the first field after the command name's closing parenthesis.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// The tensors' values, concatenated into one contiguous float buffer on the
/// group's `device` (`None` for no tensors). Integer or double tensors are
/// refused: the solver reduces float parameters only.
fn flatten(tensors: &[Tensor], device: Device) -> Result<Option<Tensor>> {
    if tensors.is_empty() {
        return Ok(None);
    }
    if let Some(t) = tensors.iter().find(|t| t.kind() != Kind::Float) {
        return Err(Error::unsupported(format!("data-parallel collectives take float tensors, got {:?}", t.kind())));
    }
    let parts: Vec<Tensor> = tensors
        .iter()
        .map(|t| t.f_reshape([-1]).and_then(|p| p.f_to_device(device)))
        .collect::<std::result::Result<_, _>>()?;
    let flat = Tensor::f_cat(&parts, 0)?.f_contiguous()?;
    Ok(Some(flat))
}

/// Copies the buffer's pieces back into the tensors (on their own devices).
fn unflatten(flat: &Tensor, tensors: &mut [Tensor]) -> Result<()> {
    let mut offset = 0i64;
    tch::no_grad(|| -> Result<()> {
        for t in tensors.iter_mut() {
            let n = t.numel() as i64;
            let piece = flat.f_narrow(0, offset, n)?.f_view(t.size().as_slice())?;
            t.f_copy_(&piece)?;
            offset += n;
        }
        Ok(())
    })
}
