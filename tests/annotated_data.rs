//! The SSD fork's AnnotatedData layer (`src/layers/data/annotated_data.rs`,
//! augmentation in `augment.rs`) on LMDBs of AnnotatedDatum records written
//! here: pixels and boxes as stored, boxes that follow the pixels through
//! expansion, random crops, mirror and resizes, OpenCV's HSV arithmetic, the
//! JPEG saves between steps for encoded records, and the errors.
use std::path::Path;

use caffe_tch::data::db::{Backend, DbWriter};
use caffe_tch::layers::data::augment::{bgr_to_hsv, hsv_to_bgr};
use caffe_tch::net::Net;
use caffe_tch::proto::caffe::annotated_datum::AnnotationType;
use caffe_tch::proto::caffe::{AnnotatedDatum, Annotation, AnnotationGroup, Datum, NormalizedBBox, Phase};
use prost::Message;

use crate::common;
use crate::common::values_f32;

/// A boxed object: label, and the box in pixels [x0, y0, x1, y1) of the image.
type PixelBox = (i32, [usize; 4]);

/// A C×H×W image of `background` with each box painted `200 + 10·k`, and
/// its record with the boxes normalized.
fn record(c: usize, h: usize, w: usize, background: u8, boxes: &[PixelBox], typed: bool) -> Vec<u8> {
    let mut data = vec![background; c * h * w];
    for (k, (_, [x0, y0, x1, y1])) in boxes.iter().enumerate() {
        for ch in 0..c {
            for y in *y0..*y1 {
                for x in *x0..*x1 {
                    data[(ch * h + y) * w + x] = 200 + 10 * k as u8;
                }
            }
        }
    }
    let group = |(k, (label, b)): (usize, &PixelBox)| AnnotationGroup {
        group_label: Some(*label),
        annotation: vec![Annotation {
            instance_id: Some(k as i32),
            bbox: Some(NormalizedBBox {
                xmin: Some(b[0] as f32 / w as f32),
                ymin: Some(b[1] as f32 / h as f32),
                xmax: Some(b[2] as f32 / w as f32),
                ymax: Some(b[3] as f32 / h as f32),
                difficult: Some(k == 1),
                ..Default::default()
            }),
        }],
    };
    AnnotatedDatum {
        datum: Some(Datum {
            channels: Some(c as i32),
            height: Some(h as i32),
            width: Some(w as i32),
            data: Some(data),
            label: Some(7),
            ..Default::default()
        }),
        r#type: typed.then_some(AnnotationType::Bbox as i32),
        annotation_group: boxes.iter().enumerate().map(group).collect(),
    }
    .encode_to_vec()
}

fn write_db(path: &Path, records: &[Vec<u8>]) {
    let mut db = DbWriter::create(path, Backend::Lmdb).expect("create db");
    for (i, r) in records.iter().enumerate() {
        db.put(format!("{i:08}").as_bytes(), r);
    }
    db.finish().expect("finish db");
}

fn net(source: &Path, batch: usize, extra: &str, phase: Phase) -> caffe_tch::Result<Net> {
    let text = format!(
        r#"name: "ssd_data" layer {{ name: "data" type: "AnnotatedData" top: "data" top: "label"
            data_param {{ source: "{}" batch_size: {batch} backend: LMDB }} {extra} }}"#,
        source.display()
    );
    common::net(&text, "train.prototxt", phase)
}

fn forward(net: &mut Net) -> (Vec<i64>, Vec<f32>, Vec<f32>) {
    net.forward().expect("forward");
    let data = net.blob("data").unwrap().shallow_clone();
    let label = net.blob("label").unwrap().shallow_clone();
    (data.size(), values_f32(&data), values_f32(&label))
}

#[test]
fn annotated_data_gives_pixels_and_box_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("boxes_lmdb");
    write_db(
        &db,
        &[
            record(3, 8, 12, 10, &[(1, [0, 0, 4, 4]), (2, [6, 2, 12, 8])], true),
            record(3, 8, 12, 20, &[], true),
            record(3, 8, 12, 30, &[(3, [2, 2, 6, 6])], true),
        ],
    );
    let mut n = net(&db, 2, "", Phase::Train).unwrap();
    let (shape, data, label) = forward(&mut n);
    assert_eq!(shape, vec![2, 3, 8, 12]);
    assert_eq!(data[8 * 12 - 1], 200.0 + 10.0, "the second box's corner pixel");
    assert_eq!(data[3 * 8 * 12], 20.0, "the second image's background");
    #[rustfmt::skip]
    let want = [
        0.0, 1.0, 0.0, 0.0, 0.0, 4.0 / 12.0, 0.5, 0.0,
        0.0, 2.0, 1.0, 0.5, 0.25, 1.0, 1.0, 1.0,
    ];
    assert_eq!(label.len(), 16);
    for (g, w) in label.iter().zip(want) {
        assert!((g - w as f32).abs() < 1e-6, "{label:?}");
    }
    // Record 2, then record 0 again: rows name their image in the batch.
    let (_, _, label) = forward(&mut n);
    assert_eq!(label.len(), 24);
    assert_eq!(&label[..3], &[0.0, 3.0, 0.0]);
    assert_eq!(&label[8..10], &[1.0, 1.0]);
    // A batch with no box at all has one row of -1.
    let mut n = net(&db, 1, "", Phase::Train).unwrap();
    forward(&mut n);
    let (_, _, label) = forward(&mut n);
    assert_eq!(label, vec![-1.0; 8]);
    // Records without a type give the Datum's label per image.
    let plain = dir.path().join("plain_lmdb");
    write_db(&plain, &[record(1, 4, 4, 5, &[(1, [0, 0, 2, 2])], false)]);
    let mut n = net(&plain, 2, "", Phase::Train).unwrap();
    let (_, _, label) = forward(&mut n);
    assert_eq!(label, vec![7.0, 7.0]);
}

/// The painted pixels' extent in an output image, in pixels [x0, y0, x1, y1).
fn painted(data: &[f32], h: usize, w: usize, value: f32) -> Option<[f32; 4]> {
    let mut b: Option<[f32; 4]> = None;
    for y in 0..h {
        for x in 0..w {
            if (data[y * w + x] - value).abs() < 0.5 {
                let e = b.get_or_insert([x as f32, y as f32, x as f32 + 1.0, y as f32 + 1.0]);
                *e = [e[0].min(x as f32), e[1].min(y as f32), e[2].max(x as f32 + 1.0), e[3].max(y as f32 + 1.0)];
            }
        }
    }
    b
}

#[test]
fn boxes_follow_the_pixels_through_expansion_crops_mirror_and_resize() {
    let _rng = common::rng_exclusive();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("paint_lmdb");
    write_db(
        &db,
        &[
            record(1, 40, 60, 100, &[(1, [12, 8, 30, 26])], true),
            record(1, 40, 60, 100, &[(2, [33, 14, 57, 37])], true),
        ],
    );
    // SSD's own augmentation, with NEAREST resizing so painted pixels stay exact.
    let extra = r#"
        transform_param { mirror: true mean_value: 0
          resize_param { prob: 1 resize_mode: WARP height: 30 width: 30 interp_mode: NEAREST }
          emit_constraint { emit_type: CENTER }
          expand_param { prob: 0.5 max_expand_ratio: 3.0 } }
        annotated_data_param {
          batch_sampler { max_sample: 1 max_trials: 1 }
          batch_sampler { sampler { min_scale: 0.3 max_scale: 1.0 min_aspect_ratio: 0.5 max_aspect_ratio: 2.0 }
            sample_constraint { min_jaccard_overlap: 0.1 } max_sample: 1 max_trials: 50 }
          batch_sampler { sampler { min_scale: 0.3 max_scale: 1.0 min_aspect_ratio: 0.5 max_aspect_ratio: 2.0 }
            sample_constraint { max_jaccard_overlap: 1.0 } max_sample: 1 max_trials: 50 } }"#;
    let mut n = net(&db, 2, extra, Phase::Train).unwrap();
    let (mut rows_seen, mut expanded) = (0, 0);
    for _ in 0..40 {
        let (shape, data, label) = forward(&mut n);
        assert_eq!(shape, vec![2, 1, 30, 30]);
        for row in label.chunks_exact(8).filter(|r| r[0] >= 0.0) {
            let (item, k) = (row[0] as usize, row[2] as usize);
            let value = 200.0 + 10.0 * k as f32;
            let img = &data[item * 900..(item + 1) * 900];
            let want = [row[3] * 30.0, row[4] * 30.0, row[5] * 30.0, row[6] * 30.0];
            let got = painted(img, 30, 30, value).unwrap_or_else(|| panic!("row {row:?}: no painted pixel"));
            for (g, w) in got.iter().zip(want) {
                // Nearest resizing moves an edge by up to one output pixel.
                assert!((g - w).abs() <= 1.01, "row {row:?}: box {want:?} vs painted {got:?}");
            }
            rows_seen += 1;
            expanded += usize::from(img.contains(&0.0));
        }
    }
    assert!(rows_seen > 40, "rows {rows_seen}");
    assert!(expanded > 0, "no expansion seen");
}

#[test]
fn resize_modes_place_the_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wide_lmdb");
    write_db(&db, &[record(1, 10, 20, 100, &[(1, [0, 0, 10, 10])], true)]);
    // FIT_LARGE_SIZE_AND_PAD: 10×20 into 20×20 is 10×20 padded 5 above and below.
    let extra = r#"transform_param { resize_param { resize_mode: FIT_LARGE_SIZE_AND_PAD height: 20 width: 20
        pad_value: 7 interp_mode: NEAREST } }"#;
    let mut n = net(&db, 1, extra, Phase::Test).unwrap();
    let (shape, data, label) = forward(&mut n);
    assert_eq!(shape, vec![1, 1, 20, 20]);
    assert_eq!(&data[..20], &[7.0; 20]);
    assert_eq!(data[5 * 20], 200.0);
    let want = [0.0, 0.25, 0.5, 0.75];
    for (g, w) in label[3..7].iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{label:?}");
    }
    // WARP to 5×5 with a centred 3×3 crop in TEST.
    let extra = "transform_param { crop_size: 3 resize_param { height: 5 width: 5 interp_mode: NEAREST } }";
    let mut n = net(&db, 1, extra, Phase::Test).unwrap();
    let (shape, _, label) = forward(&mut n);
    assert_eq!(shape, vec![1, 1, 3, 3]);
    // The box covers x < 0.5 of the image: columns 1..2.5 of the crop at 1..4.
    let want = [0.0, 0.0, 1.5 / 3.0, 1.0];
    for (g, w) in label[3..7].iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{label:?}");
    }
}

/// For an encoded record the fork saves the image as a JPEG after each step
/// that changes it (DistortImage, ExpandImage, CropImage re-encode with
/// OpenCV's imencode) and decodes it again: the layer's pixels are the
/// distorted image through OpenCV's JPEG encoder and decoder, where a raw
/// record's are the distorted image itself. A fixed contrast (lower = upper)
/// makes the distortion the same in both runs.
#[test]
fn encoded_records_are_saved_as_jpeg_between_steps_as_the_fork_does() {
    use caffe_tch::data::image::{self as img, ColorMode};
    let dir = tempfile::tempdir().unwrap();
    let raw_record = record(3, 24, 32, 60, &[(1, [4, 4, 14, 12]), (2, [18, 10, 30, 22])], true);
    let mut encoded = AnnotatedDatum::decode(raw_record.as_slice()).unwrap();
    let d = encoded.datum.take().unwrap();
    let pixels = img::Image { channels: 3, height: 24, width: 32, data: d.data.clone().unwrap() };
    encoded.datum = Some(Datum {
        data: Some(img::encode(&pixels, "png").unwrap()),
        encoded: Some(true),
        label: d.label,
        ..Default::default()
    });
    let (raw_db, enc_db) = (dir.path().join("raw_lmdb"), dir.path().join("enc_lmdb"));
    write_db(&raw_db, &[raw_record]);
    write_db(&enc_db, &[encoded.encode_to_vec()]);
    let distort = "transform_param { distort_param { contrast_prob: 1 contrast_lower: 1.5 contrast_upper: 1.5 } }";
    let (_, raw, _) = forward(&mut net(&raw_db, 1, distort, Phase::Train).unwrap());
    let (_, enc, _) = forward(&mut net(&enc_db, 1, distort, Phase::Train).unwrap());
    let distorted = img::Image { channels: 3, height: 24, width: 32, data: raw.iter().map(|&v| v as u8).collect() };
    assert_eq!(distorted.data.iter().filter(|&&v| v == 90).count(), 3 * (24 * 32 - 80 - 144), "contrast 1.5 on 60");
    let resaved = img::decode(&img::encode(&distorted, "jpg").unwrap(), ColorMode::Native).unwrap();
    assert_eq!(enc, values_f32_of(&resaved));
    assert_ne!(enc, raw, "the JPEG between steps loses something");
    // Without distortion (nor expansion or crops) the image is never resaved.
    let (_, plain, _) = forward(&mut net(&enc_db, 1, "", Phase::Train).unwrap());
    assert_eq!(plain, values_f32_of(&pixels));
}

fn values_f32_of(image: &caffe_tch::data::image::Image) -> Vec<f32> {
    image.data.iter().map(|&v| f32::from(v)).collect()
}

#[test]
fn hsv_arithmetic_is_opencvs() {
    // Values from OpenCV 4.14's cvtColor (COLOR_BGR2HSV / COLOR_HSV2BGR, 8 bits)
    // on single pixels: its scalar path, which rounds (its vectorized path,
    // used on wide images, truncates the HSV→BGR result instead).
    assert_eq!(bgr_to_hsv(0, 0, 255), [0, 255, 255]);
    assert_eq!(bgr_to_hsv(0, 255, 0), [60, 255, 255]);
    assert_eq!(bgr_to_hsv(255, 0, 0), [120, 255, 255]);
    assert_eq!(bgr_to_hsv(90, 90, 90), [0, 0, 90]);
    assert_eq!(bgr_to_hsv(10, 100, 200), [14, 242, 200]);
    assert_eq!(hsv_to_bgr(14, 242, 200), [10, 99, 200]);
    assert_eq!(hsv_to_bgr(172, 58, 128), [107, 99, 128]);
    assert_eq!(hsv_to_bgr(14, 215, 38), [6, 21, 38]);
    assert_eq!(hsv_to_bgr(0, 0, 90), [90, 90, 90]);
    // A hue pushed past 180 wraps once.
    assert_eq!(hsv_to_bgr(200, 255, 255), hsv_to_bgr(20, 255, 255));
    // Round trips stay within a level or two for every grey and primary mix.
    for b in (0..=255).step_by(51) {
        for g in (0..=255).step_by(51) {
            for r in (0..=255).step_by(51) {
                let hsv = bgr_to_hsv(b, g, r);
                let back = hsv_to_bgr(hsv[0], hsv[1], hsv[2]);
                for (x, y) in [b, g, r].iter().zip(back) {
                    assert!((*x as i32 - y as i32).abs() <= 3, "{:?} → {hsv:?} → {back:?}", [b, g, r]);
                }
            }
        }
    }
}

#[test]
fn annotated_data_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e_lmdb");
    write_db(&db, &[record(1, 8, 8, 0, &[], true), record(1, 6, 8, 0, &[], true)]);
    let err = |extra: &str, batch: usize| match net(&db, batch, extra, Phase::Train) {
        Err(e) => e.to_string(),
        Ok(mut n) => match n.forward() {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{extra}: expected an error"),
        },
    };
    let e = err("transform_param { noise_param { prob: 0.5 } }", 1);
    assert!(e.contains("noise_param (OpenCV's noise effects) is not supported"), "{e}");
    let e = err("transform_param { resize_param { resize_mode: FIT_SMALL_SIZE height: 4 width: 4 } }", 2);
    assert!(e.contains("Only support batch size of 1 for FIT_SMALL_SIZE"), "{e}");
    let e = err("annotated_data_param { batch_sampler { sampler { min_scale: 0 } } }", 1);
    assert!(e.contains("batch_sampler 0: need 0 < min_scale"), "{e}");
    let e = err("transform_param { distort_param { contrast_lower: 2 contrast_upper: 1 } }", 1);
    assert!(e.contains("contrast_lower must be non-negative and at most contrast_upper"), "{e}");
    // A zoom-out past the memory limit is an error, not an allocation.
    let e = err("transform_param { expand_param { prob: 1 max_expand_ratio: 1e12 } }", 1);
    assert!(e.contains("an expanded image"), "{e}");
    // Images of two sizes with no resize cannot share a batch.
    let e = err("", 2);
    assert!(e.contains("images in one batch must share a size") && e.contains("record '00000001'"), "{e}");
    // A Datum is not an AnnotatedDatum.
    let bad = dir.path().join("bad_lmdb");
    write_db(&bad, &[vec![0x0a, 0x05, 0x08]]);
    let e = match net(&bad, 1, "", Phase::Train) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error"),
    };
    assert!(e.contains("record '00000000'") && e.contains("not a valid AnnotatedDatum"), "{e}");
}

/// A stored box: instance, corners, difficult.
type StoredBox = (i32, [f32; 4], bool);

/// The SSD fork's data preparation through the `caffe` binary: `get_image_size`
/// and `convert_annoset` on a VOC-style folder (PNG images, XML annotations,
/// a label map), then AnnotatedData reading what it wrote.
#[test]
fn convert_annoset_writes_what_annotated_data_reads() {
    use caffe_tch::data::db::RecordReader;
    use caffe_tch::data::image::{encode, Image};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["JPEGImages", "Annotations"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    let image = |h: usize, w: usize, v: u8| Image { channels: 3, height: h, width: w, data: vec![v; 3 * h * w] };
    std::fs::write(root.join("JPEGImages/000001.png"), encode(&image(20, 40, 50), "png").unwrap()).unwrap();
    std::fs::write(root.join("JPEGImages/000002.png"), encode(&image(10, 10, 90), "png").unwrap()).unwrap();
    let object = |name: &str, difficult: u8, b: [u32; 4]| {
        format!(
            "<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{difficult}</difficult>\
             <bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
            b[0], b[1], b[2], b[3]
        )
    };
    let xml = format!(
        "<annotation><folder>VOC2007</folder><filename>000001.jpg</filename>\
         <size><width>40</width><height>20</height><depth>3</depth></size>{}{}{}</annotation>",
        object("dog", 0, [4, 2, 20, 10]),
        object("cat", 1, [0, 0, 40, 20]),
        object("dog", 0, [30, 10, 36, 18])
    );
    std::fs::write(root.join("Annotations/000001.xml"), xml).unwrap();
    std::fs::write(
        root.join("labelmap.prototxt"),
        "item { name: 'none_of_the_above' label: 0 display_name: 'background' }\n\
         item { name: 'cat' label: 1 display_name: 'cat' }\nitem { name: 'dog' label: 2 display_name: 'dog' }\n",
    )
    .unwrap();
    // The second image has no annotation file: no boxes, as in the fork.
    std::fs::write(
        root.join("trainval.txt"),
        "JPEGImages/000001.png Annotations/000001.xml\nJPEGImages/000002.png Annotations/000002.xml\n",
    )
    .unwrap();
    let caffe = |args: &[String]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caffe")).args(args).output().expect("spawn caffe");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let p = |rel: &str| root.join(rel).display().to_string();
    let root_arg = format!("{}/", root.display());
    let (ok, log) = caffe(&["get_image_size".into(), root_arg.clone(), p("trainval.txt"), p("test_name_size.txt")]);
    assert!(ok, "{log}");
    assert_eq!(std::fs::read_to_string(root.join("test_name_size.txt")).unwrap(), "000001 20 40\n000002 10 10\n");
    let db = p("trainval_lmdb");
    let mut args: Vec<String> = ["convert_annoset", "-anno_type", "detection", "-label_type", "xml", "-check_label"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "-label_map_file".into(),
        p("labelmap.prototxt"),
        "-encoded".into(),
        "-encode_type".into(),
        "png".into(),
    ]);
    args.extend([root_arg.clone(), p("trainval.txt"), db.clone()]);
    let (ok, log) = caffe(&args);
    assert!(ok && log.contains("Processed 2 files."), "{log}");
    let reader = RecordReader::open(Path::new(&db), Backend::Lmdb).unwrap();
    assert_eq!(String::from_utf8_lossy(reader.key()), "00000000_JPEGImages/000001.png");
    let record = AnnotatedDatum::decode(reader.value()).unwrap();
    let d = record.datum.as_ref().unwrap();
    assert!(d.encoded() && (d.height(), d.width(), d.channels()) == (20, 40, 3));
    assert_eq!(record.r#type, Some(AnnotationType::Bbox as i32));
    // Groups by label in order of first appearance; instances counted per group.
    let groups: Vec<(i32, Vec<StoredBox>)> = record
        .annotation_group
        .iter()
        .map(|g| {
            let boxes = g
                .annotation
                .iter()
                .map(|a| {
                    let b = a.bbox.unwrap();
                    (a.instance_id(), [b.xmin(), b.ymin(), b.xmax(), b.ymax()], b.difficult())
                })
                .collect();
            (g.group_label(), boxes)
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            (2, vec![(0, [0.1, 0.1, 0.5, 0.5], false), (1, [0.75, 0.5, 0.9, 0.9], false)]),
            (1, vec![(0, [0.0, 0.0, 1.0, 1.0], true)]),
        ]
    );
    drop(reader);
    // AnnotatedData reads it: the rows of image 0, then none for image 1.
    let mut n =
        net(Path::new(&db), 2, "transform_param { resize_param { height: 20 width: 20 } }", Phase::Test).unwrap();
    let (shape, data, label) = forward(&mut n);
    assert_eq!(shape, vec![2, 3, 20, 20]);
    assert_eq!((data[0], data[3 * 400]), (50.0, 90.0));
    let rows: Vec<Vec<f32>> = label.chunks(8).map(|r| r.to_vec()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[1][..3], &[0.0, 2.0, 1.0]);
    assert_eq!(&rows[2][..3], &[0.0, 1.0, 0.0]);
    assert_eq!(rows[2][7], 1.0);
    // A name the label map lacks is an error naming the file.
    std::fs::write(
        root.join("Annotations/000002.xml"),
        "<annotation>".to_string() + &object("horse", 0, [0, 0, 5, 5]) + "</annotation>",
    )
    .unwrap();
    let bad = p("bad_lmdb");
    let n = args.len();
    args[n - 1] = bad;
    let (ok, log) = caffe(&args);
    assert!(!ok && log.contains("000002.xml: Unknown name: horse"), "{log}");
}

/// COCO's per-image JSON files through `convert_annoset -label_type json`
/// (category ids named in the label map, [x, y, width, height] boxes,
/// iscrowd as difficult), with the fork's -min_dim/-max_dim scaling, whose
/// pixels are OpenCV's `resize(img, None, fx=s, fy=s)` within a level.
#[test]
fn convert_annoset_reads_coco_json_and_scales_by_min_and_max_dim() {
    use caffe_tch::data::db::RecordReader;
    use caffe_tch::data::image::{encode, Image};
    let py = caffe_tch::export::verify::python();
    match std::process::Command::new(&py).args(["-c", "import cv2, numpy"]).output() {
        Ok(o) if o.status.success() => {}
        _ => skip!("{} cannot import cv2 (make installs opencv-python-headless into .venv)", py.display()),
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A 20 × 40 image with structure in every channel, so the interpolation shows.
    let (h, w) = (20usize, 40usize);
    let data: Vec<u8> = (0..3 * h * w).map(|i| ((i * 37 + (i / w) * 11) % 251) as u8).collect();
    let img = Image { channels: 3, height: h, width: w, data };
    std::fs::write(root.join("a.png"), encode(&img, "png").unwrap()).unwrap();
    std::fs::write(
        root.join("a.json"),
        r#"{"image": {"file_name": "a.png", "height": 20, "width": 40, "id": 7},
            "annotation": [{"category_id": 18, "bbox": [4, 2, 16, 8], "iscrowd": 0, "area": 128},
                           {"category_id": 1, "bbox": [0.5, 0, 10, 20], "iscrowd": 1},
                           {"category_id": 18, "bbox": [30, 10, 6, 8]}]}"#,
    )
    .unwrap();
    std::fs::write(
        root.join("labelmap_coco.prototxt"),
        "item { name: 'none_of_the_above' label: 0 }\nitem { name: '1' label: 1 display_name: 'person' }\n\
         item { name: '18' label: 17 display_name: 'dog' }\n",
    )
    .unwrap();
    std::fs::write(root.join("list.txt"), "a.png a.json\n").unwrap();
    let p = |rel: &str| root.join(rel).display().to_string();
    let run = |extra: &[&str], db: &str| {
        let mut args: Vec<String> = ["convert_annoset", "-anno_type", "detection", "-label_type", "json"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        args.extend(["-label_map_file".into(), p("labelmap_coco.prototxt")]);
        args.extend([format!("{}/", root.display()), p("list.txt"), p(db)]);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caffe")).args(&args).output().expect("spawn caffe");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    // min_dim 30 scales by 1.5, which would make the long side 60 > max_dim 50: 50/40 instead.
    let (ok, log) = run(&["-min_dim", "30", "-max_dim", "50"], "coco_lmdb");
    assert!(ok, "{log}");
    let reader = RecordReader::open(&root.join("coco_lmdb"), Backend::Lmdb).unwrap();
    let record = AnnotatedDatum::decode(reader.value()).unwrap();
    let d = record.datum.clone().unwrap();
    assert_eq!((d.channels(), d.height(), d.width()), (3, 25, 50));
    let groups: Vec<(i32, Vec<StoredBox>)> = record
        .annotation_group
        .iter()
        .map(|g| {
            let boxes = g
                .annotation
                .iter()
                .map(|a| {
                    let b = a.bbox.unwrap();
                    (a.instance_id(), [b.xmin(), b.ymin(), b.xmax(), b.ymax()], b.difficult())
                })
                .collect();
            (g.group_label(), boxes)
        })
        .collect();
    // Normalized to the original 40 × 20 image, whatever the stored size.
    assert_eq!(
        groups,
        vec![
            (17, vec![(0, [0.1, 0.1, 0.5, 0.5], false), (1, [0.75, 0.5, 0.9, 0.9], false)]),
            (1, vec![(0, [0.5 / 40.0, 0.0, 10.5 / 40.0, 1.0], true)]),
        ]
    );
    drop(reader);
    // The pixels against OpenCV's.
    let npy = root.join("cv.npy");
    let script = format!(
        "import cv2, numpy as np\nimg = cv2.imread({:?}, cv2.IMREAD_COLOR)\n\
         s = float(np.float32(50) / np.float32(40))\n\
         np.save({:?}, cv2.resize(img, None, fx=s, fy=s).transpose(2, 0, 1).astype(np.float32))\n",
        p("a.png"),
        npy.display().to_string()
    );
    let out = std::process::Command::new(&py).args(["-c", &script]).output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = common::read_npy(&npy);
    assert_eq!(want.size(), [3, 25, 50]);
    let want = values_f32(&want);
    let got = d.data();
    let worst = got.iter().zip(&want).map(|(&g, &c)| (g as f32 - c).abs()).fold(0f32, f32::max);
    assert!(worst <= 1.0, "max |ours - OpenCV| = {worst} levels");
    // An image already past min_dim and within max_dim is stored as it is.
    let (ok, log) = run(&["-min_dim", "10", "-max_dim", "100"], "same_lmdb");
    assert!(ok, "{log}");
    let reader = RecordReader::open(&root.join("same_lmdb"), Backend::Lmdb).unwrap();
    let d = AnnotatedDatum::decode(reader.value()).unwrap().datum.unwrap();
    assert_eq!((d.height(), d.width()), (20, 40));
    assert_eq!(d.data(), img.data.as_slice());
    drop(reader);
    // A category the label map lacks, and a malformed box, are errors naming the file.
    std::fs::write(root.join("a.json"), r#"{"annotation": [{"category_id": 5, "bbox": [0, 0, 1, 1]}]}"#).unwrap();
    let (ok, log) = run(&[], "bad_lmdb");
    assert!(!ok && log.contains("a.json: Unknown name: 5"), "{log}");
    std::fs::write(root.join("a.json"), r#"{"annotation": [{"category_id": 1, "bbox": [0, 0, 1]}]}"#).unwrap();
    let (ok, log) = run(&[], "bad2_lmdb");
    assert!(!ok && log.contains("a.json: annotation 0: bbox must be 4 numbers"), "{log}");
    std::fs::write(root.join("a.json"), "{\"annotation\": [\n  {\"category_id\": 1,,}]}").unwrap();
    let (ok, log) = run(&[], "bad3_lmdb");
    assert!(!ok && log.contains("a.json:2:") && log.contains("not JSON"), "{log}");
    assert!(!root.join("bad3_lmdb").exists(), "a failed conversion leaves no DB");
}
