//! Every layer type against every bottom rank and every axis a prototxt can
//! name (issue #15): setup and one forward must answer with a result or an
//! error, never a panic from indexing a shape. Fuzzing found two such crashes
//! (Concat and Slice on a 0-axis blob); this sweep covers the whole space the
//! axis parameters span instead of waiting for the fuzzer to hit each corner.
use std::panic::{catch_unwind, AssertUnwindSafe};

use caffe_tch::layers::{create_layer, Shape, REGISTRY};
use caffe_tch::proto::caffe::{LayerParameter, Phase};
use tch::{Kind, Tensor};

use crate::common::layer::{ctx, lp};

/// Every parameter message with an axis, set to the same `axis`; `second` is
/// what the second axis field of a message takes (Flatten's end_axis, Scale's
/// and Bias's and Reshape's num_axes).
fn layer_text(ty: &str, axis: i32, second: i32, tops: usize) -> String {
    let tops: String = (0..tops).map(|i| format!(" top: \"t{i}\"")).collect();
    format!(
        r#"name: "l" type: "{ty}"{tops}
        concat_param {{ axis: {axis} }} slice_param {{ axis: {axis} }} softmax_param {{ axis: {axis} }}
        flatten_param {{ axis: {axis} end_axis: {second} }} crop_param {{ axis: {axis} }}
        reshape_param {{ axis: {axis} num_axes: {second} shape {{ dim: 0 dim: -1 }} }}
        tile_param {{ axis: {axis} tiles: 2 }} reduction_param {{ axis: {axis} }} argmax_param {{ axis: {axis} }}
        scale_param {{ axis: {axis} num_axes: {second} }} bias_param {{ axis: {axis} num_axes: {second} }}
        inner_product_param {{ axis: {axis} num_output: 2 }} accuracy_param {{ axis: {axis} }}
        convolution_param {{ axis: {axis} num_output: 2 kernel_size: 1 }} infogain_loss_param {{ axis: {axis} }}
        embed_param {{ num_output: 2 input_dim: 3 }} recurrent_param {{ num_output: 2 }}"#
    )
}

/// The bottom shapes tried: ranks 0 to 5, alone, doubled, tripled, and with a
/// second bottom of another rank (labels, scale and bias blobs, Crop's reference).
fn bottom_sets() -> Vec<Vec<Shape>> {
    let ranks: Vec<Shape> = (0..=5).map(|n| [2, 3, 2, 3, 2][..n].to_vec()).collect();
    let mut sets = Vec::new();
    for a in &ranks {
        sets.push(vec![a.clone()]);
        sets.push(vec![a.clone(), a.clone()]);
        sets.push(vec![a.clone(), a.clone(), a.clone()]);
        for b in &ranks {
            if b.len() != a.len() {
                sets.push(vec![a.clone(), b.clone()]);
            }
        }
    }
    sets
}

/// Setup, then a forward on zeros (valid labels and indices) when setup passes.
/// Returns the panic's message if anything panicked.
fn try_layer(param: &LayerParameter, bottoms: &[Shape]) -> Option<String> {
    let run = || {
        let Ok(mut layer) = create_layer(param) else { return };
        let Ok(setup) = layer.setup(bottoms) else { return };
        let opts = (Kind::Float, tch::Device::Cpu);
        let inputs: Vec<Tensor> = bottoms.iter().map(|s| Tensor::zeros(s.as_slice(), opts)).collect();
        let params: Vec<Tensor> = setup.params.iter().map(|p| Tensor::ones(p.shape.as_slice(), opts)).collect();
        // An error is a fine answer here; only a panic fails the sweep.
        let _answer = layer.forward(&ctx(Phase::Train), &inputs, &params);
    };
    catch_unwind(AssertUnwindSafe(run)).err().map(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn no_axis_and_rank_makes_a_layer_panic() {
    let sets = bottom_sets();
    let mut panics = Vec::new();
    for info in REGISTRY.iter().filter(|i| !i.family.starts_with("data/")) {
        for axis in -6..=6 {
            for (second, tops) in [(-1, 1), (0, 2), (1, 1), (axis, 1)] {
                let param = lp(&layer_text(info.type_name, axis, second, tops));
                for bottoms in &sets {
                    if let Some(message) = try_layer(&param, bottoms) {
                        panics.push(format!(
                            "{} axis {axis} second {second} tops {tops} bottoms {bottoms:?}: {message}",
                            info.type_name
                        ));
                    }
                }
            }
        }
    }
    assert!(panics.is_empty(), "{} panics:\n{}", panics.len(), panics.join("\n"));
}

/// Found by fuzzing (a division by zero channels): BatchNorm over a bottom
/// with no channels computes an empty top, in both phases, forward and back.
#[test]
fn batch_norm_over_zero_channels_is_an_empty_blob() {
    let text = r#"force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 0 dim: 3 dim: 3 } } }
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" }"#;
    for phase in [Phase::Train, Phase::Test] {
        let mut net = crate::common::net(text, "zero_channels.prototxt", phase).unwrap_or_else(|e| panic!("{e}"));
        net.forward().unwrap_or_else(|e| panic!("{e}"));
        net.backward().unwrap_or_else(|e| panic!("{e}"));
        let y = net.blob("y").unwrap_or_else(|| panic!("no blob y"));
        assert_eq!(y.size(), vec![2, 0, 3, 3]);
    }
}
