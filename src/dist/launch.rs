//! Starting the ranks of one machine (`caffe train ... -ranks N`): the same
//! command line again, N times, with the environment torchrun would give each
//! process; then wait for all of them.
//!
//! The children run in their own process group, so a Ctrl-C on the terminal
//! reaches them once, through the launcher (which forwards SIGINT and SIGHUP),
//! not twice: a second SIGINT makes a rank quit at once.
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{info, Error, Result};

/// A port on loopback that was free a moment ago (the OS's choice). Rank 0
/// binds it again for the rendezvous; a race with another program gives a
/// clear "address in use" error from rank 0.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::invalid(format!("no free TCP port on 127.0.0.1 for the rendezvous: {e}")))?;
    let port = l.local_addr().map_err(|e| Error::invalid(format!("no local address for the rendezvous: {e}")))?.port();
    Ok(port)
}

/// Runs `args` (the arguments after the program name) as `ranks` processes of
/// `command` (the program and the arguments that start this command line
/// again: the `caffe` binary, or Python with `-m caffe._cli`) on 127.0.0.1
/// and waits for them. Succeeds when every rank does; otherwise names the
/// ranks that failed.
pub fn run_ranks(ranks: usize, command: &[OsString], args: &[OsString]) -> Result<()> {
    let Some((exe, lead)) = command.split_first() else {
        return Err(Error::invalid("no command to start the ranks with"));
    };
    let exe = std::path::PathBuf::from(exe);
    let port = free_port()?;
    // torchrun's choice as well: ranks that share the cores use one thread each
    // unless the user says otherwise.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = (cores / ranks).max(1).to_string();
    info!("caffe.cpp:260", "Starting {ranks} ranks on 127.0.0.1:{port}");
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(ranks);
    for rank in 0..ranks {
        let mut cmd = Command::new(&exe);
        cmd.args(lead)
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", ranks.to_string())
            .env("LOCAL_WORLD_SIZE", ranks.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .process_group(0);
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            cmd.env("OMP_NUM_THREADS", &threads);
        }
        match cmd.spawn() {
            Ok(c) => children.push((rank, c)),
            Err(e) => {
                for (_, c) in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(Error::invalid(format!("cannot start rank {rank} ({}): {e}", exe.display())));
            }
        }
    }
    let forward = Forwarder::install()?;
    let mut failed = Vec::new();
    let mut running: Vec<(usize, Child)> = children;
    while !running.is_empty() {
        forward.pass_on(&running);
        let mut still = Vec::with_capacity(running.len());
        for (rank, mut c) in running {
            match c.try_wait() {
                Ok(Some(status)) if status.success() => {}
                Ok(Some(status)) => failed.push(format!("rank {rank} {}", describe(status))),
                Ok(None) => still.push((rank, c)),
                Err(e) => failed.push(format!("rank {rank}: cannot wait for it: {e}")),
            }
        }
        running = still;
        std::thread::sleep(Duration::from_millis(50));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!("{} of {ranks} ranks failed: {}", failed.len(), failed.join("; "))))
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended abnormally".into(),
    }
}

/// SIGINT and SIGHUP caught by the launcher, to be passed on to the ranks.
struct Forwarder {
    sigint: Arc<AtomicBool>,
    sighup: Arc<AtomicBool>,
}

impl Forwarder {
    fn install() -> Result<Forwarder> {
        use signal_hook::consts::{SIGHUP, SIGINT};
        let sigint = Arc::new(AtomicBool::new(false));
        let sighup = Arc::new(AtomicBool::new(false));
        let io = |e: std::io::Error| Error::invalid(format!("cannot install signal handlers: {e}"));
        signal_hook::flag::register(SIGINT, Arc::clone(&sigint)).map_err(io)?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&sighup)).map_err(io)?;
        Ok(Forwarder { sigint, sighup })
    }

    fn pass_on(&self, children: &[(usize, Child)]) {
        for (flag, sig) in [(&self.sigint, libc::SIGINT), (&self.sighup, libc::SIGHUP)] {
            if flag.swap(false, Ordering::SeqCst) {
                for (_, c) in children {
                    // SAFETY: signalling a child we started and have not reaped yet.
                    unsafe { libc::kill(c.id() as libc::pid_t, sig) };
                }
            }
        }
    }
}
