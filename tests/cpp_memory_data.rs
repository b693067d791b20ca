//! Caffe's MemoryDataLayer from C++ (`tests/fixtures/cpp/memory_data_api.cpp`):
//! a net's MemoryData layer casts to `MemoryDataLayer<float>`, `Reset` serves
//! raw arrays batch by batch and round again, `AddDatumVector` puts Datums
//! through the layer's transform_param with their labels, `set_batch_size`
//! reshapes the net after it, and bad calls are one-line errors.
use std::collections::HashMap;
use std::process::Command;

use crate::cpp_api::compile;

const NET: &str = r#"name: "memory"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 }
  transform_param { scale: 0.5 mean_value: 10 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.1 } bias_filler { type: "constant" value: 1 } } }
"#;

#[test]
fn a_cpp_program_feeds_memory_data_layers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = compile("memory_data_api", dir.path()) else { return };
    std::fs::write(dir.path().join("net.prototxt"), NET).unwrap();
    let out = Command::new(&program).arg("net.prototxt").current_dir(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: HashMap<&str, &str> =
        stdout.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k, v.trim())).collect();
    assert_eq!(lines["shape"], "2 1 2 3 MemoryData");
    assert_eq!(lines["ip is memory data"], "0");
    assert_eq!(lines["batch 1"], "0 1 2 3 4 5 6 7 8 9 10 11");
    assert_eq!(lines["batch 1 labels"], "0 1");
    assert_eq!(lines["batch 2"], "12 13 14 15 16 17 18 19 20 21 22 23");
    assert_eq!(lines["batch 2 labels"], "2 3");
    assert_eq!(lines["batch 3"], lines["batch 1"]);
    // 0.1 · Σ values + 1, for each of the two outputs.
    assert_eq!(lines["ip"], "2.5 2.5 6.1 6.1");
    assert_eq!(lines["after a write"], "100 13 14 15 16 17 18 19 20 21 22 23");
    assert!(lines["reset 3"].contains("3 items; it must be a positive multiple of batch_size 2"), "{stdout}");
    assert_eq!(lines["datums"], "5 6 7 8 9 10 10 11 12 13 14 15");
    assert_eq!(lines["datum labels"], "7 8");
    assert_eq!(lines["batch 4"], "4 4 1 2 3 (24) 4 2 (8)");
    assert_eq!(lines["batch 4 labels"], "0 1 2 3");
    assert!(lines["batch size 3"].contains("MemoryData needs its data and labels set before forward"), "{stdout}");
    assert!(
        lines["wrong datum"].contains("layer 'data' (type MemoryData)")
            && lines["wrong datum"].contains("datum 1 (1×3×3) transforms to 1×3×3, but memory_data_param gives 1×2×3"),
        "{stdout}"
    );
}
