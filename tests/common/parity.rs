//! The parity fixtures (tests/fixtures/caffe-ref/fixtures/<net>/, written by
//! pycaffe; see tests/fixtures/caffe-ref/README.md): a manifest.json naming the
//! weights, the inputs, and the blobs and parameters Caffe recorded.
use std::path::Path;

use caffe_tch::net::Net;
use caffe_tch::proto::caffe::Phase;
use caffe_tch::proto::text::TextOptions;
use serde_json::Value;

use super::{net_state, read_npy, test_device};

pub fn manifest(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

/// Builds the net for `phase` on the test device, loads the fixture's weights
/// (the manifest's, else `weights.caffemodel` beside it or in the folder above)
/// and inputs, runs forward, and backward when asked (recording every blob's
/// diff, which runs each layer on its own).
pub fn run_fixture(dir: &Path, prototxt: &Path, phase: Phase, backward: bool) -> (Net, Value) {
    let (mut net, m) = load_fixture(dir, prototxt, phase);
    if backward {
        net.record_blob_diffs(true);
        net.forward().expect("forward");
        net.backward_with_blob_diffs().expect("backward");
    } else {
        net.forward_inference().expect("forward");
    }
    (net, m)
}

/// The TRAIN net of `run_fixture`, one forward and backward as the solver's
/// step runs them (no blob diffs: in-place chains may run as one layer).
pub fn run_fixture_step(dir: &Path, prototxt: &Path) -> (Net, Value) {
    let (mut net, m) = load_fixture(dir, prototxt, Phase::Train);
    net.forward().expect("forward");
    net.backward().expect("backward");
    (net, m)
}

fn load_fixture(dir: &Path, prototxt: &Path, phase: Phase) -> (Net, Value) {
    let m = manifest(dir);
    let mut net =
        Net::from_file(prototxt, &net_state(phase), TextOptions::default(), test_device()).expect("build net");
    let weights = dir.join(m["weights"].as_str().unwrap_or("weights.caffemodel"));
    let weights = if weights.exists() { weights } else { dir.parent().unwrap().join("weights.caffemodel") };
    net.load_weights(&weights).expect("load weights");
    for input in m["inputs"].as_array().expect("inputs") {
        let name = input.as_str().unwrap();
        let t = read_npy(&dir.join("blobs").join(format!("{name}.npy")));
        net.set_input(name, &t).expect("set input");
    }
    (net, m)
}
