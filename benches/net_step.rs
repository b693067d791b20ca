//! `cargo bench`: forward + backward of the timing nets, the way the solver runs
//! a training step (one autograd pass), beside BVLC Caffe's CPU figures from
//! `caffe time` on an idle 2-core machine (tests/fixtures/caffe-ref/README.md).
//! Prints the median over the runs; interleave with other work at your peril.
use std::path::Path;
use std::time::Instant;

use caffe_tch::net::Net;
use caffe_tch::proto::caffe::{NetState, Phase};
use caffe_tch::proto::text::TextOptions;
use tch::Device;

struct Case {
    name: &'static str,
    prototxt: &'static str,
    phase: Phase,
    iterations: usize,
    caffe_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/nets");
    let cases = [
        Case {
            name: "LeNet (64)",
            prototxt: "lenet_input.prototxt",
            phase: Phase::Train,
            iterations: 100,
            caffe_ms: 18.5,
        },
        Case {
            name: "LeNet(10) (64)",
            prototxt: "lenet10_input.prototxt",
            phase: Phase::Train,
            iterations: 30,
            caffe_ms: 139.4,
        },
        Case {
            name: "cifar10_quick (100)",
            prototxt: "cifar10_quick_train_test_input.prototxt",
            phase: Phase::Train,
            iterations: 30,
            caffe_ms: 129.7,
        },
        Case {
            name: "cifar10_full (100)",
            prototxt: "cifar10_full_train_test_input.prototxt",
            phase: Phase::Train,
            iterations: 30,
            caffe_ms: 157.3,
        },
        Case {
            name: "CaffeNet fb (10)",
            prototxt: "bvlc_reference_caffenet_deploy_fb.prototxt",
            phase: Phase::Test,
            iterations: 10,
            caffe_ms: 401.4,
        },
        Case {
            name: "GoogLeNet fb (10)",
            prototxt: "bvlc_googlenet_deploy_fb.prototxt",
            phase: Phase::Test,
            iterations: 5,
            caffe_ms: 1285.6,
        },
        Case {
            name: "VGG16 fb (2)",
            prototxt: "vgg16_deploy_b2_fb.prototxt",
            phase: Phase::Test,
            iterations: 5,
            caffe_ms: 1634.0,
        },
    ];
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    println!("| net | caffe-tch ms (median) | BVLC Caffe ms | speed-up |");
    println!("|---|---|---|---|");
    for c in &cases {
        if !filter.is_empty() && !filter.iter().any(|f| c.name.contains(f.as_str())) {
            continue;
        }
        let state = NetState { phase: Some(c.phase as i32), ..Default::default() };
        let mut net = match Net::from_file(&dir.join(c.prototxt), &state, TextOptions::default(), Device::Cpu) {
            Ok(n) => n,
            Err(e) => {
                println!("| {} | error: {e} | | |", c.name);
                continue;
            }
        };
        net.use_outputs_as_loss(true);
        // Warm-up: first passes allocate and pick kernels.
        for _ in 0..2 {
            net.forward().expect("forward");
            net.backward().expect("backward");
        }
        let mut times = Vec::new();
        for _ in 0..c.iterations {
            let t = Instant::now();
            net.forward().expect("forward");
            net.backward().expect("backward");
            net.clear_param_diffs().expect("clear_param_diffs");
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let m = median(times);
        println!("| {} | {:.1} | {:.1} | {:.2}× |", c.name, m, c.caffe_ms, c.caffe_ms / m);
    }
}
