//! Bringing legacy net and solver definitions up to the current schema.
//!
//! Caffe's schema changed several times and Caffe still reads every older form,
//! rewriting it in memory first. The steps, applied in this order (the order
//! Caffe's `UpgradeNetAsNeeded` uses):
//!
//! 1. **V0 layers → V1**: `layers { layer { type: "conv" kernelsize: 5 ... } }`,
//!    the nested `V0LayerParameter` form, becomes a V1 layer with an enum type and
//!    per-type parameter messages. Standalone `padding` layers are folded into
//!    the conv/pool layer that reads them.
//! 2. **Data transformation**: V1 Data/ImageData/WindowData layers that keep
//!    `scale`, `mean_file`, `crop_size` or `mirror` in their own parameter
//!    message get them moved into `transform_param`.
//! 3. **V1 layers → layer**: `layers { type: CONVOLUTION blobs_lr: 1 }` becomes
//!    `layer { type: "Convolution" param { lr_mult: 1 } }`.
//! 4. **Input fields → Input layer**: net-level `input`/`input_dim`/`input_shape`
//!    become an `Input` layer placed first.
//! 5. **BatchNorm**: a BatchNorm layer that lists exactly three `param` specs
//!    (the old way of freezing its statistics) gets `lr_mult: 0` and
//!    `decay_mult: 0` on each, other settings kept.
//! 6. **Pooling `ceil_mode`** (not Caffe's: the forks' field from before
//!    `round_mode`, in OpenCV's schema and many model-zoo nets) becomes
//!    `round_mode`: `ceil_mode: false` is `round_mode: FLOOR`.
//!
//! Solvers: the `solver_type` enum becomes the `type` string.
//!
//! Where Caffe aborts (a padding layer feeding something other than conv/pool,
//! a bottom blob nobody produced, an unknown layer type, both `layer` and
//! `layers`, both `solver_type` and `type`), we return an error naming the file
//! and the layer. Where Caffe logs a problem and carries on (a V0 field the
//! layer type does not take), we carry on too and record a warning in the
//! report. Beyond Caffe, a V0 net entry without its V0 block, or with both a V0
//! block and V1 fields, is an error: Caffe silently drops the V1 part there.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Location};
use crate::proto::caffe::{
    param_spec, pooling_parameter, solver_parameter, v0_layer_parameter, v1_layer_parameter, BlobShape, InputParameter,
    LayerParameter, NetParameter, ParamSpec, SolverParameter, V0LayerParameter, V1LayerParameter,
};
use crate::proto::text::SourceMap;
use crate::Result;

/// Step name: nested V0 layer definitions rewritten as V1 layers.
pub const STEP_V0_TO_V1: &str = "V0 layers -> V1";
/// Step name: data-layer transformation fields moved into `transform_param`.
pub const STEP_DATA_TRANSFORM: &str = "data transformation fields -> transform_param";
/// Step name: V1 `layers` (enum types) rewritten as `layer` (string types).
pub const STEP_V1_TO_V2: &str = "V1 layers -> layer";
/// Step name: net-level input fields turned into an Input layer.
pub const STEP_INPUT: &str = "input fields -> Input layer";
/// Step name: BatchNorm parameter specs frozen (lr_mult and decay_mult 0).
pub const STEP_BATCH_NORM: &str = "BatchNorm params -> lr_mult 0";
/// Step name: the forks' Pooling `ceil_mode` rewritten as `round_mode`.
pub const STEP_POOLING_CEIL_MODE: &str = "Pooling ceil_mode -> round_mode";
/// Step name: solver `solver_type` enum replaced by the `type` string.
pub const STEP_SOLVER_TYPE: &str = "solver_type enum -> type string";

/// What an upgrade did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeReport {
    /// The steps applied, in order (the `STEP_*` names); empty when the
    /// definition was already current.
    pub steps: Vec<&'static str>,
    /// Problems Caffe also tolerates (it logs them and continues), e.g. a V0
    /// field that the layer's type does not take and that was therefore dropped.
    pub warnings: Vec<String>,
}

impl UpgradeReport {
    /// True when nothing was changed.
    pub fn is_noop(&self) -> bool {
        self.steps.is_empty()
    }

    /// One line for the log, e.g. "upgraded from deprecated formats: V0 layers
    /// -> V1, V1 layers -> layer". Caffe's own lines for the same events are in
    /// [`UpgradeReport::caffe_messages`].
    pub fn describe(&self) -> String {
        let mut s = if self.steps.is_empty() {
            "already in the current format".to_string()
        } else {
            format!("upgraded from deprecated formats: {}", self.steps.join(", "))
        };
        if !self.warnings.is_empty() {
            s.push_str(&format!(
                "; {} problem{} (continuing anyway): {}",
                self.warnings.len(),
                if self.warnings.len() == 1 { "" } else { "s" },
                self.warnings.join("; ")
            ));
        }
        s
    }

    /// The "Attempting to upgrade ..." lines Caffe logs for these steps, worded
    /// as Caffe words them, for a log that mirrors Caffe's.
    pub fn caffe_messages(&self, file: &str) -> Vec<String> {
        self.steps
            .iter()
            .map(|step| match *step {
                STEP_V0_TO_V1 => {
                    format!("Attempting to upgrade input file specified using deprecated V0LayerParameter: {file}")
                }
                STEP_DATA_TRANSFORM => format!(
                    "Attempting to upgrade input file specified using deprecated transformation parameters: {file}"
                ),
                STEP_V1_TO_V2 => {
                    format!("Attempting to upgrade input file specified using deprecated V1LayerParameter: {file}")
                }
                STEP_INPUT => {
                    format!("Attempting to upgrade input file specified using deprecated input fields: {file}")
                }
                STEP_BATCH_NORM => {
                    format!("Attempting to upgrade batch norm layers using deprecated params: {file}")
                }
                STEP_SOLVER_TYPE => format!(
                    "Attempting to upgrade input file specified using deprecated 'solver_type' field (enum)': {file}"
                ),
                other => format!("{other}: {file}"),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Errors

/// Where a net came from: its file name and, when parsed from text, where
/// each `layers` entry starts (so errors can give the line).
#[derive(Clone, Copy)]
struct Src<'a> {
    file: &'a str,
    map: Option<&'a SourceMap>,
}

impl Src<'_> {
    /// The location of `layers` entry `index` (just the file when unknown).
    fn loc(&self, index: Option<usize>) -> Location {
        index.and_then(|i| self.map.and_then(|m| m.element("layers", i))).cloned().unwrap_or_else(|| Location {
            file: self.file.to_string(),
            line: 0,
            col: 0,
        })
    }

    /// The location of `layer` entry `index`, or of the `layers` entry it was
    /// upgraded from.
    fn layer_loc(&self, index: usize) -> Location {
        match self.map.and_then(|m| m.element("layer", index)) {
            Some(loc) => loc.clone(),
            None => self.loc(Some(index)),
        }
    }
}

fn layer_error(src: Src<'_>, index: Option<usize>, layer: &str, layer_type: &str, msg: impl Into<String>) -> Error {
    Error::invalid(msg).in_layer(src.loc(index), layer, layer_type)
}

/// A name for a V1/V0 net entry in messages: its name, else its position.
fn entry_name(conn: &V1LayerParameter, index: usize) -> String {
    let name = conn.layer.as_ref().and_then(|l| l.name.clone()).or_else(|| conn.name.clone());
    match name {
        Some(n) if !n.is_empty() => n,
        _ => format!("#{index}"),
    }
}

// ---------------------------------------------------------------------------
// Detection

/// True when some `layers` entry still holds a nested V0 definition.
pub fn net_needs_v0_upgrade(net: &NetParameter) -> bool {
    net.layers.iter().any(|l| l.layer.is_some())
}

/// True when the net still uses V1 `layers`.
pub fn net_needs_v1_upgrade(net: &NetParameter) -> bool {
    !net.layers.is_empty()
}

/// True when a V1 data layer keeps transformation fields in its own parameters.
pub fn net_needs_data_upgrade(net: &NetParameter) -> bool {
    net.layers.iter().any(|l| match v1_type_name(l) {
        Some("DATA") => l
            .data_param
            .as_ref()
            .is_some_and(|p| p.scale.is_some() || p.mean_file.is_some() || p.crop_size.is_some() || p.mirror.is_some()),
        Some("IMAGE_DATA") => l
            .image_data_param
            .as_ref()
            .is_some_and(|p| p.scale.is_some() || p.mean_file.is_some() || p.crop_size.is_some() || p.mirror.is_some()),
        Some("WINDOW_DATA") => l
            .window_data_param
            .as_ref()
            .is_some_and(|p| p.scale.is_some() || p.mean_file.is_some() || p.crop_size.is_some() || p.mirror.is_some()),
        _ => false,
    })
}

/// True when the net declares its inputs with net-level `input` fields.
pub fn net_needs_input_upgrade(net: &NetParameter) -> bool {
    !net.input.is_empty()
}

/// True when a BatchNorm layer lists three param specs that are not yet all
/// frozen. (Caffe's own test looks only at the count, so it keeps "needing"
/// this step after it ran; we look at the values, which makes the upgrade
/// idempotent. The result of upgrading is the same.)
pub fn net_needs_batch_norm_upgrade(net: &NetParameter) -> bool {
    net.layer.iter().any(|l| is_old_batch_norm(l) && !batch_norm_frozen(l))
}

/// True when a Pooling layer uses the forks' `ceil_mode` field.
pub fn net_needs_pooling_ceil_mode_upgrade(net: &NetParameter) -> bool {
    net.layer.iter().any(|l| l.pooling_param.as_ref().is_some_and(|p| p.ceil_mode.is_some()))
        || net.layers.iter().any(|l| l.pooling_param.as_ref().is_some_and(|p| p.ceil_mode.is_some()))
}

/// True when [`upgrade_net`] would change the net.
pub fn net_needs_upgrade(net: &NetParameter) -> bool {
    net_needs_v0_upgrade(net)
        || net_needs_v1_upgrade(net)
        || net_needs_data_upgrade(net)
        || net_needs_input_upgrade(net)
        || net_needs_batch_norm_upgrade(net)
        || net_needs_pooling_ceil_mode_upgrade(net)
}

/// True when the solver uses the legacy `solver_type` enum.
pub fn solver_needs_upgrade(s: &SolverParameter) -> bool {
    s.solver_type.is_some()
}

// ---------------------------------------------------------------------------
// Net upgrade

/// Upgrades `net` in place to the current format. `file` names the source in
/// errors. Idempotent: a current net comes back unchanged with an empty report.
pub fn upgrade_net(net: &mut NetParameter, file: &str) -> Result<UpgradeReport> {
    upgrade_net_impl(net, Src { file, map: None })
}

/// [`upgrade_net`] for a net parsed from text: errors also give the line of
/// the offending `layers` entry, from the parse's source map.
pub fn upgrade_net_located(net: &mut NetParameter, source_map: &SourceMap) -> Result<UpgradeReport> {
    upgrade_net_impl(net, Src { file: source_map.file(), map: Some(source_map) })
}

fn upgrade_net_impl(net: &mut NetParameter, src: Src<'_>) -> Result<UpgradeReport> {
    let mut report = UpgradeReport::default();
    if net_needs_v0_upgrade(net) {
        *net = v0_net(net, src, &mut report.warnings)?;
        report.steps.push(STEP_V0_TO_V1);
    }
    if net_needs_data_upgrade(net) {
        upgrade_data_transformation(net);
        report.steps.push(STEP_DATA_TRANSFORM);
    }
    if net_needs_v1_upgrade(net) {
        v1_net(net, src, &mut report.warnings)?;
        report.steps.push(STEP_V1_TO_V2);
    }
    if net_needs_input_upgrade(net) {
        upgrade_input(net, src.file, &mut report.warnings)?;
        report.steps.push(STEP_INPUT);
    }
    if net_needs_batch_norm_upgrade(net) {
        upgrade_batch_norm(net);
        report.steps.push(STEP_BATCH_NORM);
    }
    if net_needs_pooling_ceil_mode_upgrade(net) {
        upgrade_pooling_ceil_mode(net, src)?;
        report.steps.push(STEP_POOLING_CEIL_MODE);
    }
    Ok(report)
}

// --- V0 -> V1 -------------------------------------------------------------

/// The V0 → V1 step alone: returns the net with every nested V0 entry
/// rewritten as a V1 layer (padding layers folded first). Like Caffe, the
/// result keeps only the net's name, inputs and `force_backward` besides the
/// layers. Problems Caffe tolerates are pushed to `warnings`.
pub fn upgrade_v0_net(net: &NetParameter, file: &str, warnings: &mut Vec<String>) -> Result<NetParameter> {
    v0_net(net, Src { file, map: None }, warnings)
}

fn v0_net(net: &NetParameter, src: Src<'_>, warnings: &mut Vec<String>) -> Result<NetParameter> {
    check_v0_entries(net, src)?;

    let dropped: Vec<&str> = [
        (!net.input_shape.is_empty(), "input_shape"),
        (net.state.is_some(), "state"),
        (net.debug_info.is_some(), "debug_info"),
        (!net.layer.is_empty(), "layer"),
    ]
    .into_iter()
    .filter_map(|(present, field)| present.then_some(field))
    .collect();
    if !dropped.is_empty() {
        warnings.push(format!(
            "the V0 upgrade keeps only name, input, input_dim and force_backward besides the layers; \
             dropped: {}",
            dropped.join(", ")
        ));
    }

    let padded = fold_padding_layers(net, src)?;
    let mut out = NetParameter {
        name: net.name.clone(),
        input: net.input.clone(),
        input_dim: net.input_dim.clone(),
        force_backward: net.force_backward,
        ..Default::default()
    };
    for (index, conn) in &padded {
        out.layers.push(upgrade_v0_layer(conn, *index, src, warnings)?);
    }
    Ok(out)
}

/// The padding part of the V0 step alone: the same net with its V0 `padding`
/// layers removed and their `pad` moved into the conv/pool layers that read
/// them (still in V0 form). Checks that every bottom blob is a net input or an
/// earlier layer's top. Entries must be in V0 form.
pub fn upgrade_v0_padding_layers(net: &NetParameter, file: &str) -> Result<NetParameter> {
    let src = Src { file, map: None };
    check_v0_entries(net, src)?;
    let mut out = net.clone();
    out.layers = fold_padding_layers(net, src)?.into_iter().map(|(_, l)| l).collect();
    Ok(out)
}

/// The nested V0 block of entry `index`, or the error that the net mixes forms.
fn v0_block<'n>(conn: &'n V1LayerParameter, index: usize, src: Src<'_>) -> Result<&'n V0LayerParameter> {
    conn.layer.as_ref().ok_or_else(|| {
        layer_error(
            src,
            Some(index),
            &entry_name(conn, index),
            &v1_type_label(conn),
            "this net uses nested V0 layer definitions (`layers { layer { ... } }`), but this entry \
             has none; write every entry in one form",
        )
    })
}

/// Every `layers` entry must carry a V0 block and nothing V1 beside it.
fn check_v0_entries(net: &NetParameter, src: Src<'_>) -> Result<()> {
    for (i, conn) in net.layers.iter().enumerate() {
        let v0 = v0_block(conn, i, src)?;
        let mut rest = conn.clone();
        rest.layer = None;
        rest.bottom.clear();
        rest.top.clear();
        if rest != V1LayerParameter::default() {
            return Err(layer_error(
                src,
                Some(i),
                &entry_name(conn, i),
                v0.r#type(),
                "entry has both a nested V0 `layer { ... }` block and V1 fields beside it (name, type, \
                 *_param, ...); the V1 fields would be lost in the upgrade. Keep only one form",
            ));
        }
    }
    Ok(())
}

/// Removes V0 `padding` layers, moving their `pad` into the conv or pool layer
/// that reads their output. Also checks that every bottom blob was produced by
/// an input or an earlier layer.
/// Each kept entry comes with its index in the original `layers`.
fn fold_padding_layers(net: &NetParameter, src: Src<'_>) -> Result<Vec<(usize, V1LayerParameter)>> {
    const INPUT: usize = usize::MAX;
    let mut out: Vec<(usize, V1LayerParameter)> = Vec::with_capacity(net.layers.len());
    // Blob name -> index of the layer that last wrote it (INPUT for net inputs).
    let mut producer: HashMap<&str, usize> = net.input.iter().map(|b| (b.as_str(), INPUT)).collect();
    for (i, conn) in net.layers.iter().enumerate() {
        let v0 = v0_block(conn, i, src)?;
        let ty = v0.r#type();
        let name = entry_name(conn, i);
        if ty != "padding" {
            out.push((i, conn.clone()));
        }
        for (j, blob) in conn.bottom.iter().enumerate() {
            let Some(&src_idx) = producer.get(blob.as_str()) else {
                return Err(layer_error(
                    src,
                    Some(i),
                    &name,
                    ty,
                    format!("bottom blob '{blob}' is not a net input and no earlier layer produces it"),
                ));
            };
            if src_idx == INPUT {
                continue;
            }
            let src_layer = &net.layers[src_idx];
            let src_v0 = v0_block(src_layer, src_idx, src)?;
            if src_v0.r#type() != "padding" {
                continue;
            }
            let src_name = entry_name(src_layer, src_idx);
            if ty != "conv" && ty != "pool" {
                return Err(layer_error(
                    src,
                    Some(i),
                    &name,
                    ty,
                    format!(
                        "reads the output of padding layer '{src_name}', but a V0 padding layer can only \
                         feed a conv or pool layer"
                    ),
                ));
            }
            if conn.bottom.len() != 1 {
                return Err(layer_error(
                    src,
                    Some(i),
                    &name,
                    ty,
                    format!(
                        "reads padding layer '{src_name}' but has {} bottoms; a padded conv/pool layer \
                         takes exactly one",
                        conn.bottom.len()
                    ),
                ));
            }
            if src_layer.bottom.len() != 1 || src_layer.top.len() != 1 {
                return Err(layer_error(
                    src,
                    Some(src_idx),
                    &src_name,
                    "padding",
                    format!(
                        "a V0 padding layer takes exactly one bottom and one top (it has {} and {})",
                        src_layer.bottom.len(),
                        src_layer.top.len()
                    ),
                ));
            }
            // The layer being visited is conv/pool, so it is the last one kept.
            if let Some((_, target)) = out.last_mut() {
                if let Some(target_v0) = target.layer.as_mut() {
                    target_v0.pad = Some(src_v0.pad());
                }
                target.bottom[j] = src_layer.bottom[0].clone();
            }
        }
        for blob in &conn.top {
            producer.insert(blob.as_str(), i);
        }
    }
    Ok(out)
}

/// V0 layer type string -> V1 enum name.
fn v0_type_to_v1(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "accuracy" => "ACCURACY",
        "bnll" => "BNLL",
        "concat" => "CONCAT",
        "conv" => "CONVOLUTION",
        "data" => "DATA",
        "dropout" => "DROPOUT",
        "euclidean_loss" => "EUCLIDEAN_LOSS",
        "flatten" => "FLATTEN",
        "hdf5_data" => "HDF5_DATA",
        "hdf5_output" => "HDF5_OUTPUT",
        "im2col" => "IM2COL",
        "images" => "IMAGE_DATA",
        "infogain_loss" => "INFOGAIN_LOSS",
        "innerproduct" => "INNER_PRODUCT",
        "lrn" => "LRN",
        "multinomial_logistic_loss" => "MULTINOMIAL_LOGISTIC_LOSS",
        "pool" => "POOLING",
        "relu" => "RELU",
        "sigmoid" => "SIGMOID",
        "softmax" => "SOFTMAX",
        "softmax_loss" => "SOFTMAX_LOSS",
        "split" => "SPLIT",
        "tanh" => "TANH",
        "window_data" => "WINDOW_DATA",
        _ => return None,
    })
}

/// One V0 entry (already padding-folded) as a V1 layer.
fn upgrade_v0_layer(
    conn: &V1LayerParameter,
    index: usize,
    src: Src<'_>,
    warnings: &mut Vec<String>,
) -> Result<V1LayerParameter> {
    let file = src.file;
    let v0 = v0_block(conn, index, src)?;
    let ty = v0.r#type();
    let name = v0.name().to_string();
    let mut out = V1LayerParameter {
        bottom: conn.bottom.clone(),
        top: conn.top.clone(),
        name: v0.name.clone(),
        blobs: v0.blobs.clone(),
        blobs_lr: v0.blobs_lr.clone(),
        weight_decay: v0.weight_decay.clone(),
        ..Default::default()
    };
    if v0.r#type.is_some() {
        let v1 = v0_type_to_v1(ty)
            .and_then(v1_layer_parameter::LayerType::from_str_name)
            .ok_or_else(|| layer_error(src, Some(index), &name, ty, format!("unknown V0 layer type '{ty}'")))?;
        out.r#type = Some(v1 as i32);
    }
    let mut unknown = |field: &str| {
        warnings
            .push(format!("{file}: layer '{name}': V0 parameter {field} does not apply to layer type '{ty}'; dropped"));
    };

    if let Some(v) = v0.num_output {
        match ty {
            "conv" => out.convolution_param.get_or_insert_with(Default::default).num_output = Some(v),
            "innerproduct" => out.inner_product_param.get_or_insert_with(Default::default).num_output = Some(v),
            _ => unknown("num_output"),
        }
    }
    if let Some(v) = v0.biasterm {
        match ty {
            "conv" => out.convolution_param.get_or_insert_with(Default::default).bias_term = Some(v),
            "innerproduct" => out.inner_product_param.get_or_insert_with(Default::default).bias_term = Some(v),
            _ => unknown("biasterm"),
        }
    }
    if let Some(v) = &v0.weight_filler {
        match ty {
            "conv" => out.convolution_param.get_or_insert_with(Default::default).weight_filler = Some(v.clone()),
            "innerproduct" => {
                out.inner_product_param.get_or_insert_with(Default::default).weight_filler = Some(v.clone())
            }
            _ => unknown("weight_filler"),
        }
    }
    if let Some(v) = &v0.bias_filler {
        match ty {
            "conv" => out.convolution_param.get_or_insert_with(Default::default).bias_filler = Some(v.clone()),
            "innerproduct" => {
                out.inner_product_param.get_or_insert_with(Default::default).bias_filler = Some(v.clone())
            }
            _ => unknown("bias_filler"),
        }
    }
    if let Some(v) = v0.pad {
        match ty {
            "conv" => out.convolution_param.get_or_insert_with(Default::default).pad.push(v),
            "pool" => out.pooling_param.get_or_insert_with(Default::default).pad = Some(v),
            _ => unknown("pad"),
        }
    }
    if let Some(v) = v0.kernelsize {
        match ty {
            "conv" => out.convolution_param.get_or_insert_with(Default::default).kernel_size.push(v),
            "pool" => out.pooling_param.get_or_insert_with(Default::default).kernel_size = Some(v),
            _ => unknown("kernelsize"),
        }
    }
    if let Some(v) = v0.group {
        match ty {
            "conv" => out.convolution_param.get_or_insert_with(Default::default).group = Some(v),
            _ => unknown("group"),
        }
    }
    if let Some(v) = v0.stride {
        match ty {
            "conv" => out.convolution_param.get_or_insert_with(Default::default).stride.push(v),
            "pool" => out.pooling_param.get_or_insert_with(Default::default).stride = Some(v),
            _ => unknown("stride"),
        }
    }
    if let Some(v) = v0.pool {
        if ty == "pool" {
            let method = v0_layer_parameter::PoolMethod::try_from(v)
                .ok()
                .and_then(|m| pooling_parameter::PoolMethod::from_str_name(m.as_str_name()));
            match method {
                Some(m) => out.pooling_param.get_or_insert_with(Default::default).pool = Some(m as i32),
                None => unknown(&format!("pool (unknown method {v})")),
            }
        } else {
            unknown("pool");
        }
    }
    if let Some(v) = v0.dropout_ratio {
        match ty {
            "dropout" => out.dropout_param.get_or_insert_with(Default::default).dropout_ratio = Some(v),
            _ => unknown("dropout_ratio"),
        }
    }
    if let Some(v) = v0.local_size {
        match ty {
            "lrn" => out.lrn_param.get_or_insert_with(Default::default).local_size = Some(v),
            _ => unknown("local_size"),
        }
    }
    if let Some(v) = v0.alpha {
        match ty {
            "lrn" => out.lrn_param.get_or_insert_with(Default::default).alpha = Some(v),
            _ => unknown("alpha"),
        }
    }
    if let Some(v) = v0.beta {
        match ty {
            "lrn" => out.lrn_param.get_or_insert_with(Default::default).beta = Some(v),
            _ => unknown("beta"),
        }
    }
    if let Some(v) = v0.k {
        match ty {
            "lrn" => out.lrn_param.get_or_insert_with(Default::default).k = Some(v),
            _ => unknown("k"),
        }
    }
    if let Some(v) = &v0.source {
        let v = Some(v.clone());
        match ty {
            "data" => out.data_param.get_or_insert_with(Default::default).source = v,
            "hdf5_data" => out.hdf5_data_param.get_or_insert_with(Default::default).source = v,
            "images" => out.image_data_param.get_or_insert_with(Default::default).source = v,
            "window_data" => out.window_data_param.get_or_insert_with(Default::default).source = v,
            "infogain_loss" => out.infogain_loss_param.get_or_insert_with(Default::default).source = v,
            _ => unknown("source"),
        }
    }
    // Transformation fields go to transform_param whatever the type (as in Caffe).
    if let Some(v) = v0.scale {
        out.transform_param.get_or_insert_with(Default::default).scale = Some(v);
    }
    if let Some(v) = &v0.meanfile {
        out.transform_param.get_or_insert_with(Default::default).mean_file = Some(v.clone());
    }
    if let Some(v) = v0.batchsize {
        match ty {
            "data" => out.data_param.get_or_insert_with(Default::default).batch_size = Some(v),
            "hdf5_data" => out.hdf5_data_param.get_or_insert_with(Default::default).batch_size = Some(v),
            "images" => out.image_data_param.get_or_insert_with(Default::default).batch_size = Some(v),
            "window_data" => out.window_data_param.get_or_insert_with(Default::default).batch_size = Some(v),
            _ => unknown("batchsize"),
        }
    }
    if let Some(v) = v0.cropsize {
        out.transform_param.get_or_insert_with(Default::default).crop_size = Some(v);
    }
    if let Some(v) = v0.mirror {
        out.transform_param.get_or_insert_with(Default::default).mirror = Some(v);
    }
    if let Some(v) = v0.rand_skip {
        match ty {
            "data" => out.data_param.get_or_insert_with(Default::default).rand_skip = Some(v),
            "images" => out.image_data_param.get_or_insert_with(Default::default).rand_skip = Some(v),
            _ => unknown("rand_skip"),
        }
    }
    if let Some(v) = v0.shuffle_images {
        match ty {
            "images" => out.image_data_param.get_or_insert_with(Default::default).shuffle = Some(v),
            _ => unknown("shuffle_images"),
        }
    }
    // V0 holds these as int32, the current schema as uint32 (Caffe converts implicitly).
    if let Some(v) = v0.new_height {
        match ty {
            "images" => out.image_data_param.get_or_insert_with(Default::default).new_height = Some(v as u32),
            _ => unknown("new_height"),
        }
    }
    if let Some(v) = v0.new_width {
        match ty {
            "images" => out.image_data_param.get_or_insert_with(Default::default).new_width = Some(v as u32),
            _ => unknown("new_width"),
        }
    }
    if let Some(v) = v0.concat_dim {
        match ty {
            "concat" => out.concat_param.get_or_insert_with(Default::default).concat_dim = Some(v),
            _ => unknown("concat_dim"),
        }
    }
    if let Some(v) = v0.det_fg_threshold {
        match ty {
            "window_data" => out.window_data_param.get_or_insert_with(Default::default).fg_threshold = Some(v),
            _ => unknown("det_fg_threshold"),
        }
    }
    if let Some(v) = v0.det_bg_threshold {
        match ty {
            "window_data" => out.window_data_param.get_or_insert_with(Default::default).bg_threshold = Some(v),
            _ => unknown("det_bg_threshold"),
        }
    }
    if let Some(v) = v0.det_fg_fraction {
        match ty {
            "window_data" => out.window_data_param.get_or_insert_with(Default::default).fg_fraction = Some(v),
            _ => unknown("det_fg_fraction"),
        }
    }
    if let Some(v) = v0.det_context_pad {
        match ty {
            "window_data" => out.window_data_param.get_or_insert_with(Default::default).context_pad = Some(v),
            _ => unknown("det_context_pad"),
        }
    }
    if let Some(v) = &v0.det_crop_mode {
        match ty {
            "window_data" => out.window_data_param.get_or_insert_with(Default::default).crop_mode = Some(v.clone()),
            _ => unknown("det_crop_mode"),
        }
    }
    if let Some(v) = &v0.hdf5_output_param {
        match ty {
            "hdf5_output" => out.hdf5_output_param = Some(v.clone()),
            _ => unknown("hdf5_output_param"),
        }
    }
    // new_num and new_channels have no counterpart; Caffe ignores them silently.
    Ok(out)
}

// --- data transformation ---------------------------------------------------

/// The V1 enum name of a layer's type ("NONE" when unset, as protobuf reads it).
fn v1_type_name(l: &V1LayerParameter) -> Option<&'static str> {
    v1_layer_parameter::LayerType::try_from(l.r#type.unwrap_or(0)).ok().map(|t| t.as_str_name())
}

fn v1_type_label(l: &V1LayerParameter) -> String {
    match l.r#type {
        None => String::new(),
        Some(t) => v1_layer_parameter::LayerType::try_from(t)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| t.to_string()),
    }
}

/// Moves scale/mean_file/crop_size/mirror of V1 data layers into transform_param.
/// As in Caffe, every Data/ImageData/WindowData layer ends up with both its
/// parameter message and a transform_param present, even if empty.
fn upgrade_data_transformation(net: &mut NetParameter) {
    macro_rules! move_fields {
        ($layer:expr, $param:ident) => {{
            let p = $layer.$param.get_or_insert_with(Default::default);
            let t = $layer.transform_param.get_or_insert_with(Default::default);
            if let Some(v) = p.scale.take() {
                t.scale = Some(v);
            }
            if let Some(v) = p.mean_file.take() {
                t.mean_file = Some(v);
            }
            if let Some(v) = p.crop_size.take() {
                t.crop_size = Some(v);
            }
            if let Some(v) = p.mirror.take() {
                t.mirror = Some(v);
            }
        }};
    }
    for l in &mut net.layers {
        match v1_type_name(l) {
            Some("DATA") => move_fields!(l, data_param),
            Some("IMAGE_DATA") => move_fields!(l, image_data_param),
            Some("WINDOW_DATA") => move_fields!(l, window_data_param),
            _ => {}
        }
    }
}

// --- V1 -> current -----------------------------------------------------------

/// V1 enum name -> current layer type string.
fn v1_type_to_string(name: &str) -> Option<&'static str> {
    Some(match name {
        "NONE" => "",
        "ABSVAL" => "AbsVal",
        "ACCURACY" => "Accuracy",
        "ARGMAX" => "ArgMax",
        "BNLL" => "BNLL",
        "CONCAT" => "Concat",
        "CONTRASTIVE_LOSS" => "ContrastiveLoss",
        "CONVOLUTION" => "Convolution",
        "DECONVOLUTION" => "Deconvolution",
        "DATA" => "Data",
        "DROPOUT" => "Dropout",
        "DUMMY_DATA" => "DummyData",
        "EUCLIDEAN_LOSS" => "EuclideanLoss",
        "ELTWISE" => "Eltwise",
        "EXP" => "Exp",
        "FLATTEN" => "Flatten",
        "HDF5_DATA" => "HDF5Data",
        "HDF5_OUTPUT" => "HDF5Output",
        "HINGE_LOSS" => "HingeLoss",
        "IM2COL" => "Im2col",
        "IMAGE_DATA" => "ImageData",
        "INFOGAIN_LOSS" => "InfogainLoss",
        "INNER_PRODUCT" => "InnerProduct",
        "LRN" => "LRN",
        "MEMORY_DATA" => "MemoryData",
        "MULTINOMIAL_LOGISTIC_LOSS" => "MultinomialLogisticLoss",
        "MVN" => "MVN",
        "POOLING" => "Pooling",
        "POWER" => "Power",
        "RELU" => "ReLU",
        "SIGMOID" => "Sigmoid",
        "SIGMOID_CROSS_ENTROPY_LOSS" => "SigmoidCrossEntropyLoss",
        "SILENCE" => "Silence",
        "SOFTMAX" => "Softmax",
        "SOFTMAX_LOSS" => "SoftmaxWithLoss",
        "SPLIT" => "Split",
        "SLICE" => "Slice",
        "TANH" => "TanH",
        "WINDOW_DATA" => "WindowData",
        "THRESHOLD" => "Threshold",
        _ => return None,
    })
}

/// The V1 → current step alone: rewrites `layers` as `layer` in place.
/// Fails when the net has both (as Caffe does).
pub fn upgrade_v1_net(net: &mut NetParameter, file: &str, warnings: &mut Vec<String>) -> Result<()> {
    v1_net(net, Src { file, map: None }, warnings)
}

fn v1_net(net: &mut NetParameter, src: Src<'_>, warnings: &mut Vec<String>) -> Result<()> {
    let file = src.file;
    if !net.layer.is_empty() {
        return Err(Error::Invalid(format!(
            "{file}: the net has both `layer` and legacy `layers` entries; refusing to upgrade an \
             inconsistent definition. Write every layer as `layer {{ type: \"Type\" ... }}`"
        )));
    }
    let old = std::mem::take(&mut net.layers);
    let mut upgraded = Vec::with_capacity(old.len());
    for (i, v1) in old.iter().enumerate() {
        upgraded.push(upgrade_v1_layer(v1, i, src, warnings)?);
    }
    net.layer = upgraded;
    Ok(())
}

// Some parameter messages are `Copy` (prost derives it for all-scalar messages);
// `.clone()` throughout keeps the copying uniform and robust to schema changes.
#[allow(clippy::clone_on_copy)]
fn upgrade_v1_layer(
    v1: &V1LayerParameter,
    index: usize,
    src: Src<'_>,
    warnings: &mut Vec<String>,
) -> Result<LayerParameter> {
    let file = src.file;
    let name = entry_name(v1, index);
    let mut l = LayerParameter {
        name: v1.name.clone(),
        bottom: v1.bottom.clone(),
        top: v1.top.clone(),
        include: v1.include.clone(),
        exclude: v1.exclude.clone(),
        blobs: v1.blobs.clone(),
        loss_weight: v1.loss_weight.clone(),
        ..Default::default()
    };
    if let Some(t) = v1.r#type {
        let s = v1_layer_parameter::LayerType::try_from(t)
            .ok()
            .and_then(|e| v1_type_to_string(e.as_str_name()))
            .ok_or_else(|| {
                layer_error(src, Some(index), &name, &t.to_string(), format!("unknown V1 layer type {t}"))
            })?;
        l.r#type = Some(s.to_string());
    }

    // param names, share modes, lr and decay multipliers, each by position.
    let n = v1.param.len().max(v1.blob_share_mode.len()).max(v1.blobs_lr.len()).max(v1.weight_decay.len());
    l.param = vec![ParamSpec::default(); n];
    for (spec, name) in l.param.iter_mut().zip(&v1.param) {
        spec.name = Some(name.clone());
    }
    for (spec, &mode) in l.param.iter_mut().zip(&v1.blob_share_mode) {
        let m = v1_layer_parameter::DimCheckMode::try_from(mode)
            .ok()
            .and_then(|m| param_spec::DimCheckMode::from_str_name(m.as_str_name()))
            .ok_or_else(|| {
                layer_error(src, Some(index), &name, &v1_type_label(v1), format!("unknown blob_share_mode {mode}"))
            })?;
        spec.share_mode = Some(m as i32);
    }
    for (spec, &lr) in l.param.iter_mut().zip(&v1.blobs_lr) {
        spec.lr_mult = Some(lr);
    }
    for (spec, &decay) in l.param.iter_mut().zip(&v1.weight_decay) {
        spec.decay_mult = Some(decay);
    }

    l.accuracy_param = v1.accuracy_param.clone();
    l.argmax_param = v1.argmax_param.clone();
    l.concat_param = v1.concat_param.clone();
    l.contrastive_loss_param = v1.contrastive_loss_param.clone();
    l.convolution_param = v1.convolution_param.clone();
    l.data_param = v1.data_param.clone();
    l.dropout_param = v1.dropout_param.clone();
    l.dummy_data_param = v1.dummy_data_param.clone();
    l.eltwise_param = v1.eltwise_param.clone();
    l.exp_param = v1.exp_param.clone();
    l.hdf5_data_param = v1.hdf5_data_param.clone();
    l.hdf5_output_param = v1.hdf5_output_param.clone();
    l.hinge_loss_param = v1.hinge_loss_param.clone();
    l.image_data_param = v1.image_data_param.clone();
    l.infogain_loss_param = v1.infogain_loss_param.clone();
    l.inner_product_param = v1.inner_product_param.clone();
    l.lrn_param = v1.lrn_param.clone();
    l.memory_data_param = v1.memory_data_param.clone();
    l.mvn_param = v1.mvn_param.clone();
    l.pooling_param = v1.pooling_param.clone();
    l.power_param = v1.power_param.clone();
    l.relu_param = v1.relu_param.clone();
    l.sigmoid_param = v1.sigmoid_param.clone();
    l.softmax_param = v1.softmax_param.clone();
    l.slice_param = v1.slice_param.clone();
    l.tanh_param = v1.tanh_param.clone();
    l.threshold_param = v1.threshold_param.clone();
    l.window_data_param = v1.window_data_param.clone();
    l.transform_param = v1.transform_param.clone();
    l.loss_param = v1.loss_param.clone();
    if v1.layer.is_some() {
        // Unreachable through upgrade_net (the V0 step runs first), kept for parity with Caffe.
        warnings.push(format!("{file}: layer '{name}': has a nested V0 layer block; ignored"));
    }
    Ok(l)
}

// --- input fields ------------------------------------------------------------

fn upgrade_input(net: &mut NetParameter, file: &str, warnings: &mut Vec<String>) -> Result<()> {
    let has_shape = !net.input_shape.is_empty();
    let has_dim = !net.input_dim.is_empty();
    // Inputs without any shape (old binary models) are simply dropped.
    if has_shape || has_dim {
        let n = net.input.len();
        let mut shapes = Vec::with_capacity(n);
        if has_shape {
            if net.input_shape.len() < n {
                return Err(Error::Invalid(format!(
                    "{file}: {n} inputs but only {} input_shape entries",
                    net.input_shape.len()
                )));
            }
            if net.input_shape.len() > n {
                warnings.push(format!(
                    "{file}: {} input_shape entries for {n} inputs; the extra ones are ignored",
                    net.input_shape.len()
                ));
            }
            shapes.extend(net.input_shape[..n].iter().cloned());
        } else {
            if net.input_dim.len() < 4 * n {
                return Err(Error::Invalid(format!(
                    "{file}: {n} inputs need {} input_dim values (4 each), found {}",
                    4 * n,
                    net.input_dim.len()
                )));
            }
            if net.input_dim.len() > 4 * n {
                warnings.push(format!(
                    "{file}: {} input_dim values for {n} inputs; the extra ones are ignored",
                    net.input_dim.len()
                ));
            }
            for dims in net.input_dim.chunks(4).take(n) {
                shapes.push(BlobShape { dim: dims.iter().map(|&d| d as i64).collect() });
            }
        }
        let layer = LayerParameter {
            name: Some("input".to_string()),
            r#type: Some("Input".to_string()),
            top: net.input.clone(),
            input_param: Some(InputParameter { shape: shapes }),
            ..Default::default()
        };
        net.layer.insert(0, layer);
    }
    net.input.clear();
    net.input_shape.clear();
    net.input_dim.clear();
    Ok(())
}

// --- BatchNorm ---------------------------------------------------------------

fn is_old_batch_norm(l: &LayerParameter) -> bool {
    l.r#type.as_deref() == Some("BatchNorm") && l.param.len() == 3
}

fn is_zero(v: Option<f32>) -> bool {
    v.is_some_and(|x| x.to_bits() == 0)
}

fn batch_norm_frozen(l: &LayerParameter) -> bool {
    l.param.iter().all(|p| is_zero(p.lr_mult) && is_zero(p.decay_mult))
}

fn upgrade_batch_norm(net: &mut NetParameter) {
    for l in net.layer.iter_mut().filter(|l| is_old_batch_norm(l)) {
        for p in &mut l.param {
            p.lr_mult = Some(0.0);
            p.decay_mult = Some(0.0);
        }
    }
}

/// `ceil_mode: false` becomes `round_mode: FLOOR` (true: CEIL). A layer that
/// gives both and they disagree is an error: which one the author meant is
/// not knowable.
fn upgrade_pooling_ceil_mode(net: &mut NetParameter, src: Src<'_>) -> Result<()> {
    for (index, l) in net.layer.iter_mut().enumerate() {
        let Some(p) = l.pooling_param.as_mut() else { continue };
        let Some(ceil) = p.ceil_mode.take() else { continue };
        let mode = if ceil { pooling_parameter::RoundMode::Ceil } else { pooling_parameter::RoundMode::Floor };
        if p.round_mode.is_some() && p.round_mode() != mode {
            let msg = format!(
                "pooling_param gives both ceil_mode: {ceil} and round_mode: {}, which disagree; keep one",
                p.round_mode().as_str_name()
            );
            return Err(Error::invalid(msg).in_layer(src.layer_loc(index), l.name(), l.r#type()));
        }
        p.set_round_mode(mode);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Solver

/// Upgrades a solver definition in place: the `solver_type` enum becomes the
/// `type` string. Giving both is an error, as in Caffe (even when they agree).
pub fn upgrade_solver(s: &mut SolverParameter, file: &str) -> Result<UpgradeReport> {
    let mut report = UpgradeReport::default();
    let Some(st) = s.solver_type else {
        return Ok(report);
    };
    if let Some(t) = &s.r#type {
        return Err(Error::Solver {
            file: file.to_string(),
            msg: format!(
                "both the deprecated solver_type ({}) and type (\"{t}\") are given; keep only `type`",
                solver_parameter::SolverType::try_from(st)
                    .map(|e| e.as_str_name().to_string())
                    .unwrap_or(st.to_string())
            ),
        });
    }
    let name = match solver_parameter::SolverType::try_from(st).map(|e| e.as_str_name()) {
        Ok("SGD") => "SGD",
        Ok("NESTEROV") => "Nesterov",
        Ok("ADAGRAD") => "AdaGrad",
        Ok("RMSPROP") => "RMSProp",
        Ok("ADADELTA") => "AdaDelta",
        Ok("ADAM") => "Adam",
        _ => {
            return Err(Error::Solver { file: file.to_string(), msg: format!("unknown solver_type {st}") });
        }
    };
    s.r#type = Some(name.to_string());
    s.solver_type = None;
    report.steps.push(STEP_SOLVER_TYPE);
    Ok(report)
}

/// Caffe's default for `snapshot_prefix`, applied when it reads a solver file
/// (after the type upgrade): when unset it becomes the solver file's path
/// without its extension; when it names an existing directory, the solver
/// file's stem is appended inside it. Returns Caffe's log message when it
/// changed something. Separate from [`upgrade_solver`] because it depends on
/// the file's path and the file system, not on the format.
pub fn default_snapshot_prefix(s: &mut SolverParameter, file: &str) -> Option<String> {
    let path = Path::new(file);
    match &s.snapshot_prefix {
        None => {
            let prefix = path.with_extension("").display().to_string();
            let msg = format!("snapshot_prefix was not specified and is set to {prefix}");
            s.snapshot_prefix = Some(prefix);
            Some(msg)
        }
        Some(p) if Path::new(p).is_dir() => {
            let stem = path.file_stem().map(PathBuf::from).unwrap_or_default();
            let prefix = Path::new(p).join(stem).display().to_string();
            let msg = format!("snapshot_prefix was a directory and is replaced to {prefix}");
            s.snapshot_prefix = Some(prefix);
            Some(msg)
        }
        Some(_) => None,
    }
}
