//! `caffe::SolverParameter` and `caffe::Solver<float>`: a solver prototxt
//! read (or parameters set field by field, as C++ programs set them through
//! protobuf's accessors), and caffe-tch's [`Solver`] over it: the same
//! training, logs and snapshots as `caffe train`. Its nets are handed out
//! as [`NetHandle`]s sharing the solver.
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};

use caffe_tch::proto::caffe::SolverParameter;
use caffe_tch::solver::{Solver, SolverAction, SolverOptions, StepRun};
use caffe_tch::{Error, Result};

use crate::message::{clear_field, field_is_set, field_size, field_text, merge_text};
use crate::net::{NetHandle, Nets, Shared, SharedRef};
use crate::{guarded, text as c_text};

/// A `SolverParameter`: the message, and the file it was read from (for
/// messages), and the last value handed out as a C string.
#[derive(Clone, Default)]
pub struct SolverParamHandle {
    param: SolverParameter,
    file: Option<PathBuf>,
    value: CString,
}

fn param<'a>(p: *mut SolverParamHandle) -> Result<&'a mut SolverParamHandle> {
    // SAFETY: the header passes a pointer this library returned, until it
    // calls `caffe_tch_solver_param_free`.
    unsafe { p.as_mut() }.ok_or_else(|| Error::invalid("null SolverParameter"))
}

/// An empty `SolverParameter` (every field at its default).
#[no_mangle]
pub extern "C" fn caffe_tch_solver_param_new() -> *mut SolverParamHandle {
    Box::into_raw(Box::default())
}

/// `ReadSolverParamsFromTextFileOrDie(file, &param)`: the file parsed and
/// upgraded as `caffe train` reads it (`snapshot_prefix` defaults to the
/// file's path without its extension). Null on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_read(file: *const c_char) -> *mut SolverParamHandle {
    guarded(std::ptr::null_mut(), || {
        let file = PathBuf::from(c_text(file, "ReadSolverParamsFromTextFile")?);
        let param = Solver::read_param(&file, Default::default())?;
        Ok(Box::into_raw(Box::new(SolverParamHandle { param, file: Some(file), value: CString::default() })))
    })
}

/// A copy of `p` (protobuf messages copy).
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_clone(p: *mut SolverParamHandle) -> *mut SolverParamHandle {
    guarded(std::ptr::null_mut(), || Ok(Box::into_raw(Box::new(param(p)?.clone()))))
}

/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_free(p: *mut SolverParamHandle) {
    if !p.is_null() {
        // SAFETY: made by Box::into_raw here, freed once.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Merges prototxt text into `p` ([`merge_text`]; the header's setters:
/// `set_base_lr(0.01)` is `base_lr: 0.01`). 0 on success.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_merge(p: *mut SolverParamHandle, prototxt: *const c_char) -> c_int {
    guarded(-1, || {
        let prototxt = c_text(prototxt, "SolverParameter")?;
        merge_text(&mut param(p)?.param, &prototxt)?;
        Ok(0)
    })
}

/// The value of field `name` as text ([`field_text`]). Null on error (no
/// such field). Valid until the next call on `p`.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_get(
    p: *mut SolverParamHandle,
    name: *const c_char,
    index: c_int,
) -> *const c_char {
    guarded(std::ptr::null(), || {
        let p = param(p)?;
        let name = c_text(name, "SolverParameter field")?;
        let shown = field_text(&p.param, &name, index)?;
        p.value = CString::new(shown.replace('\0', " ")).unwrap_or_default();
        Ok(p.value.as_ptr())
    })
}

/// Whether field `name` is set (`has_solver_mode()`): 1 or 0; -1 on error.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_has(p: *mut SolverParamHandle, name: *const c_char) -> c_int {
    guarded(-1, || {
        let name = c_text(name, "SolverParameter field")?;
        Ok(field_is_set(&param(p)?.param, &name)? as c_int)
    })
}

/// Clears field `name` (`clear_weights()`). 0 on success.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_clear(p: *mut SolverParamHandle, name: *const c_char) -> c_int {
    guarded(-1, || {
        let name = c_text(name, "SolverParameter field")?;
        clear_field(&mut param(p)?.param, &name)?;
        Ok(0)
    })
}

/// How many values repeated field `name` holds (`test_iter_size()`); -1 on error.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_size(p: *mut SolverParamHandle, name: *const c_char) -> c_int {
    guarded(-1, || {
        let name = c_text(name, "SolverParameter field")?;
        Ok(field_size(&param(p)?.param, &name)? as c_int)
    })
}

/// A solver and its nets, which `caffe_tch_solver_net` hands out.
pub struct SolverHandle {
    shared: SharedRef,
    /// The run of iterations a program with solver callbacks drives piece
    /// by piece (`caffe_tch_solver_step_piece`), between which its
    /// callbacks run and may call into the solver's nets.
    run: std::cell::RefCell<Option<StepRun>>,
}

fn with<T>(s: *mut SolverHandle, f: impl FnOnce(&mut Shared) -> Result<T>) -> Result<T> {
    // SAFETY: the header passes a pointer `caffe_tch_solver_new` returned,
    // until it calls `caffe_tch_solver_free`.
    let s = unsafe { s.as_ref() }.ok_or_else(|| Error::invalid("null Solver"))?;
    let mut shared =
        s.shared.try_borrow_mut().map_err(|_| Error::invalid("the solver is busy (a call from inside a call)"))?;
    f(&mut shared)
}

/// Runs `f` on the solver, with what the program wrote into its nets'
/// weights seen before and its nets' host copies brought up to date after.
fn run<T>(s: *mut SolverHandle, f: impl FnOnce(&mut Solver) -> Result<T>) -> Result<T> {
    run_then(s, true, f)
}

/// [`run`], bringing the host copies up to date only with `refresh_copies`
/// (a step's piece after which the program gets no control before the next).
fn run_then<T>(s: *mut SolverHandle, refresh_copies: bool, f: impl FnOnce(&mut Solver) -> Result<T>) -> Result<T> {
    with(s, |shared| {
        shared.before_solver();
        let Nets::Solver(solver) = &mut shared.nets else {
            return Err(Error::invalid("not a solver"));
        };
        let out = f(solver);
        if refresh_copies {
            shared.after_solver()?;
        }
        out
    })
}

/// `SolverRegistry<float>::CreateSolver(param)` (or `new SGDSolver<float>(param)`
/// and its kin, `type` naming the rule; null keeps the parameters'): the
/// solver, its nets built on the device `Caffe::set_mode` chose. Null on error.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_new(
    p: *mut SolverParamHandle,
    solver_type: *const c_char,
) -> *mut SolverHandle {
    guarded(std::ptr::null_mut(), || {
        let p = param(p)?;
        let mut param = p.param.clone();
        if !solver_type.is_null() {
            param.r#type = Some(c_text(solver_type, "Solver type")?);
        }
        caffe_tch::util::allocator::install_caching_cpu_allocator();
        let options = SolverOptions { device: Some(crate::device()), ..Default::default() };
        let solver = Solver::new(param, p.file.as_deref(), options)?;
        let shared = Shared::new(Nets::Solver(Box::new(solver)));
        Ok(Box::into_raw(Box::new(SolverHandle { shared, run: Default::default() })))
    })
}

/// Lets go of the solver (its nets live on while a C++ Net holds one).
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_free(s: *mut SolverHandle) {
    if !s.is_null() {
        // SAFETY: made by Box::into_raw in caffe_tch_solver_new, freed once.
        drop(unsafe { Box::from_raw(s) });
    }
}

/// How many nets the solver has: its training net and its test nets.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_net_count(s: *mut SolverHandle) -> c_int {
    guarded(-1, || with(s, |shared| Ok(shared.net_count() as c_int)))
}

/// Net `i` of the solver (0 trains, 1.. test) for a C++ Net to hold; null on error.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_net(s: *mut SolverHandle, i: c_int) -> *mut NetHandle {
    guarded(std::ptr::null_mut(), || {
        // SAFETY: as in `with`.
        let h = unsafe { s.as_ref() }.ok_or_else(|| Error::invalid("null Solver"))?;
        let n = h.shared.borrow().net_count();
        if i < 0 || i as usize >= n {
            return Err(Error::invalid(format!("the solver has {n} nets, not a net {i}")));
        }
        Ok(Box::into_raw(Box::new(NetHandle::of(h.shared.clone(), i as usize))))
    })
}

/// `SetActionFunction(f)`: the solver asks `action(context)` between
/// iterations what to do (0 nothing, 1 stop, 2 snapshot, Caffe's
/// SolverAction), as `caffe train` asks its signal handler. The function
/// and context live as long as the solver (the header keeps them).
/// # Safety
/// As [`caffe_tch_solver_param_read`]; `action` is callable with `context`
/// while the solver lives.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_set_action(
    s: *mut SolverHandle,
    action: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    context: *mut c_void,
) -> c_int {
    guarded(-1, || {
        let action = action.ok_or_else(|| Error::invalid("Solver::SetActionFunction: null function"))?;
        let context = context as usize;
        with(s, |shared| {
            let Nets::Solver(solver) = &mut shared.nets else {
                return Err(Error::invalid("not a solver"));
            };
            solver.set_action_function(Box::new(move || {
                // SAFETY: the header keeps the function and its context for the solver's life.
                match unsafe { action(context as *mut c_void) } {
                    1 => SolverAction::Stop,
                    2 => SolverAction::Snapshot,
                    _ => SolverAction::None,
                }
            }));
            Ok(0)
        })
    })
}

/// `Step(iters)`: that many iterations, as `caffe train` runs them. 0 on success.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_step(s: *mut SolverHandle, iters: c_int) -> c_int {
    guarded(-1, || {
        run(s, |solver| solver.step(iters as i64))?;
        Ok(0)
    })
}

/// The pieces of `Step` and `Solve` for a program with solver callbacks
/// (`Solver::add_callback`), which runs them between the pieces as Caffe's
/// solver does: `piece` 0 starts a run of `arg` iterations, 1 opens the next
/// iteration (clears the diffs, tests when due; returns 1, or 0 when the
/// run is over), 2 computes its gradients (forward, backward, display), 3
/// applies the update (and snapshots when due), 4 ends the run; 5 does
/// what `Solve` does before its iterations (returns the iteration it starts
/// at) and 6 what it does after (`arg`: that iteration). -1 on error.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_step_piece(s: *mut SolverHandle, piece: c_int, arg: i64) -> i64 {
    guarded(-1, || {
        // SAFETY: the header passes a pointer `caffe_tch_solver_new` returned.
        let h = unsafe { s.as_ref() }.ok_or_else(|| Error::invalid("null Solver"))?;
        let mut slot = h.run.try_borrow_mut().map_err(|_| Error::invalid("the solver is busy"))?;
        let no_run = || Error::invalid("Solver: no run of iterations in progress");
        // The callbacks run after pieces 1 and 2 and the program after 4-6,
        // so only those bring the host copies up to date (0 and 3 are always
        // followed by 1 or 4).
        match piece {
            0 => {
                let started = run_then(s, false, |solver| Ok(solver.step_begin(arg)))?;
                *slot = Some(started);
                Ok(0)
            }
            1 => run(s, |solver| solver.step_next(slot.as_mut().ok_or_else(no_run)?)).map(i64::from),
            2 => run(s, |solver| solver.step_gradients(slot.as_mut().ok_or_else(no_run)?)).map(|()| 0),
            3 => run_then(s, false, |solver| solver.step_update(slot.as_mut().ok_or_else(no_run)?)).map(|()| 0),
            4 => {
                slot.take();
                run(s, |solver| {
                    solver.step_end();
                    Ok(0)
                })
            }
            5 => run(s, |solver| solver.solve_begin()),
            6 => run(s, |solver| solver.solve_end(arg)).map(|()| 0),
            other => Err(Error::invalid(format!("Solver: unknown step piece {other}"))),
        }
    })
}

/// `Solve(resume_file)`: from `resume_file`'s state when not null, to
/// `max_iter`, with the last snapshot, display and test. 0 on success.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_solve(s: *mut SolverHandle, resume_file: *const c_char) -> c_int {
    guarded(-1, || {
        let resume = if resume_file.is_null() { None } else { Some(c_text(resume_file, "Solve")?) };
        run(s, |solver| {
            if let Some(state) = resume {
                solver.restore(Path::new(&state))?;
            }
            solver.solve()
        })?;
        Ok(0)
    })
}

/// `Restore(state_file)`: the iteration, weights and history of a `.solverstate`. 0 on success.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_restore(s: *mut SolverHandle, state_file: *const c_char) -> c_int {
    guarded(-1, || {
        let state = c_text(state_file, "Restore")?;
        run(s, |solver| solver.restore(Path::new(&state)))?;
        Ok(0)
    })
}

/// `Snapshot()`: `<prefix>_iter_N.caffemodel` and `.solverstate`. 0 on success.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_snapshot(s: *mut SolverHandle) -> c_int {
    guarded(-1, || {
        run(s, |solver| solver.snapshot().map(|_| ()))?;
        Ok(0)
    })
}

/// `ApplyUpdate()`: the update rule on the diffs the nets hold (pycaffe's
/// `apply_update`), at the current iteration's rate. 0 on success.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_apply_update(s: *mut SolverHandle) -> c_int {
    guarded(-1, || {
        run(s, |solver| solver.apply_update(false))?;
        Ok(0)
    })
}

/// `iter()`: the iterations done; -1 on error.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_iter(s: *mut SolverHandle) -> i64 {
    guarded(-1, || {
        with(s, |shared| match &shared.nets {
            Nets::Solver(solver) => Ok(solver.iter()),
            Nets::One(_) => Err(Error::invalid("not a solver")),
        })
    })
}

/// The solver's parameters as it runs them (`param()`, after its upgrades);
/// null on error.
/// # Safety
/// As [`caffe_tch_solver_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_solver_param_of(s: *mut SolverHandle) -> *mut SolverParamHandle {
    guarded(std::ptr::null_mut(), || {
        let param = with(s, |shared| match &shared.nets {
            Nets::Solver(solver) => Ok(solver.param().clone()),
            Nets::One(_) => Err(Error::invalid("not a solver")),
        })?;
        Ok(Box::into_raw(Box::new(SolverParamHandle { param, file: None, value: CString::default() })))
    })
}
