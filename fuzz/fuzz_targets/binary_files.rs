//! Binary files from strangers: a `.caffemodel` (decode, upgrade, copy into
//! LeNet), a `.solverstate`, a `.binaryproto` mean file, a `.safetensors`
//! weights file and a `.npy` input. The first byte picks the kind.
#![no_main]
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::caffe::{NetParameter, NetState, Phase, SolverState};
use caffe_tch::proto::text::{parse_str, TextOptions};
use caffe_tch::proto::{binary, upgrade};
use libfuzzer_sys::fuzz_target;

const LENET: &str = include_str!("../../tests/fixtures/caffe-ref/fixtures/lenet/net.prototxt");

fn lenet() -> &'static Mutex<Net> {
    static NET: OnceLock<Mutex<Net>> = OnceLock::new();
    NET.get_or_init(|| {
        let param = parse_str::<NetParameter>(LENET, "lenet", TextOptions::default()).expect("lenet parses").message;
        let state = NetState { phase: Some(Phase::Test as i32), ..Default::default() };
        Mutex::new(Net::new(&param, &state, NetSource::new("lenet"), tch::Device::Cpu).expect("lenet builds"))
    })
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
    let Some((&kind, rest)) = data.split_first() else { return };
    let origin = std::path::Path::new("fuzz");
    match kind % 5 {
        0 => {
            if let Ok(mut trained) = binary::decode_message::<NetParameter>(rest, origin) {
                if upgrade::upgrade_net(&mut trained, "fuzz.caffemodel").is_ok() {
                    if let Ok(mut net) = lenet().lock() {
                        let _ = net.copy_trained_layers_from(&trained, "fuzz.caffemodel");
                    }
                }
            }
        }
        1 => {
            let _ = binary::decode_message::<SolverState>(rest, origin);
        }
        2 => {
            let _ = caffe_tch::data::transform::MeanImage::load(&scratch("binaryproto", rest));
        }
        3 => {
            if let Ok(mut net) = lenet().lock() {
                let _ = net.load_weights(&scratch("safetensors", rest));
            }
        }
        _ => {
            let _ = caffe_tch::util::npy::read(&scratch("npy", rest));
        }
    }
});
