//! The bad-input suite: every broken file gives exit code 1, one error line
//! (`caffe: error: ...`) that names the file (and line:col where there is
//! text), and never a panic.
use std::path::Path;
use std::process::Command;

struct Case {
    file: &'static str,
    /// The caffe sub-command and flags; the file is appended (or put after `-model`).
    cmd: &'static [&'static str],
    /// `file:line:col` expected in the message (None for binary files).
    line_col: Option<(usize, usize)>,
    /// A fragment the message must contain.
    says: &'static str,
}

const SUMMARIZE: &[&str] = &["summarize"];
const SUMMARIZE_LENIENT: &[&str] = &["summarize", "--lenient"];
const TIME: &[&str] = &["time", "-iterations", "1", "-model"];
const UPGRADE_BIN: &[&str] = &["upgrade_net_proto_binary"];
/// `caffe forward` on LeNet with the file as its `data` input.
const FORWARD_INPUT: &[&str] = &["forward", "-input"];

fn cases() -> Vec<Case> {
    let c = |file, cmd, line_col, says| Case { file, cmd, line_col, says };
    vec![
        c("missing_brace.prototxt", SUMMARIZE, Some((5, 1)), "to close \"layer\""),
        c("extra_brace.prototxt", SUMMARIZE, Some((6, 1)), "}"),
        c("wrong_enum.prototxt", SUMMARIZE, Some((5, 11)), "AVERAGE"),
        c("unknown_field.prototxt", SUMMARIZE, Some((4, 3)), "frobnicate"),
        c("unknown_nested_message.prototxt", SUMMARIZE, Some((4, 3)), "frob_param"),
        c("wrong_type_string.prototxt", SUMMARIZE, Some((2, 9)), "name"),
        c("wrong_type_int.prototxt", SUMMARIZE, Some((5, 17)), "num_output"),
        c("float_for_int.prototxt", SUMMARIZE, Some((5, 17)), "num_output"),
        c("negative_unsigned.prototxt", SUMMARIZE, Some((5, 17)), "num_output"),
        c("int_overflow.prototxt", SUMMARIZE, Some((5, 17)), "num_output"),
        c("unterminated_string.prototxt", SUMMARIZE, Some((1, 7)), "unterminated string"),
        c("bad_escape.prototxt", SUMMARIZE, Some((1, 9)), "escape"),
        c("missing_colon.prototxt", SUMMARIZE, Some((1, 6)), "name"),
        c("duplicate_field.prototxt", SUMMARIZE, Some((3, 3)), "name"),
        c("bad_bool.prototxt", SUMMARIZE, Some((1, 17)), "force_backward"),
        c("unterminated_list.prototxt", SUMMARIZE, Some((3, 1)), "input_dim"),
        c("stray_token.prototxt", SUMMARIZE, Some((1, 14)), ";"),
        c("empty.prototxt", SUMMARIZE, Some((1, 1)), "defines nothing"),
        c("only_comments.prototxt", SUMMARIZE, Some((1, 1)), "defines nothing"),
        c("binary_garbage.prototxt", SUMMARIZE, Some((1, 1)), ""),
        c("nul_byte.prototxt", SUMMARIZE, Some((1, 10)), ""),
        c("solver_unknown_enum.prototxt", SUMMARIZE, Some((2, 14)), "TPU"),
        c("solver_type_conflict.prototxt", SUMMARIZE, None, "solver_type"),
        c("solver_missing_net.prototxt", SUMMARIZE, None, "does/not/exist.prototxt"),
        c("v1_unknown_type.prototxt", SUMMARIZE, Some((3, 9)), "FROBNICATE"),
        c("unknown_layer_type.prototxt", TIME, Some((8, 1)), "Unknown layer type: Frobnicate (known types:"),
        c("shape_mismatch_dropin.prototxt", TIME, Some((9, 1)), "Resize"),
        c("unknown_bottom.prototxt", TIME, Some((8, 1)), "dat"),
        c("conv_too_big_kernel.prototxt", TIME, Some((8, 1)), "not positive"),
        c("truncated.caffemodel", UPGRADE_BIN, None, "truncated"),
        c("truncated_1k.caffemodel", UPGRADE_BIN, None, "truncated"),
        c("text_as.caffemodel", UPGRADE_BIN, None, "not a valid binary protobuf"),
        // Found by fuzzing: a header whose shape needs more data than the file holds
        // (tch's reader read past the end), and the fuzzer's own file.
        c("short_data.npy", FORWARD_INPUT, None, "needs 6272 data bytes, the file has 272"),
        c("fuzz_npy_header.npy", FORWARD_INPUT, None, "not a valid .npy file"),
        // Hostile nets (found by fuzzing and by the axis sweep in tests/layer_axes.rs).
        c("hostile_concat_scalar.prototxt", TIME, Some((3, 1)), "axis 0 out of range for a 0-D blob"),
        c("hostile_tile_scalar.prototxt", TIME, Some((4, 1)), "axis 0 out of range for a 0-D blob"),
        c("hostile_resize_zero_channels.prototxt", TIME, Some((3, 1)), "from a bottom with none"),
        c("hostile_slice_scalar.prototxt", TIME, Some((3, 1)), "axis 0 out of range for a 0-D blob"),
        c("hostile_pool_huge_pad.prototxt", TIME, Some((3, 1)), "needs 3.6 TiB but the memory limit is"),
        c("hostile_conv_huge_pad_kernel.prototxt", TIME, Some((3, 1)), "column buffer (Caffe's im2col: channels x kernel x positions): shape [3, 366, 366, 1376, 1376] needs 2.8 TiB but the memory limit is"),
        c("hostile_too_many_axes.prototxt", TIME, Some((3, 1)), "top 'y' would have 33 axes; a blob has at most 32, as in Caffe"),
        // Bounded nesting: the text parser (skipping an unknown field) and protobuf's decoder.
        c("deep_nesting.prototxt", SUMMARIZE_LENIENT, Some((2, 406)), "nested more than 100 levels deep"),
        c("deep_groups.caffemodel", UPGRADE_BIN, None, "recursion limit reached"),
    ]
}

#[test]
fn every_bad_file_gives_one_clear_error_line_and_exit_1() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let out_dir = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for case in &cases {
        let file = dir.join(case.file);
        let mut args: Vec<String> = case.cmd.iter().map(|s| s.to_string()).collect();
        if case.cmd == FORWARD_INPUT {
            args.pop();
            let lenet =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/caffe-ref/fixtures/lenet/net.prototxt");
            args.extend(["-model".to_string(), lenet.display().to_string(), "-out".to_string()]);
            args.push(out_dir.path().display().to_string());
            args.extend(["-input".to_string(), format!("data={}", file.display())]);
        } else {
            args.push(file.display().to_string());
        }
        if case.cmd == UPGRADE_BIN {
            args.push(out_dir.path().join("out.caffemodel").display().to_string());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_caffe")).args(&args).current_dir(&dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("caffe: error:")).collect();
        let problem = if stderr.contains("panicked") {
            Some("panicked".to_string())
        } else if out.status.code() != Some(1) {
            Some(format!("exit code {:?}", out.status.code()))
        } else if errors.len() != 1 {
            Some(format!("{} error lines", errors.len()))
        } else {
            let e = errors[0];
            let place = match case.line_col {
                Some((l, c)) => format!("{}:{l}:{c}:", file.display()),
                None => case.file.to_string(),
            };
            if !e.contains(&place) {
                Some(format!("message does not name {place}"))
            } else if !e.contains(case.says) {
                Some(format!("message lacks {:?}", case.says))
            } else {
                None
            }
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}\n    stderr: {}", case.file, stderr.trim()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn no_half_written_output_after_a_failed_upgrade() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("never.caffemodel");
    let status = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["upgrade_net_proto_binary", dir.join("truncated.caffemodel").to_str().unwrap(), out.to_str().unwrap()])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(1));
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0, "a file was left behind");
}

/// A net with a Python layer makes the binary run itself under Python; when
/// that Python cannot be started, one error line names the layer and says why.
/// (The Python module's tests run such nets for real: python/tests.)
#[test]
fn python_layer_without_a_python_is_one_clear_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let file = dir.join("python_layer.prototxt");
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["time", "-iterations", "1", "-model"])
        .arg(&file)
        .env("CAFFE_TCH_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let want = format!(
        "caffe: error: {}:8:1: layer 'py' is a Python layer (mylayers.Custom), and the net runs under Python, which could not be started (/nonexistent/python3: ",
        file.display()
    );
    assert!(lines[0].starts_with(&want), "{stderr}");
}

// ----- declared sizes beyond the memory limit (issue #15, item 2) -------------

/// Runs `caffe time` on `net` (text) in `dir` with a 1 GiB memory limit and
/// returns its one error line.
fn time_error_under_1g(dir: &Path, net: &str) -> String {
    std::fs::write(dir.join("net.prototxt"), net).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_caffe"))
        .args(["time", "-max_memory", "1G", "-iterations", "1", "-model", "net.prototxt"])
        .current_dir(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("caffe: error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

/// A PNG header claiming `width`×`height` RGB pixels, and almost no pixels
/// (the decoder reads the header up to the first image data chunk).
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], body: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(body);
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(body);
        c.extend_from_slice(&crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", b""));
    png
}

/// An image list entry whose PNG header claims 100000×100000 pixels (a
/// 65-byte file): an error naming the list, the line and the file before the
/// decoder allocates; the same for a resize to that size.
#[test]
fn an_image_claiming_a_huge_size_is_an_error_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("huge.png"), png_header_only(100_000, 100_000)).unwrap();
    std::fs::write(d.join("list.txt"), "huge.png 0\n").unwrap();
    let net = |file: &str, resize: &str| {
        std::fs::write(d.join("list.txt"), format!("{file} 0\n")).unwrap();
        format!(
            r#"layer {{ name: "data" type: "ImageData" top: "data" top: "label"
  image_data_param {{ source: "list.txt" root_folder: "{}/" batch_size: 1 {resize} }} }}"#,
            d.display()
        )
    };
    let e = time_error_under_1g(d, &net("huge.png", ""));
    assert!(
        e.contains("list.txt") && e.contains("huge.png") && e.contains("100000×100000") && e.contains("memory limit"),
        "{e}"
    );

    std::fs::write(d.join("small.png"), caffe_tch::data::image::encode(&small_image(), "png").unwrap()).unwrap();
    let e = time_error_under_1g(d, &net("small.png", "new_height: 100000 new_width: 100000"));
    assert!(e.contains("small.png") && e.contains("memory limit"), "{e}");

    // A JPEG whose frame header claims 65000×65000 (libjpeg reads the header
    // only), and one that is JPEG's start marker and then junk.
    std::fs::write(d.join("huge.jpg"), jpeg_claiming(65_000, 65_000)).unwrap();
    let e = time_error_under_1g(d, &net("huge.jpg", ""));
    assert!(e.contains("huge.jpg") && e.contains("65000×65000") && e.contains("memory limit"), "{e}");
    std::fs::write(d.join("junk.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg at all").unwrap();
    let e = time_error_under_1g(d, &net("junk.jpg", ""));
    assert!(e.contains("junk.jpg") && e.contains("corrupt Jpeg image"), "{e}");
    // A GIF whose screen is 65535×65535 around a one-pixel frame: the canvas
    // OpenCV would draw it on is refused before it is allocated.
    std::fs::write(d.join("huge.gif"), gif_one_pixel(65_535, 65_535)).unwrap();
    let e = time_error_under_1g(d, &net("huge.gif", ""));
    assert!(e.contains("huge.gif") && e.contains("65535×65535") && e.contains("memory limit"), "{e}");
}

/// A GIF of a one-pixel frame (index 0 of a two-colour global palette) at
/// the top left of a screen of the given size.
fn gif_one_pixel(width: u16, height: u16) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend(width.to_le_bytes());
    gif.extend(height.to_le_bytes());
    // A global palette of two colours, background 0, no aspect ratio.
    gif.extend([0x80, 0, 0, 10, 20, 30, 200, 210, 220]);
    // The frame: at 0,0, 1×1, no local palette.
    gif.extend([0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
    // LZW, minimum code size 2: clear (4), index 0, end (5), 3 bits each.
    gif.extend([2, 2, 0x44, 0x01, 0, 0x3b]);
    gif
}

/// A small baseline JPEG with its frame header's size changed.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut jpg = caffe_tch::data::image::encode(&small_image(), "jpg").unwrap();
    let sof = jpg.windows(2).position(|m| m == [0xff, 0xc0]).expect("a baseline frame header");
    jpg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpg
}

fn small_image() -> caffe_tch::data::image::Image {
    caffe_tch::data::image::Image { channels: 3, height: 2, width: 2, data: vec![7; 12] }
}

/// DB records declaring huge images: a raw Datum of 1×100000×100000 with no
/// pixels is over the limit, and one of 2³¹-1 on every axis overflows 64 bits;
/// both are errors naming the source and the key, before any allocation.
#[test]
fn a_datum_declaring_a_huge_image_is_an_error_before_allocation() {
    use caffe_tch::data::{datum, Backend, DbWriter};
    use caffe_tch::proto::caffe::Datum;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, side) in [("huge_lmdb", 100_000), ("overflow_lmdb", i32::MAX)] {
        let mut db = DbWriter::create(&d.join(name), Backend::Lmdb).unwrap();
        let channels = if side == i32::MAX { side } else { 1 };
        let record = Datum {
            channels: Some(channels),
            height: Some(side),
            width: Some(side),
            data: Some(vec![1, 2, 3]),
            ..Default::default()
        };
        db.put(b"00000000_huge", &datum::to_bytes(&record));
        db.finish().unwrap();
        let e = time_error_under_1g(
            d,
            &format!(
                r#"layer {{ name: "data" type: "Data" top: "data" top: "label" data_param {{ source: "{name}" batch_size: 1 backend: LMDB }} }}"#
            ),
        );
        let why = if side == i32::MAX { "more elements than fit in 64 bits" } else { "memory limit" };
        assert!(e.contains(name) && e.contains("record '00000000_huge'") && e.contains(why), "{e}");
    }
}

/// Found by fuzzing: a 632-byte JPEG made the pure-Rust JPEG decoder used
/// before libjpeg fail an assertion (a panic inside the library). libjpeg, as
/// OpenCV, decodes it with a warning (its data ends early) into an 8×63241
/// image: the same here, and no panic.
#[test]
fn a_jpeg_that_panicked_the_rust_decoder_decodes_as_opencv_reads_it() {
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad/fuzz_jpeg_assertion.jpg");
    let img =
        caffe_tch::data::image::decode(&std::fs::read(bad).unwrap(), caffe_tch::data::image::ColorMode::Color).unwrap();
    assert_eq!((img.channels, img.height, img.width), (3, 8, 63241));
}
