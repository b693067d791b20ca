//! Nets with Python layers under the `caffe` binary. The binary links no
//! Python (its start-up time and memory stay those of a plain libtorch
//! program); before a command builds a net it looks for Python layers in the
//! files the command reads, and when there are some it replaces itself with
//! the same command line run by the Python module, which has the interpreter
//! and calls this same library (`Host::Python`).
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

use super::Command;
use crate::error::Location;
use crate::layers::python::python_layers;
use crate::net::NetSource;
use crate::proto::caffe::{NetParameter, SolverParameter};
use crate::proto::{text, upgrade};
use crate::Error;

/// A Python layer the command's nets have: where it is, its name and `module.Class`.
pub struct Found {
    loc: Location,
    layer: String,
    class: String,
}

/// The first Python layer in the nets `command` builds (train: the solver's
/// nets; test, time, forward: `-model`). Files are read quietly, and one that
/// does not read is left to the command itself to report.
pub(super) fn python_layer_in(command: &Command, opts: text::TextOptions) -> Option<Found> {
    let nets: Vec<(NetSource, NetParameter)> = match command {
        Command::Train(a) if a.ranks.is_none_or(|n| n <= 1) || std::env::var_os("WORLD_SIZE").is_some() => {
            solver_nets(a.solver.as_deref()?, opts)
        }
        Command::Test(a) => net_file(a.model.as_deref()?, opts).into_iter().collect(),
        Command::Time(a) => net_file(a.model.as_deref()?, opts).into_iter().collect(),
        Command::Forward(a) => net_file(a.model.as_deref()?, opts).into_iter().collect(),
        _ => Vec::new(),
    };
    nets.into_iter().find_map(|(source, net)| {
        python_layers(&net).into_iter().next().map(|(layer, class)| Found { loc: source.loc(&layer), layer, class })
    })
}

fn net_file(path: &Path, opts: text::TextOptions) -> Option<(NetSource, NetParameter)> {
    let parsed = text::read_file_nonempty::<NetParameter>(path, opts).ok()?;
    let source = NetSource::from_parsed(&path.display().to_string(), &parsed.message, &parsed.source_map);
    Some((source, parsed.message))
}

/// The nets a solver file names or holds (paths are relative to the working
/// directory, as the solver reads them).
fn solver_nets(path: &Path, opts: text::TextOptions) -> Vec<(NetSource, NetParameter)> {
    let Ok(parsed) = text::read_file_nonempty::<SolverParameter>(path, opts) else { return Vec::new() };
    let mut p = parsed.message;
    let file = path.display().to_string();
    if upgrade::upgrade_solver(&mut p, &file).is_err() {
        return Vec::new();
    }
    let mut nets: Vec<(NetSource, NetParameter)> = Vec::new();
    for inline in p.net_param.iter().chain(&p.train_net_param).chain(&p.test_net_param) {
        nets.push((NetSource::new(&file), inline.clone()));
    }
    for f in p.net.iter().chain(&p.train_net).chain(&p.test_net) {
        nets.extend(net_file(Path::new(f), opts));
    }
    nets
}

/// The program Python runs: the `caffe` package's command line, or a one-line
/// error when this Python cannot import it.
const BOOTSTRAP: &str = r#"import sys
try:
    from caffe._cli import main
except ImportError as e:
    sys.stderr.write("caffe: error: %s, and %s cannot import caffe (%s): build it with make, or set CAFFE_TCH_PYTHON to a Python that can\n" % (sys.argv[1], sys.executable, e))
    sys.exit(1)
sys.exit(main(sys.argv[2:]))
"#;

/// Replaces this process with `python -c BOOTSTRAP <what> <args>`; returns
/// the error when Python cannot be started.
pub(super) fn run_under_python(args: &[OsString], found: &Found) -> Error {
    let python = crate::util::python::interpreter();
    let what = format!("{}: layer '{}' is a Python layer ({})", found.loc, found.layer, found.class);
    // As in Caffe, layer modules are found on PYTHONPATH, not in the working directory.
    let err = std::process::Command::new(&python)
        .env("PYTHONSAFEPATH", "1")
        .arg("-c")
        .arg(BOOTSTRAP)
        .arg(&what)
        .args(args)
        .exec();
    Error::invalid(format!(
        "{what}, and the net runs under Python, which could not be started ({}: {err}); set CAFFE_TCH_PYTHON to a Python that can import caffe",
        python.display()
    ))
}
