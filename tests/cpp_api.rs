//! Caffe's C++ interface (`cpp/include/caffe/caffe.hpp` over libcaffe.so): a
//! C++ program written as Caffe's deployment examples are
//! (`tests/fixtures/cpp/net_api.cpp`) compiles against the header, links
//! `-lcaffe`, and runs BVLC Caffe's LeNet fixture: its outputs are Caffe's,
//! before and after a Reshape to a smaller batch; an output's memory stays
//! put across forwards and holds the latest values; a layer's blobs are its
//! weights (written through them, the next forward uses them); a mean file reads as
//! Caffe's; a missing net is an exception carrying the one-line error.
use std::process::Command;

use caffe_tch::net::tensor_values;

use crate::common::{self, caffe_ref, read_npy};

fn raw(path: &std::path::Path, t: &tch::Tensor) {
    let bytes: Vec<u8> = tensor_values(t).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_cpp_program_against_caffe_hpp_runs_caffe_lenet() {
    let lib_dir = common::repo().join("target/release");
    if !lib_dir.join("libcaffe.so").exists() {
        skip!("{} has no libcaffe.so (make build makes it)", lib_dir.display());
    }
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("net_api");
    let compiled = Command::new("c++")
        // glog's stand-in, whether or not this machine has glog (the
        // program would then link -lglog, as Caffe's programs do).
        .args(["-std=c++17", "-O1", "-DCAFFE_TCH_NO_GLOG", "-o"])
        .arg(&program)
        .arg(common::fixture("cpp/net_api.cpp"))
        .arg("-I")
        .arg(common::repo().join("cpp/include"))
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lcaffe")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .output();
    let compiled = match compiled {
        Ok(o) => o,
        Err(e) => skip!("no C++ compiler (c++: {e})"),
    };
    assert!(compiled.status.success(), "{}", String::from_utf8_lossy(&compiled.stderr));

    let fixture = caffe_ref("fixtures/lenet");
    let data = read_npy(&fixture.join("blobs/data.npy"));
    let labels = read_npy(&fixture.join("blobs/label.npy"));
    let ip2 = read_npy(&fixture.join("blobs/ip2.npy"));
    let caffe_loss = read_npy(&fixture.join("blobs/loss.npy")).double_value(&[]);
    raw(&dir.path().join("data.raw"), &data);
    raw(&dir.path().join("labels.raw"), &labels);
    let mean = caffe_ref("extra/mean/fmnist_train_mean.binaryproto");
    let small = 7i64;
    let out = Command::new(&program)
        .arg(fixture.join("net.prototxt"))
        .arg(fixture.join("weights.caffemodel"))
        .arg(dir.path().join("data.raw"))
        .arg(dir.path().join("labels.raw"))
        .arg(dir.path().join("out.raw"))
        .arg(small.to_string())
        .arg(&mean)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("inputs 2 outputs 2 input 100x1x28x28"), "{stdout}");
    assert!(stdout.contains("first data has conv1 1 has blob pool2 1 has blob nothing 0"), "{stdout}");
    assert!(stdout.contains("output accuracy count 1") && stdout.contains("output loss count 1"), "{stdout}");
    assert!(stdout.contains(&format!("ip2 after reshape {small}x10 ({small} 10 ({}))", small * 10)), "{stdout}");
    assert!(stdout.contains("same memory 1 new values 1"), "{stdout}");

    let loss: f64 = stdout.lines().find_map(|l| l.strip_prefix("loss ")).unwrap().parse().unwrap();
    assert!((loss - caffe_loss).abs() <= 1e-4 * (1.0 + caffe_loss.abs()), "loss {loss} against Caffe's {caffe_loss}");
    let bytes = std::fs::read(dir.path().join("out.raw")).unwrap();
    let values: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(values.len() as i64, 100 * 10 + small * 10);
    let full = tch::Tensor::from_slice(&values[..1000]).reshape([100, 10]);
    common::assert_close("ip2, batch 100", &full, &ip2, 1e-4);
    let part = tch::Tensor::from_slice(&values[1000..]).reshape([small, 10]);
    common::assert_close("ip2 after Reshape", &part, &ip2.narrow(0, 0, small), 1e-4);

    let npy_mean = read_npy(&caffe_ref("extra/mean/fmnist_train_mean.npy"));
    let want = npy_mean.to_kind(tch::Kind::Double).sum(tch::Kind::Double).double_value(&[]);
    let line = stdout.lines().find(|l| l.starts_with("mean ")).unwrap();
    assert!(line.starts_with("mean 1x28x28 sum "), "{line}");
    let sum: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((sum - want).abs() <= 1e-3 * want.abs(), "mean sum {sum} against {want}");

    assert!(stdout.contains("conv1 Convolution 20 1 5 5 (500) params 8 layers"), "{stdout}");
    assert!(stdout.contains("ip2 after weights written 0.5 0.5"), "{stdout}");

    let error = stdout.lines().find(|l| l.starts_with("error ")).unwrap();
    common::assert_one_line_error(error, &["no_such_net.prototxt"]);
}
