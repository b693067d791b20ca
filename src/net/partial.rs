//! What interactive use of a net (pycaffe's `Net`) needs beyond the solver's
//! forward and backward: running a range of layers, backward from given top
//! diffs, writing a blob's value, reshaping inputs, sharing weights, and
//! diffs whose memory a caller may view.
use tch::{Kind, Tensor};

use super::Net;
use crate::layers::Shape;
use crate::{Error, Result};

impl Net {
    /// The prototxt's `force_backward`: inputs get diffs, and every layer runs backward.
    pub fn force_backward(&self) -> bool {
        self.force_backward
    }

    /// Per bottom of layer `i`, whether its backward reaches it (Caffe's
    /// propagate_down, as `bottom_need_backward` reports it).
    pub fn bottom_propagates(&self, i: usize) -> Option<&[bool]> {
        self.layers.get(i).map(|e| e.propagate_down.as_slice())
    }

    /// The index of the first layer named `name`.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|e| e.param.name() == name)
    }

    fn blob_id(&self, name: &str) -> Result<usize> {
        self.blob_index.get(name).copied().ok_or_else(|| Error::invalid(format!("net has no blob named '{name}'")))
    }

    /// Runs layers `start..=end` on the blobs' current values (Caffe's
    /// ForwardFromTo), recording autograd's graph when `grad`. Returns the
    /// loss of those layers.
    pub fn forward_from_to(&mut self, start: usize, end: usize, grad: bool) -> Result<f64> {
        if start > end || end >= self.layers.len() {
            return Err(Error::invalid(format!(
                "forward from layer {start} to layer {end}: the net has layers 0..{}",
                self.layers.len()
            )));
        }
        // The blobs the range reads from outside it (a forward starting
        // mid-net): one no layer has produced yet holds zeros, as Caffe's
        // blobs do from allocation; and where a backward will want its diff
        // (the layer propagates down to it), it becomes a leaf autograd
        // differentiates, as the output of the layer before would have been.
        let mut produced = vec![false; self.blobs.len()];
        for i in start..=end {
            for k in 0..self.layers[i].bottoms.len() {
                let b = self.layers[i].bottoms[k];
                if produced[b] {
                    continue;
                }
                let value = match self.blobs[b].value.as_ref() {
                    Some(v) => v.shallow_clone(),
                    None => Tensor::f_zeros(self.blobs[b].shape.as_slice(), (Kind::Float, self.device))?,
                };
                let blob = &mut self.blobs[b];
                if grad && self.layers[i].propagate_down[k] && !value.requires_grad() {
                    let leaf = value.f_detach()?.f_requires_grad_(true)?;
                    blob.first_value = Some(leaf.shallow_clone());
                    blob.rewrites.clear();
                    blob.value = Some(leaf);
                } else if blob.value.is_none() {
                    blob.value = Some(value);
                }
            }
            for &t in &self.layers[i].tops {
                produced[t] = true;
            }
        }
        if grad {
            self.run_layer_range(start, end + 1, self.force_backward, true, None)
        } else {
            tch::no_grad(|| self.run_layer_range(start, end + 1, false, false, None))
        }
    }

    /// Replaces a blob's current value (what the next `forward_from_to`
    /// starting after its producer reads). The shape must stay the same.
    /// Where a recorded forward made the old value, a backward still reaches
    /// the layers that made it, as Caffe's does: the diff a later layer
    /// gives the blob passes to its producer unchanged, whose own backward
    /// uses what its forward saw (the new value plus a zero that carries the
    /// old one's graph: the same numbers).
    pub fn set_blob_value(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let id = self.blob_id(name)?;
        let blob = &self.blobs[id];
        let want = blob.value.as_ref().map(|v| v.size()).unwrap_or_else(|| blob.shape.clone());
        if value.size() != want {
            return Err(Error::invalid(format!("blob '{name}' has shape {want:?}, got {:?}", value.size())));
        }
        let written = value.f_to_kind(Kind::Float)?.f_to_device(self.device)?.f_detach_copy()?;
        // Only while the forward that made the old value holds its graph (a
        // backward that spent it leaves nothing to reach).
        let graph_kept = self.layers.iter().rev().find(|e| e.tops.contains(&id)).is_some_and(|e| e.recorded);
        let blob = &mut self.blobs[id];
        blob.value = Some(match blob.value.as_ref() {
            Some(old) if old.requires_grad() && graph_kept => written.f_add(&old.f_sub(&old.f_detach()?)?)?,
            _ => written,
        });
        Ok(())
    }

    /// Gives an input blob (an Input layer's top) a new shape, filled with
    /// zeros; `reshape` then carries it through the layers.
    pub fn reshape_input(&mut self, name: &str, shape: &[i64]) -> Result<()> {
        let id = self.blob_id(name)?;
        if shape.iter().any(|&d| d < 0) {
            return Err(Error::invalid(format!("blob '{name}': negative dimension in {shape:?}")));
        }
        super::check_axes(&format!("blob '{name}'"), shape)?;
        let zeros = Tensor::f_zeros(shape, (Kind::Float, self.device))?;
        for e in &mut self.layers {
            if e.param.r#type() == "Input" {
                if let Some(j) = e.tops.iter().position(|&t| t == id) {
                    e.layer.set_input(j, zeros)?;
                    self.blobs[id].shape = shape.to_vec();
                    self.blobs[id].value = None;
                    return Ok(());
                }
            }
        }
        Err(Error::invalid(format!(
            "blob '{name}' is not a net input (inputs: {}); only inputs can be reshaped",
            self.input_blob_names().join(", ")
        )))
    }

    /// Caffe's Net::Reshape: every layer whose bottoms changed shape runs its
    /// setup again, and its tops take the new shapes. Parameters keep theirs
    /// (a change that needs other weights is an error naming the layer).
    pub fn reshape(&mut self) -> Result<()> {
        self.reshape_layers(0, self.layers.len())
    }

    /// [`Net::reshape`] for layers `start..end` only, as a forward over that
    /// range reshapes them in Caffe (each layer's Forward reshapes it): a
    /// layer past the range's end may not fit the new shapes (DeepDream's
    /// small octaves stop at inception_4c, before GoogLeNet's 7×7 pooling).
    pub fn reshape_layers(&mut self, start: usize, end: usize) -> Result<()> {
        for i in start..end.min(self.layers.len()) {
            let shapes: Vec<Shape> = self.layers[i].bottoms.iter().map(|&b| self.blobs[b].shape.clone()).collect();
            if shapes == self.layers[i].bottom_shapes {
                continue;
            }
            let loc = self.source.loc(self.layers[i].param.name());
            let e = &mut self.layers[i];
            let (name, ty) = (e.param.name().to_string(), e.param.r#type().to_string());
            let out = e.layer.setup(&shapes).map_err(|m| m.in_layer(loc.clone(), &name, &ty))?;
            for (j, decl) in out.params.iter().enumerate() {
                let have = e.params.get(j).map(|&s| self.param_slots[s].tensor.size());
                if have.as_ref() != Some(&decl.shape) {
                    return Err(Error::invalid(format!(
                        "after reshape, param {j} would need shape {:?} but it is {have:?}",
                        decl.shape
                    ))
                    .in_layer(loc, name, ty));
                }
            }
            for (&t, s) in e.tops.iter().zip(&out.tops) {
                super::check_axes(&format!("top '{}'", self.blobs[t].name), s)
                    .map_err(|m| m.in_layer(loc.clone(), &name, &ty))?;
            }
            for (&t, s) in e.tops.iter().zip(out.tops) {
                self.blobs[t].shape = s;
            }
            e.bottom_shapes = shapes;
        }
        Ok(())
    }

    /// Whether forwards recorded what a backward through layers `start`
    /// down to `end` needs: the last forward of each of those layers recorded
    /// autograd's graph (in one pass or layer by layer, which chains through
    /// the blobs), and some top of theirs holds a value autograd can
    /// differentiate (layers without bottoms, which have no backward, aside).
    /// False before any forward with grad, when any layer's last forward had
    /// none, and when none of the layers needs a backward.
    pub fn backward_recorded(&self, end: usize, start: usize) -> bool {
        self.layers.get(end..=start).is_some_and(|layers| {
            layers.iter().all(|e| e.recorded || e.bottoms.is_empty())
                && layers.iter().flat_map(|e| &e.tops).any(|&t| {
                    let b = &self.blobs[t];
                    b.first_value.as_ref().or(b.value.as_ref()).is_some_and(|v| v.requires_grad())
                })
        })
    }

    /// The blobs a backward through layers `start` down to `end` takes its
    /// diffs from, besides the loss: the tops of those layers that no later
    /// layer in the range reads and that carry no loss weight (an output of a
    /// net with force_backward, the top of the layer the range starts at).
    /// Caffe's backward reads their diffs as they stand in the blobs.
    pub fn backward_seeds(&self, start: usize, end: usize) -> Vec<String> {
        let params = self.layer_params();
        let mut seeds: Vec<String> = Vec::new();
        for (i, p) in params.iter().enumerate().take(start + 1).skip(end) {
            for t in &p.top {
                let read_later = params[i + 1..=start].iter().any(|q| q.bottom.contains(t));
                if !read_later && self.blob_loss_weight(t) == 0.0 && !seeds.contains(t) {
                    seeds.push(t.clone());
                }
            }
        }
        seeds
    }

    /// Backward through layers `start` down to `end` (`start >= end`, Caffe's
    /// BackwardFromTo). The objective is the loss terms of those layers plus
    /// Σ value·diff for each `(blob, diff)` in `top_diffs` (gradients given
    /// for blobs, as pycaffe's top diffs). Param diffs accumulate; blob diffs
    /// of the blobs those layers touch are overwritten. The graph is kept, so
    /// a second backward after one forward works as in Caffe. Needs the
    /// forward to have run with `record_blob_diffs(true)` for blob diffs.
    pub fn backward_from_to(&mut self, start: usize, end: usize, top_diffs: &[(String, Tensor)]) -> Result<()> {
        if end > start || start >= self.layers.len() {
            return Err(Error::invalid(format!(
                "backward from layer {start} down to layer {end}: the net has layers 0..{}",
                self.layers.len()
            )));
        }
        let mut objective: Option<Tensor> = None;
        let mut add = |t: Tensor| {
            objective = Some(match objective.take() {
                Some(o) => o + t,
                None => t,
            });
        };
        let mut touched = vec![false; self.blobs.len()];
        let mut owners: Vec<usize> = Vec::new();
        for e in &self.layers[end..=start] {
            for (&t, &w) in e.tops.iter().zip(&e.loss_weights) {
                touched[t] = true;
                let b = &self.blobs[t];
                if let (true, Some(v)) = (w != 0.0, b.first_value.as_ref().or(b.value.as_ref())) {
                    if v.requires_grad() {
                        add(v.f_sum(Kind::Float)? * w as f64);
                    }
                }
            }
            for &b in &e.bottoms {
                touched[b] = true;
            }
            for &s in &e.params {
                let o = self.param_slots[s].owner;
                if self.learnable[o].data.requires_grad() && !owners.contains(&o) {
                    owners.push(o);
                }
            }
        }
        for (name, diff) in top_diffs {
            let id = self.blob_id(name)?;
            // The blob as layer `start` left it: in-place layers after the
            // range do not come between a top's diff and its layer.
            let Some(v) = self.blobs[id].value_after(start) else { continue };
            if v.size() != diff.size() {
                return Err(Error::invalid(format!(
                    "diff for blob '{name}' has shape {:?}, the blob {:?}",
                    diff.size(),
                    v.size()
                )));
            }
            if v.requires_grad() {
                let d = diff.f_to_kind(v.kind())?.f_to_device(v.device())?;
                add(v.f_mul(&d)?.f_sum(Kind::Float)?);
            }
        }
        let Some(objective) = objective.filter(|o| o.requires_grad()) else {
            return Ok(());
        };
        let mut blob_ids = Vec::new();
        for (id, b) in self.blobs.iter().enumerate() {
            if touched[id] && b.first_value.as_ref().is_some_and(|v| v.requires_grad()) {
                blob_ids.push(id);
            }
        }
        if owners.is_empty() && blob_ids.is_empty() {
            return Ok(());
        }
        let targets = super::staged::Targets { owners: &owners, blobs: &blob_ids };
        let grads = self.staged_backward(&objective, end..start + 1, &targets, true)?;
        for (&id, g) in blob_ids.iter().zip(grads) {
            let b = &mut self.blobs[id];
            b.diff = match g {
                Some(g) => Some(g.detach()),
                None => b.first_value.as_ref().map(|v| v.zeros_like()),
            };
        }
        Ok(())
    }

    /// From now on every param diff is one tensor updated in place (see
    /// `Param::keep_diff_storage`), so views of it stay valid.
    pub fn keep_param_diffs(&mut self) {
        for p in &mut self.learnable {
            p.keep_diff_storage();
        }
    }

    /// Layer `layer`'s blob `j` (shared storage): a view of its owner's data.
    pub fn layer_param(&self, layer: usize, j: usize) -> Option<Tensor> {
        let s = *self.layers.get(layer)?.params.get(j)?;
        Some(self.param_slots[s].tensor.shallow_clone())
    }

    /// The diff of layer `layer`'s blob `j` (shared storage, materialised).
    pub fn layer_param_diff(&mut self, layer: usize, j: usize) -> Option<Tensor> {
        let s = *self.layers.get(layer)?.params.get(j)?;
        let o = self.param_slots[s].owner;
        let shape = self.param_slots[s].tensor.size();
        self.learnable[o].diff_storage().f_view(shape.as_slice()).ok()
    }

    /// How many blobs (weights, bias) layer `layer` has.
    pub fn layer_param_count(&self, layer: usize) -> usize {
        self.layers.get(layer).map_or(0, |e| e.params.len())
    }

    /// Makes this net's layers use `other`'s weights, by layer name (Caffe's
    /// ShareTrainedLayersWith): the same memory, so a change in one is seen
    /// in the other. Layers only in one of the nets are left alone.
    pub fn share_weights_with(&mut self, other: &Net) -> Result<()> {
        let mut primary = vec![usize::MAX; self.learnable.len()];
        for (s, slot) in self.param_slots.iter().enumerate() {
            if primary[slot.owner] == usize::MAX {
                primary[slot.owner] = s;
            }
        }
        for e in &self.layers {
            let Some(src) = other.layers.iter().find(|o| o.param.name() == e.param.name()) else { continue };
            if e.params.is_empty() {
                continue;
            }
            if src.params.len() != e.params.len() {
                return Err(Error::invalid(format!(
                    "cannot share layer '{}': {} blobs in the source net, {} here",
                    e.param.name(),
                    src.params.len(),
                    e.params.len()
                )));
            }
            for (j, (&s, &o)) in e.params.iter().zip(&src.params).enumerate() {
                let theirs = &other.param_slots[o].tensor;
                let mine = &self.param_slots[s].tensor;
                if theirs.size() != mine.size() {
                    return Err(Error::invalid(format!(
                        "cannot share layer '{}' param {j}: shape {:?} in the source net, {:?} here",
                        e.param.name(),
                        theirs.size(),
                        mine.size()
                    )));
                }
                let owner = self.param_slots[s].owner;
                if primary[owner] == s {
                    self.learnable[owner].data = other.learnable[other.param_slots[o].owner].data.shallow_clone();
                }
            }
        }
        // Every slot (shared ParamSpec names included) follows its owner's tensor.
        for (s, slot) in self.param_slots.iter_mut().enumerate() {
            let data = &self.learnable[slot.owner].data;
            slot.tensor = if primary[slot.owner] == s {
                data.shallow_clone()
            } else {
                data.f_view(slot.tensor.size().as_slice())?
            };
        }
        Ok(())
    }
}
