//! `caffe time -iterations 2` on every net of the corpus that uses only
//! supported layers: BVLC's examples/ and models/ (tests/fixtures/bvlc/), the
//! reference fixtures' nets (tests/fixtures/caffe-ref/fixtures/) and the bench
//! nets (benches/nets/: GoogLeNet, VGG16, CaffeNet).
//!
//! Each net is parsed and upgraded, each data-source layer (whose DB or file
//! list the repo does not have) is replaced by an Input layer of the shape the
//! source would give, and the batch is capped (2, or 1 for ImageNet-size
//! inputs) so the whole file stays fast on a busy CPU. The result is written to
//! a temporary prototxt and timed by the `caffe` binary once per phase the net
//! defines: TRAIN and TEST for train/test nets (TRAIN alone for ImageNet-size
//! ones), TEST for deploy nets.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use caffe_tch::proto::caffe::{BlobShape, InputParameter, LayerParameter, NetParameter, Phase};
use caffe_tch::proto::{print, text, upgrade};

use crate::common;

/// Runs of `caffe time` (net × phase) expected to pass. Update deliberately.
const EXPECTED_RUNS: usize = 66;

/// Net files expected to be skipped, with a word of the reason.
const EXPECTED_SKIPS: &[(&str, &str)] = &[("bvlc/examples/pycaffe/linreg.prototxt", "Python")];

/// Layers whose data comes from a DB, file list or memory: replaced by Input.
const DATA_SOURCES: &[&str] = &["Data", "ImageData", "HDF5Data", "WindowData", "MemoryData"];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "prototxt")
            && !p.file_name().unwrap().to_string_lossy().contains("solver")
        {
            out.push(p);
        }
    }
}

/// The net files, as (label, path).
fn nets() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (label, dir) in [
        ("bvlc", "tests/fixtures/bvlc"),
        ("caffe-ref", "tests/fixtures/caffe-ref/fixtures"),
        ("benches", "benches/nets"),
    ] {
        let root = common::repo().join(dir);
        let mut files = Vec::new();
        walk(&root, &mut files);
        for f in files {
            out.push((format!("{label}/{}", f.strip_prefix(&root).unwrap().display()), f));
        }
    }
    out
}

/// One sample's shape (without the batch axis) for a data-source layer.
fn sample_shape(l: &LayerParameter) -> Result<Vec<i64>, String> {
    let crop = l.transform_param.as_ref().map(|t| t.crop_size()).unwrap_or(0) as i64;
    let need_crop = |what: &str| {
        if crop > 0 {
            Ok(vec![3, crop, crop])
        } else {
            Err(format!("{} layer {} without crop_size: the image size depends on the data", what, l.name()))
        }
    };
    match l.r#type() {
        "Data" => {
            let source = l.data_param.as_ref().map(|d| d.source()).unwrap_or_default();
            if source.contains("siamese") {
                // Two MNIST digits stacked on the channel axis.
                Ok(vec![2, 28, 28])
            } else if source.contains("mnist") {
                Ok(vec![1, 28, 28])
            } else if source.contains("cifar") {
                Ok(vec![3, 32, 32])
            } else if source.contains("ilsvrc12") || source.contains("imagenet") {
                need_crop("ImageNet Data")
            } else {
                Err(format!("Data layer {}: unknown source {source}", l.name()))
            }
        }
        "ImageData" => {
            let p = l.image_data_param.clone().unwrap_or_default();
            let channels = if p.is_color() { 3 } else { 1 };
            if crop > 0 {
                Ok(vec![channels, crop, crop])
            } else if p.new_height() > 0 && p.new_width() > 0 {
                Ok(vec![channels, p.new_height() as i64, p.new_width() as i64])
            } else {
                Err(format!("ImageData layer {}: the image size depends on the files", l.name()))
            }
        }
        "WindowData" => need_crop("WindowData"),
        "HDF5Data" => {
            let source = l.hdf5_data_param.as_ref().map(|d| d.source()).unwrap_or_default();
            if source.contains("hdf5_classification") {
                // The example's notebook writes sklearn's make_classification
                // with n_features=4.
                Ok(vec![4])
            } else {
                Err(format!("HDF5Data layer {}: the data shape is in the HDF5 file", l.name()))
            }
        }
        "MemoryData" => {
            let p = l.memory_data_param.unwrap_or_default();
            Ok(vec![p.channels() as i64, p.height() as i64, p.width() as i64])
        }
        other => Err(format!("not a data source: {other}")),
    }
}

/// The data-source layer as an Input layer: data of `batch` samples, labels [batch].
fn as_input(l: &LayerParameter, batch: i64) -> Result<LayerParameter, String> {
    if l.top.is_empty() || l.top.len() > 2 {
        return Err(format!("{} layer {} has {} tops", l.r#type(), l.name(), l.top.len()));
    }
    let mut data = vec![batch];
    data.extend(sample_shape(l)?);
    let mut shapes = vec![BlobShape { dim: data }];
    if l.top.len() == 2 {
        shapes.push(BlobShape { dim: vec![batch] });
    }
    Ok(LayerParameter {
        name: l.name.clone(),
        r#type: Some("Input".into()),
        top: l.top.clone(),
        include: l.include.clone(),
        exclude: l.exclude.clone(),
        input_param: Some(InputParameter { shape: shapes }),
        ..Default::default()
    })
}

/// The net ready to time (data sources replaced, batches capped) and whether
/// it is ImageNet-size. Err: why it cannot run.
fn prepare(net: &NetParameter) -> Result<(NetParameter, bool), String> {
    let known: BTreeSet<&str> = caffe_tch::layers::known_types().into_iter().collect();
    let unsupported: BTreeSet<&str> =
        net.layer.iter().map(|l| l.r#type()).filter(|t| !known.contains(t) && !DATA_SOURCES.contains(t)).collect();
    if !unsupported.is_empty() {
        return Err(format!("unsupported layer types: {unsupported:?}"));
    }
    let mut out = net.clone();
    for l in out.layer.iter_mut().filter(|l| DATA_SOURCES.contains(&l.r#type())) {
        *l = as_input(l, 2)?;
    }
    // ImageNet-size inputs (AlexNet, GoogLeNet, VGG16, ...) run one sample.
    let spatial = out
        .layer
        .iter()
        .filter_map(|l| l.input_param.as_ref())
        .flat_map(|p| p.shape.iter())
        .map(|s| s.dim.iter().skip(2).product::<i64>())
        .max()
        .unwrap_or(0);
    let cap = if spatial >= 150 * 150 { 1 } else { 2 };
    for l in out.layer.iter_mut() {
        if let Some(p) = l.input_param.as_mut() {
            for s in p.shape.iter_mut() {
                if let Some(n) = s.dim.first_mut() {
                    *n = (*n).min(cap);
                }
            }
        }
        if let Some(p) = l.dummy_data_param.as_mut() {
            for s in p.shape.iter_mut() {
                if let Some(n) = s.dim.first_mut() {
                    *n = (*n).min(cap);
                }
            }
            for n in p.num.iter_mut() {
                *n = (*n).min(cap as u32);
            }
        }
    }
    Ok((out, cap == 1))
}

/// (phase, stage) pairs to time: TRAIN where layers pick a phase (and TEST
/// too for small nets: ImageNet-size TEST phases add time, not coverage), TEST
/// alone for deploy nets. Where a phase's layers need a stage (the
/// autoencoder's "test-on-train"), the first stage named is used.
fn runs(net: &NetParameter, heavy: bool) -> Vec<(Phase, Option<String>)> {
    let rules = || net.layer.iter().flat_map(|l| l.include.iter().chain(l.exclude.iter()));
    let phases: Vec<Phase> = if rules().any(|r| r.phase.is_some()) {
        if heavy {
            vec![Phase::Train]
        } else {
            vec![Phase::Train, Phase::Test]
        }
    } else {
        vec![Phase::Test]
    };
    phases
        .into_iter()
        .map(|phase| {
            let stage = net
                .layer
                .iter()
                .flat_map(|l| l.include.iter())
                .filter(|r| r.phase.is_none() || r.phase() == phase)
                .flat_map(|r| r.stage.iter())
                .next()
                .cloned();
            (phase, stage)
        })
        .collect()
}

fn phase_flag(p: Phase) -> &'static str {
    match p {
        Phase::Train => "TRAIN",
        Phase::Test => "TEST",
    }
}

struct Job {
    what: String,
    model: PathBuf,
    phase: Phase,
    stage: Option<String>,
}

/// Runs `caffe time` for the job: Ok(seconds) or Err(why).
fn time_net(job: &Job, dir: &Path) -> Result<f64, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_caffe"));
    // One intra-op thread each: two processes share the cores without
    // oversubscribing them (GoogLeNet's many small ops suffer most from that).
    cmd.env("OMP_NUM_THREADS", "1");
    cmd.arg("time").arg("-model").arg(&job.model).args(["-iterations", "2", "-phase", phase_flag(job.phase)]);
    if let Some(s) = &job.stage {
        cmd.args(["-stage", s]);
    }
    let start = std::time::Instant::now();
    let out = cmd.current_dir(dir).output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stderr.contains("Average Forward-Backward") {
        Ok(start.elapsed().as_secs_f64())
    } else {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        Err(format!("{}: {}", out.status, tail.into_iter().rev().collect::<Vec<_>>().join(" | ")))
    }
}

#[test]
fn caffe_time_runs_on_every_supported_corpus_net() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    for (label, path) in nets() {
        let mut net = text::read_file::<NetParameter>(&path, text::TextOptions::default())
            .unwrap_or_else(|e| panic!("{label}: {e}"))
            .message;
        upgrade::upgrade_net(&mut net, &label).unwrap_or_else(|e| panic!("{label}: upgrade: {e}"));
        let (prepared, heavy) = match prepare(&net) {
            Ok(p) => p,
            Err(why) => {
                skipped.push((label, why));
                continue;
            }
        };
        let model = dir.join(label.replace('/', "__"));
        std::fs::write(&model, print::to_text(&prepared)).unwrap();
        for (phase, stage) in runs(&prepared, heavy) {
            let what = format!(
                "{label} {}{}",
                phase_flag(phase),
                stage.as_ref().map(|s| format!(" stage {s}")).unwrap_or_default()
            );
            jobs.push(Job { what, model: model.clone(), phase, stage });
        }
    }
    // Two single-threaded processes at a time: libtorch's start-up and the
    // memory-bound backward of the big fully connected layers overlap well.
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<f64, String>>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                let r = time_net(job, dir);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    let mut ran: Vec<&str> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (job, r) in jobs.iter().zip(results.into_inner().unwrap()) {
        match r.expect("every job ran") {
            Ok(secs) => {
                println!("ran  {} ({secs:.1} s)", job.what);
                ran.push(&job.what);
            }
            Err(why) => failures.push(format!("{}: {why}", job.what)),
        }
    }
    println!("\n{} runs passed, {} failed, {} files skipped:", ran.len(), failures.len(), skipped.len());
    for (f, why) in &skipped {
        println!("  skipped {f}: {why}");
    }
    assert!(failures.is_empty(), "{} caffe time failures:\n{}", failures.len(), failures.join("\n"));
    let skipped_names: Vec<&str> = skipped.iter().map(|(f, _)| f.as_str()).collect();
    let expected_names: Vec<&str> = EXPECTED_SKIPS.iter().map(|(f, _)| *f).collect();
    assert_eq!(skipped_names, expected_names, "skipped files changed: {skipped:?}");
    for ((_, why), (_, word)) in skipped.iter().zip(EXPECTED_SKIPS) {
        assert!(why.contains(word), "skip reason {why:?} should mention {word}");
    }
    assert_eq!(ran.len(), EXPECTED_RUNS, "runs that passed:\n{}", ran.join("\n"));
}
