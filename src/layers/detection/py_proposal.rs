//! py-faster-rcnn's region proposals as its nets write them: a Python layer,
//! `python_param { module: "rpn.proposal_layer" layer: "ProposalLayer"
//! param_str: "'feat_stride': 16" }`. Its rules are the native Proposal
//! layer's, so where that module cannot be imported (it needs py-faster-rcnn's
//! `lib` on PYTHONPATH, Python 2 era code and its compiled NMS) the net runs
//! the native layer instead, as OpenVINO's and MNN's Caffe converters do, with
//! the values py-faster-rcnn's config gives that phase. `caffe export` always
//! writes the native form (ONNX cannot hold Python).
use crate::bail;
use crate::proto::caffe::{LayerParameter, Phase, ProposalParameter};
use crate::Result;

/// The module and class py-faster-rcnn's nets name.
pub const MODULE: &str = "rpn.proposal_layer";
pub const CLASS: &str = "ProposalLayer";

/// True for py-faster-rcnn's Python proposal layer.
pub fn is_py_proposal(p: &LayerParameter) -> bool {
    p.r#type() == crate::layers::python::TYPE
        && p.python_param.as_ref().is_some_and(|pp| pp.module() == MODULE && pp.layer() == CLASS)
}

/// The native Proposal layer that computes what py-faster-rcnn's Python one
/// does in `phase`: feat_stride and scales (and the ratios some forks add)
/// from its param_str; base size 16 and ratios 0.5, 1, 2 as its
/// generate_anchors; pre- and post-NMS counts, NMS threshold and minimum size
/// from its config's defaults for the phase (lib/fast_rcnn/config.py).
pub fn native_param(p: &LayerParameter, phase: Phase) -> Result<LayerParameter> {
    let param_str = p.python_param.as_ref().map(|pp| pp.param_str()).unwrap_or_default();
    let (pre, post) = if phase == Phase::Train { (12000, 2000) } else { (6000, 300) };
    let mut native = ProposalParameter {
        feat_stride: None,
        base_size: Some(16),
        min_size: Some(16),
        ratio: vec![0.5, 1.0, 2.0],
        scale: vec![8.0, 16.0, 32.0],
        pre_nms_topn: Some(pre),
        post_nms_topn: Some(post),
        nms_thresh: Some(0.7),
    };
    for (key, values) in parse_param_str(param_str)? {
        match key.as_str() {
            "feat_stride" => match values[..] {
                [v] if v >= 1.0 && v.fract() == 0.0 && v <= u32::MAX as f64 => native.feat_stride = Some(v as u32),
                _ => bail!("param_str's feat_stride must be one positive integer, got {values:?}"),
            },
            "scales" => native.scale = values.iter().map(|&v| v as f32).collect(),
            "ratios" => native.ratio = values.iter().map(|&v| v as f32).collect(),
            other => bail!(
                "param_str names '{other}', which py-faster-rcnn's proposal layer does not read (feat_stride, \
                 scales, ratios); its meaning here is unknown"
            ),
        }
    }
    if native.feat_stride.is_none() {
        bail!("param_str must give feat_stride (py-faster-rcnn reads it as layer_params['feat_stride']), got {param_str:?}");
    }
    Ok(LayerParameter {
        r#type: Some("Proposal".into()),
        python_param: None,
        proposal_param: Some(native),
        ..p.clone()
    })
}

/// What a native Proposal layer runs with, for the log.
pub fn describe(layer: &LayerParameter) -> String {
    let p = layer.proposal_param.clone().unwrap_or_default();
    format!(
        "feat_stride {}, scales {:?}, ratios {:?}, pre_nms_topn {}, post_nms_topn {}, nms_thresh {}, min_size {}",
        p.feat_stride(),
        p.scale,
        p.ratio,
        p.pre_nms_topn(),
        p.post_nms_topn(),
        p.nms_thresh(),
        p.min_size()
    )
}

/// The YAML mapping py-faster-rcnn's param_str holds, in the forms its nets
/// write: `'feat_stride': 16`, `{'feat_stride': 16, 'scales': [4, 8, 16]}`,
/// one key per line, keys quoted or not, lists in brackets or parentheses.
/// Each key's value is one number or a list of numbers.
fn parse_param_str(s: &str) -> Result<Vec<(String, Vec<f64>)>> {
    let body = s.trim();
    let body = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')).unwrap_or(body);
    let mut entries = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' | '\n' if depth == 0 => {
                entries.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&body[start..]);
    let mut out = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let Some((key, value)) = entry.split_once(':') else {
            bail!("param_str {s:?}: '{entry}' is not a `key: value` pair");
        };
        let key = key.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
        let value = value.trim();
        let list = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .or_else(|| value.strip_prefix('(').and_then(|v| v.strip_suffix(')')));
        let numbers: std::result::Result<Vec<f64>, _> = match list {
            Some(items) => items.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::parse).collect(),
            None => value.parse().map(|v| vec![v]),
        };
        match numbers {
            Ok(n) if !n.is_empty() && n.iter().all(|v| v.is_finite()) => out.push((key, n)),
            _ => bail!("param_str {s:?}: the value of '{key}' must be a number or a list of numbers, got '{value}'"),
        }
    }
    Ok(out)
}
