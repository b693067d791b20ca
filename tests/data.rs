//! Datasets in and out, against files made by BVLC Caffe (tests/fixtures/caffe-ref/):
//! LMDB and LevelDB reading, our converters writing Caffe's exact bytes, the
//! Data layer's first LeNet batch, the mean image, encoded images, the other
//! data layers, and one-line errors for bad inputs.
//!
//! Tests that need Debian's Fashion-MNIST IDX files (`dataset-fashion-mnist`,
//! which `make system-deps` installs) skip without them: SKIPPED, or a
//! failure under CI.
use std::path::{Path, PathBuf};
use std::process::Command;

use caffe_tch::data::datum::{self, Sample, Values};
use caffe_tch::data::db::{open_cursor, Backend, Cursor, DbWriter};
use caffe_tch::data::image::{self as img, ColorMode};
use caffe_tch::data::resize;
use caffe_tch::data::transform::Transformer;
use caffe_tch::layers::create_layer;
use caffe_tch::net::Net;
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::ssd_resize_parameter::InterpMode;
use caffe_tch::proto::caffe::{BlobProto, Datum, Phase};
use caffe_tch::tools::{
    compute_image_mean, convert_cifar_data, convert_imageset, convert_mnist_data, convert_mnist_siamese_data,
};
use tch::{Device, Kind, Tensor};

use crate::common;
use crate::common::layer::{ctx, lp as layer};
use crate::common::{assert_one_line_error, caffe_ref, read_npy, values_f32, FASHION_MNIST_DIR};

// ------------------------------------------------------------------- helpers

/// A digest of every record, in key order: count, first and last key, and two
/// FNV-1a 64 hashes (different offsets) over length-prefixed keys and values.
fn db_digest(cursor: &mut dyn Cursor) -> String {
    let mut h1: u64 = 0xcbf29ce484222325;
    let mut h2: u64 = 0x84222325cbf29ce4;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h1 = (h1 ^ b as u64).wrapping_mul(0x100000001b3);
            h2 = (h2 ^ b as u64).wrapping_mul(0x100000001b3);
        }
    };
    let (mut n, mut first, mut last) = (0usize, String::new(), String::new());
    while cursor.valid() {
        let k = cursor.key().to_vec();
        let v = cursor.value().to_vec();
        feed(&(k.len() as u32).to_le_bytes());
        feed(&k);
        feed(&(v.len() as u32).to_le_bytes());
        feed(&v);
        if n == 0 {
            first = String::from_utf8_lossy(&k).into_owned();
        }
        last = String::from_utf8_lossy(&k).into_owned();
        n += 1;
        cursor.next().expect("next");
    }
    format!("records {n}\nfirst {first}\nlast {last}\nfnv1a64 {h1:016x} {h2:016x}\n")
}

pub(crate) fn digest_of(path: &Path, backend: Backend) -> String {
    let mut c = open_cursor(path, backend).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    db_digest(c.as_mut())
}

/// The digest of Caffe's `lmdb/fmnist_test_lmdb` (10 MB, not copied into the repo).
pub(crate) fn caffe_test_lmdb_digest() -> String {
    std::fs::read_to_string(caffe_ref("lmdb/fmnist_test_lmdb.digest")).expect("digest fixture")
}

/// Regenerates the digest fixture from the shared reference folder (run by hand).
#[test]
#[ignore]
fn make_caffe_test_lmdb_digest() {
    let Some(src) = common::shared_caffe_ref("lmdb/fmnist_test_lmdb") else {
        skip!("the shared reference folder ../shared/caffe-ref (lmdb/fmnist_test_lmdb) is not on this machine")
    };
    std::fs::write(caffe_ref("lmdb/fmnist_test_lmdb.digest"), digest_of(&src, Backend::Lmdb)).unwrap();
}

fn data_net(source: &Path, backend: &str, batch: usize, extra: &str) -> String {
    format!(
        r#"name: "d" layer {{ name: "mnist" type: "Data" top: "data" top: "label"
            data_param {{ source: "{}" batch_size: {batch} {backend} }} {extra} }}"#,
        source.display()
    )
}

/// Builds a net from prototxt text in `phase`.
fn net(text: &str, phase: Phase) -> caffe_tch::Result<Net> {
    common::net(text, "test.prototxt", phase)
}

/// Writes `records` into a new DB.
fn write_db(path: &Path, backend: Backend, records: &[(String, Vec<u8>)]) {
    let mut w = DbWriter::create(path, backend).expect("create db");
    for (k, v) in records {
        w.put(k.as_bytes(), v);
    }
    w.finish().expect("finish db");
}

fn raw_datum(c: i32, h: i32, w: i32, data: Vec<u8>, label: i32) -> Vec<u8> {
    datum::to_bytes(&Datum {
        channels: Some(c),
        height: Some(h),
        width: Some(w),
        data: Some(data),
        label: Some(label),
        ..Default::default()
    })
}

// ------------------------------------------------------------ reading Caffe's DBs

#[test]
fn lmdb_reads_caffe_train2k_read_only() {
    let path = caffe_ref("lmdb/fmnist_train2k_lmdb");
    let mut c = open_cursor(&path, Backend::Lmdb).expect("open");
    let mut n = 0;
    while c.valid() {
        assert_eq!(c.key(), format!("{n:08}").as_bytes());
        let s = datum::parse_and_decode(c.value(), ColorMode::Native).expect("datum");
        assert_eq!((s.channels, s.height, s.width), (1, 28, 28));
        assert!((0.0..10.0).contains(&s.label));
        n += 1;
        c.next().unwrap();
    }
    assert_eq!(n, 2000);
    // Lock-free read-only access leaves the folder as it was.
    assert!(!path.join("lock.mdb").exists(), "reading created lock.mdb");
}

#[test]
fn leveldb_reads_caffe_test_set_same_records_as_caffe_lmdb() {
    // LevelDB rewrites a DB when it opens it: read a copy of the fixture.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("fmnist_test_leveldb");
    copy_dir(&caffe_ref("extra/leveldb/fmnist_test_leveldb_compacted"), &copy);
    assert_eq!(digest_of(&copy, Backend::LevelDb), caffe_test_lmdb_digest());
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn leveldb_replays_a_caffe_style_log_only_db() {
    // Made by C++ LevelDB with Caffe's never-cleared write batch (tests/fixtures/leveldb/README.md).
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("logonly");
    copy_dir(&common::fixture("leveldb/caffe_style_logonly_leveldb"), &copy);
    let mut ours = open_cursor(&copy, Backend::LevelDb).unwrap();
    let mut caffe = open_cursor(&caffe_ref("lmdb/fmnist_train2k_lmdb"), Backend::Lmdb).unwrap();
    let mut n = 0;
    while ours.valid() {
        assert_eq!(ours.key(), caffe.key());
        assert_eq!(ours.value(), caffe.value());
        n += 1;
        ours.next().unwrap();
        caffe.next().unwrap();
    }
    assert_eq!(n, 30);
}

// ------------------------------------------------------------------ converters

#[test]
fn convert_mnist_test_set_matches_caffe_lmdb_bytes() {
    let Some(dir) = common::fashion_mnist() else {
        skip!("Debian's Fashion-MNIST is not in {FASHION_MNIST_DIR} (make system-deps installs dataset-fashion-mnist)")
    };
    let tmp = tempfile::tempdir().unwrap();
    let lmdb = tmp.path().join("test_lmdb");
    let n = convert_mnist_data::convert(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
        &lmdb,
        Backend::Lmdb,
    )
    .expect("convert");
    assert_eq!(n, 10000);
    assert_eq!(digest_of(&lmdb, Backend::Lmdb), caffe_test_lmdb_digest(), "keys or values differ from Caffe's LMDB");
    // The LevelDB backend holds the same records.
    let ldb = tmp.path().join("test_leveldb");
    convert_mnist_data::convert(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
        &ldb,
        Backend::LevelDb,
    )
    .expect("convert leveldb");
    assert_eq!(digest_of(&ldb, Backend::LevelDb), caffe_test_lmdb_digest());
}

#[test]
fn convert_mnist_train_set_and_mean_match_caffe() {
    let Some(dir) = common::fashion_mnist() else {
        skip!("Debian's Fashion-MNIST is not in {FASHION_MNIST_DIR} (make system-deps installs dataset-fashion-mnist)")
    };
    let tmp = tempfile::tempdir().unwrap();
    let lmdb = tmp.path().join("train_lmdb");
    let n = convert_mnist_data::convert(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
        &lmdb,
        Backend::Lmdb,
    )
    .expect("convert");
    assert_eq!(n, 60000);
    // The first 2,000 records equal Caffe's byte for byte.
    let mut ours = open_cursor(&lmdb, Backend::Lmdb).unwrap();
    let mut caffe = open_cursor(&caffe_ref("lmdb/fmnist_train2k_lmdb"), Backend::Lmdb).unwrap();
    let mut same = 0;
    while caffe.valid() {
        assert_eq!(ours.key(), caffe.key());
        assert_eq!(ours.value(), caffe.value(), "record {}", String::from_utf8_lossy(caffe.key()));
        same += 1;
        ours.next().unwrap();
        caffe.next().unwrap();
    }
    assert_eq!(same, 2000);

    let out = tmp.path().join("mean.binaryproto");
    let mean = compute_image_mean::compute(&lmdb, Some(&out), Backend::Lmdb).expect("mean");
    assert_eq!(mean.count, 60000);
    assert_eq!(caffe_tch::util::format_g(mean.channel_means[0] as f64, 6), "72.9403");
    let ours: BlobProto = binary::read_message(&out).unwrap();
    let theirs: BlobProto = binary::read_message(&caffe_ref("extra/mean/fmnist_train_mean.binaryproto")).unwrap();
    assert_eq!(binary::blob_shape(&ours), vec![1, 1, 28, 28]);
    assert_eq!((theirs.shape.is_none(), ours.shape.is_none()), (true, true), "legacy num/channels/height/width fields");
    assert_eq!(ours.data.len(), 784);
    let worst = ours.data.iter().zip(&theirs.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-5, "mean differs from Caffe's by {worst}");
    // Float sums and division in Caffe's order: the file is Caffe's, byte for byte.
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(caffe_ref("extra/mean/fmnist_train_mean.binaryproto")).unwrap()
    );
}

/// Small IDX files: `n` images 4×3 and labels.
fn write_idx(dir: &Path, n: usize, gz: bool) -> (PathBuf, PathBuf) {
    let mut images = vec![0, 0, 8, 3];
    images.extend((n as u32).to_be_bytes());
    images.extend(4u32.to_be_bytes());
    images.extend(3u32.to_be_bytes());
    images.extend((0..n * 12).map(|i| (i * 7 % 256) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    labels.extend((0..n).map(|i| (i % 10) as u8));
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = dir.join(name);
        if gz {
            use std::io::Write;
            let mut e =
                flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::default());
            e.write_all(bytes).unwrap();
            e.finish().unwrap();
        } else {
            std::fs::write(&p, bytes).unwrap();
        }
        p
    };
    (write("images.idx", &images), write("labels.idx", &labels))
}

#[test]
fn cli_convert_mnist_and_compute_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, labels) = write_idx(tmp.path(), 25, true);
    let db = tmp.path().join("small_leveldb");
    let caffe = env!("CARGO_BIN_EXE_caffe");
    let out = Command::new(caffe)
        .args(["convert_mnist_data", "-backend", "leveldb"])
        .args([&images, &labels, &db])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("A total of 25 items.") && log.contains("Rows: 4 Cols: 3") && log.contains("Processed 25 files."),
        "{log}"
    );
    let mean_file = tmp.path().join("mean.binaryproto");
    let out = Command::new(caffe)
        .arg("compute_image_mean")
        .arg("--backend=leveldb")
        .arg(&db)
        .arg(&mean_file)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let blob: BlobProto = binary::read_message(&mean_file).unwrap();
    assert_eq!(binary::blob_shape(&blob), vec![1, 1, 4, 3]);
    // Pixel i of image k is (12k + i)·7 mod 256.
    let expect: Vec<f32> =
        (0..12).map(|i| (0..25).map(|k| ((12 * k + i) * 7 % 256) as f32).sum::<f32>() / 25.0).collect();
    assert_eq!(blob.data, expect);
    let channel = expect.iter().sum::<f32>() / 12.0;
    assert!(
        log.contains(&format!("mean_value channel [0]: {}", caffe_tch::util::format_g(channel as f64, 6))),
        "{log}"
    );
    // A DB is never overwritten, and the error is one line.
    let out = Command::new(caffe).args(["convert_mnist_data"]).args([&images, &labels, &db]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
}

/// Caffe's siamese example converter: N records, each two of the N images
/// (drawn at random) stacked as channels, labelled 1 when their classes agree.
#[test]
fn convert_mnist_siamese_pairs_images_and_labels_their_match() {
    use rand::SeedableRng;
    let tmp = tempfile::tempdir().unwrap();
    let (images, labels) = write_idx(tmp.path(), 25, true);
    // Image k's pixel i is (12k + i)·7 mod 256 (distinct images); its label k mod 10.
    let image = |k: usize| -> Vec<u8> { (0..12).map(|i| ((12 * k + i) * 7 % 256) as u8).collect() };
    let source = |half: &[u8]| (0..25).find(|&k| image(k) == half).expect("each half is one of the images");
    let check = |db: &Path, backend: Backend| -> Vec<(usize, usize)> {
        let mut cursor = open_cursor(db, backend).unwrap();
        let mut pairs = Vec::new();
        while cursor.valid() {
            assert_eq!(cursor.key(), format!("{:08}", pairs.len()).as_bytes());
            let d = datum::parse(cursor.value()).unwrap();
            assert_eq!((d.channels(), d.height(), d.width()), (2, 4, 3));
            let (a, b) = (source(&d.data()[..12]), source(&d.data()[12..]));
            assert_eq!(d.label(), i32::from(a % 10 == b % 10), "pair ({a}, {b})");
            pairs.push((a, b));
            cursor.next().unwrap();
        }
        assert_eq!(pairs.len(), 25);
        pairs
    };
    let db = tmp.path().join("pairs_lmdb");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    assert_eq!(convert_mnist_siamese_data::convert(&images, &labels, &db, Backend::Lmdb, &mut rng).unwrap(), 25);
    let pairs = check(&db, Backend::Lmdb);
    assert!(pairs.iter().any(|(a, b)| a != b) && pairs.iter().any(|(a, _)| *a != pairs[0].0), "{pairs:?}");
    // The command writes LevelDB, as Caffe's tool does, and logs its lines.
    let db = tmp.path().join("pairs_leveldb");
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .arg("convert_mnist_siamese_data")
        .args([&images, &labels, &db])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("A total of 25 items.") && log.contains("Rows: 4 Cols: 3"), "{log}");
    check(&db, Backend::LevelDb);
    // Counts that disagree: one line naming both files, and no DB.
    std::fs::create_dir(tmp.path().join("more")).unwrap();
    let (more_images, _) = write_idx(&tmp.path().join("more"), 30, false);
    let db = tmp.path().join("none");
    let e = convert_mnist_siamese_data::convert(&more_images, &labels, &db, Backend::LevelDb, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds 30 images but") && e.contains("labels.idx") && !e.contains('\n'), "{e}");
    assert!(!db.exists());
}

/// Caffe's CIFAR-10 converter: five train batches into one DB with keys
/// running across them, the test batch into another; the bytes as they are
/// (CIFAR's RGB planes), the label byte as the label.
#[test]
fn convert_cifar_writes_train_and_test_dbs() {
    const RECORDS: usize = 7;
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&input).unwrap();
    // Record r of file f: label (f + r) mod 10, pixel i = (f·31 + r·7 + i) mod 256.
    let record = |f: usize, r: usize| -> (u8, Vec<u8>) {
        (((f + r) % 10) as u8, (0..3072).map(|i| ((f * 31 + r * 7 + i) % 256) as u8).collect())
    };
    let names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"];
    for (f, name) in names.iter().enumerate() {
        let mut bytes = Vec::new();
        for r in 0..RECORDS {
            let (label, pixels) = record(f, r);
            bytes.push(label);
            bytes.extend(pixels);
        }
        std::fs::write(input.join(format!("{name}.bin")), bytes).unwrap();
    }
    let out = tmp.path().join("cifar10");
    std::fs::create_dir(&out).unwrap();
    let n = convert_cifar_data::convert(&input, &out, Backend::Lmdb, RECORDS).unwrap();
    assert_eq!(n, (5 * RECORDS, RECORDS));
    for (db, files) in [("cifar10_train_lmdb", 0..5), ("cifar10_test_lmdb", 5..6)] {
        let mut cursor = open_cursor(&out.join(db), Backend::Lmdb).unwrap();
        let mut key = 0;
        for f in files {
            for r in 0..RECORDS {
                assert!(cursor.valid(), "{db}: ends at {key}");
                assert_eq!(cursor.key(), format!("{key:05}").as_bytes());
                let d = datum::parse(cursor.value()).unwrap();
                let (label, pixels) = record(f, r);
                assert_eq!((d.channels(), d.height(), d.width(), d.label()), (3, 32, 32, i32::from(label)));
                assert_eq!(d.data(), pixels.as_slice(), "{db} record {key}");
                key += 1;
                cursor.next().unwrap();
            }
        }
        assert!(!cursor.valid(), "{db}: more records than written");
    }
    // A short batch is refused before any DB is written, naming the file.
    std::fs::write(input.join("test_batch.bin"), vec![0u8; 3 * 3073 + 5]).unwrap();
    let again = tmp.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let e = convert_cifar_data::convert(&input, &again, Backend::LevelDb, RECORDS).unwrap_err().to_string();
    assert!(e.contains("test_batch.bin: 9224 bytes, where a CIFAR-10 batch of 7 records"), "{e}");
    assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0, "nothing written");
    // The command: a folder without the batches is named, in one line.
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .arg("convert_cifar_data")
        .args([tmp.path(), &again])
        .arg("lmdb")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("should hold CIFAR-10's binary batches") && err.contains("data_batch_1.bin"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn failed_writer_leaves_no_db() {
    let tmp = tempfile::tempdir().unwrap();
    for backend in [Backend::Lmdb, Backend::LevelDb] {
        let target = tmp.path().join(format!("half_{}", backend.name()));
        {
            let mut w = DbWriter::create(&target, backend).unwrap();
            w.put(b"00000000", b"x");
            w.commit().unwrap();
            w.put(b"00000001", b"y");
            // Dropped without finish: as if the run failed here.
        }
        assert!(!target.exists());
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "temporary folders left behind: {left:?}");
    // A bad IDX file fails before anything is created.
    let bad = tmp.path().join("bad.idx");
    std::fs::write(&bad, [0u8, 0, 8, 1, 0, 0, 0, 1, 7]).unwrap();
    let e = convert_mnist_data::convert(&bad, &bad, &tmp.path().join("db"), Backend::Lmdb).unwrap_err().to_string();
    assert!(e.contains("magic"), "{e}");
    assert!(!tmp.path().join("db").exists());
}

// ------------------------------------------------------------------ Data layer

#[test]
fn lenet_first_batch_equals_caffe() {
    let _rng = common::rng_shared(); // the net
                                     // Caffe's LeNet train/test prototxt, with the TRAIN source pointed at the fixture.
    let dir = caffe_ref("fixtures/lenet/sgd20");
    let text = std::fs::read_to_string(dir.join("lenet_train_test.prototxt")).unwrap();
    let text = text.replace("lmdb/fmnist_train_lmdb", &caffe_ref("lmdb/fmnist_train2k_lmdb").display().to_string());
    let mut net = net(&text, Phase::Train).expect("LeNet TRAIN net");
    net.forward().expect("forward");
    let data = net.blob("data").unwrap().shallow_clone();
    let label = net.blob("label").unwrap().shallow_clone();
    let want_data = read_npy(&dir.join("iter0_data.npy"));
    let want_label = read_npy(&dir.join("iter0_label.npy"));
    assert_eq!(data.size(), vec![64, 1, 28, 28]);
    assert_eq!(data.kind(), Kind::Float);
    assert!(data.equal(&want_data.to_kind(Kind::Float)), "first data batch differs from Caffe's");
    assert!(label.equal(&want_label.to_kind(Kind::Float)), "first label batch differs from Caffe's");
    // The second batch continues at record 64.
    net.forward().expect("forward 2");
    let mut c = open_cursor(&caffe_ref("lmdb/fmnist_train2k_lmdb"), Backend::Lmdb).unwrap();
    for _ in 0..64 {
        c.next().unwrap();
    }
    let s = datum::parse_and_decode(c.value(), ColorMode::Native).unwrap();
    let first: Vec<f32> = (0..784).map(|i| s.at(i) * 0.00390625).collect();
    assert_eq!(values_f32(&net.blob("data").unwrap().get(0)), first);
    assert_eq!(values_f32(&net.blob("label").unwrap().get(0)), vec![s.label]);
}

#[test]
fn data_layer_wraps_at_the_end_and_honours_rand_skip() {
    let _rng = common::rng_shared(); // rand_skip
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("five");
    let records: Vec<(String, Vec<u8>)> =
        (0..5).map(|i| (format!("{i:08}"), raw_datum(1, 1, 2, vec![i as u8, 100 + i as u8], i))).collect();
    write_db(&db, Backend::LevelDb, &records);
    // Default backend: LEVELDB, as Caffe's.
    let lp = layer(&format!(
        r#"name: "d" type: "Data" top: "data" top: "label" data_param {{ source: "{}" batch_size: 3 prefetch: 2 }}"#,
        db.display()
    ));
    let mut l = create_layer(&lp).unwrap();
    let out = l.setup(&[]).unwrap();
    assert_eq!(out.tops, vec![vec![3, 1, 1, 2], vec![3]]);
    let mut labels = Vec::new();
    for _ in 0..4 {
        let tops = l.forward(&ctx(Phase::Train), &[], &[]).unwrap();
        labels.extend(values_f32(&tops[1]));
        assert_eq!(values_f32(&tops[0]).len(), 6);
    }
    assert_eq!(labels, vec![0., 1., 2., 3., 4., 0., 1., 2., 3., 4., 0., 1.]);
    // One top (no label) is allowed.
    let lp1 = layer(&format!(
        r#"name: "d" type: "Data" top: "data" data_param {{ source: "{}" batch_size: 2 }}"#,
        db.display()
    ));
    let mut l1 = create_layer(&lp1).unwrap();
    assert_eq!(l1.setup(&[]).unwrap().tops.len(), 1);
    assert_eq!(l1.forward(&ctx(Phase::Test), &[], &[]).unwrap().len(), 1);
    // rand_skip starts somewhere in [0, rand_skip).
    tch::manual_seed(3);
    let lps = layer(&format!(
        r#"name: "d" type: "Data" top: "data" top: "label" data_param {{ source: "{}" batch_size: 1 rand_skip: 4 }}"#,
        db.display()
    ));
    let mut ls = create_layer(&lps).unwrap();
    ls.setup(&[]).unwrap();
    let first = values_f32(&ls.forward(&ctx(Phase::Train), &[], &[]).unwrap()[1])[0];
    assert!((0.0..4.0).contains(&first));
}

#[test]
fn data_layer_transforms_with_mean_crop_and_mirror() {
    let _rng = common::rng_shared(); // the layers draw their seeds
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("rgb");
    // 3×4×5 images with value 100c + 10h + w (+ record index).
    let records: Vec<(String, Vec<u8>)> = (0..4)
        .map(|k| {
            let data = (0..60).map(|i| ((i / 20) * 100 + (i % 20 / 5) * 10 + i % 5 + k) as u8).collect();
            (format!("{k:08}"), raw_datum(3, 4, 5, data, k))
        })
        .collect();
    write_db(&db, Backend::Lmdb, &records);
    let mean = tmp.path().join("mean.binaryproto");
    let mean_data: Vec<f32> = (0..60).map(|i| i as f32 * 0.5).collect();
    binary::write_message(
        &mean,
        &BlobProto {
            num: Some(1),
            channels: Some(3),
            height: Some(4),
            width: Some(5),
            data: mean_data.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    // TEST: centred 2×2 crop (offsets 1, 1), mean file indexed at the crop offset, scale.
    let lp = layer(&format!(
        r#"name: "d" type: "Data" top: "data" top: "label" data_param {{ source: "{}" batch_size: 2 backend: LMDB }}
           transform_param {{ crop_size: 2 mean_file: "{}" scale: 0.5 }}"#,
        db.display(),
        mean.display()
    ));
    let mut lp_test = lp.clone();
    lp_test.phase = Some(Phase::Test as i32);
    let mut l = create_layer(&lp_test).unwrap();
    assert_eq!(l.setup(&[]).unwrap().tops[0], vec![2, 3, 2, 2]);
    let tops = l.forward(&ctx(Phase::Test), &[], &[]).unwrap();
    let got = values_f32(&tops[0]);
    let mut want = Vec::new();
    for k in 0..2 {
        for c in 0..3 {
            for h in 0..2 {
                for w in 0..2 {
                    let src = c * 20 + (h + 1) * 5 + (w + 1);
                    let x = ((src / 20) * 100 + (src % 20 / 5) * 10 + src % 5 + k) as f32;
                    want.push((x - mean_data[src]) * 0.5);
                }
            }
        }
    }
    assert_eq!(got, want);
    // Per-channel mean values, mirror: every item is either as is or flipped.
    let sample = datum::parse_and_decode(&records[0].1, ColorMode::Native).unwrap();
    let tp =
        layer(r#"name: "x" type: "Data" transform_param { mean_value: 1 mean_value: 2 mean_value: 3 mirror: true }"#)
            .transform_param
            .unwrap();
    let mut t = Transformer::new(&tp, Phase::Test, 7).unwrap();
    let (mut flips, mut plain) = (0, 0);
    for _ in 0..40 {
        let mut out = vec![0f32; 60];
        t.transform(&sample, &mut out).unwrap();
        let straight: Vec<f32> = (0..60).map(|i| sample.at(i) - (1 + i / 20) as f32).collect();
        let mirrored: Vec<f32> = (0..60).map(|i| sample.at(i - i % 5 + 4 - i % 5) - (1 + i / 20) as f32).collect();
        if out == straight {
            plain += 1;
        } else {
            assert_eq!(out, mirrored);
            flips += 1;
        }
    }
    assert!(flips > 5 && plain > 5, "mirror is random: {flips} flipped, {plain} not");
    // TRAIN crops are random but inside the image, and a seed repeats them.
    let tp = layer(r#"name: "x" type: "Data" transform_param { crop_size: 3 }"#).transform_param.unwrap();
    let run = |seed| {
        let mut t = Transformer::new(&tp, Phase::Train, seed).unwrap();
        (0..20)
            .map(|_| {
                let mut out = vec![0f32; 27];
                t.transform(&sample, &mut out).unwrap();
                out
            })
            .collect::<Vec<_>>()
    };
    let a = run(11);
    assert_eq!(a, run(11));
    let offsets: std::collections::HashSet<(u32, u32)> =
        a.iter().map(|o| (((o[0] as u32) % 100) / 10, (o[0] as u32) % 10)).collect();
    assert!(offsets.len() > 1 && offsets.iter().all(|&(h, w)| h <= 1 && w <= 2), "{offsets:?}");
    // Both a mean file and mean values: refused.
    let tp = layer(&format!(
        r#"name: "x" type: "Data" transform_param {{ mean_file: "{}" mean_value: 3 }}"#,
        mean.display()
    ))
    .transform_param
    .unwrap();
    let e = Transformer::new(&tp, Phase::Train, 0).err().unwrap().to_string();
    assert!(e.contains("mean_file and mean_value"), "{e}");
}

// ------------------------------------------------------------------ encoded images

/// Writes test images; returns the list file's lines.
pub(crate) fn make_images(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for k in 0..4u32 {
        // Smooth colour images (no channel wraps past 255), so JPEG's loss
        // stays small even with OpenCV's 4:2:0 chroma.
        let rgb = image::RgbImage::from_fn(20, 16, |x, y| {
            image::Rgb([(x * 12 + k * 9) as u8, (y * 15 + 3) as u8, ((x + y) * 5 + k * 20) as u8])
        });
        let name = format!("img{k}.png");
        rgb.save(dir.join(&name)).unwrap();
        lines.push(format!("{name} {k}"));
    }
    let gray = image::GrayImage::from_fn(20, 16, |x, y| image::Luma([(x * 10 + y * 3) as u8]));
    gray.save(dir.join("gray.png")).unwrap();
    lines.push("gray.png 7".into());
    lines
}

fn read_all(db: &Path, extra: &str, n: usize) -> (Tensor, Tensor) {
    let lp = layer(&format!(
        r#"name: "d" type: "Data" top: "data" top: "label" data_param {{ source: "{}" batch_size: {n} backend: LMDB }} {extra}"#,
        db.display()
    ));
    let mut l = create_layer(&lp).unwrap();
    l.setup(&[]).unwrap_or_else(|e| panic!("{e}"));
    let tops = l.forward(&ctx(Phase::Test), &[], &[]).unwrap();
    (tops[0].shallow_clone(), tops[1].shallow_clone())
}

#[test]
fn encoded_datasets_decode_like_raw() {
    let _rng = common::rng_shared(); // shuffle
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    std::fs::create_dir(&root).unwrap();
    let lines = make_images(&root);
    let color_list = tmp.path().join("color.txt");
    std::fs::write(&color_list, lines[..4].join("\n") + "\n").unwrap();
    let root_s = format!("{}/", root.display());
    let convert = |name: &str, list: &Path, opts: convert_imageset::Options| -> PathBuf {
        let db = tmp.path().join(name);
        let n = convert_imageset::convert(&root_s, list, &db, &opts).expect("convert_imageset");
        assert_eq!(n, 4);
        db
    };
    let raw = convert("raw", &color_list, Default::default());
    let png = convert("png", &color_list, convert_imageset::Options { encoded: true, ..Default::default() });
    let jpg =
        convert("jpg", &color_list, convert_imageset::Options { encode_type: "jpg".into(), ..Default::default() });
    // Keys are %08d_<file>; the encoded records hold the PNG file itself.
    let c = open_cursor(&png, Backend::Lmdb).unwrap();
    assert_eq!(c.key(), b"00000000_img0.png");
    let d = datum::parse(c.value()).unwrap();
    assert!(d.encoded() && d.channels.is_none());
    assert_eq!(d.data(), std::fs::read(root.join("img0.png")).unwrap().as_slice());

    let (raw_x, raw_y) = read_all(&raw, "", 4);
    assert_eq!(raw_x.size(), vec![4, 3, 16, 20]);
    // BGR planes, as OpenCV gives them: channel 0 is blue.
    assert_eq!(raw_x.double_value(&[1, 0, 2, 3]), ((3 + 2) * 5 + 20) as f64);
    let (png_x, png_y) = read_all(&png, "", 4);
    assert!(png_x.equal(&raw_x), "PNG-encoded pixels differ from raw");
    assert!(png_y.equal(&raw_y));
    let (jpg_x, _) = read_all(&jpg, "", 4);
    let diff = (&jpg_x - &raw_x).abs();
    let (mean_err, max_err) = (diff.mean(Kind::Float).double_value(&[]), diff.max().double_value(&[]));
    assert!(mean_err < 2.0 && max_err < 24.0, "JPEG error too large: mean {mean_err}, max {max_err}");
    assert!(mean_err > 0.0, "JPEG is lossy: the re-encoded records should not be the PNG files");
    // force_gray decodes colour records to one channel; -gray writes one channel.
    let (g_x, _) = read_all(&png, "transform_param { force_gray: true }", 4);
    assert_eq!(g_x.size(), vec![4, 1, 16, 20]);
    let gray_db = convert("gray", &color_list, convert_imageset::Options { gray: true, ..Default::default() });
    let (g2, _) = read_all(&gray_db, "", 4);
    assert!(g2.equal(&g_x), "-gray records hold what force_gray decodes");
    // Like Caffe, -gray -encoded keeps a PNG source file as it is (still colour).
    let gray_enc =
        convert("gray_enc", &color_list, convert_imageset::Options { gray: true, encoded: true, ..Default::default() });
    assert_eq!(read_all(&gray_enc, "", 4).0.size(), vec![4, 3, 16, 20]);
    // Resizing happens before encoding.
    let small = convert(
        "small",
        &color_list,
        convert_imageset::Options { resize_height: 8, resize_width: 10, encoded: true, ..Default::default() },
    );
    assert_eq!(read_all(&small, "", 4).0.size(), vec![4, 3, 8, 10]);
    // A grey PNG decodes natively to one channel, or to three with force_color.
    let gray_list = tmp.path().join("gray.txt");
    std::fs::write(&gray_list, "gray.png 7\n").unwrap();
    let db = tmp.path().join("gray1");
    convert_imageset::convert(
        &root_s,
        &gray_list,
        &db,
        &convert_imageset::Options { encoded: true, ..Default::default() },
    )
    .unwrap();
    assert_eq!(read_all(&db, "", 1).0.size(), vec![1, 1, 16, 20]);
    assert_eq!(read_all(&db, "transform_param { force_color: true }", 1).0.size(), vec![1, 3, 16, 20]);

    // ImageData reads the same pixels straight from the files.
    let lp = layer(&format!(
        r#"name: "img" type: "ImageData" top: "data" top: "label" image_data_param {{ source: "{}" root_folder: "{root_s}" batch_size: 4 }}"#,
        color_list.display()
    ));
    let mut l = create_layer(&lp).unwrap();
    l.setup(&[]).unwrap();
    let tops = l.forward(&ctx(Phase::Train), &[], &[]).unwrap();
    assert!(tops[0].equal(&raw_x) && tops[1].equal(&raw_y));
    // new_height/new_width and shuffle.
    let lp = layer(&format!(
        r#"name: "img" type: "ImageData" top: "data" top: "label"
           image_data_param {{ source: "{}" root_folder: "{root_s}" batch_size: 4 new_height: 8 new_width: 10 shuffle: true is_color: false }}"#,
        color_list.display()
    ));
    let mut l = create_layer(&lp).unwrap();
    assert_eq!(l.setup(&[]).unwrap().tops[0], vec![4, 1, 8, 10]);
    let mut labels = values_f32(&l.forward(&ctx(Phase::Train), &[], &[]).unwrap()[1]);
    labels.sort_by(f32::total_cmp);
    assert_eq!(labels, vec![0., 1., 2., 3.]);
}

/// A Sun raster file: the big-endian header, the colour map, the rows.
fn sun_raster(width: u32, height: u32, depth: u32, kind: u32, map: &[u8], rows: &[u8]) -> Vec<u8> {
    let header =
        [0x59A6_6A95, width, height, depth, rows.len() as u32, kind, u32::from(!map.is_empty()), map.len() as u32];
    header.iter().flat_map(|v| v.to_be_bytes()).chain(map.iter().copied()).chain(rows.iter().copied()).collect()
}

/// Sun raster and Radiance HDR: values worked out by hand (a colour map, a
/// padded row, OpenCV's rounding of RGBE to 8 bits), and what OpenCV fails on
/// as a one-line error naming the format (python/tests/test_image_decoding.py
/// compares many files with cv2.imread).
#[test]
fn sun_raster_and_radiance_decode_by_opencvs_rules() {
    // 3×2 at depth 8 with a 2-entry colour map (reds, greens, blues); rows
    // padded to 4 bytes.
    let ras = sun_raster(3, 2, 8, 1, &[10, 200, 20, 100, 30, 50], &[0, 1, 1, 9, 1, 0, 0, 9]);
    let got = img::decode(&ras, ColorMode::Color).unwrap();
    assert_eq!((got.channels, got.height, got.width), (3, 2, 3));
    // BGR planes: entry 0 is (r, g, b) = (10, 20, 30), entry 1 (200, 100, 50).
    assert_eq!(got.data, vec![30, 50, 50, 50, 30, 30, 20, 100, 100, 100, 20, 20, 10, 200, 200, 200, 10, 10]);
    let grey = img::decode(&ras, ColorMode::Gray).unwrap();
    // OpenCV's 14-bit weights: (10·4899 + 20·9617 + 30·1868 + 8192) >> 14 = 18.
    assert_eq!(grey.data[0], 18);
    // No colour map: a grey ramp, one channel as stored.
    let plain = img::decode(&sun_raster(2, 1, 8, 1, &[], &[7, 250]), ColorMode::Native).unwrap();
    assert_eq!((plain.channels, plain.data.clone()), (1, vec![7, 250]));
    // One RGBE scanline of 2 flat pixels: 2^(129−136) = 1/128 per unit, so
    // (128, 64, 255) is (1, 0.5, 1.99), 255·that rounded to even and cut to
    // 255; an exponent of 0 is black.
    let mut hdr = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 2\n".to_vec();
    hdr.extend_from_slice(&[128, 64, 255, 129, 90, 90, 90, 0]);
    let got = img::decode(&hdr, ColorMode::Color).unwrap();
    assert_eq!(got.data, vec![255, 0, 128, 0, 255, 0]);
    let e = |bytes: &[u8]| img::decode(bytes, ColorMode::Color).unwrap_err().to_string();
    let msg = e(&sun_raster(3, 2, 8, 2, &[], &[0; 8]));
    assert!(msg.contains("Sun raster type 2 is not read"), "{msg}");
    let msg = e(&sun_raster(3, 2, 8, 1, &[], &[0; 7]));
    assert!(msg.contains("corrupt Sun raster image") && msg.contains("2 rows of 4 bytes"), "{msg}");
    let msg = e(&sun_raster(3, 2, 4, 1, &[], &[0; 8]));
    assert!(msg.contains("depth 4"), "{msg}");
    let msg = e(&sun_raster(100_000, 100_000, 24, 1, &[], &[0; 8]));
    assert!(msg.contains("100000×100000 Sun raster image"), "{msg}");
    let msg = e(b"#?RGBE\n\n-Y 1 +X 1\n\0\0\0\0");
    assert!(msg.contains("no FORMAT=32-bit_rle_rgbe line"), "{msg}");
    let msg = e(b"#?RGBE\nFORMAT=32-bit_rle_rgbe\n\n+Y 1 +X 1\n\0\0\0\0");
    assert!(msg.contains("'+Y 1 +X 1' is not '-Y <height> +X <width>'"), "{msg}");
    let mut rle = b"#?RGBE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 8\n\x02\x02\x00\x08".to_vec();
    rle.extend_from_slice(&[137, 5]);
    let msg = e(&rle);
    assert!(msg.contains("bad run-length data in scanline 0"), "{msg}");
    let msg = e(&hdr[..hdr.len() - 1]);
    assert!(msg.contains("corrupt Radiance HDR image: the pixels are cut short"), "{msg}");
}

/// A PAM's three samples per pixel are B, G, R in a colour read (OpenCV's
/// reader copies them, whatever the TUPLTYPE) and R, G, B in a grey one.
#[test]
fn pam_samples_are_read_in_opencvs_order() {
    for tuple_type in ["", "TUPLTYPE RGB\n"] {
        let mut pam = format!("P7\nWIDTH 2\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\n{tuple_type}ENDHDR\n").into_bytes();
        pam.extend_from_slice(&[10, 20, 30, 40, 50, 60]);
        let colour = img::decode(&pam, ColorMode::Color).unwrap();
        assert_eq!(colour.data, vec![10, 40, 20, 50, 30, 60], "{tuple_type}");
        // (10·4899 + 20·9617 + 30·1868 + 8192) >> 14 = 18, R first.
        assert_eq!(img::decode(&pam, ColorMode::Gray).unwrap().data[0], 18, "{tuple_type}");
    }
    // RGBA: colour from the first three samples, grey the first alone; 4
    // samples without TUPLTYPE RGB_ALPHA are refused, as OpenCV refuses them.
    let rgba = |tuple_type: &str| {
        let mut pam = format!("P7\nWIDTH 1\nHEIGHT 1\nDEPTH 4\nMAXVAL 255\n{tuple_type}ENDHDR\n").into_bytes();
        pam.extend_from_slice(&[10, 20, 30, 40]);
        pam
    };
    assert_eq!(img::decode(&rgba("TUPLTYPE RGB_ALPHA\n"), ColorMode::Color).unwrap().data, vec![30, 20, 10]);
    assert_eq!(img::decode(&rgba("TUPLTYPE RGB_ALPHA\n"), ColorMode::Gray).unwrap().data, vec![10]);
    let e = img::decode(&rgba(""), ColorMode::Color).unwrap_err().to_string();
    assert!(e.contains("4 samples a pixel need TUPLTYPE RGB_ALPHA"), "{e}");
    let mut cut = rgba("TUPLTYPE RGB_ALPHA\n");
    cut.pop();
    let e = img::decode(&cut, ColorMode::Color).unwrap_err().to_string();
    assert!(e.contains("corrupt PAM image: 4 samples need 4 bytes"), "{e}");
}

/// JPEG and resizing against OpenCV's own files (tests/fixtures/images/make.py,
/// run with OpenCV 4.14): a 4:2:0 file decodes to cv2.imread's pixels in
/// colour and in grey, encoding (convert_imageset's -encode_type jpg) writes
/// the bytes cv2.imencode writes, colour and grey, and bilinear resizes to a
/// size and by a factor give cv2.resize's pixels.
#[test]
fn images_decode_resize_and_encode_as_opencv() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let bytes = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let pixels = |im: &img::Image| im.data.iter().map(|&v| f32::from(v)).collect::<Vec<f32>>();
    let jpg = bytes("subsampled.jpg");
    for (mode, npy) in [(ColorMode::Color, "subsampled_colour.npy"), (ColorMode::Gray, "subsampled_grey.npy")] {
        let want = read_npy(&dir.join(npy));
        let got = img::decode(&jpg, mode).unwrap();
        assert_eq!([got.channels, got.height, got.width].map(|v| v as i64).to_vec(), want.size(), "{npy}");
        assert_eq!(pixels(&got), values_f32(&want), "{npy}");
    }
    // GIF: OpenCV's own file, and a frame offset in its screen over the
    // background colour with local, global and transparent indices.
    for name in ["opencv", "offset"] {
        let gif = bytes(&format!("{name}.gif"));
        for (mode, part) in [(ColorMode::Color, "colour"), (ColorMode::Native, "colour"), (ColorMode::Gray, "grey")] {
            let npy = format!("{name}_{part}.npy");
            let want = read_npy(&dir.join(&npy));
            let got = img::decode(&gif, mode).unwrap();
            assert_eq!([got.channels, got.height, got.width].map(|v| v as i64).to_vec(), want.size(), "{npy}");
            assert_eq!(pixels(&got), values_f32(&want), "{npy}");
        }
    }
    // What OpenCV fails on is an error: a frame outside the screen, a
    // background colour past the palette, pixel data ending early.
    let offset = bytes("offset.gif");
    let descriptor = offset.iter().position(|&b| b == 0x2c).unwrap();
    let mut outside = offset.clone();
    outside[descriptor + 1] = 30;
    let e = img::decode(&outside, ColorMode::Color).unwrap_err().to_string();
    assert!(e.contains("corrupt GIF") && e.contains("not within the 40×30 screen"), "{e}");
    let mut background = offset.clone();
    background[11] = 16;
    let e = img::decode(&background, ColorMode::Color).unwrap_err().to_string();
    assert!(e.contains("background colour 16 is past the 16 colours"), "{e}");
    let e = img::decode(&offset[..offset.len() - 40], ColorMode::Color).unwrap_err().to_string();
    assert!(e.contains("corrupt GIF"), "{e}");
    // JPEG 2000 through OpenJPEG, as OpenCV reads it; a file cut inside its
    // header is an error naming the format and OpenJPEG's complaint.
    let jp2 = bytes("opencv.jp2");
    for (mode, npy) in [(ColorMode::Color, "opencv_jp2_colour.npy"), (ColorMode::Gray, "opencv_jp2_grey.npy")] {
        let want = read_npy(&dir.join(npy));
        let got = img::decode(&jp2, mode).unwrap();
        assert_eq!([got.channels, got.height, got.width].map(|v| v as i64).to_vec(), want.size(), "{npy}");
        assert_eq!(pixels(&got), values_f32(&want), "{npy}");
    }
    let e = img::decode(&jp2[..60], ColorMode::Color).unwrap_err().to_string();
    assert!(e.starts_with("corrupt JPEG 2000 image: "), "{e}");
    let source = img::decode(&bytes("source.png"), ColorMode::Color).unwrap();
    assert_eq!(img::encode(&source, "jpg").unwrap(), bytes("opencv_q95.jpg"));
    let grey = img::decode(&bytes("source_grey.png"), ColorMode::Gray).unwrap();
    assert_eq!(img::encode(&grey, "jpg").unwrap(), bytes("opencv_q95_grey.jpg"));
    // Resizing (ImageData's new_height/new_width, convert_imageset -resize_*,
    // convert_annoset's scale) is OpenCV's INTER_LINEAR, bit for bit.
    for (got, npy) in [
        (img::resize(&source, 29, 37), "resized_37x29.npy"),
        (img::resize_by(&source, 0.7).unwrap(), "resized_by_0.7.npy"),
        // The SSD fork's NEAREST, at sizes where src/dst and OpenCV's
        // 1/(dst/src) pick different pixels, LANCZOS4, CUBIC (OpenCV's own
        // code, rows whose values end in its integer path too), and AREA by
        // each of OpenCV's paths.
        (resize::with_mode(&source, 13, 16, InterpMode::Nearest), "nearest_16x13.npy"),
        (resize::with_mode(&source, 52, 34, InterpMode::Nearest), "nearest_34x52.npy"),
        (resize::with_mode(&source, 13, 16, InterpMode::Lanczos4), "lanczos4_16x13.npy"),
        (resize::with_mode(&source, 47, 50, InterpMode::Lanczos4), "lanczos4_50x47.npy"),
        (resize::with_mode(&source, 13, 16, InterpMode::Cubic), "cubic_16x13.npy"),
        (resize::with_mode(&source, 47, 50, InterpMode::Cubic), "cubic_50x47.npy"),
        (resize::with_mode(&source, 11, 17, InterpMode::Cubic), "cubic_17x11.npy"),
        (resize::with_mode(&grey, 9, 13, InterpMode::Cubic), "cubic_grey_13x9.npy"),
        (resize::with_mode(&source, 13, 17, InterpMode::Area), "area_17x13.npy"),
        (resize::with_mode(&source, 10, 12, InterpMode::Area), "area_12x10.npy"),
        (resize::with_mode(&source, 5, 8, InterpMode::Area), "area_8x5.npy"),
        (resize::with_mode(&source, 47, 50, InterpMode::Area), "area_50x47.npy"),
        (resize::with_mode(&source, 13, 30, InterpMode::Area), "area_30x13.npy"),
    ] {
        let want = read_npy(&dir.join(npy));
        assert_eq!([got.channels, got.height, got.width].map(|v| v as i64).to_vec(), want.size(), "{npy}");
        assert_eq!(pixels(&got), values_f32(&want), "{npy}");
    }
}

/// The Exif orientation tag read from either byte order, and the eight
/// orientations applied as OpenCV's ApplyExifOrientation does (pixel values
/// by hand on a 2×3 image; python/tests/test_image_decoding.py compares whole
/// photos with OpenCV).
#[test]
fn exif_orientation_is_read_and_applied() {
    use caffe_tch::data::image::exif_orientation;
    let tiff = |little: bool, tag: u16, kind: u16, value: u16| {
        let mut t = if little { b"II*\0".to_vec() } else { b"MM\0*".to_vec() };
        let put16 = |t: &mut Vec<u8>, v: u16| t.extend(if little { v.to_le_bytes() } else { v.to_be_bytes() });
        let put32 = |t: &mut Vec<u8>, v: u32| t.extend(if little { v.to_le_bytes() } else { v.to_be_bytes() });
        put32(&mut t, 8);
        put16(&mut t, 2);
        // An unrelated entry first (ImageWidth, a SHORT), then the one asked for.
        for (entry_tag, entry_kind, entry_value) in [(0x0100, 3, 640), (tag, kind, value)] {
            put16(&mut t, entry_tag);
            put16(&mut t, entry_kind);
            put32(&mut t, 1);
            put16(&mut t, entry_value);
            t.extend([0, 0]);
        }
        t
    };
    assert_eq!(exif_orientation(&tiff(true, 0x0112, 3, 6)), Some(6));
    assert_eq!(exif_orientation(&tiff(false, 0x0112, 3, 8)), Some(8));
    assert_eq!(exif_orientation(&tiff(true, 0x0112, 3, 9)), None);
    assert_eq!(exif_orientation(&tiff(true, 0x0112, 4, 6)), None);
    assert_eq!(exif_orientation(&tiff(true, 0x0110, 3, 6)), None);
    let cut = tiff(true, 0x0112, 3, 6);
    assert_eq!(exif_orientation(&cut[..cut.len() - 6]), None);
    assert_eq!(exif_orientation(b"Exif"), None);

    // 1 2 3
    // 4 5 6
    let im = img::Image { channels: 1, height: 2, width: 3, data: vec![1, 2, 3, 4, 5, 6] };
    let turned = |o: u8| {
        let t = im.clone().oriented(o);
        (t.height, t.width, t.data)
    };
    assert_eq!(turned(1), (2, 3, vec![1, 2, 3, 4, 5, 6]));
    assert_eq!(turned(2), (2, 3, vec![3, 2, 1, 6, 5, 4]));
    assert_eq!(turned(3), (2, 3, vec![6, 5, 4, 3, 2, 1]));
    assert_eq!(turned(4), (2, 3, vec![4, 5, 6, 1, 2, 3]));
    assert_eq!(turned(5), (3, 2, vec![1, 4, 2, 5, 3, 6]));
    // 6: a quarter turn clockwise.
    assert_eq!(turned(6), (3, 2, vec![4, 1, 5, 2, 6, 3]));
    assert_eq!(turned(7), (3, 2, vec![6, 3, 5, 2, 4, 1]));
    // 8: a quarter turn anticlockwise.
    assert_eq!(turned(8), (3, 2, vec![3, 6, 2, 5, 1, 4]));
}

#[test]
fn image_codec_round_trips_and_resizes() {
    let im = img::Image { channels: 3, height: 2, width: 3, data: (0..18).map(|i| i * 10).collect() };
    let png = img::encode(&im, "png").unwrap();
    assert_eq!(img::decode(&png, ColorMode::Native).unwrap(), im);
    let up = img::resize(&im, 4, 6);
    assert_eq!((up.height, up.width, up.data.len()), (4, 6, 72));
    // Half-pixel geometry: corners keep the corner values.
    assert_eq!(up.data[0], 0);
    assert_eq!(up.data[23], 50);
    assert!(img::decode(b"GIF89a....", ColorMode::Native).is_err());
    assert!(img::extension_matches("a/B.JPEG", "jpg") && !img::extension_matches("x.png", "jpg"));
    // float_data Datums decode as floats.
    let d = Datum {
        channels: Some(1),
        height: Some(1),
        width: Some(2),
        float_data: vec![0.5, -1.0],
        label: Some(3),
        ..Default::default()
    };
    let s: Sample = datum::decode(d, ColorMode::Native).unwrap();
    assert_eq!(s.values, Values::F32(vec![0.5, -1.0]));
    assert_eq!(s.label, 3.0);
}

// ------------------------------------------------------------------ other data layers

#[test]
fn dummy_data_fills_each_top() {
    let _rng = common::rng_shared(); // the fillers
    let text = r#"name: "n"
        layer { name: "dummy" type: "DummyData" top: "a" top: "b" top: "c"
          dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 } shape { dim: 1 dim: 1 dim: 2 dim: 2 }
            data_filler { type: "constant" value: 2.5 } data_filler { type: "uniform" min: 1 max: 2 } data_filler { type: "gaussian" std: 1 } } }"#;
    let mut n = net(text, Phase::Train).expect("net");
    n.forward().unwrap();
    assert_eq!(values_f32(n.blob("a").unwrap()), vec![2.5; 6]);
    let b1 = values_f32(n.blob("b").unwrap());
    assert!(b1.iter().all(|v| (1.0..=2.0).contains(v)));
    assert_eq!(n.blob("c").unwrap().size(), vec![1, 1, 2, 2]);
    n.forward().unwrap();
    assert_ne!(values_f32(n.blob("b").unwrap()), b1, "non-constant tops are refilled");
    // Legacy num/channels/height/width, one filler for all.
    let lp = layer(
        r#"name: "d" type: "DummyData" top: "x" top: "y" dummy_data_param { num: 2 channels: 3 height: 4 width: 5 num: 1 channels: 1 height: 1 width: 1 }"#,
    );
    let mut l = create_layer(&lp).unwrap();
    assert_eq!(l.setup(&[]).unwrap().tops, vec![vec![2, 3, 4, 5], vec![1, 1, 1, 1]]);
    assert_eq!(l.forward(&ctx(Phase::Test), &[], &[]).unwrap()[0].sum(Kind::Float).double_value(&[]), 0.0);
    let bad = layer(
        r#"name: "d" type: "DummyData" top: "x" top: "y" top: "z" dummy_data_param { shape { dim: 1 } shape { dim: 2 } }"#,
    );
    assert!(create_layer(&bad).unwrap().setup(&[]).is_err());
}

#[test]
fn memory_data_serves_batches_in_turn() {
    let _rng = common::rng_shared(); // the net
    let text = r#"name: "m" layer { name: "mem" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }"#;
    let mut n = net(text, Phase::Test).expect("net");
    assert!(n.forward_inference().is_err(), "forward before the arrays are set is an error");
    let data = Tensor::arange(24, (Kind::Float, Device::Cpu)).reshape([6, 1, 2, 2]);
    let labels = Tensor::from_slice(&[0f32, 1., 2., 3., 4., 5.]);
    n.set_input_arrays(&data, &labels).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        n.forward_inference().unwrap();
        assert_eq!(n.blob("data").unwrap().size(), vec![2, 1, 2, 2]);
        seen.extend(values_f32(n.blob("label").unwrap()));
    }
    assert_eq!(seen, vec![0., 1., 2., 3., 4., 5., 0., 1.]);
    assert_eq!(values_f32(&n.blob("data").unwrap().get(1)), vec![4., 5., 6., 7.]);
    let e = n.set_input_arrays(&data.narrow(0, 0, 3), &labels.narrow(0, 0, 3)).unwrap_err().to_string();
    assert!(e.contains("multiple of batch_size") && e.contains("mem"), "{e}");
}

// ------------------------------------------------------------------ bad input

#[test]
fn bad_inputs_are_one_line_errors_naming_layer_source_and_key() {
    let _rng = common::rng_shared(); // the nets
    let tmp = tempfile::tempdir().unwrap();
    let err_of = |text: &str, phase: Phase, forwards: usize| -> String {
        match net(text, phase) {
            Err(e) => e.to_string(),
            Ok(mut n) => {
                for _ in 0..forwards {
                    if let Err(e) = n.forward() {
                        return e.to_string();
                    }
                }
                panic!("no error for {text}")
            }
        }
    };

    // Missing DB.
    let missing = tmp.path().join("nope_lmdb");
    let e = err_of(&data_net(&missing, "backend: LMDB", 4, ""), Phase::Train, 0);
    assert_one_line_error(&e, &["mnist", "nope_lmdb", "does not exist"]);

    // Wrong backend: an LMDB read with Caffe's default LEVELDB.
    let e = err_of(&data_net(&caffe_ref("lmdb/fmnist_train2k_lmdb"), "", 4, ""), Phase::Train, 0);
    assert_one_line_error(&e, &["mnist", "fmnist_train2k_lmdb", "an LMDB", "backend is LEVELDB"]);

    // Empty DB.
    let empty = tmp.path().join("empty_lmdb");
    write_db(&empty, Backend::Lmdb, &[]);
    let e = err_of(&data_net(&empty, "backend: LMDB", 4, ""), Phase::Train, 0);
    assert_one_line_error(&e, &["mnist", "empty_lmdb", "empty"]);

    // A truncated record after good ones: found by the prefetch thread, reported by forward.
    let good = raw_datum(1, 2, 2, vec![1, 2, 3, 4], 1);
    // Cut inside the pixel bytes.
    let mut cut = good.clone();
    cut.truncate(10);
    let trunc = tmp.path().join("trunc_lmdb");
    write_db(
        &trunc,
        Backend::Lmdb,
        &[
            ("00000000".into(), good.clone()),
            ("00000001".into(), good.clone()),
            ("00000002".into(), cut),
            ("00000003".into(), good.clone()),
        ],
    );
    let e = err_of(&data_net(&trunc, "backend: LMDB", 2, ""), Phase::Train, 3);
    assert_one_line_error(&e, &["mnist", "trunc_lmdb", "00000002", "truncated"]);

    // Wrong channel count against the mean file (the first record, at setup).
    let mean = tmp.path().join("rgb_mean.binaryproto");
    binary::write_message(
        &mean,
        &BlobProto {
            num: Some(1),
            channels: Some(3),
            height: Some(28),
            width: Some(28),
            data: vec![0.0; 3 * 784],
            ..Default::default()
        },
    )
    .unwrap();
    let text = data_net(
        &caffe_ref("lmdb/fmnist_train2k_lmdb"),
        "backend: LMDB",
        4,
        &format!(r#"transform_param {{ mean_file: "{}" }}"#, mean.display()),
    );
    let e = err_of(&text, Phase::Train, 0);
    assert_one_line_error(
        &e,
        &["mnist", "fmnist_train2k_lmdb", "00000000", "rgb_mean.binaryproto", "1×28×28", "3×28×28"],
    );

    // A record marked encoded that is not an image.
    let junk = datum::to_bytes(&datum::encoded(b"this is not a picture".to_vec(), 0));
    let enc = tmp.path().join("junk_lmdb");
    write_db(&enc, Backend::Lmdb, &[("00000000_a.png".into(), junk)]);
    let e = err_of(&data_net(&enc, "backend: LMDB", 1, ""), Phase::Train, 0);
    assert_one_line_error(&e, &["mnist", "junk_lmdb", "00000000_a.png", "not an image in a format read here"]);

    // An image list naming a missing file (the second: found while prefetching).
    let root = tmp.path().join("imgs");
    std::fs::create_dir(&root).unwrap();
    image::GrayImage::from_fn(4, 4, |x, _| image::Luma([x as u8])).save(root.join("ok.png")).unwrap();
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, "ok.png 1\nmissing.png 2\n").unwrap();
    let text = format!(
        r#"name: "n" layer {{ name: "images" type: "ImageData" top: "data" top: "label"
            image_data_param {{ source: "{}" root_folder: "{}/" batch_size: 2 }} }}"#,
        list.display(),
        root.display()
    );
    let e = err_of(&text, Phase::Train, 1);
    assert_one_line_error(&e, &["images", "list.txt", "missing.png"]);

    // Missing mean file.
    let text = data_net(
        &caffe_ref("lmdb/fmnist_train2k_lmdb"),
        "backend: LMDB",
        4,
        r#"transform_param { mean_file: "/no/such/mean.binaryproto" }"#,
    );
    assert_one_line_error(&err_of(&text, Phase::Train, 0), &["mnist", "/no/such/mean.binaryproto"]);

    // compute_image_mean names the DB and the key of a bad record.
    let e = compute_image_mean::compute(&trunc, None, Backend::Lmdb).err().unwrap().to_string();
    assert_one_line_error(&e, &["trunc_lmdb", "00000002"]);
}

#[test]
fn extract_features_writes_float_datums() {
    let _rng = common::rng_shared(); // the nets' fillers
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        r#"name: "f" {}
           layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}"#,
        data_net(
            &caffe_ref("lmdb/fmnist_train2k_lmdb"),
            "backend: LMDB",
            5,
            r#"transform_param { scale: 0.00390625 }"#
        )
        .trim_start_matches(r#"name: "d""#)
    );
    let net_file = tmp.path().join("net.prototxt");
    std::fs::write(&net_file, &text).unwrap();
    let mut n = net(&text, Phase::Test).unwrap();
    let weights = tmp.path().join("w.caffemodel");
    binary::write_message(&weights, &n.to_proto(false).unwrap()).unwrap();
    n.forward_inference().unwrap();
    let want_ip = n.blob("ip").unwrap().shallow_clone();
    let out_ip = tmp.path().join("ip_feats");
    let out_label = tmp.path().join("label_feats");
    let dbs = [out_ip.display().to_string(), out_label.display().to_string()];
    let written = caffe_tch::tools::extract_features::extract(
        &weights,
        &net_file,
        &["ip".into(), "label".into()],
        &dbs,
        2,
        Backend::Lmdb,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(written, vec![10, 10]);
    let mut c = open_cursor(&out_ip, Backend::Lmdb).unwrap();
    assert_eq!(c.key(), b"0000000000");
    let d = datum::parse(c.value()).unwrap();
    assert_eq!((d.channels(), d.height(), d.width()), (3, 1, 1));
    assert_eq!(d.float_data, values_f32(&want_ip.get(0)));
    let mut keys = 0;
    while c.valid() {
        keys += 1;
        c.next().unwrap();
    }
    assert_eq!(keys, 10);
}

#[test]
fn datum_bytes_match_caffe_field_layout() {
    // Caffe serializes channels, height, width, data, label in field order; so do we.
    let c = open_cursor(&caffe_ref("lmdb/fmnist_train2k_lmdb"), Backend::Lmdb).unwrap();
    let d = datum::parse(c.value()).unwrap();
    assert_eq!(datum::to_bytes(&d), c.value());
    // float_data is proto2 unpacked, as Caffe writes it.
    let f = datum::to_bytes(&Datum { float_data: vec![1.0, 2.0], ..Default::default() });
    assert_eq!(f, vec![0x35, 0, 0, 0x80, 0x3f, 0x35, 0, 0, 0, 0x40]);
}

/// DeepLab v2's ImageSegData on PNG images whose pixels encode their place
/// (channel c of pixel (y, x) is 10·y + x + 50·c, the label image 10·y + x):
/// the padding a crop larger than the image needs (mean in the data, 0 once
/// subtracted; ignore_label in the label), random crops and mirrors that keep
/// data and label aligned, data_dim, a rescale, and the label types.
#[test]
fn image_seg_data_pads_crops_and_mirrors_image_and_label_together() {
    use caffe_tch::data::image::{encode, Image};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (h, w) = (4usize, 5usize);
    let place = |y: usize, x: usize| (10 * y + x) as u8;
    let image: Vec<u8> = (0..3).flat_map(|c| (0..h * w).map(move |p| place(p / w, p % w) + 50 * c as u8)).collect();
    let label: Vec<u8> = (0..h * w).map(|p| place(p / w, p % w)).collect();
    for k in 0..2 {
        let img = Image { channels: 3, height: h, width: w, data: image.clone() };
        std::fs::write(root.join(format!("img{k}.png")), encode(&img, "png").unwrap()).unwrap();
        let seg = Image { channels: 1, height: h, width: w, data: label.clone() };
        std::fs::write(root.join(format!("seg{k}.png")), encode(&seg, "png").unwrap()).unwrap();
    }
    std::fs::write(root.join("list.txt"), "img0.png seg0.png\nimg1.png seg1.png\n").unwrap();
    std::fs::write(root.join("classes.txt"), "img0.png 7\nimg1.png 3\n").unwrap();
    let spec = |list: &str, label_type: &str, transform: &str| {
        format!(
            r#"name: "seg" layer {{ name: "data" type: "ImageSegData" top: "data" top: "label" top: "data_dim"
               transform_param {{ {transform} }}
               image_data_param {{ root_folder: "{}/" source: "{}" batch_size: 2 label_type: {label_type} }} }}"#,
            root.display(),
            root.join(list).display()
        )
    };
    let mean = "mean_value: 1 mean_value: 2 mean_value: 3";
    // A 6 × 7 crop of a 4 × 5 image in TEST: all of it at the top left, padded.
    let mut n =
        net(&spec("list.txt", "PIXEL", &format!("crop_height: 6 crop_width: 7 scale: 0.5 {mean}")), Phase::Test)
            .unwrap_or_else(|e| panic!("{e}"));
    n.forward().unwrap_or_else(|e| panic!("{e}"));
    let data = n.blob("data").unwrap().copy();
    let labels = n.blob("label").unwrap().copy();
    assert_eq!(data.size(), [2, 3, 6, 7]);
    assert_eq!(labels.size(), [2, 1, 6, 7]);
    assert_eq!(values_f32(n.blob("data_dim").unwrap()), vec![4.0, 5.0, 4.0, 5.0]);
    let (d, l) = (values_f32(&data.get(0)), values_f32(&labels.get(0)));
    for y in 0..6 {
        for x in 0..7 {
            let inside = y < h && x < w;
            for c in 0..3 {
                let want = if inside { (f32::from(place(y, x)) + 50.0 * c as f32 - (c + 1) as f32) * 0.5 } else { 0.0 };
                assert_eq!(d[(c * 6 + y) * 7 + x], want, "data c{c} ({y}, {x})");
            }
            assert_eq!(l[y * 7 + x], if inside { f32::from(place(y, x)) } else { 255.0 }, "label ({y}, {x})");
        }
    }
    // TRAIN: random 3 × 2 crops with mirror; the label always sits under its pixel.
    let mut n = net(&spec("list.txt", "PIXEL", "crop_height: 3 crop_width: 2 mirror: true"), Phase::Train).unwrap();
    let mut mirrored = 0;
    for _ in 0..8 {
        n.forward().unwrap();
        let (d, l) = (values_f32(n.blob("data").unwrap()), values_f32(n.blob("label").unwrap()));
        for item in 0..2 {
            let (d, l) = (&d[item * 18..(item + 1) * 18], &l[item * 6..(item + 1) * 6]);
            for p in 0..6 {
                assert_eq!(d[p], l[p], "channel 0 and label at {p}");
                assert_eq!(d[6 + p], l[p] + 50.0);
            }
            // Columns run right to left when mirrored.
            if l[0] > l[1] {
                mirrored += 1;
            }
        }
        assert_eq!(values_f32(n.blob("data_dim").unwrap()), vec![3.0, 2.0, 3.0, 2.0]);
    }
    assert!(mirrored > 0 && mirrored < 16, "{mirrored} of 16 crops mirrored");
    // A rescale by 2 (bilinear for the image, nearest for the label) to 8 × 10, all of it kept.
    let mut n =
        net(&spec("list.txt", "PIXEL", "scale_factors: 2 crop_height: 8 crop_width: 10"), Phase::Train).unwrap();
    n.forward().unwrap();
    assert_eq!(n.blob("data").unwrap().size(), [2, 3, 8, 10]);
    let l = values_f32(n.blob("label").unwrap());
    for y in 0..8 {
        for x in 0..10 {
            assert_eq!(l[y * 10 + x], f32::from(place(y / 2, x / 2)), "nearest label at ({y}, {x})");
        }
    }
    // label_type IMAGE fills the label with the list's class; NONE with ignore_label.
    let mut n = net(&spec("classes.txt", "IMAGE", ""), Phase::Test).unwrap();
    n.forward().unwrap();
    let l = values_f32(n.blob("label").unwrap());
    assert!(l[..20].iter().all(|&v| v == 7.0) && l[20..].iter().all(|&v| v == 3.0));
    let text = spec("classes.txt", "NONE", "").replace("label_type: NONE", "label_type: NONE ignore_label: 9");
    let mut n = net(&text, Phase::Test).unwrap();
    n.forward().unwrap();
    assert!(values_f32(n.blob("label").unwrap()).iter().all(|&v| v == 9.0));
    // Errors: a line without its label image, crop_size with crop_height, a rescale without a crop.
    let e = net(&spec("list.txt", "PIXEL", "scale_factors: 0.5 scale_factors: 2"), Phase::Test)
        .err()
        .expect("an error")
        .to_string();
    assert!(e.contains("scale_factors need a crop"), "{e}");
    std::fs::write(root.join("bad.txt"), "img0.png\n").unwrap();
    let e = net(&spec("bad.txt", "PIXEL", ""), Phase::Test).err().expect("an error").to_string();
    assert!(e.contains("bad.txt' line 1") && e.contains("names no label"), "{e}");
    let e = net(&spec("list.txt", "PIXEL", "crop_size: 3 crop_height: 2 crop_width: 2"), Phase::Test)
        .err()
        .expect("an error")
        .to_string();
    assert!(e.contains("either crop_size or both crop_height and crop_width"), "{e}");
}

/// DeepLab v2's MatWrite, as its test_val.prototxt uses it: each forward's
/// bottom written to `<prefix><name>_blob_0.mat`, names from the source list
/// (less `strip` characters), every `period` forwards; SciPy's loadmat reads
/// each file back as the W × H × C × N single-precision array `data`.
#[test]
fn mat_write_files_load_in_scipy_as_deeplab_writes_them() {
    let py = caffe_tch::export::verify::python();
    match Command::new(&py).args(["-c", "import scipy.io"]).output() {
        Ok(o) if o.status.success() => {}
        _ => {
            skip!("{} cannot import scipy (make installs it into .venv)", py.display());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("val_id.txt"), "2007_000033.jpg\n2007_000042.jpg\n2007_000061.jpg\n").unwrap();
    let text = format!(
        r#"name: "w" layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 1 dim: 3 dim: 2 dim: 4 }} }} }}
           layer {{ name: "fc8_mat" type: "MatWrite" bottom: "x" include {{ phase: TEST }}
             mat_write_param {{ prefix: "{}/fc8_" source: "{}" strip: 4 period: 2 }} }}"#,
        root.display(),
        root.join("val_id.txt").display()
    );
    let mut n = net(&text, Phase::Test).unwrap_or_else(|e| panic!("{e}"));
    let inputs: Vec<Tensor> = (0..3)
        .map(|k| Tensor::arange(24, (Kind::Float, Device::Cpu)).reshape([1, 3, 2, 4]) + 100.0 * k as f64)
        .collect();
    for x in &inputs {
        n.set_input("x", x).unwrap();
        n.forward().unwrap_or_else(|e| panic!("{e}"));
    }
    // Forwards 0 and 2 wrote (period 2), named by list entries 0 and 2.
    let mut written: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".mat"))
        .collect();
    written.sort();
    assert_eq!(written, ["fc8_2007_000033_blob_0.mat", "fc8_2007_000061_blob_0.mat"]);
    let script = format!(
        "import scipy.io, numpy as np\nm = scipy.io.loadmat({:?})\nd = m['data']\n\
         print(d.dtype, d.shape, float(d[3, 1, 2, 0]), float(d[0, 0, 0, 0]), float(d[1, 0, 0, 0]))",
        root.join("fc8_2007_000061_blob_0.mat").display().to_string()
    );
    let out = Command::new(&py).args(["-c", &script]).output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // d[w, h, c, n] is x[n, c, h, w] of the third input: x[0, 2, 1, 3] = 200 + 2·8 + 1·4 + 3.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "float32 (4, 2, 3, 1) 223.0 200.0 201.0");
    // Without a source the files are named by forward; a list too short is an error.
    let text =
        text.replace(&format!(" source: \"{}\"", root.join("val_id.txt").display()), "").replace("period: 2", "");
    let mut n = net(&text, Phase::Test).unwrap();
    n.set_input("x", &inputs[0]).unwrap();
    n.forward().unwrap();
    assert!(root.join("fc8_iter_0_blob_0.mat").exists());
    std::fs::write(root.join("one.txt"), "a.jpg\n").unwrap();
    let text = text.replace("strip: 4", &format!("strip: 4 source: \"{}\"", root.join("one.txt").display()));
    let mut n = net(&text, Phase::Test).unwrap();
    n.set_input("x", &inputs[0]).unwrap();
    n.forward().unwrap();
    let e = n.forward().expect_err("a second forward past the list").to_string();
    assert!(e.contains("more iterations than it was supposed to"), "{e}");
    let e = net(&text.replace("strip: 4", "strip: 9"), Phase::Test).err().expect("too much stripping").to_string();
    assert!(e.contains("too short to strip 9"), "{e}");
}
