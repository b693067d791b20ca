//! caffe-tch errors as the Python exceptions pycaffe users expect: a file
//! that cannot be read is an IOError (FileNotFoundError when missing), a
//! libtorch failure a RuntimeError, anything else about the input a ValueError.
//! An exception raised by a Python layer's code (or a net callback) is the
//! one the script gets, as in pycaffe, with the net's one-line error (file,
//! line, layer) added as a note.
use std::cell::RefCell;

use caffe_tch::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyIOError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::{PyErr, Python};

thread_local! {
    /// The last exception a Python layer or net callback raised on this thread.
    static LAYER_CAUSE: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Keeps a Python layer's exception for [`to_py`].
pub fn stash_cause(_py: Python<'_>, e: PyErr) {
    LAYER_CAUSE.with(|c| *c.borrow_mut() = Some(e));
}

pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    // Only a layer's error carries its cause: one from an earlier error that
    // never reached Python is dropped here.
    let cause = LAYER_CAUSE.with(|c| c.borrow_mut().take());
    if let (Some(cause), true) = (cause, is_python_error(&e)) {
        // The layer's own exception reaches the script, as through pycaffe
        // (a script's `except` for its type works), with where it happened
        // as a note. Ctrl-C while a layer ran stops the script as it would
        // anywhere else.
        return Python::with_gil(|py| {
            if !cause.is_instance_of::<PyKeyboardInterrupt>(py) {
                if let Err(note_failed) = add_note(py, &cause, &msg) {
                    // The exception still propagates, without the note.
                    note_failed.write_unraisable(py, None);
                }
            }
            cause
        });
    }
    let mut inner = &e;
    while let Error::Context { inner: i, .. } = inner {
        inner = i;
    }
    match inner {
        Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        Error::Io { .. } => PyIOError::new_err(msg),
        Error::Torch(_) => PyRuntimeError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// Adds `note` to the exception's notes (`add_note` from Python 3.11, the
/// `__notes__` list it keeps before that).
fn add_note(py: Python<'_>, e: &PyErr, note: &str) -> PyResult<()> {
    let value = e.value(py);
    if value.hasattr("add_note")? {
        value.call_method1("add_note", (note,))?;
    } else {
        let notes = match value.getattr("__notes__") {
            Ok(n) => n,
            Err(_) => {
                let fresh = pyo3::types::PyList::empty(py);
                value.setattr("__notes__", &fresh)?;
                fresh.into_any()
            }
        };
        notes.call_method1("append", (note,))?;
    }
    Ok(())
}

/// An error a Python layer or a Python net callback raised.
fn is_python_error(e: &Error) -> bool {
    match e {
        Error::Layer { layer_type, inner, .. } => layer_type == "Python" || is_python_error(inner),
        Error::Context { context, inner } => context.starts_with(crate::callbacks::CONTEXT) || is_python_error(inner),
        _ => false,
    }
}

pub fn torch(e: tch::TchError) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

pub trait IntoPy<T> {
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPy<T> for caffe_tch::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}

impl<T> IntoPy<T> for Result<T, tch::TchError> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(torch)
    }
}

/// Runs `f` without the GIL. libtorch's autograd engine refuses to run while
/// the GIL is held once torch's Python bindings are loaded (they are: the
/// package imports torch), and other Python threads may run meanwhile.
pub fn nogil<T>(py: pyo3::Python<'_>, f: impl FnOnce() -> T) -> T {
    struct AssertSend<T>(T);
    // SAFETY: `allow_threads` runs the closure on this very thread; nothing
    // crosses threads. The borrow of the net stays held (RefCell), so another
    // Python thread that reaches it gets the "busy" error, not a data race.
    unsafe impl<T> Send for AssertSend<T> {}
    let f = AssertSend(f);
    let out = py.allow_threads(move || {
        let f = f;
        AssertSend((f.0)())
    });
    out.0
}
