//! Caffe's HDF5 conventions (util/hdf5.cpp), shared by the HDF5 data layers and
//! the HDF5 snapshots: N-D float datasets, one-element int datasets and
//! fixed-length string datasets. Errors name the dataset;
//! callers add the file and the layer.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::{Error, Result};
use ::hdf5::dataset::Layout;
use ::hdf5::types::{FixedAscii, TypeDescriptor};
use ::hdf5::{Dataset, FileBuilder, Group};

pub use ::hdf5::File;

/// The longest string `read_string` returns (Caffe's learned_net paths).
const MAX_STRING: usize = 4096;

fn err(name: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::data(format!("dataset '{name}': {what}: {e}"))
}

/// Options for every HDF5 file caffe-tch opens: without libhdf5's file
/// locks. A lock belongs to the open file, which a forked child (the check
/// in [`read_untrusted`]) inherits, so a file another thread had open at the
/// fork would stay locked until the child exits and its next open would
/// fail. Caffe's HDF5 had no locks either, and our own writes are atomic
/// (a temporary file renamed), so readers never see half a file.
pub fn options() -> FileBuilder {
    let mut builder = File::with_options();
    builder.with_fapl(|p| p.file_locking(false));
    builder
}

/// Opens an existing file for reading. Private: a file a user gives us is
/// read through [`read_untrusted`].
fn open(path: &Path) -> Result<File> {
    options().open(path).map_err(|e| Error::data(format!("cannot open HDF5 file {}: {e}", path.display())))
}

/// Opens a file a user gave us (an HDF5Data source, `.caffemodel.h5` weights,
/// a `.solverstate.h5`) and runs `read` on it, after the same open and `read`
/// have run once in a forked child process.
///
/// Why: the system libhdf5 (1.10 on Debian 12) trusts a file's metadata, and
/// crafted files crash it inside its own parsing (a local heap, a symbol
/// table) where no check of ours can reach; newer libhdf5 releases refuse the
/// same files. A crash in the child is an error naming the signal, and the
/// file is never parsed in this process. `read` must return everything the
/// caller needs from the file, so the child walks the same objects and reads
/// the same datasets. A file that passed is remembered by (path, device, inode,
/// size, mtime), so a layer cycling through its files forks once per file.
/// The child runs under the memory limit and a time limit, because crafted
/// metadata can also make libhdf5 allocate or loop without end; a file that
/// fails there is never parsed here. The probe reads the file twice, the first
/// time only; its memory is the child's and is given back when it exits.
pub fn read_untrusted<T>(path: &Path, read: impl Fn(&File) -> Result<T>) -> Result<T> {
    probe(path, &|| open(path).and_then(|file| read(&file)).map(drop))?;
    read(&open(path)?)
}

/// An HDF5Data source file: the numeric datasets named `names`, in order.
pub fn read_data_file(path: &Path, names: &[String]) -> Result<Vec<(Vec<i64>, Vec<f32>)>> {
    read_untrusted(path, |file| names.iter().map(|name| read_f32(file, name)).collect())
}

/// What identifies a version of a file that passed the probe.
#[derive(PartialEq, Eq, Hash)]
struct ProbedFile {
    path: PathBuf,
    device: u64,
    inode: u64,
    size: u64,
    mtime: Option<SystemTime>,
}

impl ProbedFile {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let mtime = meta.modified().ok();
        Some(ProbedFile { path: path.to_path_buf(), device: meta.dev(), inode: meta.ino(), size: meta.len(), mtime })
    }
}

/// Files that passed; cleared when full (a file read again is probed again).
static PROBED: Mutex<Option<HashSet<ProbedFile>>> = Mutex::new(None);
const MAX_PROBED: usize = 4096;

/// Signals a crash in the child ends with; reset to their defaults there, so a
/// handler the host installed (libFuzzer's, Python's faulthandler) does not
/// run in the child as if this process had crashed.
const CRASH_SIGNALS: [libc::c_int; 5] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGABRT];

fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        _ => "",
    }
}

/// The probe's time budget: a base, plus one second per 10 MB of file (a
/// file's own reading is far faster than that). Crafted metadata can also
/// make libhdf5 loop or allocate without end rather than crash.
static PROBE_BASE_SECONDS: AtomicU64 = AtomicU64::new(30);
const PROBE_BYTES_PER_SECOND: u64 = 10 << 20;

/// Environment variable that sets the probe's base time budget, in seconds
/// (for files on a slow network filesystem).
pub const PROBE_SECONDS_ENV: &str = "CAFFE_TCH_HDF5_CHECK_SECONDS";

/// Sets the probe's base time budget (fuzzing sets a short one).
pub fn set_probe_base_seconds(seconds: u64) {
    PROBE_BASE_SECONDS.store(seconds.max(1), Ordering::Relaxed);
}

fn probe_base_seconds() -> u64 {
    match std::env::var(PROBE_SECONDS_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(seconds) => seconds.max(1),
        None => PROBE_BASE_SECONDS.load(Ordering::Relaxed),
    }
}

/// The most bytes of a child's error message passed back: less than a pipe's
/// buffer, so the child's write never waits for the parent.
const MAX_CHILD_MESSAGE: usize = 4096;

/// Runs `read` in a forked child, under a time limit and the memory limit
/// (`util::limits`). Ok when it read the file; otherwise the error is the
/// child's own (a clean error, passed back through a pipe), or names the
/// signal, the time limit or the failure. A file that failed in the child is
/// never parsed in this process.
fn probe(path: &Path, read: &dyn Fn() -> Result<()>) -> Result<()> {
    let Some(key) = ProbedFile::of(path) else {
        // Missing or unreadable: the caller's open reports it, with no parsing.
        return Ok(());
    };
    if PROBED.lock().is_ok_and(|probed| probed.as_ref().is_some_and(|set| set.contains(&key))) {
        return Ok(());
    }
    // Lazily initialised state the child may need, initialised here rather
    // than under a lock another thread might hold at the fork.
    let memory_limit = crate::util::limits::max_memory();
    // Unknown when /proc cannot be read: then the child runs without it.
    let address_space = mapped_bytes().map(|mapped| mapped.saturating_add(memory_limit));
    let mut pipe_ends = [0 as libc::c_int; 2];
    // SAFETY: pipe writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(pipe_ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::data(format!("cannot start the process that checks this HDF5 file first: {e}")));
    }
    let [read_end, write_end] = pipe_ends;
    // The fork happens under the hdf5 crate's library lock, and the child runs
    // `read` while still holding it (the lock is reentrant): no other thread is
    // inside libhdf5 at the fork, so the child's copy of libhdf5 is consistent.
    // The child is single-threaded and never returns: it ends with _exit, so no
    // destructor, atexit handler or buffered output of this process runs twice.
    let pid = ::hdf5::sync::sync(|| {
        // SAFETY: fork has no preconditions; the child only resets signal
        // dispositions and its memory limit, runs Rust code and libhdf5 (whose
        // lock it holds), writes to its pipe and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            for signal in CRASH_SIGNALS {
                // SAFETY: restoring a signal's default disposition.
                unsafe { libc::signal(signal, libc::SIG_DFL) };
            }
            if let Some(bytes) = address_space {
                let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
                // SAFETY: lowers this process's own address-space limit. If it
                // fails, the child reads without it (the time limit still holds).
                unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
            }
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    let message = e.to_string();
                    let bytes = &message.as_bytes()[..message.len().min(MAX_CHILD_MESSAGE)];
                    // SAFETY: writes from a valid buffer to the pipe's write end.
                    unsafe { libc::write(write_end, bytes.as_ptr().cast(), bytes.len()) };
                    1
                }
                Err(_) => 2,
            };
            // SAFETY: ends the child without running anything of the parent's.
            unsafe { libc::_exit(code) };
        }
        pid
    });
    // SAFETY: the parent's copy of the write end; the child holds its own.
    unsafe { libc::close(write_end) };
    let outcome = if pid < 0 {
        let e = std::io::Error::last_os_error();
        Err(Error::data(format!("cannot start the process that checks this HDF5 file first: {e}")))
    } else {
        let budget = probe_base_seconds() + key.size / PROBE_BYTES_PER_SECOND;
        wait_for_probe(pid, std::time::Duration::from_secs(budget), read_end)
    };
    // SAFETY: closes the read end opened above, once.
    unsafe { libc::close(read_end) };
    outcome?;
    if let Ok(mut probed) = PROBED.lock() {
        let set = probed.get_or_insert_with(HashSet::new);
        if set.len() >= MAX_PROBED {
            set.clear();
        }
        set.insert(key);
    }
    Ok(())
}

/// Bytes of address space this process has mapped (the child's limit is this
/// plus the memory limit, so what it may allocate is the memory limit).
fn mapped_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(pages.saturating_mul(page))
}

/// Waits for the probe's child until `budget` has passed (then kills it), and
/// turns how it ended into this file's answer.
fn wait_for_probe(pid: libc::pid_t, budget: std::time::Duration, read_end: libc::c_int) -> Result<()> {
    let start = std::time::Instant::now();
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: polls the child started by `probe`; `status` is a valid out pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if done < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::data(format!("cannot wait for the process that checks this HDF5 file first: {e}")));
            }
        }
        if start.elapsed() > budget {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(Error::data(format!(
                "libhdf5 was still parsing this file after {} s; the file is corrupt or crafted",
                budget.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let name = signal_name(signal);
        let signal = if name.is_empty() { signal.to_string() } else { format!("{signal}, {name}") };
        return Err(Error::data(format!(
            "libhdf5 crashed parsing this file (signal {signal}); the file is corrupt or crafted"
        )));
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        1 => {
            let mut message = vec![0u8; MAX_CHILD_MESSAGE];
            // SAFETY: reads into a valid buffer of that length; the child has exited.
            let n = unsafe { libc::read(read_end, message.as_mut_ptr().cast(), message.len()) };
            message.truncate(n.max(0) as usize);
            let message = String::from_utf8_lossy(&message).into_owned();
            Err(Error::data(if message.is_empty() { "cannot read this HDF5 file".to_string() } else { message }))
        }
        code => Err(Error::data(format!(
            "the process that checks this HDF5 file first failed (exit code {code}); the file was not read"
        ))),
    }
}

/// Creates (truncates) a file for writing.
pub fn create(path: &Path) -> Result<File> {
    options().create(path).map_err(|e| Error::data(format!("cannot create HDF5 file {}: {e}", path.display())))
}

/// Opens a dataset and checks that the bytes it stores can hold the values
/// it declares. libhdf5 (1.10) trusts a compact or contiguous dataset's
/// declared size and reads past what the file stores; a fuzzed file with a
/// 4-byte int stored in 0 bytes crashed it. A contiguous dataset never
/// written (no storage) reads as its fill value, so only a partial one is refused;
/// chunked storage is read chunk by chunk and is checked by libhdf5.
fn dataset(group: &Group, name: &str) -> Result<Dataset> {
    if !group.link_exists(name) {
        return Err(Error::data(format!("dataset '{name}' is missing")));
    }
    let ds = group.dataset(name).map_err(|e| err(name, "cannot open", e))?;
    let value_bytes = ds.dtype().map(|t| t.size()).map_err(|e| err(name, "unreadable type", e))?;
    let needed = (ds.size() as u64).saturating_mul(value_bytes as u64);
    let stored = ds.storage_size();
    let short = match ds.layout() {
        Layout::Compact => stored < needed,
        Layout::Contiguous => stored != 0 && stored < needed,
        _ => false,
    };
    if short {
        return Err(Error::data(format!(
            "dataset '{name}' declares {} values of {value_bytes} bytes but stores {stored} bytes (a corrupt file)",
            ds.size()
        )));
    }
    Ok(ds)
}

/// A numeric dataset as (shape, values in f32). Caffe reads float and double
/// datasets (and, since 2017, integers); anything else is an error.
pub fn read_f32(group: &Group, name: &str) -> Result<(Vec<i64>, Vec<f32>)> {
    let ds = dataset(group, name)?;
    let dtype = ds.dtype().and_then(|t| t.to_descriptor()).map_err(|e| err(name, "unreadable type", e))?;
    match dtype {
        TypeDescriptor::Float(_) | TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {}
        other => return Err(Error::data(format!("dataset '{name}' holds {other}, not numbers"))),
    }
    // A small file can declare a huge dataset (chunked, never written): the
    // declared size is checked before the read allocates it.
    let shape: Vec<i64> = ds.shape().iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
    crate::util::limits::checked_count(&shape, 4, &format!("dataset '{name}'"))
        .map_err(|e| Error::data(e.to_string()))?;
    let values = ds
        .as_reader()
        .conversion(::hdf5::Conversion::Soft)
        .read_raw::<f32>()
        .map_err(|e| err(name, "cannot read", e))?;
    Ok((shape, values))
}

/// Writes an f32 dataset of `shape` (Caffe's hdf5_save_nd_dataset), replacing
/// one of the same name.
pub fn write_f32(group: &Group, name: &str, shape: &[i64], values: &[f32]) -> Result<()> {
    if group.link_exists(name) {
        group.unlink(name).map_err(|e| err(name, "cannot replace", e))?;
    }
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    let ds = group.new_dataset::<f32>().shape(dims).create(name).map_err(|e| err(name, "cannot create", e))?;
    ds.write_raw(values).map_err(|e| err(name, "cannot write", e))
}

/// Caffe's hdf5_save_int: a 1-element int32 dataset.
pub fn write_int(group: &Group, name: &str, value: i32) -> Result<()> {
    let ds = group.new_dataset::<i32>().shape([1]).create(name).map_err(|e| err(name, "cannot create", e))?;
    ds.write_raw(&[value][..]).map_err(|e| err(name, "cannot write", e))
}

/// Caffe's hdf5_load_int: the one value of an integer dataset.
pub fn read_int(group: &Group, name: &str) -> Result<i32> {
    let ds = dataset(group, name)?;
    // Checked before reading: the read allocates the whole dataset, whatever
    // size the file declares, and libhdf5 trusts a declared integer's width.
    let dtype = ds.dtype().and_then(|t| t.to_descriptor()).map_err(|e| err(name, "unreadable type", e))?;
    if !matches!(dtype, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) {
        return Err(Error::data(format!("dataset '{name}' holds {dtype}, not an int")));
    }
    if ds.size() != 1 {
        return Err(Error::data(format!("dataset '{name}' holds {} values, expected one int", ds.size())));
    }
    let v = ds.read_raw::<i32>().map_err(|e| err(name, "cannot read an int", e))?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(Error::data(format!("dataset '{name}' holds {} values, expected one int", v.len()))),
    }
}

/// Caffe's hdf5_save_string: a scalar fixed-length string of len+1 bytes.
pub fn write_string(group: &Group, name: &str, value: &str) -> Result<()> {
    if value.len() >= MAX_STRING {
        return Err(Error::data(format!("dataset '{name}': string of {} bytes is too long", value.len())));
    }
    let text =
        FixedAscii::<MAX_STRING>::from_ascii(value.as_bytes()).map_err(|e| err(name, "not an ASCII string", e))?;
    let ds = group
        .new_dataset_builder()
        .empty_as(TypeDescriptor::FixedAscii(value.len() + 1))
        .create(name)
        .map_err(|e| err(name, "cannot create", e))?;
    ds.as_writer().conversion(::hdf5::Conversion::Soft).write_scalar(&text).map_err(|e| err(name, "cannot write", e))
}

/// Caffe's hdf5_load_string.
pub fn read_string(group: &Group, name: &str) -> Result<String> {
    let ds = dataset(group, name)?;
    // The conversion allocates a value of the file's string type: check its size first.
    let bytes = ds.dtype().map(|t| t.size()).map_err(|e| err(name, "unreadable type", e))?;
    if ds.size() != 1 || bytes > MAX_STRING {
        return Err(Error::data(format!(
            "dataset '{name}' is not one string of at most {MAX_STRING} bytes ({} values of {bytes} bytes)",
            ds.size()
        )));
    }
    let text = ds
        .as_reader()
        .conversion(::hdf5::Conversion::Soft)
        .read_scalar::<FixedAscii<MAX_STRING>>()
        .map_err(|e| err(name, "cannot read a string", e))?;
    Ok(text.as_str().trim_end_matches('\0').to_string())
}

/// The member names of a group, in the file's (name) order.
pub fn members(group: &Group) -> Result<Vec<String>> {
    group.member_names().map_err(|e| Error::data(format!("cannot list group {}: {e}", group.name())))
}

/// Opens a subgroup.
pub fn group(parent: &Group, name: &str) -> Result<Group> {
    if !parent.link_exists(name) {
        return Err(Error::data(format!("group '{name}' is missing")));
    }
    parent.group(name).map_err(|e| Error::data(format!("cannot open group '{name}': {e}")))
}

/// Creates a subgroup.
pub fn create_group(parent: &Group, name: &str) -> Result<Group> {
    parent.create_group(name).map_err(|e| Error::data(format!("cannot create group '{name}': {e}")))
}
