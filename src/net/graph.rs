//! The training pass (forward and backward after the data layers) recorded
//! once into a CUDA graph and replayed each iteration: a launch-bound net
//! (LeNet, cifar10 at small batches) spends most of its step launching small
//! kernels, and a replay launches them all at once.
//!
//! The data layers at the head of the net (the layers with no bottoms) run
//! as always; their tops are copied into the tensors the graph reads. The
//! graph's blobs, loss and gradients stay at the addresses they had when it
//! was recorded, so `net.blobs` and the diffs read after a replay are that
//! iteration's. Checks a recorded pass cannot make (labels within range)
//! run on every batch before the replay (`layers::capture`). Where the pass
//! cannot be recorded (a value read on the host inside it, a Python layer,
//! DropIn's growing net, shapes that change), the net trains eagerly and
//! says why, once.
use tch::Tensor;

use crate::layers::capture::{self, Deferred};
use crate::util::cuda_graph::CudaGraph;
use crate::{info, Error, Result};

use super::Net;

/// Eager iterations on the graph's side stream before the capture, so that
/// per-stream state made on first use exists before recording.
const WARMUP_ITERATIONS: u32 = 2;

/// Runs a net's training passes through a CUDA graph (see the module doc).
pub struct GraphRunner {
    state: State,
}

enum State {
    Warmup { graph: CudaGraph, left: u32 },
    Ready(Box<Recorded>),
    Eager,
}

/// A recorded pass and the tensors it reads and writes.
struct Recorded {
    graph: CudaGraph,
    /// The first recorded layer: the ones before it make the batch.
    start: usize,
    /// The blobs the batch layers fill, and the tensors the graph reads them from.
    inputs: Vec<(usize, Tensor)>,
    /// Per learnable param: the gradient the graph writes, and whether the
    /// graph adds it into the param's kept diff (pycaffe's views) rather than
    /// writing it afresh.
    grads: Vec<Option<(Tensor, bool)>>,
    loss: Option<Tensor>,
    /// Every blob's value as the graph writes it (an eager forward in between
    /// points the net elsewhere; a replay points it back).
    blobs: Vec<Option<Tensor>>,
    checks: Vec<Deferred>,
}

impl GraphRunner {
    /// A runner for `net`, or why its pass cannot be recorded.
    pub fn new(net: &Net) -> Result<GraphRunner> {
        if let Some(why) = net.graph_obstacle() {
            return Err(Error::unsupported(format!("CUDA graphs: {why}")));
        }
        let graph = CudaGraph::new(net.device)?;
        Ok(GraphRunner { state: State::Warmup { graph, left: WARMUP_ITERATIONS } })
    }

    /// Whether passes replay a recorded graph (false while warming up and
    /// after falling back to eager).
    pub fn is_replaying(&self) -> bool {
        matches!(self.state, State::Ready(_))
    }

    /// Whether the runner gave up on the graph and runs passes eagerly.
    pub fn fell_back(&self) -> bool {
        matches!(self.state, State::Eager)
    }

    fn fall_back(&mut self, why: &Error) {
        info!("net.cpp:1", "CUDA graph: not used ({why}); the net trains eagerly");
        self.state = State::Eager;
    }
}

impl Net {
    /// Why this net's training pass cannot be recorded in a CUDA graph; None
    /// when it can be tried (a capture can still fail, see [`GraphRunner`]).
    pub fn graph_obstacle(&self) -> Option<String> {
        if self.debug_info {
            return Some("debug_info prints values inside the pass".into());
        }
        if self.callbacks.is_some() || self.record_blob_diffs {
            return Some("per-layer callbacks or blob diffs are asked for".into());
        }
        for e in &self.layers {
            let (name, kind) = (e.param.name(), e.param.r#type());
            if e.layer.own_backward() {
                return Some(format!("layer '{name}' ({kind}) runs its own backward on the host"));
            }
            if kind == "DropIn" {
                return Some(format!("layer '{name}' (DropIn) changes with the iteration"));
            }
        }
        if !self.device.is_cuda() {
            return Some("they need a CUDA device (-gpu N); this net is on the CPU".into());
        }
        None
    }

    /// The layers at the head of the net that make the batch (no bottoms).
    fn batch_layers(&self) -> usize {
        self.layers.iter().take_while(|e| e.bottoms.is_empty()).count()
    }

    /// One training pass (forward, then backward into the diffs) through
    /// `runner`: eager while it warms up or after it fell back, recorded
    /// once, then replayed. Returns the loss, as [`Net::forward`] does.
    pub fn forward_backward_graphed(&mut self, runner: &mut GraphRunner) -> Result<f64> {
        // What was asked of the net since (pycaffe's callbacks, debug_info) may rule the graph out.
        if !runner.fell_back() {
            if let Some(why) = self.graph_obstacle() {
                runner.fall_back(&Error::unsupported(why));
            }
        }
        match &mut runner.state {
            State::Eager => self.eager_pass(),
            State::Warmup { graph, left } if *left > 0 => {
                *left -= 1;
                graph.on_side_stream(|_| self.eager_pass())
            }
            // A gradient the graph writes afresh needs cleared diffs (iter_size > 1: the first pass).
            State::Warmup { graph, .. }
                if self.learnable.iter().any(|p| !p.keeps_diff_storage() && p.diff_ptr().is_some()) =>
            {
                graph.on_side_stream(|_| self.eager_pass())
            }
            State::Warmup { .. } => {
                let State::Warmup { graph, .. } = std::mem::replace(&mut runner.state, State::Eager) else {
                    return self.eager_pass();
                };
                // The batch first: its errors are the run's, not the graph's.
                let start = self.batch_layers();
                if let Err(e) = self.run_layer_range_lazy(0, start, self.force_backward, true, None) {
                    runner.state = State::Warmup { graph, left: 0 };
                    return Err(e);
                }
                match self.record(graph, start) {
                    Ok(recorded) => {
                        info!(
                            "net.cpp:1",
                            "CUDA graph: recorded the pass from layer '{}' on ({} checks before each replay)",
                            self.layers.get(recorded.start).map(|e| e.param.name()).unwrap_or(""),
                            recorded.checks.len()
                        );
                        runner.state = State::Ready(Box::new(recorded));
                        // The batch it was recorded on is in its inputs already.
                        self.replay_recorded(runner, false)
                    }
                    Err(e) => {
                        runner.fall_back(&e);
                        // Nothing recorded ran: this iteration's pass runs eagerly on the batch it has.
                        self.clear_recorded_diffs()?;
                        self.eager_pass_after_batch(start)
                    }
                }
            }
            State::Ready(_) => self.replay_recorded(runner, true),
        }
    }

    fn eager_pass(&mut self) -> Result<f64> {
        let loss = self.forward()?;
        self.backward()?;
        Ok(loss)
    }

    /// The eager pass from layer `start` on, on the batch the layers before it made.
    fn eager_pass_after_batch(&mut self, start: usize) -> Result<f64> {
        self.run_layer_range_lazy(start, self.layers.len(), self.force_backward, true, None)?;
        let loss = self.loss.as_ref().map(|l| l.f_double_value(&[])).transpose()?.unwrap_or(0.0);
        self.backward()?;
        Ok(loss)
    }

    /// Clears the diffs that hold the graph's gradients (all but the kept
    /// ones): after a recording, which ran nothing, and before its first replay.
    fn clear_recorded_diffs(&mut self) -> Result<()> {
        for p in &mut self.learnable {
            if !p.keeps_diff_storage() {
                p.clear()?;
            }
        }
        Ok(())
    }

    /// Records the pass from layer `start` on (the batch layers before it have run).
    fn record(&mut self, mut graph: CudaGraph, start: usize) -> Result<Recorded> {
        let mut inputs = Vec::new();
        for e in &self.layers[..start] {
            for &t in &e.tops {
                let v = self.blobs[t].value.as_ref().ok_or_else(|| {
                    Error::invalid(format!("blob '{}' has no value after its layer ran", self.blobs[t].name))
                })?;
                inputs.push((t, v.shallow_clone()));
            }
        }
        // Diffs are cleared here (the caller checked): a gradient the graph
        // writes afresh becomes the diff; a kept diff (pycaffe's views) is
        // added into in place, as eagerly.
        let force = self.force_backward;
        let end = self.layers.len();
        let (recorded, checks) = capture::record(|| {
            graph.on_side_stream(|g| {
                g.capture(|| {
                    self.run_layer_range_lazy(start, end, force, true, None)?;
                    let loss = self.loss.as_ref().map(Tensor::shallow_clone);
                    self.backward_impl(false)?;
                    Ok(loss)
                })
            })
        });
        let loss = recorded?;
        for c in &checks {
            if !inputs.iter().any(|(_, t)| t.data_ptr() == c.input.data_ptr()) {
                let layer = c.layer.and_then(|i| self.layers.get(i)).map(|e| e.param.name()).unwrap_or("?");
                return Err(Error::unsupported(format!(
                    "layer '{layer}' checks a blob computed inside the pass, which a graph cannot check before it runs"
                )));
            }
        }
        let grads = self.learnable.iter().map(|p| p.diff_if_defined().map(|d| (d, p.keeps_diff_storage()))).collect();
        // The first replay (this iteration's) sets them again.
        self.clear_recorded_diffs()?;
        let blobs = self.blobs.iter().map(|b| b.value.as_ref().map(Tensor::shallow_clone)).collect();
        Ok(Recorded { graph, start, inputs, grads, loss, blobs, checks })
    }

    /// Runs the batch layers (with `next_batch`), fills the graph's inputs,
    /// checks them and replays.
    fn replay_recorded(&mut self, runner: &mut GraphRunner, next_batch: bool) -> Result<f64> {
        let State::Ready(rec) = &mut runner.state else { return self.eager_pass() };
        let rec: &mut Recorded = rec;
        if next_batch && rec.start > 0 {
            self.run_layer_range_lazy(0, rec.start, self.force_backward, true, None)?;
        }
        for (blob, input) in &rec.inputs {
            let b = &mut self.blobs[*blob];
            let Some(new) = b.value.take() else { continue };
            if new.size() != input.size() {
                let why = Error::unsupported(format!(
                    "blob '{}' changed shape from {:?} to {:?}",
                    b.name,
                    input.size(),
                    new.size()
                ));
                b.value = Some(new);
                let start = rec.start;
                runner.fall_back(&why);
                // The recorded blobs never saw this batch: the pass runs eagerly on it.
                return self.eager_pass_after_batch(start);
            }
            if new.data_ptr() != input.data_ptr() {
                tch::no_grad(|| input.shallow_clone().f_copy_(&new))?;
            }
            b.value = Some(input.shallow_clone());
        }
        for c in &rec.checks {
            (c.check)(&c.input).map_err(|e| match c.layer.and_then(|i| self.layers.get(i)) {
                Some(l) => e.in_layer(self.source.loc(l.param.name()), l.param.name(), l.param.r#type()),
                None => e,
            })?;
        }
        // A diff still aliasing a gradient the graph rewrites keeps its own copy.
        for (p, g) in self.learnable.iter_mut().zip(&rec.grads) {
            if let Some((g, false)) = g {
                p.detach_diff_from(g)?;
            }
        }
        rec.graph.replay()?;
        for (b, v) in self.blobs.iter_mut().zip(&rec.blobs) {
            if let Some(v) = v {
                b.value = Some(v.shallow_clone());
            }
        }
        for (p, g) in self.learnable.iter_mut().zip(&rec.grads) {
            if let Some((g, false)) = g {
                p.accumulate(g)?;
            }
        }
        Ok(rec.loss.as_ref().map(|l| l.f_double_value(&[])).transpose()?.unwrap_or(0.0))
    }
}
