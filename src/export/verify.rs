//! `caffe export -verify`: runs the exported model (ONNX in onnxruntime, or
//! in OpenVINO or OpenCV's DNN with `-verify_with`; `model.py` in the venv's
//! PyTorch) on the same inputs as caffe-tch's own forward and prints max |Δ|
//! per blob. A blob passes when
//! max |Δ| ≤ 1e-4·(1 + max |reference|).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{Device, Kind, Tensor};

use super::{Format, Plan};
use crate::util::format_g;
use crate::{info, warn, Error, Result};

/// The runner script, embedded so the binary needs no files beside it.
const RUNNER: &str = include_str!("verify.py");

/// The relative tolerance of `-verify` and the export tests.
pub const TOLERANCE: f64 = 1e-4;

/// The seed of the random inputs when `-input` does not give them.
pub const INPUT_SEED: i64 = 1701;

/// What runs an exported ONNX model for `-verify`: onnxruntime (after onnx's
/// checker and shape inference), or one of the runtimes a Caffe user may
/// deploy to instead, which read no Caffe files themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    OnnxRuntime,
    OpenVino,
    OpenCv,
}

impl Runtime {
    pub fn parse(s: &str) -> Result<Runtime> {
        match s.to_ascii_lowercase().as_str() {
            "onnxruntime" | "ort" => Ok(Runtime::OnnxRuntime),
            "openvino" => Ok(Runtime::OpenVino),
            "opencv" => Ok(Runtime::OpenCv),
            _ => Err(Error::usage(format!("-verify_with must be onnxruntime, openvino or opencv, got '{s}'"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Runtime::OnnxRuntime => "onnxruntime",
            Runtime::OpenVino => "openvino",
            Runtime::OpenCv => "opencv",
        }
    }
}

/// The Python that runs exported models (see [`crate::util::python::interpreter`]).
pub fn python() -> PathBuf {
    crate::util::python::interpreter()
}

/// Blobs by name, in order.
pub type NamedTensors = Vec<(String, Tensor)>;

/// One blob's comparison.
#[derive(Debug, Clone)]
pub struct BlobCheck {
    pub name: String,
    pub max_abs_diff: f64,
    pub max_abs_ref: f64,
    /// Shape onnx's strict shape inference gave, where it differs from Caffe's.
    pub shape_mismatch: Option<String>,
    /// How many of caffe-tch's own values are NaN or infinite: nothing to
    /// compare there (an untrained net can overflow on its fillers' weights).
    pub nonfinite_ref: i64,
}

impl BlobCheck {
    pub fn passed(&self) -> bool {
        self.max_abs_diff <= TOLERANCE * (1.0 + self.max_abs_ref)
            && self.shape_mismatch.is_none()
            && self.nonfinite_ref == 0
    }
}

/// Regions of interest for a ROIPooling or PSROIPooling layer: [image, x1, y1, x2, y2] rows
/// over its map's image (the map divided by spatial_scale), some overhanging
/// it, some inverted.
fn random_regions(l: &crate::export::PlanLayer, shape: &[i64]) -> Tensor {
    let map = l.bottom_shapes.first().cloned().unwrap_or_default();
    let dim = |k: usize| map.get(k).copied().unwrap_or(1).max(1) as f64;
    let scale = match l.layer_type() {
        "PSROIPooling" => l.param.psroi_pooling_param.unwrap_or_default().spatial_scale(),
        _ => l.param.roi_pooling_param.unwrap_or_default().spatial_scale(),
    };
    let scale = scale.abs().max(1e-6) as f64;
    let rows = shape.iter().product::<i64>() / 5;
    let cpu = (Kind::Float, Device::Cpu);
    let image = Tensor::randint(dim(0) as i64, [rows, 1], cpu);
    let corner = |extent: f64| Tensor::rand([rows, 1], cpu) * (1.2 * extent / scale) - 0.1 * extent / scale;
    Tensor::cat(&[image, corner(dim(3)), corner(dim(2)), corner(dim(3)), corner(dim(2))], 1).reshape(shape)
}

/// A Proposal's im_info: the image its score map covers, [height, width,
/// scale 1], on every row.
fn image_info_for(l: &super::PlanLayer, shape: &[i64]) -> Tensor {
    let map = l.bottom_shapes.first().cloned().unwrap_or_default();
    let stride = l.param.proposal_param.clone().unwrap_or_default().feat_stride() as f32;
    let side = |k: usize| map.get(k).copied().unwrap_or(1).max(1) as f32 * stride;
    let rows = shape.first().copied().unwrap_or(1).max(1);
    let per_row = shape.iter().skip(1).product::<i64>().max(3) as usize;
    let mut values = Vec::with_capacity(rows as usize * per_row);
    for _ in 0..rows {
        values.extend([side(2), side(3), 1.0]);
        values.extend(std::iter::repeat_n(0.0, per_row - 3));
    }
    Tensor::from_slice(&values).reshape(shape)
}

/// Random inputs for a plan's input blobs (integer indices for an Embed's
/// bottom, regions for a ROI pooling's, the image for a Proposal's im_info,
/// values in [-1, 1) otherwise), seeded.
pub fn random_inputs(plan: &Plan) -> Vec<(String, Tensor)> {
    tch::manual_seed(INPUT_SEED);
    plan.inputs
        .iter()
        .map(|i| {
            let embed = plan.layers.iter().find(|l| l.layer_type() == "Embed" && l.bottoms.first() == Some(&i.name));
            let regions = plan.layers.iter().find(|l| {
                ["ROIPooling", "PSROIPooling"].contains(&l.layer_type()) && l.bottoms.get(1) == Some(&i.name)
            });
            let image_info =
                plan.layers.iter().find(|l| l.layer_type() == "Proposal" && l.bottoms.get(2) == Some(&i.name));
            let t = match (embed.and_then(|l| l.param.embed_param.as_ref()), regions, image_info) {
                (Some(p), _, _) => {
                    Tensor::randint(i64::from(p.input_dim()).max(1), i.shape.as_slice(), (Kind::Float, Device::Cpu))
                }
                (None, Some(l), _) => random_regions(l, &i.shape),
                (None, None, Some(l)) => image_info_for(l, &i.shape),
                (None, None, None) => Tensor::rand(i.shape.as_slice(), (Kind::Float, Device::Cpu)) * 2.0 - 1.0,
            };
            (i.name.clone(), t)
        })
        .collect()
}

/// Runs caffe-tch's forward on `inputs` (those that are Input blobs; data
/// layers read their own batch) and returns every graph input's value as the
/// net saw it and every exported blob's value.
pub fn reference(
    plan: &mut Plan,
    inputs: &[(String, Tensor)],
    blobs: &[String],
) -> Result<(NamedTensors, NamedTensors)> {
    let net_inputs: Vec<String> = plan.net.input_blob_names().iter().map(|s| s.to_string()).collect();
    for (name, t) in inputs.iter().filter(|(n, _)| net_inputs.contains(n)) {
        plan.net.set_input(name, t)?;
    }
    // The inputs as their layers produced them, before an in-place layer (a
    // Scale on the data) rewrote them: the net keeps first values while recording.
    plan.net.record_blob_diffs(true);
    let ran = plan.net.forward_inference();
    let copy = |t: &Tensor| -> Result<Tensor> {
        Ok(t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?)
    };
    let result = ran.and_then(|_| {
        let fed = plan
            .inputs
            .iter()
            .map(|i| {
                let t = plan.net.blob_first_value(&i.name).or_else(|| plan.net.blob(&i.name));
                let t = t.ok_or_else(|| Error::invalid(format!("the net has no blob named '{}'", i.name)))?;
                Ok((i.name.clone(), copy(t)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let refs = blobs
            .iter()
            .map(|n| {
                let t = plan.net.blob(n).ok_or_else(|| Error::invalid(format!("the net has no blob named '{n}'")))?;
                Ok((n.clone(), copy(t)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((fed, refs))
    });
    plan.net.record_blob_diffs(false);
    let (fed, refs) = result?;
    Ok((fed, refs))
}

/// One exported model to run, with its inputs and the blobs to read back.
pub struct Run<'a> {
    pub format: Format,
    /// For ONNX: what runs it (ignored for `model.py`).
    pub runtime: Runtime,
    pub model: &'a Path,
    pub fed: &'a [(String, Tensor)],
    pub blobs: &'a [String],
    pub all_blobs: bool,
}

/// What running an exported model gave: the blobs' values, and for ONNX the
/// shapes onnx's strict shape inference gave them.
pub struct RunResult {
    pub values: Vec<(String, Tensor)>,
    pub inferred: BTreeMap<String, Vec<Dim>>,
}

/// Runs the exported model at `model` on `fed` in Python and returns its
/// values of `blobs` (and onnx's inferred shapes, for ONNX).
pub fn run_exported(run: &Run) -> Result<RunResult> {
    let mut results = run_exported_many(std::slice::from_ref(run))?;
    results.pop().ok_or_else(|| Error::invalid("the runner returned no result"))
}

/// Runs several exported models in one Python process (Python and
/// onnxruntime start once).
pub fn run_exported_many(runs: &[Run]) -> Result<Vec<RunResult>> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let runner = dir.path().join("caffe_tch_verify.py");
    std::fs::write(&runner, RUNNER).map_err(|e| Error::io(&runner, e))?;
    let files = |v: &[(String, PathBuf)]| -> serde_json::Map<String, serde_json::Value> {
        v.iter().map(|(n, p)| (n.clone(), serde_json::Value::from(p.display().to_string()))).collect()
    };
    let mut manifests = Vec::new();
    let mut outputs = Vec::new();
    for (r, run) in runs.iter().enumerate() {
        let mut input_files = Vec::new();
        for (k, (name, t)) in run.fed.iter().enumerate() {
            let p = dir.path().join(format!("run{r}_in{k}.npy"));
            t.write_npy(&p).map_err(|e| Error::invalid(format!("{}: cannot write .npy: {e}", p.display())))?;
            input_files.push((name.clone(), p));
        }
        let is_input = |b: &str| run.fed.iter().any(|(n, _)| n == b);
        // (the model's output name, the file), in the order of `run.blobs`.
        let output_files: Vec<(String, PathBuf)> = run
            .blobs
            .iter()
            .enumerate()
            .map(|(k, n)| {
                let name = match run.format {
                    Format::Onnx => super::onnx::output_name(n, is_input(n)),
                    _ => n.clone(),
                };
                (name, dir.path().join(format!("run{r}_out{k}.npy")))
            })
            .collect();
        let report = dir.path().join(format!("run{r}_report.json"));
        let manifest = serde_json::json!({
            "format": run.format.name(),
            "runtime": run.runtime.name(),
            "model": run.model.display().to_string(),
            "all_blobs": run.all_blobs,
            "report": report.display().to_string(),
            "inputs": files(&input_files),
            "outputs": files(&output_files),
        })
        .to_string();
        let manifest_path = dir.path().join(format!("run{r}_manifest.json"));
        std::fs::write(&manifest_path, manifest).map_err(|e| Error::io(&manifest_path, e))?;
        manifests.push(manifest_path);
        outputs.push((run.blobs, output_files, report));
    }
    let py = python();
    let out = Command::new(&py).arg(&runner).args(&manifests).output().map_err(|e| {
        Error::unsupported(format!(
            "-verify runs the exported model in Python ({}: {e}); install onnxruntime, onnx and torch there, or set CAFFE_TCH_PYTHON",
            py.display()
        ))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no message)");
        return Err(Error::invalid(format!("running the exported model failed: {last}")));
    }
    let mut results = Vec::new();
    for (blobs, output_files, report) in outputs {
        let text = std::fs::read_to_string(&report).map_err(|e| Error::io(&report, e))?;
        let parsed: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::decode(&report, format!("runner report: {e}")))?;
        let mut by_output = inferred_shapes(&parsed);
        // Values and shapes by Caffe blob name.
        let mut values = Vec::new();
        let mut inferred = BTreeMap::new();
        for (blob, (output, p)) in blobs.iter().zip(&output_files) {
            let t = crate::util::npy::read(p)?;
            values.push((blob.clone(), t));
            if let Some(dims) = by_output.remove(output) {
                inferred.insert(blob.clone(), dims);
            }
        }
        results.push(RunResult { values, inferred });
    }
    Ok(results)
}

/// Compares each exported value with the reference.
pub fn compare(
    refs: &[(String, Tensor)],
    got: &[(String, Tensor)],
    inferred: &BTreeMap<String, Vec<Dim>>,
) -> Result<Vec<BlobCheck>> {
    let mut checks = Vec::new();
    for ((name, r), (_, g)) in refs.iter().zip(got) {
        let (max_abs_diff, max_abs_ref) = if r.size() == g.size() {
            let d = (r - g).abs().max().double_value(&[]);
            (if d.is_nan() { f64::INFINITY } else { d }, r.abs().max().double_value(&[]))
        } else {
            (f64::INFINITY, 0.0)
        };
        let shape_mismatch = if r.size() != g.size() {
            Some(format!("the exported model gives shape {:?}, Caffe {:?}", g.size(), r.size()))
        } else {
            inferred.get(name).and_then(|dims| {
                let agrees = dims.len() == r.size().len()
                    && dims.iter().zip(r.size()).enumerate().all(|(axis, (d, c))| match d {
                        Dim::Value(v) => *v == c,
                        // A named axis is the batch; one onnx could not name
                        // (unnamed, or its `unk__` names) has the length the data gives.
                        Dim::Param(name) => axis == 0 || name.is_empty() || name.starts_with("unk__"),
                    });
                (!agrees).then(|| format!("ONNX shape inference gives {dims:?}, Caffe {:?}", r.size()))
            })
        };
        let nonfinite_ref = r.numel() as i64 - r.isfinite().sum(Kind::Int64).int64_value(&[]);
        checks.push(BlobCheck { name: name.clone(), max_abs_diff, max_abs_ref, shape_mismatch, nonfinite_ref });
    }
    Ok(checks)
}

/// Detection rows (… × 7) sorted by image, label, then every other column.
fn rows_in_order(t: &Tensor) -> Result<Tensor> {
    let values = crate::util::tensor_values(t)?;
    let mut rows: Vec<&[f32]> = values.chunks(7).collect();
    rows.sort_by(|a, b| {
        a.iter().zip(b.iter()).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
    });
    let flat: Vec<f32> = rows.concat();
    Ok(Tensor::f_from_slice(&flat)?)
}

/// `-verify`: reference forward, exported forward, comparison and log lines.
pub fn verify(
    plan: &mut Plan,
    format: Format,
    runtime: Runtime,
    model: &Path,
    all_blobs: bool,
    given: &[(String, PathBuf)],
) -> Result<bool> {
    if format != Format::Onnx && runtime != Runtime::OnnxRuntime {
        return Err(Error::usage(format!(
            "-verify_with {} runs ONNX models; -format {} is verified in PyTorch",
            runtime.name(),
            format.name()
        )));
    }
    // The log's name for what ran the model: "onnx", "onnx in openvino", "pytorch".
    let label = match (format, runtime) {
        (Format::Onnx, Runtime::OpenVino | Runtime::OpenCv) => format!("onnx in {}", runtime.name()),
        _ => format.name().to_string(),
    };
    let mut inputs = random_inputs(plan);
    for (name, file) in given {
        let t = crate::util::npy::read(file)?;
        match inputs.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = t,
            None => {
                let names: Vec<&str> = plan.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(Error::usage(format!(
                    "-input {name}: the exported model's inputs are {}",
                    names.join(", ")
                )));
            }
        }
    }
    // Data-source layers read their own batch: only Input blobs are fed.
    let feedable: Vec<(String, Tensor)> =
        inputs.into_iter().filter(|(n, _)| plan.net.input_blob_names().contains(&n.as_str())).collect();
    let blobs = plan.exported_blobs(all_blobs);
    let (fed, refs) = reference(plan, &feedable, &blobs)?;
    let got = run_exported(&Run { format, runtime, model, fed: &fed, blobs: &blobs, all_blobs })?;
    let mut checks = compare(&refs, &got.values, &got.inferred)?;
    // Detection rows are listed best first; two whose confidences differ by
    // float rounding may come in the other order (onnxruntime's exp and
    // sigmoid round differently), which is the same detections.
    let detection_tops: Vec<&String> = plan
        .layers
        .iter()
        .filter(|l| ["DetectionOutput", "Yolov3DetectionOutput"].contains(&l.layer_type()))
        .flat_map(|l| &l.tops)
        .collect();
    for (c, ((_, r), (_, g))) in checks.iter_mut().zip(refs.iter().zip(&got.values)) {
        if !c.passed() && c.shape_mismatch.is_none() && detection_tops.contains(&&c.name) {
            let d = (rows_in_order(r)? - rows_in_order(g)?).abs().max().double_value(&[]);
            if d <= TOLERANCE * (1.0 + c.max_abs_ref) {
                info!(
                    "export.cpp:1",
                    "Verify {}: blob {} holds the same detections, some listed in another order (confidences within \
                     float rounding of each other)",
                    label,
                    c.name
                );
                c.max_abs_diff = d;
            }
        }
    }
    let mut ok = true;
    for c in &checks {
        if c.nonfinite_ref > 0 {
            ok = false;
            warn!(
                "export.cpp:1",
                "Verify {}: blob {}: caffe-tch's own forward gives {} NaN or infinite value(s) with these weights and \
                 inputs (a net without trained weights can overflow), so they cannot be compared: verify with \
                 -weights, or other inputs (-input): FAILED",
                label,
                c.name,
                c.nonfinite_ref
            );
            continue;
        }
        let line = format!(
            "Verify {}: blob {} max |diff| = {} (max |ref| = {}, tolerance {})",
            label,
            c.name,
            format_g(c.max_abs_diff, 6),
            format_g(c.max_abs_ref, 6),
            format_g(TOLERANCE * (1.0 + c.max_abs_ref), 6)
        );
        if c.passed() {
            info!("export.cpp:1", "{line}");
        } else {
            ok = false;
            warn!(
                "export.cpp:1",
                "{line}{}: FAILED",
                c.shape_mismatch.as_deref().map(|s| format!("; {s}")).unwrap_or_default()
            );
        }
    }
    let worst = checks.iter().map(|c| c.max_abs_diff).fold(0.0, f64::max);
    info!(
        "export.cpp:1",
        "Verify {}: {} blob(s), worst max |diff| = {}: {}",
        label,
        checks.len(),
        format_g(worst, 6),
        if ok { "PASSED" } else { "FAILED" }
    );
    Ok(ok)
}

/// One axis of a shape onnx inferred: a number, or a symbol (the batch axis).
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Value(i64),
    Param(String),
}

/// Reads `{"inferred_shapes": {"name": [1, "N", ...]}}` from the runner's report.
fn inferred_shapes(report: &serde_json::Value) -> BTreeMap<String, Vec<Dim>> {
    let mut out = BTreeMap::new();
    if let Some(shapes) = report.get("inferred_shapes").and_then(|v| v.as_object()) {
        for (name, dims) in shapes {
            let dims = dims.as_array().map(|a| a.as_slice()).unwrap_or_default();
            let dims = dims
                .iter()
                .map(|d| match d.as_i64() {
                    Some(v) => Dim::Value(v),
                    None => Dim::Param(d.as_str().unwrap_or("?").to_string()),
                })
                .collect();
            out.insert(name.clone(), dims);
        }
    }
    out
}
