//! Structure-aware net building: arbitrary small nets over the layer types
//! and their parameters (zero or negative strides, pads past the kernel,
//! huge num_output, bad axes, cycles, bottoms nobody produces, shared params
//! with mismatched shapes), written as prototxt, built, then one forward on
//! tiny inputs. Every failure must be an error, never a panic or an abort.
#![no_main]
use arbitrary::Arbitrary;
use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::caffe::{NetParameter, NetState, Phase};
use caffe_tch::proto::text::{parse_str, TextOptions};
use libfuzzer_sys::fuzz_target;

/// (type, parameter message, fields that take an integer, fields that take a float or enum word)
const TYPES: &[(&str, &str, &[&str])] = &[
    ("Convolution", "convolution_param", &["num_output", "kernel_size", "stride", "pad", "dilation", "group", "axis"]),
    ("Deconvolution", "convolution_param", &["num_output", "kernel_size", "stride", "pad", "group"]),
    ("Pooling", "pooling_param", &["kernel_size", "stride", "pad", "kernel_h", "kernel_w"]),
    ("InnerProduct", "inner_product_param", &["num_output", "axis"]),
    ("ReLU", "relu_param", &[]),
    ("Sigmoid", "sigmoid_param", &[]),
    ("TanH", "tanh_param", &[]),
    ("LRN", "lrn_param", &["local_size"]),
    ("Softmax", "softmax_param", &["axis"]),
    ("Concat", "concat_param", &["axis"]),
    ("Slice", "slice_param", &["axis", "slice_point"]),
    ("Eltwise", "eltwise_param", &[]),
    ("Flatten", "flatten_param", &["axis", "end_axis"]),
    ("Reshape", "reshape_param", &["axis", "num_axes"]),
    ("Crop", "crop_param", &["axis", "offset"]),
    ("Tile", "tile_param", &["axis", "tiles"]),
    ("Reduction", "reduction_param", &["axis"]),
    ("ArgMax", "argmax_param", &["axis", "top_k"]),
    ("MVN", "mvn_param", &[]),
    ("BatchNorm", "batch_norm_param", &[]),
    ("Scale", "scale_param", &["axis", "num_axes"]),
    ("Bias", "bias_param", &["axis", "num_axes"]),
    ("Embed", "embed_param", &["num_output", "input_dim"]),
    ("SPP", "spp_param", &["pyramid_height"]),
    ("Im2col", "convolution_param", &["kernel_size", "stride", "pad"]),
    ("Power", "power_param", &[]),
    ("Dropout", "dropout_param", &[]),
    ("Split", "split_param", &[]),
    ("DropIn", "dropin_param", &["dropin_length"]),
    ("Resize", "resize_param", &["height", "width", "channels"]),
    ("Filter", "filter_param", &[]),
    ("BatchReindex", "batch_reindex_param", &[]),
    ("PReLU", "prelu_param", &[]),
    ("ELU", "elu_param", &[]),
    ("AbsVal", "absval_param", &[]),
    ("LSTM", "recurrent_param", &["num_output"]),
    ("RNN", "recurrent_param", &["num_output"]),
    ("Parameter", "parameter_param", &[]),
    ("Silence", "silence_param", &[]),
    ("SoftmaxWithLoss", "loss_param", &[]),
    ("EuclideanLoss", "loss_param", &[]),
    ("Accuracy", "accuracy_param", &["top_k", "axis"]),
];

#[derive(Arbitrary, Debug)]
struct Layer {
    kind: u8,
    bottoms: Vec<u8>,
    tops: u8,
    in_place: bool,
    ints: Vec<(u8, i16)>,
    shared_param: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct FuzzNet {
    shape: [u8; 4],
    second_input: Option<[u8; 2]>,
    layers: Vec<Layer>,
    train: bool,
}

fn prototxt(n: &FuzzNet) -> String {
    let dims: Vec<u32> = n.shape.iter().map(|&d| u32::from(d % 7)).collect();
    let mut s = format!(
        "layer {{ name: \"in\" type: \"Input\" top: \"b0\" input_param {{ shape {{ dim: {} dim: {} dim: {} dim: {} }} }} }}\n",
        dims[0], dims[1], dims[2], dims[3]
    );
    let mut blobs = vec!["b0".to_string()];
    if let Some([a, b]) = n.second_input {
        s.push_str(&format!(
            "layer {{ name: \"in2\" type: \"Input\" top: \"b1\" input_param {{ shape {{ dim: {} dim: {} }} }} }}\n",
            a % 5,
            b % 5
        ));
        blobs.push("b1".to_string());
    }
    for (i, l) in n.layers.iter().take(8).enumerate() {
        let (ty, param, fields) = TYPES[l.kind as usize % TYPES.len()];
        let bottoms: Vec<String> = l
            .bottoms
            .iter()
            .take(3)
            .map(|&b| if b == 255 { "nobody".to_string() } else { blobs[b as usize % blobs.len()].clone() })
            .collect();
        let mut text = format!("layer {{ name: \"l{i}\" type: \"{ty}\"");
        for b in &bottoms {
            text.push_str(&format!(" bottom: \"{b}\""));
        }
        let tops = (l.tops % 3) as usize;
        let mut new_tops = Vec::new();
        for k in 0..tops {
            let t = if l.in_place && k == 0 && !bottoms.is_empty() { bottoms[0].clone() } else { format!("t{i}_{k}") };
            text.push_str(&format!(" top: \"{t}\""));
            new_tops.push(t);
        }
        if let Some(p) = l.shared_param {
            text.push_str(&format!(" param {{ name: \"shared{}\" }}", p % 2));
        }
        let mut body = String::new();
        for &(f, v) in l.ints.iter().take(4) {
            if fields.is_empty() {
                break;
            }
            let field = fields[f as usize % fields.len()];
            body.push_str(&format!(" {field}: {}", if field == "axis" || field == "end_axis" { i32::from(v % 6) } else { i32::from(v).abs() % 70000 }));
        }
        if !body.is_empty() {
            text.push_str(&format!(" {param} {{{body} }}"));
        }
        text.push_str(" }\n");
        s.push_str(&text);
        blobs.extend(new_tops);
    }
    s
}

fuzz_target!(|n: FuzzNet| {
    let text = prototxt(&n);
    // To replay an input: CAFFE_TCH_FUZZ_PRINT=1 prints the net it builds.
    if std::env::var_os("CAFFE_TCH_FUZZ_PRINT").is_some() {
        eprintln!("{text}");
    }
    let Ok(parsed) = parse_str::<NetParameter>(&text, "fuzz.prototxt", TextOptions::default()) else { return };
    let phase = if n.train { Phase::Train } else { Phase::Test };
    let state = NetState { phase: Some(phase as i32), ..Default::default() };
    // Keep a fuzzed net small: the point is errors, not memory.
    caffe_tch::util::limits::set_max_memory(64 << 20);
    let Ok(mut net) = Net::new(&parsed.message, &state, NetSource::new("fuzz.prototxt"), tch::Device::Cpu) else {
        return;
    };
    let _ = net.forward();
});
