//! Helpers for the export tests: nets exported in-process with their
//! reference values from caffe-tch's forward, and one Python process that
//! runs many exported `model.py` files (torch's import costs 1–2 s, so the
//! tests batch their nets into few Python runs).
use std::path::{Path, PathBuf};
use std::process::Command;

use caffe_tch::export::{self, verify, BuildOptions, Plan};
use caffe_tch::proto::text::TextOptions;
use tch::Tensor;

/// The Python that runs exported models, if it has torch, safetensors and numpy.
pub fn python_with_torch() -> Result<PathBuf, String> {
    let py = verify::python();
    let out = Command::new(&py)
        .args(["-c", "import torch, safetensors, numpy"])
        .output()
        .map_err(|e| format!("{}: {e}", py.display()))?;
    if out.status.success() {
        Ok(py)
    } else {
        Err(format!("{} has no torch/safetensors/numpy (make puts the venv first on PATH)", py.display()))
    }
}

/// One exported net, with what caffe-tch computed for it.
pub struct Case {
    pub label: String,
    /// The folder with model.py and weights.safetensors.
    pub model: PathBuf,
    /// Every graph input's value as caffe-tch's forward had it.
    pub fed: Vec<(String, Tensor)>,
    /// Every exported blob's reference value.
    pub refs: Vec<(String, Tensor)>,
}

/// Writes `text` as `dir/<label>/net.prototxt`, builds it as `caffe export`
/// does, exports it to PyTorch and runs caffe-tch's forward on seeded inputs.
pub fn prepare(dir: &Path, label: &str, text: &str, build: BuildOptions) -> caffe_tch::Result<Case> {
    let folder = dir.join(label);
    std::fs::create_dir_all(&folder).map_err(|e| caffe_tch::Error::io(&folder, e))?;
    let prototxt = folder.join("net.prototxt");
    std::fs::write(&prototxt, text).map_err(|e| caffe_tch::Error::io(&prototxt, e))?;
    // The net's fillers and the inputs draw from libtorch's process-wide generator.
    let _rng = crate::common::rng_exclusive();
    let mut plan = Plan::build(&prototxt, TextOptions::default(), &build)?;
    let model = folder.join("out");
    export::pytorch::export(&plan, &model)?;
    let inputs = verify::random_inputs(&plan);
    let feedable: Vec<(String, Tensor)> =
        inputs.into_iter().filter(|(n, _)| plan.net.input_blob_names().contains(&n.as_str())).collect();
    let blobs = plan.exported_blobs(true);
    let (fed, refs) = verify::reference(&mut plan, &feedable, &blobs)?;
    Ok(Case { label: label.to_string(), model, fed, refs })
}

const RUNNER: &str = r#"
import importlib.util, json, sys, traceback
import numpy as np
import torch

torch.set_num_threads(1)
report = {}
for i, case in enumerate(json.load(open(sys.argv[1]))):
    try:
        spec = importlib.util.spec_from_file_location(f"exported_{i}", case["model"] + "/model.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        net = mod.load()
        feeds = {mod.INPUTS[n]: torch.from_numpy(np.load(p)) for n, p in case["inputs"].items()}
        with torch.no_grad():
            out = net(**feeds, blobs=list(case["outputs"]))
        for name, path in case["outputs"].items():
            np.save(path, np.asarray(out[name].detach().numpy(), dtype=np.float32))
        report[case["label"]] = "ok"
    except Exception as e:
        report[case["label"]] = traceback.format_exc(limit=2) + repr(e)
json.dump(report, open(sys.argv[2], "w"))
"#;

/// One blob's result: (case, blob, max |Δ|, max |ref|).
pub type BlobResult = (String, String, f64, f64);

/// Runs every case's model.py in one Python process on the inputs caffe-tch
/// used and compares each blob with caffe-tch's; returns the per-blob
/// figures and the failures (a Python error, or a blob past the tolerance).
pub fn run_cases(py: &Path, dir: &Path, cases: &[Case]) -> (Vec<BlobResult>, Vec<String>) {
    let mut manifest = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut inputs = serde_json::Map::new();
        for (k, (name, t)) in c.fed.iter().enumerate() {
            let p = dir.join(format!("case{i}_in{k}.npy"));
            t.write_npy(&p).expect("write input npy");
            inputs.insert(name.clone(), p.display().to_string().into());
        }
        let outputs: serde_json::Map<String, serde_json::Value> = c
            .refs
            .iter()
            .enumerate()
            .map(|(k, (name, _))| (name.clone(), dir.join(format!("case{i}_out{k}.npy")).display().to_string().into()))
            .collect();
        manifest.push(serde_json::json!({
            "label": c.label, "model": c.model.display().to_string(), "inputs": inputs, "outputs": outputs,
        }));
    }
    let manifest_path = dir.join("cases.json");
    std::fs::write(&manifest_path, serde_json::Value::from(manifest).to_string()).expect("write cases.json");
    let report_path = dir.join("report.json");
    let script = dir.join("run_cases.py");
    std::fs::write(&script, RUNNER).expect("write runner");
    let out = Command::new(py).arg(&script).arg(&manifest_path).arg(&report_path).output().expect("spawn python");
    assert!(out.status.success(), "python runner failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report")).expect("report json");
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let status = report[&c.label].as_str().unwrap_or("no report");
        if status != "ok" {
            failures.push(format!("{}: {status}", c.label));
            continue;
        }
        for (k, (name, r)) in c.refs.iter().enumerate() {
            let got = Tensor::read_npy(dir.join(format!("case{i}_out{k}.npy"))).expect("read output npy");
            if got.size() != r.size() {
                failures.push(format!("{} {name}: shape {:?}, Caffe {:?}", c.label, got.size(), r.size()));
                continue;
            }
            let d = (&got - r).abs().max().double_value(&[]);
            let d = if d.is_nan() { f64::INFINITY } else { d };
            let m = r.abs().max().double_value(&[]);
            if d > verify::TOLERANCE * (1.0 + m) {
                failures.push(format!("{} {name}: max |Δ| = {d:.3e}, max |ref| = {m:.3e}", c.label));
            }
            results.push((c.label.clone(), name.clone(), d, m));
        }
    }
    (results, failures)
}

/// The worst max |Δ| of each case, for the test's log.
pub fn worst_per_case(results: &[BlobResult]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (case, _, d, _) in results {
        match out.iter_mut().find(|(c, _)| c == case) {
            Some(slot) => slot.1 = slot.1.max(*d),
            None => out.push((case.clone(), *d)),
        }
    }
    out
}
