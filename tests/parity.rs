//! Golden parity with BVLC Caffe: every blob of each reference net after one
//! forward pass (and, where recorded, every gradient) matches Caffe's within
//! max |Δ| ≤ 1e-4·(1 + max|ref|). The references were written by pycaffe; see
//! tests/fixtures/caffe-ref/README.md.
use std::path::Path;

use caffe_tch::net::Net;
use caffe_tch::proto::caffe::Phase;
use serde_json::Value;

use crate::common;
use crate::common::parity::run_fixture;
use crate::common::{assert_close, caffe_ref, read_npy};

fn check_blobs(net: &Net, dir: &Path, m: &Value) -> usize {
    let mut n = 0;
    for b in m["blobs"].as_array().expect("blobs") {
        let name = b["name"].as_str().unwrap();
        let reference = read_npy(&dir.join(b["file"].as_str().unwrap()));
        let ours = net.blob(name).unwrap_or_else(|| panic!("blob {name} missing"));
        assert_close(&format!("{} blob {name}", dir.display()), ours, &reference, common::parity_tolerance());
        n += 1;
    }
    n
}

fn check_params(net: &Net, dir: &Path, m: &Value) {
    for p in m["params"].as_array().expect("params") {
        let layer = p["layer"].as_str().unwrap();
        let blobs = net.layer_blobs(layer).unwrap_or_else(|| panic!("layer {layer}"));
        for (j, f) in p["files"].as_array().unwrap().iter().enumerate() {
            let reference = read_npy(&dir.join(f.as_str().unwrap()));
            assert_close(&format!("{layer} param {j}"), blobs[j], &reference, common::parity_tolerance());
        }
    }
}

fn forward_fixture(name: &str) {
    let dir = caffe_ref(&format!("fixtures/{name}"));
    let (net, m) = run_fixture(&dir, &dir.join("net.prototxt"), Phase::Test, false);
    check_params(&net, &dir, &m);
    let n = check_blobs(&net, &dir, &m);
    assert!(n >= 5, "{name}: only {n} blobs compared");
}

#[test]
fn lenet_forward_matches_caffe() {
    let _rng = common::rng_shared(); // the net's fillers, before the weights load
    forward_fixture("lenet");
}

#[test]
fn lenet_train_backward_matches_caffe() {
    let _rng = common::rng_shared(); // the net's fillers, before the weights load
    let dir = caffe_ref("fixtures/lenet/train_backward");
    let (net, m) = run_fixture(&dir, &caffe_ref("fixtures/lenet/net.prototxt"), Phase::Train, true);
    check_blobs(&net, &dir, &m);
    // Parameter gradients.
    for p in m["params"].as_array().expect("params") {
        let layer = p["layer"].as_str().unwrap();
        for j in 0..2 {
            let reference = read_npy(&dir.join(format!("params/{layer}_{j}_diff.npy")));
            let ours = net.layer_blob_diff(layer, j).unwrap();
            assert_close(&format!("{layer} param {j} diff"), &ours, &reference, common::parity_tolerance());
        }
    }
    // Blob gradients.
    let diffs = dir.join("blob_diffs");
    for entry in std::fs::read_dir(&diffs).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "data" || name == "label" || name == "loss" {
            continue; // inputs get no diff without force_backward; the loss diff is its weight
        }
        let reference = read_npy(&path);
        let ours = net.blob_diff(&name).unwrap_or_else(|| panic!("no diff for {name}"));
        assert_close(&format!("blob {name} diff"), ours, &reference, common::parity_tolerance());
    }
}
