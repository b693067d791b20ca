//! Caffe's key-value datasets: LMDB and LevelDB behind one cursor and one writer
//! (Caffe's `db::DB`, `Cursor` and `Transaction`).
//!
//! Reading never writes: LMDBs open read-only and lock-free (`MDB_RDONLY |
//! MDB_NOLOCK`), so datasets on read-only media work. LevelDB cannot open
//! without writing (it replays its log into a table), so a LevelDB that cannot
//! be opened in place is copied to a temporary folder first.
//!
//! Writing goes to a hidden temporary folder next to the target, renamed to
//! the final name only when everything is committed: a failed run leaves no
//! half-written DB behind.
use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use heed::types::Bytes;
use heed::{EnvFlags, EnvOpenOptions, WithoutTls};
use std::sync::LazyLock;

use crate::proto::caffe::data_parameter::Db as ProtoDb;
use crate::{info, warn, Error, Result};

/// Which key-value store a dataset lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Lmdb,
    LevelDb,
}

impl Backend {
    /// `DataParameter.backend` (Caffe's default is LEVELDB).
    pub fn from_proto(db: ProtoDb) -> Backend {
        match db {
            ProtoDb::Lmdb => Backend::Lmdb,
            ProtoDb::Leveldb => Backend::LevelDb,
        }
    }

    /// The tools' `-backend` flag: "lmdb" or "leveldb".
    pub fn parse(name: &str) -> Result<Backend> {
        match name {
            "lmdb" => Ok(Backend::Lmdb),
            "leveldb" => Ok(Backend::LevelDb),
            other => Err(Error::invalid(format!("unknown database backend '{other}' (use lmdb or leveldb)"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Lmdb => "lmdb",
            Backend::LevelDb => "leveldb",
        }
    }

    /// The name as DataParameter spells it.
    pub fn proto_name(self) -> &'static str {
        match self {
            Backend::Lmdb => "LMDB",
            Backend::LevelDb => "LEVELDB",
        }
    }

    /// The backend whose files `path` holds, if it is a DB folder.
    pub fn detect(path: &Path) -> Option<Backend> {
        if path.join("data.mdb").is_file() {
            Some(Backend::Lmdb)
        } else if path.join("CURRENT").is_file() {
            Some(Backend::LevelDb)
        } else {
            None
        }
    }
}

fn data_err(msg: String) -> Error {
    Error::Data(msg)
}

/// Shows a key as text when it is printable (Caffe's keys are), else as hex.
pub fn key_display(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// A position in a DB, walking keys in order (Caffe's `db::Cursor`).
pub trait Cursor {
    fn seek_to_first(&mut self) -> Result<()>;
    /// Moves to the next record; past the last one the cursor is invalid.
    fn next(&mut self) -> Result<()>;
    fn valid(&self) -> bool;
    /// The current key (empty when invalid).
    fn key(&self) -> &[u8];
    /// The current value (empty when invalid).
    fn value(&self) -> &[u8];
}

/// Checks that `path` is a DB of `backend` and says clearly what is wrong if not.
fn check_source(path: &Path, backend: Backend) -> Result<()> {
    let shown = path.display();
    if !path.exists() {
        return Err(data_err(format!(
            "source '{shown}' ({}): no such database (the folder does not exist)",
            backend.name()
        )));
    }
    if !path.is_dir() {
        return Err(data_err(format!("source '{shown}' ({}): not a database folder (it is a file)", backend.name())));
    }
    match (backend, Backend::detect(path)) {
        (want, Some(found)) if want != found => Err(data_err(format!(
            "source '{shown}' is an {} database but the backend is {} (set data_param {{ backend: {} }}; Caffe's default is LEVELDB)",
            found.proto_name(),
            want.proto_name(),
            found.proto_name()
        ))),
        (Backend::Lmdb, None) => Err(data_err(format!("source '{shown}' (lmdb): not an LMDB (no data.mdb in the folder)"))),
        (Backend::LevelDb, None) => Err(data_err(format!("source '{shown}' (leveldb): not a LevelDB (no CURRENT file in the folder)"))),
        _ => Ok(()),
    }
}

/// Opens a cursor on an existing DB, positioned on its first record (invalid if empty).
pub fn open_cursor(path: &Path, backend: Backend) -> Result<Box<dyn Cursor>> {
    check_source(path, backend)?;
    let mut cursor: Box<dyn Cursor> = match backend {
        Backend::Lmdb => {
            let c = LmdbCursor::open(path)?;
            info!("db_lmdb.cpp:35", "Opened lmdb {}", path.display());
            Box::new(c)
        }
        Backend::LevelDb => {
            let c = LevelDbCursor::open(path)?;
            info!("db_leveldb.cpp:18", "Opened leveldb {}", path.display());
            Box::new(c)
        }
    };
    cursor.seek_to_first()?;
    Ok(cursor)
}

// ---------------------------------------------------------------- LMDB reading

/// heed refuses to open one environment twice in a process; readers of the same
/// folder (a train and a test net, two tests) share one through this table.
/// Each open environment, with how many readers hold it.
type SharedEnvs = HashMap<PathBuf, (heed::Env<WithoutTls>, usize)>;
static LMDB_ENVS: LazyLock<Mutex<SharedEnvs>> = LazyLock::new(|| Mutex::new(HashMap::new()));

struct SharedEnv {
    env: heed::Env<WithoutTls>,
    key: PathBuf,
}

impl SharedEnv {
    fn open(path: &Path) -> Result<SharedEnv> {
        let key = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let mut table = LMDB_ENVS.lock().map_err(|_| Error::invalid("LMDB environment table poisoned"))?;
        if let Some((env, users)) = table.get_mut(&key) {
            *users += 1;
            return Ok(SharedEnv { env: env.clone(), key });
        }
        // liblmdb trusts the file's pages; check them before it maps them.
        super::lmdb_check::check(&key, &format!("source '{}' (lmdb)", path.display()))?;
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        // SAFETY: read-only, lock-free access: Caffe's datasets are not written
        // while they are read; NO_LOCK needs no lock.mdb, so read-only media work.
        let env = unsafe {
            opts.flags(EnvFlags::READ_ONLY | EnvFlags::NO_LOCK);
            opts.open(&key)
        }
        .map_err(|e| data_err(format!("source '{}' (lmdb): cannot open: {e}", path.display())))?;
        table.insert(key.clone(), (env.clone(), 1));
        Ok(SharedEnv { env, key })
    }
}

impl Drop for SharedEnv {
    fn drop(&mut self) {
        if let Ok(mut table) = LMDB_ENVS.lock() {
            let last = match table.get_mut(&self.key) {
                Some((_, users)) => {
                    *users -= 1;
                    *users == 0
                }
                None => false,
            };
            if last {
                table.remove(&self.key);
            }
        }
    }
}

/// Reads ahead this many records per read transaction: a cursor stays free of
/// borrowed transactions and each step costs a pop.
const LMDB_CHUNK: usize = 256;

struct LmdbCursor {
    shared: SharedEnv,
    db: Option<heed::Database<Bytes, Bytes>>,
    source: String,
    ahead: VecDeque<(Vec<u8>, Vec<u8>)>,
    current: Option<(Vec<u8>, Vec<u8>)>,
    /// The last key read into `ahead`; None before the first read.
    last_read: Option<Vec<u8>>,
    at_end: bool,
}

impl LmdbCursor {
    fn open(path: &Path) -> Result<LmdbCursor> {
        let source = path.display().to_string();
        let shared = SharedEnv::open(path)?;
        let lmdb_err = |e: heed::Error| data_err(format!("source '{source}' (lmdb): {e}"));
        let rtxn = shared.env.read_txn().map_err(lmdb_err)?;
        let db = shared.env.open_database::<Bytes, Bytes>(&rtxn, None).map_err(lmdb_err)?;
        rtxn.commit().map_err(lmdb_err)?;
        Ok(LmdbCursor { shared, db, source, ahead: VecDeque::new(), current: None, last_read: None, at_end: false })
    }

    fn read_ahead(&mut self) -> Result<()> {
        let Some(db) = self.db else {
            self.at_end = true;
            return Ok(());
        };
        let source = &self.source;
        let lmdb_err = |e: heed::Error| data_err(format!("source '{source}' (lmdb): {e}"));
        let rtxn = self.shared.env.read_txn().map_err(lmdb_err)?;
        let start: Bound<&[u8]> = match &self.last_read {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let range = (start, Bound::<&[u8]>::Unbounded);
        let mut n = 0;
        for item in db.range(&rtxn, &range).map_err(lmdb_err)? {
            let (k, v) = item.map_err(lmdb_err)?;
            self.ahead.push_back((k.to_vec(), v.to_vec()));
            n += 1;
            if n == LMDB_CHUNK {
                break;
            }
        }
        if let Some((k, _)) = self.ahead.back() {
            self.last_read = Some(k.clone());
        }
        if n < LMDB_CHUNK {
            self.at_end = true;
        }
        Ok(())
    }
}

impl Cursor for LmdbCursor {
    fn seek_to_first(&mut self) -> Result<()> {
        self.ahead.clear();
        self.last_read = None;
        self.at_end = false;
        self.current = None;
        self.next()
    }

    fn next(&mut self) -> Result<()> {
        if self.ahead.is_empty() && !self.at_end {
            self.read_ahead()?;
        }
        self.current = self.ahead.pop_front();
        Ok(())
    }

    fn valid(&self) -> bool {
        self.current.is_some()
    }
    fn key(&self) -> &[u8] {
        self.current.as_ref().map(|c| c.0.as_slice()).unwrap_or(&[])
    }
    fn value(&self) -> &[u8] {
        self.current.as_ref().map(|c| c.1.as_slice()).unwrap_or(&[])
    }
}

// ------------------------------------------------------------- LevelDB reading

struct LevelDbCursor {
    iter: rusty_leveldb::DBIterator,
    current: Option<(Vec<u8>, Vec<u8>)>,
    // Kept for their lifetimes: the DB the iterator reads, and the copy it may read from.
    _db: rusty_leveldb::DB,
    _copy: Option<tempfile::TempDir>,
}

fn leveldb_options(create: bool) -> rusty_leveldb::Options {
    rusty_leveldb::Options {
        create_if_missing: create,
        // The writer's folder is a fresh temporary one; the target was checked.
        error_if_exists: false,
        // Caffe's LevelDB settings; tables are snappy-compressed like LevelDB's default.
        write_buffer_size: 64 << 20,
        block_size: 64 << 10,
        max_open_files: 100,
        compressor: 1,
        ..Default::default()
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

impl LevelDbCursor {
    fn open(path: &Path) -> Result<LevelDbCursor> {
        let source = path.display();
        let (db, copy) = match rusty_leveldb::DB::open(path, leveldb_options(false)) {
            Ok(db) => (db, None),
            Err(first) => {
                // Read-only media, or the DB is already open (LevelDB allows one
                // opener): read a private copy.
                let tmp = tempfile::Builder::new().prefix("caffe-leveldb-").tempdir().map_err(|e| {
                    data_err(format!(
                        "source '{source}' (leveldb): cannot open ({first}) nor make a temporary copy: {e}"
                    ))
                })?;
                copy_dir(path, tmp.path()).map_err(|e| {
                    data_err(format!("source '{source}' (leveldb): cannot open ({first}) nor copy it: {e}"))
                })?;
                let db = rusty_leveldb::DB::open(tmp.path(), leveldb_options(false))
                    .map_err(|e| data_err(format!("source '{source}' (leveldb): cannot open: {e}")))?;
                warn!(
                    "db_leveldb.cpp:16",
                    "LevelDB {source} could not be opened in place ({first}); reading a copy in {}",
                    tmp.path().display()
                );
                (db, Some(tmp))
            }
        };
        let mut db = db;
        let iter = db.new_iter().map_err(|e| data_err(format!("source '{source}' (leveldb): {e}")))?;
        Ok(LevelDbCursor { iter, current: None, _db: db, _copy: copy })
    }

    fn load_current(&mut self) {
        use rusty_leveldb::LdbIterator;
        self.current =
            if self.iter.valid() { self.iter.current().map(|(k, v)| (k.to_vec(), v.to_vec())) } else { None };
    }
}

impl Cursor for LevelDbCursor {
    fn seek_to_first(&mut self) -> Result<()> {
        use rusty_leveldb::LdbIterator;
        self.iter.seek_to_first();
        self.load_current();
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        use rusty_leveldb::LdbIterator;
        if self.iter.advance() {
            self.load_current();
        } else {
            self.current = None;
        }
        Ok(())
    }

    fn valid(&self) -> bool {
        self.current.is_some()
    }
    fn key(&self) -> &[u8] {
        self.current.as_ref().map(|c| c.0.as_slice()).unwrap_or(&[])
    }
    fn value(&self) -> &[u8] {
        self.current.as_ref().map(|c| c.1.as_slice()).unwrap_or(&[])
    }
}

// ------------------------------------------------------- the data layer's reader

/// Endless reading of a DB for a data layer: keys in order, back to the first
/// after the last with Caffe's log line.
pub struct RecordReader {
    cursor: Box<dyn Cursor>,
    source: String,
    backend: Backend,
    /// Records passed since sharding began (wrap-arounds included), and the
    /// share this reader keeps: records whose offset % world == rank.
    offset: u64,
    rank: u64,
    world: u64,
}

impl RecordReader {
    /// Opens `path`; an empty DB is an error (a data layer could never fill a batch).
    pub fn open(path: &Path, backend: Backend) -> Result<RecordReader> {
        let cursor = open_cursor(path, backend)?;
        if !cursor.valid() {
            return Err(data_err(format!("source '{}' ({}): the database is empty", path.display(), backend.name())));
        }
        Ok(RecordReader { cursor, source: path.display().to_string(), backend, offset: 0, rank: 0, world: 1 })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The current record (the reader is always on one).
    pub fn key(&self) -> &[u8] {
        self.cursor.key()
    }
    pub fn value(&self) -> &[u8] {
        self.cursor.value()
    }

    /// Keeps from here on only the records whose offset (counted from the
    /// current record, wrap-arounds included) is `rank` modulo `world`, as
    /// Caffe's DataLayer does with several solvers: N ranks at batch B read
    /// the records one reader at batch N·B reads. Moves to the first kept one.
    pub fn shard(&mut self, rank: usize, world: usize) -> Result<()> {
        if world == 0 || rank >= world {
            return Err(data_err(format!("rank {rank} is not below the world size {world}")));
        }
        self.offset = 0;
        self.rank = rank as u64;
        self.world = world as u64;
        while self.offset % self.world != self.rank {
            self.step()?;
        }
        Ok(())
    }

    /// Moves to the next record this reader keeps, wrapping to the first after the last.
    pub fn advance(&mut self) -> Result<()> {
        self.step()?;
        while self.offset % self.world != self.rank {
            self.step()?;
        }
        Ok(())
    }

    /// Moves to the next record, wrapping to the first after the last.
    fn step(&mut self) -> Result<()> {
        self.offset += 1;
        self.cursor.next()?;
        if !self.cursor.valid() {
            info!("data_layer.cpp:73", "Restarting data prefetching from start.");
            self.cursor.seek_to_first()?;
            if !self.cursor.valid() {
                return Err(data_err(format!(
                    "source '{}' ({}): the database became empty",
                    self.source,
                    self.backend.name()
                )));
            }
        }
        Ok(())
    }

    /// Skips `n` of the records this reader keeps (DataParameter.rand_skip; a
    /// resumed run's position), wrapping as needed without logging each wrap.
    /// Past two wrap-arounds the DB's length is known and whole passes are
    /// skipped at once, so a position far into training costs at most two passes.
    pub fn skip(&mut self, n: u64) -> Result<()> {
        // From a kept record, the n-th next kept one is n·world records on.
        let mut remaining = n.saturating_mul(self.world);
        self.offset = self.offset.wrapping_add(remaining);
        let mut wraps = 0u32;
        let mut since_wrap = 0u64;
        while remaining > 0 {
            self.cursor.next()?;
            remaining -= 1;
            since_wrap += 1;
            if !self.cursor.valid() {
                self.cursor.seek_to_first()?;
                if !self.cursor.valid() {
                    return Err(data_err(format!(
                        "source '{}' ({}): the database became empty",
                        self.source,
                        self.backend.name()
                    )));
                }
                wraps += 1;
                if wraps == 2 {
                    // A whole pass, first record to first record: the DB's length.
                    remaining %= since_wrap;
                }
                since_wrap = 0;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------- writing

/// A new DB written through a temporary sibling folder (Caffe's `db::NEW` mode
/// plus `Transaction`): `put` buffers, `commit` writes the buffer, `finish`
/// commits and moves the DB to its name. Dropped unfinished, nothing remains.
pub struct DbWriter {
    backend: Backend,
    target: PathBuf,
    tmp: Option<tempfile::TempDir>,
    inner: Option<WriterInner>,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    written: usize,
}

enum WriterInner {
    Lmdb { env: heed::Env, db: heed::Database<Bytes, Bytes>, map_size: usize },
    LevelDb(Box<rusty_leveldb::DB>),
}

const LMDB_INITIAL_MAP: usize = 64 << 20;

impl DbWriter {
    /// Starts a new DB at `path`, which must not exist (like Caffe's NEW mode).
    pub fn create(path: &Path, backend: Backend) -> Result<DbWriter> {
        Self::create_with_map(path, backend, LMDB_INITIAL_MAP)
    }

    /// `create` with a given first LMDB map size (it doubles when full).
    pub fn create_with_map(path: &Path, backend: Backend, initial_map: usize) -> Result<DbWriter> {
        let shown = path.display();
        if path.exists() {
            return Err(data_err(format!("{shown}: already exists (remove it first; a DB is never overwritten)")));
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(data_err(format!("{shown}: the parent folder {} does not exist", parent.display())));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "db".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp"))
            .tempdir_in(&parent)
            .map_err(|e| Error::io(path, e))?;
        let inner = match backend {
            Backend::Lmdb => {
                let mut opts = EnvOpenOptions::new();
                opts.map_size(initial_map);
                // SAFETY: a fresh folder only this writer uses; durability comes
                // from the final sync and rename, not per-commit syncs.
                let env = unsafe {
                    opts.flags(EnvFlags::NO_SYNC);
                    opts.open(tmp.path())
                }
                .map_err(|e| data_err(format!("{shown} (lmdb): cannot create: {e}")))?;
                let mut wtxn = env.write_txn().map_err(|e| data_err(format!("{shown} (lmdb): {e}")))?;
                let db = env
                    .create_database::<Bytes, Bytes>(&mut wtxn, None)
                    .map_err(|e| data_err(format!("{shown} (lmdb): {e}")))?;
                wtxn.commit().map_err(|e| data_err(format!("{shown} (lmdb): {e}")))?;
                info!("db_lmdb.cpp:35", "Opened lmdb {shown}");
                WriterInner::Lmdb { env, db, map_size: initial_map }
            }
            Backend::LevelDb => {
                let db = rusty_leveldb::DB::open(tmp.path(), leveldb_options(true))
                    .map_err(|e| data_err(format!("{shown} (leveldb): cannot create: {e}")))?;
                info!("db_leveldb.cpp:18", "Opened leveldb {shown}");
                WriterInner::LevelDb(Box::new(db))
            }
        };
        Ok(DbWriter {
            backend,
            target: path.to_path_buf(),
            tmp: Some(tmp),
            inner: Some(inner),
            pending: Vec::new(),
            written: 0,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Records committed so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Buffers one record until the next `commit`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.pending.push((key.to_vec(), value.to_vec()));
    }

    /// Writes the buffered records in one transaction.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let shown = self.target.display().to_string();
        let pending = std::mem::take(&mut self.pending);
        match self.inner.as_mut() {
            Some(WriterInner::Lmdb { env, db, map_size }) => loop {
                match lmdb_write_all(env, *db, &pending) {
                    Ok(()) => break,
                    Err(heed::Error::Mdb(heed::MdbError::MapFull)) => {
                        // Like Caffe: grow the map and redo the transaction.
                        *map_size *= 2;
                        // SAFETY: the failed transaction was dropped; no transaction is open.
                        unsafe { env.resize(*map_size) }
                            .map_err(|e| data_err(format!("{shown} (lmdb): cannot grow the map: {e}")))?;
                    }
                    Err(e) => return Err(data_err(format!("{shown} (lmdb): write failed: {e}"))),
                }
            },
            Some(WriterInner::LevelDb(db)) => {
                let mut batch = rusty_leveldb::WriteBatch::default();
                for (k, v) in &pending {
                    batch.put(k, v);
                }
                db.write(batch, false).map_err(|e| data_err(format!("{shown} (leveldb): write failed: {e}")))?;
            }
            None => return Err(data_err(format!("{shown}: writer already closed"))),
        }
        self.written += pending.len();
        Ok(())
    }

    /// Commits what is buffered, closes the DB and gives it its final name.
    pub fn finish(mut self) -> Result<()> {
        self.commit()?;
        let shown = self.target.display().to_string();
        match self.inner.take() {
            Some(WriterInner::Lmdb { env, .. }) => {
                env.force_sync().map_err(|e| data_err(format!("{shown} (lmdb): sync failed: {e}")))?;
                env.prepare_for_closing().wait();
                // heed creates its files owner-only; datasets are shared files (Caffe uses 0664).
                if let Some(tmp) = &self.tmp {
                    for f in ["data.mdb", "lock.mdb"] {
                        let _ = std::fs::set_permissions(
                            tmp.path().join(f),
                            std::os::unix::fs::PermissionsExt::from_mode(0o644),
                        );
                    }
                }
            }
            Some(WriterInner::LevelDb(mut db)) => {
                db.flush().map_err(|e| data_err(format!("{shown} (leveldb): flush failed: {e}")))?;
                db.close().map_err(|e| data_err(format!("{shown} (leveldb): close failed: {e}")))?;
                drop(db);
            }
            None => {}
        }
        let Some(tmp) = self.tmp.take() else { return Err(data_err(format!("{shown}: writer already finished"))) };
        let tmp_path = tmp.keep();
        // The temporary folder was private (0700); a dataset is not.
        let _ = std::fs::set_permissions(&tmp_path, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        if let Err(e) = std::fs::rename(&tmp_path, &self.target) {
            // The rename's error is the one to report; a leftover hidden
            // temporary folder is all a failed removal would leave.
            std::fs::remove_dir_all(&tmp_path).ok();
            return Err(Error::io(&self.target, e));
        }
        crate::util::sync_folder_of(&self.target)
    }
}

fn lmdb_write_all(
    env: &heed::Env,
    db: heed::Database<Bytes, Bytes>,
    records: &[(Vec<u8>, Vec<u8>)],
) -> heed::Result<()> {
    let mut wtxn = env.write_txn()?;
    for (k, v) in records {
        db.put(&mut wtxn, k, v)?;
    }
    wtxn.commit()
}

impl Drop for DbWriter {
    fn drop(&mut self) {
        // Close the DB before its temporary folder (the TempDir) is removed.
        if let Some(WriterInner::Lmdb { env, .. }) = self.inner.take() {
            env.prepare_for_closing().wait();
        }
    }
}
