//! `caffe._cli`: the `caffe` command line in this process, which builds
//! Python layers. The `caffe` binary runs itself this way for nets that have
//! them; the code, logs and exit codes are the binary's (`caffe_tch::cli`).
use std::ffi::OsString;

use caffe_tch::cli::Host;
use pyo3::prelude::*;

use crate::errors::nogil;

/// Runs `args` (`args[0]` is the program name) and returns the exit code.
/// `interpreter` (`sys.executable`) starts the ranks of `caffe train -ranks N`.
#[pyfunction]
pub fn cli_main(py: Python<'_>, args: Vec<String>, interpreter: String) -> u8 {
    let host = Host::Python { interpreter: OsString::from(interpreter) };
    let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    // Without the GIL, as every long call here: a Python layer takes it when it runs.
    nogil(py, || caffe_tch::cli::main(args, &host))
}
