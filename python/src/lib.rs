//! `_caffe`: the native half of the `caffe` Python package (pycaffe's
//! `_caffe.cpp`). It wraps caffe-tch's `Net` and `Solver`; the Python half
//! (`caffe/pycaffe.py`) adds pycaffe's dictionaries and argument handling.
use pyo3::prelude::*;

mod errors;
mod mode;
mod net;
mod solver;
mod views;

#[pymodule]
fn _caffe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TRAIN", 0)?;
    m.add("TEST", 1)?;
    m.add_function(wrap_pyfunction!(mode::set_mode_cpu, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_mode_gpu, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_device, m)?)?;
    m.add_function(wrap_pyfunction!(mode::set_random_seed, m)?)?;
    m.add_function(wrap_pyfunction!(mode::layer_type_list, m)?)?;
    m.add_function(wrap_pyfunction!(solver::solver_type, m)?)?;
    m.add_class::<net::PyNet>()?;
    m.add_class::<solver::PySolver>()?;
    m.add_class::<views::TensorHolder>()?;
    Ok(())
}
