//! Caffe's global mode (`caffe.set_mode_cpu/gpu`, `set_device`): the device
//! nets and solvers created afterwards run on.
use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tch::Device;

struct Mode {
    gpu: bool,
    device_id: usize,
}

static MODE: Mutex<Mode> = Mutex::new(Mode { gpu: false, device_id: 0 });

/// The device for a net or solver created now.
pub fn device() -> Device {
    let m = MODE.lock().unwrap_or_else(|p| p.into_inner());
    if m.gpu {
        Device::Cuda(m.device_id)
    } else {
        Device::Cpu
    }
}

#[pyfunction]
pub fn set_mode_cpu() {
    MODE.lock().unwrap_or_else(|p| p.into_inner()).gpu = false;
}

#[pyfunction]
pub fn set_mode_gpu() -> PyResult<()> {
    if !tch::Cuda::is_available() {
        return Err(PyRuntimeError::new_err(
            "set_mode_gpu: CUDA is not available to this libtorch (no GPU, or a CPU-only PyTorch); \
             nets run on the CPU with caffe.set_mode_cpu()",
        ));
    }
    let mut m = MODE.lock().unwrap_or_else(|p| p.into_inner());
    let n = tch::Cuda::device_count() as usize;
    if m.device_id >= n {
        return Err(PyValueError::new_err(format!("set_mode_gpu: device {} does not exist ({n} GPUs)", m.device_id)));
    }
    m.gpu = true;
    Ok(())
}

#[pyfunction]
pub fn set_device(device_id: i64) -> PyResult<()> {
    if device_id < 0 {
        return Err(PyValueError::new_err(format!("set_device: negative device id {device_id}")));
    }
    if tch::Cuda::is_available() && device_id >= tch::Cuda::device_count() {
        return Err(PyValueError::new_err(format!(
            "set_device: device {device_id} does not exist ({} GPUs)",
            tch::Cuda::device_count()
        )));
    }
    MODE.lock().unwrap_or_else(|p| p.into_inner()).device_id = device_id as usize;
    Ok(())
}

#[pyfunction]
pub fn set_random_seed(seed: i64) {
    caffe_tch::layers::set_random_seed(seed);
}

/// Every layer type the registry can build, as Caffe's LayerRegistry lists them.
#[pyfunction]
pub fn layer_type_list() -> Vec<String> {
    let mut names: Vec<String> =
        caffe_tch::layers::registry::REGISTRY.iter().map(|l| l.type_name.to_string()).collect();
    // Built by this module (caffe.Layer subclasses), not the library's registry.
    names.push(caffe_tch::layers::python::TYPE.to_string());
    // C++ types from layer libraries (load_layer_library).
    names.extend(caffe_tch::layers::external::types());
    names.sort();
    names
}

/// pycaffe's `caffe.log`: one INFO line through caffe-tch's own log (the same
/// format and destination as the solver's lines).
#[pyfunction]
pub fn log_info(message: &str) {
    caffe_tch::info!("_caffe.cpp:1", "{message}");
}

/// Net prototxt text in the current format: V0/V1 nets upgraded as every
/// caffe-tch command reads them (`caffe.draw` draws what caffe-tch builds).
/// `origin` names the text in errors.
#[pyfunction]
pub fn upgrade_net_text(text: &str, origin: &str) -> PyResult<String> {
    use crate::errors::IntoPy;
    use caffe_tch::proto::caffe::NetParameter;
    use caffe_tch::proto::{print, text, upgrade};
    let mut net = text::parse_str::<NetParameter>(text, origin, Default::default()).py()?.message;
    upgrade::upgrade_net(&mut net, origin).py()?;
    Ok(print::to_text(&net))
}

/// pycaffe's solver count and rank (`set_solver_count`, `set_solver_rank`):
/// the data-parallel group the solvers built next belong to (`caffe.NCCL`).
struct Ranks {
    count: usize,
    rank: usize,
    multiprocess: bool,
}

static RANKS: Mutex<Ranks> = Mutex::new(Ranks { count: 1, rank: 0, multiprocess: false });

fn ranks() -> std::sync::MutexGuard<'static, Ranks> {
    RANKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// (rank, count) for a solver built now.
pub fn solver_place() -> (usize, usize) {
    let r = ranks();
    (r.rank, r.count)
}

#[pyfunction]
pub fn solver_count() -> usize {
    ranks().count
}

#[pyfunction]
pub fn set_solver_count(count: i64) -> PyResult<()> {
    if count < 1 {
        return Err(PyValueError::new_err(format!("set_solver_count: {count} solvers (at least 1)")));
    }
    ranks().count = count as usize;
    Ok(())
}

#[pyfunction]
pub fn solver_rank() -> usize {
    ranks().rank
}

#[pyfunction]
pub fn set_solver_rank(rank: i64) -> PyResult<()> {
    if rank < 0 {
        return Err(PyValueError::new_err(format!("set_solver_rank: negative rank {rank}")));
    }
    ranks().rank = rank as usize;
    Ok(())
}

/// Caffe's flag for one solver per process; caffe-tch's solvers are always so.
#[pyfunction]
pub fn multiprocess() -> bool {
    ranks().multiprocess
}

#[pyfunction]
pub fn set_multiprocess(on: bool) {
    ranks().multiprocess = on;
}

/// Loads a shared library of C++ layer types (compiled against caffe-tch's
/// `cpp/include` with `REGISTER_LAYER_CLASS`, linked with `-lcaffe`); nets
/// built afterwards can have them. Returns the types it registered.
#[pyfunction]
pub fn load_layer_library(path: std::path::PathBuf) -> PyResult<Vec<String>> {
    caffe_tch::layers::external::library::load(&path).map_err(crate::errors::to_py)
}

/// Loads the libraries `CAFFE_TCH_LAYER_LIBRARIES` names, at `import caffe`.
#[pyfunction]
pub fn _load_layer_libraries_from_env() -> PyResult<()> {
    caffe_tch::layers::external::library::load_from_env().map_err(crate::errors::to_py)
}
