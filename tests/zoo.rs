//! Deploy nets from outside BVLC Caffe's own tree, as their authors published
//! them (tests/fixtures/zoo/README.md names each file's source and licence):
//! model-zoo classifiers, and detectors of the SSD, py-faster-rcnn and
//! MobileNet-YOLO lines. Each parses, upgrades (V1 input fields, the forks'
//! Pooling `ceil_mode`), builds at its declared input shape and runs a forward
//! with its fillers' weights to outputs of the shapes its architecture gives;
//! `caffe summarize` reads the folder, label map included.
use std::path::PathBuf;
use std::process::Command;

use caffe_tch::net::Net;
use caffe_tch::proto::caffe::Phase;
use tch::{Device, Kind, Tensor};

use crate::common::{self, rng_exclusive};

fn zoo(file: &str) -> PathBuf {
    common::fixture(&format!("zoo/{file}"))
}

/// (file, its outputs and their shapes; None: an axis whose length the
/// detections decide).
type Expected = (&'static str, &'static [(&'static str, &'static [Option<i64>])]);

const NETS: &[Expected] = &[
    ("resnet50_kaiminghe.prototxt", &[("prob", &[Some(1), Some(1000)])]),
    ("se_resnet50.prototxt", &[("prob", &[Some(1), Some(1000)])]),
    ("resnet10_cvgj.prototxt", &[("prob", &[Some(1), Some(1000)])]),
    ("densenet121_soeaver.prototxt", &[("prob", &[Some(1), Some(1000)])]),
    ("mobilenet_v2.prototxt", &[("prob", &[Some(1), Some(1000), Some(1), Some(1)])]),
    ("squeezenet_v1.1.prototxt", &[("prob", &[Some(10), Some(1000), Some(1), Some(1)])]),
    ("mobilenet_ssd.prototxt", &[("detection_out", &[Some(1), Some(1), None, Some(7)])]),
    ("mobilenet_yolov3_lite.prototxt", &[("detection_out", &[Some(1), Some(1), None, Some(7)])]),
    // py-faster-rcnn's proposal layer is a Python one; without its module
    // (this test binary has no Python) it runs as the native Proposal layer,
    // which keeps py-faster-rcnn's 300 regions per image at test time.
    (
        "faster_rcnn_resnet18_soeaver.prototxt",
        &[("cls_prob", &[Some(300), Some(21)]), ("bbox_pred", &[Some(300), Some(84)])],
    ),
];

#[test]
fn zoo_deploy_nets_build_and_run_a_forward() {
    let state = common::net_state(Phase::Test);
    for (file, outputs) in NETS {
        let _rng = rng_exclusive();
        tch::manual_seed(11);
        let mut net = Net::from_file(&zoo(file), &state, Default::default(), Device::Cpu)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        // Statistics a trained BatchNorm could hold (its fillers leave them
        // zero, and a variance of 0 scales by 1/sqrt(eps) at every layer).
        let batch_norms: Vec<String> =
            net.layer_params().iter().filter(|l| l.r#type() == "BatchNorm").map(|l| l.name().to_string()).collect();
        for name in &batch_norms {
            let blobs = net.layer_blobs(name).unwrap_or_default();
            tch::no_grad(|| {
                for b in &blobs[1..] {
                    drop(b.shallow_clone().f_fill_(1.0).unwrap());
                }
            });
        }
        let data = net.blob_shape("data").unwrap_or_else(|| panic!("{file}: no data blob")).clone();
        net.set_input("data", &Tensor::randn(data.as_slice(), (Kind::Float, Device::Cpu))).unwrap();
        if net.blob_shape("im_info").is_some() {
            net.set_input("im_info", &Tensor::from_slice(&[600f32, 600., 1.]).view([1, 3])).unwrap();
        }
        net.forward().unwrap_or_else(|e| panic!("{file}: {e}"));
        for (blob, want) in *outputs {
            let value = net.blob(blob).unwrap_or_else(|| panic!("{file}: no blob {blob}"));
            let shape = value.size();
            let fits = shape.len() == want.len() && shape.iter().zip(*want).all(|(d, w)| w.is_none_or(|w| w == *d));
            assert!(fits, "{file}: {blob} has shape {shape:?}, its architecture gives {want:?}");
            let finite = value.isfinite().all().int64_value(&[]) == 1;
            assert!(finite, "{file}: {blob} holds NaN or infinite values");
        }
    }
}

#[test]
fn caffe_summarize_reads_the_zoo_folder() {
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["summarize"])
        .arg(common::fixture("zoo"))
        .output()
        .expect("spawn caffe");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("10 files parsed and upgraded"), "{log}");
    assert!(log.contains("mobilenet_ssd_labelmap.prototxt: label map of 6 items"), "{log}");
    let densenet = log.lines().find(|l| l.contains("densenet121_soeaver.prototxt")).unwrap_or_else(|| panic!("{log}"));
    assert!(densenet.contains("Pooling ceil_mode -> round_mode"), "{densenet}");
}

/// Statistics and scales a trained net could hold, for every BatchNorm and Scale.
fn plausible_statistics(net: &Net) {
    let layers: Vec<(String, String)> =
        net.layer_params().iter().map(|l| (l.name().to_string(), l.r#type().to_string())).collect();
    tch::no_grad(|| {
        for (name, ty) in &layers {
            let blobs = net.layer_blobs(name).unwrap_or_default();
            let fill = |t: &Tensor, v: Tensor| t.shallow_clone().f_copy_(&v.to_kind(t.kind())).unwrap();
            let like = |t: &Tensor| Tensor::rand(t.size(), (Kind::Float, Device::Cpu));
            match ty.as_str() {
                "BatchNorm" => {
                    fill(blobs[0], (like(blobs[0]) - 0.5) * 0.2);
                    fill(blobs[1], like(blobs[1]) + 0.5);
                    fill(blobs[2], Tensor::ones([1], (Kind::Float, Device::Cpu)));
                }
                "Scale" => {
                    for b in &blobs {
                        fill(b, like(b) * 0.5 + 0.75);
                    }
                }
                _ => {}
            }
        }
    });
}

/// A forward whose blobs are read (pycaffe's `net.forward()` on a deploy
/// net) runs a BatchNorm that writes a blob of its own, with the Scale and
/// ReLU in place after it, as one batch norm and a ReLU (MobileNet v2's
/// `conv1` → `conv1/bn`, DenseNet's after each Concat); every blob equals the
/// forward that runs each layer on its own (recording blob diffs folds
/// nothing), and the BatchNorm's statistics changed in place are followed.
#[test]
fn readable_forward_runs_batch_norm_scale_relu_as_one_batch_norm() {
    let state = common::net_state(Phase::Test);
    let _rng = rng_exclusive();
    tch::manual_seed(5);
    let mut net = Net::from_file(&zoo("mobilenet_v2.prototxt"), &state, Default::default(), Device::Cpu).unwrap();
    plausible_statistics(&net);
    net.set_input("data", &Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu))).unwrap();
    let names: Vec<String> = net.blob_names().iter().map(|b| b.to_string()).collect();
    let last = net.layer_names().len() - 1;
    let compare = |net: &mut Net, what: &str| {
        net.forward_inference().unwrap();
        let folded: Vec<Tensor> = names.iter().map(|n| net.blob(n).unwrap().detach().copy()).collect();
        net.record_blob_diffs(true);
        net.forward_from_to(0, last, true).unwrap();
        net.record_blob_diffs(false);
        for (name, f) in names.iter().zip(&folded) {
            let (d, max) = common::max_abs_diff(f, &net.blob(name).unwrap().detach());
            assert!(d <= 1e-5 * (1.0 + max), "{what}: blob {name}: max |Δ| {d:.3e} (max {max:.3e})");
        }
    };
    compare(&mut net, "as filled");
    tch::no_grad(|| {
        let mean_sum = net.layer_blobs("conv1/bn").unwrap()[0].shallow_clone();
        mean_sum.shallow_clone().f_add_scalar_(0.7).map(drop).unwrap();
    });
    compare(&mut net, "after conv1/bn's mean changed");
}

/// A forward whose blobs only the outputs are read of (`caffe test`, `caffe
/// time`) folds BatchNorm into the convolution before it even where the
/// BatchNorm writes a blob of its own, as MobileNet v2's do (conv1 →
/// conv1/bn): the outputs are the unfolded forward's; a forward whose blobs
/// are read (pycaffe, `caffe forward`) keeps conv1's own value; and a
/// convolution whose top another layer reads too keeps it as well.
#[test]
fn outputs_only_forward_folds_batch_norms_that_write_their_own_blob() {
    let state = common::net_state(Phase::Test);
    let _rng = rng_exclusive();
    tch::manual_seed(3);
    let mut net = Net::from_file(&zoo("mobilenet_v2.prototxt"), &state, Default::default(), Device::Cpu).unwrap();
    plausible_statistics(&net);
    net.set_input("data", &Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu))).unwrap();
    let value = |net: &Net, b: &str| net.blob(b).unwrap().detach().copy();
    net.forward_inference().unwrap();
    let (prob, conv1, conv1_bn) = (value(&net, "prob"), value(&net, "conv1"), value(&net, "conv1/bn"));
    assert!(conv1.ne_tensor(&conv1_bn).any().int64_value(&[]) == 1, "conv1 keeps its own value");
    net.read_outputs_only();
    net.forward_inference().unwrap();
    let (d, max) = common::max_abs_diff(&value(&net, "prob"), &prob);
    assert!(d <= 1e-5 * (1.0 + max), "prob: max |Δ| {d:.3e}");
    let (d, max) = common::max_abs_diff(&value(&net, "conv1/bn"), &conv1_bn);
    assert!(d <= 1e-5 * (1.0 + max), "conv1/bn: max |Δ| {d:.3e}");
    // conv1 was not computed on its own: the chain wrote it (nobody reads it).
    assert!(value(&net, "conv1").equal(&value(&net, "conv1/bn")), "the chain was not folded");

    // A second reader of the convolution's top (through the Split Caffe
    // inserts): that top keeps its value.
    let text = "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
        layer { name: 'conv' type: 'Convolution' bottom: 'x' top: 'c' convolution_param { num_output: 4 kernel_size: 3
          weight_filler { type: 'gaussian' std: 0.3 } } }
        layer { name: 'bn' type: 'BatchNorm' bottom: 'c' top: 'c/bn' batch_norm_param { use_global_stats: true } }
        layer { name: 'scale' type: 'Scale' bottom: 'c/bn' top: 'c/bn' scale_param { bias_term: true } }
        layer { name: 'sum' type: 'Eltwise' bottom: 'c' bottom: 'c/bn' top: 'y' }";
    let mut net = common::net(text, "two_readers.prototxt", Phase::Test).unwrap();
    plausible_statistics(&net);
    net.set_input("x", &Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu))).unwrap();
    net.forward_inference().unwrap();
    let (y, c) = (value(&net, "y"), value(&net, "c"));
    net.read_outputs_only();
    net.forward_inference().unwrap();
    let (d, max) = common::max_abs_diff(&value(&net, "y"), &y);
    assert!(d <= 1e-5 * (1.0 + max), "y: max |Δ| {d:.3e}");
    assert!(value(&net, "c").equal(&c), "c, read by the sum, keeps its own value");
}
