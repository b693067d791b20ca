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
//! as before.
use std::ops::Range;

use tch::{Kind, Tensor};

use super::{LayerEntry, Net};
use crate::{Error, Result};

/// What a recorded forward keeps of an own-backward layer.
pub(super) struct Staged {
    /// The bottoms as the layer read them (graph-connected).
    bottoms: Vec<Tensor>,
    /// Its tops: leaves; the floating ones require grad.
    tops: Vec<Tensor>,
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
        let stages: Vec<usize> = layers.filter(|&i| self.layers[i].staged.is_some()).collect();
        let keep = keep_graph || !stages.is_empty();
        let mut blob_grads: Vec<Option<Tensor>> = targets.blobs.iter().map(|_| None).collect();
        let mut top_grads: Vec<Vec<Option<Tensor>>> =
            stages.iter().map(|&i| self.layers[i].tops.iter().map(|_| None).collect()).collect();
        self.autograd_pass(objective, &stages, targets, keep, &mut blob_grads, &mut top_grads)?;
        let ctx = self.ctx();
        for s in (0..stages.len()).rev() {
            let reached = std::mem::take(&mut top_grads[s]);
            if reached.iter().all(Option::is_none) {
                continue;
            }
            let e = &mut self.layers[stages[s]];
            let Some(staged) = e.staged.as_ref() else { continue };
            let top_diffs: Vec<Tensor> =
                staged.tops.iter().zip(reached).map(|(top, g)| g.unwrap_or_else(|| top.zeros_like())).collect();
            let propagate: Vec<bool> =
                staged.bottoms.iter().zip(&e.propagate_down).map(|(b, &p)| p && b.requires_grad()).collect();
            let loc = self.source.loc(e.param.name());
            let out = e
                .layer
                .backward(&ctx, &top_diffs, &propagate)
                .map_err(|m| m.in_layer(loc.clone(), e.param.name(), e.param.r#type()))?;
            let in_layer = |m: Error| m.in_layer(loc.clone(), e.param.name(), e.param.r#type());
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
                self.autograd_pass(&onward, &stages[..s], targets, keep, &mut blob_grads, &mut top_grads)?;
            }
        }
        Ok(blob_grads)
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
