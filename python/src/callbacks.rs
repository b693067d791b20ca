//! pycaffe's per-layer net callbacks (`net.before_forward(f)`,
//! `after_forward`, `before_backward`, `after_backward`): Python callables
//! kept in one list per event and called by the caffe-tch net with the
//! layer's index, as Caffe's net calls its callbacks.
use caffe_tch::net::{LayerCallback, LayerEvent, Net};
use caffe_tch::Error;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

/// The callables of each event, in `EVENTS` order.
pub type Lists = [Py<PyList>; 4];

/// The order of pycaffe's event numbers (`Net._add_callback`).
const EVENTS: [LayerEvent; 4] =
    [LayerEvent::BeforeForward, LayerEvent::AfterForward, LayerEvent::BeforeBackward, LayerEvent::AfterBackward];

/// What the errors of callbacks begin with (`errors::to_py` keeps their cause).
pub const CONTEXT: &str = "Python callback net.";

/// Adds `f` to event `event`'s list and (re)installs the net's callback;
/// backward then runs layer by layer once a backward event has a callable.
pub fn add(py: Python<'_>, net: &mut Net, lists: &mut Option<Lists>, event: usize, f: PyObject) -> PyResult<()> {
    if event >= EVENTS.len() {
        return Err(PyValueError::new_err(format!("callback event {event}: expected 0 to 3")));
    }
    if !f.bind(py).is_callable() {
        return Err(PyValueError::new_err(format!("net.{}: the callback must be callable", EVENTS[event].name())));
    }
    let lists = lists.get_or_insert_with(|| std::array::from_fn(|_| PyList::empty(py).unbind()));
    lists[event].bind(py).append(f)?;
    let backward = !lists[2].bind(py).is_empty() || !lists[3].bind(py).is_empty();
    let own: Lists = std::array::from_fn(|k| lists[k].clone_ref(py));
    net.set_layer_callback(Some(call_lists(own)), backward);
    Ok(())
}

fn call_lists(lists: Lists) -> LayerCallback {
    Box::new(move |event, layer| {
        let k = EVENTS.iter().position(|&e| e == event).unwrap_or(0);
        Python::with_gil(|py| {
            let list = lists[k].bind(py).clone();
            for f in list.iter() {
                if let Err(e) = f.call1((layer,)) {
                    let text = e.to_string();
                    crate::errors::stash_cause(py, e);
                    return Err(Error::Context {
                        context: format!("{CONTEXT}{}({layer})", event.name()),
                        inner: Box::new(Error::Invalid(text)),
                    });
                }
            }
            Ok(())
        })
    })
}
