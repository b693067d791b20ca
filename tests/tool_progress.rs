//! The dataset tools draw a live count on a terminal and clear it before each
//! log line; on a pipe they write the plain log only. The terminal is a
//! pseudo-terminal from util-linux `script` (without it that part is SKIPPED).
use std::path::{Path, PathBuf};
use std::process::Command;

/// Tiny uncompressed IDX files: `n` 4×3 images and their labels.
fn write_idx(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let mut images = vec![0, 0, 8, 3];
    images.extend((n as u32).to_be_bytes());
    images.extend(4u32.to_be_bytes());
    images.extend(3u32.to_be_bytes());
    images.extend((0..n * 12).map(|i| (i * 5 % 256) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    labels.extend((0..n).map(|i| (i % 10) as u8));
    let (i, l) = (dir.join("images.idx"), dir.join("labels.idx"));
    std::fs::write(&i, images).unwrap();
    std::fs::write(&l, labels).unwrap();
    (i, l)
}

fn has_script() -> bool {
    Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn conversions_show_a_count_on_a_terminal_and_plain_logs_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, labels) = write_idx(tmp.path(), 30);
    let caffe = env!("CARGO_BIN_EXE_caffe");

    // Piped stderr: Caffe's log lines, no control characters.
    let db = tmp.path().join("piped_lmdb");
    let out = Command::new(caffe).arg("convert_mnist_data").args([&images, &labels, &db]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Processed 30 files."), "{log}");
    assert!(!log.contains('\x1b') && !log.contains('\r'), "progress drawn on a pipe: {log:?}");

    if !has_script() {
        skip!("the terminal part needs util-linux `script`, which is not installed");
    }
    // On a terminal: the first item draws the line at once, and it is cleared before the log continues.
    let run_on_tty = |args: &str| -> String {
        let out = Command::new("script").args(["-qec", &format!("{caffe} {args}"), "/dev/null"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}");
        text
    };
    let db = tmp.path().join("tty_lmdb");
    let text = run_on_tty(&format!("convert_mnist_data {} {} {}", images.display(), labels.display(), db.display()));
    let drawn =
        text.find("\r\x1b[2Kconvert_mnist_data 1/30 (3%)").unwrap_or_else(|| panic!("no progress line: {text:?}"));
    let logged = text.find("Processed 30 files.").unwrap_or_else(|| panic!("no log line: {text:?}"));
    assert!(
        drawn < logged && text[drawn + 1..logged].contains("\r\x1b[2K"),
        "the line is not cleared before the log: {text:?}"
    );

    // compute_image_mean does not know the total: a count and a rate.
    let text = run_on_tty(&format!("compute_image_mean {}", db.display()));
    assert!(text.contains("\r\x1b[2Kcompute_image_mean 1  "), "no progress line: {text:?}");
    assert!(text.contains("Processed 30 files."), "{text:?}");
}
