//! `convert_mnist_siamese_data IMAGES LABELS DB [-backend leveldb|lmdb]`:
//! Caffe's siamese example's converter. Each of the N records is a pair of
//! images drawn at random from the N (with replacement), stacked as a
//! 2-channel Datum whose label is 1 when the two images share a class and 0
//! otherwise; keys `%08d`. Caffe's tool draws from an unseeded generator, so
//! its pairs differ on every run, as these do; it writes LevelDB, the
//! backend its example net reads.
use std::path::Path;

use rand::Rng;

use super::convert_mnist_data::IdxSet;
use super::gflags::{self, Spec};
use crate::data::datum;
use crate::data::db::{Backend, DbWriter};
use crate::log::progress::Progress;
use crate::proto::caffe::Datum;
use crate::{info, Error, Result};

pub const SPEC: Spec = Spec {
    tool: "convert_mnist_siamese_data",
    usage: "[-backend leveldb|lmdb] INPUT_IMAGE_FILE INPUT_LABEL_FILE OUTPUT_DB",
    bools: &[],
    values: &[("backend", "leveldb", "the database type: leveldb (as Caffe's tool writes) or lmdb")],
};

/// The CLI entry: parses Caffe's arguments and converts.
pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 3, 3)?;
    let backend = Backend::parse(flags.value("backend"))?;
    let p = &flags.positional;
    convert(Path::new(&p[0]), Path::new(&p[1]), Path::new(&p[2]), backend, &mut rand::thread_rng())?;
    Ok(())
}

/// Converts, drawing the pairs from `rng`; returns the number of records
/// written. The DB appears only when complete.
pub fn convert(images: &Path, labels: &Path, db: &Path, backend: Backend, rng: &mut impl Rng) -> Result<usize> {
    let set = IdxSet::read(images, labels)?;
    let n = set.len();
    if set.is_empty() {
        return Err(Error::invalid(format!("{} holds no images to pair", images.display())));
    }
    let mut writer = DbWriter::create(db, backend)?;
    info!("convert_mnist_siamese_data.cpp:85", "A total of {n} items.");
    info!("convert_mnist_siamese_data.cpp:86", "Rows: {} Cols: {}", set.rows, set.cols);
    let mut progress = Progress::for_stderr();
    progress.start(0);
    for item in 0..n {
        let (i, j) = (rng.gen_range(0..n), rng.gen_range(0..n));
        let mut pixels = Vec::with_capacity(2 * set.rows * set.cols);
        pixels.extend_from_slice(set.image(i));
        pixels.extend_from_slice(set.image(j));
        let d = Datum {
            channels: Some(2),
            height: Some(set.rows as i32),
            width: Some(set.cols as i32),
            data: Some(pixels),
            label: Some(i32::from(set.labels[i] == set.labels[j])),
            ..Default::default()
        };
        writer.put(format!("{item:08}").as_bytes(), &datum::to_bytes(&d));
        let count = item + 1;
        progress.update_count("convert_mnist_siamese_data", count as i64, Some(n as i64));
        if count % 1000 == 0 {
            writer.commit()?;
        }
    }
    progress.finish();
    writer.finish()?;
    Ok(n)
}
