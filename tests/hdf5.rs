//! HDF5: the HDF5Data/HDF5Output layers and `snapshot_format: HDF5`, checked
//! against snapshots written by BVLC Caffe (tests/fixtures/caffe-ref/extra/hdf5snap).
use std::path::Path;

use caffe_tch::layers::{create_layer, Ctx, Layer};
use caffe_tch::net::Net;
use caffe_tch::proto::caffe::{
    solver_parameter::SnapshotFormat, BlobShape, InputParameter, NetParameter, Phase, SolverParameter,
};
use caffe_tch::proto::text::{self, TextOptions};
use caffe_tch::solver::{Solver, SolverOptions};
use hdf5::types::TypeDescriptor;
use tch::{Device, Kind, Tensor};

use crate::common::layer::lp;
use crate::common::{caffe_ref, net_state, rng_exclusive, rng_shared};

fn snap(rel: &str) -> std::path::PathBuf {
    caffe_ref("extra/hdf5snap").join(rel)
}

/// Caffe's LeNet with its Data layers swapped for Input layers of the same
/// name and shape (the LMDB is not needed to check weights).
fn lenet_param() -> NetParameter {
    let mut net = text::read_file::<NetParameter>(&snap("lenet_train_test.prototxt"), TextOptions::default())
        .expect("net prototxt")
        .message;
    for l in &mut net.layer {
        if l.r#type() == "Data" {
            let batch = l.data_param.as_ref().map_or(64, |d| d.batch_size() as i64);
            l.r#type = Some("Input".into());
            l.data_param = None;
            l.transform_param = None;
            l.input_param = Some(InputParameter {
                shape: vec![BlobShape { dim: vec![batch, 1, 28, 28] }, BlobShape { dim: vec![batch] }],
            });
        }
    }
    net
}

fn train_net() -> Net {
    Net::new(&lenet_param(), &net_state(Phase::Train), caffe_tch::net::NetSource::new("lenet"), Device::Cpu)
        .expect("net")
}

fn assert_same_weights(a: &Net, b: &Net) {
    for name in a.layer_names() {
        let (wa, wb) = (a.layer_blobs(name).unwrap(), b.layer_blobs(name).unwrap());
        assert_eq!(wa.len(), wb.len(), "layer {name}");
        for (j, (x, y)) in wa.iter().zip(&wb).enumerate() {
            assert_eq!(x.size(), y.size(), "layer {name} blob {j}");
            assert!(x.equal(y), "layer {name} blob {j} differs");
        }
    }
}

/// Every group and dataset of a file: (path, shape, type), sorted.
fn listing(path: &Path) -> Vec<(String, Vec<usize>, String)> {
    fn walk(g: &hdf5::Group, prefix: &str, out: &mut Vec<(String, Vec<usize>, String)>) {
        for n in g.member_names().unwrap() {
            let full = format!("{prefix}/{n}");
            if let Ok(sub) = g.group(&n) {
                out.push((full.clone(), vec![], "group".into()));
                walk(&sub, &full, out);
            } else {
                let d = g.dataset(&n).unwrap();
                let t = d.dtype().unwrap().to_descriptor().unwrap();
                // learned_net's length depends on the path; compare the kind.
                let t = match t {
                    TypeDescriptor::FixedAscii(_) => "fixed ascii".to_string(),
                    t => format!("{t:?}"),
                };
                out.push((full, d.shape(), t));
            }
        }
    }
    let f = caffe_tch::data::hdf5::options().open(path).unwrap();
    let mut out = vec![];
    walk(&f, "", &mut out);
    out.sort();
    out
}

fn read_f32(path: &Path, dataset: &str) -> Tensor {
    let f = caffe_tch::data::hdf5::options().open(path).unwrap();
    let d = f.dataset(dataset).unwrap();
    let shape: Vec<i64> = d.shape().iter().map(|&x| x as i64).collect();
    Tensor::from_slice(&d.read_raw::<f32>().unwrap()).reshape(shape.as_slice())
}

fn new_solver(dir: &Path) -> Solver {
    let mut p =
        text::read_file::<SolverParameter>(&snap("solver.prototxt"), TextOptions::default()).expect("solver").message;
    p.net = None;
    p.net_param = Some(lenet_param());
    p.snapshot_prefix = Some(dir.join("lenet").display().to_string());
    assert_eq!(p.snapshot_format(), SnapshotFormat::Hdf5);
    let mut s = Solver::new(p, None, SolverOptions { device: Some(Device::Cpu), ..Default::default() })
        .unwrap_or_else(|e| panic!("solver: {e}"));
    s.set_progress(false);
    s
}

#[test]
fn caffe_hdf5_model_loads_same_weights_as_binary() {
    let _rng = rng_shared(); // the nets' fillers
    let mut from_h5 = train_net();
    from_h5.load_weights(&snap("lenet_iter_10.caffemodel.h5")).unwrap();
    let mut from_binary = train_net();
    from_binary.load_weights(&snap("lenet_iter_10.binary.caffemodel")).unwrap();
    assert_same_weights(&from_h5, &from_binary);
    // And not by accident equal to fresh random weights.
    let fresh = train_net();
    assert!(!fresh.layer_blobs("conv1").unwrap()[0].equal(from_h5.layer_blobs("conv1").unwrap()[0]));
}

#[test]
fn resumes_from_caffe_hdf5_solverstate() {
    let _rng = rng_shared(); // the solver's net draws its fillers
    let tmp = tempfile::tempdir().unwrap();
    let mut solver = new_solver(tmp.path());
    let state = snap("lenet_iter_10.solverstate.h5");
    solver.restore(&state).unwrap_or_else(|e| panic!("restore: {e}"));
    assert_eq!(solver.iter(), 10);
    assert_eq!(solver.current_step(), 0);
    assert_eq!(solver.history().len(), 8);
    for (i, h) in solver.history().iter().enumerate() {
        let want = read_f32(&state, &format!("history/{i}"));
        assert!(h.equal(&want), "history {i} differs from Caffe's");
    }
    let mut binary = train_net();
    binary.load_weights(&snap("lenet_iter_10.binary.caffemodel")).unwrap();
    assert_same_weights(solver.net(), &binary);
}

#[test]
fn hdf5_snapshot_has_caffe_layout_and_reads_back() {
    let _rng = rng_shared(); // the solver's net draws its fillers
    let tmp = tempfile::tempdir().unwrap();
    let mut solver = new_solver(tmp.path());
    solver.restore(&snap("lenet_iter_10.solverstate.h5")).unwrap();
    let files = solver.snapshot().unwrap();
    assert_eq!(files.model, tmp.path().join("lenet_iter_10.caffemodel.h5"));
    assert_eq!(files.state, tmp.path().join("lenet_iter_10.solverstate.h5"));

    // Same groups, datasets, shapes and types as Caffe's files.
    assert_eq!(listing(&files.model), listing(&snap("lenet_iter_10.caffemodel.h5")));
    assert_eq!(listing(&files.state), listing(&snap("lenet_iter_10.solverstate.h5")));
    let f = caffe_tch::data::hdf5::options().open(&files.state).unwrap();
    let learned = f.dataset("learned_net").unwrap();
    let model_name = files.model.display().to_string();
    assert_eq!(learned.dtype().unwrap().to_descriptor().unwrap(), TypeDescriptor::FixedAscii(model_name.len() + 1));
    assert_eq!(f.dataset("iter").unwrap().read_raw::<i32>().unwrap(), vec![10]);
    assert_eq!(f.dataset("current_step").unwrap().read_raw::<i32>().unwrap(), vec![0]);
    drop(f);

    // Values: Caffe's, written back unchanged.
    for (ours, caffe) in [("data/ip1/0", "data/ip1/0"), ("data/conv2/1", "data/conv2/1")] {
        assert!(read_f32(&files.model, ours).equal(&read_f32(&snap("lenet_iter_10.caffemodel.h5"), caffe)));
    }
    assert!(read_f32(&files.state, "history/4").equal(&read_f32(&snap("lenet_iter_10.solverstate.h5"), "history/4")));

    // Our reader takes our files back.
    let mut resumed = new_solver(tmp.path());
    resumed.restore(&files.state).unwrap();
    assert_eq!(resumed.iter(), 10);
    assert_same_weights(resumed.net(), solver.net());
    for (a, b) in resumed.history().iter().zip(solver.history()) {
        assert!(a.equal(b));
    }
}

#[test]
fn hdf5_model_errors_name_the_file() {
    let _rng = rng_shared(); // the nets' fillers
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.caffemodel.h5");
    std::fs::write(&bad, b"not hdf5").unwrap();
    let e = train_net().load_weights(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.caffemodel.h5"), "{e}");
}

// ----- layers -----------------------------------------------------------------

fn layer(text: &str) -> Box<dyn Layer> {
    create_layer(&lp(text)).unwrap_or_else(|e| panic!("{e}"))
}

fn ctx() -> Ctx {
    Ctx { phase: Phase::Train, iteration: 0, device: Device::Cpu }
}

/// A file whose rows are `first, first+1, ...`: "data" (double) rows of 2x2
/// all equal to the row's number, "label" (float) the row's number.
fn write_rows(path: &Path, first: usize, rows: usize) {
    let f = caffe_tch::data::hdf5::options().create(path).unwrap();
    let data: Vec<f64> = (first..first + rows).flat_map(|r| [r as f64; 4]).collect();
    f.new_dataset::<f64>().shape([rows, 2, 2]).create("data").unwrap().write_raw(&data).unwrap();
    let label: Vec<f32> = (first..first + rows).map(|r| r as f32).collect();
    f.new_dataset::<f32>().shape([rows]).create("label").unwrap().write_raw(&label).unwrap();
}

fn hdf5_data(dir: &Path, files: &[&str], batch: usize, shuffle: bool) -> Box<dyn Layer> {
    let list = dir.join("list.txt");
    let paths: Vec<String> = files.iter().map(|f| dir.join(f).display().to_string()).collect();
    std::fs::write(&list, paths.join("\n") + "\n").unwrap();
    layer(&format!(
        r#"name: "h5" type: "HDF5Data" top: "data" top: "label"
           hdf5_data_param {{ source: "{}" batch_size: {batch} shuffle: {shuffle} }}"#,
        list.display()
    ))
}

fn labels(tops: &[Tensor]) -> Vec<f32> {
    Vec::<f32>::try_from(&tops[1]).unwrap()
}

#[test]
fn hdf5_data_reads_across_files_and_wraps() {
    let tmp = tempfile::tempdir().unwrap();
    write_rows(&tmp.path().join("a.h5"), 0, 3);
    write_rows(&tmp.path().join("b.h5"), 3, 2);
    let mut l = hdf5_data(tmp.path(), &["a.h5", "b.h5"], 4, false);
    let out = l.setup(&[]).unwrap();
    assert_eq!(out.tops, vec![vec![4, 2, 2], vec![4]]);
    assert!(out.params.is_empty());
    let b1 = l.forward(&ctx(), &[], &[]).unwrap();
    assert_eq!(b1[0].kind(), Kind::Float);
    assert_eq!(b1[0].size(), vec![4, 2, 2]);
    assert_eq!(labels(&b1), vec![0.0, 1.0, 2.0, 3.0]);
    let data: Vec<f32> = Vec::try_from(&b1[0].reshape([-1])).unwrap();
    assert_eq!(&data[8..12], &[2.0; 4]);
    assert_eq!(&data[12..16], &[3.0; 4]);
    let b2 = l.forward(&ctx(), &[], &[]).unwrap();
    assert_eq!(labels(&b2), vec![4.0, 0.0, 1.0, 2.0]);
    let b3 = l.forward(&ctx(), &[], &[]).unwrap();
    assert_eq!(labels(&b3), vec![3.0, 4.0, 0.0, 1.0]);
}

#[test]
fn hdf5_data_shuffle_permutes_rows_and_is_seeded() {
    let _rng = rng_exclusive(); // seeds, then expects the same order twice
    let tmp = tempfile::tempdir().unwrap();
    write_rows(&tmp.path().join("a.h5"), 0, 6);
    write_rows(&tmp.path().join("b.h5"), 6, 4);
    let run = || {
        tch::manual_seed(7);
        let mut l = hdf5_data(tmp.path(), &["a.h5", "b.h5"], 5, true);
        l.setup(&[]).unwrap();
        (0..4).flat_map(|_| labels(&l.forward(&ctx(), &[], &[]).unwrap())).collect::<Vec<f32>>()
    };
    let first = run();
    assert_eq!(first, run(), "same seed, same order");
    // Each pass over both files sees every row once; files stay whole.
    for pass in first.chunks(10) {
        let mut sorted = pass.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(sorted, (0..10).map(|r| r as f32).collect::<Vec<_>>());
        let a_first = pass[0] < 6.0;
        let split = if a_first { 6 } else { 4 };
        assert!(pass[..split].iter().all(|&r| (r < 6.0) == a_first), "rows of one file come together: {pass:?}");
    }
    assert_ne!(first[..10], (0..10).map(|r| r as f32).collect::<Vec<_>>()[..], "shuffled");
}

#[test]
fn hdf5_data_errors_name_layer_file_and_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    write_rows(&tmp.path().join("a.h5"), 0, 3);
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, tmp.path().join("a.h5").display().to_string()).unwrap();
    let mut l = layer(&format!(
        r#"name: "h5" type: "HDF5Data" top: "data" top: "weights" hdf5_data_param {{ source: "{}" batch_size: 2 }}"#,
        list.display()
    ));
    let e = l.setup(&[]).unwrap_err().to_string();
    assert!(e.contains("h5") && e.contains("a.h5") && e.contains("'weights'"), "{e}");

    let mut l = hdf5_data(tmp.path(), &["missing.h5"], 2, false);
    let e = l.setup(&[]).unwrap_err().to_string();
    assert!(e.contains("missing.h5"), "{e}");
}

#[test]
fn hdf5_output_writes_latest_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("out.h5");
    let mut l = layer(&format!(
        r#"name: "out" type: "HDF5Output" bottom: "data" bottom: "label" hdf5_output_param {{ file_name: "{}" }}"#,
        file.display()
    ));
    let out = l.setup(&[vec![2, 3], vec![2]]).unwrap();
    assert!(out.tops.is_empty());
    for step in 0..2 {
        let data = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]) + step as f64;
        let label = Tensor::from_slice(&[7.0f32, 8.0]) + step as f64;
        assert!(l.forward(&ctx(), &[data.shallow_clone(), label.shallow_clone()], &[]).unwrap().is_empty());
        assert_eq!(
            listing(&file),
            vec![
                ("/data".into(), vec![2, 3, 1, 1], "Float(U4)".into()),
                ("/label".into(), vec![2, 1, 1, 1], "Float(U4)".into())
            ]
        );
        assert!(read_f32(&file, "data").equal(&data.reshape([2, 3, 1, 1])));
        assert!(read_f32(&file, "label").equal(&label.reshape([2, 1, 1, 1])));
    }
}

/// End to end: a solver trains from HDF5Data, snapshots in HDF5 and a second
/// solver resumes from that snapshot with the same weights and history.
#[test]
fn solver_trains_from_hdf5_data_and_resumes_from_hdf5_snapshot() {
    let _rng = rng_shared(); // the solver's net draws its fillers
    let tmp = tempfile::tempdir().unwrap();
    write_rows(&tmp.path().join("a.h5"), 0, 6);
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, tmp.path().join("a.h5").display().to_string()).unwrap();
    let solver_text = format!(
        r#"net_param {{
             layer {{ name: "h5" type: "HDF5Data" top: "data" top: "label" hdf5_data_param {{ source: "{}" batch_size: 4 }} }}
             layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
                     inner_product_param {{ num_output: 6 weight_filler {{ type: "xavier" }} }} }}
             layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
           }}
           base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" max_iter: 3 snapshot: 3 random_seed: 1
           snapshot_format: HDF5 snapshot_prefix: "{}" solver_mode: CPU display: 0"#,
        list.display(),
        tmp.path().join("tiny").display()
    );
    let param = text::parse_str::<SolverParameter>(&solver_text, "solver", TextOptions::default()).unwrap().message;
    let options = || SolverOptions { device: Some(Device::Cpu), ..Default::default() };
    let mut solver = Solver::new(param.clone(), None, options()).unwrap_or_else(|e| panic!("{e}"));
    solver.set_progress(false);
    solver.solve().unwrap_or_else(|e| panic!("{e}"));
    let files = solver.last_snapshot().expect("a snapshot").clone();
    assert_eq!(files.state, tmp.path().join("tiny_iter_3.solverstate.h5"));
    let names: Vec<String> = listing(&files.model).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names, ["/data", "/data/h5", "/data/ip", "/data/ip/0", "/data/ip/1", "/data/loss"]);

    let mut resumed = Solver::new(param, None, options()).unwrap();
    resumed.set_progress(false);
    resumed.restore(&files.state).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resumed.iter(), 3);
    assert_same_weights(resumed.net(), solver.net());
    for (a, b) in resumed.history().iter().zip(solver.history()) {
        assert!(a.equal(b));
    }
}

/// Found by fuzzing (an out-of-memory kill): a solverstate whose `iter`
/// dataset declares a billion values was read whole. Declared sizes are now
/// checked before a read allocates them; the files stay small on disk
/// (chunked datasets never written).
#[test]
fn huge_declared_datasets_are_errors_before_any_read() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("huge.solverstate.h5");
    let f = caffe_tch::data::hdf5::options().create(&state).unwrap();
    f.new_dataset::<i32>().chunk([1024]).shape([1usize << 30]).create("iter").unwrap();
    drop(f);
    assert!(std::fs::metadata(&state).unwrap().len() < 100_000);
    let e = caffe_tch::solver::hdf5_snapshot::read_state(&state).unwrap_err().to_string();
    assert!(e.contains("huge.solverstate.h5") && e.contains("holds 1073741824 values, expected one int"), "{e}");
    // The fuzzer's own file (an out-of-memory kill before the check).
    let found = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad/fuzz_huge_iter.solverstate.h5");
    let e = caffe_tch::solver::hdf5_snapshot::read_state(&found).unwrap_err().to_string();
    assert!(e.contains("fuzz_huge_iter.solverstate.h5") && e.contains("(a corrupt file)"), "{e}");

    // HDF5Data: a data file declaring 2^40 floats is over any memory limit.
    let data = tmp.path().join("huge.h5");
    let f = caffe_tch::data::hdf5::options().create(&data).unwrap();
    f.new_dataset::<f32>().chunk([1, 1024]).shape([1usize << 20, 1usize << 20]).create("data").unwrap();
    f.new_dataset::<f32>().shape([1]).create("label").unwrap();
    drop(f);
    let mut l = hdf5_data(tmp.path(), &["huge.h5"], 1, false);
    let e = l.setup(&[]).unwrap_err().to_string();
    assert!(e.contains("huge.h5") && e.contains("dataset 'data'") && e.contains("memory limit"), "{e}");
}

/// Found by fuzzing (a segfault inside libhdf5): a solverstate whose `iter`
/// is a compact dataset storing 0 of its 4 bytes. Every dataset's stored
/// bytes are checked against what it declares before libhdf5 reads it.
#[test]
fn a_dataset_storing_less_than_it_declares_is_an_error() {
    let bad =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad/fuzz_compact_int.solverstate.h5");
    let e = caffe_tch::solver::hdf5_snapshot::read_state(&bad).unwrap_err().to_string();
    assert!(
        e.contains("fuzz_compact_int.solverstate.h5")
            && e.contains("dataset 'iter' declares 1 values of 4 bytes but stores 0 bytes"),
        "{e}"
    );
}

/// Found by fuzzing: a file that crashes libhdf5 1.10 inside its own metadata
/// parsing (a local heap), out of reach of any check made from outside. Every
/// HDF5 file a user gives us is read once in a forked child first; the crash
/// is the child's, and the caffe binary stops with one error line naming the
/// file, exit code 1.
#[test]
fn a_file_that_crashes_libhdf5_is_an_error_naming_it() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad/fuzz_libhdf5_local_heap_crash.h5");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::copy(&fixture, d.join("crafted.h5")).unwrap();
    std::fs::write(d.join("list.txt"), format!("{}\n", d.join("crafted.h5").display())).unwrap();
    std::fs::write(
        d.join("net.prototxt"),
        r#"layer { name: "data" type: "HDF5Data" top: "data" top: "label" hdf5_data_param { source: "list.txt" batch_size: 1 } }"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["time", "-iterations", "1", "-model", "net.prototxt"])
        .current_dir(d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("caffe: error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("crafted.h5") && lines[0].contains("libhdf5 crashed parsing this file (signal 11, SIGSEGV)"),
        "{err}"
    );

    // The same file given as a solver state and as HDF5 weights.
    let state = d.join("crafted.solverstate.h5");
    std::fs::copy(&fixture, &state).unwrap();
    let e = caffe_tch::solver::hdf5_snapshot::read_state(&state).unwrap_err().to_string();
    assert!(e.contains("crafted.solverstate.h5") && e.contains("libhdf5 crashed parsing this file"), "{e}");
    let weights = d.join("crafted.caffemodel.h5");
    std::fs::copy(&fixture, &weights).unwrap();
    let _rng = rng_shared(); // the net's fillers
    let e = train_net().load_weights(&weights).unwrap_err().to_string();
    assert!(e.contains("crafted.caffemodel.h5") && e.contains("libhdf5 crashed parsing this file"), "{e}");
}

/// Found by fuzzing: weights whose metadata makes libhdf5 1.10 allocate
/// without end (gigabytes in seconds) instead of crashing. The check in the
/// child runs under the memory limit and a time limit, and neither the
/// allocation nor the time reaches this process: with `-max_memory 256M` the
/// child's own error comes back; with the limit left to the machine, the time
/// limit (`CAFFE_TCH_HDF5_CHECK_SECONDS`, here 1 s) stops it.
#[test]
fn a_file_that_makes_libhdf5_run_away_is_stopped_in_the_child() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad/fuzz_libhdf5_runaway.caffemodel.h5");
    let net = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/caffe-ref/fixtures/lenet/net.prototxt");
    let run = |extra: &[&str], seconds: &str| {
        let mut args = vec!["time", "-iterations", "1", "-model", net.to_str().unwrap()];
        args.extend(["-weights", fixture.to_str().unwrap()]);
        args.extend(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caffe"))
            .args(&args)
            .env(caffe_tch::data::hdf5::PROBE_SECONDS_ENV, seconds)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        let lines: Vec<String> = err.lines().filter(|l| l.starts_with("caffe: error:")).map(String::from).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains("fuzz_libhdf5_runaway.caffemodel.h5") && !err.contains("panicked"), "{err}");
        lines[0].clone()
    };
    let limited = run(&["-max_memory", "256M"], "60");
    assert!(limited.contains("cannot list group"), "{limited}");
    let timed = run(&[], "1");
    assert!(timed.contains("libhdf5 was still parsing this file after 1 s"), "{timed}");
}
