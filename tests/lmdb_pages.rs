//! LMDB files from strangers: liblmdb follows the file's page numbers, node
//! offsets and sizes into its memory map, so a damaged page used to crash the
//! reader (SIGBUS). The DB's pages are now checked before liblmdb maps them:
//! each damage below is a one-line error naming the file and the page, and
//! the DBs BVLC Caffe and caffe-tch write pass.
use std::path::{Path, PathBuf};
use std::process::Command;

use caffe_tch::data::db::{open_cursor, Backend, DbWriter};

use crate::common::assert_one_line_error;

const PAGE: usize = 4096;

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A DB of small records (values inside the leaf pages, a tree of several
/// levels) and, every 50th, a large one (its value on overflow pages).
fn write_db(dir: &Path) -> PathBuf {
    let path = dir.join("db");
    let mut w = DbWriter::create(&path, Backend::Lmdb).unwrap();
    for i in 0..3000u32 {
        let size = if i % 50 == 0 { 3 * PAGE } else { 300 };
        w.put(format!("{i:08}").as_bytes(), &vec![(i % 251) as u8; size]);
    }
    w.finish().unwrap();
    path
}

/// The newest meta page's main-tree root and the tree's leaf pages, in order.
struct Tree {
    bytes: Vec<u8>,
    root: usize,
    leaves: Vec<usize>,
}

fn tree(db: &Path) -> Tree {
    let bytes = std::fs::read(db.join("data.mdb")).unwrap();
    let txn = |m: usize| u64_at(&bytes, m * PAGE + 144);
    let meta = if txn(0) < txn(1) { 1 } else { 0 };
    let root = u64_at(&bytes, meta * PAGE + 128) as usize;
    let mut t = Tree { bytes, root, leaves: Vec::new() };
    let mut stack = vec![root];
    while let Some(page) = stack.pop() {
        if u16_at(&t.bytes, page * PAGE + 10) & 1 == 0 {
            t.leaves.push(page);
            continue;
        }
        for i in (0..t.keys(page)).rev() {
            let n = t.node(page, i);
            stack.push(u16_at(&t.bytes, n) | (u16_at(&t.bytes, n + 2) << 16));
        }
    }
    t
}

impl Tree {
    /// Byte offset of node `i` of `page`.
    fn node(&self, page: usize, i: usize) -> usize {
        page * PAGE + u16_at(&self.bytes, page * PAGE + 16 + 2 * i)
    }
    fn keys(&self, page: usize) -> usize {
        (u16_at(&self.bytes, page * PAGE + 12) - 16) / 2
    }
    fn last_leaf(&self) -> usize {
        *self.leaves.last().unwrap()
    }
    /// The first leaf node whose value is on overflow pages.
    fn overflow_node(&self) -> usize {
        self.leaves
            .iter()
            .flat_map(|&p| (0..self.keys(p)).map(move |i| self.node(p, i)))
            .find(|&n| u16_at(&self.bytes, n + 4) & 1 != 0)
            .expect("a value on overflow pages")
    }
}

/// Reads every record; the error, if any, as text.
fn read_all(db: &Path) -> Result<usize, String> {
    let mut c = open_cursor(db, Backend::Lmdb).map_err(|e| e.to_string())?;
    let mut n = 0;
    while c.valid() {
        n += 1;
        c.next().map_err(|e| e.to_string())?;
    }
    Ok(n)
}

#[test]
fn damaged_lmdb_pages_are_errors_naming_file_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_db(dir.path());
    assert_eq!(read_all(&good), Ok(3000));
    let t = tree(&good);
    assert!(u16_at(&t.bytes, t.root * PAGE + 10) & 1 != 0, "the root is a branch page");
    assert!(t.leaves.len() > 100);

    type Damage = (&'static str, Box<dyn Fn(&Tree, &mut Vec<u8>)>, &'static str);
    let damages: Vec<Damage> = vec![
        (
            "a leaf value larger than its page",
            Box::new(|t, b| {
                let n = t.node(t.last_leaf(), 0);
                b[n..n + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x0f]);
            }),
            "runs past the page",
        ),
        (
            "a node offset outside the page",
            Box::new(|t, b| {
                let at = t.last_leaf() * PAGE + 16;
                b[at..at + 2].copy_from_slice(&(PAGE as u16 - 2).to_le_bytes());
            }),
            "outside the page's nodes",
        ),
        (
            "a child page past the end of the file",
            Box::new(|t, b| {
                let n = t.node(t.root, 1);
                b[n..n + 4].copy_from_slice(&[0xff, 0xff, 0x00, 0x00]);
            }),
            "outside the file's pages",
        ),
        (
            "a child pointing back at the root",
            Box::new(|t, b| {
                let n = t.node(t.root, 1);
                b[n..n + 2].copy_from_slice(&(t.root as u16).to_le_bytes());
                b[n + 2..n + 4].copy_from_slice(&[0, 0]);
            }),
            "a second time",
        ),
        (
            "a page size that is not a power of two",
            Box::new(|_, b| b[40..44].copy_from_slice(&3000u32.to_le_bytes())),
            "page size",
        ),
        ("a file cut in half", Box::new(|_, b| b.truncate(b.len() / 2 / PAGE * PAGE)), "damaged or crafted"),
        (
            "an overflow value past the end of the file",
            Box::new(|t, b| {
                let n = t.overflow_node();
                let data = n + 8 + u16_at(&t.bytes, n + 6);
                let last_page = (b.len() / PAGE) as u64 - 1;
                b[data..data + 8].copy_from_slice(&last_page.to_le_bytes());
            }),
            "does not fit in the file",
        ),
    ];
    let mut checked = 0;
    for (what, damage, says) in &damages {
        let db = dir.path().join(format!("bad{checked}"));
        std::fs::create_dir(&db).unwrap();
        let mut bytes = t.bytes.clone();
        damage(&t, &mut bytes);
        std::fs::write(db.join("data.mdb"), &bytes).unwrap();
        let err = read_all(&db).expect_err(what);
        assert!(err.contains(&db.join("data.mdb").display().to_string()), "{what}: {err}");
        assert!(err.contains(says) && err.contains("damaged or crafted"), "{what}: {err}");
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn a_damaged_lmdb_is_a_one_line_error_from_the_binary_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad");
    std::fs::create_dir(&db).unwrap();
    let good = write_db(dir.path());
    let t = tree(&good);
    let mut bytes = t.bytes.clone();
    // The damage that made liblmdb read past the file's end (SIGBUS).
    let leaf = t.last_leaf();
    let n = t.node(leaf, t.keys(leaf) - 1);
    bytes[n..n + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x0f]);
    std::fs::write(db.join("data.mdb"), &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["compute_image_mean", db.to_str().unwrap(), dir.path().join("mean.binaryproto").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_one_line_error(stderr.trim_end(), &["data.mdb", &format!("page {leaf}"), "runs past the page"]);
    assert!(!dir.path().join("mean.binaryproto").exists());
}
