//! The `caffe` command: Caffe's command line on caffe-tch (`caffe_tch::cli`).
use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(caffe_tch::cli::main(std::env::args_os().collect(), &caffe_tch::cli::Host::Binary))
}
