//! Running a Net: forward layer by layer (recording autograd where a backward
//! follows), backward through autograd into the params' diffs, Caffe's debug lines.
use tch::{Kind, Tensor};

use crate::layers::Ctx;
use crate::util::grad_edge::{self, GradEdge};
use crate::{info, Error, Result};

use super::{mean_abs, staged, timing, LayerEvent, Net};

impl Net {
    pub(super) fn ctx(&self) -> Ctx {
        Ctx { phase: self.phase, iteration: self.iteration, device: self.device }
    }

    pub(super) fn run_layers(
        &mut self,
        force_grad_inputs: bool,
        grad: bool,
        trace: Option<&mut timing::Trace>,
    ) -> Result<f64> {
        self.run_layer_range(0, self.layers.len(), force_grad_inputs, grad, trace)
    }

    /// Runs layers `start..end` on the blobs' current values (Caffe's
    /// ForwardFromTo); the loss is the sum of those layers' loss terms.
    /// `grad`: autograd records the graph (a backward may follow).
    pub(super) fn run_layer_range(
        &mut self,
        start: usize,
        end: usize,
        force_grad_inputs: bool,
        grad: bool,
        trace: Option<&mut timing::Trace>,
    ) -> Result<f64> {
        self.run_layer_range_lazy(start, end, force_grad_inputs, grad, trace)?;
        Ok(self.loss.as_ref().map(|l| l.double_value(&[])).unwrap_or(0.0))
    }

    /// [`Net::run_layer_range`] leaving the loss on the device (in `self.loss`),
    /// unread: a pass recorded into a CUDA graph reads nothing back.
    pub(super) fn run_layer_range_lazy(
        &mut self,
        start: usize,
        end: usize,
        force_grad_inputs: bool,
        grad: bool,
        mut trace: Option<&mut timing::Trace>,
    ) -> Result<()> {
        let ctx = self.ctx();
        let mut loss: Option<Tensor> = None;
        // Stamped once the whole range has run: a failed pass records nothing.
        for e in &mut self.layers[start..end] {
            e.recorded = false;
        }
        // Each top's first value is made again, except a blob an in-place
        // layer at the range's start reads from before it (a pass that starts
        // mid-net): its first value stays what made it, so its diff is taken
        // there, as Caffe's in-place backward leaves it.
        let mut produced = vec![false; self.blobs.len()];
        for e in &self.layers[start..end] {
            for &t in &e.tops {
                let blob = &mut self.blobs[t];
                if produced[t] || !e.bottoms.contains(&t) {
                    blob.first_value = None;
                    blob.rewrites.clear();
                } else {
                    blob.rewrites.retain(|(l, _)| *l < start);
                }
                produced[t] = true;
            }
        }
        // Which (layer, top) produced each blob's current value: for layer-wise backward.
        let mut producer: Vec<Option<(usize, usize)>> = vec![None; self.blobs.len()];
        let layer_wise = grad && self.layer_wise_backward();
        let unseen = self.folded_layers_unseen(trace.is_some());
        let may_fold = !grad && unseen;
        let may_fold_training = grad && !layer_wise && unseen;
        // Layers up to this index ran folded into an earlier one.
        let mut folded_through: Option<usize> = None;
        for i in start..end {
            if folded_through.is_some_and(|last| i <= last) {
                continue;
            }
            self.notify(LayerEvent::BeforeForward, i)?;
            let bottoms: Vec<Tensor> = {
                let e = &self.layers[i];
                let mut out = Vec::with_capacity(e.bottoms.len());
                for (k, &b) in e.bottoms.iter().enumerate() {
                    let v = self.blobs[b].value.as_ref().ok_or_else(|| {
                        Error::invalid(format!(
                            "blob '{}' has no value (layer '{}')",
                            self.blobs[b].name,
                            e.param.name()
                        ))
                    })?;
                    out.push(if e.propagate_down[k] { v.shallow_clone() } else { v.detach() });
                }
                out
            };
            let params: Vec<Tensor> =
                self.layers[i].params.iter().map(|&s| self.param_slots[s].tensor.shallow_clone()).collect();
            // Taken before the layer runs: an in-place layer rewrites its bottom's history.
            let bottom_edges: Vec<Option<GradEdge>> =
                if trace.is_some() { bottoms.iter().map(GradEdge::of).collect() } else { Vec::new() };
            let started = std::time::Instant::now();
            let e = &self.layers[i];
            let in_place = e.may_overwrite_bottom
                && e.propagate_down[0]
                // The layer-wise pass reaches the bottom by its edge (see timing.rs).
                && (trace.is_none() || !grad_edge::is_view(&bottoms[0]))
                && !self.record_blob_diffs
                && !self.debug_info
                && !layer_wise;
            let chain = if may_fold || may_fold_training {
                self.epilogue_chain(i, end, &ctx, may_fold && self.outputs_read_only)
            } else {
                None
            };
            let e = &mut self.layers[i];
            let mut ran_in_place = None;
            // The blob a folded chain writes besides the layer's own top.
            let mut chain_blob = None;
            if let Some((epilogues, last, written)) = chain {
                ran_in_place = if may_fold {
                    e.layer.forward_with_epilogues(&ctx, &bottoms, &params, &epilogues)
                } else {
                    e.layer.forward_with_training_epilogues(&ctx, &bottoms, &params, &epilogues)
                };
                if ran_in_place.is_some() {
                    folded_through = Some(last);
                    chain_blob = written;
                }
            }
            if in_place && ran_in_place.is_none() {
                let mut bottom = bottoms[0].shallow_clone();
                ran_in_place = e.layer.forward_in_place(&ctx, &mut bottom).map(|r| r.map(|()| vec![bottom]));
            }
            let tops = match ran_in_place {
                Some(tops) => tops,
                None => e.layer.forward(&ctx, &bottoms, &params),
            }
            .map_err(|m| m.in_layer(self.source.loc(e.param.name()), e.param.name(), e.param.r#type()))?;
            let tops = if e.layer.own_backward() {
                staged::stage(e, grad, &bottoms, &params, tops)
            } else if layer_wise {
                staged::stage_local(e, &bottoms, &params, tops)
            } else {
                e.staged = None; // a layer-wise forward's stage, once callbacks went
                tops
            };
            if let Some(t) = trace.as_deref_mut() {
                timing::synchronize(self.device);
                t.forward_ms.push(started.elapsed().as_secs_f64() * 1e3);
                t.bottom_src.push(e.bottoms.iter().map(|&b| producer[b]).collect());
                t.bottoms.push(bottoms.iter().map(|b| b.shallow_clone()).collect());
                t.params.push(params.iter().map(|p| p.shallow_clone()).collect());
                t.tops.push(tops.iter().map(|b| b.shallow_clone()).collect());
                t.bottom_edges.push(bottom_edges);
                t.top_edges.push(tops.iter().map(GradEdge::of).collect());
            }
            if self.debug_info && trace.is_none() {
                for (j, t) in tops.iter().enumerate() {
                    info!(
                        "net.cpp:617",
                        "    [Forward] Layer {}, top blob {} data: {}",
                        e.param.name(),
                        self.blobs[e.tops[j]].name,
                        crate::util::format_g(mean_abs(t), 6)
                    );
                }
                for (j, p) in params.iter().enumerate() {
                    info!(
                        "net.cpp:629",
                        "    [Forward] Layer {}, param blob {j} data: {}",
                        e.param.name(),
                        crate::util::format_g(mean_abs(p), 6)
                    );
                }
            }
            for (j, t) in tops.into_iter().enumerate() {
                let id = e.tops[j];
                producer[id] = Some((i, j));
                let t = if force_grad_inputs && e.param.r#type() == "Input" && !t.requires_grad() {
                    t.detach().set_requires_grad(true)
                } else {
                    t
                };
                let w = e.loss_weights[j];
                if w != 0.0 {
                    let term = t.sum(Kind::Float) * w as f64;
                    loss = Some(match loss {
                        Some(l) => l + term,
                        None => term,
                    });
                }
                let blob = &mut self.blobs[id];
                if self.record_blob_diffs || self.debug_info {
                    if blob.first_value.is_none() {
                        blob.first_value = Some(t.shallow_clone());
                    } else if self.record_blob_diffs {
                        blob.rewrites.push((i, t.shallow_clone()));
                    }
                }
                // A top whose shape only the forward knows (Filter, DetectionOutput)
                // takes it, as Caffe's layers reshape their tops in Forward.
                let size = t.size();
                if blob.shape != size {
                    blob.shape = size;
                }
                blob.value = Some(t);
            }
            if let Some(b) = chain_blob {
                let value = self.blobs[e.tops[0]].value.as_ref().map(|v| v.shallow_clone());
                let blob = &mut self.blobs[b];
                if let Some(v) = &value {
                    blob.shape = v.size();
                }
                blob.value = value;
            }
            crate::layers::capture::tag_layer(i);
            self.notify(LayerEvent::AfterForward, i)?;
        }
        if loss.is_none() && self.outputs_as_loss {
            for &b in &self.output_blobs {
                if let Some(v) = &self.blobs[b].value {
                    if v.is_floating_point() {
                        let term = v.sum(Kind::Float);
                        loss = Some(match loss {
                            Some(l) => l + term,
                            None => term,
                        });
                    }
                }
            }
        }
        self.loss = loss;
        for e in &mut self.layers[start..end] {
            e.recorded = grad;
        }
        Ok(())
    }

    /// Forward pass keeping the autograd graph for `backward`. Returns the loss.
    pub fn forward(&mut self) -> Result<f64> {
        self.run_layers(self.force_backward, true, None)
    }

    /// Forward pass without autograd (test nets, `caffe test`, `caffe forward`).
    pub fn forward_inference(&mut self) -> Result<f64> {
        tch::no_grad(|| self.run_layers(false, false, None))
    }

    /// Lets go of the last forward's autograd graph (the blobs keep their
    /// values): its nodes are freed now rather than inside the next forward,
    /// which `caffe time` measures apart from the training step.
    pub fn release_graph(&mut self) {
        self.loss = None;
        for b in &mut self.blobs {
            for v in [&mut b.value, &mut b.first_value].into_iter().flatten() {
                *v = v.detach();
            }
            b.rewrites.clear();
        }
        for e in &mut self.layers {
            e.recorded = false;
        }
    }

    /// Backward: adds d(loss)/d(param) into each learnable param's diff.
    pub fn backward(&mut self) -> Result<()> {
        if self.debug_info {
            self.backward_impl(true)?;
            self.log_backward_debug();
            return Ok(());
        }
        self.backward_impl(false)
    }

    /// Caffe's `[Backward]` debug lines, in reverse layer order.
    pub(super) fn log_backward_debug(&self) {
        for e in self.layers.iter().rev() {
            for (k, &b) in e.bottoms.iter().enumerate() {
                if let (true, Some(d)) = (e.propagate_down[k], self.blobs[b].diff.as_ref()) {
                    info!(
                        "net.cpp:645",
                        "    [Backward] Layer {}, bottom blob {} diff: {}",
                        e.param.name(),
                        self.blobs[b].name,
                        crate::util::format_g(mean_abs(d), 6)
                    );
                }
            }
            for (j, &slot) in e.params.iter().enumerate() {
                let owner = &self.learnable[self.param_slots[slot].owner];
                if owner.data.requires_grad() {
                    info!(
                        "net.cpp:656",
                        "    [Backward] Layer {}, param blob {j} diff: {}",
                        e.param.name(),
                        crate::util::format_g(mean_abs(&owner.diff()), 6)
                    );
                }
            }
        }
        let (mut l1d, mut l1g, mut l2d, mut l2g) = (0.0, 0.0, 0.0, 0.0);
        for p in &self.learnable {
            let d = p.data.detach().to_kind(Kind::Double);
            let g = p.diff().to_kind(Kind::Double);
            l1d += d.abs().sum(Kind::Double).double_value(&[]);
            l1g += g.abs().sum(Kind::Double).double_value(&[]);
            l2d += d.square().sum(Kind::Double).double_value(&[]);
            l2g += g.square().sum(Kind::Double).double_value(&[]);
        }
        info!(
            "net.cpp:672",
            "    [Backward] All net params (data, diff): L1 norm = ({}, {}); L2 norm = ({}, {})",
            crate::util::format_g(l1d, 6),
            crate::util::format_g(l1g, 6),
            crate::util::format_g(l2d.sqrt(), 6),
            crate::util::format_g(l2g.sqrt(), 6)
        );
    }

    /// Makes the following forward passes keep what `backward_with_blob_diffs` needs.
    pub fn record_blob_diffs(&mut self, on: bool) {
        self.record_blob_diffs = on;
    }

    /// Backward that also records every blob's diff (pycaffe's `net.blobs[x].diff`);
    /// the forward before it must have run with `record_blob_diffs(true)`.
    pub fn backward_with_blob_diffs(&mut self) -> Result<()> {
        if !self.record_blob_diffs {
            return Err(Error::invalid("backward_with_blob_diffs: call record_blob_diffs(true) before forward"));
        }
        self.backward_impl(true)
    }

    pub(super) fn backward_impl(&mut self, blob_diffs: bool) -> Result<()> {
        let Some(loss) = self.loss.take() else { return Ok(()) };
        if !loss.requires_grad() {
            return Ok(());
        }
        let owners: Vec<usize> =
            (0..self.learnable.len()).filter(|&i| self.learnable[i].data.requires_grad()).collect();
        let mut blob_ids = Vec::new();
        if blob_diffs {
            for (id, v) in self.blobs.iter().map(|b| &b.first_value).enumerate() {
                if v.as_ref().is_some_and(|v| v.requires_grad()) {
                    blob_ids.push(id);
                }
            }
        }
        if owners.is_empty() && blob_ids.is_empty() {
            return Ok(());
        }
        let targets = staged::Targets { owners: &owners, blobs: &blob_ids };
        let grads = self.staged_backward(&loss, 0..self.layers.len(), &targets, false)?;
        // The graph is spent: a later backward needs a forward first.
        for e in &mut self.layers {
            e.recorded = false;
        }
        for blob in self.blobs.iter_mut() {
            blob.diff = None;
        }
        for (&id, g) in blob_ids.iter().zip(grads) {
            let blob = &mut self.blobs[id];
            blob.diff = g.or_else(|| blob.first_value.as_ref().map(|v| v.zeros_like()));
        }
        Ok(())
    }

    /// Sets every learnable param's diff to zero (Caffe's ClearParamDiffs).
    pub fn clear_param_diffs(&mut self) -> Result<()> {
        for p in &mut self.learnable {
            p.clear()?;
        }
        Ok(())
    }
}
