//! Per-layer timing for `caffe time`: a traced forward pass, then a layer-wise
//! backward (each layer's gradient computed on its own, in reverse order, as
//! Caffe's Backward does) so each layer's backward time can be measured.
use std::collections::HashMap;
use std::time::Instant;

use tch::{Device, Tensor};

use super::Net;
use crate::util::grad_edge::{self, GradEdge};
use crate::{Error, Result};

/// What a traced forward pass keeps for the layer-wise backward.
#[derive(Default)]
pub struct Trace {
    pub forward_ms: Vec<f64>,
    pub bottoms: Vec<Vec<Tensor>>,
    /// For each layer's bottom: the (layer, top) that produced it.
    pub bottom_src: Vec<Vec<Option<(usize, usize)>>>,
    pub params: Vec<Vec<Tensor>>,
    pub tops: Vec<Vec<Tensor>>,
    /// Where each bottom's gradient flows, taken as the layer read it: still
    /// the producer's output after an in-place layer above overwrote it.
    pub bottom_edges: Vec<Vec<Option<GradEdge>>>,
    /// Where each top's gradient enters the graph, taken after the forward.
    pub top_edges: Vec<Vec<Option<GradEdge>>>,
}

/// Waits for queued device work so wall-clock times are real.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Milliseconds spent by each layer in one forward and one backward pass.
pub struct LayerTimes {
    pub forward_ms: Vec<f64>,
    pub backward_ms: Vec<f64>,
    pub loss: f64,
}

impl Net {
    /// One forward and one layer-wise backward pass, timed per layer. The
    /// parameter diffs are accumulated as by `backward`.
    pub fn forward_backward_timed(&mut self) -> Result<LayerTimes> {
        let mut trace = Trace::default();
        let loss = self.run_layers(self.force_backward, true, Some(&mut trace))?;
        self.loss = None;
        let n = self.layers.len();
        let mut backward_ms = vec![0.0; n];
        // Gradient arriving at each (layer, top).
        let mut top_grads: HashMap<(usize, usize), Tensor> = HashMap::new();
        if self.outputs_as_loss && !self.has_loss() {
            // Seed each output blob's last producer, as backward from Σ outputs would.
            for &b in &self.output_blobs {
                let last = (0..n).rev().find_map(|i| self.layers[i].tops.iter().position(|&t| t == b).map(|j| (i, j)));
                if let Some((i, j)) = last {
                    let top = &trace.tops[i][j];
                    if top.requires_grad() {
                        top_grads.insert((i, j), top.ones_like());
                    }
                }
            }
        }
        for i in (0..n).rev() {
            let started = Instant::now();
            let e = &self.layers[i];
            // The gradient that reached each top, plus its loss weight.
            let mut reached: Vec<Option<Tensor>> = Vec::with_capacity(trace.tops[i].len());
            for (j, top) in trace.tops[i].iter().enumerate() {
                if !top.requires_grad() {
                    reached.push(None);
                    continue;
                }
                let mut g = top_grads.remove(&(i, j));
                let w = e.loss_weights[j];
                if w != 0.0 {
                    let lw = top.ones_like() * w as f64;
                    g = Some(match g {
                        Some(g) => g + lw,
                        None => lw,
                    });
                }
                reached.push(g);
            }
            if e.staged.is_some() {
                if reached.iter().any(Option::is_some) {
                    self.own_backward_timed(i, &trace, reached, &mut top_grads)?;
                    trace.tops[i].clear();
                    trace.bottoms[i].clear();
                    synchronize(self.device);
                    backward_ms[i] = started.elapsed().as_secs_f64() * 1e3;
                }
                continue;
            }
            let roots: Vec<(&GradEdge, Tensor)> =
                trace.top_edges[i].iter().zip(reached).filter_map(|(edge, g)| Some((edge.as_ref()?, g?))).collect();
            if roots.is_empty() {
                continue;
            }
            let mut outputs: Vec<GradEdge> = Vec::new();
            let mut targets: Vec<Target> = Vec::new();
            for (k, edge) in trace.bottom_edges[i].iter_mut().enumerate() {
                if let (Some(src), Some(edge)) = (trace.bottom_src[i][k], edge.take()) {
                    outputs.push(edge);
                    targets.push(Target::Top(src));
                }
            }
            for (j, p) in trace.params[i].iter().enumerate() {
                if let Some(edge) = GradEdge::of(p) {
                    outputs.push(edge);
                    targets.push(Target::Param(self.param_slots[e.params[j]].owner));
                }
            }
            if outputs.is_empty() {
                continue;
            }
            // The graph between this layer's bottoms and tops is used once: free it
            // now, with the layer's traced tensors, so the pass holds no more
            // memory than a fused backward does.
            let grads = grad_edge::backward(&roots, &outputs, false)?;
            drop(roots);
            trace.top_edges[i].clear();
            trace.tops[i].clear();
            trace.bottoms[i].clear();
            for (g, t) in grads.into_iter().zip(targets) {
                let Some(g) = g else { continue };
                match t {
                    Target::Top(src) => {
                        let acc = match top_grads.remove(&src) {
                            Some(prev) => prev + g,
                            None => g,
                        };
                        top_grads.insert(src, acc);
                    }
                    Target::Param(owner) => {
                        let name = self.learnable[owner].display();
                        self.learnable[owner]
                            .accumulate(&g)
                            .map_err(|e| Error::invalid(format!("cannot add the gradient of {name}: {e}")))?
                    }
                }
            }
            synchronize(self.device);
            backward_ms[i] = started.elapsed().as_secs_f64() * 1e3;
        }
        Ok(LayerTimes { forward_ms: trace.forward_ms, backward_ms, loss })
    }
}

impl Net {
    /// Layer `i`'s own backward (a Python layer) in the layer-wise pass: the
    /// gradients of its bottoms go to the tops that produced them.
    fn own_backward_timed(
        &mut self,
        i: usize,
        trace: &Trace,
        reached: Vec<Option<Tensor>>,
        top_grads: &mut HashMap<(usize, usize), Tensor>,
    ) -> Result<()> {
        let ctx = self.ctx();
        let e = &mut self.layers[i];
        let diffs: Vec<Tensor> =
            trace.tops[i].iter().zip(reached).map(|(top, g)| g.unwrap_or_else(|| top.zeros_like())).collect();
        let propagate: Vec<bool> =
            trace.bottoms[i].iter().zip(&e.propagate_down).map(|(b, &p)| p && b.requires_grad()).collect();
        let loc = self.source.loc(e.param.name());
        let out = e
            .layer
            .backward(&ctx, &diffs, &propagate)
            .map_err(|m| m.in_layer(loc, e.param.name(), e.param.r#type()))?;
        for (k, g) in out.bottoms.into_iter().enumerate() {
            let (Some(g), true, Some(src)) = (g, propagate[k], trace.bottom_src[i][k]) else { continue };
            let g = g.f_to_device(self.device)?.f_detach()?;
            let acc = match top_grads.remove(&src) {
                Some(prev) => prev + g,
                None => g,
            };
            top_grads.insert(src, acc);
        }
        for (j, g) in out.params.into_iter().enumerate() {
            let (Some(g), Some(&slot)) = (g, e.params.get(j)) else { continue };
            let p = &mut self.learnable[self.param_slots[slot].owner];
            if !p.data.requires_grad() {
                continue;
            }
            let g = g.f_to_device(self.device)?.f_reshape(p.data.size().as_slice())?;
            let name = p.display();
            p.accumulate(&g).map_err(|err| Error::invalid(format!("cannot add the gradient of {name}: {err}")))?;
        }
        Ok(())
    }
}

enum Target {
    Top((usize, usize)),
    Param(usize),
}
