//! Binary protobuf files that real Caffe wrote (.caffemodel, .solverstate,
//! .binaryproto): they load, write back unchanged, and round-trip through a net.
use std::path::Path;

use caffe_tch::net::Net;
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::{BlobProto, NetParameter, Phase, SolverState};
use caffe_tch::proto::text::TextOptions;
use prost::Message;
use tch::Device;

use crate::common;
use crate::common::caffe_ref;

fn lenet_weights() -> std::path::PathBuf {
    caffe_ref("fixtures/lenet/weights.caffemodel")
}

/// Reads `file`, writes it back with `write_message`, and checks the copy
/// decodes to the same message. Returns whether the bytes are identical too.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(file: &Path) -> bool {
    let original = std::fs::read(file).expect("read original");
    let msg: M = binary::read_message(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join(file.file_name().expect("file name"));
    binary::write_message(&copy, &msg).expect("write back");
    let again: M = binary::read_message(&copy).expect("read copy");
    assert!(again == msg, "{}: the written copy decodes differently", file.display());
    std::fs::read(&copy).expect("read copy bytes") == original
}

// Caffe (protobuf C++) and prost both write fields in field-number order, packed
// repeated scalars for `[packed = true]` fields, and no unknown fields for these
// messages, so the encodings of what Caffe wrote are byte-identical.
#[test]
fn caffemodel_round_trips_byte_identical() {
    assert!(round_trip::<NetParameter>(&lenet_weights()), "caffemodel bytes differ after write-back");
}

#[test]
fn solverstate_round_trips_byte_identical() {
    let file = caffe_ref("lenet_run/lenet_iter_5000.solverstate");
    assert!(round_trip::<SolverState>(&file), "solverstate bytes differ after write-back");
    let state: SolverState = binary::read_message(&file).expect("solverstate");
    assert_eq!(state.iter(), 5000);
    assert_eq!(state.history.len(), 8, "LeNet has 8 learnable blobs");
}

#[test]
fn mean_binaryproto_round_trips_byte_identical() {
    let file = caffe_ref("extra/mean/fmnist_train_mean.binaryproto");
    assert!(round_trip::<BlobProto>(&file), "binaryproto bytes differ after write-back");
}

#[test]
fn mean_binaryproto_has_legacy_shape() {
    let file = caffe_ref("extra/mean/fmnist_train_mean.binaryproto");
    let blob: BlobProto = binary::read_message(&file).expect("binaryproto");
    assert!(blob.shape.is_none(), "compute_image_mean writes the legacy num/channels/height/width");
    assert_eq!(binary::blob_shape(&blob), vec![1, 1, 28, 28]);
    assert_eq!(blob.data.len(), 28 * 28);
    binary::check_blob(&blob, &file, "mean").expect("consistent blob");
    let reference = common::read_npy(&caffe_ref("extra/mean/fmnist_train_mean.npy"));
    let ours = tch::Tensor::from_slice(&binary::blob_data_f32(&blob));
    common::assert_close("mean", &ours, &reference, 1e-6);
}

#[test]
fn truncated_caffemodel_is_an_error_naming_the_file() {
    let _rng = common::rng_shared(); // the net's fillers
    let bytes = std::fs::read(lenet_weights()).expect("caffemodel");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cut = tmp.path().join("cut.caffemodel");
    std::fs::write(&cut, &bytes[..1000]).expect("write truncated");
    let err = binary::read_message::<NetParameter>(&cut).expect_err("a truncated caffemodel must not decode");
    let msg = err.to_string();
    assert!(msg.contains("cut.caffemodel"), "error does not name the file: {msg}");

    // Loading it into a net fails the same way, without a panic.
    let state = common::net_state(Phase::Test);
    let proto = caffe_ref("fixtures/lenet/net.prototxt");
    let mut net = Net::from_file(&proto, &state, TextOptions::default(), Device::Cpu).expect("net");
    let err = net.load_weights(&cut).expect_err("load_weights of a truncated file");
    assert!(err.to_string().contains("cut.caffemodel"), "{err}");
}

#[test]
fn net_to_proto_reloads_identical_blobs() {
    let _rng = common::rng_shared(); // the nets' fillers
    let state = common::net_state(Phase::Test);
    let proto = caffe_ref("fixtures/lenet/net.prototxt");
    let mut net = Net::from_file(&proto, &state, TextOptions::default(), Device::Cpu).expect("net");
    net.load_weights(&lenet_weights()).expect("weights");

    let tmp = tempfile::tempdir().expect("tempdir");
    let saved = tmp.path().join("saved.caffemodel");
    binary::write_message(&saved, &net.to_proto(false).expect("blobs")).expect("write caffemodel");

    // A fresh net starts from its fillers (xavier), so the load must overwrite them.
    let mut fresh = Net::from_file(&proto, &state, TextOptions::default(), Device::Cpu).expect("fresh net");
    fresh.load_weights(&saved).expect("load saved");
    let mut compared = 0;
    for layer in ["conv1", "conv2", "ip1", "ip2"] {
        let a = net.layer_blobs(layer).expect("layer");
        let b = fresh.layer_blobs(layer).expect("layer");
        assert_eq!(a.len(), 2, "{layer}: weights and bias");
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.size(), y.size(), "{layer}");
            assert!(x.equal(y), "{layer}: reloaded blob differs");
            compared += 1;
        }
    }
    assert_eq!(compared, 8);

    // And they are the very values the Caffe-written file holds.
    let original: NetParameter = binary::read_message(&lenet_weights()).expect("caffemodel");
    for lp in original.layer.iter().filter(|l| !l.blobs.is_empty()) {
        let ours = fresh.layer_blobs(lp.name()).expect("layer");
        for (blob, t) in lp.blobs.iter().zip(&ours) {
            let reference = tch::Tensor::from_slice(&binary::blob_data_f32(blob));
            assert!(t.flatten(0, -1).equal(&reference), "{}: differs from the file", lp.name());
        }
    }
}

/// A protobuf key for `field` with wire type 2 (length-delimited), then the length.
fn length_delimited(field: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

fn lenet_net() -> Net {
    let state = common::net_state(Phase::Test);
    let proto = caffe_ref("fixtures/lenet/net.prototxt");
    Net::from_file(&proto, &state, TextOptions::default(), Device::Cpu).expect("net")
}

/// Every blob of LeNet's weighted layers equals `want(layer, j)`.
fn assert_lenet_blobs(net: &Net, original: &NetParameter, want: impl Fn(&BlobProto) -> tch::Tensor) {
    let mut compared = 0;
    for lp in original.layer.iter().filter(|l| !l.blobs.is_empty()) {
        let ours = net.layer_blobs(lp.name()).expect("layer");
        for (blob, t) in lp.blobs.iter().zip(&ours) {
            assert!(t.flatten(0, -1).equal(&want(blob)), "{}: differs from the file", lp.name());
            compared += 1;
        }
    }
    assert_eq!(compared, 8);
}

// A fork's caffemodel: DeepLab's `interp_param` is field 143, which BVLC
// Caffe (and this schema) gave `input_param`; its varints inside do not decode
// as an InputParameter. Loading weights reads names and blobs only, as Caffe does.
#[test]
fn caffemodel_with_a_forks_clashing_field_numbers_loads_its_weights() {
    let _rng = common::rng_shared(); // the net's fillers
    let original: NetParameter = binary::read_message(&lenet_weights()).expect("caffemodel");
    let interp = [0x08, 5, 0x10, 7]; // height: 5, width: 7
    let mut bytes = length_delimited(1, original.name().as_bytes());
    for layer in &original.layer {
        let mut encoded = layer.encode_to_vec();
        encoded.extend(length_delimited(143, &interp));
        bytes.extend(length_delimited(100, &encoded));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("deeplab_like.caffemodel");
    std::fs::write(&file, &bytes).expect("write");
    assert!(binary::read_message::<NetParameter>(&file).is_err(), "the full decode must fail on field 143");

    let mut net = lenet_net();
    net.load_weights(&file).expect("weights of a fork's caffemodel");
    assert_lenet_blobs(&net, &original, |b| tch::Tensor::from_slice(&binary::blob_data_f32(b)));

    // The same in the V1 format (`layers`, an enum type), with a clash in V1LayerParameter.
    let mut bytes = Vec::new();
    for layer in &original.layer {
        let v1_type = match layer.r#type() {
            "Convolution" => 4,
            "InnerProduct" => 14,
            "Pooling" => 17,
            "ReLU" => 18,
            "Softmax" => 20,
            _ => 0,
        };
        let v1 = caffe_tch::proto::caffe::V1LayerParameter {
            name: layer.name.clone(),
            r#type: Some(v1_type),
            blobs: layer.blobs.clone(),
            ..Default::default()
        };
        let mut encoded = v1.encode_to_vec();
        // Field 2 of V1LayerParameter is `bottom` (a string); a fork's varint there.
        encoded.extend([0x10, 1]);
        bytes.extend(length_delimited(2, &encoded));
    }
    let file = tmp.path().join("v1_fork.caffemodel");
    std::fs::write(&file, &bytes).expect("write");
    assert!(binary::read_message::<NetParameter>(&file).is_err(), "the full decode must fail on field 2");
    let mut net = lenet_net();
    net.load_weights(&file).expect("weights of a V1 fork's caffemodel");
    assert_lenet_blobs(&net, &original, |b| tch::Tensor::from_slice(&binary::blob_data_f32(b)));
}

// NVIDIA Caffe stores blobs as `raw_data` of `raw_data_type` (FLOAT16 in its
// fp16 models): they load as their f32 values.
#[test]
fn nvidia_caffe_raw_data_blobs_load() {
    let _rng = common::rng_shared(); // the net's fillers
    let original: NetParameter = binary::read_message(&lenet_weights()).expect("caffemodel");
    for (raw_type, kind) in [
        (caffe_tch::proto::caffe::Type::Float16, tch::Kind::Half),
        (caffe_tch::proto::caffe::Type::Float, tch::Kind::Float),
        (caffe_tch::proto::caffe::Type::Double, tch::Kind::Double),
    ] {
        let mut converted = original.clone();
        for layer in converted.layer.iter_mut() {
            for blob in layer.blobs.iter_mut() {
                let values = tch::Tensor::from_slice(&blob.data).to_kind(kind);
                let mut raw = vec![0u8; values.numel() * kind.elt_size_in_bytes()];
                values.copy_data_u8(&mut raw, values.numel());
                blob.data.clear();
                blob.raw_data = Some(raw);
                blob.set_raw_data_type(raw_type);
            }
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("nvcaffe.caffemodel");
        binary::write_message(&file, &converted).expect("write");
        let mut net = lenet_net();
        net.load_weights(&file).unwrap_or_else(|e| panic!("{raw_type:?}: {e}"));
        assert_lenet_blobs(&net, &original, |b| {
            tch::Tensor::from_slice(&b.data).to_kind(kind).to_kind(tch::Kind::Float)
        });
    }
}

// A tool that needs every layer's parameters (upgrade_net_proto_binary) says
// what is wrong with a fork's file instead of calling it corrupt.
#[test]
fn a_forks_clashing_field_is_named_as_such() {
    let original: NetParameter = binary::read_message(&lenet_weights()).expect("caffemodel");
    let mut encoded = original.layer[0].encode_to_vec();
    encoded.extend(length_delimited(143, &[0x08, 5]));
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("fork.caffemodel");
    std::fs::write(&file, length_delimited(100, &encoded)).expect("write");
    let err = binary::read_message::<NetParameter>(&file).expect_err("field 143 as a varint").to_string();
    assert!(err.contains("a Caffe fork's field numbers?") && err.contains("fork.caffemodel"), "{err}");
}
