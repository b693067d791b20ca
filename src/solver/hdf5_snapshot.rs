//! Snapshots in Caffe's HDF5 format (`snapshot_format: HDF5`): the weights go
//! to `<prefix>_iter_<N>.caffemodel.h5` through the net's weight I/O
//! (`net::weights::hdf5`); `<prefix>_iter_<N>.solverstate.h5` holds `iter`,
//! `current_step`, `learned_net` and `history/<i>`.
use std::path::Path;

use tch::Tensor;

use super::snapshot::{filename, SnapshotFiles};
use crate::data::hdf5 as h5;
use crate::error::Context;
use crate::info;
use crate::net::weights::hdf5::write_model;
use crate::net::Net;
use crate::proto::binary::make_blob;
use crate::proto::caffe::SolverState;
use crate::{Error, Result};

/// Writes the model, then the solver state (Caffe's Snapshot with HDF5).
pub fn write(
    net: &Net,
    history: &[Tensor],
    iter: i64,
    current_step: i32,
    prefix: &str,
    write_diff: bool,
) -> Result<SnapshotFiles> {
    let model = filename(prefix, iter, ".caffemodel.h5");
    info!("solver.cpp:480", "Snapshotting to HDF5 file {model}");
    write_model(net, Path::new(&model), write_diff)?;

    let state = filename(prefix, iter, ".solverstate.h5");
    info!("sgd_solver.cpp:301", "Snapshotting solver state to HDF5 file {state}");
    let state_path = Path::new(&state);
    crate::util::write_atomic_with(state_path, |tmp| {
        let file = h5::create(tmp).with_context(|| state_path.display())?;
        h5::write_int(&file, "iter", iter as i32).with_context(|| state_path.display())?;
        h5::write_string(&file, "learned_net", &model).with_context(|| state_path.display())?;
        h5::write_int(&file, "current_step", current_step).with_context(|| state_path.display())?;
        let group = h5::create_group(&file, "history").with_context(|| state_path.display())?;
        for (i, h) in history.iter().enumerate() {
            h5::write_f32(&group, &i.to_string(), &h.size(), &crate::util::tensor_values(h)?)
                .with_context(|| state_path.display())?;
        }
        drop(group);
        file.close().map_err(|e| Error::io(state_path, std::io::Error::other(e.to_string())))
    })?;
    Ok(SnapshotFiles { model: model.into(), state: state.into() })
}

/// Reads a `.solverstate.h5` as a SolverState (history blobs with shapes).
pub fn read_state(path: &Path) -> Result<SolverState> {
    h5::read_untrusted(path, read_state_datasets).with_context(|| path.display())
}

/// The state's datasets; errors name the dataset, the caller adds the file.
fn read_state_datasets(file: &h5::File) -> Result<SolverState> {
    let iter = h5::read_int(file, "iter")?;
    let current_step = h5::read_int(file, "current_step")?;
    let learned_net = if file.link_exists("learned_net") { Some(h5::read_string(file, "learned_net")?) } else { None };
    let group = h5::group(file, "history")?;
    let count = h5::members(&group)?.len();
    let mut history = Vec::with_capacity(count);
    for i in 0..count {
        let (shape, values) = h5::read_f32(&group, &i.to_string()).context("history")?;
        history.push(make_blob(&shape, values));
    }
    Ok(SolverState { iter: Some(iter), learned_net, history, current_step: Some(current_step) })
}
