//! The DropIn paper's nets (models/) and solvers (solvers/):
//! - every prototxt parses and builds (TRAIN and TEST; Data layers replaced by
//!   Input layers of the shape their DB would give), the small nets run forward
//!   and backward, AlexNet13 runs forward;
//! - DropIn wiring: structurally (bottom[0] the chain so far, bottom[1] the new
//!   layer) and numerically (at iteration 0 a DropIn net computes its shallow base
//!   net, fully grown its deep net, with the same weights);
//! - the base nets equal Caffe's reference files; every solver names an existing
//!   net with the right dropin_length; the generated files are current.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::caffe::{BlobShape, InputParameter, LayerParameter, NetParameter, Phase, SolverParameter};
use caffe_tch::proto::text::{self, TextOptions};
use tch::{Device, Tensor};

use crate::common;
use crate::common::{assert_close, fixture, net_state, repo, rng_shared};

fn read_net(path: &Path) -> NetParameter {
    text::read_file_nonempty::<NetParameter>(path, TextOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .message
}

fn read_solver(path: &Path) -> SolverParameter {
    text::read_file_nonempty::<SolverParameter>(path, TextOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .message
}

fn model(folder: &str, file: &str) -> PathBuf {
    repo().join("models").join(folder).join(file)
}

/// The model folders, sorted.
fn model_folders() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("models"))
        .expect("models/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `*.prototxt` in a folder, sorted.
fn prototxts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "prototxt"))
        .collect();
    v.sort();
    v
}

fn is_small(folder: &str) -> bool {
    folder.starts_with("lenet") || folder.starts_with("cifar")
}

/// One sample's shape from a Data layer's source: MNIST 1×28×28, CIFAR-10
/// 3×32×32, ImageNet 3×crop×crop.
fn sample_shape(l: &LayerParameter) -> Vec<i64> {
    let source = l.data_param.as_ref().map(|d| d.source()).unwrap_or_default();
    let crop = l.transform_param.as_ref().map(|t| t.crop_size()).unwrap_or(0) as i64;
    if source.contains("mnist") {
        vec![1, 28, 28]
    } else if source.contains("cifar") {
        vec![3, 32, 32]
    } else if source.contains("ilsvrc12") {
        assert!(crop > 0, "ImageNet data layer {} without crop_size", l.name());
        vec![3, crop, crop]
    } else {
        panic!("data layer {}: unknown source {source}", l.name())
    }
}

/// The net with each Data layer replaced by an Input layer of the shape the DB
/// would give: `batch` samples, or the layer's own batch_size.
fn with_inputs(net: &NetParameter, batch: Option<i64>) -> NetParameter {
    let mut out = net.clone();
    for l in out.layer.iter_mut().filter(|l| l.r#type() == "Data") {
        assert_eq!(l.top.len(), 2, "data layer {} should have tops data and label", l.name());
        let n = batch.unwrap_or_else(|| l.data_param.as_ref().map(|d| d.batch_size()).unwrap_or(1) as i64);
        let mut data = vec![n];
        data.extend(sample_shape(l));
        *l = LayerParameter {
            name: l.name.clone(),
            r#type: Some("Input".into()),
            top: l.top.clone(),
            include: l.include.clone(),
            input_param: Some(InputParameter { shape: vec![BlobShape { dim: data }, BlobShape { dim: vec![n] }] }),
            ..Default::default()
        };
    }
    out
}

fn build(param: &NetParameter, phase: Phase, what: &str) -> Net {
    Net::new(param, &net_state(phase), NetSource::new(what), Device::Cpu)
        .unwrap_or_else(|e| panic!("{what} ({phase:?}): {e}"))
}

/// Builds a train_val file in `phase` with inputs of `batch` samples.
fn build_train_val(path: &Path, phase: Phase, batch: Option<i64>) -> Net {
    build(&with_inputs(&read_net(path), batch), phase, &path.display().to_string())
}

/// Feeds repeatable inputs: images (uniform [0,1) for 1 channel, else normal)
/// and labels in 0..10.
fn feed(net: &mut Net, seed: u64) {
    // Our own generator, not libtorch's process-wide one (see SeededInputs).
    let mut rng = common::SeededInputs::new(seed);
    let shape = net.blob_shape("data").expect("data blob").clone();
    let x = if shape[1] == 1 { rng.uniform(&shape) } else { rng.normal(&shape) };
    let label = rng.labels(&[shape[0]], 10);
    net.set_input("data", &x).expect("set data");
    net.set_input("label", &label).expect("set label");
}

fn dropin_layers(net: &NetParameter) -> Vec<&LayerParameter> {
    net.layer.iter().filter(|l| l.r#type() == "DropIn").collect()
}

/// The dropin_length shared by all of a net's DropIn layers.
fn dropin_length(net: &NetParameter) -> Option<u32> {
    let lengths: BTreeSet<u32> =
        dropin_layers(net).iter().map(|l| l.dropin_param.as_ref().map(|p| p.dropin_length()).unwrap_or(0)).collect();
    assert!(lengths.len() <= 1, "net {} mixes dropin_length values {lengths:?}", net.name());
    lengths.into_iter().next()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

// ---------------------------------------------------------------------------

#[test]
fn generated_files_are_current() {
    let out = match std::process::Command::new("python3").arg(repo().join("models/generate.py")).arg("--check").output()
    {
        Ok(o) => o,
        Err(e) => skip!("python3 is not available ({e})"),
    };
    assert!(
        out.status.success(),
        "models/ or solvers/ differ from models/generate.py (run `python3 models/generate.py`):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_model_folder_is_complete_and_parses() {
    let folders = model_folders();
    assert!(folders.len() >= 16, "expected the paper's 16 models, found {folders:?}");
    for f in &folders {
        for needed in ["train_val.prototxt", "deploy.prototxt", "README.md"] {
            assert!(model(f, needed).exists(), "models/{f}/{needed} is missing");
        }
        for p in prototxts(&repo().join("models").join(f)) {
            let net = read_net(&p);
            assert!(!net.layer.is_empty(), "{}: no layers", p.display());
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name == "deploy.prototxt" || name.starts_with("train_val"), "unexpected file {}", p.display());
        }
    }
}

/// train_val_d<L>.prototxt is train_val.prototxt with every dropin_length = L.
#[test]
fn length_variants_differ_only_in_dropin_length() {
    let mut variants = 0;
    for f in model_folders() {
        let base = read_net(&model(&f, "train_val.prototxt"));
        for p in prototxts(&repo().join("models").join(&f)) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let Some(l) = name.strip_prefix("train_val_d").and_then(|s| s.strip_suffix(".prototxt")) else {
                continue;
            };
            let length: u32 = l.parse().unwrap_or_else(|_| panic!("bad variant name {}", p.display()));
            let variant = read_net(&p);
            assert_eq!(dropin_length(&variant), Some(length), "{}", p.display());
            assert_ne!(dropin_length(&base), Some(length), "{}: same length as train_val.prototxt", p.display());
            let mut expected = base.clone();
            for l in expected.layer.iter_mut().filter(|l| l.r#type() == "DropIn") {
                l.dropin_param.as_mut().expect("dropin_param").dropin_length = Some(length);
            }
            assert_eq!(variant, expected, "{} differs from train_val.prototxt beyond dropin_length", p.display());
            variants += 1;
        }
    }
    assert!(variants >= 4 * 2 + 2 + 3, "only {variants} length variants");
}

/// Every train_val and deploy builds in TRAIN and TEST (Data → Input of the
/// declared batch). The large ImageNet nets are built one at a time.
#[test]
fn every_net_builds_in_train_and_test() {
    let _rng = rng_shared(); // the nets' fillers
    for f in model_folders() {
        let train_val = model(&f, "train_val.prototxt");
        let mut test_shapes = Vec::new();
        for phase in [Phase::Train, Phase::Test] {
            let net = build_train_val(&train_val, phase, None);
            let outputs = net.output_blob_names().join(",");
            let want = if phase == Phase::Train { "loss" } else { "accuracy,loss" };
            assert_eq!(outputs, want, "{} ({phase:?}) outputs", train_val.display());
            test_shapes = net.learnable_params().iter().map(|p| (p.display().clone(), p.data.size())).collect();
        }
        // The deploy net has the train_val's learnable layers, with the same shapes.
        let deploy = model(&f, "deploy.prototxt");
        for phase in [Phase::Train, Phase::Test] {
            let net = Net::from_file(&deploy, &net_state(phase), TextOptions::default(), Device::Cpu)
                .unwrap_or_else(|e| panic!("{} ({phase:?}): {e}", deploy.display()));
            assert_eq!(net.output_blob_names(), vec!["prob"], "{}", deploy.display());
            let shapes: Vec<(String, Vec<i64>)> =
                net.learnable_params().iter().map(|p| (p.display().clone(), p.data.size())).collect();
            assert_eq!(shapes, test_shapes, "{}: parameters differ from train_val's", deploy.display());
        }
    }
}

/// LeNet* and CIFAR*: a TRAIN forward+backward with batch 2 gives a finite loss
/// and finite, non-zero gradients for every parameter; a TEST forward gives an
/// accuracy. DropIn nets run half-way through their ramp (both paths used).
#[test]
fn small_nets_run_forward_and_backward() {
    let _rng = rng_shared(); // the nets' fillers
    for f in model_folders().into_iter().filter(|f| is_small(f)) {
        let path = model(&f, "train_val.prototxt");
        let param = read_net(&path);
        let mut net = build(&with_inputs(&param, Some(2)), Phase::Train, &f);
        if let Some(d) = dropin_length(&param) {
            net.set_iteration(d as i64 / 2);
        }
        feed(&mut net, 7);
        let loss = net.forward().unwrap_or_else(|e| panic!("{f}: forward: {e}"));
        assert!(loss.is_finite() && loss > 0.0, "{f}: loss {loss}");
        net.backward().unwrap_or_else(|e| panic!("{f}: backward: {e}"));
        for p in net.learnable_params() {
            let m = max_abs(&p.diff());
            assert!(m.is_finite() && m > 0.0, "{f}: gradient of {} is {m}", p.display());
        }

        let mut test = build(&with_inputs(&param, Some(2)), Phase::Test, &f);
        feed(&mut test, 8);
        test.forward_inference().unwrap_or_else(|e| panic!("{f}: TEST forward: {e}"));
        let acc = test.blob("accuracy").expect("accuracy").double_value(&[]);
        assert!((0.0..=1.0).contains(&acc), "{f}: accuracy {acc}");
    }
}

/// Copies `from`'s weights into `to` under new layer names (`rename` returns
/// None for layers `to` does not have).
fn copy_renamed(from: &Net, to: &mut Net, rename: impl Fn(&str) -> Option<String>) {
    let mut p = from.to_proto(false).expect("blobs");
    p.layer.retain_mut(|l| match rename(l.name()) {
        Some(n) => {
            l.name = Some(n);
            true
        }
        None => false,
    });
    to.copy_trained_layers_from(&p, "renamed weights").expect("copy weights");
}

/// Runs `shallow` and `deep` (a DropIn net at iteration `tau`) on the same
/// batch in TRAIN, with `deep`'s weights copied from `shallow` through
/// `rename`, and checks that they compute the same loss, logits and
/// gradients; `unused` layers of `deep` must get zero gradients.
fn assert_same_function(
    shallow: &Path,
    deep: &Path,
    tau: i64,
    logits: &str,
    rename: impl Fn(&str) -> Option<String> + Copy,
    unused: &[String],
) {
    let mut a = build_train_val(shallow, Phase::Train, Some(2));
    let mut b = build_train_val(deep, Phase::Train, Some(2));
    copy_renamed(&a, &mut b, rename);
    b.set_iteration(tau);
    feed(&mut a, 11);
    feed(&mut b, 11);
    let (la, lb) = (a.forward().expect("forward"), b.forward().expect("forward"));
    let what = format!("{} vs {} at τ={tau}", shallow.display(), deep.display());
    assert!((la - lb).abs() <= 1e-6 * (1.0 + la.abs()), "{what}: loss {la} vs {lb}");
    assert_close(&format!("{what}: {logits}"), b.blob(logits).unwrap(), a.blob(logits).unwrap(), 1e-6);
    a.backward().expect("backward");
    b.backward().expect("backward");
    for layer in a.layer_names() {
        let Some(target) = rename(layer) else {
            continue;
        };
        for j in 0..a.layer_blobs(layer).map(|v| v.len()).unwrap_or(0) {
            let (ga, gb) = (a.layer_blob_diff(layer, j).unwrap(), b.layer_blob_diff(&target, j).unwrap());
            assert_close(&format!("{what}: gradient {layer}[{j}] → {target}[{j}]"), &gb, &ga, 1e-5);
        }
    }
    for layer in unused {
        for j in 0..2 {
            let g = b.layer_blob_diff(layer, j).unwrap_or_else(|| panic!("{what}: no layer {layer}"));
            assert_eq!(max_abs(&g), 0.0, "{what}: skipped layer {layer} got a gradient");
        }
    }
}

#[test]
fn lenet_dropin_starts_as_lenet_and_grows_into_lenet10() {
    let _rng = rng_shared(); // the nets' fillers
    let dropin = model("lenet10_dropin", "train_val.prototxt");
    let added: Vec<String> = (1..=2).flat_map(|b| (2..=5).map(move |k| format!("conv{b}_{k}"))).collect();
    let base = |n: &str| match n {
        "conv1" => Some("conv1_1".to_string()),
        "conv2" => Some("conv2_1".to_string()),
        "ip1" | "ip2" => Some(n.to_string()),
        _ => None,
    };
    assert_same_function(&model("lenet", "train_val.prototxt"), &dropin, 0, "ip2", base, &added);

    // Fully grown (τ = dropin_length): LeNet(10) with conv{b}{b..e} ↔ conv{b}_{2..5}.
    let length = dropin_length(&read_net(&dropin)).unwrap() as i64;
    let plain = |n: &str| -> Option<String> {
        if n == "ip1" || n == "ip2" {
            return Some(n.to_string());
        }
        let rest = n.strip_prefix("conv")?;
        let block = rest.chars().next()?;
        let k = match rest.chars().nth(1) {
            None => 1,
            Some(c) => "bcde".find(c)? as u32 + 2,
        };
        Some(format!("conv{block}_{k}"))
    };
    assert_same_function(&model("lenet10_plain", "train_val.prototxt"), &dropin, length, "ip2", plain, &[]);
    // Same net with the gaussian filler: fully grown it is lenet10_gauss.
    let gauss = model("lenet10_dropin_gauss", "train_val.prototxt");
    assert_same_function(&model("lenet10_gauss", "train_val.prototxt"), &gauss, i64::MAX, "ip2", plain, &[]);
}

#[test]
fn cifar10_11layer_starts_as_cifar10_full() {
    let _rng = rng_shared(); // the nets' fillers
    let deep = model("cifar10_11layer_dropin", "train_val.prototxt");
    let param = read_net(&deep);
    let added: Vec<String> = param
        .layer
        .iter()
        .filter(|l| l.r#type() == "Convolution" && !l.name().ends_with("_1"))
        .map(|l| l.name().to_string())
        .collect();
    assert_eq!(added.len(), 8);
    assert_eq!(param.layer.iter().filter(|l| l.r#type() == "Convolution").count(), 11);
    let rename = |n: &str| match n {
        "conv1" | "conv2" | "conv3" => Some(format!("{n}_1")),
        "ip1" => Some(n.to_string()),
        _ => None,
    };
    assert_same_function(&model("cifar10_3layer", "train_val.prototxt"), &deep, 0, "ip1", rename, &added);
    // Mid-ramp both paths are used: the deep net's logits differ from the shallow one's.
    let mut a = build_train_val(&model("cifar10_3layer", "train_val.prototxt"), Phase::Test, Some(2));
    let mut b = build_train_val(&deep, Phase::Test, Some(2));
    copy_renamed(&a, &mut b, rename);
    b.set_iteration(dropin_length(&param).unwrap() as i64 / 2);
    feed(&mut a, 3);
    feed(&mut b, 3);
    a.forward_inference().unwrap();
    b.forward_inference().unwrap();
    let diff = max_abs(&(a.blob("ip1").unwrap() - b.blob("ip1").unwrap()));
    assert!(diff > 0.0, "mid-ramp the added layers must change the output");
}

/// AlexNet13 runs forward (batch 1, TEST); at iteration 0 it computes AlexNet.
#[test]
fn alexnet13_forward_starts_as_alexnet() {
    let _rng = rng_shared(); // the nets' fillers
    let mut a = build_train_val(&model("alexnet", "train_val.prototxt"), Phase::Test, Some(1));
    let mut b = build_train_val(&model("alexnet13_dropin", "train_val.prototxt"), Phase::Test, Some(1));
    assert_eq!(b.layer_types().iter().filter(|t| **t == "Convolution" || **t == "InnerProduct").count(), 13);
    copy_renamed(&a, &mut b, |n| Some(n.to_string()));
    feed(&mut a, 5);
    feed(&mut b, 5);
    b.set_iteration(0);
    a.forward_inference().expect("alexnet forward");
    b.forward_inference().expect("alexnet13 forward");
    assert_close("alexnet13 at τ=0: fc8", b.blob("fc8").unwrap(), a.blob("fc8").unwrap(), 1e-5);
    b.set_iteration(i64::MAX);
    b.forward_inference().expect("alexnet13 forward, fully grown");
    let fc8 = b.blob("fc8").unwrap();
    assert!(max_abs(fc8).is_finite());
    for (i, conv) in ["conv1", "conv2", "conv3", "conv4", "conv5"].iter().enumerate() {
        let (orig, dup) = (b.blob(conv).unwrap(), b.blob(&format!("{conv}b")).unwrap());
        assert_eq!(orig.size(), dup.size(), "the duplicate of {conv} keeps its size");
        assert_eq!(b.blob(&format!("dropin{}", i + 1)).unwrap().size(), orig.size());
    }
}

// ---------------------------------------------------------------------------
// Structural DropIn wiring.

fn is_new_layer(ty: &str) -> bool {
    matches!(ty, "Convolution" | "InnerProduct")
}

/// For each DropIn: walking back from bottom[1] reaches exactly one new
/// Convolution/InnerProduct that reads bottom[0], through ReLU/LRN only; and the
/// layers between bottom[0]'s last writer and the DropIn are exactly that
/// branch, so bottom[0] is the chain so far.
fn check_wiring(file: &str, layers: &[LayerParameter]) -> usize {
    let mut count = 0;
    for (i, d) in layers.iter().enumerate().filter(|(_, l)| l.r#type() == "DropIn") {
        assert_eq!(d.bottom.len(), 2, "{file}: {} needs 2 bottoms", d.name());
        let (skip, new) = (&d.bottom[0], &d.bottom[1]);
        assert_ne!(skip, new, "{file}: {}", d.name());
        let writer = |blob: &str, before: usize| (0..before).rev().find(|&k| layers[k].top.iter().any(|t| t == blob));
        let skip_writer =
            writer(skip, i).unwrap_or_else(|| panic!("{file}: {}: nothing writes bottom[0] {skip}", d.name()));
        let mut path = Vec::new();
        let (mut blob, mut before, mut learnable) = (new.clone(), i, 0);
        loop {
            let w = writer(&blob, before).unwrap_or_else(|| panic!("{file}: {}: nothing writes {blob}", d.name()));
            let l = &layers[w];
            assert!(
                is_new_layer(l.r#type()) || matches!(l.r#type(), "ReLU" | "LRN"),
                "{file}: {}: bottom[1]'s branch passes through {} ({})",
                d.name(),
                l.name(),
                l.r#type()
            );
            path.push(w);
            learnable += is_new_layer(l.r#type()) as usize;
            before = w;
            if l.bottom.first() == Some(skip) && l.bottom[0] != l.top[0] {
                assert!(is_new_layer(l.r#type()), "{file}: {}: the branch must start with the new layer", d.name());
                break;
            }
            blob = l.bottom[0].clone();
        }
        assert_eq!(learnable, 1, "{file}: {}: bottom[1] must be one new layer", d.name());
        path.sort();
        let between: Vec<usize> = (skip_writer + 1..i).collect();
        assert_eq!(
            between,
            path,
            "{file}: {}: bottom[0] ({skip}) is not the chain output just before the new layer",
            d.name()
        );
        count += 1;
    }
    count
}

#[test]
fn dropin_wiring() {
    // (folder, DropIn count, regularizing: the (skip, new) bottoms)
    let expected: [(&str, usize, Option<[&str; 2]>); 9] = [
        ("lenet10_dropin", 8, None),
        ("lenet10_dropin_gauss", 8, None),
        ("lenet30_dropin", 28, None),
        ("lenet50_dropin", 48, None),
        ("cifar10_11layer_dropin", 8, None),
        ("alexnet13_dropin", 5, None),
        ("vgg16_dropin", 8, None),
        ("alexnet_reg_case3", 1, Some(["fc6", "fc7"])),
        ("lenet_reg_case3", 1, Some(["ip1", "ip1b"])),
    ];
    for f in model_folders() {
        let want = expected.iter().find(|e| e.0 == f);
        for p in prototxts(&repo().join("models").join(&f)) {
            let net = read_net(&p);
            let layers: Vec<LayerParameter> =
                net.layer.iter().filter(|l| !matches!(l.r#type(), "Data" | "Input")).cloned().collect();
            let file = p.display().to_string();
            let n = check_wiring(&file, &layers);
            let Some(&(_, count, regularizing)) = want else {
                assert_eq!(n, 0, "{file}: unexpected DropIn layers");
                continue;
            };
            assert_eq!(n, count, "{file}: DropIn layers");
            for d in dropin_layers(&net) {
                let dp = d.dropin_param.as_ref().unwrap_or_else(|| panic!("{file}: {} has no dropin_param", d.name()));
                if let Some(bottoms) = regularizing {
                    assert_eq!((dp.dropin_length(), dp.dropin_ratio()), (0, 0.5), "{file}: {}", d.name());
                    assert_eq!(
                        d.bottom,
                        bottoms,
                        "{file}: {} mixes {} (new) with {} (skip)",
                        d.name(),
                        bottoms[1],
                        bottoms[0]
                    );
                } else {
                    assert!(dp.dropin_length() > 0, "{file}: {} is not gradual", d.name());
                    assert_eq!(dp.dropin_start(), 0, "{file}: {}", d.name());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The base nets are Caffe's.

fn set_sources(net: &mut NetParameter, f: impl Fn(&str) -> String) {
    for l in net.layer.iter_mut() {
        if let Some(d) = l.data_param.as_mut() {
            d.source = Some(f(d.source()));
        }
    }
}

fn strip_fillers(l: &mut LayerParameter) {
    if let Some(c) = l.convolution_param.as_mut() {
        c.weight_filler = None;
        c.bias_filler = None;
    }
    if let Some(c) = l.inner_product_param.as_mut() {
        c.weight_filler = None;
        c.bias_filler = None;
    }
}

fn non_input_layers(net: &NetParameter) -> Vec<LayerParameter> {
    net.layer.iter().filter(|l| !matches!(l.r#type(), "Data" | "Input")).cloned().collect()
}

fn input_dims(net: &NetParameter) -> Vec<i64> {
    if let Some(l) = net.layer.iter().find(|l| l.r#type() == "Input") {
        return l.input_param.as_ref().unwrap().shape[0].dim.clone();
    }
    net.input_shape.first().map(|s| s.dim.clone()).expect("an input shape")
}

fn mnist_paths(s: &str) -> String {
    match s {
        "examples/mnist/mnist_train_lmdb" | "lmdb/fmnist_train_lmdb" => "data/mnist/train_lmdb".into(),
        "examples/mnist/mnist_test_lmdb" | "lmdb/fmnist_test_lmdb" => "data/mnist/test_lmdb".into(),
        other => panic!("unexpected source {other}"),
    }
}

#[test]
fn base_nets_equal_caffes() {
    let bvlc = |rel: &str| read_net(&fixture("bvlc").join(rel));
    let ours = |f: &str, file: &str| read_net(&model(f, file));

    let mut lenet = bvlc("examples/mnist/lenet_train_test.prototxt");
    set_sources(&mut lenet, mnist_paths);
    assert_eq!(ours("lenet", "train_val.prototxt"), lenet, "models/lenet is BVLC's LeNet");
    for f in ["lenet10_plain", "lenet10_gauss"] {
        let mut reference = read_net(&fixture("models").join(format!("{f}.prototxt")));
        set_sources(&mut reference, mnist_paths);
        assert_eq!(ours(f, "train_val.prototxt"), reference, "models/{f} is caffe-ref's LeNet(10)");
    }

    assert_eq!(ours("alexnet", "train_val.prototxt"), bvlc("models/bvlc_alexnet/train_val.prototxt"));
    assert_eq!(ours("alexnet", "deploy.prototxt"), bvlc("models/bvlc_alexnet/deploy.prototxt"));
    let mut case1 = ours("alexnet_reg_case1", "train_val.prototxt");
    case1.name = Some("AlexNet".into());
    assert_eq!(case1, ours("alexnet", "train_val.prototxt"), "Table 7 case 1 is AlexNet");
    let case2 = ours("alexnet_reg_case2", "train_val.prototxt");
    let types = |n: &NetParameter| n.layer.iter().map(|l| l.r#type().to_string()).collect::<Vec<_>>();
    assert_eq!(types(&case2).iter().filter(|t| *t == "Dropout").count(), 1);
    assert!(case2.layer.iter().any(|l| l.name() == "drop6") && !case2.layer.iter().any(|l| l.name() == "drop7"));

    // cifar10_full: master's layers (caffe-ref ran them with an Input layer).
    let full = read_net(&fixture("models/cifar10_full_train_test_input.prototxt"));
    let c3 = ours("cifar10_3layer", "train_val.prototxt");
    assert_eq!(non_input_layers(&c3), non_input_layers(&full), "models/cifar10_3layer is cifar10_full");
    let sources: Vec<&str> = c3.layer.iter().filter_map(|l| l.data_param.as_ref().map(|d| d.source())).collect();
    assert_eq!(sources, ["examples/cifar10/cifar10_train_lmdb", "examples/cifar10/cifar10_test_lmdb"]);

    // Deploys: BVLC's layers without fillers, same input shape.
    for (f, reference) in
        [("lenet", "examples/mnist/lenet.prototxt"), ("cifar10_3layer", "examples/cifar10/cifar10_full.prototxt")]
    {
        let d = ours(f, "deploy.prototxt");
        let r = bvlc(reference);
        let mut rl = non_input_layers(&r);
        rl.iter_mut().for_each(strip_fillers);
        assert_eq!(non_input_layers(&d), rl, "models/{f}/deploy.prototxt vs {reference}");
        assert_eq!(input_dims(&d), input_dims(&r));
    }
}

/// VGG16+DropIn uses VGG_ILSVRC_16_layers' layers (so its weights load), VGG8
/// the first conv of each stage; bottoms, fillers and multipliers aside.
#[test]
fn vgg_nets_use_vgg16_layers() {
    let reference = read_net(&fixture("models/vgg16_deploy.prototxt"));
    let key = |l: &LayerParameter| {
        let mut l = l.clone();
        strip_fillers(&mut l);
        l.param.clear();
        l.bottom.clear();
        l
    };
    let vgg16: Vec<LayerParameter> = non_input_layers(&reference).iter().map(key).collect();
    let deploy16 = read_net(&model("vgg16_dropin", "deploy.prototxt"));
    let ours16: Vec<LayerParameter> =
        non_input_layers(&deploy16).iter().filter(|l| l.r#type() != "DropIn").map(key).collect();
    assert_eq!(ours16, vgg16);
    assert_eq!(input_dims(&deploy16)[1..], input_dims(&reference)[1..]);

    let deploy8 = read_net(&model("vgg8", "deploy.prototxt"));
    let ours8: Vec<LayerParameter> = non_input_layers(&deploy8).iter().map(key).collect();
    let kept = |l: &LayerParameter| {
        let n = l.name();
        !(n.starts_with("conv") || n.starts_with("relu")) || n.ends_with("_1") || !n.contains('_')
    };
    let expected: Vec<LayerParameter> = vgg16.iter().filter(|l| kept(l)).cloned().collect();
    assert_eq!(ours8, expected);
    let convs = |n: &NetParameter| n.layer.iter().filter(|l| l.r#type() == "Convolution").count();
    assert_eq!((convs(&deploy8), convs(&deploy16)), (5, 13));
}

// ---------------------------------------------------------------------------
// Solvers.

/// A solver's hyper-parameters without the fields that name files and devices.
fn hyper(s: &SolverParameter) -> SolverParameter {
    SolverParameter {
        net: None,
        train_net: None,
        test_net: vec![],
        snapshot_prefix: None,
        solver_mode: None,
        snapshot_format: None,
        ..s.clone()
    }
}

#[test]
fn every_solver_parses_and_names_its_net() {
    let dir = repo().join("solvers");
    let solvers = prototxts(&dir);
    assert!(solvers.len() >= 29, "expected a solver per model and length, found {}", solvers.len());
    let mut used = BTreeSet::new();
    let bvlc = |rel: &str| read_solver(&fixture("bvlc").join(rel));
    let lenet = hyper(&bvlc("examples/mnist/lenet_solver.prototxt"));
    let alexnet = hyper(&bvlc("models/bvlc_alexnet/solver.prototxt"));
    let cifar = bvlc("examples/cifar10/cifar10_full_solver.prototxt");
    for p in &solvers {
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let stem = file.strip_suffix("_solver.prototxt").unwrap_or_else(|| panic!("{file}: name *_solver.prototxt"));
        let s = read_solver(p);
        let net_rel = s.net.clone().unwrap_or_else(|| panic!("{file}: no net"));
        let net_path = repo().join(&net_rel);
        assert!(net_path.exists(), "{file}: net {net_rel} does not exist");
        let net = read_net(&net_path);
        assert!(used.insert(net_rel.clone()), "{file}: {net_rel} is trained by two solvers");

        // <model>_d<L>: the net is models/<model>/… with dropin_length L.
        let (folder, length) = match stem.rsplit_once("_d").and_then(|(m, l)| Some((m, l.parse::<u32>().ok()?))) {
            Some((m, l)) => (m, Some(l)),
            None => (stem, None),
        };
        assert!(net_rel.starts_with(&format!("models/{folder}/train_val")), "{file}: net {net_rel}");
        let gradual = dropin_length(&net).filter(|&l| l > 0);
        assert_eq!(gradual, length, "{file}: the net's dropin_length");
        assert_eq!(s.snapshot_prefix(), format!("snapshots/{stem}"), "{file}");

        let expected_mode = if is_small(folder) { "CPU" } else { "GPU" };
        assert_eq!(format!("{:?}", s.solver_mode()).to_uppercase(), expected_mode, "{file}: solver_mode");
        if folder.starts_with("lenet") {
            assert_eq!(hyper(&s), lenet, "{file}: Caffe's lenet_solver");
        } else if folder.starts_with("alexnet") {
            assert_eq!(hyper(&s), alexnet, "{file}: Caffe's bvlc_alexnet solver");
        } else if folder.starts_with("cifar") {
            let got = (s.base_lr(), s.momentum(), s.weight_decay(), s.test_interval(), s.test_iter.clone());
            let want = (
                cifar.base_lr(),
                cifar.momentum(),
                cifar.weight_decay(),
                cifar.test_interval(),
                cifar.test_iter.clone(),
            );
            assert_eq!(got, want, "{file}: Caffe's cifar10_full_solver");
            assert_eq!(
                (s.lr_policy(), s.stepvalue.clone(), s.gamma(), s.max_iter()),
                ("multistep", vec![60000, 65000], 0.1, 70000)
            );
        } else {
            assert_eq!((s.base_lr(), s.iter_size(), s.max_iter()), (0.01, 8, 370000), "{file}: VGG settings");
        }
        if let Some(l) = length {
            assert!((l as i32) < s.max_iter(), "{file}: the ramp must end before training does");
        }
    }
    // Every net file of every model is trained by some solver.
    for f in model_folders() {
        for p in prototxts(&repo().join("models").join(&f)) {
            let rel = format!("models/{f}/{}", p.file_name().unwrap().to_string_lossy());
            if !rel.ends_with("deploy.prototxt") {
                assert!(used.contains(&rel), "no solver trains {rel}");
            }
        }
    }
}
