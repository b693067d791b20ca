//! A structural check of an LMDB file before liblmdb maps it.
//!
//! liblmdb trusts its file: it follows page numbers, node offsets and sizes
//! straight into the memory map, so a crafted or damaged page makes it read
//! past its page or past the end of the file (SIGBUS, SIGSEGV), or fail one of
//! its own assertions (abort). Before a DB is opened for reading, this walks
//! everything a read-only cursor will touch, with plain reads of the file:
//! the newest meta page, then every branch and leaf page reachable from the
//! main database's root, checking each page header, node offset, key and data
//! size, child page number and tree depth against the page and the file. A
//! value stored on overflow pages is not read: its page number and size are
//! checked against the file's length, which is all liblmdb relies on.
//! The layout is LMDB's on-disk format, version 1, 64-bit.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{Error, Result};

const MAGIC: u32 = 0xBEEF_C0DE;
const DATA_VERSION: u32 = 1;
/// Page header: page number (8), pad (2), flags (2), lower (2), upper (2).
const PAGE_HEADER: usize = 16;
/// Node header: two 16-bit halves of a size or page number, flags, key size.
const NODE_HEADER: usize = 8;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_META: u16 = 0x08;
/// Leaf node flags: value on overflow pages, named sub-database, duplicates.
const F_BIGDATA: u16 = 0x01;
const F_DUPDATA: u16 = 0x04;
/// Database flags for duplicate keys (DUPSORT, DUPFIXED, INTEGERDUP, REVERSEDUP).
const DUPLICATE_FLAGS: u16 = 0x04 | 0x10 | 0x20 | 0x40;
const NO_PAGE: u64 = u64::MAX;
/// liblmdb's cursor stack: a deeper tree cannot be read.
const MAX_DEPTH: u16 = 32;
/// Offsets inside an MDB_meta page (after the page header).
const META_MAGIC: usize = 16;
const META_VERSION: usize = 20;
const META_PAGE_SIZE: usize = 40;
const META_MAIN_FLAGS: usize = 92;
const META_MAIN_DEPTH: usize = 94;
const META_MAIN_ROOT: usize = 128;
const META_LAST_PAGE: usize = 136;
const META_TXN: usize = 144;
const META_SIZE: usize = 152;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

struct Meta {
    page_size: usize,
    main_flags: u16,
    depth: u16,
    root: u64,
    last_page: u64,
    txn: u64,
}

/// Checks `<folder>/data.mdb` (or the file itself); the error says what is
/// wrong and where, prefixed by `what` (the caller's name for the source).
pub fn check(path: &Path, what: &str) -> Result<()> {
    let file_path = if path.is_dir() { path.join("data.mdb") } else { path.to_path_buf() };
    let file = File::open(&file_path).map_err(|e| Error::io(&file_path, e))?;
    let len = file.metadata().map_err(|e| Error::io(&file_path, e))?.len();
    let bad =
        |msg: String| Error::Data(format!("{what}: {}: {msg}; the file is damaged or crafted", file_path.display()));
    let read = |at: u64, buf: &mut [u8]| file.read_exact_at(buf, at).map_err(|e| Error::io(&file_path, e));

    if len < META_SIZE as u64 {
        return Err(bad(format!("{len} bytes, shorter than an LMDB meta page")));
    }
    let mut head = [0u8; META_SIZE];
    read(0, &mut head)?;
    let first = meta(&head, 0).map_err(bad)?;
    let page_size = first.page_size;
    if len < 2 * page_size as u64 {
        return Err(bad(format!("{len} bytes, shorter than its two meta pages of {page_size} bytes")));
    }
    read(page_size as u64, &mut head)?;
    let second = meta(&head, 1).map_err(bad)?;
    if second.page_size != page_size {
        return Err(bad(format!("meta pages disagree on the page size ({page_size}, {})", second.page_size)));
    }
    // liblmdb reads the snapshot of the meta page with the newer transaction.
    let m = if first.txn < second.txn { second } else { first };
    if m.main_flags & DUPLICATE_FLAGS != 0 {
        return Err(bad(format!(
            "the database has duplicate-key flags {:#x}, which Caffe's datasets never use",
            m.main_flags
        )));
    }
    if m.root == NO_PAGE {
        return Ok(()); // an empty DB
    }
    let pages = (len / page_size as u64).min(m.last_page.saturating_add(1));
    if m.depth == 0 || m.depth > MAX_DEPTH {
        return Err(bad(format!("tree depth {} (1 to {MAX_DEPTH} can be read)", m.depth)));
    }
    let walk = Walk { page_size, pages, len, depth: m.depth };
    // One bit per page: a DB of a terabyte needs 32 MiB here.
    let mut seen = vec![0u64; (pages as usize).div_ceil(64)];
    let mut stack = vec![(m.root, 1u16, "the root".to_string())];
    let mut page = vec![0u8; page_size];
    while let Some((pgno, level, from)) = stack.pop() {
        if pgno < 2 || pgno >= pages {
            return Err(bad(format!("{from} points to page {pgno}, outside the file's pages 2..{pages}")));
        }
        let (word, bit) = ((pgno / 64) as usize, 1u64 << (pgno % 64));
        if seen[word] & bit != 0 {
            return Err(bad(format!("{from} points to page {pgno} a second time (a loop)")));
        }
        seen[word] |= bit;
        read(pgno * page_size as u64, &mut page)?;
        let children = walk.page(&page, pgno, level).map_err(|m| bad(format!("page {pgno}: {m}")))?;
        for (i, child) in children.into_iter().enumerate().rev() {
            stack.push((child, level + 1, format!("page {pgno} node {i}")));
        }
    }
    Ok(())
}

fn meta(b: &[u8], index: usize) -> std::result::Result<Meta, String> {
    if u32_at(b, META_MAGIC) != MAGIC {
        return Err(format!("meta page {index}: not an LMDB file (no LMDB magic number)"));
    }
    let version = u32_at(b, META_VERSION);
    if version != DATA_VERSION {
        return Err(format!("meta page {index}: LMDB data version {version}, this reader knows {DATA_VERSION}"));
    }
    if u16_at(b, 10) & P_META == 0 {
        return Err(format!("meta page {index} is not marked as a meta page"));
    }
    let page_size = u32_at(b, META_PAGE_SIZE) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("meta page {index}: page size {page_size} (a power of two from 512 to 65536)"));
    }
    Ok(Meta {
        page_size,
        main_flags: u16_at(b, META_MAIN_FLAGS),
        depth: u16_at(b, META_MAIN_DEPTH),
        root: u64_at(b, META_MAIN_ROOT),
        last_page: u64_at(b, META_LAST_PAGE),
        txn: u64_at(b, META_TXN),
    })
}

struct Walk {
    page_size: usize,
    /// Pages a reference may point to: those in the file and in the snapshot.
    pages: u64,
    len: u64,
    depth: u16,
}

impl Walk {
    /// Checks one branch or leaf page; returns a branch's children.
    fn page(&self, p: &[u8], pgno: u64, level: u16) -> std::result::Result<Vec<u64>, String> {
        let ps = self.page_size;
        if u64_at(p, 0) != pgno {
            return Err(format!("its header says it is page {}", u64_at(p, 0)));
        }
        let flags = u16_at(p, 10);
        let (lower, upper) = (u16_at(p, 12) as usize, u16_at(p, 14) as usize);
        let branch = match flags & !0x10 {
            P_BRANCH => true,
            P_LEAF => false,
            _ => return Err(format!("flags {flags:#x}, expected a branch or leaf page")),
        };
        if branch != (level < self.depth) {
            let want = if level < self.depth { "a branch" } else { "a leaf" };
            return Err(format!("at level {level} of a {}-level tree it must be {want} page", self.depth));
        }
        if lower < PAGE_HEADER || (lower - PAGE_HEADER) % 2 != 0 || lower > upper || upper > ps {
            return Err(format!("free-space bounds {lower}..{upper} do not fit a {ps}-byte page"));
        }
        let keys = (lower - PAGE_HEADER) / 2;
        if branch && keys < 2 {
            return Err(format!("a branch page with {keys} keys (liblmdb needs at least 2)"));
        }
        if !branch && keys == 0 {
            return Err("an empty leaf page in a non-empty tree".into());
        }
        let mut children = Vec::new();
        for i in 0..keys {
            let at = u16_at(p, PAGE_HEADER + 2 * i) as usize;
            if at < upper || at % 2 != 0 || at + NODE_HEADER > ps {
                return Err(format!("node {i} at offset {at}, outside the page's nodes ({upper}..{ps})"));
            }
            let (lo, hi, node_flags, key_size) =
                (u16_at(p, at) as u64, u16_at(p, at + 2) as u64, u16_at(p, at + 4), u16_at(p, at + 6) as usize);
            let key_end = at + NODE_HEADER + key_size;
            if key_end > ps {
                return Err(format!("node {i}: its {key_size}-byte key runs past the page"));
            }
            if branch {
                children.push(lo | (hi << 16) | ((node_flags as u64) << 32));
                continue;
            }
            let size = lo | (hi << 16);
            if node_flags & F_DUPDATA != 0 {
                return Err(format!("node {i} holds duplicate values (flags {node_flags:#x})"));
            }
            if node_flags & F_BIGDATA == 0 {
                if key_end as u64 + size > ps as u64 {
                    return Err(format!("node {i}: its {size}-byte value runs past the page"));
                }
                continue;
            }
            if key_end + 8 > ps {
                return Err(format!("node {i}: its overflow page number runs past the page"));
            }
            let first = u64_at(p, key_end);
            let run = (PAGE_HEADER as u64 + size).div_ceil(ps as u64);
            let end = first.checked_add(run).and_then(|e| e.checked_mul(ps as u64));
            if first < 2 || first.saturating_add(run) > self.pages || end.is_none_or(|e| e > self.len) {
                return Err(format!(
                    "node {i}: its {size}-byte value on pages {first}.. does not fit in the file's {} pages",
                    self.pages
                ));
            }
        }
        Ok(children)
    }
}
