//! Which layers a net keeps for a given NetState: Caffe's NetStateRule logic
//! (phase, min/max level, stage, not_stage; include or exclude, never both).
use super::NetSource;
use crate::proto::caffe::{LayerParameter, NetParameter, NetState, NetStateRule};
use crate::{Error, Result};

/// True when `state` satisfies every condition `rule` sets.
pub fn state_meets_rule(state: &NetState, rule: &NetStateRule) -> bool {
    if rule.phase.is_some() && rule.phase() != state.phase() {
        return false;
    }
    if rule.min_level.is_some() && state.level() < rule.min_level() {
        return false;
    }
    if rule.max_level.is_some() && state.level() > rule.max_level() {
        return false;
    }
    // Every listed stage must be present, and no listed not_stage.
    if !rule.stage.iter().all(|s| state.stage.contains(s)) {
        return false;
    }
    !rule.not_stage.iter().any(|s| state.stage.contains(s))
}

/// Whether one layer is part of the net in `state`.
pub fn layer_included(state: &NetState, layer: &LayerParameter) -> Result<bool> {
    if !layer.include.is_empty() && !layer.exclude.is_empty() {
        return Err(Error::invalid("specify either include rules or exclude rules, not both"));
    }
    if !layer.include.is_empty() {
        return Ok(layer.include.iter().any(|r| state_meets_rule(state, r)));
    }
    Ok(!layer.exclude.iter().any(|r| state_meets_rule(state, r)))
}

/// The net with only the layers that `state` includes. Errors name the layer.
pub fn filter_net(net: &NetParameter, state: &NetState, source: &NetSource) -> Result<NetParameter> {
    let mut out = net.clone();
    out.layer.clear();
    for l in &net.layer {
        if layer_included(state, l).map_err(|e| e.in_layer(source.loc(l.name()), l.name(), l.r#type()))? {
            out.layer.push(l.clone());
        }
    }
    Ok(out)
}
