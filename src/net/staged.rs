//! Backward across layers that have their own backward (Python layers).
//!
//! Autograd cannot call into such a layer (tch has no custom autograd
//! function), so the forward makes its tops new leaves of the graph and keeps
//! its bottoms. Backward then runs in stages: autograd from the objective to
//! the parameters, the recorded blobs and those leaves; then, from the last
//! such layer to the first, the layer's own backward turns the gradients of
//! its tops into gradients of its bottoms (and its blobs), and autograd
//! carries on from Σ bottom · gradient, which sends exactly those gradients
//! down the graph below. A net without such layers takes one autograd pass,
//! as before. Net callbacks that want backward events stage every layer the
//! same way, each differentiated by autograd over its own piece of the graph.
use std::ops::Range;

use tch::{Kind, Tensor};

use super::{LayerEntry, LayerEvent, Net};
use crate::layers::{Ctx, Gradients};
use crate::{Error, Result};

/// What a recorded forward keeps of an own-backward layer (or, for a
/// layer-wise backward, of any layer).
pub(super) struct Staged {
    /// The bottoms as the layer read them (graph-connected).
    bottoms: Vec<Tensor>,
    /// Its tops: leaves; the floating ones require grad.
    tops: Vec<Tensor>,
    /// A layer autograd differentiates, staged for a layer-wise backward.
    local: Option<LocalGraph>,
}

/// A layer's own piece of autograd's graph: from its bottoms and params to
/// the tops it computed (before they were cut into leaves).
pub(super) struct LocalGraph {
    tops: Vec<Tensor>,
    params: Vec<Tensor>,
}

enum Input {
    Bottom(usize),
    Param(usize),
}

impl LocalGraph {
    /// The layer's backward by autograd over its piece of the graph alone.
    fn backward(
        &self,
        bottoms: &[Tensor],
        top_diffs: &[Tensor],
        propagate: &[bool],
        keep_graph: bool,
    ) -> Result<Gradients> {
        let mut out = Gradients {
            bottoms: bottoms.iter().map(|_| None).collect(),
            params: self.params.iter().map(|_| None).collect(),
        };
        let mut root: Option<Tensor> = None;
        for (top, g) in self.tops.iter().zip(top_diffs) {
            if top.requires_grad() {
                add(&mut root, top.f_mul(&g.f_detach()?)?.f_sum(Kind::Float)?);
            }
        }
        let Some(root) = root else { return Ok(out) };
        let mut inputs = Vec::new();
        let mut slots = Vec::new();
        for (k, b) in bottoms.iter().enumerate() {
            if propagate.get(k).copied().unwrap_or(false) {
                inputs.push(b.shallow_clone());
                slots.push(Input::Bottom(k));
            }
        }
        for (j, p) in self.params.iter().enumerate() {
            if p.requires_grad() {
                inputs.push(p.shallow_clone());
                slots.push(Input::Param(j));
            }
        }
        if inputs.is_empty() {
            return Ok(out);
        }
        let grads = Tensor::f_run_backward(&[&root], &inputs, keep_graph, false)?;
        for (g, slot) in grads.into_iter().zip(slots) {
            if !g.defined() {
                continue;
            }
            match slot {
                Input::Bottom(k) => out.bottoms[k] = Some(g),
                Input::Param(j) => out.params[j] = Some(g),
            }
        }
        Ok(out)
    }
}

/// What every stage of one staged backward shares.
#[derive(Clone, Copy)]
struct StagedPass<'a> {
    /// The staged layers, first to last.
    stages: &'a [usize],
    targets: &'a Targets<'a>,
    /// The caller wants the graph kept after the pass.
    keep_graph: bool,
    /// The graph between stages is kept until the last stage's pass.
    keep: bool,
}

/// The gradients a staged backward gathers: per target blob, and per
/// staged layer's top.
struct Accumulators {
    blobs: Vec<Option<Tensor>>,
    tops: Vec<Vec<Option<Tensor>>>,
}

/// Where backward's gradients go.
pub(super) struct Targets<'a> {
    /// Learnable params (indices into `Net::learnable`) whose diffs accumulate;
    /// each requires grad.
    pub owners: &'a [usize],
    /// Blobs whose gradient (with respect to their first value, which
    /// requires grad) is returned.
    pub blobs: &'a [usize],
}

/// After an own-backward layer's forward: when autograd records and a
/// gradient can reach below the layer (a bottom or one of its blobs needs
/// one), its tops become leaves and the forward is kept for backward.
pub(super) fn stage(
    e: &mut LayerEntry,
    grad: bool,
    bottoms: &[Tensor],
    params: &[Tensor],
    tops: Vec<Tensor>,
) -> Vec<Tensor> {
    let needed = grad && (bottoms.iter().any(Tensor::requires_grad) || params.iter().any(Tensor::requires_grad));
    if !needed {
        e.staged = None;
        return tops;
    }
    let leaves: Vec<Tensor> =
        tops.into_iter().map(|t| if t.is_floating_point() { t.detach().set_requires_grad(true) } else { t }).collect();
    e.staged = Some(Staged {
        bottoms: bottoms.iter().map(Tensor::shallow_clone).collect(),
        tops: leaves.iter().map(Tensor::shallow_clone).collect(),
        local: None,
    });
    leaves
}

/// For a layer-wise backward (`callbacks.rs`), after any recorded layer's
/// forward: when a gradient can reach below the layer, its tops that carry
/// one become leaves, and its piece of the graph is kept for its own pass.
pub(super) fn stage_local(e: &mut LayerEntry, bottoms: &[Tensor], params: &[Tensor], tops: Vec<Tensor>) -> Vec<Tensor> {
    let needed = bottoms.iter().any(Tensor::requires_grad) || params.iter().any(Tensor::requires_grad);
    if !needed {
        e.staged = None;
        return tops;
    }
    let leaves: Vec<Tensor> = tops
        .iter()
        .map(|t| if t.requires_grad() { t.detach().set_requires_grad(true) } else { t.shallow_clone() })
        .collect();
    e.staged = Some(Staged {
        bottoms: bottoms.iter().map(Tensor::shallow_clone).collect(),
        tops: leaves.iter().map(Tensor::shallow_clone).collect(),
        local: Some(LocalGraph { tops, params: params.iter().map(Tensor::shallow_clone).collect() }),
    });
    leaves
}

fn add(acc: &mut Option<Tensor>, g: Tensor) {
    *acc = Some(match acc.take() {
        Some(prev) => prev + g,
        None => g,
    });
}

impl Net {
    /// Backward from `objective` through `layers` into `targets`: params'
    /// diffs accumulate, and each target blob's gradient is returned (None
    /// where none reached it). The graph is kept when `keep_graph`, and until
    /// the last pass when there are stages (a part of it that a gradient
    /// reaches both through a staged layer and around it is passed twice).
    pub(super) fn staged_backward(
        &mut self,
        objective: &Tensor,
        layers: Range<usize>,
        targets: &Targets,
        keep_graph: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let (layers_start, layers_end) = (layers.start, layers.end);
        let stages: Vec<usize> = layers.filter(|&i| self.layers[i].staged.is_some()).collect();
        let keep = keep_graph || !stages.is_empty();
        let mut blob_grads: Vec<Option<Tensor>> = targets.blobs.iter().map(|_| None).collect();
        let mut top_grads: Vec<Vec<Option<Tensor>>> =
            stages.iter().map(|&i| self.layers[i].tops.iter().map(|_| None).collect()).collect();
        self.autograd_pass(objective, &stages, targets, keep, &mut blob_grads, &mut top_grads)?;
        let ctx = self.ctx();
        let notify = self.layer_wise_backward();
        let mut acc = Accumulators { blobs: blob_grads, tops: top_grads };
        let pass = StagedPass { stages: &stages, targets, keep_graph, keep };
        // Layers above `pending` have had their backward callbacks.
        let mut pending = layers_end;
        for s in (0..stages.len()).rev() {
            let i = stages[s];
            if notify {
                self.notify_idle_layers(i + 1..pending)?;
                self.notify(LayerEvent::BeforeBackward, i)?;
            }
            pending = i;
            self.backward_stage(&ctx, &pass, s, &mut acc)?;
            if notify {
                self.notify(LayerEvent::AfterBackward, i)?;
            }
        }
        if notify {
            self.notify_idle_layers(layers_start..pending)?;
        }
        Ok(acc.blobs)
    }

    /// Backward callbacks of layers with no backward to run this pass, from the last.
    fn notify_idle_layers(&mut self, layers: Range<usize>) -> Result<()> {
        for i in layers.rev() {
            self.notify(LayerEvent::BeforeBackward, i)?;
            self.notify(LayerEvent::AfterBackward, i)?;
        }
        Ok(())
    }

    /// Staged layer `stages[s]`: its backward from the gradients that reached
    /// its tops, then autograd on from its bottoms to the stages below.
    fn backward_stage(&mut self, ctx: &Ctx, pass: &StagedPass, s: usize, acc: &mut Accumulators) -> Result<()> {
        let StagedPass { stages, targets, keep_graph, keep } = *pass;
        let reached = std::mem::take(&mut acc.tops[s]);
        if reached.iter().all(Option::is_none) {
            return Ok(());
        }
        let e = &mut self.layers[stages[s]];
        let Some(staged) = e.staged.as_ref() else { return Ok(()) };
        let top_diffs: Vec<Tensor> =
            staged.tops.iter().zip(reached).map(|(top, g)| g.unwrap_or_else(|| top.zeros_like())).collect();
        let propagate: Vec<bool> =
            staged.bottoms.iter().zip(&e.propagate_down).map(|(b, &p)| p && b.requires_grad()).collect();
        let loc = self.source.loc(e.param.name());
        let in_layer = |m: Error| m.in_layer(loc.clone(), e.param.name(), e.param.r#type());
        let out = match &staged.local {
            Some(local) => local.backward(&staged.bottoms, &top_diffs, &propagate, keep_graph),
            None => e.layer.backward(ctx, &top_diffs, &propagate),
        }
        .map_err(in_layer)?;
        for (j, g) in out.params.iter().enumerate() {
            let (Some(g), Some(&slot)) = (g, e.params.get(j)) else { continue };
            let owner = self.param_slots[slot].owner;
            if !targets.owners.contains(&owner) {
                continue;
            }
            let p = &mut self.learnable[owner];
            let g = g.f_to_kind(p.data.kind())?.f_to_device(p.data.device())?;
            if g.numel() != p.data.numel() {
                return Err(in_layer(Error::invalid(format!(
                    "backward gave blob {j} a gradient of shape {:?}, the blob has {:?}",
                    g.size(),
                    p.data.size()
                ))));
            }
            let g = g.f_reshape(p.data.size().as_slice())?;
            let name = p.display();
            p.accumulate(&g).map_err(|err| Error::invalid(format!("cannot add the gradient of {name}: {err}")))?;
        }
        let mut onward: Option<Tensor> = None;
        for (k, g) in out.bottoms.into_iter().enumerate() {
            let (Some(g), true) = (g, propagate.get(k).copied().unwrap_or(false)) else { continue };
            let b = &staged.bottoms[k];
            if g.size() != b.size() {
                return Err(in_layer(Error::invalid(format!(
                    "backward gave bottom {k} a gradient of shape {:?}, the bottom has {:?}",
                    g.size(),
                    b.size()
                ))));
            }
            let g = g.f_to_kind(b.kind())?.f_to_device(b.device())?.f_detach()?;
            add(&mut onward, b.f_mul(&g)?.f_sum(Kind::Float)?);
        }
        if let Some(onward) = onward {
            // After the first staged layer's pass no other comes: its graph may go.
            let keep = if s == 0 { keep_graph } else { keep };
            self.autograd_pass(&onward, &stages[..s], targets, keep, &mut acc.blobs, &mut acc.tops)?;
        }
        Ok(())
    }

    /// One autograd pass from `objective` to the targets and the tops of the
    /// staged layers `stages`, adding what it finds to the accumulators.
    fn autograd_pass(
        &mut self,
        objective: &Tensor,
        stages: &[usize],
        targets: &Targets,
        keep_graph: bool,
        blob_grads: &mut [Option<Tensor>],
        top_grads: &mut [Vec<Option<Tensor>>],
    ) -> Result<()> {
        if !objective.requires_grad() {
            return Ok(());
        }
        let mut inputs: Vec<Tensor> = targets.owners.iter().map(|&o| self.learnable[o].data.shallow_clone()).collect();
        for &b in targets.blobs {
            if let Some(v) = &self.blobs[b].first_value {
                inputs.push(v.shallow_clone());
            }
        }
        let mut leaves = Vec::new();
        for (s, &i) in stages.iter().enumerate() {
            if let Some(staged) = &self.layers[i].staged {
                for (j, top) in staged.tops.iter().enumerate() {
                    if top.requires_grad() {
                        inputs.push(top.shallow_clone());
                        leaves.push((s, j));
                    }
                }
            }
        }
        if inputs.is_empty() {
            return Ok(());
        }
        let mut grads = Tensor::f_run_backward(&[objective], &inputs, keep_graph, false)?.into_iter();
        for &o in targets.owners {
            let Some(g) = grads.next() else { break };
            let name = self.learnable[o].display();
            self.learnable[o]
                .accumulate(&g)
                .map_err(|e| Error::invalid(format!("cannot add the gradient of {name}: {e}")))?;
        }
        for (k, &b) in targets.blobs.iter().enumerate() {
            if self.blobs[b].first_value.is_none() {
                continue;
            }
            match grads.next() {
                Some(g) if g.defined() => add(&mut blob_grads[k], g),
                _ => {}
            }
        }
        for (s, j) in leaves {
            match grads.next() {
                Some(g) if g.defined() => add(&mut top_grads[s][j], g),
                _ => {}
            }
        }
        Ok(())
    }
}
