//! An LMDB file from a stranger: the input is a `data.mdb`, written into a
//! folder, opened as a Data layer opens its source (the page check, then
//! liblmdb, read-only and lock-free) and read record by record as Datums.
//! liblmdb follows the file's pages into its memory map, so anything the
//! check lets through that liblmdb cannot read shows up here as a crash.
#![no_main]
use caffe_tch::data::{datum, image::ColorMode, open_cursor, Backend};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caffe_tch::util::limits::set_max_memory(256 << 20);
    let dir = std::env::temp_dir().join(format!("caffe-tch-fuzz-lmdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    std::fs::write(dir.join("data.mdb"), data).expect("scratch file");
    let Ok(mut cursor) = open_cursor(&dir, Backend::Lmdb) else { return };
    // Past one read-ahead chunk, so the cursor also searches for its next key.
    for _ in 0..600 {
        if !cursor.valid() {
            break;
        }
        let _record = datum::parse_and_decode(cursor.value(), ColorMode::Native);
        if cursor.next().is_err() {
            break;
        }
    }
});
