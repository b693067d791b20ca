//! `convert_cifar_data INPUT_FOLDER OUTPUT_FOLDER DB_TYPE`: Caffe's CIFAR-10
//! example converter. The binary batches (`data_batch_1.bin` …
//! `data_batch_5.bin`, `test_batch.bin`, as `get_cifar10.sh` unpacks them)
//! become `OUTPUT_FOLDER/cifar10_train_DB_TYPE` (50,000 records, keys
//! `%05d` running across the batches) and `cifar10_test_DB_TYPE` (10,000).
//! Each record is a 3×32×32 Datum holding the batch's bytes as they are:
//! CIFAR's planes are red, green, blue, and Caffe's converter keeps that
//! order (unlike images read through OpenCV, which are BGR).
use std::path::{Path, PathBuf};

use super::gflags::{self, Spec};
use crate::data::datum;
use crate::data::db::{Backend, DbWriter};
use crate::error::Context;
use crate::log::progress::Progress;
use crate::proto::caffe::Datum;
use crate::{info, Error, Result};

pub const SPEC: Spec = Spec {
    tool: "convert_cifar_data",
    usage: "INPUT_FOLDER OUTPUT_FOLDER DB_TYPE   (DB_TYPE: lmdb or leveldb; INPUT_FOLDER holds data_batch_1.bin ... data_batch_5.bin and test_batch.bin)",
    bools: &[],
    values: &[],
};

const SIDE: i32 = 32;
const IMAGE_BYTES: usize = 3 * 32 * 32;
/// A record: the label byte, then the image.
const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Records in each of CIFAR-10's batch files.
pub const RECORDS_PER_BATCH: usize = 10_000;
const TRAIN_BATCHES: usize = 5;

/// The CLI entry: parses Caffe's arguments and converts.
pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 3, 3)?;
    let p = &flags.positional;
    let backend = Backend::parse(&p[2])?;
    convert(Path::new(&p[0]), Path::new(&p[1]), backend, RECORDS_PER_BATCH)?;
    Ok(())
}

/// The train and test batch files under `input`, in Caffe's order.
fn batch_files(input: &Path) -> (Vec<PathBuf>, PathBuf) {
    let train = (1..=TRAIN_BATCHES).map(|i| input.join(format!("data_batch_{i}.bin"))).collect();
    (train, input.join("test_batch.bin"))
}

/// A batch file of `len` bytes must hold exactly `records` records.
fn check_length(path: &Path, len: u64, records: usize) -> Result<()> {
    let want = (records * RECORD_BYTES) as u64;
    if len != want {
        return Err(Error::decode(
            path,
            format!("{len} bytes, where a CIFAR-10 batch of {records} records (a label byte and 3×32×32 pixels each) has {want}"),
        ));
    }
    Ok(())
}

fn read_batch(path: &Path, records: usize) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    check_length(path, bytes.len() as u64, records)?;
    Ok(bytes)
}

/// Writes one DB from `files`, keys numbered from 0 across them.
fn write_db(files: &[PathBuf], db: &Path, backend: Backend, records: usize) -> Result<usize> {
    let mut writer = DbWriter::create(db, backend)?;
    let total = files.len() * records;
    let mut progress = Progress::for_stderr();
    progress.start(0);
    let mut key = 0usize;
    for (i, file) in files.iter().enumerate() {
        if files.len() > 1 {
            info!("convert_cifar_data.cpp:55", "Training Batch {}", i + 1);
        }
        let bytes = read_batch(file, records)?;
        for record in bytes.chunks_exact(RECORD_BYTES) {
            let d = Datum {
                channels: Some(3),
                height: Some(SIDE),
                width: Some(SIDE),
                data: Some(record[1..].to_vec()),
                // Caffe reads the label into a (signed) char.
                label: Some(record[0] as i8 as i32),
                ..Default::default()
            };
            writer.put(format!("{key:05}").as_bytes(), &datum::to_bytes(&d));
            key += 1;
            progress.update_count("convert_cifar_data", key as i64, Some(total as i64));
            if key % 1000 == 0 {
                writer.commit()?;
            }
        }
    }
    progress.finish();
    writer.finish()?;
    Ok(key)
}

/// Converts the batches under `input` into the train and test DBs under
/// `output`, `records` per batch file (CIFAR-10's files hold
/// [`RECORDS_PER_BATCH`]); returns the two record counts. Every file is
/// checked before anything is written, and each DB appears only when complete.
pub fn convert(input: &Path, output: &Path, backend: Backend, records: usize) -> Result<(usize, usize)> {
    let (train, test) = batch_files(input);
    for file in train.iter().chain(std::iter::once(&test)) {
        let meta = std::fs::metadata(file).map_err(|e| Error::io(file, e)).with_context(|| {
            format!(
                "{} should hold CIFAR-10's binary batches (data_batch_1.bin ... data_batch_5.bin, test_batch.bin), as Caffe's data/cifar10/get_cifar10.sh unpacks them",
                input.display()
            )
        })?;
        check_length(file, meta.len(), records)?;
    }
    let name = backend.name();
    info!("convert_cifar_data.cpp:52", "Writing Training data");
    let n_train = write_db(&train, &output.join(format!("cifar10_train_{name}")), backend, records)?;
    info!("convert_cifar_data.cpp:73", "Writing Testing data");
    let n_test = write_db(&[test], &output.join(format!("cifar10_test_{name}")), backend, records)?;
    Ok((n_train, n_test))
}
