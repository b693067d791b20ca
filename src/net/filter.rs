//! Which layers a net keeps for a given NetState: Caffe's NetStateRule logic
//! (phase, min/max level, stage, not_stage; include or exclude, never both).
use crate::proto::caffe::{LayerParameter, NetParameter, NetState, NetStateRule};

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
pub fn layer_included(state: &NetState, layer: &LayerParameter) -> Result<bool, String> {
    if !layer.include.is_empty() && !layer.exclude.is_empty() {
        return Err("specify either include rules or exclude rules, not both".into());
    }
    if !layer.include.is_empty() {
        return Ok(layer.include.iter().any(|r| state_meets_rule(state, r)));
    }
    Ok(!layer.exclude.iter().any(|r| state_meets_rule(state, r)))
}

/// The net with only the layers that `state` includes. Errors carry the layer name.
pub fn filter_net(net: &NetParameter, state: &NetState) -> Result<NetParameter, (String, String)> {
    let mut out = net.clone();
    out.layer.clear();
    for l in &net.layer {
        if layer_included(state, l).map_err(|e| (l.name().to_string(), e))? {
            out.layer.push(l.clone());
        }
    }
    Ok(out)
}
