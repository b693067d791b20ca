//! `_caffe.Solver`: caffe-tch's `Solver` (the same code and logs as `caffe
//! train`); its nets are reachable as `_caffe.Net(solver=s, index=i)`.
use std::cell::RefCell;
use std::path::Path;

use caffe_tch::solver::{Solver, SolverOptions, StepRun};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::{nogil, IntoPy};
use crate::views::{Handle, Home, Kinds, Shared};

#[pyclass(unsendable, subclass, name = "Solver", module = "caffe._caffe")]
pub struct PySolver {
    pub(crate) h: Handle,
    /// The solver's settings as every rank must share them (`caffe.NCCL` checks).
    pub(crate) digest: String,
    /// The run of iterations pycaffe is driving piece by piece (`step` with callbacks).
    run: RefCell<Option<StepRun>>,
}

/// The `type` a solver file asks for (after Caffe's upgrades).
#[pyfunction]
pub fn solver_type(path: &str) -> PyResult<String> {
    let p = Solver::read_param(Path::new(path), Default::default()).py()?;
    Ok(p.r#type().to_string())
}

/// What `get_solver_from_string` calls its text in messages.
const TEXT_ORIGIN: &str = "<solver string>";

/// The `type` solver prototxt text asks for (after Caffe's upgrades).
#[pyfunction]
pub fn solver_type_of_text(text: &str) -> PyResult<String> {
    let p = Solver::parse_param(text, TEXT_ORIGIN, Default::default()).py()?;
    Ok(p.r#type().to_string())
}

impl PySolver {
    pub(crate) fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&mut Solver) -> PyResult<R>) -> PyResult<R> {
        let mut s = self.h.try_borrow_mut().map_err(|_| PyValueError::new_err("solver is busy (re-entrant call)"))?;
        let n = s.views.len();
        // What Python wrote into any of its nets goes in first ...
        for i in 0..n {
            let (net, views) = s.net(i)?;
            views.push(net, true, &[])?;
        }
        let Home::Solver(solver) = &mut s.home else {
            return Err(PyValueError::new_err("not a solver"));
        };
        let out = f(solver)?;
        // ... and what the solver changed is visible after.
        for i in 0..n {
            let (net, views) = s.net(i)?;
            views.pull(py, net, Kinds::ALL)?;
        }
        Ok(out)
    }
}

#[pymethods]
impl PySolver {
    /// `solver_type` overrides the file's `type` (pycaffe's `SGDSolver(f)` is SGD whatever the file says).
    /// With `text`, the parameters are that prototxt text and `path` is unused
    /// (pycaffe's `get_solver_from_string`; net paths are then relative to the
    /// working directory, as in Caffe).
    #[new]
    #[pyo3(signature = (path, solver_type=None, text=None))]
    fn new(path: &str, solver_type: Option<String>, text: Option<&str>) -> PyResult<Self> {
        let (mut param, origin) = match text {
            Some(text) => (Solver::parse_param(text, TEXT_ORIGIN, Default::default()).py()?, None),
            None => (Solver::read_param(Path::new(path), Default::default()).py()?, Some(Path::new(path))),
        };
        if let Some(t) = solver_type {
            param.r#type = Some(t);
        }
        let digest = caffe_tch::solver::cli::solver_digest(&param);
        let (rank, count) = crate::mode::solver_place();
        if count > 1 {
            // One of several solvers (caffe.set_solver_count): its seed, its share of the records.
            caffe_tch::solver::cli::rank_settings(&mut param, rank, count);
        } else {
            // All the records (the shard is per thread, and an earlier solver may have set one).
            caffe_tch::data::set_train_shard(0, 1);
            caffe_tch::data::set_shared_seed(None);
        }
        let options = SolverOptions { device: Some(crate::mode::device()), ..Default::default() };
        let solver = Solver::new(param, origin, options).py()?;
        Ok(PySolver { h: Shared::new(Home::Solver(Box::new(solver))), digest, run: RefCell::new(None) })
    }

    #[getter]
    fn iter(&self) -> PyResult<i64> {
        match &self.h.borrow().home {
            Home::Solver(s) => Ok(s.iter()),
            Home::Net(_) => Err(PyValueError::new_err("not a solver")),
        }
    }

    #[getter]
    fn _type(&self) -> PyResult<String> {
        match &self.h.borrow().home {
            Home::Solver(s) => Ok(s.solver_type().name().to_string()),
            Home::Net(_) => Err(PyValueError::new_err("not a solver")),
        }
    }

    /// The solver's parameters as prototxt text (pycaffe's `solver.param`).
    fn _param_text(&self) -> PyResult<String> {
        match &self.h.borrow().home {
            Home::Solver(s) => Ok(caffe_tch::proto::print::to_text(s.param())),
            Home::Net(_) => Err(PyValueError::new_err("not a solver")),
        }
    }

    fn _net_count(&self) -> usize {
        self.h.borrow().views.len()
    }

    fn step(&self, py: Python<'_>, iters: i64) -> PyResult<()> {
        self.with(py, |s| nogil(py, || s.step(iters)).py())
    }

    #[pyo3(signature = (resume=None))]
    fn solve(&self, py: Python<'_>, resume: Option<String>) -> PyResult<()> {
        self.with(py, |s| {
            if let Some(r) = resume {
                s.restore(Path::new(&r)).py()?;
            }
            nogil(py, || s.solve()).py()
        })
    }

    fn apply_update(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.apply_update(false).py())
    }

    /// Writes `<prefix>_iter_N.caffemodel` and `.solverstate`; returns the two paths.
    fn snapshot(&self, py: Python<'_>) -> PyResult<(String, String)> {
        self.with(py, |s| {
            let files = s.snapshot().py()?;
            Ok((files.model.display().to_string(), files.state.display().to_string()))
        })
    }

    fn restore(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        self.with(py, |s| s.restore(Path::new(path)).py())
    }

    // The pieces of `step` and `solve`, for pycaffe's callbacks (caffe/pycaffe.py
    // calls them in Caffe's order, with the callbacks between).

    fn _solve_begin(&self, py: Python<'_>) -> PyResult<(i64, i64)> {
        self.with(py, |s| {
            let start = s.solve_begin().py()?;
            Ok((start, s.param().max_iter() as i64 - s.iter()))
        })
    }

    fn _solve_end(&self, py: Python<'_>, start_iter: i64) -> PyResult<()> {
        self.with(py, |s| nogil(py, || s.solve_end(start_iter)).py())
    }

    fn _step_begin(&self, py: Python<'_>, iters: i64) -> PyResult<()> {
        let run = self.with(py, |s| Ok(s.step_begin(iters)))?;
        *self.run.borrow_mut() = Some(run);
        Ok(())
    }

    fn _step_next(&self, py: Python<'_>) -> PyResult<bool> {
        self.with_run(py, |s, run| s.step_next(run))
    }

    fn _step_gradients(&self, py: Python<'_>) -> PyResult<()> {
        self.with_run(py, |s, run| s.step_gradients(run))
    }

    fn _step_update(&self, py: Python<'_>) -> PyResult<()> {
        self.with_run(py, |s, run| s.step_update(run))
    }

    fn _step_end(&self, py: Python<'_>) -> PyResult<()> {
        self.run.borrow_mut().take();
        self.with(py, |s| {
            s.step_end();
            Ok(())
        })
    }
}

impl PySolver {
    /// Runs one piece of a step on the run `_step_begin` started, without the GIL.
    fn with_run<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Solver, &mut StepRun) -> caffe_tch::Result<R>,
    ) -> PyResult<R> {
        let mut slot = self.run.borrow_mut();
        let run = slot.as_mut().ok_or_else(|| PyValueError::new_err("no step in progress (call _step_begin)"))?;
        self.with(py, |s| nogil(py, || f(s, run)).py())
    }
}
