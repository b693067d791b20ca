//! What a layer does differently while its forward is recorded into a CUDA
//! graph (`net::graph`): a recorded pass runs later, many times, without the
//! host, so nothing in it may read a value back to decide something. The
//! checks that do (labels within the number of classes) are handed to the
//! net as [`Deferred`] checks, which it runs on every new batch before the
//! graph runs on it.
use std::cell::RefCell;

use tch::Tensor;

use crate::Result;

/// A check of one input tensor, made on the host.
pub type InputCheck = Box<dyn Fn(&Tensor) -> Result<()>>;

/// A check of a layer's input, run on the host before each replay.
pub struct Deferred {
    /// The tensor checked (a blob the graph reads; filled before each replay).
    pub input: Tensor,
    /// The index of the layer that asked for it (set by the net).
    pub layer: Option<usize>,
    pub check: InputCheck,
}

thread_local! {
    /// Some while this thread records a graph: the checks deferred so far.
    static RECORDING: RefCell<Option<Vec<Deferred>>> = const { RefCell::new(None) };
}

/// Whether this thread is recording a graph: layers must not read values
/// on the host, and defer their checks.
pub fn recording() -> bool {
    RECORDING.with(|r| r.borrow().is_some())
}

/// Runs `f` as a recording: layers defer their checks, which are returned
/// with `f`'s result.
pub fn record<T>(f: impl FnOnce() -> Result<T>) -> (Result<T>, Vec<Deferred>) {
    /// Ends the recording however `f` leaves (a panic included), so that
    /// eager forwards after it check their labels again.
    struct Ending;
    impl Drop for Ending {
        fn drop(&mut self) {
            RECORDING.with(|r| r.borrow_mut().take());
        }
    }
    RECORDING.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let ending = Ending;
    let out = f();
    let deferred = RECORDING.with(|r| r.borrow_mut().take()).unwrap_or_default();
    drop(ending);
    (out, deferred)
}

/// Hands `check` of `input` to the net, to run before each replay (only
/// while recording: see [`recording`]).
pub fn defer(input: &Tensor, check: impl Fn(&Tensor) -> Result<()> + 'static) {
    RECORDING.with(|r| {
        if let Some(list) = r.borrow_mut().as_mut() {
            list.push(Deferred { input: input.shallow_clone(), layer: None, check: Box::new(check) });
        }
    });
}

/// Marks the checks deferred since the last call as the layer `index`'s.
pub fn tag_layer(index: usize) {
    RECORDING.with(|r| {
        if let Some(list) = r.borrow_mut().as_mut() {
            for d in list.iter_mut().rev() {
                if d.layer.is_some() {
                    break;
                }
                d.layer = Some(index);
            }
        }
    });
}
