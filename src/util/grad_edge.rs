//! Autograd's gradient edges (`csrc/grad_edges.cpp`): the point of the graph
//! a tensor's gradient flows through, captured when the tensor is made. A
//! backward between edges needs no tensor handle, so it still reaches a
//! value that a later in-place op overwrote (a convolution's top under an
//! in-place ReLU), and it starts from given gradients without a Σ top·g root.
use std::ffi::{c_char, c_void};

use tch::Tensor;

use crate::util::shim::take_error;
use crate::{Error, Result};

extern "C" {
    fn caffe_tch_gradient_edge(tensor: *mut c_void, out: *mut *mut c_void) -> *mut c_char;
    fn caffe_tch_edge_free(edge: *mut c_void);
    fn caffe_tch_is_view(tensor: *mut c_void) -> bool;
    fn caffe_tch_backward_edges(
        roots: *const *mut c_void,
        root_grads: *const *mut c_void,
        n_roots: usize,
        outputs: *const *mut c_void,
        n_outputs: usize,
        keep_graph: bool,
        grads: *mut *mut c_void,
    ) -> *mut c_char;
}

/// The edge a tensor's gradient flows through (its grad_fn and output
/// number, or a leaf's accumulator); it keeps that node alive.
pub struct GradEdge(*mut c_void);

impl GradEdge {
    /// The edge of `t` now; `None` when `t` does not require grad.
    pub fn of(t: &Tensor) -> Option<GradEdge> {
        if !t.requires_grad() {
            return None;
        }
        let mut out: *mut c_void = std::ptr::null_mut();
        // SAFETY: `t` is a live at::Tensor owned by tch for the call; the shim
        // catches every C++ exception and on success hands back a new edge.
        let err = unsafe { caffe_tch_gradient_edge(t.as_ptr() as *mut c_void, &mut out) };
        // SAFETY: what the shim returned, as it documents.
        unsafe { take_error(err) }.is_none().then_some(GradEdge(out))
    }
}

impl Drop for GradEdge {
    fn drop(&mut self) {
        // SAFETY: the pointer came from caffe_tch_gradient_edge and is freed once.
        unsafe { caffe_tch_edge_free(self.0) }
    }
}

/// Whether `t` is autograd's view of another tensor: an in-place op on it
/// gives it a new grad_fn, off the path of an edge taken before the op.
pub fn is_view(t: &Tensor) -> bool {
    // SAFETY: `t` is a live at::Tensor; the shim only reads it.
    unsafe { caffe_tch_is_view(t.as_ptr() as *mut c_void) }
}

/// Backward from `roots` (each edge with the gradient arriving there) to
/// `outputs`: the gradient that reached each output edge, `None` where none
/// did. Nothing accumulates into a leaf's `.grad`; the graph's saved tensors
/// on the way are freed unless `keep_graph`.
pub fn backward(roots: &[(&GradEdge, Tensor)], outputs: &[GradEdge], keep_graph: bool) -> Result<Vec<Option<Tensor>>> {
    let root_edges: Vec<*mut c_void> = roots.iter().map(|(e, _)| e.0).collect();
    let root_grads: Vec<*mut c_void> = roots.iter().map(|(_, g)| g.as_ptr() as *mut c_void).collect();
    let output_edges: Vec<*mut c_void> = outputs.iter().map(|e| e.0).collect();
    let mut grads: Vec<*mut c_void> = vec![std::ptr::null_mut(); outputs.len()];
    // SAFETY: every pointer is a live edge or at::Tensor borrowed for the call;
    // `grads` has one slot per output, which the shim fills only on success.
    let err = unsafe {
        caffe_tch_backward_edges(
            root_edges.as_ptr(),
            root_grads.as_ptr(),
            roots.len(),
            output_edges.as_ptr(),
            outputs.len(),
            keep_graph,
            grads.as_mut_ptr(),
        )
    };
    // SAFETY: what the shim returned, as it documents.
    if let Some(msg) = unsafe { take_error(err) } {
        return Err(Error::invalid(format!("autograd: {msg}")));
    }
    Ok(grads
        .into_iter()
        // SAFETY: each non-null slot is a new at::Tensor the shim gave us to own.
        .map(|p| (!p.is_null()).then(|| unsafe { Tensor::from_ptr(p as *mut torch_sys::C_tensor) }))
        .collect())
}
