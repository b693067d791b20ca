//! Binary files from strangers: a `.caffemodel` (decode, upgrade, copy into
//! LeNet and into the seed net, then print as text and parse again), a
//! `.solverstate` (read and checked as `-snapshot` reads it), a `.binaryproto`
//! mean file, a `.safetensors` weights file and a `.npy` input. The first byte
//! picks the kind.
#![no_main]
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::caffe::{NetParameter, NetState, Phase};
use caffe_tch::proto::text::{parse_str, TextOptions};
use caffe_tch::proto::{binary, print, upgrade};
use libfuzzer_sys::fuzz_target;

const LENET: &str = include_str!("../../tests/fixtures/caffe-ref/fixtures/lenet/net.prototxt");
const SEED_NET: &str = include_str!("../seed_net.prototxt");

fn build(text: &str, name: &str) -> Mutex<Net> {
    let param = parse_str::<NetParameter>(text, name, TextOptions::default()).expect("parses").message;
    let state = NetState { phase: Some(Phase::Train as i32), ..Default::default() };
    Mutex::new(Net::new(&param, &state, NetSource::new(name), tch::Device::Cpu).expect("builds"))
}

fn lenet() -> &'static Mutex<Net> {
    static NET: OnceLock<Mutex<Net>> = OnceLock::new();
    NET.get_or_init(|| build(LENET, "lenet"))
}

fn seed_net() -> &'static Mutex<Net> {
    static NET: OnceLock<Mutex<Net>> = OnceLock::new();
    NET.get_or_init(|| build(SEED_NET, "seed_net"))
}

/// A scratch file per process (the readers take paths).
fn scratch(ext: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("caffe-tch-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let p = dir.join(format!("input.{ext}"));
    std::fs::write(&p, bytes).expect("scratch file");
    p
}

fuzz_target!(|data: &[u8]| {
    // A limit well under libFuzzer's RSS limit: a file may ask for anything up
    // to the limit (the product's default is the machine's memory).
    caffe_tch::util::limits::set_max_memory(256 << 20);
    let Some((&kind, rest)) = data.split_first() else { return };
    let origin = std::path::Path::new("fuzz");
    // Errors are the expected answers; only panics and aborts are bugs.
    match kind % 5 {
        0 => {
            let Ok(mut trained) = binary::decode_message::<NetParameter>(rest, origin) else { return };
            if upgrade::upgrade_net(&mut trained, "fuzz.caffemodel").is_err() {
                return;
            }
            for net in [lenet(), seed_net()] {
                if let Ok(mut net) = net.lock() {
                    let _copied = net.copy_trained_layers_from(&trained, "fuzz.caffemodel");
                }
            }
            let printed = print::to_text(&trained);
            if let Err(e) = parse_str::<NetParameter>(&printed, "printed.prototxt", TextOptions::default()) {
                panic!("a printed caffemodel does not parse: {e}\n{printed}");
            }
        }
        1 => {
            let _state = caffe_tch::solver::snapshot::read_state(&scratch("solverstate", rest));
        }
        2 => {
            let _mean = caffe_tch::data::transform::MeanImage::load(&scratch("binaryproto", rest));
        }
        3 => {
            if let Ok(mut net) = lenet().lock() {
                let _loaded = net.load_weights(&scratch("safetensors", rest));
            }
        }
        _ => {
            let _array = caffe_tch::util::npy::read(&scratch("npy", rest));
        }
    }
});
