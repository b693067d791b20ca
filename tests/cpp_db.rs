//! Caffe's C++ dataset interface (`caffe/util/db.hpp`, `Datum`, `BlobProto`,
//! `caffe/util/io.hpp`): a C++ program written as Caffe's converters and
//! compute_image_mean are (`tests/fixtures/cpp/db_api.cpp`) writes the
//! Fashion-MNIST test set into an LMDB and a LevelDB holding BVLC Caffe's
//! records byte for byte, computes a mean file byte-identical to `caffe
//! compute_image_mean`'s, copies Caffe's own mean file unchanged, writes image
//! files raw and encoded as `caffe convert_imageset` does, decodes encoded
//! records into the raw ones, and gets one-line errors for bad calls.
use std::path::Path;
use std::process::{Command, Output};

use caffe_tch::data::datum;
use caffe_tch::data::db::{open_cursor, Backend};
use caffe_tch::tools::{compute_image_mean, convert_imageset};

use crate::common::{self, caffe_ref, gunzip, FASHION_MNIST_DIR};
use crate::cpp_api::compile;
use crate::data::{caffe_test_lmdb_digest, copy_dir, digest_of, make_images};

fn run(program: &Path, args: &[&str]) -> String {
    let out: Output = Command::new(program).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "db_api {args:?}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Every record of two DBs, in key order, equal.
fn same_records(a: &Path, b: &Path) -> usize {
    let (mut x, mut y) = (open_cursor(a, Backend::Lmdb).unwrap(), open_cursor(b, Backend::Lmdb).unwrap());
    let mut n = 0;
    while x.valid() || y.valid() {
        assert!(x.valid() && y.valid(), "record counts differ after {n}");
        assert_eq!(x.key(), y.key());
        assert_eq!(x.value(), y.value(), "record {}", String::from_utf8_lossy(x.key()));
        n += 1;
        x.next().unwrap();
        y.next().unwrap();
    }
    n
}

#[test]
fn a_cpp_program_writes_and_reads_caffes_datasets() {
    let Some(mnist) = common::fashion_mnist() else {
        skip!("Debian's Fashion-MNIST is not in {FASHION_MNIST_DIR} (make system-deps installs dataset-fashion-mnist)")
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = compile("db_api", dir.path()) else { return };
    let path = |name: &str| dir.path().join(name);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    gunzip(&mnist.join("t10k-images-idx3-ubyte.gz"), &path("images.idx"));
    gunzip(&mnist.join("t10k-labels-idx1-ubyte.gz"), &path("labels.idx"));

    // Datum + Transaction: Caffe's own LMDB, record for record; and a LevelDB of the same.
    for (backend, name) in [(Backend::Lmdb, "lmdb"), (Backend::LevelDb, "leveldb")] {
        let caffes = path(&format!("first_{name}"));
        let out = run(&program, &["mnist", &s(&path("images.idx")), &s(&path("labels.idx")), &s(&caffes), name]);
        assert_eq!(out.trim(), "records 10000");
        assert_eq!(digest_of(&caffes, backend), caffe_test_lmdb_digest(), "{name}: records differ from Caffe's LMDB");

        // db::WRITE adds records to a copy in place; Caffe's records stay as they were.
        let db = path(&format!("test_{name}"));
        copy_dir(&caffes, &db);
        let out = run(&program, &["append", &s(&db), name, "10000", "5"]);
        assert_eq!(out.trim(), "appended 5");
        let mut cursor = open_cursor(&db, backend).unwrap();
        let mut keys = Vec::new();
        while cursor.valid() {
            keys.push(String::from_utf8_lossy(cursor.key()).into_owned());
            if keys.len() > 10000 {
                let d = datum::parse(cursor.value()).unwrap();
                let i = keys.len() - 10001;
                assert_eq!((d.channels(), d.height(), d.width(), d.label()), (1, 2, 2, i as i32 % 10), "{name}");
                assert_eq!(d.data(), &vec![i as u8; 4][..], "{name}: appended record {i}");
            }
            cursor.next().unwrap();
        }
        assert_eq!(keys.len(), 10005, "{name}");
        assert_eq!(keys[10004], "00010004");
        let (mut a, mut b) = (open_cursor(&db, backend).unwrap(), open_cursor(&caffes, backend).unwrap());
        while b.valid() {
            assert_eq!((a.key(), a.value()), (b.key(), b.value()), "{name}: a record changed");
            a.next().unwrap();
            b.next().unwrap();
        }
        // A missing LevelDB is made, as Caffe's WRITE mode makes one; a missing LMDB is an error.
        if backend == Backend::LevelDb {
            let fresh = path("fresh_leveldb");
            assert_eq!(run(&program, &["append", &s(&fresh), name, "0", "3"]).trim(), "appended 3");
            let mut c = open_cursor(&fresh, backend).unwrap();
            let mut n = 0;
            while c.valid() {
                n += 1;
                c.next().unwrap();
            }
            assert_eq!(n, 3);
        }
    }
    // No temporary folder is left beside the DBs.
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    // Cursor + ParseFromString + BlobProto: the mean file caffe-tch's compute_image_mean writes, byte for byte
    // (over the DB of Caffe's records alone).
    let db = path("first_lmdb");
    assert_eq!(
        run(&program, &["mean", &s(&db), "lmdb", &s(&path("mean.binaryproto"))]).trim(),
        "mean of 10000 records"
    );
    compute_image_mean::compute(&db, Some(&path("tool_mean.binaryproto")), Backend::Lmdb).unwrap();
    assert_eq!(std::fs::read(path("mean.binaryproto")).unwrap(), std::fs::read(path("tool_mean.binaryproto")).unwrap());

    // Caffe's own mean file (legacy num/channels/height/width) read and written back unchanged.
    let caffe_mean = caffe_ref("extra/mean/fmnist_train_mean.binaryproto");
    let out = run(&program, &["copy_mean", &s(&caffe_mean), &s(&path("copy.binaryproto"))]);
    assert_eq!(
        out, "legacy 1 1x1x28x28 shape 0 data 784\nblob 1 1 28 28 (784)\nto_proto shape 1 4 data 784\n",
        "{out}"
    );
    assert_eq!(std::fs::read(path("copy.binaryproto")).unwrap(), std::fs::read(&caffe_mean).unwrap());

    // ReadImageToDatum, raw and encoded: convert_imageset's records; DecodeDatumNative turns the encoded into the raw.
    let root = path("images");
    std::fs::create_dir(&root).unwrap();
    let lines = make_images(&root);
    std::fs::write(path("list.txt"), lines.join("\n") + "\n").unwrap();
    let root_s = format!("{}/", root.display());
    for (encoding, opts) in [
        ("", convert_imageset::Options::default()),
        ("png", convert_imageset::Options { encoded: true, ..Default::default() }),
        ("jpg", convert_imageset::Options { encode_type: "jpg".into(), ..Default::default() }),
    ] {
        let ours = path(&format!("images_{encoding}"));
        let out = run(&program, &["images", &root_s, &s(&path("list.txt")), &s(&ours), encoding]);
        assert_eq!(out.trim(), format!("images {}", lines.len()));
        let tool = path(&format!("tool_images_{encoding}"));
        convert_imageset::convert(&root_s, &path("list.txt"), &tool, &opts).unwrap();
        assert_eq!(same_records(&ours, &tool), lines.len(), "{encoding}");
    }
    let decoded = path("decoded");
    assert_eq!(run(&program, &["decode", &s(&path("images_png")), &s(&decoded)]).trim(), "decoded 5");
    // Colour files decode to the raw records; the grey file, decoded as
    // stored, to one channel (the raw record took three, as is_color asks).
    let (mut x, mut raw) =
        (open_cursor(&decoded, Backend::Lmdb).unwrap(), open_cursor(&path("images_"), Backend::Lmdb).unwrap());
    let mut n = 0;
    while raw.valid() {
        assert_eq!(x.key(), raw.key());
        if x.key().ends_with(b"gray.png") {
            let d = datum::parse(x.value()).unwrap();
            assert_eq!((d.channels(), d.height(), d.width(), d.label(), d.encoded()), (1, 16, 20, 7, false));
        } else {
            assert_eq!(x.value(), raw.value(), "record {}", String::from_utf8_lossy(x.key()));
        }
        n += 1;
        x.next().unwrap();
        raw.next().unwrap();
    }
    assert_eq!(n, lines.len());

    // Bad calls throw the one-line error.
    let out = run(&program, &["errors", &s(&db)]);
    for want in [
        "backend: Unknown database backend 'rocksdb' (known: lmdb, leveldb)",
        "already exists (remove it first; a DB is never overwritten)",
        "_absent: no such DB folder to add records to",
        "no such database (the folder does not exist)",
        "garbage: not a valid Datum (truncated or corrupt record, 3 bytes)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
