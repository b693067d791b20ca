//! `caffe export`: a Caffe net and its weights as an ONNX model, a PyTorch
//! module (`model.py` + `weights.safetensors`), or the weights alone as
//! safetensors; `-verify` runs the result next to caffe-tch's own forward.
//!
//! Every format starts from one [`plan::Plan`]: the net built exactly as
//! `caffe forward` builds it, its data sources turned into inputs and its
//! training-only layers left out. A format is a walk over the plan's layers.
use std::path::{Path, PathBuf};

use crate::proto::text::TextOptions;
use crate::{info, Error, Result};

pub mod onnx;
pub mod plan;
pub mod pytorch;
pub mod safetensors;
pub mod verify;

pub use plan::{BuildOptions, Plan, PlanInput, PlanLayer};

/// The formats `caffe export -format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Onnx,
    Pytorch,
    Safetensors,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().as_str() {
            "onnx" => Ok(Format::Onnx),
            "pytorch" | "torch" => Ok(Format::Pytorch),
            "safetensors" => Ok(Format::Safetensors),
            _ => Err(Error::usage(format!("-format must be onnx, pytorch or safetensors, got '{s}'"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::Pytorch => "pytorch",
            Format::Safetensors => "safetensors",
        }
    }
}

/// How safetensors files name the blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorNames {
    /// `conv1.weight`, `bn1.running_mean` (divided by BatchNorm's scale factor).
    Pytorch,
    /// Caffe's raw blobs: `conv1.0`, `conv1.1`, ...
    Caffe,
}

/// Everything `caffe export` takes besides the model.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub build: BuildOptions,
    pub format: Format,
    pub out: PathBuf,
    pub opset: i64,
    /// Expose every blob (`-blobs all`), not only the outputs.
    pub all_blobs: bool,
    pub names: TensorNames,
    pub verify: bool,
    /// What runs an ONNX model for `-verify` (`-verify_with`).
    pub verify_with: verify::Runtime,
    /// `-input NAME=x.npy` for `-verify`; other inputs get seeded random values.
    pub inputs: Vec<(String, PathBuf)>,
}

pub const DEFAULT_OPSET: i64 = 18;

/// Writes the export; with `verify`, also checks it and returns whether every
/// blob agreed within tolerance.
pub fn run(model: &Path, text: TextOptions, o: &ExportOptions) -> Result<bool> {
    if o.format == Format::Onnx {
        onnx::check_opset(o.opset)?;
    }
    check_writable(&o.out)?;
    let mut plan = Plan::build(model, text, &o.build)?;
    match o.format {
        Format::Onnx => {
            let bytes = onnx::export(&plan, o.opset, o.all_blobs)?;
            crate::util::write_atomic(&o.out, &bytes)?;
            info!("export.cpp:1", "Wrote ONNX model (opset {}) to {}", o.opset, o.out.display());
        }
        Format::Pytorch => {
            pytorch::export(&plan, &o.out)?;
            info!("export.cpp:1", "Wrote PyTorch model.py and weights.safetensors to {}", o.out.display());
        }
        Format::Safetensors => {
            safetensors::export(&plan, &o.out, o.names)?;
            info!("export.cpp:1", "Wrote weights to {}", o.out.display());
        }
    }
    if !o.verify {
        return Ok(true);
    }
    if o.format == Format::Safetensors {
        return Err(Error::usage("-verify checks a model: use it with -format onnx or -format pytorch"));
    }
    verify::verify(&mut plan, o.format, o.verify_with, &o.out, o.all_blobs, &o.inputs)
}

/// Fails before any work when `-out` cannot be written (a missing or read-only
/// folder): the folder that will hold the file (or, for pytorch, the output folder).
fn check_writable(out: &Path) -> Result<()> {
    let folder = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(Error::io(
            out,
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("folder {} does not exist", folder.display())),
        ));
    }
    let probe = crate::util::temp_sibling(&folder.join(".caffe-export-probe"));
    std::fs::write(&probe, b"").map_err(|e| Error::io(out, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))?;
    Ok(())
}
