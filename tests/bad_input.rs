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
