//! Snapshots in Caffe's binary format: `<prefix>_iter_<N>.caffemodel` (the
//! net's NetParameter with blobs) and `<prefix>_iter_<N>.solverstate` (a
//! SolverState: iter, learned_net, history, current_step).
//!
//! Both files are written through a temporary file and a rename, model first,
//! so a crash never leaves a truncated file under a final name, and a
//! solverstate only ever names a model that is complete.
use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::info;
use crate::net::Net;
use crate::proto::binary::{self, blob_data_f32, blob_shape, make_blob, shapes_compatible_legacy};
use crate::proto::caffe::{BlobProto, SolverState};
use crate::{warn, Error, Result};

/// The two files of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFiles {
    pub model: PathBuf,
    pub state: PathBuf,
}

/// Caffe's SnapshotFilename: `<prefix>_iter_<iter><extension>`.
pub fn filename(prefix: &str, iter: i64, extension: &str) -> String {
    format!("{prefix}_iter_{iter}{extension}")
}

/// Caffe's write-permission probe for the snapshot prefix (run before training,
/// so a bad prefix fails at once, not after hours of training).
pub fn check_writable(prefix: &str) -> Result<()> {
    let probe = filename(prefix, 0, ".tempfile");
    match std::fs::File::create(&probe) {
        Ok(_) => {
            // The probe proved the folder writable; a leftover empty probe file is harmless.
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::invalid(format!(
            "Cannot write to snapshot prefix '{prefix}' ({e}). Make sure that the directory exists and is writeable."
        ))),
    }
}

/// Writes the model, then the solver state, with Caffe's log lines.
pub fn write(
    net: &Net,
    history: &[Tensor],
    iter: i64,
    current_step: i32,
    prefix: &str,
    write_diff: bool,
) -> Result<SnapshotFiles> {
    let model = filename(prefix, iter, ".caffemodel");
    info!("solver.cpp:464", "Snapshotting to binary proto file {model}");
    binary::write_message(Path::new(&model), &net.to_proto(write_diff)?)?;

    let state_file = filename(prefix, iter, ".solverstate");
    let state = SolverState {
        iter: Some(iter as i32),
        learned_net: Some(model.clone()),
        history: history.iter().map(tensor_to_blob).collect::<Result<Vec<_>>>()?,
        current_step: Some(current_step),
    };
    info!("sgd_solver.cpp:284", "Snapshotting solver state to binary proto file {state_file}");
    binary::write_message(Path::new(&state_file), &state)?;
    Ok(SnapshotFiles { model: model.into(), state: state_file.into() })
}

fn tensor_to_blob(t: &Tensor) -> Result<BlobProto> {
    Ok(make_blob(&t.size(), crate::util::tensor_values(t)?))
}

/// Reads a `.solverstate`, checking that each history blob holds as many
/// values as its shape says.
pub fn read_state(path: &Path) -> Result<SolverState> {
    if path.extension().is_some_and(|e| e == "h5") {
        return super::hdf5_snapshot::read_state(path);
    }
    let state: SolverState = binary::read_message(path)?;
    for (i, h) in state.history.iter().enumerate() {
        binary::check_blob(h, path, &format!("history blob {i}"))?;
    }
    Ok(state)
}

/// Where the model a solverstate names is. Caffe opens `learned_net` relative to
/// the working directory, as it wrote it; when it is not there (the snapshot was
/// moved, or training ran from another folder) the path is tried against the
/// state file's folder and its parents, then the bare file name beside the state.
pub fn resolve_learned_net(learned_net: &str, state_path: &Path) -> Result<PathBuf> {
    let given = PathBuf::from(learned_net);
    if given.exists() {
        return Ok(given);
    }
    let state_dir = state_path.parent().unwrap_or(Path::new(""));
    let mut candidates: Vec<PathBuf> = state_dir.ancestors().map(|dir| dir.join(&given)).collect();
    if let Some(name) = given.file_name() {
        candidates.push(state_dir.join(name));
    }
    match candidates.into_iter().find(|c| c.is_file()) {
        Some(found) => {
            warn!(
                "sgd_solver.cpp:330",
                "learned_net '{learned_net}' (named by {}) is not there relative to the working directory; using {}",
                state_path.display(),
                found.display()
            );
            Ok(found)
        }
        None => Err(Error::Solver {
            file: state_path.display().to_string(),
            msg: format!(
                "the model it names, learned_net '{learned_net}', was not found (looked relative to the working directory {} and beside the solverstate)",
                std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
            ),
        }),
    }
}

/// Copies a saved history blob into `target`, checking the shape.
pub fn copy_history(target: &mut Tensor, blob: &BlobProto, what: &str) -> Result<()> {
    let want = target.size();
    let have = blob_shape(blob);
    if have != want && !shapes_compatible_legacy(&have, &want) {
        return Err(Error::invalid(format!("{what} has shape {have:?} but the parameter it belongs to is {want:?}")));
    }
    let src = Tensor::from_slice(&blob_data_f32(blob))
        .f_reshape(want.as_slice())
        .and_then(|t| t.f_to_device(target.device()))
        .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
    tch::no_grad(|| target.f_copy_(&src)).map_err(|e| Error::invalid(format!("{what}: {e}")))
}
