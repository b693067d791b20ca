//! `convert_mnist_data IMAGES LABELS DB [-backend lmdb|leveldb]`: MNIST-format
//! IDX files (plain or gzipped) into a DB of Datum records keyed `%08d`, the
//! same bytes Caffe's converter writes.
use std::io::Read;
use std::path::Path;

use super::gflags::{self, Spec};
use crate::data::datum;
use crate::data::db::{Backend, DbWriter};
use crate::log::progress::Progress;
use crate::proto::caffe::Datum;
use crate::{info, Error, Result};

pub const SPEC: Spec = Spec {
    tool: "convert_mnist_data",
    usage: "[-backend lmdb|leveldb] INPUT_IMAGE_FILE INPUT_LABEL_FILE OUTPUT_DB",
    bools: &[],
    values: &[("backend", "lmdb", "the database type: lmdb or leveldb")],
};

/// The CLI entry: parses Caffe's arguments and converts.
pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 3, 3)?;
    let backend = Backend::parse(flags.value("backend"))?;
    let p = &flags.positional;
    convert(Path::new(&p[0]), Path::new(&p[1]), Path::new(&p[2]), backend)?;
    Ok(())
}

/// Reads a whole file, gunzipping it when it starts with gzip's magic bytes.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::decode(path, format!("corrupt gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize, path: &Path) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Error::decode(path, "truncated IDX header"))
}

/// An IDX image file: (count, rows, cols, pixels).
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    let magic = be_u32(&bytes, 0, path)?;
    if magic != 2051 {
        return Err(Error::decode(path, format!("Incorrect image file magic: {magic} (an IDX image file has 2051)")));
    }
    let n = be_u32(&bytes, 4, path)? as usize;
    let rows = be_u32(&bytes, 8, path)? as usize;
    let cols = be_u32(&bytes, 12, path)? as usize;
    let need = 16 + n * rows * cols;
    if bytes.len() < need {
        return Err(Error::decode(
            path,
            format!("truncated: {n} images of {rows}×{cols} need {need} bytes, the file has {}", bytes.len()),
        ));
    }
    Ok((n, rows, cols, bytes[16..need].to_vec()))
}

/// An IDX label file: one byte per item.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    let magic = be_u32(&bytes, 0, path)?;
    if magic != 2049 {
        return Err(Error::decode(path, format!("Incorrect label file magic: {magic} (an IDX label file has 2049)")));
    }
    let n = be_u32(&bytes, 4, path)? as usize;
    if bytes.len() < 8 + n {
        return Err(Error::decode(
            path,
            format!("truncated: {n} labels need {} bytes, the file has {}", 8 + n, bytes.len()),
        ));
    }
    Ok(bytes[8..8 + n].to_vec())
}

/// An IDX image file and its label file, checked to hold the same number of
/// items.
pub struct IdxSet {
    pub rows: usize,
    pub cols: usize,
    /// Every image's pixels, one after another.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl IdxSet {
    pub fn read(images: &Path, labels: &Path) -> Result<IdxSet> {
        let (n, rows, cols, pixels) = read_idx_images(images)?;
        let label_bytes = read_idx_labels(labels)?;
        if label_bytes.len() != n {
            return Err(Error::invalid(format!(
                "{} holds {n} images but {} holds {} labels",
                images.display(),
                labels.display(),
                label_bytes.len()
            )));
        }
        Ok(IdxSet { rows, cols, pixels, labels: label_bytes })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`'s pixels.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[i * size..(i + 1) * size]
    }
}

/// Converts; returns the number of records written. The DB appears only when complete.
pub fn convert(images: &Path, labels: &Path, db: &Path, backend: Backend) -> Result<usize> {
    let set = IdxSet::read(images, labels)?;
    let (n, rows, cols) = (set.len(), set.rows, set.cols);
    let mut writer = DbWriter::create(db, backend)?;
    info!("convert_mnist_data.cpp:88", "A total of {n} items.");
    info!("convert_mnist_data.cpp:89", "Rows: {rows} Cols: {cols}");
    // A live count on a terminal; the periodic log lines stay either way.
    let mut progress = Progress::for_stderr();
    progress.start(0);
    for (i, label) in set.labels.iter().enumerate() {
        let d = Datum {
            channels: Some(1),
            height: Some(rows as i32),
            width: Some(cols as i32),
            data: Some(set.image(i).to_vec()),
            // Caffe reads the label into a (signed) char.
            label: Some(*label as i8 as i32),
            ..Default::default()
        };
        writer.put(format!("{i:08}").as_bytes(), &datum::to_bytes(&d));
        let count = i + 1;
        progress.update_count("convert_mnist_data", count as i64, Some(n as i64));
        if count % 1000 == 0 {
            writer.commit()?;
        }
        if count % 10000 == 0 && count != n {
            info!("convert_mnist_data.cpp:108", "Processed {count} files.");
        }
    }
    progress.finish();
    writer.finish()?;
    info!("convert_mnist_data.cpp:108", "Processed {n} files.");
    Ok(n)
}
