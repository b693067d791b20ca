//! The Caffe log parser behind `caffe parse_log` and `caffe plot`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let log = caffe_tch::tools::parse_log::parse_str(&text, 2026);
    let _ = caffe_tch::tools::parse_log::csv_text(&log.train, ',');
    let _ = caffe_tch::tools::parse_log::csv_text(&log.test, ',');
});
