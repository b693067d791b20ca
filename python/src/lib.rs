//! `_caffe`: the native half of the `caffe` Python package (pycaffe's
//! `_caffe.cpp`). It wraps caffe-tch's `Net` and `Solver`; the Python half
//! (`caffe/pycaffe.py`) adds pycaffe's dictionaries and argument handling.
use pyo3::prelude::*;

mod callbacks;
mod cli;
mod dist;
mod errors;
mod layer;
mod mode;
mod net;
mod solver;
mod views;

// Layer libraries register their types in this process.
caffe_tch::define_layer_library_registration!();

#[pymodule]
fn _caffe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Nets built in this process can have Python layers.
    caffe_tch::layers::python::set_factory(layer::create);
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TRAIN", 0)?;
    m.add("TEST", 1)?;
    m.add_function(wrap_pyfunction!(mode::set_mode_cpu, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_mode_gpu, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_device, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_random_seed, m)?)?;
    m.add_function(wrap_pyfunction!(mode::layer_type_list, m)?)?;
    m.add_function(wrap_pyfunction!(mode::load_layer_library, m)?)?;
    m.add_function(wrap_pyfunction!(mode::_load_layer_libraries_from_env, m)?)?;
    m.add_function(wrap_pyfunction!(mode::log_info, m)?)?;
    m.add_function(wrap_pyfunction!(mode::upgrade_net_text, m)?)?;
    m.add_function(wrap_pyfunction!(mode::solver_count, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_solver_count, m)?)?;
    m.add_function(wrap_pyfunction!(mode::solver_rank, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_solver_rank, m)?)?;
    m.add_function(wrap_pyfunction!(mode::multiprocess, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_multiprocess, m)?)?;
    m.add_function(wrap_pyfunction!(solver::solver_type, m)?)?;
    m.add_function(wrap_pyfunction!(solver::solver_type_of_text, m)?)?;
    m.add_function(wrap_pyfunction!(cli::cli_main, m)?)?;
    m.add_class::<net::PyNet>()?;
    m.add_class::<solver::PySolver>()?;
    m.add_class::<dist::PyNccl>()?;
    m.add_class::<views::TensorHolder>()?;
    Ok(())
}
