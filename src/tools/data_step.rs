//! `caffe data mnist [DIR]` (DIR defaults to `data/mnist`): Caffe's
//! `get_mnist.sh` + `create_mnist.sh` in one step.
//!
//! 1. MNIST's four IDX `.gz` files are downloaded from the usual mirrors into
//!    DIR and checked against their known MD5 sums (files already there and
//!    valid are kept).
//! 2. Offline (every mirror unreachable), Fashion-MNIST from Debian's
//!    `dataset-fashion-mnist` package is used instead: same format, same sizes.
//!    When it is missing, root on Debian installs it with apt-get; anyone else
//!    is told how.
//! 3. Both sets become `DIR/train_lmdb` and `DIR/test_lmdb` (convert_mnist_data),
//!    and `DIR/DATASET` says which dataset they hold. It is written last, so a
//!    second run with it and both LMDBs in place converts nothing.
//!
//! Environment: `CAFFE_MNIST_MIRRORS` (comma-separated base URLs; empty means
//! do not download), `CAFFE_MNIST_TIMEOUT` (connect timeout, seconds, default
//! 10), `CAFFE_FASHION_MNIST_DIR` (where the fallback's IDX files are).
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use md5::{Digest, Md5};

use super::convert_mnist_data;
use super::gflags::{self, Spec};
use crate::data::db::{self, Backend};
use crate::{info, warn, Error, Result};

/// MNIST's files and their MD5 sums (the sums torchvision and others check).
pub const MNIST_FILES: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
];

/// Where MNIST is served today (LeCun's own site often refuses downloads).
pub const DEFAULT_MIRRORS: [&str; 3] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Debian's `dataset-fashion-mnist` puts its files here.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
const FASHION_PACKAGE: &str = "dataset-fashion-mnist";

const TRAIN_IMAGES: usize = 0;
const TRAIN_LABELS: usize = 1;
const TEST_IMAGES: usize = 2;
const TEST_LABELS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    Mnist,
    FashionMnist,
}

impl Dataset {
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST",
            Dataset::FashionMnist => "Fashion-MNIST",
        }
    }

    fn from_name(s: &str) -> Option<Dataset> {
        match s.trim() {
            "MNIST" => Some(Dataset::Mnist),
            "Fashion-MNIST" => Some(Dataset::FashionMnist),
            _ => None,
        }
    }
}

/// How `mnist` finds its data.
#[derive(Debug, Clone)]
pub struct DataOptions {
    pub dir: PathBuf,
    /// Base URLs tried in order; empty: no download.
    pub mirrors: Vec<String>,
    pub connect_timeout: Duration,
    pub fashion_dir: PathBuf,
    /// Whether a missing Fashion-MNIST may be installed with apt-get (root on Debian only).
    pub allow_install: bool,
    /// The MD5 each of MNIST_FILES must have (MNIST's own unless a test serves other files).
    pub md5: [String; 4],
}

impl DataOptions {
    /// The defaults, with the environment's overrides.
    pub fn from_env(dir: &Path) -> Result<DataOptions> {
        let mirrors = match std::env::var("CAFFE_MNIST_MIRRORS") {
            Ok(list) => list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
            Err(_) => DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect(),
        };
        let connect_timeout = match std::env::var("CAFFE_MNIST_TIMEOUT") {
            Ok(s) => {
                let secs: f64 = s.trim().parse().ok().filter(|v: &f64| v.is_finite() && *v > 0.0).ok_or_else(|| {
                    Error::invalid(format!("CAFFE_MNIST_TIMEOUT must be a positive number of seconds, got '{s}'"))
                })?;
                Duration::from_secs_f64(secs)
            }
            Err(_) => Duration::from_secs(10),
        };
        let (fashion_dir, allow_install) = match std::env::var("CAFFE_FASHION_MNIST_DIR") {
            Ok(d) if !d.is_empty() => (PathBuf::from(d), false),
            _ => (PathBuf::from(FASHION_MNIST_DIR), true),
        };
        let md5 = MNIST_FILES.map(|(_, sum)| sum.to_string());
        Ok(DataOptions { dir: dir.to_path_buf(), mirrors, connect_timeout, fashion_dir, allow_install, md5 })
    }
}

/// What `mnist` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub dataset: Dataset,
    /// Where the IDX files came from (a URL or a folder).
    pub origin: String,
    pub train_records: usize,
    pub test_records: usize,
    /// False when complete LMDBs were already there.
    pub converted: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn md5_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn valid_file(path: &Path, md5: &str) -> bool {
    path.is_file() && md5_file(path).is_ok_and(|sum| sum == md5)
}

/// Downloads `url` to `dest` through a temporary file (`util::write_atomic_with`),
/// checking the MD5: `dest` is either complete and verified or absent.
fn download(agent: &ureq::Agent, url: &str, dest: &Path, md5: &str) -> Result<()> {
    let response = agent.get(url).call().map_err(|e| Error::data(e.to_string()))?;
    let mut reader = response.into_body().into_reader();
    crate::util::write_atomic_with(dest, |tmp| {
        let mut file = std::fs::File::create(tmp).map_err(io_err(dest))?;
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::data(format!("{url}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io_err(dest))?;
        }
        let sum: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if sum != md5 {
            return Err(Error::data(format!("{url}: MD5 {sum}, expected {md5} (a corrupt or different file)")));
        }
        Ok(())
    })
}

/// Gets MNIST's four files into `dir`; the mirror used, or None when none
/// could provide them (each mirror's failure is logged).
fn fetch_mnist(opts: &DataOptions) -> Option<String> {
    let paths: Vec<PathBuf> = MNIST_FILES.iter().map(|(name, _)| opts.dir.join(name)).collect();
    let all_valid = || opts.md5.iter().zip(&paths).all(|(md5, p)| valid_file(p, md5));
    if all_valid() {
        return Some(format!("{} (already downloaded)", opts.dir.display()));
    }
    if opts.mirrors.is_empty() {
        info!(crate::here!("data_step.rs"), "No MNIST mirror configured (CAFFE_MNIST_MIRRORS is empty)");
        return None;
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_resolve(Some(opts.connect_timeout))
        .timeout_connect(Some(opts.connect_timeout))
        // Stalled transfers fail too, not only unreachable hosts.
        .timeout_per_read(Some(opts.connect_timeout.max(Duration::from_secs(30))))
        .build()
        .into();
    for mirror in &opts.mirrors {
        let base = if mirror.ends_with('/') { mirror.clone() } else { format!("{mirror}/") };
        let mut ok = true;
        for (((name, _), md5), path) in MNIST_FILES.iter().zip(&opts.md5).zip(&paths) {
            if valid_file(path, md5) {
                continue;
            }
            let url = format!("{base}{name}");
            info!(crate::here!("data_step.rs"), "Downloading {url}");
            if let Err(e) = download(&agent, &url, path, md5) {
                warn!(crate::here!("data_step.rs"), "{url}: {e}");
                ok = false;
                break;
            }
        }
        if ok && all_valid() {
            return Some(base);
        }
    }
    None
}

fn fashion_files_present(dir: &Path) -> bool {
    MNIST_FILES.iter().all(|(name, _)| dir.join(name).is_file())
}

/// Whether this process runs as root (the owner of /proc/self is the effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn apt_get(args: &[&str]) -> bool {
    info!(crate::here!("data_step.rs"), "Running apt-get {}", args.join(" "));
    Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success())
}

/// Makes sure Fashion-MNIST's files are in `opts.fashion_dir`, installing the
/// Debian package when allowed.
fn fashion_mnist(opts: &DataOptions) -> Result<PathBuf> {
    let dir = &opts.fashion_dir;
    if fashion_files_present(dir) {
        return Ok(dir.clone());
    }
    let how = format!(
        "MNIST could not be downloaded and Fashion-MNIST is not in {} either. Connect to the internet, \
         or install Debian's {FASHION_PACKAGE} package (sudo apt-get install {FASHION_PACKAGE}), then run again",
        dir.display()
    );
    let on_debian = Path::new("/etc/debian_version").is_file();
    if !(opts.allow_install && on_debian && running_as_root()) {
        return Err(Error::invalid(how));
    }
    info!(crate::here!("data_step.rs"), "Installing Debian's {FASHION_PACKAGE}");
    if !apt_get(&["install", "-y", FASHION_PACKAGE]) {
        // A fresh machine may have no package lists yet.
        let _ = apt_get(&["update"]);
        if !apt_get(&["install", "-y", FASHION_PACKAGE]) {
            return Err(Error::invalid(format!("apt-get install {FASHION_PACKAGE} failed. {how}")));
        }
    }
    if fashion_files_present(dir) {
        Ok(dir.clone())
    } else {
        Err(Error::invalid(format!("{FASHION_PACKAGE} is installed but its files are not in {}", dir.display())))
    }
}

/// Records in an LMDB, or None when it is not one.
fn count_records(path: &Path) -> Option<usize> {
    Backend::detect(path).filter(|b| *b == Backend::Lmdb)?;
    let mut cursor = db::open_cursor(path, Backend::Lmdb).ok()?;
    let mut n = 0;
    while cursor.valid() {
        n += 1;
        cursor.next().ok()?;
    }
    Some(n)
}

/// The `DATASET` file: the dataset's name on the first line, then `key: value` lines.
fn dataset_text(p: &Prepared) -> String {
    format!(
        "{}\nsource: {}\ntrain_lmdb: {} records\ntest_lmdb: {} records\n",
        p.dataset.name(),
        p.origin,
        p.train_records,
        p.test_records
    )
}

/// A finished earlier run: DATASET names the dataset and both LMDBs hold the records it lists.
fn already_prepared(dir: &Path) -> Option<Prepared> {
    let text = std::fs::read_to_string(dir.join("DATASET")).ok()?;
    let mut lines = text.lines();
    let dataset = Dataset::from_name(lines.next()?)?;
    let mut origin = String::new();
    let (mut train, mut test) = (None, None);
    for line in lines {
        let Some((key, value)) = line.split_once(':') else { continue };
        let count = || value.trim().trim_end_matches("records").trim().parse::<usize>().ok();
        match key.trim() {
            "source" => origin = value.trim().to_string(),
            "train_lmdb" => train = count(),
            "test_lmdb" => test = count(),
            _ => {}
        }
    }
    let (train, test) = (train?, test?);
    if count_records(&dir.join("train_lmdb"))? != train || count_records(&dir.join("test_lmdb"))? != test {
        return None;
    }
    Some(Prepared { dataset, origin, train_records: train, test_records: test, converted: false })
}

/// Removes a DB an unfinished earlier run left (only an LMDB folder, nothing else).
fn remove_stale_db(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if Backend::detect(path) != Some(Backend::Lmdb) {
        return Err(Error::invalid(format!("{}: exists and is not an LMDB; move it away first", path.display())));
    }
    info!(crate::here!("data_step.rs"), "Removing {} (left by an unfinished run)", path.display());
    std::fs::remove_dir_all(path).map_err(io_err(path))
}

/// Fetches (or finds) the data and converts it; see the module's doc.
pub fn mnist(opts: &DataOptions) -> Result<Prepared> {
    let dir = &opts.dir;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(done) = already_prepared(dir) {
        return Ok(done);
    }
    let (dataset, source_dir, origin) = match fetch_mnist(opts) {
        Some(origin) => (Dataset::Mnist, dir.clone(), origin),
        None => {
            warn!(
                crate::here!("data_step.rs"),
                "MNIST is not reachable; using Fashion-MNIST instead (same format and sizes)"
            );
            let d = fashion_mnist(opts)?;
            let origin = d.display().to_string();
            (Dataset::FashionMnist, d, origin)
        }
    };
    // DATASET goes first and comes back last: an interrupted run is never taken as complete.
    let marker = dir.join("DATASET");
    if marker.exists() {
        std::fs::remove_file(&marker).map_err(io_err(&marker))?;
    }
    let file = |i: usize| source_dir.join(MNIST_FILES[i].0);
    let train_db = dir.join("train_lmdb");
    let test_db = dir.join("test_lmdb");
    remove_stale_db(&train_db)?;
    remove_stale_db(&test_db)?;
    let train_records =
        convert_mnist_data::convert(&file(TRAIN_IMAGES), &file(TRAIN_LABELS), &train_db, Backend::Lmdb)?;
    let test_records = convert_mnist_data::convert(&file(TEST_IMAGES), &file(TEST_LABELS), &test_db, Backend::Lmdb)?;
    let prepared = Prepared { dataset, origin, train_records, test_records, converted: true };
    crate::util::write_atomic(&marker, dataset_text(&prepared).as_bytes())?;
    Ok(prepared)
}

pub const SPEC: Spec =
    Spec { tool: "data", usage: "mnist [DIR] (DIR defaults to data/mnist)", bools: &[], values: &[] };

/// The CLI entry: `mnist [DIR]`.
pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 1, 2)?;
    let what = flags.positional[0].as_str();
    if what != "mnist" {
        return Err(Error::invalid(format!("caffe data: unknown dataset '{what}' (known: mnist)")));
    }
    let dir = PathBuf::from(flags.positional.get(1).map(String::as_str).unwrap_or("data/mnist"));
    let p = mnist(&DataOptions::from_env(&dir)?)?;
    let state = if p.converted { "converted" } else { "already converted; nothing to do" };
    println!(
        "Dataset: {} from {} ({state}): {} ({} records), {} ({} records)",
        p.dataset.name(),
        p.origin,
        dir.join("train_lmdb").display(),
        p.train_records,
        dir.join("test_lmdb").display(),
        p.test_records
    );
    Ok(())
}
