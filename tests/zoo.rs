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
