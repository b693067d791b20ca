//! The `caffe` command. Loading libtorch costs every process a noticeable
//! fraction of a second and over 100 MiB before it does anything, so this
//! launcher links none of it: it answers `--version` itself and hands every
//! other command line to `caffe-engine` beside it (same arguments, same
//! process: exec, so signals and the exit code are the engine's own).
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// The engine's file name, beside this launcher.
const ENGINE: &str = "caffe-engine";

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| OsString::from("caffe"));
    let rest: Vec<OsString> = args.collect();
    if let [only] = rest.as_slice() {
        if matches!(only.to_str(), Some("--version" | "-version" | "-V")) {
            // The same line the engine's argument parser prints.
            println!("caffe {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
    }
    let engine = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(ENGINE),
        Err(e) => {
            eprintln!("caffe: error: cannot find this executable's folder (to start {ENGINE}): {e}");
            return ExitCode::FAILURE;
        }
    };
    // Returns only when the engine could not be started.
    let e = Command::new(&engine).arg0(&program).args(&rest).exec();
    eprintln!("caffe: error: cannot start {}: {e}", engine.display());
    ExitCode::FAILURE
}
