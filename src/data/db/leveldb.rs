//! Reading a LevelDB (rusty-leveldb), in place or from a temporary copy
//! when the folder cannot be opened where it is.
use std::path::Path;

use super::{data_err, Cursor};
use crate::{warn, Result};

pub(super) struct LevelDbCursor {
    iter: rusty_leveldb::DBIterator,
    current: Option<(Vec<u8>, Vec<u8>)>,
    // Kept for their lifetimes: the DB the iterator reads, and the copy it may read from.
    _db: rusty_leveldb::DB,
    _copy: Option<tempfile::TempDir>,
}

pub(super) fn leveldb_options(create: bool) -> rusty_leveldb::Options {
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
    pub(super) fn open(path: &Path) -> Result<LevelDbCursor> {
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
