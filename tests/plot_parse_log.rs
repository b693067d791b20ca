//! `caffe parse_log` and `caffe plot` on a real BVLC Caffe training log
//! (tests/fixtures/caffe-ref/lenet_run/train.log, glog 0.6: the prefix carries
//! the year) and on the same log with classic prefixes (`I1130 …`).
//!
//! Expected values were read by hand from the log: Seconds count from the
//! `Solving LeNet` line (08:22:17.141763).
use std::path::{Path, PathBuf};
use std::process::Command;

use caffe_tch::tools::parse_log::{self, csv_text, parse_str, python_float, LogData};
use caffe_tch::tools::plot::{self, labels, series_points, PlotOptions, XAxis, YSeries};

fn lenet_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/caffe-ref/lenet_run/train.log")
}

/// The log with glog's classic prefix: `I20261130 08:…` → `I1130 08:…`.
fn classic(text: &str) -> String {
    text.lines()
        .map(|l| {
            let b = l.as_bytes();
            let dated =
                b.len() > 10 && b"IWEF".contains(&b[0]) && b[1..9].iter().all(u8::is_ascii_digit) && b[9] == b' ';
            if dated {
                format!("{}{}", &l[..1], &l[5..])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn caffe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_caffe"))
}

fn lenet() -> LogData {
    parse_log::parse_file(&lenet_log()).unwrap()
}

#[test]
fn parse_log_csv_matches_caffe_script_format() {
    let data = lenet();
    // One training row per display (100 iterations), none for the final
    // "Iteration 10000, loss" line; one test row per test pass.
    assert_eq!(data.train.len(), 100);
    assert_eq!(data.test.len(), 21);

    let train = csv_text(&data.train, ',');
    let lines: Vec<&str> = train.split("\r\n").collect();
    assert_eq!(lines[0], "NumIters,Seconds,LearningRate,loss");
    // Row 0's learning rate is copied from row 1 (printed after the first outputs).
    assert_eq!(lines[1], "0.0,1.672632,0.01,2.31626");
    assert_eq!(lines[2], "100.0,4.695136,0.01,0.666142");
    assert_eq!(lines[3], "200.0,6.965841,0.00992565,0.344789");
    assert_eq!(lines[100], "9900.0,289.366847,0.00599102,0.0995492");
    assert_eq!(lines[101], "", "CRLF after the last row, as Python's csv writes");
    assert_eq!(lines.len(), 102);

    let test = csv_text(&data.test, ',');
    let lines: Vec<&str> = test.split("\r\n").collect();
    assert_eq!(lines[0], "NumIters,Seconds,LearningRate,accuracy,loss");
    assert_eq!(lines[1], "0.0,1.636533,0.00971013,0.1077,2.31232");
    assert_eq!(lines[2], "500.0,15.435751,0.00971013,0.8254,0.479798");
    assert_eq!(lines[15], "7000.0,221.605736,0.0067466,0.9048,0.274436");
    assert_eq!(lines[21], "10000.0,294.824718,0.00596843,0.8933,0.314382");
}

#[test]
fn classic_prefix_gives_the_same_csv() {
    let text = std::fs::read_to_string(lenet_log()).unwrap();
    let old = classic(&text);
    assert!(old.lines().any(|l| l.starts_with("I1130 08:22:17.141763 ")));
    let year = parse_str(&text, 1999);
    let classic = parse_str(&old, 2026);
    assert_eq!(csv_text(&classic.train, ','), csv_text(&year.train, ','));
    assert_eq!(csv_text(&classic.test, ','), csv_text(&year.test, ','));
    assert_eq!(classic.learning_rates, year.learning_rates);
}

#[test]
fn year_rollover() {
    // Classic prefixes: the month going backwards means a new year (parse_log.py's rule).
    let log = "\
I1231 23:59:59.500000 1 solver.cpp:289] Solving LeNet
I1231 23:59:59.600000 1 solver.cpp:347] Iteration 0, Testing net (#0)
I0101 00:00:00.250000 1 solver.cpp:414]     Test net output #0: accuracy = 0.1
I0101 00:00:01.000000 1 solver.cpp:414]     Test net output #1: loss = 2.5 (* 1 = 2.5 loss)
I0101 00:00:02.000000 1 sgd_solver.cpp:112] Iteration 0, lr = 1e-05
I0101 00:01:00.000000 1 solver.cpp:347] Iteration 500, Testing net (#0)
I0101 00:01:00.500000 1 solver.cpp:414]     Test net output #0: accuracy = 0.5
I0101 00:01:00.750000 1 solver.cpp:414]     Test net output #1: loss = 1.5 (* 1 = 1.5 loss)
";
    let d = parse_str(log, 2025);
    assert_eq!(
        csv_text(&d.test, ','),
        "NumIters,Seconds,LearningRate,accuracy,loss\r\n0.0,0.75,1e-05,0.1,2.5\r\n500.0,61.0,1e-05,0.5,1.5\r\n"
    );
    // Prefixes with the year need no rollover rule.
    let dated = log.replace("I1231 ", "I20251231 ").replace("I0101 ", "I20260101 ");
    assert_eq!(csv_text(&parse_str(&dated, 1999).test, ','), csv_text(&d.test, ','));
    assert_eq!(d.learning_rates.len(), 1);
    assert_eq!((d.learning_rates[0].iteration, d.learning_rates[0].lr), (0.0, 1e-5));
}

#[test]
fn a_run_stopped_after_one_test_pass_is_plotted_though_parse_log_writes_no_row() {
    // A run whose loss went NaN at iteration 11: one test pass, then training stopped.
    let log = "\
I1203 21:59:02.633941  5097 solver.cpp:290] Solving LeNet50
I1203 21:59:02.633958  5097 solver.cpp:347] Iteration 0, Testing net (#0)
I1203 21:59:19.724095  5097 solver.cpp:414]     Test net output #0: accuracy = 0.1302
I1203 21:59:19.724170  5097 solver.cpp:414]     Test net output #1: loss = 2.30764 (* 1 = 2.30764 loss)
I1203 21:59:20.321815  5097 solver.cpp:239] Iteration 0 (0 iter/s, 17.6879s/100 iters), loss = 2.30689
I1203 21:59:20.321900  5097 solver.cpp:258]     Train net output #0: loss = 2.30689 (* 1 = 2.30689 loss)
I1203 21:59:20.321938  5097 sgd_solver.cpp:112] Iteration 0, lr = 0.01
";
    let d = parse_str(log, 2026);
    // parse_log.py writes a row once it is as long as the first: here, none.
    assert!(d.test.is_empty() && d.train.is_empty());
    let acc = series_points(&d, XAxis::Iters, &YSeries::parse("test-accuracy").unwrap());
    assert_eq!(acc, vec![(0.0, 0.1302)]);
    let loss = series_points(&d, XAxis::Iters, &YSeries::parse("train-loss").unwrap());
    assert_eq!(loss, vec![(0.0, 2.30689)]);
}

#[test]
fn python_float_repr() {
    for (v, s) in [
        (0.0, "0.0"),
        (10000.0, "10000.0"),
        (0.0725435, "0.0725435"),
        (1e-5, "1e-05"),
        (2.5e-7, "2.5e-07"),
        (f64::NAN, "nan"),
    ] {
        assert_eq!(python_float(v), s);
    }
}

#[test]
fn cli_parse_log_writes_train_and_test_files() {
    let dir = tempfile::tempdir().unwrap();
    // A classic-prefix copy, as older Caffe writes it.
    let text = std::fs::read_to_string(lenet_log()).unwrap();
    let log = dir.path().join("caffe.INFO");
    std::fs::write(&log, classic(&text)).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let st = caffe().args(["parse_log", log.to_str().unwrap(), out.to_str().unwrap()]).status().unwrap();
    assert!(st.success());
    let data = lenet();
    assert_eq!(std::fs::read_to_string(out.join("caffe.INFO.train")).unwrap(), csv_text(&data.train, ','));
    assert_eq!(std::fs::read_to_string(out.join("caffe.INFO.test")).unwrap(), csv_text(&data.test, ','));

    // The script's --delimiter option, in gflags form.
    let st = caffe()
        .args(["parse_log", lenet_log().to_str().unwrap(), out.to_str().unwrap(), "-delimiter", ";"])
        .status()
        .unwrap();
    assert!(st.success());
    let test = std::fs::read_to_string(out.join("train.log.test")).unwrap();
    assert!(test.starts_with("NumIters;Seconds;LearningRate;accuracy;loss\r\n0.0;1.636533;"));

    // Wrong usage fails with a message, not a panic.
    let o = caffe().args(["parse_log", lenet_log().to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage: caffe parse_log"));
}

#[test]
fn plot_series_from_the_log() {
    let data = lenet();
    let acc = series_points(&data, XAxis::Iters, &YSeries::parse("test-accuracy").unwrap());
    assert_eq!(acc.len(), 21);
    assert_eq!(acc[0], (0.0, 0.1077));
    assert_eq!(acc[20], (10000.0, 0.8933));
    let best = acc.iter().cloned().fold((0.0, 0.0), |b, p| if p.1 > b.1 { p } else { b });
    assert_eq!(best, (7000.0, 0.9048));
    let loss = series_points(&data, XAxis::Seconds, &YSeries::parse("train-loss").unwrap());
    assert_eq!(loss.len(), 100);
    assert_eq!(loss[1], (4.695136, 0.666142));
    // The learning rate at the iteration that printed it (no lag).
    let lr = series_points(&data, XAxis::Iters, &YSeries::parse("lr").unwrap());
    assert_eq!(lr.len(), 100);
    assert_eq!((lr[0], lr[1], lr[99]), ((0.0, 0.01), (100.0, 0.00992565), (9900.0, 0.00596843)));
    assert!(YSeries::parse("accuracy").is_err());
    assert!(XAxis::parse("epochs").is_err());
    let names = labels(&[PathBuf::from("a/train.log"), PathBuf::from("b/train.log"), PathBuf::from("c/other.log")]);
    assert_eq!(names, ["a/train", "b/train", "other"]);
}

/// Pixels close to `c` in the image.
fn count_color(img: &image::RgbImage, c: [u8; 3], within: Option<(u32, u32, u32, u32)>) -> usize {
    let (x0, y0, x1, y1) = within.unwrap_or((0, 0, img.width(), img.height()));
    img.enumerate_pixels()
        .filter(|(x, y, p)| {
            *x >= x0
                && *x < x1
                && *y >= y0
                && *y < y1
                && p.0.iter().zip(c).all(|(a, b)| (*a as i32 - b as i32).abs() <= 8)
        })
        .count()
}

#[test]
fn cli_plot_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(lenet_log()).unwrap();
    let old = dir.path().join("classic.log");
    std::fs::write(&old, classic(&text)).unwrap();
    let png = dir.path().join("acc.png");
    let o = caffe()
        .args([
            "plot",
            lenet_log().to_str().unwrap(),
            old.to_str().unwrap(),
            "-o",
            png.to_str().unwrap(),
            "--x",
            "iters",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (1000, 600));
    // Both logs hold the same numbers, so the second curve (tab10 red) covers
    // the first (blue): blue shows in its legend swatch.
    assert!(count_color(&img, [214, 39, 40], None) > 1000);
    assert!(count_color(&img, [31, 119, 180], Some((700, 400, 1000, 600))) > 40);
    // The title is text in the embedded font: black pixels in the top band.
    assert!(count_color(&img, [0, 0, 0], Some((250, 0, 750, 50))) > 150);

    let svg = dir.path().join("lr.svg");
    let st = caffe()
        .args(["plot", lenet_log().to_str().unwrap(), "-y=lr", "-x=seconds", "-o", svg.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("Learning rate vs. seconds") && s.contains(">\ntrain\n<"));

    // A series no log has is an error, as is an unknown image type.
    let o = caffe()
        .args(["plot", lenet_log().to_str().unwrap(), "-y", "test-top5", "-o", png.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = caffe().args(["plot", lenet_log().to_str().unwrap(), "-o", "x.gif"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn plot_library_renders_several_logs() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PlotOptions {
        logs: vec![lenet_log(), lenet_log()],
        out: dir.path().join("loss.png"),
        x: XAxis::Iters,
        y: YSeries::parse("test-loss").unwrap(),
        width: 640,
        height: 400,
        title: Some("LeNet".into()),
    };
    let curves = plot::curves(&opts).unwrap();
    assert_eq!(curves.len(), 2);
    assert_eq!(curves[0].points[20], (10000.0, 0.314382));
    plot::render(&curves, &opts).unwrap();
    let img = image::open(&opts.out).unwrap();
    assert_eq!((img.width(), img.height()), (640, 400));
}
