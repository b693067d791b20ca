//! A LevelDB folder from a stranger (rusty-leveldb, in-process): the input
//! packs the folder's files (`name\n`, a 4-byte little-endian length, the
//! bytes; see fuzz/seeds.sh), which are written out, opened as a Data layer
//! opens its source, and read record by record as Datums.
#![no_main]
use caffe_tch::data::{datum, image::ColorMode, open_cursor, Backend};
use libfuzzer_sys::fuzz_target;

/// The files packed in `data`: names of safe characters only, at most 8 files.
fn unpack(mut data: &[u8]) -> Vec<(String, &[u8])> {
    let mut files = Vec::new();
    while files.len() < 8 {
        let Some(end) = data.iter().position(|&b| b == b'\n') else { break };
        let name = String::from_utf8_lossy(&data[..end]).into_owned();
        data = &data[end + 1..];
        if data.len() < 4 {
            break;
        }
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        data = &data[4..];
        let body = &data[..len.min(data.len())];
        data = &data[body.len()..];
        let safe = !name.is_empty()
            && name.len() <= 64
            && name != "."
            && name != ".."
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if safe {
            files.push((name, body));
        }
    }
    files
}

fuzz_target!(|data: &[u8]| {
    // A limit well under libFuzzer's RSS limit: a file may ask for anything up
    // to the limit (the product's default is the machine's memory).
    caffe_tch::util::limits::set_max_memory(256 << 20);
    let dir = std::env::temp_dir().join(format!("caffe-tch-fuzz-leveldb-{}", std::process::id()));
    // A fresh folder per input: a leftover file from the last one would change what is read.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clear the scratch folder");
    }
    std::fs::create_dir_all(&dir).expect("scratch folder");
    for (name, body) in unpack(data) {
        std::fs::write(dir.join(name), body).expect("scratch file");
    }
    let Ok(mut cursor) = open_cursor(&dir, Backend::LevelDb) else { return };
    for _ in 0..64 {
        if !cursor.valid() {
            break;
        }
        let _record = datum::parse_and_decode(cursor.value(), ColorMode::Native);
        if cursor.next().is_err() {
            break;
        }
    }
});
