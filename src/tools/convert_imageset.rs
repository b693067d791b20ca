//! `convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME`: images named in a
//! list file (`path label` per line) into a DB of Datum keyed `%08d_<path>`,
//! as Caffe's tool: raw BGR pixels, or with `-encoded` the image file itself
//! (re-encoded as `-encode_type` when resized or of another format).
use std::path::Path;

use rand::seq::SliceRandom;

use super::gflags::{self, Spec};
use crate::data::datum;
use crate::data::db::{Backend, DbWriter};
use crate::data::image;
use crate::data::image::read_image_list;
use crate::log::progress::Progress;
use crate::{info, warn, Error, Result};

pub const SPEC: Spec = Spec {
    tool: "convert_imageset",
    usage: "[-gray] [-shuffle] [-backend lmdb|leveldb] [-resize_width N] [-resize_height N] [-check_size] [-encoded] [-encode_type png|jpg] ROOTFOLDER/ LISTFILE DB_NAME",
    bools: &[
        ("gray", false, "read the images as grayscale"),
        ("shuffle", false, "shuffle the list's order (and so the DB's)"),
        ("check_size", false, "check that every image has the first image's size"),
        ("encoded", false, "store each image encoded (its file, or -encode_type) instead of raw pixels"),
    ],
    values: &[
        ("backend", "lmdb", "the database type: lmdb or leveldb"),
        ("resize_width", "0", "resize every image to this width (0: keep)"),
        ("resize_height", "0", "resize every image to this height (0: keep)"),
        ("encode_type", "", "with -encoded: png or jpg (default: the file's own format)"),
    ],
};

/// The tool's options (its flags).
#[derive(Debug, Clone)]
pub struct Options {
    pub gray: bool,
    pub shuffle: bool,
    pub backend: Backend,
    pub resize_width: usize,
    pub resize_height: usize,
    pub check_size: bool,
    pub encoded: bool,
    pub encode_type: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gray: false,
            shuffle: false,
            backend: Backend::Lmdb,
            resize_width: 0,
            resize_height: 0,
            check_size: false,
            encoded: false,
            encode_type: String::new(),
        }
    }
}

pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 3, 3)?;
    let opts = Options {
        gray: flags.flag("gray"),
        shuffle: flags.flag("shuffle"),
        backend: Backend::parse(flags.value("backend"))?,
        resize_width: flags.int("resize_width")?.max(0) as usize,
        resize_height: flags.int("resize_height")?.max(0) as usize,
        check_size: flags.flag("check_size"),
        encoded: flags.flag("encoded"),
        encode_type: flags.value("encode_type").to_string(),
    };
    let p = &flags.positional;
    convert(&p[0], Path::new(&p[1]), Path::new(&p[2]), &opts)?;
    Ok(())
}

/// Converts; returns the number of images written. Unreadable images are
/// skipped with an error line, as Caffe does; the DB appears only when complete.
pub fn convert(root: &str, list: &Path, db: &Path, opts: &Options) -> Result<usize> {
    let mut lines = read_image_list(list)?;
    if opts.shuffle {
        info!("convert_imageset.cpp:93", "Shuffling data");
        lines.shuffle(&mut rand::thread_rng());
    }
    info!("convert_imageset.cpp:96", "A total of {} images.", lines.len());
    let encoded = opts.encoded || !opts.encode_type.is_empty();
    if !opts.encode_type.is_empty() && !opts.encoded {
        info!("convert_imageset.cpp:99", "encode_type specified, assuming encoded=true.");
    }
    let is_color = !opts.gray;
    let (rh, rw) = (opts.resize_height, opts.resize_width);
    let mut writer = DbWriter::create(db, opts.backend)?;
    let mut count = 0usize;
    let mut data_size: Option<usize> = None;
    // A live count on a terminal; the periodic log lines stay either way.
    let mut progress = Progress::for_stderr();
    progress.start(0);
    for (line_id, (file, label)) in lines.iter().enumerate() {
        progress.update_count("convert_imageset", line_id as i64, Some(lines.len() as i64));
        let path = format!("{root}{file}");
        let img = match image::read_file(Path::new(&path), rh, rw, is_color) {
            Ok(img) => img,
            Err(e) => {
                crate::log::write(crate::log::Severity::Error, "io.cpp:80", &e.to_string());
                continue;
            }
        };
        let enc = match (encoded, opts.encode_type.is_empty()) {
            (false, _) => String::new(),
            (true, false) => opts.encode_type.clone(),
            (true, true) => match file.rsplit_once('.') {
                Some((_, ext)) => ext.to_ascii_lowercase(),
                None => {
                    warn!("convert_imageset.cpp:130", "Failed to guess the encoding of '{file}'");
                    return Err(Error::invalid(format!("{path}: no extension to encode it as (pass -encode_type)")));
                }
            },
        };
        // An image that reads but does not encode stops the conversion, as in Caffe.
        let d = datum::image_record(&img, Path::new(&path), *label, (rh, rw, is_color), &enc)?;
        if opts.check_size && !encoded {
            let size = [d.channels(), d.height(), d.width()].iter().map(|&v| v as usize).product();
            match data_size {
                None => data_size = Some(size),
                Some(want) if want != size => {
                    return Err(Error::invalid(format!(
                        "{path}: Incorrect data field size {size} (the first image has {want})"
                    )));
                }
                _ => {}
            }
        }
        writer.put(format!("{line_id:08}_{file}").as_bytes(), &datum::to_bytes(&d));
        count += 1;
        if count % 1000 == 0 {
            writer.commit()?;
            info!("convert_imageset.cpp:146", "Processed {count} files.");
        }
    }
    progress.finish();
    writer.finish()?;
    if count % 1000 != 0 {
        info!("convert_imageset.cpp:152", "Processed {count} files.");
    }
    Ok(count)
}
