//! `compute_image_mean [-backend lmdb|leveldb] INPUT_DB [OUTPUT_FILE]`: the mean
//! image of a Datum DB as a BlobProto (legacy 1×C×H×W fields, like Caffe's),
//! plus each channel's mean in the log. Sums and the division are in float,
//! as Caffe's, so the file matches Caffe's.
use std::path::Path;

use super::gflags::{self, Spec};
use crate::data::datum::{self, Values};
use crate::data::db::{key_display, open_cursor, Backend};
use crate::data::image::ColorMode;
use crate::log::progress::Progress;
use crate::proto::binary;
use crate::proto::caffe::BlobProto;
use crate::{info, Error, Result};

pub const SPEC: Spec = Spec {
    tool: "compute_image_mean",
    usage: "[-backend lmdb|leveldb] INPUT_DB [OUTPUT_FILE]",
    bools: &[],
    values: &[("backend", "lmdb", "the database type: lmdb or leveldb")],
};

pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 1, 2)?;
    let backend = Backend::parse(flags.value("backend"))?;
    let p = &flags.positional;
    let out = p.get(1).map(Path::new);
    compute(Path::new(&p[0]), out, backend)?;
    Ok(())
}

/// The mean blob and the per-channel means.
pub struct MeanResult {
    pub blob: BlobProto,
    pub channel_means: Vec<f32>,
    pub count: usize,
}

/// Computes the mean of every record of `db`, writing it to `out` if given.
pub fn compute(db: &Path, out: Option<&Path>, backend: Backend) -> Result<MeanResult> {
    let mut cursor = open_cursor(db, backend)?;
    let source = db.display().to_string();
    let record_err = |key: &[u8], msg: String| {
        Error::data(format!("source '{source}' ({}): record '{}': {msg}", backend.name(), key_display(key)))
    };
    if !cursor.valid() {
        return Err(Error::data(format!("source '{source}' ({}): the database is empty", backend.name())));
    }
    let first = datum::parse_and_decode(cursor.value(), ColorMode::Native)
        .map_err(|e| record_err(cursor.key(), e.to_string()))?;
    let (channels, height, width) = (first.channels, first.height, first.width);
    let size = first.count();
    let mut sum = vec![0f32; size];
    let mut count = 0usize;
    info!("compute_image_mean.cpp:67", "Starting iteration");
    // A live count on a terminal (a DB does not say how many records it holds);
    // the periodic log lines stay either way.
    let mut progress = Progress::for_stderr();
    progress.start(0);
    while cursor.valid() {
        let s = datum::parse_and_decode(cursor.value(), ColorMode::Native)
            .map_err(|e| record_err(cursor.key(), e.to_string()))?;
        if s.count() != size {
            return Err(record_err(
                cursor.key(),
                format!(
                    "Incorrect data field size {} ({}×{}×{}; the first record is {channels}×{height}×{width})",
                    s.count(),
                    s.channels,
                    s.height,
                    s.width
                ),
            ));
        }
        match &s.values {
            Values::U8(v) => sum.iter_mut().zip(v).for_each(|(acc, &x)| *acc += x as f32),
            Values::F32(v) => sum.iter_mut().zip(v).for_each(|(acc, &x)| *acc += x),
        }
        count += 1;
        progress.update_count("compute_image_mean", count as i64, None);
        if count % 10000 == 0 {
            info!("compute_image_mean.cpp:92", "Processed {count} files.");
        }
        cursor.next()?;
    }
    progress.finish();
    if count % 10000 != 0 {
        info!("compute_image_mean.cpp:92", "Processed {count} files.");
    }
    let data: Vec<f32> = sum.iter().map(|&s| s / count as f32).collect();
    let blob = BlobProto {
        num: Some(1),
        channels: Some(channels as i32),
        height: Some(height as i32),
        width: Some(width as i32),
        data,
        ..Default::default()
    };
    if let Some(out) = out {
        info!("compute_image_mean.cpp:105", "Write to {}", out.display());
        binary::write_message(out, &blob)?;
    }
    let dim = height * width;
    info!("compute_image_mean.cpp:111", "Number of channels: {channels}");
    let mut channel_means = Vec::with_capacity(channels);
    for c in 0..channels {
        let total: f32 = blob.data[c * dim..(c + 1) * dim].iter().fold(0f32, |acc, &v| acc + v);
        let mean = total / dim as f32;
        info!("compute_image_mean.cpp:116", "mean_value channel [{c}]: {}", crate::util::format_g(mean as f64, 6));
        channel_means.push(mean);
    }
    Ok(MeanResult { blob, channel_means, count })
}
