//! Protobuf text format: parser syntax, errors and their positions, lenient
//! mode, the printer's byte-exact output against files Caffe wrote, and a
//! no-panic fuzz loop.
use std::path::{Path, PathBuf};

use caffe_tch::error::{Error, Location};
use caffe_tch::proto::caffe::{BlobProto, BlobShape, Datum, LayerParameter, NetParameter, SolverParameter};
use caffe_tch::proto::print::{format_double, format_float, to_text, to_text_dynamic};
use caffe_tch::proto::text::{parse_dynamic, parse_str, read_file, Parsed, TextOptions};
use caffe_tch::proto::{descriptor_of, pool};
use caffe_tch::util::format_g;

const STRICT: TextOptions = TextOptions { lenient: false };
const LENIENT: TextOptions = TextOptions { lenient: true };

fn net(text: &str) -> NetParameter {
    match parse_str::<NetParameter>(text, "t.prototxt", STRICT) {
        Ok(p) => p.message,
        Err(e) => panic!("parse failed: {e}\n--- input ---\n{text}"),
    }
}

fn parse<M: prost::Message + prost::Name + Default>(text: &str) -> M {
    match parse_str::<M>(text, "t.prototxt", STRICT) {
        Ok(p) => p.message,
        Err(e) => panic!("parse failed: {e}\n--- input ---\n{text}"),
    }
}

/// Parses expecting failure; returns (line, col, message).
fn err<M: prost::Message + prost::Name + Default>(text: &str) -> (usize, usize, String) {
    match parse_str::<M>(text, "t.prototxt", STRICT) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(Error::Parse { loc, msg }) => {
            assert_eq!(loc.file, "t.prototxt");
            (loc.line, loc.col, msg)
        }
        Err(e) => panic!("expected a parse error, got {e}"),
    }
}

fn net_err(text: &str) -> (usize, usize, String) {
    err::<NetParameter>(text)
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".caffe-upgraded.prototxt"))
        .collect();
    v.sort();
    assert!(v.len() >= 7, "expected the Caffe-upgraded fixtures in {}", dir.display());
    v
}

// ---------------------------------------------------------------------------
// Syntax

#[test]
fn basic_net_with_comments_tabs_crlf_and_separators() {
    let text = "# a comment\r\nname: \"x\" # trailing\r\n\tinput: 'data';\r\ninput_dim: 1, input_dim: 3\r\n\
                layer { name: \"a\"; type: \"ReLU\", bottom: \"data\" top: \"data\" }\r\n\
                layer: { name: \"b\" }\r\nlayer < name: \"c\" include < phase: TEST > >\r\n";
    let n = net(text);
    assert_eq!(n.name(), "x");
    assert_eq!(n.input, vec!["data"]);
    assert_eq!(n.input_dim, vec![1, 3]);
    assert_eq!(n.layer.len(), 3);
    assert_eq!(n.layer[0].name(), "a");
    assert_eq!(n.layer[0].r#type(), "ReLU");
    assert_eq!(n.layer[0].bottom, vec!["data"]);
    assert_eq!(n.layer[1].name(), "b");
    assert_eq!(n.layer[2].name(), "c");
    assert_eq!(n.layer[2].include.len(), 1);
    assert_eq!(n.layer[2].include[0].phase, Some(1));
}

#[test]
fn empty_input_is_an_empty_message() {
    let n = net("");
    assert_eq!(n, NetParameter::default());
    let n = net("  # only a comment\n\n\t");
    assert_eq!(n, NetParameter::default());
}

#[test]
fn lists_of_scalars_and_messages() {
    let n = net("input_dim: [1, 3, 224, 224] input_dim: 5 input: [] layer: [ { name: \"a\" }, < name: \"b\" > ]");
    assert_eq!(n.input_dim, vec![1, 3, 224, 224, 5]);
    assert!(n.input.is_empty());
    assert_eq!(n.layer.iter().map(|l| l.name()).collect::<Vec<_>>(), vec!["a", "b"]);
    let n = net("layer [ { name: \"a\" } ]");
    assert_eq!(n.layer.len(), 1);
    // A list for a non-repeated field is an error.
    let (l, c, m) = net_err("name: [\"a\"]");
    assert_eq!((l, c), (1, 7));
    assert!(m.contains("not repeated"), "{m}");
    // A missing comma.
    let (l, c, m) = net_err("input_dim: [1 2]");
    assert_eq!((l, c), (1, 15));
    assert!(m.contains("expected \",\" or \"]\""), "{m}");
}

#[test]
fn enums_by_name_and_number() {
    use caffe_tch::proto::caffe::pooling_parameter::PoolMethod;
    let l: LayerParameter = parse("pooling_param { pool: AVE }");
    assert_eq!(l.pooling_param.as_ref().map(|p| p.pool()), Some(PoolMethod::Ave));
    let l: LayerParameter = parse("pooling_param { pool: 2 }");
    assert_eq!(l.pooling_param.as_ref().map(|p| p.pool()), Some(PoolMethod::Stochastic));
    let l: LayerParameter = parse("pooling_param { pool: 0x1 }");
    assert_eq!(l.pooling_param.as_ref().map(|p| p.pool()), Some(PoolMethod::Ave));
    let (l, c, m) = err::<LayerParameter>("pooling_param {\n  pool: AVERAGE\n}");
    assert_eq!((l, c), (2, 9));
    assert_eq!(
        m,
        "unknown enum value \"AVERAGE\" for field \"pool\" (caffe.PoolingParameter.PoolMethod: MAX, AVE, STOCHASTIC)"
    );
    let (l, c, m) = err::<LayerParameter>("pooling_param { pool: 7 }");
    assert_eq!((l, c), (1, 23));
    assert!(m.starts_with("unknown enum value \"7\" for field \"pool\""), "{m}");
    let (_, _, m) = err::<LayerParameter>("pooling_param { pool: \"MAX\" }");
    assert!(m.contains("expected enum value for field \"pool\""), "{m}");
}

#[test]
fn strings_quotes_escapes_concatenation() {
    let l: LayerParameter = parse(r#"name: "a\n\t\r\\\'\"" 'b"c\'' "\x41\101\x4a" top: "p" "q" 'r'"#);
    assert_eq!(l.name(), "a\n\t\r\\'\"b\"c'AAJ");
    assert_eq!(l.top, vec!["pqr"]);
    let l: LayerParameter = parse(r#"name: "\a\b\f\v\?\u00e9\U0001F600" type: "é""#);
    assert_eq!(l.name(), "\x07\x08\x0c\x0b?é😀");
    assert_eq!(l.r#type(), "é");
    // Bytes fields take any byte.
    let d: Datum = parse(r#"data: "\000\377\x80abc\1" label: 3"#);
    assert_eq!(d.data(), &[0u8, 0xff, 0x80, b'a', b'b', b'c', 1][..]);
    assert_eq!(d.label(), 3);
    // A string field must hold UTF-8.
    let (l, c, m) = err::<LayerParameter>("\nname: \"\\377\"");
    assert_eq!((l, c), (2, 7));
    assert!(m.contains("not valid UTF-8"), "{m}");
}

#[test]
fn string_errors() {
    let (l, c, m) = err::<LayerParameter>("name: \"abc");
    assert_eq!((l, c, m.as_str()), (1, 7, "unterminated string"));
    let (l, c, m) = err::<LayerParameter>("type: \"x\"\nname: 'abc\n'");
    assert_eq!((l, c), (2, 7));
    assert!(m.starts_with("unterminated string"), "{m}");
    let (l, c, m) = err::<LayerParameter>("name: \"ab\\q\"");
    assert_eq!((l, c), (1, 10));
    assert!(m.contains("invalid escape"), "{m}");
    let (l, c, m) = err::<LayerParameter>("name: 5");
    assert_eq!((l, c), (1, 7));
    assert!(m.contains("expected string for field \"name\""), "{m}");
}

#[test]
fn integers_all_forms_and_ranges() {
    let c: caffe_tch::proto::caffe::ConvolutionParameter =
        parse("num_output: 0x10 kernel_size: 010 kernel_size: 0 stride: 4294967295 group: 0X1f");
    assert_eq!(c.num_output(), 16);
    assert_eq!(c.kernel_size, vec![8, 0]);
    assert_eq!(c.stride, vec![4294967295]);
    assert_eq!(c.group(), 31);
    let f: caffe_tch::proto::caffe::FillerParameter = parse("sparse: -2147483648");
    assert_eq!(f.sparse(), i32::MIN);
    let f: caffe_tch::proto::caffe::FillerParameter = parse("sparse: - 0x7fffffff");
    assert_eq!(f.sparse(), -i32::MAX);
    let s: BlobShape = parse("dim: -9223372036854775808 dim: 9223372036854775807 dim: 0");
    assert_eq!(s.dim, vec![i64::MIN, i64::MAX, 0]);
    let s: SolverParameter = parse("random_seed: -1");
    assert_eq!(s.random_seed(), -1);

    use caffe_tch::proto::caffe::{ConvolutionParameter as C, FillerParameter as F};
    let (l, c, m) = err::<C>("num_output: 4294967296");
    assert_eq!((l, c), (1, 13));
    assert!(m.contains("out of range for field \"num_output\" (uint32)"), "{m}");
    let (l, c, m) = err::<C>("num_output: -1");
    assert_eq!((l, c), (1, 13));
    assert!(m.contains("negative value for unsigned field \"num_output\""), "{m}");
    let (l, c, m) = err::<C>("num_output: 1.5");
    assert_eq!((l, c), (1, 13));
    assert_eq!(m, "expected integer for field \"num_output\", found \"1.5\" in caffe.ConvolutionParameter");
    let (_, _, m) = err::<C>("num_output: abc");
    assert!(m.starts_with("expected integer for field \"num_output\", found \"abc\""), "{m}");
    let (_, _, m) = err::<C>("num_output: 1e3");
    assert!(m.contains("expected integer"), "{m}");
    let (_, _, m) = err::<F>("sparse: 2147483648");
    assert!(m.contains("out of range"), "{m}");
    let (_, _, m) = err::<F>("sparse: -2147483649");
    assert!(m.contains("out of range"), "{m}");
    let (_, _, m) = err::<BlobShape>("dim: 9223372036854775808");
    assert!(m.contains("out of range"), "{m}");
    let (_, _, m) = err::<BlobShape>("dim: 99999999999999999999999");
    assert!(m.contains("out of range"), "{m}");
    let (l, c, m) = err::<C>("num_output: 09");
    assert_eq!((l, c), (1, 14));
    assert!(m.contains("octal"), "{m}");
    let (_, _, m) = err::<C>("num_output: 12abc");
    assert!(m.contains("need space between number and identifier"), "{m}");
    let (_, _, m) = err::<C>("num_output: 0x");
    assert!(m.contains("hex digits"), "{m}");
}

#[test]
fn floats_all_forms() {
    let b: BlobProto = parse(
        "data: 1 data: 1. data: .5 data: 1e-4 data: 1E+3 data: 1.5f data: 2F data: -0.25 data: 1.e2\n\
         data: inf data: -inf data: infinity data: -Infinity data: INF data: nan data: NaN data: -nan\n\
         data: [3, 4.5] data: 3.4028236e38 data: 1e-50 data: 18446744073709551616",
    );
    let d = &b.data;
    assert_eq!(&d[..9], &[1.0, 1.0, 0.5, 1e-4, 1000.0, 1.5, 2.0, -0.25, 100.0]);
    assert_eq!(&d[9..14], &[f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY]);
    assert!(d[14].is_nan() && d[15].is_nan() && d[16].is_nan());
    assert_eq!(&d[17..19], &[3.0, 4.5]);
    assert_eq!(d[19], f32::INFINITY); // overflow to infinity, like protobuf
    assert_eq!(d[20], 0.0);
    assert_eq!(d[21], 18446744073709551616.0);
    // The value goes through double first, as in protobuf.
    let b: BlobProto = parse("data: 0.1 double_data: 0.1 double_data: 1e-300 double_data: -7");
    assert_eq!(b.data, vec![0.1f32]);
    assert_eq!(b.double_data, vec![0.1f64, 1e-300, -7.0]);

    let (l, c, m) = err::<BlobProto>("data: 0x10");
    assert_eq!((l, c), (1, 7));
    assert!(m.contains("decimal"), "{m}");
    let (_, _, m) = err::<BlobProto>("data: abc");
    assert!(m.starts_with("expected number for field \"data\""), "{m}");
    let (_, _, m) = err::<BlobProto>("data: 1e");
    assert!(m.contains("exponent"), "{m}");
    let (_, _, m) = err::<BlobProto>("data: \"1\"");
    assert!(m.starts_with("expected number"), "{m}");
}

#[test]
fn bools_all_forms() {
    for (t, v) in [
        ("true", true),
        ("True", true),
        ("t", true),
        ("1", true),
        ("false", false),
        ("False", false),
        ("f", false),
        ("0", false),
    ] {
        let n = net(&format!("force_backward: {t}"));
        assert_eq!(n.force_backward, Some(v), "{t}");
    }
    let (l, c, m) = net_err("force_backward: 2");
    assert_eq!((l, c), (1, 17));
    assert!(m.contains("bool"), "{m}");
    let (_, _, m) = net_err("force_backward: yes");
    assert!(m.contains("expected true or false for field \"force_backward\""), "{m}");
    let (_, _, m) = net_err("force_backward: TRUE");
    assert!(m.contains("expected true or false"), "{m}");
}

#[test]
fn duplicate_non_repeated_field_is_an_error() {
    let (l, c, m) = net_err("name: \"a\"\nname: \"b\"");
    assert_eq!((l, c), (2, 1));
    assert_eq!(m, "non-repeated field \"name\" of caffe.NetParameter is specified multiple times");
    let (l, c, _) = net_err("state { phase: TRAIN }\n  state { }");
    assert_eq!((l, c), (2, 3));
    // Repeated fields may repeat; a field inside two different elements is fine.
    let n = net("layer { name: \"a\" } layer { name: \"b\" }");
    assert_eq!(n.layer.len(), 2);
}

#[test]
fn set_to_default_is_still_present() {
    let n = net("force_backward: false state { }");
    assert_eq!(n.force_backward, Some(false));
    assert!(n.state.is_some());
}

#[test]
fn syntax_errors_with_exact_locations() {
    // Unknown field.
    let (l, c, m) = net_err("name: \"x\"\nlayer {\n  name: \"a\"\n  foo: 1\n}\n");
    assert_eq!((l, c), (4, 3));
    assert_eq!(m, "caffe.LayerParameter has no field named \"foo\"");
    // Tabs count as one column.
    let (l, c, _) = net_err("layer {\n\t\tbar: 1\n}");
    assert_eq!((l, c), (2, 3));
    // Unclosed block: reported at end of file, naming where it opened.
    let text = "name: \"n\"\nlayer {\n  name: \"a\"\n  convolution_param {\n    num_output: 1\n  }\n";
    let (l, c, m) = net_err(text);
    assert_eq!((l, c), (7, 1));
    assert_eq!(m, "expected \"}\" to close \"layer\" opened at 2:1, found end of file");
    // Mismatched closer.
    let (l, c, m) = net_err("layer <\n  name: \"a\"\n}");
    assert_eq!((l, c), (3, 1));
    assert_eq!(m, "expected \">\" to close \"layer\" opened at 1:1, found \"}\"");
    // Stray closer at top level.
    let (l, c, m) = net_err("name: \"a\"\n}");
    assert_eq!((l, c), (2, 1));
    assert!(m.contains("expected a field name of caffe.NetParameter, found \"}\""), "{m}");
    // Missing colon before a scalar.
    let (l, c, m) = net_err("name \"a\"");
    assert_eq!((l, c), (1, 6));
    assert!(m.starts_with("expected \":\" after field \"name\""), "{m}");
    // Missing brace for a message.
    let (l, c, m) = net_err("layer: 5");
    assert_eq!((l, c), (1, 8));
    assert!(m.contains("expected \"{\""), "{m}");
    // Truncated after a colon.
    let (l, c, m) = net_err("layer {\n  name:");
    assert_eq!((l, c), (2, 8));
    assert!(m.contains("found end of file"), "{m}");
    // Garbage characters.
    let (l, c, m) = net_err("name: \"a\"\n  @");
    assert_eq!((l, c), (2, 3));
    assert!(m.contains("\"@\""), "{m}");
    let (l, c, m) = net_err("name: \"a\" \u{1}");
    assert_eq!((l, c), (1, 11));
    assert!(m.contains("control character"), "{m}");
    // Extensions are not in the schema.
    let (_, _, m) = net_err("[foo.bar]: 1");
    assert!(m.contains("has no extension named \"[foo.bar]\""), "{m}");
}

#[test]
fn error_display_has_file_line_col() {
    let e = parse_str::<NetParameter>("layer {\n  foo: 1\n}", "nets/x.prototxt", STRICT).err().map(|e| e.to_string());
    assert_eq!(e.as_deref(), Some("nets/x.prototxt:2:3: caffe.LayerParameter has no field named \"foo\""));
}

#[test]
fn source_map_records_element_starts() {
    let text = "name: \"n\"\nlayer {\n  name: \"a\"\n}\n  layer { name: \"b\" }\nlayer: [ { name: \"c\" },\n { name: \"d\" } ]\n";
    let p: Parsed<NetParameter> = parse_str(text, "net.prototxt", STRICT).unwrap();
    let sm = &p.source_map;
    assert_eq!(sm.file(), "net.prototxt");
    let at = |i| sm.element("layer", i).map(|l: &Location| (l.line, l.col));
    assert_eq!(at(0), Some((2, 1)));
    assert_eq!(at(1), Some((5, 3)));
    assert_eq!(at(2), Some((6, 10)));
    assert_eq!(at(3), Some((7, 2)));
    assert_eq!(at(4), None);
    assert_eq!(sm.element("layer", 0).map(|l| l.file.as_str()), Some("net.prototxt"));
    // Old-style V1 `layers` too.
    let p: Parsed<NetParameter> =
        parse_str("layers {\n  name: \"a\"\n  type: RELU\n}\nlayers { name: \"b\" }", "v1", STRICT).unwrap();
    assert_eq!(p.source_map.element("layers", 1).map(|l| (l.line, l.col)), Some((5, 1)));
    // Nested repeated messages are not top-level.
    assert!(p.source_map.element("param", 0).is_none());
}

#[test]
fn lenient_skips_unknown_fields_and_enum_values() {
    let text = "name: \"ssd\"\n\
        layer {\n\
          name: \"norm\"\n\
          type: \"PSROIPooling\"\n\
          nms_plugin_param { keep_top_k: 100 iou_threshold: 0.45 }\n\
          loss_param { normalization: PRE_FIXED ignore_label: -1 }\n\
          pooling_param { pool: MAX odd_round: false }\n\
          odd_list: [1, 2, \"x\", -inf]\n\
          odd_msgs: [ { a: 1 }, < b < c: 'd' > > ];\n\
          odd_neg: -3,\n\
          odd_strs: \"a\" 'b'\n\
          odd_colon_block: { x: [ ] }\n\
          [ext.name] { y: 1 }\n\
          top: \"norm\"\n\
        }\n";
    let p: Parsed<NetParameter> = parse_str(text, "ssd.prototxt", LENIENT).unwrap();
    let l = &p.message.layer[0];
    assert_eq!(l.name(), "norm");
    assert_eq!(l.top, vec!["norm"]);
    let lp = l.loss_param.as_ref().unwrap();
    assert_eq!(lp.normalization, None);
    assert_eq!(lp.ignore_label(), -1);
    assert!(l.pooling_param.is_some());
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 9, "{w:#?}");
    assert_eq!(w[0], "ssd.prototxt:5:1: warning: skipped unknown field \"nms_plugin_param\" in caffe.LayerParameter");
    assert!(w[1].starts_with("ssd.prototxt:6:29: warning: skipped unknown enum value \"PRE_FIXED\" for field \"normalization\" (caffe.LossParameter.NormalizationMode: FULL, VALID, BATCH_SIZE, NONE)"), "{}", w[1]);
    assert_eq!(w[2], "ssd.prototxt:7:27: warning: skipped unknown field \"odd_round\" in caffe.PoolingParameter");
    assert!(w[3].contains("\"odd_list\""));
    assert!(w[4].contains("\"odd_msgs\""));
    assert!(w[5].contains("\"odd_neg\""));
    assert!(w[6].contains("\"odd_strs\""));
    assert!(w[7].contains("\"odd_colon_block\""));
    assert!(w[8].contains("\"[ext.name]\""));
    assert_eq!((p.warnings[0].loc.line, p.warnings[0].loc.col), (5, 1));

    // The same text fails in strict mode, at the first unknown field.
    let e = parse_str::<NetParameter>(text, "ssd.prototxt", STRICT).err().map(|e| e.to_string());
    assert_eq!(e.as_deref(), Some("ssd.prototxt:5:1: caffe.LayerParameter has no field named \"nms_plugin_param\""));

    // An unknown enum value in a list drops only that element.
    let p: Parsed<caffe_tch::proto::caffe::V1LayerParameter> =
        parse_str("blob_share_mode: [PERMISSIVE, BOGUS, 1, 7] blob_share_mode: STRICT", "s", LENIENT).unwrap();
    assert_eq!(p.message.blob_share_mode, vec![1, 1, 0]);
    assert_eq!(p.warnings.len(), 2);
    assert_eq!((p.warnings[0].loc.line, p.warnings[0].loc.col), (1, 31));
    assert!(p.warnings[1].msg.contains("\"7\""), "{}", p.warnings[1]);
    // Syntax errors are still errors in lenient mode, also inside skipped blocks.
    assert!(parse_str::<NetParameter>("foo { bar: }", "x", LENIENT).is_err());
    assert!(parse_str::<NetParameter>("foo { bar: 1", "x", LENIENT).is_err());
    assert!(parse_str::<NetParameter>("foo: -abc", "x", LENIENT).is_err());
}

#[test]
fn solver_with_max_lr_parses_strictly() {
    let s: SolverParameter =
        parse("net: \"a.prototxt\"\nbase_lr: 0.01\nmax_lr: 0.1\nlr_policy: \"1cycle\"\nsolver_mode: GPU\n");
    assert_eq!(s.base_lr(), 0.01);
    assert_eq!(s.net(), "a.prototxt");
}

#[test]
fn read_file_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let missing = dir.join("missing.prototxt");
    match read_file::<NetParameter>(&missing, STRICT) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("missing.prototxt"), "{e}"),
        other => panic!("expected an I/O error, got {:?}", other.err()),
    }
    let bin = dir.join("bin.prototxt");
    std::fs::write(&bin, b"name: \"a\"\nlayer {\n  na\xffme: 1\n}").unwrap();
    match read_file::<NetParameter>(&bin, STRICT) {
        Err(Error::Parse { loc, msg }) => {
            assert_eq!((loc.line, loc.col), (3, 5));
            assert!(loc.file.ends_with("bin.prototxt"));
            assert!(msg.contains("invalid UTF-8 byte 0xff"), "{msg}");
        }
        other => panic!("expected a parse error, got {:?}", other.err()),
    }
    std::fs::write(&bin, b"name: \"\xc3\xa9\" \n\x00\x01\x02").unwrap();
    match read_file::<NetParameter>(&bin, STRICT) {
        Err(Error::Parse { loc, msg }) => {
            assert_eq!((loc.line, loc.col), (2, 1));
            assert!(msg.contains("NUL"), "{msg}");
        }
        other => panic!("expected a parse error, got {:?}", other.err()),
    }
    // A UTF-8 byte order mark is ignored.
    let ok = dir.join("ok.prototxt");
    std::fs::write(&ok, "\u{feff}name: \"a\"\n").unwrap();
    let p = read_file::<NetParameter>(&ok, STRICT).unwrap();
    assert_eq!(p.message.name(), "a");
    assert_eq!(p.source_map.file(), ok.display().to_string());
}

// ---------------------------------------------------------------------------
// Printer

#[test]
fn percent_g_formatting() {
    let cases: &[(f64, usize, &str)] = &[
        (0.0001, 6, "0.0001"),
        (1e-05, 6, "1e-05"),
        (1e-08, 6, "1e-08"),
        (100000.0, 6, "100000"),
        (1e6, 6, "1e+06"),
        (123456789.0, 6, "1.23457e+08"),
        (0.5, 6, "0.5"),
        (0.0, 6, "0"),
        (-0.0, 6, "-0"),
        (-2.5, 6, "-2.5"),
        (1e100, 6, "1e+100"),
        (1.5e-300, 6, "1.5e-300"),
        (999999.5, 6, "1e+06"),
        (99999.95, 6, "99999.9"), // binary value is slightly below the tie
        (0.00012345678, 6, "0.000123457"),
        (2.5, 1, "2"),
        (3.5, 1, "4"),
        (0.1, 17, "0.10000000000000001"),
        (1.0 / 3.0, 15, "0.333333333333333"),
    ];
    for &(v, p, want) in cases {
        assert_eq!(format_g(v, p), want, "%.{p}g of {v:e}");
    }
    assert_eq!(format_float(0.1), "0.1");
    assert_eq!(format_float(0.001), "0.001");
    assert_eq!(format_float(1e-4), "0.0001");
    assert_eq!(format_float(1e-8), "1e-08");
    assert_eq!(format_float(0.9), "0.9");
    assert_eq!(format_float(1.0), "1");
    assert_eq!(format_float(227.0), "227");
    assert_eq!(format_float(1e6), "1e+06");
    assert_eq!(format_float(16777217.0), "16777216");
    assert_eq!(format_float("0.123456789".parse().unwrap()), "0.123456791");
    assert_eq!(format_float(f32::MAX), "3.40282347e+38");
    assert_eq!(format_float(f32::INFINITY), "inf");
    assert_eq!(format_float(f32::NEG_INFINITY), "-inf");
    assert_eq!(format_float(f32::NAN), "nan");
    assert_eq!(format_double(0.1), "0.1");
    assert_eq!(format_double(1.0 / 3.0), "0.33333333333333331");
    assert_eq!(format_double(1e-300), "1e-300");
    assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
}

#[test]
fn printer_layout_and_escaping() {
    let text = "name: \"a\\\"b\\n\\001\\303\\251\"\nforce_backward: true\ninput_dim: 1\ninput_dim: -2\n\
        layer { name: \"c\" type: \"Pooling\" pooling_param { pool: AVE kernel_size: 3 } loss_weight: 0.5 loss_weight: 1e-5 propagate_down: false }\n\
        input: 'x'\n";
    let n = net(text);
    let out = to_text(&n);
    let want = "name: \"a\\\"b\\n\\001\\303\\251\"\ninput: \"x\"\ninput_dim: 1\ninput_dim: -2\nforce_backward: true\n\
        layer {\n  name: \"c\"\n  type: \"Pooling\"\n  loss_weight: 0.5\n  loss_weight: 1e-05\n  propagate_down: false\n  \
        pooling_param {\n    pool: AVE\n    kernel_size: 3\n  }\n}\n";
    assert_eq!(out, want);
    let d: Datum = parse("data: \"\\000\\t\\r'\\\\\\177~ \" channels: 1");
    assert_eq!(to_text(&d), "channels: 1\ndata: \"\\000\\t\\r\\'\\\\\\177~ \"\n");
    assert_eq!(to_text(&NetParameter::default()), "");
    let b: BlobProto = parse("double_data: 0.1 double_data: 1e+300 data: -inf data: nan shape { dim: 1 dim: -2 }");
    assert_eq!(
        to_text(&b),
        "data: -inf\ndata: nan\nshape {\n  dim: 1\n  dim: -2\n}\ndouble_data: 0.1\ndouble_data: 1e+300\n"
    );
}

#[test]
fn print_matches_caffe_byte_for_byte() {
    for path in fixtures() {
        let text = std::fs::read_to_string(&path).unwrap();
        let p = read_file::<NetParameter>(&path, STRICT).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.warnings.is_empty());
        assert!(!p.message.layer.is_empty(), "{}", path.display());
        let printed = to_text(&p.message);
        if printed != text {
            let line = printed.lines().zip(text.lines()).position(|(a, b)| a != b);
            panic!(
                "{}: printed text differs from Caffe's (first differing line {:?})",
                path.display(),
                line.map(|l| l + 1)
            );
        }
        // Through the dynamic path too.
        let d = parse_dynamic(&text, "x", &descriptor_of::<NetParameter>(), STRICT).unwrap();
        assert_eq!(to_text_dynamic(&d.message), text, "{}", path.display());
    }
}

/// Nets and solvers as Caffe logged them ("Initializing net/solver from parameters:"),
/// which protobuf printed the same way: they cover solver fields and many float values.
#[test]
fn print_matches_caffe_logged_params_byte_for_byte() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/text_format");
    let mut n = 0;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let printed = if name.starts_with("solver__") {
            to_text(&read_file::<SolverParameter>(&path, STRICT).unwrap_or_else(|e| panic!("{e}")).message)
        } else if name.starts_with("net__") {
            to_text(&read_file::<NetParameter>(&path, STRICT).unwrap_or_else(|e| panic!("{e}")).message)
        } else {
            continue;
        };
        if printed != text {
            let line = printed.lines().zip(text.lines()).position(|(a, b)| a != b);
            panic!("{name}: printed text differs from Caffe's (first differing line {:?})", line.map(|l| l + 1));
        }
        n += 1;
    }
    assert!(n >= 20, "expected the logged-parameter fixtures in {}", dir.display());
}

#[test]
fn parse_print_parse_is_identity() {
    use prost::Message;
    let mut texts: Vec<String> = fixtures().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    texts.push(
        "name: \"weird \\\\ \\' \\\" \\t\\001\\377\" \
         layer { name: \"x\" blobs { data: [0.1, 1e-30, 3.4e38, -0, 1.17549435e-38, 1e-45, 123456.789] double_data: [0.1, 1e-320, 2.5e300] shape { dim: [-9223372036854775808, 5] } } \
         param { lr_mult: 0.333333343 } propagate_down: [true, false] } state { phase: TEST level: -3 stage: \"s\" }"
            .replace("\\377", "\\303\\251"),
    );
    for text in &texts {
        let a = parse_dynamic(text, "x", &descriptor_of::<NetParameter>(), STRICT).unwrap().message;
        let printed = to_text_dynamic(&a);
        let b = parse_dynamic(&printed, "y", &descriptor_of::<NetParameter>(), STRICT)
            .unwrap_or_else(|e| panic!("reparse failed: {e}\n{printed}"))
            .message;
        assert_eq!(a.encode_to_vec(), b.encode_to_vec(), "{printed}");
        assert_eq!(to_text_dynamic(&b), printed);
    }
}

#[test]
fn every_float_bit_pattern_sample_round_trips() {
    // Deterministic sample of f32 bit patterns, including subnormals.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..20000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let f = f32::from_bits(x);
        if f.is_nan() {
            continue;
        }
        let s = format_float(f);
        let back: f32 = s.parse().unwrap_or_else(|_| panic!("{s}"));
        assert_eq!(back.to_bits(), f.to_bits(), "{f:e} printed as {s}");
        let d = f64::from_bits(((x as u64) << 32) | (x.rotate_left(7) as u64));
        if !d.is_nan() {
            let s = format_double(d);
            let back: f64 = s.parse().unwrap_or_else(|_| panic!("{s}"));
            assert_eq!(back.to_bits(), d.to_bits(), "{d:e} printed as {s}");
        }
    }
}

// ---------------------------------------------------------------------------
// Robustness

#[test]
fn no_panic_on_truncations_and_byte_flips() {
    let path = &fixtures()[0];
    let bytes = std::fs::read(path).unwrap();
    let desc = descriptor_of::<NetParameter>();
    let solver = pool().get_message_by_name("caffe.SolverParameter").unwrap();
    let mut errors = 0usize;
    // Every truncation.
    for n in 0..=bytes.len() {
        let t = String::from_utf8_lossy(&bytes[..n]);
        for opts in [STRICT, LENIENT] {
            if parse_dynamic(&t, "f", &desc, opts).is_err() {
                errors += 1;
            }
        }
    }
    // Deterministic byte flips and insertions.
    let specials = b"{}<>[]:;,\"'\\#-.0x9eEf \n\t\x00\xff";
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        s ^= s << 7;
        s ^= s >> 9;
        s
    };
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("fuzz.prototxt");
    for i in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..(1 + rnd() % 4) {
            let at = (rnd() as usize) % b.len();
            let c = if rnd() % 2 == 0 { specials[(rnd() as usize) % specials.len()] } else { rnd() as u8 };
            match rnd() % 3 {
                0 => b[at] = c,
                1 => b.insert(at, c),
                _ => {
                    b.remove(at);
                }
            }
        }
        let t = String::from_utf8_lossy(&b);
        let _ = parse_dynamic(&t, "f", &desc, STRICT);
        let _ = parse_dynamic(&t, "f", &desc, LENIENT);
        let _ = parse_dynamic(&t, "f", &solver, LENIENT);
        if i % 100 == 0 {
            std::fs::write(&tmp, &b).unwrap();
            let _ = read_file::<NetParameter>(&tmp, LENIENT);
        }
    }
    // Pathological nesting hits the depth limit instead of the stack.
    let deep = "foo { ".repeat(10000);
    assert!(parse_dynamic(&deep, "f", &desc, LENIENT).is_err());
    let deep = "layers { layer { ".repeat(5000);
    assert!(parse_dynamic(&deep, "f", &desc, STRICT).is_err());
    assert!(errors > bytes.len(), "most truncations must fail");
}

/// Found by fuzzing: a caffemodel can hold any number in an enum field (here
/// `include { phase: 80 }`); printed as `phase: 80`, the text did not parse
/// back. protobuf C++ keeps such a number among the unknown fields, so the
/// field is not printed at all.
#[test]
fn an_enum_number_the_schema_does_not_define_is_not_printed() {
    use caffe_tch::proto::caffe::NetStateRule;
    let net = NetParameter {
        name: Some("n".into()),
        layer: vec![LayerParameter {
            name: Some("l".into()),
            include: vec![NetStateRule { phase: Some(80), min_level: Some(2), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let printed = to_text(&net);
    assert_eq!(printed, "name: \"n\"\nlayer {\n  name: \"l\"\n  include {\n    min_level: 2\n  }\n}\n");
    parse_str::<NetParameter>(&printed, "printed", TextOptions::default()).expect("parses back");
}
