//! HDF5 files from strangers, read in-process by libhdf5: an HDF5Data file
//! (its `data` and `label` datasets), a `.solverstate.h5` and a
//! `.caffemodel.h5` loaded into the seed net. The first byte picks the kind.
//! Each file goes through the readers' probe (a forked child reads it first),
//! so a crash inside libhdf5 is an error here, and a crash in this process is
//! caffe-tch's own.
#![no_main]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A new file per input: the reader remembers files that passed its probe by
/// path, size and mtime, and a rewrite of one path within the clock's
/// granularity could look unchanged.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("caffe-tch-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    for old in std::fs::read_dir(&dir).expect("scratch folder").flatten() {
        std::fs::remove_file(old.path()).expect("clear the scratch folder");
    }
    let p = dir.join(format!("{}-{name}", COUNT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&p, bytes).expect("scratch file");
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    caffe_tch::util::limits::set_max_memory(256 << 20);
    // Under libFuzzer's own -timeout, so a runaway file is our error, not a hang.
    caffe_tch::data::hdf5::set_probe_base_seconds(10);
    // Errors are the expected answers; only panics and aborts are bugs.
    match kind % 3 {
        0 => {
            let _datasets = h5::read_data_file(&scratch("data.h5", rest), &["data".into(), "label".into()]);
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
