//! Size limits checked before anything is allocated, so a hostile or broken
//! file (a blob of 10¹² values, a layer with num_output 2³¹) is a clear error
//! naming what asked for the memory, not an abort inside the allocator. The
//! limit is the machine's memory unless `CAFFE_TCH_MAX_MEMORY` (bytes, or with
//! a K/M/G/T suffix) or [`set_max_memory`] says otherwise.
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// 0 means "not set": the machine's memory.
static MAX_MEMORY: AtomicU64 = AtomicU64::new(0);

/// Sets the limit in bytes (`-max_memory`).
pub fn set_max_memory(bytes: u64) {
    MAX_MEMORY.store(bytes, Ordering::Relaxed);
}

/// Parses `4096`, `512M`, `2G`, `1T` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(Error::usage(format!("a memory size like 512M or 2G, got '{s}'"))),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(1u64 << shift))
        .filter(|&v| v > 0)
        .ok_or_else(|| Error::usage(format!("a memory size like 512M or 2G, got '{s}'")))
}

/// The machine's memory (MemTotal), or u64::MAX when it cannot be read; read
/// once (every blob of every net is checked against it).
fn machine_memory() -> u64 {
    static MEM_TOTAL: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MEM_TOTAL.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(u64::MAX, |kb| kb.saturating_mul(1024))
    })
}

/// The limit in bytes now in force.
pub fn max_memory() -> u64 {
    match MAX_MEMORY.load(Ordering::Relaxed) {
        0 => match std::env::var("CAFFE_TCH_MAX_MEMORY") {
            Ok(v) => parse_bytes(&v).unwrap_or_else(|_| machine_memory()),
            Err(_) => machine_memory(),
        },
        v => v,
    }
}

/// The element count of `shape`, checked: no negative axis, no overflow, and
/// at most the memory limit at `bytes_per_element`. `what` says what the
/// shape is for (`top blob 'conv1'`).
pub fn checked_count(shape: &[i64], bytes_per_element: u64, what: &str) -> Result<i64> {
    let mut n: i64 = 1;
    for &d in shape {
        if d < 0 {
            return Err(Error::invalid(format!("{what} has a negative dimension: shape {shape:?}")));
        }
        n = n
            .checked_mul(d)
            .ok_or_else(|| Error::invalid(format!("{what}: shape {shape:?} has more elements than fit in 64 bits")))?;
    }
    let bytes = (n as u64).saturating_mul(bytes_per_element);
    let limit = max_memory();
    if bytes > limit {
        return Err(Error::invalid(format!(
            "{what}: shape {shape:?} needs {} but the memory limit is {} (set -max_memory or CAFFE_TCH_MAX_MEMORY to change it)",
            human(bytes),
            human(limit)
        )));
    }
    Ok(n)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}
