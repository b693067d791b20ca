//! The integration tests, as one test binary: each file in tests/ is a module
//! of this crate, so a test is named `<file>::<test>` (`cargo test --test
//! suite -- layers_loss::` runs one file's tests), and libtorch is linked once
//! rather than once per file. Cargo.toml sets `autotests = false`: a new file
//! in tests/ must be declared here, which `harness::every_test_file_is_a_module`
//! checks. Shared helpers are in tests/common/.
//!
//! The tests share one process: see `common::rng_exclusive` for libtorch's
//! random generator, and `skip!` for a missing prerequisite (SKIPPED lines;
//! a failure under CI).
#[macro_use]
mod common;

mod allocator;
mod annotated_data;
mod bad_input;
mod binary_io;
mod cli;
mod corpus;
mod corpus_time;
mod cpp_api;
mod cpp_custom_layer;
mod cpp_db;
mod cpp_layer_library;
mod cpp_math;
mod cpp_memory_data;
mod cuda_graph;
mod data;
mod data_step;
mod debug_info;
mod distributed;
mod dropin;
mod export_onnx;
mod export_pytorch;
mod export_safetensors;
mod faults;
mod fillers;
mod forks;
mod hdf5;
mod in_place;
mod layer_axes;
mod layers_activation;
mod layers_common;
mod layers_detection;
mod layers_devices;
mod layers_loss;
mod layers_recurrent;
mod layers_vision;
mod lmdb_pages;
mod lr_policy;
mod models;
mod net_partial;
mod no_silent_loss;
mod parity;
mod parity_nets;
mod plot_parse_log;
mod python_descriptor;
mod solver;
mod supported_layers;
mod text_format;
mod tool_progress;
mod units;
mod upgrade;
mod window_data;
mod zoo;

/// The harness itself.
mod harness {
    use std::collections::BTreeSet;

    /// Every `tests/*.rs` file (but this one) is declared as a module above:
    /// with `autotests = false` an undeclared file would never be compiled.
    #[test]
    fn every_test_file_is_a_module() {
        let tests = crate::common::repo().join("tests");
        let files: BTreeSet<String> = std::fs::read_dir(&tests)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .filter(|name| name != "suite")
            .collect();
        let root = std::fs::read_to_string(tests.join("suite.rs")).unwrap();
        let modules: BTreeSet<String> = root
            .lines()
            .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_string))
            .filter(|name| name != "common")
            .collect();
        let missing: Vec<_> = files.difference(&modules).collect();
        let stale: Vec<_> = modules.difference(&files).collect();
        assert!(missing.is_empty(), "tests/*.rs files not declared in tests/suite.rs (never compiled): {missing:?}");
        assert!(stale.is_empty(), "modules in tests/suite.rs without a file: {stale:?}");
    }

    /// Under CI a missing prerequisite fails the test, with the SKIPPED line.
    #[test]
    fn a_skip_fails_under_ci() {
        let panic = std::panic::catch_unwind(|| crate::common::skip_or_fail("suite::harness", "a thing", true))
            .expect_err("a skip under CI must fail");
        let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.starts_with("SKIPPED: harness::a_skip_fails_under_ci: a thing"), "{msg}");
    }
}
