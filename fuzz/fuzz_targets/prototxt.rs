//! Prototxt text (nets and solvers, strict and --lenient), then the legacy
//! upgrades, then print and parse again: a message we printed must parse.
#![no_main]
use caffe_tch::proto::caffe::{NetParameter, SolverParameter};
use caffe_tch::proto::text::{parse_str, TextOptions};
use caffe_tch::proto::{print, upgrade};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let opts = TextOptions { lenient: mode & 1 == 1 };
    if mode & 2 == 0 {
        if let Ok(parsed) = parse_str::<NetParameter>(&text, "fuzz.prototxt", opts) {
            let mut net = parsed.message;
            if upgrade::upgrade_net(&mut net, "fuzz.prototxt").is_ok() {
                let printed = print::to_text(&net);
                if let Err(e) = parse_str::<NetParameter>(&printed, "printed.prototxt", TextOptions::default()) {
                    panic!("a printed net does not parse: {e}\n{printed}");
                }
            }
        }
    } else if let Ok(parsed) = parse_str::<SolverParameter>(&text, "fuzz_solver.prototxt", opts) {
        let mut solver = parsed.message;
        if upgrade::upgrade_solver(&mut solver, "fuzz_solver.prototxt").is_ok() {
            let printed = print::to_text(&solver);
            if let Err(e) = parse_str::<SolverParameter>(&printed, "printed.prototxt", TextOptions::default()) {
                panic!("a printed solver does not parse: {e}\n{printed}");
            }
        }
    }
});
