//! Failures that must surface instead of turning into wrong data (issue #15,
//! "no silent loss"): each case once swallowed an error.
use caffe_tch::proto::caffe::Phase;
use tch::{Kind, Tensor};

use crate::common;

const NET: &str = r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 4 } }
"#;

/// A gradient that cannot be added to a parameter's diff (wrong shape) is an
/// error; it used to be dropped, and training went on with a wrong diff.
#[test]
fn a_gradient_that_cannot_be_added_is_an_error() {
    let mut net = common::net(NET, "net", Phase::Train).expect("net");
    let p = &mut net.learnable_params_mut()[0];
    let good = Tensor::ones([4, 3], (Kind::Float, tch::Device::Cpu));
    p.accumulate(&good).expect("a gradient of the right shape adds");
    p.accumulate(&good).expect("and again");
    assert_eq!(p.diff().sum(Kind::Double).double_value(&[]), 24.0, "two gradients of ones, 12 values each");
    let wrong = Tensor::ones([7], (Kind::Float, tch::Device::Cpu));
    let e = p.accumulate(&wrong).expect_err("a [7] gradient cannot be added to a [4, 3] diff");
    assert!(!e.to_string().is_empty());
    assert_eq!(p.diff().sum(Kind::Double).double_value(&[]), 24.0, "the diff is unchanged by the failed add");
}

/// Writing a net's weights reads every blob; the values written are the net's.
#[test]
fn a_caffemodel_holds_every_value_of_every_blob() {
    let net = common::net(NET, "net", Phase::Test).expect("net");
    let proto = net.to_proto(true).expect("every blob is readable");
    let ip = proto.layer.iter().find(|l| l.name() == "ip").expect("layer ip");
    assert_eq!(ip.blobs.len(), 2);
    assert_eq!(ip.blobs[0].data.len(), 12, "weights: 4 x 3 values");
    assert_eq!(ip.blobs[0].diff.len(), 12, "and their diff");
    assert_eq!(ip.blobs[1].data.len(), 4, "bias: 4 values");
}

/// A writer that fails half way leaves the previous file as it was and no
/// temporary file behind; the error names the file.
#[test]
fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weights.caffemodel");
    std::fs::write(&path, b"previous").expect("write");
    let e = caffe_tch::util::write_atomic_with(&path, |tmp| {
        std::fs::write(tmp, b"half of the new").expect("write half");
        Err(caffe_tch::Error::invalid(format!("{}: the disk is full", path.display())))
    })
    .expect_err("the writer failed");
    assert!(e.to_string().contains("weights.caffemodel"), "{e}");
    assert_eq!(std::fs::read(&path).expect("read"), b"previous");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["weights.caffemodel".to_string()], "a temporary file was left");
}

/// An HDF5 snapshot that cannot be written is an I/O error naming the file,
/// with nothing left behind.
#[test]
fn an_hdf5_weights_file_that_cannot_be_written_is_an_io_error() {
    let net = common::net(NET, "net", Phase::Test).expect("net");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing_folder/w.caffemodel.h5");
    let e = caffe_tch::net::weights::hdf5::write_model(&net, &path, false).expect_err("no such folder");
    assert!(e.to_string().contains("w.caffemodel.h5"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    let ok = dir.path().join("w.caffemodel.h5");
    caffe_tch::net::weights::hdf5::write_model(&net, &ok, true).expect("write");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "only the file itself");
}

/// A layer asking for more memory than the machine has fails while the net is
/// built, naming the layer and the blob, before anything is allocated.
#[test]
fn a_net_too_big_for_memory_fails_while_built_naming_the_blob() {
    let huge = r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 64 dim: 4096 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2000000000 } }
"#;
    let started = std::time::Instant::now();
    let e = common::net(huge, "huge.prototxt", Phase::Test).err().expect("too big").to_string();
    assert!(e.contains("layer 'fc'") && e.contains("top blob 'y'") && e.contains("memory limit"), "{e}");
    assert!(started.elapsed().as_secs() < 5, "the check came after an allocation attempt");
    let overflow = r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4611686018427387904 dim: 4 } } }
"#;
    let e = common::net(overflow, "overflow.prototxt", Phase::Test).err().expect("overflow").to_string();
    assert!(e.contains("more elements than fit in 64 bits"), "{e}");
}

/// `-max_memory` lowers the limit: LeNet's blobs do not fit in 1 MiB.
#[test]
fn max_memory_flag_limits_what_a_net_may_take() {
    let model = common::caffe_ref("fixtures/lenet/net.prototxt");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["time", "-iterations", "1", "-max_memory", "1M", "-model"])
        .arg(&model)
        .output()
        .expect("run caffe");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("memory limit is 1.0 MiB") && last.contains("net.prototxt") && last.contains("layer 'conv1'"),
        "{last}"
    );
    assert_eq!(caffe_tch::util::limits::parse_bytes("2G").expect("2G"), 2 << 30);
    assert!(caffe_tch::util::limits::parse_bytes("lots").is_err());
}

/// A weights file larger than the memory limit is refused before it is read.
#[test]
fn a_weights_file_over_the_limit_is_refused_before_reading() {
    let weights = common::caffe_ref("fixtures/lenet/weights.caffemodel");
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("upgraded.caffemodel");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["-max_memory", "1M", "upgrade_net_proto_binary"])
        .arg(&weights)
        .arg(&out_file)
        .output()
        .expect("run caffe");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("weights.caffemodel") && last.contains("over the memory limit"), "{last}");
    assert!(!out_file.exists());
}

/// Found by fuzzing: BatchNorm on a blob with a zero dimension divided by zero.
#[test]
fn batch_norm_on_an_empty_blob_is_the_identity() {
    let text = r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 0 dim: 3 dim: 3 } } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" }
"#;
    for phase in [Phase::Train, Phase::Test] {
        let mut net = common::net(text, "empty.prototxt", phase).expect("net");
        net.forward().expect("forward");
        assert_eq!(net.blob("y").expect("y").size(), [2, 0, 3, 3]);
    }
}

/// Found by fuzzing: Resize to more channels from a bottom with none divided by zero.
#[test]
fn resize_from_zero_channels_is_an_error() {
    let text = r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 0 dim: 2 dim: 2 } } }
layer { name: "r" type: "Resize" bottom: "x" top: "y" resize_param { channels: 3 } }
"#;
    let mut net = common::net(text, "resize.prototxt", Phase::Test).expect("net");
    let e = net.forward().expect_err("no channels to repeat").to_string();
    assert!(e.contains("layer 'r'") && e.contains("from a bottom with none"), "{e}");
}

/// Found by fuzzing: Concat of 0-axis blobs indexed an empty shape (a 0-axis
/// blob has no axis 0, as in Caffe's CanonicalAxisIndex).
#[test]
fn concat_of_scalars_is_an_error() {
    let text = r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { } } }
layer { name: "c" type: "Concat" bottom: "x" bottom: "x" top: "y" concat_param { axis: 0 } }
"#;
    let e = common::net(text, "concat.prototxt", Phase::Test).err().expect("no axis to concatenate").to_string();
    assert!(e.contains("layer 'c'") && e.contains("axis 0 out of range for a 0-D blob"), "{e}");
}

/// Found by fuzzing: a pooling pad and kernel far larger than the input
/// materialised gigabytes of padding; it is a clear error under the limit.
/// (Run as its own process: the limit is process-wide.)
#[test]
fn a_huge_pooling_window_is_an_error_not_an_oom() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("pool.prototxt");
    std::fs::write(
        &model,
        r#"layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 3 dim: 3 dim: 3 } } }
layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { stride: 19715 pad: 16476 kernel_size: 17409 } }
"#,
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["forward", "-max_memory", "1G", "-model"])
        .arg(&model)
        .arg("-out")
        .arg(dir.path().join("out"))
        .output()
        .expect("run caffe");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("layer 'p'") && last.contains("memory limit"), "{last}");
}

/// Found by fuzzing: Slice along axis 0 of a 0-axis blob indexed an empty shape.
#[test]
fn slice_of_a_scalar_is_an_error() {
    let text = r#"
layer { name: "x" type: "Input" top: "x" input_param { shape { } } }
layer { name: "s" type: "Slice" bottom: "x" top: "a" top: "b" slice_param { axis: 0 } }
"#;
    let e = common::net(text, "slice.prototxt", Phase::Test).err().expect("no axis to slice").to_string();
    assert!(e.contains("layer 's'") && e.contains("axis 0 out of range for a 0-D blob"), "{e}");
}
