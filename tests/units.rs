//! The small pure functions, tested through the library's public API: C's
//! `%g`, comma lists, the Caffe tools' gflags parser, parse_log's number text
//! and line matching (parse_log.py's expressions and glog stamps), and the
//! LMDB writer growing its map. (The library has no unit tests of its own, so
//! `cargo test` compiles it once.)
use caffe_tch::data::{open_cursor, Backend, DbWriter};
use caffe_tch::tools::gflags::{parse, Spec};
use caffe_tch::tools::parse_log::{parse_str, python_float};
use caffe_tch::util::{comma_list, format_g};

#[test]
fn format_g_matches_c() {
    assert_eq!(format_g(72.94030284, 6), "72.9403");
    assert_eq!(format_g(0.5, 6), "0.5");
    assert_eq!(format_g(100.0, 6), "100");
    assert_eq!(format_g(123456.7, 6), "123457");
    assert_eq!(format_g(1234567.0, 6), "1.23457e+06");
    assert_eq!(format_g(0.0001234, 6), "0.0001234");
    assert_eq!(format_g(0.00001234, 6), "1.234e-05");
    assert_eq!(format_g(0.0, 6), "0");
    assert_eq!(format_g(-2.5e-7, 4), "-2.5e-07");
    assert_eq!(format_g(9.99999e5, 6), "999999");
    assert_eq!(format_g(9.999995e5, 6), "1e+06");
}

#[test]
fn comma_lists_drop_empty_items() {
    assert_eq!(comma_list(" a, b,,c "), ["a", "b", "c"]);
    assert!(comma_list("").is_empty());
}

fn spec() -> Spec<'static> {
    Spec {
        tool: "t",
        usage: "A B",
        bools: &[("gray", false, "grayscale"), ("shuffle", false, "shuffle")],
        values: &[("backend", "lmdb", "the DB type"), ("resize_width", "0", "the width")],
    }
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn gflags_and_gnu_forms() {
    let f = parse(&spec(), &args("a -gray --backend leveldb b -resize_width=32 -noshuffle")).unwrap();
    assert!(f.flag("gray"));
    assert!(!f.flag("shuffle"));
    assert_eq!(f.value("backend"), "leveldb");
    assert_eq!(f.int("resize_width").unwrap(), 32);
    assert_eq!(f.positional, vec!["a", "b"]);
    let f = parse(&spec(), &args("--backend=lmdb --gray=false x")).unwrap();
    assert!(!f.flag("gray"));
    assert_eq!(f.value("backend"), "lmdb");
    assert!(parse(&spec(), &args("-bogus x")).is_err());
    assert!(parse(&spec(), &args("x -backend")).is_err());
}

#[test]
fn python_float_text() {
    for (v, s) in [
        (0.0, "0.0"),
        (500.0, "500.0"),
        (0.01, "0.01"),
        (0.00992565, "0.00992565"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (1.5e-7, "1.5e-07"),
        (1e16, "1e+16"),
        (1234567890123456.0, "1234567890123456.0"),
        (-2.5, "-2.5"),
        (1.672, "1.672"),
        (0.1 + 0.2, "0.30000000000000004"),
        (f64::NAN, "nan"),
    ] {
        assert_eq!(python_float(v), s, "{v}");
    }
}

/// parse_log.py's expressions take the leftmost place in a line where they
/// match; glog stamps come with or without the year.
#[test]
fn parse_log_matches_what_the_script_s_expressions_match() {
    let log = "\
I1130 08:24:29.000000 1 solver.cpp:1] Solving LeNet
I1130 08:24:30.500000 1 solver.cpp:218] Iterations 5 is not an iteration; Iteration 0 (0 iter/s), loss = 2.3
I1130 08:24:30.500000 1 solver.cpp:237]     Train net output #0: loss = 2.3 (* 1 = 2.3 loss)
I1130 08:24:30.500000 1 solver.cpp:237]     Train net output #: skipped = 1
I1130 08:24:30.500000 1 solver.cpp:237]     Train net output #1: two words = 1
I1130 08:24:30.500000 1 sgd_solver.cpp:105] Iteration 0, lr = nan, lr = 0.01
I1130 08:24:31.000000 1 solver.cpp:218] Iteration x, then Iteration 100 (200 iter/s), loss = 0.5
I1130 08:24:31.000000 1 solver.cpp:237]     Train net output #0: loss = 9.1e-01 (* 1 = 0.91 loss)
I1130 08:24:31.000000 1 sgd_solver.cpp:105] Iteration 100, lr = -.5E+3x
I1130 08:24:32.250000 1 solver.cpp:218] Iteration 200 (200 iter/s), loss = 0.4
I1130 08:24:32.250000 1 solver.cpp:237]     Train net output #0: loss = 0.4
I1130 08:24:32.250000 1 sgd_solver.cpp:105] Iteration 200, lr = 5.
";
    let data = parse_str(log, 2026);
    let rows: Vec<(f64, f64, f64, f64)> = data
        .train
        .iter()
        .map(|r| (r.iteration(), r.get("Seconds").unwrap(), r.get("LearningRate").unwrap(), r.get("loss").unwrap()))
        .collect();
    // Row 0's rate is copied from row 1, as the script does; names with a space
    // and outputs without a number are not outputs.
    assert_eq!(rows, [(0.0, 1.5, 0.01, 2.3), (100.0, 2.0, 0.01, 0.91), (200.0, 3.25, -500.0, 0.4)]);
    assert!(data.train.iter().all(|r| r.values.len() == 4), "{:?}", data.train);
    let rates: Vec<f64> = data.learning_rates.iter().map(|p| p.lr).collect();
    assert_eq!(rates, [0.01, -500.0, 5.0]);

    let with_year = "\
I20261130 08:24:29.264564 1 solver.cpp:1] Solving LeNet
I20261130 08:24:30.264564 1 solver.cpp:218] Iteration 0, loss = 1
I20261130 08:24:30.264564 1 solver.cpp:237]     Test net output #0: accuracy = 0.5
not a log line: Iteration 7
I20261130 08:24:31.264564 1 solver.cpp:218] Iteration 100, loss = 1
I20261130 08:24:31.264564 1 solver.cpp:237]     Test net output #0: accuracy = 0.75
";
    let data = parse_str(with_year, 1999);
    let rows: Vec<(f64, Option<f64>, Option<f64>)> =
        data.test.iter().map(|r| (r.iteration(), r.get("Seconds"), r.get("accuracy"))).collect();
    assert_eq!(rows, [(0.0, Some(1.0), Some(0.5)), (100.0, Some(2.0), Some(0.75))]);
}

#[test]
fn lmdb_writer_grows_its_map_when_full() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("grow");
    let mut w = DbWriter::create_with_map(&path, Backend::Lmdb, 256 << 10).unwrap();
    let value = vec![7u8; 4000];
    for i in 0..600 {
        w.put(format!("{i:08}").as_bytes(), &value);
        if i % 100 == 99 {
            w.commit().unwrap();
        }
    }
    w.finish().unwrap();
    let mut c = open_cursor(&path, Backend::Lmdb).unwrap();
    let mut n = 0;
    while c.valid() {
        assert_eq!(c.value(), value.as_slice());
        n += 1;
        c.next().unwrap();
    }
    assert_eq!(n, 600);
}

/// Found by fuzzing: a log line whose stamp has a multi-byte character where
/// the date's digits go made the parser slice inside the character.
#[test]
fn parse_log_takes_any_text_without_panicking() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad/fuzz_parse_log_utf8.log"),
    )
    .expect("fixture");
    let text = String::from_utf8_lossy(&bytes);
    let log = parse_str(&text, 2026);
    assert!(log.train.is_empty() && log.test.is_empty());
    let odd = "I20\u{e9}1130 08:24:29.264564 1 solver.cpp:218] Iteration 0, loss = 1\n";
    assert!(parse_str(odd, 2026).train.is_empty());
}

/// tch's panics that carry a libtorch error give that error's first part
/// (no C++ backtrace); other panics are not libtorch's.
#[test]
fn libtorch_errors_are_found_in_tch_panics() {
    use caffe_tch::util::contain::libtorch_error_in_panic;
    let tch = "called `Result::unwrap()` on an `Err` value: Torch(\"out of memory allocating 8 bytes\\nException raised from allocate at x.cpp:1 (most recent call first):\\nframe #0: f\\n\")";
    assert_eq!(libtorch_error_in_panic(tch).as_deref(), Some("out of memory allocating 8 bytes"));
    assert_eq!(libtorch_error_in_panic("index out of bounds: the len is 3 but the index is 7"), None);
}
