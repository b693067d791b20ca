//! Reading an LMDB: read-only and lock-free environments shared by the
//! readers of one folder, its pages checked first (`lmdb_check.rs`), and a
//! cursor that reads ahead in short read transactions.
use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use heed::types::Bytes;
use heed::{EnvFlags, EnvOpenOptions, WithoutTls};

use super::{data_err, Cursor};
use crate::{Error, Result};

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

pub(super) struct LmdbCursor {
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
    pub(super) fn open(path: &Path) -> Result<LmdbCursor> {
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
