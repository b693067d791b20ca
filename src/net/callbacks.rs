//! Caffe's net callbacks (`Net::set_layer_callback`; pycaffe's
//! `net.before_forward(f)` and the like): a function called with a layer's index before
//! and after that layer's forward and backward, for every layer of the range
//! a pass runs, as Caffe's ForwardFromTo and BackwardFromTo call theirs.
//!
//! Backward is normally one autograd pass over the whole net, with no point
//! between two layers. When the callback wants backward events, the forward
//! therefore stages every layer (`staged::stage_local`: its tops become
//! leaves and its own graph is kept), and backward computes the layers one by
//! one from the last, with the callback around each: a layer's backward
//! happens between its two calls, as in Caffe, so per-layer timers measure it.
use super::Net;
use crate::{Error, Result};

/// Where in a pass the callback is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerEvent {
    BeforeForward,
    AfterForward,
    BeforeBackward,
    AfterBackward,
}

impl LayerEvent {
    /// pycaffe's name for the registration method.
    pub fn name(self) -> &'static str {
        match self {
            LayerEvent::BeforeForward => "before_forward",
            LayerEvent::AfterForward => "after_forward",
            LayerEvent::BeforeBackward => "before_backward",
            LayerEvent::AfterBackward => "after_backward",
        }
    }
}

/// Called with the event and the layer's index (Split layers counted, as
/// Caffe's net counts them). An error stops the pass and names the layer.
pub type LayerCallback = Box<dyn FnMut(LayerEvent, usize) -> Result<()> + Send>;

pub(super) struct Callbacks {
    call: LayerCallback,
    /// Backward runs layer by layer so the backward events bracket real work.
    pub(super) layer_wise_backward: bool,
}

impl Net {
    /// Installs `callback` (None removes it); with `backward`, it is also
    /// called around each layer's backward, which then runs layer by layer
    /// (slower than one pass; the numbers are the same).
    pub fn set_layer_callback(&mut self, callback: Option<LayerCallback>, backward: bool) {
        self.callbacks = callback.map(|call| Callbacks { call, layer_wise_backward: backward });
    }

    /// Whether the passes stage every layer for a layer-wise backward.
    pub(super) fn layer_wise_backward(&self) -> bool {
        self.callbacks.as_ref().is_some_and(|c| c.layer_wise_backward)
    }

    /// Calls the callback, if any, for layer `i`; its error names the layer.
    pub(super) fn notify(&mut self, event: LayerEvent, i: usize) -> Result<()> {
        let Some(mut callbacks) = self.callbacks.take() else { return Ok(()) };
        let result = (callbacks.call)(event, i);
        self.callbacks = Some(callbacks);
        result.map_err(|m| match self.layers.get(i) {
            Some(e) => m.in_layer(self.source.loc(e.param.name()), e.param.name(), e.param.r#type()),
            None => Error::invalid(format!("{} callback for layer {i}: {m}", event.name())),
        })
    }
}
