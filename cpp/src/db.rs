//! `caffe::db` (caffe/util/db.hpp): LMDB and LevelDB opened to read through
//! cursors, or made new or added to and written through transactions, on the
//! library's readers and its writer, as caffe-tch's conversion tools use them.
use std::ffi::{c_char, c_int};
use std::path::PathBuf;

use caffe_tch::data::db::{open_cursor, Backend, Cursor, DbWriter};
use caffe_tch::{Error, Result};

use crate::{guarded, raw_values, text};

/// Caffe's db::Mode values.
const READ: c_int = 0;
const WRITE: c_int = 1;
const NEW: c_int = 2;

/// An open DB: one to read (the cursor Open made goes to the first
/// NewCursor; later ones open it again), or one being written: a new one,
/// which takes its name when closed (a DB left unclosed, as by a crash,
/// leaves nothing behind), or an existing one (db::WRITE), each commit its
/// own transaction.
pub enum DbHandle {
    Read { path: PathBuf, backend: Backend, opened: Option<Box<dyn Cursor>> },
    New(Option<DbWriter>),
}

/// # Safety
/// `backend` and `path` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_db_open(backend: *const c_char, path: *const c_char, mode: c_int) -> *mut DbHandle {
    guarded(std::ptr::null_mut(), || {
        let backend = Backend::parse(&text(backend, "db::GetDB")?)?;
        let path = PathBuf::from(text(path, "DB::Open")?);
        let db = match mode {
            READ => {
                // Opened here so that a missing or corrupt DB fails at Open, as in Caffe.
                let opened = Some(open_cursor(&path, backend)?);
                DbHandle::Read { path, backend, opened }
            }
            NEW => DbHandle::New(Some(DbWriter::create(&path, backend)?)),
            WRITE => DbHandle::New(Some(DbWriter::append(&path, backend)?)),
            other => return Err(Error::invalid(format!("{}: DB::Open: unknown mode {other}", path.display()))),
        };
        Ok(Box::into_raw(Box::new(db)))
    })
}

fn writer<'a>(h: *mut DbHandle, what: &str) -> Result<&'a mut DbWriter> {
    // SAFETY: a handle caffe_tch_db_open returned, not yet freed.
    match unsafe { h.as_mut() } {
        Some(DbHandle::New(Some(w))) => Ok(w),
        Some(DbHandle::New(None)) => Err(Error::invalid(format!("{what}: the DB is closed"))),
        Some(DbHandle::Read { path, .. }) => Err(Error::invalid(format!(
            "{}: {what}: the DB was opened with db::READ; write with db::NEW or db::WRITE",
            path.display()
        ))),
        None => Err(Error::invalid(format!("{what}: null DB"))),
    }
}

/// One transaction's records, written in one commit (Caffe's
/// Transaction::Commit after its Puts). 0 on success.
/// # Safety
/// `keys`, `key_lens`, `values` and `value_lens` hold `n` entries, each
/// pointing to as many bytes as its length.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_db_commit(
    h: *mut DbHandle,
    keys: *const *const u8,
    key_lens: *const usize,
    values: *const *const u8,
    value_lens: *const usize,
    n: usize,
) -> c_int {
    guarded(-1, || {
        let w = writer(h, "Transaction::Commit")?;
        // SAFETY: the header's arrays of `n` pointers and lengths, each
        // pointer a std::string's bytes.
        let (keys, key_lens, values, value_lens) =
            unsafe { (raw_values(keys, n), raw_values(key_lens, n), raw_values(values, n), raw_values(value_lens, n)) };
        for i in 0..n {
            // SAFETY: as above.
            let (key, value) = unsafe { (raw_values(keys[i], key_lens[i]), raw_values(values[i], value_lens[i])) };
            w.put(key, value);
        }
        w.commit()?;
        Ok(0)
    })
}

/// DB::Close: a new DB is synced and takes its name. 0 on success.
/// # Safety
/// `h` came from caffe_tch_db_open and is not freed.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_db_close(h: *mut DbHandle) -> c_int {
    guarded(-1, || {
        // SAFETY: as the function's contract says.
        if let Some(DbHandle::New(w)) = unsafe { h.as_mut() } {
            if let Some(w) = w.take() {
                w.finish()?;
            }
        }
        Ok(0)
    })
}

/// # Safety
/// `h` came from caffe_tch_db_open and is freed once.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_db_free(h: *mut DbHandle) {
    if !h.is_null() {
        // SAFETY: made by Box::into_raw in caffe_tch_db_open, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// A cursor on a DB opened to read, on its first record. Null on error.
/// # Safety
/// `h` came from caffe_tch_db_open and is not freed, and no other call is
/// using it.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_db_cursor(h: *mut DbHandle) -> *mut Box<dyn Cursor> {
    guarded(std::ptr::null_mut(), || {
        // SAFETY: as the function's contract says.
        let cursor = match unsafe { h.as_mut() } {
            Some(DbHandle::Read { path, backend, opened }) => match opened.take() {
                Some(c) => c,
                None => open_cursor(path, *backend)?,
            },
            Some(DbHandle::New(_)) => {
                return Err(Error::invalid(
                    "DB::NewCursor: the DB was opened with db::NEW; read it once closed, with db::READ",
                ))
            }
            None => return Err(Error::invalid("DB::NewCursor: null DB")),
        };
        Ok(Box::into_raw(Box::new(cursor)))
    })
}

fn cursor<'a>(c: *mut Box<dyn Cursor>) -> Result<&'a mut Box<dyn Cursor>> {
    // SAFETY: a cursor caffe_tch_db_cursor returned, not yet freed.
    unsafe { c.as_mut() }.ok_or_else(|| Error::invalid("Cursor: null cursor"))
}

/// Cursor::SeekToFirst (`first` 1) or Cursor::Next (0). 0 on success.
/// # Safety
/// `c` came from caffe_tch_db_cursor and is not freed.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_cursor_move(c: *mut Box<dyn Cursor>, first: c_int) -> c_int {
    guarded(-1, || {
        let c = cursor(c)?;
        if first != 0 {
            c.seek_to_first()?;
        } else if c.valid() {
            c.next()?;
        }
        Ok(0)
    })
}

/// Cursor::valid: 1 while on a record.
/// # Safety
/// `c` came from caffe_tch_db_cursor and is not freed.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_cursor_valid(c: *mut Box<dyn Cursor>) -> c_int {
    cursor(c).map_or(0, |c| c.valid() as c_int)
}

/// The current record's key (`value` 0) or value (1), `len` bytes long,
/// valid until the cursor moves; null when it is on none.
/// # Safety
/// `c` came from caffe_tch_db_cursor and is not freed; `len` is writable.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_cursor_record(c: *mut Box<dyn Cursor>, value: c_int, len: *mut usize) -> *const u8 {
    let Ok(c) = cursor(c) else { return std::ptr::null() };
    if !c.valid() || len.is_null() {
        return std::ptr::null();
    }
    let bytes = if value != 0 { c.value() } else { c.key() };
    // SAFETY: `len` is writable, as the contract says.
    unsafe { *len = bytes.len() };
    bytes.as_ptr()
}

/// # Safety
/// `c` came from caffe_tch_db_cursor and is freed once.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_cursor_free(c: *mut Box<dyn Cursor>) {
    if !c.is_null() {
        // SAFETY: made by Box::into_raw in caffe_tch_db_cursor, freed once.
        drop(unsafe { Box::from_raw(c) });
    }
}
