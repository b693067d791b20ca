//! Caffe's `debug_info`: the solver's flag makes the train net log each blob's
//! mean |data| on forward, mean |diff| on backward, and each update.
use std::process::Command;

const NET: &str = r#"name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"#;

#[test]
fn debug_info_logs_forward_backward_and_update_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.prototxt"), NET).unwrap();
    std::fs::write(
        dir.path().join("solver.prototxt"),
        "net: \"net.prototxt\"\nbase_lr: 0.1\nlr_policy: \"fixed\"\nmax_iter: 2\ndisplay: 1\n\
         snapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: 1\ndebug_info: true\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["train", "-solver", "solver.prototxt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for needle in [
        "    [Forward] Layer data, top blob data data: ",
        "    [Forward] Layer ip, param blob 0 data: ",
        "    [Backward] Layer ip, param blob 0 diff: ",
        "    [Backward] Layer loss, bottom blob ip diff: ",
        "    [Backward] All net params (data, diff): L1 norm = (",
        "    [Update] Layer ip, param 0 data: ",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // One forward line per top (4) for each of the 2 iterations, and for the
    // final forward Caffe runs to report the loss after the last iteration.
    let top_lines = err.lines().filter(|l| l.contains("[Forward] Layer") && l.contains("top blob")).count();
    assert_eq!(top_lines, 12, "{err}");
}
