//! In-place layers: a ReLU whose top is its bottom overwrites the blob (as
//! Caffe does) when its producer's backward does not need the old value, and
//! runs out of place otherwise. Either way the values and gradients are the
//! ones the same net gives with every top named apart.
use caffe_tch::net::Net;
use caffe_tch::proto::caffe::Phase;
use tch::{Kind, Tensor};

use crate::common::{net, rng_exclusive};

/// conv → ReLU (may overwrite) → Sigmoid → ReLU (must not: sigmoid's backward
/// reads its output) → ip → ReLU (may overwrite) → loss. `in_place` names
/// each ReLU's top like its bottom.
fn prototxt(in_place: bool) -> String {
    let top = |bottom: &str, own: &str| if in_place { bottom.to_string() } else { own.to_string() };
    let (r1, r2, r3) = (top("conv", "relu1"), top("sig", "relu2"), top("ip", "relu3"));
    format!(
        r#"
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: 4 dim: 3 dim: 8 dim: 8 }} shape {{ dim: 4 dim: 5 }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param {{ num_output: 6 kernel_size: 3 weight_filler {{ type: "gaussian" std: 0.3 }} bias_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv" top: "{r1}" }}
layer {{ name: "sig" type: "Sigmoid" bottom: "{r1}" top: "sig" }}
layer {{ name: "relu2" type: "ReLU" bottom: "sig" top: "{r2}" }}
layer {{ name: "ip" type: "InnerProduct" bottom: "{r2}" top: "ip"
        inner_product_param {{ num_output: 5 weight_filler {{ type: "gaussian" std: 0.3 }} bias_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "relu3" type: "ReLU" bottom: "ip" top: "{r3}" }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "{r3}" bottom: "label" top: "loss" }}
"#
    )
}

fn built(in_place: bool) -> Net {
    tch::manual_seed(11);
    let mut n = net(&prototxt(in_place), "in_place.prototxt", Phase::Train).unwrap();
    tch::manual_seed(12);
    n.set_input("data", &Tensor::randn([4, 3, 8, 8], (Kind::Float, tch::Device::Cpu))).unwrap();
    n.set_input("label", &Tensor::randn([4, 5], (Kind::Float, tch::Device::Cpu))).unwrap();
    n
}

#[test]
fn in_place_relu_gives_the_out_of_place_values_and_gradients() {
    let _rng = rng_exclusive();
    let (mut a, mut b) = (built(true), built(false));
    let (la, lb) = (a.forward().unwrap(), b.forward().unwrap());
    assert_eq!(la, lb, "loss");
    a.clear_param_diffs().unwrap();
    b.clear_param_diffs().unwrap();
    a.backward().unwrap();
    b.backward().unwrap();
    for (pa, pb) in a.learnable_params().iter().zip(b.learnable_params()) {
        let d = (pa.diff() - pb.diff()).abs().max().double_value(&[]);
        assert_eq!(d, 0.0, "{}: diff differs by {d}", pa.display());
        assert!(pa.diff().abs().sum(Kind::Float).double_value(&[]) > 0.0, "{} has a gradient", pa.display());
    }
    // The overwritten blob holds the ReLU's output, as in Caffe.
    let relu1 = b.blob("relu1").unwrap();
    assert_eq!((a.blob("conv").unwrap() - relu1).abs().max().double_value(&[]), 0.0);
    assert!(relu1.min().double_value(&[]) >= 0.0);
    // Without autograd too, repeatedly (the overwritten tensor is the conv's fresh output each time).
    for _ in 0..2 {
        let (ia, ib) = (a.forward_inference().unwrap(), b.forward_inference().unwrap());
        assert_eq!(ia, ib);
        assert_eq!(ia, la);
    }
}

/// `caffe time`'s layer-wise backward runs the ReLUs in place as the training
/// step does (reaching each overwritten bottom by its autograd edge) and
/// accumulates exactly the fused backward's diffs, including through a ReLU
/// on an InnerProduct's top, which it runs out of place.
#[test]
fn layer_wise_backward_gives_the_fused_diffs() {
    let _rng = rng_exclusive();
    for in_place in [true, false] {
        let (mut fused, mut timed) = (built(in_place), built(in_place));
        fused.forward().unwrap();
        fused.clear_param_diffs().unwrap();
        fused.backward().unwrap();
        timed.clear_param_diffs().unwrap();
        let times = timed.forward_backward_timed().unwrap();
        assert_eq!(times.backward_ms.len(), timed.layer_names().len());
        for (pf, pt) in fused.learnable_params().iter().zip(timed.learnable_params()) {
            let d = (pf.diff() - pt.diff()).abs().max().double_value(&[]);
            assert!(d <= 1e-6, "{} (in place: {in_place}): diff differs by {d}", pf.display());
            assert!(pt.diff().abs().sum(Kind::Float).double_value(&[]) > 0.0, "{} has a gradient", pt.display());
        }
        // The overwritten blob holds the ReLU's output after the timed pass too.
        if in_place {
            assert!(timed.blob("conv").unwrap().min().double_value(&[]) >= 0.0);
        }
    }
}
