//! Caffe's glog-style log lines: `I1130 08:11:34.123456 12345 solver.cpp:218] message`.
//!
//! Tools such as Caffe's `parse_log.py` read these lines, so the prefix is kept
//! exactly. Lines go to stderr, as Caffe's tools do (they set alsologtostderr).
//! `GLOG_logtostderr=1` means stderr only; otherwise, when `GLOG_log_dir` is set,
//! each line is also appended to `<dir>/caffe.INFO` like glog's log file.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    fn letter(self) -> char {
        match self {
            Severity::Info => 'I',
            Severity::Warning => 'W',
            Severity::Error => 'E',
        }
    }
}

static LOG_FILE: LazyLock<Mutex<Option<File>>> = LazyLock::new(|| {
    let to_stderr_only = std::env::var("GLOG_logtostderr").map(|v| v == "1" || v == "true").unwrap_or(false);
    let file = match (to_stderr_only, std::env::var("GLOG_log_dir")) {
        (false, Ok(dir)) if !dir.is_empty() => {
            let name =
                format!("caffe.{}.log.INFO.{}", std::process::id(), chrono::Local::now().format("%Y%m%d-%H%M%S"));
            let path = std::path::Path::new(&dir).join(&name);
            let file = match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => Some(f),
                Err(e) => {
                    // As glog: say so once on stderr and go on logging there.
                    eprintln!("Could not create logging file {}: {e}", path.display());
                    None
                }
            };
            // glog's `caffe.INFO` link names the newest log; like glog, a link
            // that cannot be made costs nothing but the convenience.
            let link = std::path::Path::new(&dir).join("caffe.INFO");
            let _ = std::fs::remove_file(&link);
            let _ = std::os::unix::fs::symlink(&name, &link);
            file
        }
        _ => None,
    };
    Mutex::new(file)
});

/// A hook that, when set, is called before each line is written (the progress
/// line on a terminal uses it to clear itself first).
pub type LineHook = Box<dyn Fn() + Send>;
pub static BEFORE_LINE: LazyLock<Mutex<Option<LineHook>>> = LazyLock::new(|| Mutex::new(None));

/// The glog prefix for a line logged now from `source` (e.g. "solver.cpp:218").
pub fn prefix(sev: Severity, source: &str) -> String {
    let now = chrono::Local::now();
    format!("{}{} {:>5} {}]", sev.letter(), now.format("%m%d %H:%M:%S%.6f"), thread_id(), source)
}

fn thread_id() -> u64 {
    // glog prints the OS thread id; it is stable per thread and matches `ps -L`.
    unsafe { libc_gettid() }
}

extern "C" {
    fn gettid() -> i32;
}

unsafe fn libc_gettid() -> u64 {
    gettid() as u64
}

/// Off on the ranks other than 0 of a data-parallel run: one log, as in Caffe.
static INFO_ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns `I` lines on or off for this process (warnings and errors stay on).
pub fn set_info_enabled(on: bool) {
    INFO_ENABLED.store(on, Ordering::Relaxed);
}

/// Writes one log message.
pub fn write(sev: Severity, source: &str, msg: &str) {
    if sev == Severity::Info && !INFO_ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let pre = prefix(sev, source);
    // Like glog, a multi-line message carries the prefix on its first line only
    // (Caffe logs whole prototxts this way).
    let text = format!("{pre} {msg}\n");
    if let Ok(hook) = BEFORE_LINE.lock() {
        if let Some(h) = hook.as_ref() {
            h();
        }
    }
    // A log line that cannot be written (a closed stderr, a full disk) must
    // not stop training; glog drops it too.
    let _ = std::io::stderr().write_all(text.as_bytes());
    if let Ok(mut f) = LOG_FILE.lock() {
        if let Some(f) = f.as_mut() {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// `info!("solver.cpp:218", "Iteration {} ...", it)` writes an `I` line.
#[macro_export]
macro_rules! info {
    ($src:expr, $($arg:tt)*) => { $crate::log::write($crate::log::Severity::Info, $src, &format!($($arg)*)) };
}

/// The `file.rs:line` tag of a log line written by caffe-tch's own code (one
/// with no Caffe counterpart to quote): `info!(here!("data_step.rs"), ...)`.
#[macro_export]
macro_rules! here {
    ($file:literal) => {
        concat!($file, ":", line!())
    };
}

/// `warn!` writes a `W` line.
#[macro_export]
macro_rules! warn {
    ($src:expr, $($arg:tt)*) => { $crate::log::write($crate::log::Severity::Warning, $src, &format!($($arg)*)) };
}

pub mod progress;
