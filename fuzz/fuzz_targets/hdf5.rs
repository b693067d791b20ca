//! HDF5 files from strangers, read in-process by libhdf5: an HDF5Data file
//! (its `data` and `label` datasets), a `.solverstate.h5` and a
//! `.caffemodel.h5` loaded into the seed net. The first byte picks the kind.
#![no_main]
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use caffe_tch::data::hdf5 as h5;
use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::caffe::{NetParameter, NetState, Phase};
use caffe_tch::proto::text::{parse_str, TextOptions};
use libfuzzer_sys::fuzz_target;

const SEED_NET: &str = include_str!("../seed_net.prototxt");

fn seed_net() -> &'static Mutex<Net> {
    static NET: OnceLock<Mutex<Net>> = OnceLock::new();
    NET.get_or_init(|| {
        let param = parse_str::<NetParameter>(SEED_NET, "seed_net", TextOptions::default()).expect("parses").message;
        let state = NetState { phase: Some(Phase::Train as i32), ..Default::default() };
        Mutex::new(Net::new(&param, &state, NetSource::new("seed_net"), tch::Device::Cpu).expect("builds"))
    })
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("caffe-tch-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("scratch file");
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    caffe_tch::util::limits::set_max_memory(256 << 20);
    // Errors are the expected answers; only panics and aborts are bugs.
    match kind % 3 {
        0 => {
            if let Ok(file) = h5::open(&scratch("data.h5", rest)) {
                let _data = h5::read_f32(&file, "data");
                let _label = h5::read_f32(&file, "label");
            }
        }
        1 => {
            let _state = caffe_tch::solver::hdf5_snapshot::read_state(&scratch("fuzz.solverstate.h5", rest));
        }
        _ => {
            if let Ok(mut net) = seed_net().lock() {
                let _loaded = net.load_weights(&scratch("fuzz.caffemodel.h5", rest));
            }
        }
    }
});
