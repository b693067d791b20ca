//! Writing a new DB of either kind through a temporary sibling folder, or
//! adding records to an existing one in its own transactions.
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{EnvFlags, EnvOpenOptions};

use super::leveldb::leveldb_options;
use super::{data_err, Backend};
use crate::{info, Error, Result};

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

impl WriterInner {
    /// Opens the DB in `dir` for writing (`shown`: the name errors give):
    /// a `fresh` folder is made into a new DB, written without per-commit
    /// syncs (the final sync and rename make it durable); an existing DB is
    /// opened as it is, each commit synced.
    fn open(dir: &Path, shown: &Path, backend: Backend, map_size: usize, fresh: bool) -> Result<WriterInner> {
        let shown = shown.display();
        let failed = if fresh { "cannot create" } else { "cannot open to write" };
        Ok(match backend {
            Backend::Lmdb => {
                let mut opts = EnvOpenOptions::new();
                opts.map_size(map_size);
                // SAFETY: a folder only this writer uses (a fresh one, or a DB
                // the program owns, as Caffe's WRITE mode assumes).
                let env = unsafe {
                    if fresh {
                        opts.flags(EnvFlags::NO_SYNC);
                    }
                    opts.open(dir)
                }
                .map_err(|e| data_err(format!("{shown} (lmdb): {failed}: {e}")))?;
                let mut wtxn = env.write_txn().map_err(|e| data_err(format!("{shown} (lmdb): {e}")))?;
                let db = env
                    .create_database::<Bytes, Bytes>(&mut wtxn, None)
                    .map_err(|e| data_err(format!("{shown} (lmdb): {e}")))?;
                wtxn.commit().map_err(|e| data_err(format!("{shown} (lmdb): {e}")))?;
                info!("db_lmdb.cpp:35", "Opened lmdb {shown}");
                WriterInner::Lmdb { env, db, map_size }
            }
            Backend::LevelDb => {
                let db = rusty_leveldb::DB::open(dir, leveldb_options(fresh))
                    .map_err(|e| data_err(format!("{shown} (leveldb): {failed}: {e}")))?;
                info!("db_leveldb.cpp:18", "Opened leveldb {shown}");
                WriterInner::LevelDb(Box::new(db))
            }
        })
    }
}

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
        let inner = WriterInner::open(tmp.path(), path, backend, initial_map, true)?;
        Ok(DbWriter::new(backend, path, Some(tmp), inner))
    }

    /// Opens the existing DB at `path` to add records to it (Caffe's
    /// `db::WRITE`): each `commit` is one transaction of the DB's own, which
    /// its format makes atomic, so a program that dies keeps the DB as its
    /// last commit left it; `finish` syncs and closes it in place. As in
    /// Caffe, a missing LMDB is an error and a missing LevelDB is made (here
    /// as `create` makes one, whole under a temporary name).
    pub fn append(path: &Path, backend: Backend) -> Result<DbWriter> {
        let shown = path.display();
        if backend == Backend::LevelDb && !path.exists() {
            return Self::create(path, backend);
        }
        if !path.is_dir() {
            return Err(data_err(format!("{shown}: no such DB folder to add records to")));
        }
        let map_size = match backend {
            Backend::Lmdb => {
                // liblmdb trusts the file's pages; check them before it maps them.
                super::lmdb_check::check(path, &format!("{shown} (lmdb)"))?;
                let used = std::fs::metadata(path.join("data.mdb")).map_err(|e| Error::io(path, e))?.len();
                (used as usize).saturating_add(LMDB_INITIAL_MAP)
            }
            Backend::LevelDb => 0, // LevelDB has no map
        };
        let inner = WriterInner::open(path, path, backend, map_size, false)?;
        Ok(DbWriter::new(backend, path, None, inner))
    }

    fn new(backend: Backend, target: &Path, tmp: Option<tempfile::TempDir>, inner: WriterInner) -> DbWriter {
        DbWriter { backend, target: target.to_path_buf(), tmp, inner: Some(inner), pending: Vec::new(), written: 0 }
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
        let Some(tmp) = self.tmp.take() else {
            // An existing DB written in place (`append`): closed above, nothing to move.
            return Ok(());
        };
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
