//! The Net API pycaffe's Python module stands on: layer ranges, backward
//! from given top diffs, input reshapes, shared weights, kept param diffs.
use caffe_tch::net::{LayerCallback, LayerEvent, Net};
use caffe_tch::proto::caffe::{NetState, Phase};
use caffe_tch::proto::text::TextOptions;
use tch::{Device, Kind, Tensor};

use crate::common::{caffe_ref, SeededInputs};

/// LeNet from BVLC's weights on seeded inputs (the test's own generator:
/// libtorch's is shared with tests on other threads).
fn lenet(phase: Phase) -> Net {
    let dir = caffe_ref("fixtures/lenet");
    let state = NetState { phase: Some(phase as i32), ..Default::default() };
    let mut net = Net::from_file(&dir.join("net.prototxt"), &state, TextOptions::default(), Device::Cpu).unwrap();
    net.load_weights(&dir.join("weights.caffemodel")).unwrap();
    let mut inputs = SeededInputs::new(3);
    net.set_input("data", &inputs.uniform(&[100, 1, 28, 28])).unwrap();
    net.set_input("label", &inputs.labels(&[100], 10)).unwrap();
    net
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn forward_from_to_in_two_halves_equals_one_forward() {
    let mut net = lenet(Phase::Test);
    let full = net.forward_inference().unwrap();
    let ip2 = net.blob("ip2").unwrap().copy();
    let mid = net.layer_index("conv2").unwrap();
    let last = net.layer_names().len() - 1;
    net.forward_from_to(0, mid - 1, false).unwrap();
    let second = net.forward_from_to(mid, last, false).unwrap();
    assert_eq!(full, second);
    assert_eq!(max_abs(net.blob("ip2").unwrap(), &ip2), 0.0);
    // A value written into pool1 is what conv2 reads next.
    let pool1 = net.blob("pool1").unwrap().zeros_like();
    net.set_blob_value("pool1", &pool1).unwrap();
    net.forward_from_to(mid, last, false).unwrap();
    let ip1_bias_only = net.blob("ip2").unwrap().copy();
    assert!(max_abs(&ip1_bias_only, &ip2) > 1e-3);
    assert!(net.set_blob_value("pool1", &Tensor::zeros([2], (Kind::Float, Device::Cpu))).is_err());
    assert!(net.forward_from_to(3, 1, false).is_err());
}

#[test]
fn backward_from_to_equals_backward_and_keeps_diff_storage() {
    let mut a = lenet(Phase::Train);
    a.forward().unwrap();
    a.backward().unwrap();
    let mut b = lenet(Phase::Train);
    b.keep_param_diffs();
    let conv1 = b.layer_index("conv1").unwrap();
    let held = b.layer_param_diff(conv1, 0).unwrap();
    b.record_blob_diffs(true);
    let last = b.layer_names().len() - 1;
    b.forward_from_to(0, last, true).unwrap();
    b.backward_from_to(last, 0, &[]).unwrap();
    let want = a.layer_blob_diff("conv1", 0).unwrap();
    assert!(max_abs(&held, &want) < 1e-6, "the kept diff tensor holds the gradient");
    assert!(b.blob_diff("ip1").is_some());
    b.clear_param_diffs().unwrap();
    assert_eq!(held.abs().sum(Kind::Float).double_value(&[]), 0.0, "cleared in place");
    // A seed on ip2 alone: ip2's weight gradient is seedᵀ·ip1.
    let ip2 = b.layer_index("ip2").unwrap();
    let seed = Tensor::ones([100, 10], (Kind::Float, Device::Cpu));
    b.forward_from_to(0, last, true).unwrap();
    b.backward_from_to(ip2, ip2, &[("ip2".to_string(), seed.shallow_clone())]).unwrap();
    let want = seed.transpose(0, 1).matmul(b.blob("ip1").unwrap());
    assert!(max_abs(&b.layer_param_diff(ip2, 0).unwrap(), &want) < 1e-3);
}

#[test]
fn reshape_input_carries_new_shapes_through() {
    let mut net = lenet(Phase::Test);
    net.reshape_input("data", &[3, 1, 28, 28]).unwrap();
    net.reshape_input("label", &[3]).unwrap();
    net.reshape().unwrap();
    assert_eq!(net.blob_shape("conv1").unwrap(), &vec![3, 20, 24, 24]);
    assert_eq!(net.blob_shape("ip2").unwrap(), &vec![3, 10]);
    net.forward_inference().unwrap();
    assert_eq!(net.blob("ip2").unwrap().size(), vec![3, 10]);
    // A size the weights cannot take is an error naming the layer.
    net.reshape_input("data", &[3, 1, 32, 32]).unwrap();
    let e = net.reshape().unwrap_err().to_string();
    assert!(e.contains("ip1"), "{e}");
    assert!(net.reshape_input("conv1", &[1]).is_err());
}

#[test]
fn share_weights_with_shares_memory() {
    let a = lenet(Phase::Test);
    let dir = caffe_ref("fixtures/lenet");
    let state = NetState { phase: Some(Phase::Test as i32), ..Default::default() };
    let mut b = Net::from_file(&dir.join("net.prototxt"), &state, TextOptions::default(), Device::Cpu).unwrap();
    b.share_weights_with(&a).unwrap();
    let i = a.layer_index("ip2").unwrap();
    let wa = a.layer_param(i, 0).unwrap();
    let _ = tch::no_grad(|| wa.detach().fill_(0.5));
    assert_eq!(b.layer_param(i, 0).unwrap().max().double_value(&[]), 0.5);
}

type Events = std::sync::Arc<std::sync::Mutex<Vec<(LayerEvent, usize, f64)>>>;

/// A callback that records each event with |conv1's weight diff| at that moment.
fn recorder(events: &Events, conv1_diff: Tensor) -> LayerCallback {
    let events = events.clone();
    Box::new(move |event, i| {
        let mass = conv1_diff.abs().sum(Kind::Float).double_value(&[]);
        events.lock().map_err(|_| caffe_tch::Error::invalid("poisoned"))?.push((event, i, mass));
        Ok(())
    })
}

#[test]
fn layer_callbacks_bracket_each_layer_in_caffes_order_and_change_no_gradient() {
    let mut plain = lenet(Phase::Train);
    let plain_loss = plain.forward().unwrap();
    plain.backward().unwrap();

    let mut net = lenet(Phase::Train);
    net.keep_param_diffs();
    let conv1 = net.layer_index("conv1").unwrap();
    let held = net.layer_param_diff(conv1, 0).unwrap();
    let events: Events = Default::default();
    net.set_layer_callback(Some(recorder(&events, held.shallow_clone())), true);
    let loss = net.forward().unwrap();
    net.backward().unwrap();
    assert_eq!(loss, plain_loss);

    let n = net.layer_names().len();
    let seen: Vec<(LayerEvent, usize)> = events.lock().unwrap().iter().map(|&(e, i, _)| (e, i)).collect();
    let mut want = Vec::new();
    for i in 0..n {
        want.push((LayerEvent::BeforeForward, i));
        want.push((LayerEvent::AfterForward, i));
    }
    for i in (0..n).rev() {
        want.push((LayerEvent::BeforeBackward, i));
        want.push((LayerEvent::AfterBackward, i));
    }
    assert_eq!(seen, want);
    // conv1's gradient is computed between its own two backward calls.
    let mass = |event| events.lock().unwrap().iter().find(|&&(e, i, _)| e == event && i == conv1).unwrap().2;
    assert_eq!(mass(LayerEvent::BeforeBackward), 0.0);
    assert!(mass(LayerEvent::AfterBackward) > 0.0);

    for name in ["conv1", "conv2", "ip1", "ip2"] {
        for j in 0..2 {
            let (a, b) = (plain.layer_blob_diff(name, j).unwrap(), net.layer_blob_diff(name, j).unwrap());
            let scale = a.abs().max().double_value(&[]);
            assert!(max_abs(&a, &b) <= 1e-6 * scale, "{name} blob {j}: {} of {scale}", max_abs(&a, &b));
        }
    }

    // Blob diffs from a ranged backward match too, and removing the callback
    // brings back the one-pass backward with the same numbers.
    let last = n - 1;
    for with_callback in [true, false] {
        if !with_callback {
            net.set_layer_callback(None, false);
        }
        net.record_blob_diffs(true);
        net.forward_from_to(0, last, true).unwrap();
        net.backward_from_to(last, 0, &[]).unwrap();
        plain.record_blob_diffs(true);
        plain.forward_from_to(0, last, true).unwrap();
        plain.backward_from_to(last, 0, &[]).unwrap();
        for blob in ["conv1", "pool1", "ip1"] {
            let (a, b) = (plain.blob_diff(blob).unwrap(), net.blob_diff(blob).unwrap());
            let scale = a.abs().max().double_value(&[]);
            assert!(max_abs(a, b) <= 1e-6 * scale, "{blob} diff (callback {with_callback})");
        }
    }
}

#[test]
fn a_failing_layer_callback_stops_the_pass_naming_the_layer() {
    let mut net = lenet(Phase::Train);
    let ip1 = net.layer_index("ip1").unwrap();
    net.set_layer_callback(
        Some(Box::new(move |event, i| {
            if event == LayerEvent::AfterBackward && i == ip1 {
                return Err(caffe_tch::Error::invalid("the callback gave up"));
            }
            Ok(())
        })),
        true,
    );
    net.forward().unwrap();
    let err = net.backward().unwrap_err().to_string();
    assert!(err.contains("layer 'ip1'") && err.contains("the callback gave up"), "{err}");
    // Forward-only callbacks keep the one-pass backward.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    net.set_layer_callback(
        Some(Box::new(move |_, _| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })),
        false,
    );
    net.forward().unwrap();
    net.backward().unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2 * net.layer_names().len());
}

/// Each layer's forward on its own (pycaffe's `forward(start=l, end=l)`,
/// caffe.cpp's time) chains autograd's graph through the blobs, so one
/// backward over the whole net reaches every layer, as Caffe's does.
#[test]
fn a_backward_after_a_layer_by_layer_forward_reaches_every_layer() {
    let mut a = lenet(Phase::Train);
    a.forward().unwrap();
    a.backward().unwrap();
    let mut b = lenet(Phase::Train);
    b.record_blob_diffs(true);
    let last = b.layer_names().len() - 1;
    for i in 0..=last {
        b.forward_from_to(i, i, true).unwrap();
    }
    assert!(b.backward_recorded(0, last));
    b.backward_from_to(last, 0, &[]).unwrap();
    for layer in ["conv1", "conv2", "ip1", "ip2"] {
        let i = b.layer_index(layer).unwrap();
        let want = a.layer_blob_diff(layer, 0).unwrap();
        assert!(want.abs().max().double_value(&[]) > 1e-3, "{layer} has a gradient");
        assert!(max_abs(&b.layer_param_diff(i, 0).unwrap(), &want) < 1e-6, "{layer}");
    }
}
