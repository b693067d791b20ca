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
//!
//! `lmdb.rs` and `leveldb.rs` read, `writer.rs` writes, and `lmdb_check.rs`
//! checks an LMDB's pages before liblmdb maps them.
mod leveldb;
mod lmdb;
mod lmdb_check;
mod writer;

use std::path::Path;

use crate::proto::caffe::data_parameter::Db as ProtoDb;
use crate::{info, Error, Result};
use leveldb::LevelDbCursor;
use lmdb::LmdbCursor;

pub use writer::DbWriter;

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
