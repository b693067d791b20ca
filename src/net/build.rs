//! Building a Net from a NetParameter: layers appended in order, their bottoms,
//! tops and params wired by Caffe's rules, memory planned before anything is allocated.
use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Tensor};

use crate::error::Context;
use crate::layers::{self, filler, Shape};
use crate::proto::caffe::{param_spec::DimCheckMode, LayerParameter, NetParameter, NetState};
use crate::proto::{text, upgrade};
use crate::{bail, info, warn, Error, Result};

use super::{filter, splits, weights, BlobEntry, LayerEntry, Net, NetSource, Param, ParamSlot, OUTPUT_NOT_SAVED};

impl Net {
    /// Reads a net prototxt, upgrades it, and builds it for `state` on `device`.
    pub fn from_file(path: &Path, state: &NetState, opts: text::TextOptions, device: Device) -> Result<Net> {
        let file = path.display().to_string();
        let parsed = text::read_file_nonempty::<NetParameter>(path, opts)?;
        for w in &parsed.warnings {
            warn!("text_format.cpp:1", "{w}");
        }
        let source = NetSource::from_parsed(&file, &parsed.message, &parsed.source_map);
        Net::from_param_upgrading(parsed.message, state, source, device)
    }

    /// Upgrades a legacy NetParameter if needed (with a log line), then builds it.
    pub fn from_param_upgrading(
        mut param: NetParameter,
        state: &NetState,
        source: NetSource,
        device: Device,
    ) -> Result<Net> {
        let report = upgrade::upgrade_net(&mut param, &source.file)?;
        if !report.steps.is_empty() {
            info!("upgrade_proto.cpp:67", "{}: {}", source.file, report.describe());
        }
        Net::new(&param, state, source, device)
    }

    /// Builds a current-format NetParameter as Caffe's `Net::Init` does: keep
    /// the layers `state` includes (the caller's phase, level and stages
    /// override the param's own), insert Split layers, then append each layer
    /// (its tops, bottoms and parameters) with shape inference.
    pub fn new(param: &NetParameter, state: &NetState, source: NetSource, device: Device) -> Result<Net> {
        let filtered = filter::filter_net(param, state, &source)?;
        let split = splits::insert_splits(&filtered, &source)?;
        let mut net = Net {
            name: param.name().to_string(),
            phase: state.phase(),
            device,
            layers: Vec::new(),
            blobs: Vec::new(),
            blob_index: HashMap::new(),
            record_blob_diffs: false,
            param_slots: Vec::new(),
            learnable: Vec::new(),
            param_owner_by_name: HashMap::new(),
            input_blobs: Vec::new(),
            output_blobs: Vec::new(),
            force_backward: param.force_backward(),
            iteration: i64::MAX,
            loss: None,
            outputs_as_loss: false,
            debug_info: param.debug_info(),
            source,
            planned_bytes: 0,
            callbacks: None,
            outputs_read_only: false,
        };
        for lp in &split.layer {
            let mut lp = lp.clone();
            lp.phase = Some(state.phase() as i32);
            let loc = net.source.loc(lp.name());
            let (name, ty) = (lp.name().to_string(), lp.r#type().to_string());
            net.append_layer(lp).map_err(|e| match e {
                located @ Error::Layer { .. } => located,
                e => e.in_layer(loc, name, ty),
            })?;
        }
        net.output_blobs = net.unconsumed_blobs();
        Ok(net)
    }

    /// Creates one layer, wires its bottoms and tops, runs its setup, and
    /// creates (or shares) its parameters.
    pub(super) fn append_layer(&mut self, mut lp: LayerParameter) -> Result<()> {
        let mut layer = layers::create_layer(&lp)?;
        // Caffe gives a loss layer declared without a top an anonymous one.
        if lp.top.is_empty() && layer.is_loss_layer() {
            let mut name = "(automatic)".to_string();
            let mut k = 0;
            while self.blob_index.contains_key(&name) {
                k += 1;
                name = format!("(automatic)_{k}");
            }
            lp.top.push(name);
        }
        let bottoms = self.append_bottoms(&lp)?;
        let bottom_shapes: Vec<Shape> = bottoms.iter().map(|&b| self.blobs[b].shape.clone()).collect();
        let setup = layer.setup(&bottom_shapes).map_err(|e| {
            let listed = lp.bottom.iter().cloned().zip(bottom_shapes.iter().cloned()).collect();
            e.in_layer_with_bottoms(self.source.loc(lp.name()), lp.name(), lp.r#type(), listed)
        })?;
        if setup.tops.len() != lp.top.len() {
            bail!("produces {} top blob(s) but the prototxt names {}", setup.tops.len(), lp.top.len());
        }
        for (name, shape) in lp.top.iter().zip(&setup.tops) {
            super::check_axes(&format!("top '{name}'"), shape)?;
        }
        let tops = self.append_tops(&lp, &bottoms, &setup.tops)?;
        if lp.r#type() == "Input" {
            self.input_blobs.extend(tops.iter().copied());
        }
        let loss_weights = loss_weights(&lp, tops.len(), layer.is_loss_layer())?;
        if !lp.propagate_down.is_empty() && lp.propagate_down.len() != bottoms.len() {
            bail!(
                "propagate_down must be given once per bottom ({} bottoms), got {}",
                bottoms.len(),
                lp.propagate_down.len()
            );
        }
        let propagate_down =
            if lp.propagate_down.is_empty() { vec![true; bottoms.len()] } else { lp.propagate_down.clone() };
        let learnable: Vec<bool> = (0..setup.params.len()).map(|j| layer.param_learnable(j)).collect();
        let params = self.append_params(&lp, &setup.params, &learnable)?;
        let may_overwrite_bottom = bottoms.len() == 1 && tops == bottoms && {
            let producer = self.layers.iter().rev().find(|e| e.tops.contains(&bottoms[0]));
            producer.is_some_and(|e| OUTPUT_NOT_SAVED.contains(&e.param.r#type()))
        };
        self.layers.push(LayerEntry {
            may_overwrite_bottom,
            param: lp,
            layer,
            bottoms,
            tops,
            loss_weights,
            propagate_down,
            params,
            bottom_shapes,
            staged: None,
            recorded: false,
        });
        Ok(())
    }

    pub(super) fn append_bottoms(&self, lp: &LayerParameter) -> Result<Vec<usize>> {
        lp.bottom
            .iter()
            .map(|b| {
                self.blob_index.get(b).copied().ok_or_else(|| Error::invalid(format!("unknown bottom blob '{b}'")))
            })
            .collect()
    }

    /// A top named like one of the layer's bottoms is computed in place;
    /// any other top is a new blob.
    /// Adds a blob's values to the net's planned memory and checks the total
    /// against the limit, so a net too big for the machine fails while it is
    /// built, naming the blob that crossed the line.
    pub(super) fn plan_bytes(&mut self, elements: i64, what: &str) -> Result<()> {
        self.planned_bytes = self.planned_bytes.saturating_add((elements as u64).saturating_mul(4));
        let limit = crate::util::limits::max_memory();
        if self.planned_bytes > limit {
            bail!(
                "{what} takes the net's blobs and parameters to {} MiB, over the memory limit of {} MiB (set -max_memory or CAFFE_TCH_MAX_MEMORY to change it)",
                self.planned_bytes >> 20,
                limit >> 20
            );
        }
        Ok(())
    }

    pub(super) fn append_tops(
        &mut self,
        lp: &LayerParameter,
        bottoms: &[usize],
        shapes: &[Shape],
    ) -> Result<Vec<usize>> {
        let mut tops = Vec::with_capacity(lp.top.len());
        for (t, shape) in lp.top.iter().zip(shapes) {
            let in_place = lp.bottom.iter().position(|b| b == t);
            let id = match (in_place, self.blob_index.get(t)) {
                (Some(k), _) => bottoms[k],
                (None, Some(_)) => bail!("top blob '{t}' is produced by multiple sources"),
                (None, None) => {
                    self.blob_index.insert(t.clone(), self.blobs.len());
                    self.blobs.push(BlobEntry {
                        name: t.clone(),
                        shape: Vec::new(),
                        value: None,
                        first_value: None,
                        rewrites: Vec::new(),
                        diff: None,
                    });
                    self.blobs.len() - 1
                }
            };
            let n = crate::util::limits::checked_count(shape, 4, &format!("top blob '{t}'"))?;
            if in_place.is_none() {
                self.plan_bytes(n, &format!("top blob '{t}'"))?;
            }
            self.blobs[id].shape.clone_from(shape);
            tops.push(id);
        }
        Ok(tops)
    }

    /// The layer's parameter slots: a blob shared by `ParamSpec.name` points
    /// at its owner's tensor; any other is filled, or loaded from the layer's
    /// own `blobs` in the prototxt.
    pub(super) fn append_params(
        &mut self,
        lp: &LayerParameter,
        decls: &[layers::ParamDecl],
        learnable: &[bool],
    ) -> Result<Vec<usize>> {
        let mut slots = Vec::with_capacity(decls.len());
        for (j, decl) in decls.iter().enumerate() {
            let n = crate::util::limits::checked_count(&decl.shape, 4, &format!("parameter blob {j}"))?;
            self.plan_bytes(n, &format!("parameter blob {j}"))?;
            let spec = lp.param.get(j);
            let learnable = learnable.get(j).copied().unwrap_or(true);
            let lr_mult = if learnable { spec.map(|s| s.lr_mult()).unwrap_or(1.0) } else { 0.0 };
            let decay_mult = if learnable { spec.map(|s| s.decay_mult()).unwrap_or(1.0) } else { 0.0 };
            let share_name = spec.and_then(|s| s.name.clone()).filter(|n| !n.is_empty());
            let shared_slot = share_name.as_ref().and_then(|n| self.param_owner_by_name.get(n)).copied();
            if let (Some(owner_slot), Some(share_name)) = (shared_slot, &share_name) {
                let owner = self.param_slots[owner_slot].owner;
                let owner_shape = self.learnable[owner].data.size();
                let strict = spec.map(|s| s.share_mode() == DimCheckMode::Strict).unwrap_or(true);
                let same_count = owner_shape.iter().product::<i64>() == decl.shape.iter().product::<i64>();
                if (strict && owner_shape != decl.shape) || !same_count {
                    bail!(
                        "cannot share param '{share_name}': owner shape {owner_shape:?}, this layer needs {:?}",
                        decl.shape
                    );
                }
                if spec.is_some_and(|s| s.lr_mult.is_some()) && self.learnable[owner].lr_mult != lr_mult {
                    bail!("shared param '{share_name}' has mismatched lr_mult");
                }
                let tensor = self.learnable[owner].data.f_view(decl.shape.as_slice())?;
                self.param_slots.push(ParamSlot { tensor, owner });
            } else {
                let data = filler::fill(&decl.filler, &decl.shape, self.device)?;
                if let Some(values) = &decl.values {
                    if values.len() as i64 != n {
                        bail!("param {j} has shape {:?} but {} values", decl.shape, values.len());
                    }
                    let given = Tensor::f_from_slice(values)?.f_view(decl.shape.as_slice())?;
                    tch::no_grad(|| data.shallow_clone().f_copy_(&given))?;
                }
                if let Some(b) = lp.blobs.get(j) {
                    weights::copy_blob_into(&data, b).context(format!("param {j}"))?;
                }
                let data = data.set_requires_grad(lr_mult != 0.0);
                let owner = self.learnable.len();
                self.learnable.push(Param::new(data.shallow_clone(), lr_mult, decay_mult, lp.name(), j));
                if let Some(n) = share_name {
                    self.param_owner_by_name.insert(n, self.param_slots.len());
                }
                self.param_slots.push(ParamSlot { tensor: data, owner });
            }
            slots.push(self.param_slots.len() - 1);
        }
        Ok(slots)
    }

    /// Blobs no layer reads after they are produced (Caffe's available_blobs):
    /// the net's outputs.
    pub(super) fn unconsumed_blobs(&self) -> Vec<usize> {
        let mut available: Vec<usize> = Vec::new();
        for e in &self.layers {
            available.retain(|b| !e.bottoms.contains(b));
            for &t in &e.tops {
                if !available.contains(&t) {
                    available.push(t);
                }
            }
        }
        available
    }
}

/// Each top's weight in the objective: explicit, or 1 on the first top of a
/// loss layer.
fn loss_weights(lp: &LayerParameter, tops: usize, is_loss: bool) -> Result<Vec<f32>> {
    let mut weights = vec![0.0f32; tops];
    if !lp.loss_weight.is_empty() {
        if lp.loss_weight.len() != tops {
            bail!("loss_weight must be given once per top ({tops} tops) or not at all, got {}", lp.loss_weight.len());
        }
        weights.clone_from(&lp.loss_weight);
    } else if is_loss && tops > 0 {
        weights[0] = 1.0;
    }
    Ok(weights)
}
