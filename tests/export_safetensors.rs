//! `caffe export -format safetensors` and `-weights x.safetensors`: both
//! namings read back to the same net, `caffe test` prints the same scores as
//! with the .caffemodel, a PyTorch fine-tune of the exported LeNet loads back
//! with the loss PyTorch measured, and bad files fail naming file, key and shapes.
use std::path::Path;
use std::process::{Command, Output};

use caffe_tch::export::verify::NamedTensors;
use caffe_tch::net::weights::safetensors::{read, to_bytes};
use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::{LayerParameter, NetParameter, Phase};
use caffe_tch::proto::text::{parse_str, TextOptions};
use tch::{Device, Tensor};

use crate::common::export::python_with_torch;
use crate::common::{assert_one_line_error, caffe_ref, net_state, SeededInputs};

fn caffe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caffe")).env_remove("GLOG_log_dir").args(args).output().expect("spawn caffe")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", text(o));
    text(o)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

const TINY: &str = r#"name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 5 } }
"#;

fn blob(shape: &[i64], seed: u64) -> caffe_tch::proto::caffe::BlobProto {
    let t = SeededInputs::new(seed).normal(shape);
    binary::make_blob(shape, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())
}

/// TINY's weights, with BatchNorm statistics under a scale factor of 3.
fn tiny_caffemodel(path: &Path) {
    let layer = |name: &str, blobs| LayerParameter { name: Some(name.into()), blobs, ..Default::default() };
    let mean = binary::make_blob(&[4], vec![0.3, -0.6, 0.9, 1.5]);
    let var = binary::make_blob(&[4], vec![3.0, 1.5, 0.6, 9.0]);
    let net = NetParameter {
        layer: vec![
            layer("conv", vec![blob(&[4, 3, 3, 3], 1), blob(&[4], 2)]),
            layer("bn", vec![mean, var, binary::make_blob(&[1], vec![3.0])]),
            layer("sc", vec![blob(&[4], 3), blob(&[4], 4)]),
            layer("ip", vec![blob(&[5, 64], 5), blob(&[5], 6)]),
        ],
        ..Default::default()
    };
    binary::write_message(path, &net).unwrap();
}

fn tiny_forward(model: &Path, weights: &Path) -> Tensor {
    let text = std::fs::read_to_string(model).unwrap();
    let param = parse_str::<NetParameter>(&text, "tiny", TextOptions::default()).unwrap().message;
    let mut net = Net::new(&param, &net_state(Phase::Test), NetSource::new("tiny"), Device::Cpu).unwrap();
    net.load_weights(weights).unwrap();
    net.set_input("data", &SeededInputs::new(9).normal(&[2, 3, 6, 6])).unwrap();
    net.forward_inference().unwrap();
    net.blob("ip").unwrap().copy()
}

#[test]
fn both_namings_read_back_to_the_caffemodel_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny.prototxt");
    std::fs::write(&model, TINY).unwrap();
    let caffemodel = tmp.path().join("tiny.caffemodel");
    tiny_caffemodel(&caffemodel);
    let want = tiny_forward(&model, &caffemodel);
    for names in ["pytorch", "caffe"] {
        let out = tmp.path().join(format!("{names}.safetensors"));
        let args = ["export", "-model", &s(&model), "-weights", &s(&caffemodel), "-format", "safetensors"];
        ok(&caffe(&[&args[..], &["-out", &s(&out), "-names", names]].concat()), "export");
        let got = tiny_forward(&model, &out);
        assert_eq!(
            Vec::<f32>::try_from(got.flatten(0, -1)).unwrap(),
            Vec::<f32>::try_from(want.flatten(0, -1)).unwrap()
        );
        let file = read(&out).unwrap();
        assert_eq!(file.metadata["format"], "pt");
        assert_eq!(file.metadata["caffe_tch_names"], names);
        assert!(file.metadata["prototxt"].contains("name: \"bn\""), "{:?}", file.metadata);
        // The header is a JSON object: its keys come back sorted.
        let mut keys: Vec<&str> = file.tensors.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        let get = |k: &str| Vec::<f32>::try_from(&file.tensors.iter().find(|(n, _)| n == k).unwrap().1).unwrap();
        if names == "pytorch" {
            let expected = [
                "bn.running_mean",
                "bn.running_var",
                "conv.bias",
                "conv.weight",
                "ip.bias",
                "ip.weight",
                "sc.bias",
                "sc.weight",
            ];
            assert_eq!(keys, expected);
            // Statistics divided by the scale factor 3.
            assert_eq!(
                get("bn.running_mean"),
                vec![
                    0.3f32 * (1.0 / 3.0) as f32,
                    -0.6 * (1.0 / 3.0) as f32,
                    0.9 * (1.0 / 3.0) as f32,
                    1.5 * (1.0 / 3.0) as f32
                ]
            );
            let third = (1.0f64 / 3.0) as f32;
            assert_eq!(get("bn.running_var"), vec![3.0f32 * third, 1.5 * third, 0.6 * third, 9.0 * third]);
        } else {
            assert_eq!(keys, ["bn.0", "bn.1", "bn.2", "conv.0", "conv.1", "ip.0", "ip.1", "sc.0", "sc.1"]);
            assert_eq!(get("bn.2"), vec![3.0f32]);
            assert_eq!(get("bn.0"), vec![0.3f32, -0.6, 0.9, 1.5]);
        }
    }
}

#[test]
fn unknown_missing_and_mismatched_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny.prototxt");
    std::fs::write(&model, TINY).unwrap();
    let caffemodel = tmp.path().join("tiny.caffemodel");
    tiny_caffemodel(&caffemodel);
    let good = tmp.path().join("good.safetensors");
    ok(
        &caffe(&[
            "export",
            "-model",
            &s(&model),
            "-weights",
            &s(&caffemodel),
            "-format",
            "safetensors",
            "-out",
            &s(&good),
        ]),
        "export",
    );
    let tensors = read(&good).unwrap().tensors;
    let write = |name: &str, edit: &dyn Fn(&mut NamedTensors)| {
        let mut t: NamedTensors = tensors.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
        edit(&mut t);
        let p = tmp.path().join(name);
        std::fs::write(&p, to_bytes(&t, &Default::default()).unwrap()).unwrap();
        p
    };
    let load = |w: &Path| {
        caffe(&[
            "export",
            "-model",
            &s(&model),
            "-weights",
            &s(w),
            "-format",
            "safetensors",
            "-out",
            &s(&tmp.path().join("o.safetensors")),
        ])
    };
    // An unknown key is logged and ignored, as Caffe does for unknown layers.
    let extra = write("extra.safetensors", &|t| {
        t.push(("head.weight".into(), Tensor::ones([2], (tch::Kind::Float, Device::Cpu))))
    });
    let all = ok(&load(&extra), "unknown key");
    assert!(all.contains("Ignoring source tensor head.weight"), "{all}");
    // A layer's missing tensor names the file, the key and the shape it needed.
    let missing = write("missing.safetensors", &|t| t.retain(|(k, _)| k != "conv.bias"));
    let o = load(&missing);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).trim().lines().last().unwrap_or_default().to_string();
    assert_one_line_error(&err, &["missing.safetensors", "conv.bias", "[4]", "conv", "Convolution"]);
    // A shape mismatch names the key and both shapes.
    let wrong = write("wrong.safetensors", &|t| {
        for (k, v) in t.iter_mut() {
            if k == "ip.weight" {
                *v = Tensor::zeros([5, 63], (tch::Kind::Float, Device::Cpu));
            }
        }
    });
    let o = load(&wrong);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).trim().lines().last().unwrap_or_default().to_string();
    assert_one_line_error(&err, &["wrong.safetensors", "ip.weight", "[5, 63]", "[5, 64]"]);
}

/// Caffe's LeNet TEST net on the first images of the 2,000-image Fashion-MNIST LMDB.
fn lenet_test_net(dir: &Path, batch: usize) -> std::path::PathBuf {
    let lmdb = caffe_ref("lmdb/fmnist_train2k_lmdb");
    let text = format!(
        r#"name: "LeNet"
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 }} data_param {{ source: "{}" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param {{ num_output: 20 kernel_size: 5 stride: 1 }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param {{ num_output: 50 kernel_size: 5 stride: 1 }} }}
layer {{ name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param {{ num_output: 500 }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param {{ num_output: 10 }} }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"#,
        lmdb.display()
    );
    let p = dir.join("lenet_test.prototxt");
    std::fs::write(&p, text).unwrap();
    p
}

/// `caffe test`'s score lines (`accuracy = 0.9`, `loss = 0.3 (* 1 = 0.3 loss)`, per batch and final), without the log prefix.
fn score_lines(all: &str) -> Vec<String> {
    all.lines()
        .filter(|l| {
            l.contains("caffe.cpp") && (l.contains("accuracy =") || l.contains("loss =") || l.contains("Loss:"))
        })
        .map(|l| l.split_once("] ").map_or(l, |(_, r)| r).to_string())
        .collect()
}

fn final_score(lines: &[String], name: &str) -> f64 {
    let l = lines.iter().rev().find(|l| l.starts_with(&format!("{name} = "))).expect("final score line");
    l[name.len() + 3..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn caffe_test_scores_are_the_same_from_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = lenet_test_net(tmp.path(), 50);
    let caffemodel = caffe_ref("lenet_run/lenet_iter_5000.caffemodel");
    let test = |w: &Path| {
        score_lines(&ok(&caffe(&["test", "-model", &s(&model), "-weights", &s(w), "-iterations", "4"]), "caffe test"))
    };
    let want = test(&caffemodel);
    assert_eq!(want.len(), 4 * 2 + 3, "{want:?}");
    for names in ["pytorch", "caffe"] {
        let st = tmp.path().join(format!("lenet_{names}.safetensors"));
        let args = [
            "export",
            "-model",
            &s(&model),
            "-weights",
            &s(&caffemodel),
            "-format",
            "safetensors",
            "-names",
            names,
            "-out",
            &s(&st),
        ];
        ok(&caffe(&args), "export");
        assert_eq!(test(&st), want, "-names {names}");
    }
    eprintln!("caffe test from caffemodel and safetensors: {}", want[want.len() - 2..].join("; "));
}

/// Fine-tunes the exported LeNet for 100 SGD steps on the given batch and
/// saves the state_dict back with the same keys; prints the losses and accuracy.
const FINE_TUNE: &str = r#"
import json, sys
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, sys.argv[1])
import model

torch.manual_seed(0)
torch.set_num_threads(1)
net = model.load()
data = torch.from_numpy(np.load(sys.argv[2]))
label = torch.from_numpy(np.load(sys.argv[3]))

def scores():
    with torch.no_grad():
        logits = net(data=data, label=label, blobs=["ip2"])["ip2"]
    return F.cross_entropy(logits, label.long()).item(), (logits.argmax(1) == label.long()).float().mean().item()

before = scores()
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
for _ in range(100):
    opt.zero_grad()
    F.cross_entropy(net(data=data, label=label, blobs=["ip2"])["ip2"], label.long()).backward()
    opt.step()
after = scores()
save_file({k: v.contiguous() for k, v in net.state_dict().items()}, sys.argv[4])
print(json.dumps({"loss_before": before[0], "acc_before": before[1], "loss_after": after[0], "acc_after": after[1]}))
"#;

#[test]
fn a_pytorch_fine_tune_loads_back_into_caffe_test() {
    let py = match python_with_torch() {
        Ok(p) => p,
        Err(e) => skip!("{e}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let model = lenet_test_net(tmp.path(), 100);
    let caffemodel = caffe_ref("lenet_run/lenet_iter_5000.caffemodel");
    // The batch caffe test will see: the LMDB's first 100 images, as the Data layer transforms them.
    let (data, label) = {
        let text = std::fs::read_to_string(&model).unwrap();
        let param = parse_str::<NetParameter>(&text, "lenet", TextOptions::default()).unwrap().message;
        let mut net = Net::new(&param, &net_state(Phase::Test), NetSource::new("lenet"), Device::Cpu).unwrap();
        net.forward_inference().unwrap();
        let (d, l) = (tmp.path().join("data.npy"), tmp.path().join("label.npy"));
        net.blob("data").unwrap().write_npy(&d).unwrap();
        net.blob("label").unwrap().write_npy(&l).unwrap();
        (d, l)
    };
    let export = tmp.path().join("lenet_torch");
    let deploy = caffe_ref("fixtures/lenet/net.prototxt");
    ok(
        &caffe(&[
            "export",
            "-model",
            &s(&deploy),
            "-weights",
            &s(&caffemodel),
            "-format",
            "pytorch",
            "-out",
            &s(&export),
        ]),
        "export",
    );
    let tuned = tmp.path().join("tuned.safetensors");
    let o = Command::new(&py).arg("-c").arg(FINE_TUNE).args([&export, &data, &label, &tuned]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = |k: &str| r[k].as_f64().unwrap();
    let test = |w: &Path| {
        score_lines(&ok(&caffe(&["test", "-model", &s(&model), "-weights", &s(w), "-iterations", "1"]), "caffe test"))
    };
    let before = test(&caffemodel);
    let after = test(&tuned);
    let (loss_before, loss_after) = (final_score(&before, "loss"), final_score(&after, "loss"));
    let (acc_before, acc_after) = (final_score(&before, "accuracy"), final_score(&after, "accuracy"));
    eprintln!(
        "fine-tune: caffe test loss {loss_before} -> {loss_after} (PyTorch {} -> {}), accuracy {acc_before} -> {acc_after} (PyTorch {} -> {})",
        f("loss_before"), f("loss_after"), f("acc_before"), f("acc_after")
    );
    assert!(
        (loss_before - f("loss_before")).abs() <= 1e-4,
        "loss before: caffe {loss_before}, torch {}",
        f("loss_before")
    );
    assert!((loss_after - f("loss_after")).abs() <= 1e-4, "loss after: caffe {loss_after}, torch {}", f("loss_after"));
    assert!((acc_after - f("acc_after")).abs() <= 1e-6 && (acc_before - f("acc_before")).abs() <= 1e-6);
    // 100 steps on these very images: the loss falls well below the trained net's.
    assert!(loss_after < 0.5 * loss_before, "{loss_before} -> {loss_after}");
}
