//! `caffe data mnist [DIR]`: MNIST from a mirror, or Fashion-MNIST offline,
//! into DIR/train_lmdb and DIR/test_lmdb with DIR/DATASET.
//!
//! Nothing here needs the network: mirrors are a closed local port or a small
//! HTTP server on 127.0.0.1 serving tiny IDX files made by the test, and the
//! Fashion-MNIST folder is such files too.
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use caffe_tch::data::{datum, db};
use caffe_tch::tools::data_step::{self, DataOptions, Dataset, MNIST_FILES};
use md5::{Digest, Md5};

const TRAIN_N: usize = 30;
const TEST_N: usize = 10;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// IDX image and label files of `n` 28×28 images; `seed` makes sets differ.
fn idx_pair(n: usize, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let mut images = Vec::new();
    for v in [2051u32, n as u32, 28, 28] {
        images.extend(v.to_be_bytes());
    }
    for i in 0..n * 784 {
        images.push((i as u8).wrapping_mul(7).wrapping_add(seed));
    }
    let mut labels = Vec::new();
    for v in [2049u32, n as u32] {
        labels.extend(v.to_be_bytes());
    }
    labels.extend((0..n).map(|i| ((i + seed as usize) % 10) as u8));
    (gz(&images), gz(&labels))
}

/// The four .gz files, by MNIST's names.
fn idx_files(seed: u8) -> Vec<(String, Vec<u8>)> {
    let (ti, tl) = idx_pair(TRAIN_N, seed);
    let (vi, vl) = idx_pair(TEST_N, seed);
    MNIST_FILES.iter().map(|(n, _)| n.to_string()).zip([ti, tl, vi, vl]).collect()
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A URL nothing listens on: a port that was just free.
fn closed_mirror() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/mnist/")
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for `files` under /mnist/; it stops
/// when dropped, after 30 s, or after 20 requests, whichever is first.
struct LocalMirror {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LocalMirror {
    fn start(files: Vec<(String, Vec<u8>)>) -> LocalMirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://127.0.0.1:{}/mnist/", listener.local_addr().unwrap().port());
        let stop = Arc::new(AtomicBool::new(false));
        let files: HashMap<String, Vec<u8>> = files.into_iter().map(|(n, b)| (format!("/mnist/{n}"), b)).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline && served < 20 {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                served += 1;
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req);
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = match files.get(&path) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&body));
            }
        });
        LocalMirror { url, stop, thread: Some(thread) }
    }
}

impl Drop for LocalMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn options(dir: &Path, mirrors: Vec<String>, fashion_dir: &Path) -> DataOptions {
    let mut o = DataOptions::from_env(dir).unwrap();
    o.mirrors = mirrors;
    o.connect_timeout = Duration::from_secs(2);
    o.fashion_dir = fashion_dir.to_path_buf();
    o.allow_install = false;
    o
}

/// (records, first record's label, first record's first pixel).
fn lmdb_summary(path: &Path) -> (usize, i32, u8) {
    let mut c = db::open_cursor(path, db::Backend::Lmdb).unwrap();
    let first = datum::parse(c.value()).unwrap();
    assert_eq!(c.key(), b"00000000");
    let mut n = 0;
    while c.valid() {
        n += 1;
        c.next().unwrap();
    }
    (n, first.label(), first.data()[0])
}

#[test]
fn offline_falls_back_to_fashion_mnist() {
    let tmp = tempfile::tempdir().unwrap();
    let fashion = tmp.path().join("fashion");
    write_files(&fashion, &idx_files(3));
    let dir = tmp.path().join("data/mnist");
    let opts = options(&dir, vec![closed_mirror()], &fashion);
    let p = data_step::mnist(&opts).unwrap();
    assert_eq!(p.dataset, Dataset::FashionMnist);
    assert_eq!((p.train_records, p.test_records, p.converted), (TRAIN_N, TEST_N, true));
    assert_eq!(lmdb_summary(&dir.join("train_lmdb")), (TRAIN_N, 3, 3));
    assert_eq!(lmdb_summary(&dir.join("test_lmdb")), (TEST_N, 3, 3));
    let marker = std::fs::read_to_string(dir.join("DATASET")).unwrap();
    assert_eq!(
        marker,
        format!("Fashion-MNIST\nsource: {}\ntrain_lmdb: 30 records\ntest_lmdb: 10 records\n", fashion.display())
    );
    // No MNIST file is left half-downloaded.
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp")));

    // Complete LMDBs: the second run converts nothing.
    let again = data_step::mnist(&opts).unwrap();
    assert_eq!((again.dataset, again.converted, again.train_records), (Dataset::FashionMnist, false, TRAIN_N));

    // The command, with the mirror list and the Fashion-MNIST folder from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["data", "mnist", dir.to_str().unwrap()])
        .env("CAFFE_MNIST_MIRRORS", closed_mirror())
        .env("CAFFE_FASHION_MNIST_DIR", &fashion)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Dataset: Fashion-MNIST") && stdout.contains("already converted"), "{stdout}");
}

#[test]
fn cli_fresh_offline_run() {
    let tmp = tempfile::tempdir().unwrap();
    let fashion = tmp.path().join("fashion");
    write_files(&fashion, &idx_files(1));
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .current_dir(tmp.path())
        .args(["data", "mnist"])
        .env("CAFFE_MNIST_MIRRORS", closed_mirror())
        .env("CAFFE_MNIST_TIMEOUT", "2")
        .env("CAFFE_FASHION_MNIST_DIR", &fashion)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Dataset: Fashion-MNIST"));
    let dir = tmp.path().join("data/mnist");
    assert!(std::fs::read_to_string(dir.join("DATASET")).unwrap().starts_with("Fashion-MNIST\n"));
    assert_eq!(lmdb_summary(&dir.join("test_lmdb")).0, TEST_N);
}

#[test]
fn downloads_mnist_from_a_mirror_and_checks_md5() {
    let tmp = tempfile::tempdir().unwrap();
    let files = idx_files(5);
    let mirror = LocalMirror::start(files.clone());
    let dir = tmp.path().join("m");
    let mut opts = options(&dir, vec![closed_mirror(), mirror.url.clone()], &tmp.path().join("no-fashion"));
    opts.md5 = [0, 1, 2, 3].map(|i| md5_hex(&files[i].1));
    let p = data_step::mnist(&opts).unwrap();
    assert_eq!((p.dataset, p.origin.as_str()), (Dataset::Mnist, mirror.url.as_str()));
    assert_eq!(lmdb_summary(&dir.join("train_lmdb")), (TRAIN_N, 5, 5));
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes);
    }
    assert!(std::fs::read_to_string(dir.join("DATASET")).unwrap().starts_with("MNIST\n"));
}

#[test]
fn wrong_checksum_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    // The mirror serves files that are not MNIST (the real sums are expected).
    let mirror = LocalMirror::start(idx_files(7));
    let fashion = tmp.path().join("fashion");
    write_files(&fashion, &idx_files(2));
    let dir = tmp.path().join("m");
    let p = data_step::mnist(&options(&dir, vec![mirror.url.clone()], &fashion)).unwrap();
    assert_eq!(p.dataset, Dataset::FashionMnist);
    assert_eq!(lmdb_summary(&dir.join("train_lmdb")).1, 2);
    let left: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    assert_eq!(left, [dir.join("DATASET")], "the bad download is not kept");
}

#[test]
fn offline_without_fashion_mnist_says_how_to_install() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(&tmp.path().join("m"), vec![closed_mirror()], &tmp.path().join("missing"));
    let err = data_step::mnist(&opts).unwrap_err().to_string();
    assert!(err.contains("apt-get install dataset-fashion-mnist"), "{err}");
    assert!(!tmp.path().join("m/train_lmdb").exists());
}

#[test]
fn unfinished_run_is_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let fashion = tmp.path().join("fashion");
    write_files(&fashion, &idx_files(4));
    let dir = tmp.path().join("m");
    // An earlier run that stopped after the training LMDB (no DATASET file).
    let old = tmp.path().join("old");
    write_files(&old, &idx_files(9));
    std::fs::create_dir_all(&dir).unwrap();
    caffe_tch::tools::convert_mnist_data::convert(
        &old.join(MNIST_FILES[0].0),
        &old.join(MNIST_FILES[1].0),
        &dir.join("train_lmdb"),
        db::Backend::Lmdb,
    )
    .unwrap();
    let p = data_step::mnist(&options(&dir, vec![], &fashion)).unwrap();
    assert!(p.converted);
    assert_eq!(lmdb_summary(&dir.join("train_lmdb")), (TRAIN_N, 4, 4));
}
