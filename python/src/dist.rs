//! `caffe.NCCL`: pycaffe's data-parallel training, one solver per process.
//! The group is caffe-tch's (`dist::Dist`, c10d): NCCL for solvers on a GPU,
//! Gloo on the CPU. Once joined, the solver's own step averages the gradients
//! over the ranks before each update, as Caffe's NCCL callback does.
use std::rc::Rc;
use std::time::Duration;

use caffe_tch::dist::{launch, Dist, LaunchEnv, DEFAULT_TIMEOUT_S};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::IntoPy;
use crate::solver::PySolver;
use crate::views::Home;

/// What `new_uid` hands to every process: where rank 0 hosts the rendezvous.
const UID_PREFIX: &str = "caffe-tch-group:";

#[pyclass(unsendable, name = "NCCL", module = "caffe._caffe")]
pub struct PyNccl {
    group: Rc<Dist>,
    solver: Py<PySolver>,
}

fn parse_uid(uid: &str) -> PyResult<(String, u16)> {
    let bad = || PyValueError::new_err(format!("NCCL: {uid:?} is not a uid from caffe.NCCL.new_uid()"));
    let rest = uid.strip_prefix(UID_PREFIX).ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    Ok((host.to_string(), port.parse().map_err(|_| bad())?))
}

#[pymethods]
impl PyNccl {
    /// A fresh uid for one group: a free port of this machine, where rank 0
    /// will host the rendezvous (pass it to every process, as Caffe's). Bytes,
    /// as pycaffe's uid is under Python 3.
    #[staticmethod]
    fn new_uid(py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let port = launch::free_port().py()?;
        Ok(PyBytes::new(py, format!("{UID_PREFIX}127.0.0.1:{port}").as_bytes()).unbind())
    }

    /// Joins the group of `caffe.solver_count()` solvers as rank
    /// `caffe.solver_rank()`, on the solver's device; waits for the other ranks
    /// (up to `timeout` seconds). Every rank must have the same solver and net.
    #[new]
    #[pyo3(signature = (solver, uid, timeout=DEFAULT_TIMEOUT_S))]
    fn new(py: Python<'_>, solver: Bound<'_, PySolver>, uid: &Bound<'_, PyAny>, timeout: u64) -> PyResult<Self> {
        // new_uid's bytes, or the same text as a str.
        let uid: String = match uid.downcast::<PyBytes>() {
            Ok(b) => String::from_utf8_lossy(b.as_bytes()).into_owned(),
            Err(_) => uid.extract()?,
        };
        let (master_addr, master_port) = parse_uid(&uid)?;
        let (rank, world) = crate::mode::solver_place();
        if rank >= world {
            return Err(PyValueError::new_err(format!(
                "NCCL: solver rank {rank} of {world} (caffe.set_solver_count and set_solver_rank before the solver)"
            )));
        }
        let env = LaunchEnv { rank, world, local_rank: rank, master_addr, master_port };
        let handle = solver.borrow();
        let mut shared = handle.h.borrow_mut();
        let Home::Solver(s) = &mut shared.home else { return Err(PyValueError::new_err("NCCL needs a solver")) };
        let device = s.net().device();
        let group = crate::errors::nogil(py, || Dist::join(&env, Duration::from_secs(timeout.max(1)), device)).py()?;
        group.check_same("solver", &handle.digest).py()?;
        if rank != 0 {
            // One log, from rank 0 (Caffe logs its solvers' lines on the root solver only).
            caffe_tch::log::set_info_enabled(false);
        }
        caffe_tch::info!(
            "parallel.cpp:1",
            "Data-parallel over {world} ranks ({}): each rank reads 1 record in {world}; gradients are averaged",
            group.backend()
        );
        let group = Rc::new(group);
        caffe_tch::solver::cli::join_solver(s, Rc::clone(&group)).py()?;
        drop(shared);
        drop(handle);
        Ok(PyNccl { group, solver: solver.unbind() })
    }

    /// Gives every rank rank 0's weights (and solver history).
    fn bcast(&self, py: Python<'_>) -> PyResult<()> {
        self.solver.borrow(py).with(py, |s| crate::errors::nogil(py, || s.broadcast_weights()).py())
    }

    // Caffe's NCCL is also the solver callback that all-reduces the gradients;
    // here the solver's step does that itself, so `solver.add_callback(nccl)`
    // (and `net.after_backward(nccl)`) has nothing left to add.
    fn on_start(&self) {}

    fn on_gradients(&self) {}

    #[getter]
    fn rank(&self) -> usize {
        self.group.rank()
    }

    #[getter]
    fn world(&self) -> usize {
        self.group.world()
    }

    /// Waits for every rank (up to the group's timeout).
    fn barrier(&self, py: Python<'_>) -> PyResult<()> {
        crate::errors::nogil(py, || self.group.barrier("barrier")).py()
    }
}
