//! Faults during training and data builds (issue #15, item 4), each through
//! the `caffe` binary on real files: the run ends with exit 1 and one error
//! line naming the file (or the record), the last good snapshot is intact,
//! and no temporary file is left. Nothing here needs root or a special file
//! system: a full disk is a file-size limit (RLIMIT_FSIZE, with SIGXFSZ
//! ignored so a write past it fails with EFBIG instead of killing the process).
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use caffe_tch::data::db::key_display;
use caffe_tch::data::{datum, open_cursor, Backend};
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::NetParameter;

use crate::common;

/// A net that trains in microseconds: DummyData into one InnerProduct.
const NET: &str = r#"name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 16 } shape { dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"#;

/// A folder with `net.prototxt`, a `snaps/` folder and `solver.prototxt`
/// (SGD to `max_iter`, a snapshot every `snapshot` iterations into snaps/s).
fn workdir(max_iter: u32, snapshot: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.prototxt"), NET).unwrap();
    std::fs::create_dir(dir.path().join("snaps")).unwrap();
    write_solver(dir.path(), "solver.prototxt", "net.prototxt", max_iter, snapshot);
    dir
}

fn write_solver(dir: &Path, name: &str, net: &str, max_iter: u32, snapshot: u32) {
    let text = format!(
        "net: \"{net}\" base_lr: 0.01 lr_policy: \"fixed\" momentum: 0.9 max_iter: {max_iter} snapshot: {snapshot} snapshot_prefix: \"snaps/s\" random_seed: 1\n"
    );
    std::fs::write(dir.join(name), text).unwrap();
}

fn caffe(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caffe"));
    c.args(args).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// `caffe` with every file it writes limited to `max_file_bytes`.
fn caffe_with_file_limit(dir: &Path, args: &[&str], max_file_bytes: u64) -> Command {
    let mut c = caffe(dir, args);
    // SAFETY: between fork and exec this calls only async-signal-safe functions
    // (signal, setrlimit) and allocates nothing.
    unsafe {
        c.pre_exec(move || {
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            let limit = libc::rlimit { rlim_cur: max_file_bytes, rlim_max: max_file_bytes };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("run caffe")
}

/// Asserts a clean success.
fn ok(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// Asserts exit 1, no panic, exactly one error line; returns it.
fn one_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("caffe: error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    lines[0].to_string()
}

/// The names in `dir` that look like temporary files.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp") || n.contains(".part"))
                .collect()
        })
        .unwrap_or_default()
}

fn snapshot_files(dir: &Path, iter: u32) -> (PathBuf, PathBuf) {
    let snaps = dir.join("snaps");
    (snaps.join(format!("s_iter_{iter}.caffemodel")), snaps.join(format!("s_iter_{iter}.solverstate")))
}

/// A full disk during a snapshot: the run stops with the file's name and
/// EFBIG; the snapshot before it is byte for byte what it was; nothing half
/// written is left.
#[test]
fn a_full_disk_during_a_snapshot_keeps_the_previous_snapshot() {
    let dir = workdir(2, 2);
    let d = dir.path();
    ok(&run(caffe(d, &["train", "-solver", "solver.prototxt"])));
    let (model, state) = snapshot_files(d, 2);
    let before = (std::fs::read(&model).unwrap(), std::fs::read(&state).unwrap());

    write_solver(d, "longer.prototxt", "net.prototxt", 4, 2);
    let limit = 64; // a caffemodel of this net is a few hundred bytes
    let args = ["train", "-solver", "longer.prototxt", "-snapshot", "snaps/s_iter_2.solverstate"];
    let e = one_error(&run(caffe_with_file_limit(d, &args, limit)));
    assert!(e.contains("snaps/s_iter_4.caffemodel") && e.contains("File too large"), "{e}");

    assert_eq!(
        (std::fs::read(&model).unwrap(), std::fs::read(&state).unwrap()),
        before,
        "the iteration-2 snapshot changed"
    );
    let (model4, state4) = snapshot_files(d, 4);
    assert!(!model4.exists() && !state4.exists(), "a snapshot of iteration 4 was left");
    assert_eq!(temporaries(&d.join("snaps")), Vec::<String>::new());
    // The surviving snapshot still resumes.
    ok(&run(caffe(d, &["train", "-solver", "longer.prototxt", "-snapshot", "snaps/s_iter_2.solverstate"])));
}

/// Waits for `child` up to `limit`, killing it (and failing) past that.
fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            child.kill().ok();
            let out = child.wait_with_output().expect("output");
            panic!("caffe did not stop within {limit:?}:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The snapshot folder removed while training runs: the next snapshot is an
/// error naming its file, not a silent loss of every later snapshot.
#[test]
fn the_snapshot_folder_removed_mid_run_is_an_error_naming_the_file() {
    let dir = workdir(100_000_000, 200);
    let d = dir.path();
    let child = caffe(d, &["train", "-solver", "solver.prototxt"]).spawn().expect("spawn caffe");
    let (first, _) = snapshot_files(d, 200);
    let start = Instant::now();
    while !first.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no first snapshot after a minute");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A snapshot being written while the folder goes can make one removal
    // fail (the folder is not empty yet): retry until it is gone.
    while d.join("snaps").exists() {
        std::fs::remove_dir_all(d.join("snaps")).ok();
    }
    let e = one_error(&wait_with_limit(child, Duration::from_secs(60)));
    assert!(e.contains("snaps/s_iter_") && e.contains("No such file or directory"), "{e}");
}

/// A weights file truncated between runs: resuming, fine-tuning and testing
/// from it each stop with one line naming the file.
#[test]
fn a_truncated_caffemodel_is_an_error_naming_it() {
    let dir = workdir(2, 2);
    let d = dir.path();
    ok(&run(caffe(d, &["train", "-solver", "solver.prototxt"])));
    let (model, _) = snapshot_files(d, 2);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();

    write_solver(d, "longer.prototxt", "net.prototxt", 4, 2);
    for args in [
        &["train", "-solver", "longer.prototxt", "-snapshot", "snaps/s_iter_2.solverstate"][..],
        &["train", "-solver", "solver.prototxt", "-weights", "snaps/s_iter_2.caffemodel"][..],
        &["test", "-model", "net.prototxt", "-weights", "snaps/s_iter_2.caffemodel", "-iterations", "1"][..],
    ] {
        let e = one_error(&run(caffe(d, args)));
        assert!(e.contains("s_iter_2.caffemodel") && e.contains("truncated"), "{args:?}: {e}");
    }
    assert_eq!(temporaries(&d.join("snaps")), Vec::<String>::new());
}

/// NaN weights loaded with -weights: Caffe would train on and print `loss =
/// nan`; caffe-tch warns at load (naming the layer) and stops at the first
/// non-finite loss with an error naming the iteration.
#[test]
fn nan_weights_are_named_at_load_and_stop_training() {
    let dir = workdir(5, 5);
    let d = dir.path();
    ok(&run(caffe(d, &["train", "-solver", "solver.prototxt"])));
    let (model, _) = snapshot_files(d, 5);
    let mut weights: NetParameter = binary::read_message(&model).unwrap();
    let ip = weights.layer.iter_mut().find(|l| l.name() == "ip").expect("layer ip");
    ip.blobs[0].data[0] = f32::NAN;
    binary::write_message(&d.join("nan.caffemodel"), &weights).unwrap();

    let out = run(caffe(d, &["train", "-solver", "solver.prototxt", "-weights", "nan.caffemodel"]));
    let e = one_error(&out);
    assert!(e.contains("Iteration 0: the loss is NaN (not finite)"), "{e}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.contains("nan.caffemodel")
            && l.contains("layer 'ip'")
            && l.contains("1 value(s) that are not finite")),
        "no load-time warning naming the layer:\n{err}"
    );
}

/// Flips `channels: 1` to 2 in the `nth` record of an LMDB (one bit, as a bad
/// disk would), in the data file's bytes, and returns the record's key. An
/// LMDB keeps stale copies of rewritten pages, so every copy of the value is
/// damaged.
fn damage_one_record(db: &Path, nth: usize) -> String {
    let (key, value) = {
        let mut cursor = open_cursor(db, Backend::Lmdb).unwrap();
        for _ in 0..nth {
            cursor.next().unwrap();
        }
        (cursor.key().to_vec(), cursor.value().to_vec())
    };
    assert_eq!(datum::parse(&value).unwrap().channels(), 1, "a grey record");
    assert_eq!(value[..2], [0x08, 0x01], "a Datum starting with channels: 1");
    let file = db.join("data.mdb");
    let mut bytes = std::fs::read(&file).unwrap();
    let copies: Vec<usize> =
        bytes.windows(value.len()).enumerate().filter(|(_, w)| *w == value.as_slice()).map(|(i, _)| i).collect();
    assert!(!copies.is_empty(), "the value is in the data file");
    for at in copies {
        bytes[at + 1] = 0x02;
    }
    std::fs::write(&file, bytes).unwrap();
    key_display(&key)
}

/// A corrupt record in the middle of an LMDB: training stops with the source
/// and the record's key; the snapshots before it are complete.
#[test]
fn a_corrupt_lmdb_record_stops_training_naming_its_key() {
    let fixture = common::caffe_ref("lmdb/fmnist_train2k_lmdb");
    let dir = workdir(30, 5);
    let d = dir.path();
    let db = d.join("train_lmdb");
    std::fs::create_dir(&db).unwrap();
    std::fs::copy(fixture.join("data.mdb"), db.join("data.mdb")).unwrap();
    let key = damage_one_record(&db, 1000);
    std::fs::write(
        d.join("lmdb_net.prototxt"),
        r#"name: "lmdb"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 } data_param { source: "train_lmdb" batch_size: 100 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"#,
    )
    .unwrap();
    write_solver(d, "lmdb_solver.prototxt", "lmdb_net.prototxt", 30, 5);
    let e = one_error(&run(caffe(d, &["train", "-solver", "lmdb_solver.prototxt"])));
    assert!(e.contains("train_lmdb") && e.contains(&format!("record '{key}'")) && e.contains("2×28×28"), "{e}");
    // Record 1000 is in batch 10: the snapshot of iteration 5 was written whole.
    let (model, state) = snapshot_files(d, 5);
    let weights: NetParameter = binary::read_message(&model).expect("the iteration-5 model reads");
    assert!(weights.layer.iter().any(|l| l.name() == "ip" && l.blobs.len() == 2));
    assert!(caffe_tch::solver::snapshot::read_state(&state).is_ok());
    assert_eq!(temporaries(&d.join("snaps")), Vec::<String>::new());
}

/// A DB build that fails part way (the disk fills): no DB under the target
/// name and no temporary folder beside it.
#[test]
fn a_db_build_that_fails_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 200 MNIST-format images of 28×28.
    let n = 200u32;
    let mut images = [0x803u32, n, 28, 28].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    images.extend((0..n as usize * 784).map(|i| (i % 251) as u8));
    let mut labels = [0x801u32, n].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    labels.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(d.join("images"), images).unwrap();
    std::fs::write(d.join("labels"), labels).unwrap();
    for backend in ["lmdb", "leveldb"] {
        let target = format!("out_{backend}");
        let args = ["convert_mnist_data", "-backend", backend, "images", "labels", &target];
        let e = one_error(&run(caffe_with_file_limit(d, &args, 32 << 10)));
        // LevelDB reports the EFBIG; liblmdb turns it into EIO. Either way the DB is named.
        assert!(
            e.contains(&target) && (e.contains("File too large") || e.contains("Input/output error")),
            "{backend}: {e}"
        );
        assert!(!d.join(&target).exists(), "{backend}: a half-built DB was left under its name");
        let left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(&target))
            .collect();
        assert!(left.is_empty(), "{backend}: left behind: {left:?}");
    }
}

/// An allocation the system refuses although it is within caffe-tch's own
/// memory limit (here `ulimit -v`, RLIMIT_AS, of 3 GiB, and a net whose
/// InnerProduct weights alone need 8 GiB): the one error line says libtorch
/// is out of memory, exit code 1, no panic. It used to panic inside tch,
/// which unwraps libtorch's error where a filler's Scalar is freed.
#[test]
fn an_allocation_the_system_refuses_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("big.prototxt"),
        r#"layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 65536 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 32768 } }"#,
    )
    .unwrap();
    let mut c = caffe(dir.path(), &["time", "-model", "big.prototxt", "-iterations", "1"]);
    let address_space: u64 = 3 << 30;
    // SAFETY: between fork and exec this calls only setrlimit and allocates nothing.
    unsafe {
        c.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: address_space, rlim_max: address_space };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let e = one_error(&run(c));
    assert!(e.contains("libtorch: out of memory allocating 8589934592 bytes"), "{e}");
}
