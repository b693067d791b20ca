//! PyTorch-style names for a net's layers and blobs: what `caffe export`
//! writes into `model.py` and `weights.safetensors` (`conv1.weight`,
//! `bn1.running_mean`), and what `-weights x.safetensors` maps back.
use std::collections::HashSet;

/// Python's keywords, and names a `torch.nn.Module` subclass already uses:
/// a layer with one of these names gets a `layer_` prefix.
const RESERVED: &[&str] = &[
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
    "forward",
    "training",
    "load",
    "self",
    "torch",
    "nn",
    "F",
    "math",
    "cuda",
    "cpu",
    "double",
    "float",
    "half",
    "type",
    "eval",
    "train",
    "apply",
    "modules",
    "parameters",
    "buffers",
    "children",
    "state_dict",
    "to",
    "register_buffer",
    "register_parameter",
];

/// A Caffe layer or blob name as a Python identifier: characters outside
/// `[A-Za-z0-9_]` become `_`, a leading digit gets a `_` prefix, and
/// reserved names get a `layer_` prefix.
pub fn python_identifier(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if RESERVED.contains(&s.as_str()) {
        s.insert_str(0, "layer_");
    }
    s
}

/// One identifier per name, in order, made unique with `_2`, `_3`, ... when
/// two names map to the same identifier (`a/b` and `a_b`).
pub fn unique_identifiers<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut used = HashSet::new();
    names
        .into_iter()
        .map(|n| {
            let base = python_identifier(n);
            let mut id = base.clone();
            let mut k = 2;
            while !used.insert(id.clone()) {
                id = format!("{base}_{k}");
                k += 1;
            }
            id
        })
        .collect()
}

/// What blob `index` of a layer of `layer_type` is called in PyTorch
/// (`weight`, `bias`, `running_mean`, ...), or None for a blob PyTorch has no
/// place for (BatchNorm's scale factor: the running statistics are written
/// already divided by it). Types without a PyTorch counterpart keep Caffe's
/// index as the name (`lstm1.0`).
pub fn torch_blob_name(layer_type: &str, index: usize) -> Option<String> {
    let named: &[&str] = match layer_type {
        "Convolution"
        | "DepthwiseConvolution"
        | "ConvolutionDepthwise"
        | "Deconvolution"
        | "InnerProduct"
        | "Embed" => &["weight", "bias"],
        "BatchNorm" => {
            return match index {
                0 => Some("running_mean".into()),
                1 => Some("running_var".into()),
                _ => None,
            }
        }
        "Scale" => &["weight", "bias"],
        "BN" => &["weight", "bias", "running_mean", "running_var"],
        "Bias" => &["bias"],
        "PReLU" | "Normalize" => &["weight"],
        "Parameter" => &["weight"],
        _ => &[],
    };
    Some(named.get(index).map_or_else(|| index.to_string(), |s| s.to_string()))
}

/// [`torch_blob_name`] for one layer: a Scale layer that takes its factor
/// from a second bottom has only its bias as a blob, named `bias`.
pub fn layer_blob_name(lp: &crate::proto::caffe::LayerParameter, index: usize) -> Option<String> {
    if lp.r#type() == "Scale" && lp.bottom.len() > 1 {
        return Some(if index == 0 { "bias".into() } else { index.to_string() });
    }
    torch_blob_name(lp.r#type(), index)
}
