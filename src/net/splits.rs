//! Caffe's InsertSplits: a blob read by several layers gets an explicit Split
//! layer whose tops (one per reader) carry Caffe's names, e.g.
//! `label_data_1_split_0`. Keeping Caffe's names makes every blob addressable
//! as in pycaffe, and each reader's gradient is summed by the Split.
use std::collections::HashMap;

use super::NetSource;
use crate::proto::caffe::{LayerParameter, NetParameter};
use crate::{Error, Result};

pub fn split_layer_name(layer: &str, blob: &str, top_idx: usize) -> String {
    format!("{blob}_{layer}_{top_idx}_split")
}

pub fn split_blob_name(layer: &str, blob: &str, top_idx: usize, split_idx: usize) -> String {
    format!("{blob}_{layer}_{top_idx}_split_{split_idx}")
}

/// Returns the net with Split layers inserted. An unknown bottom is an error
/// naming the layer and the blob.
pub fn insert_splits(net: &NetParameter, source: &NetSource) -> Result<NetParameter> {
    type TopId = (usize, usize);
    let mut last_top: HashMap<&str, TopId> = HashMap::new();
    let mut source_of: HashMap<(usize, usize), TopId> = HashMap::new();
    let mut readers: HashMap<TopId, usize> = HashMap::new();
    let mut loss_weight: HashMap<TopId, f32> = HashMap::new();

    for (i, l) in net.layer.iter().enumerate() {
        for (j, b) in l.bottom.iter().enumerate() {
            let src = *last_top.get(b.as_str()).ok_or_else(|| {
                Error::invalid(format!("unknown bottom blob '{b}' (bottom index {j})")).in_layer(
                    source.loc(l.name()),
                    l.name(),
                    l.r#type(),
                )
            })?;
            source_of.insert((i, j), src);
            *readers.entry(src).or_default() += 1;
        }
        for (j, t) in l.top.iter().enumerate() {
            last_top.insert(t.as_str(), (i, j));
            if let Some(&w) = l.loss_weight.get(j) {
                loss_weight.insert((i, j), w);
                if w != 0.0 {
                    *readers.entry((i, j)).or_default() += 1;
                }
            }
        }
    }

    let mut out = net.clone();
    out.layer.clear();
    let mut next_split: HashMap<TopId, usize> = HashMap::new();
    for (i, l) in net.layer.iter().enumerate() {
        let mut layer = l.clone();
        for j in 0..layer.bottom.len() {
            let src = source_of[&(i, j)];
            if readers[&src] > 1 {
                let producer = net.layer[src.0].name();
                let k = next_split.entry(src).or_default();
                layer.bottom[j] = split_blob_name(producer, &l.bottom[j], src.1, *k);
                *k += 1;
            }
        }
        let mut splits = Vec::new();
        for (j, t) in l.top.iter().enumerate() {
            let n = readers.get(&(i, j)).copied().unwrap_or(0);
            if n > 1 {
                let w = loss_weight.get(&(i, j)).copied().unwrap_or(0.0);
                let mut split = LayerParameter {
                    name: Some(split_layer_name(l.name(), t, j)),
                    r#type: Some("Split".into()),
                    bottom: vec![t.clone()],
                    ..Default::default()
                };
                for k in 0..n {
                    split.top.push(split_blob_name(l.name(), t, j, k));
                    if w != 0.0 {
                        split.loss_weight.push(if k == 0 { w } else { 0.0 });
                    }
                }
                if w != 0.0 {
                    // The loss now flows through the split's first top.
                    layer.loss_weight.clear();
                    next_split.insert((i, j), 1);
                }
                splits.push(split);
            }
        }
        out.layer.push(layer);
        out.layer.extend(splits);
    }
    Ok(out)
}
