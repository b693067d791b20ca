//! The WindowData layer (R-CNN fine-tuning data) on two small PNG images and a
//! window file made here: foreground/background counts and labels per batch,
//! warp geometry against a direct crop+resize with src/data/image.rs, context
//! padding and square mode, mirror, mean and scale, image caching, and
//! one-line errors.
use std::path::{Path, PathBuf};

use caffe_tch::data::image::{self as img, ColorMode, Image};
use caffe_tch::layers::data::window_data::{plan_window, read_window_file, WarpPlan, Window};
use caffe_tch::layers::{create_layer, Layer};
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::Phase;
use tch::{Kind, Tensor};

use crate::common::layer::{ctx, lp};
use crate::common::{assert_one_line_error, net, rng_exclusive, rng_shared, values_f32 as values};

// ------------------------------------------------------------------- helpers

/// Two colour images (32×24 and 40×30) and a window file over them:
/// fg windows of classes 1 and 3, two bg windows, one in-between window
/// (overlap 0.4, dropped with bg_threshold 0.3).
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    windows: PathBuf,
}

const WINDOWS: &str = "# 0\nimg0.png\n3\n24\n32\n3\n1 0.9 4 2 19 13\n0 0.1 0 0 10 10\n2 0.4 1 1 5 5\n# 1\nimg1.png\n3 30 40\n2\n3 0.7 5 5 30 25\n0 0.2 10 10 39 29\n";

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    image::RgbImage::from_fn(32, 24, |x, y| image::Rgb([(x * 7 + y) as u8, (y * 9 + 5) as u8, ((x * y) % 251) as u8]))
        .save(dir.join("img0.png"))
        .unwrap();
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(200 - x * 3) as u8, (x + y * 4) as u8, ((x ^ y) * 5) as u8]))
        .save(dir.join("img1.png"))
        .unwrap();
    let windows = dir.join("windows.txt");
    std::fs::write(&windows, WINDOWS).unwrap();
    Fixture { _tmp: tmp, dir, windows }
}

fn layer_text(f: &Fixture, window_param: &str, transform: &str) -> String {
    format!(
        r#"name: "windows" type: "WindowData" top: "data" top: "label"
           window_data_param {{ source: "{}" root_folder: "{}/" bg_threshold: 0.3 {window_param} }}
           transform_param {{ {transform} }}"#,
        f.windows.display(),
        f.dir.display()
    )
}

/// Creates and sets up a layer, seeding libtorch's generator first when asked
/// (layers draw their own generator's seed from libtorch's): a seeded test
/// holds `rng_exclusive`, any other `rng_shared`.
fn setup_seeded(text: &str, seed: Option<i64>) -> Box<dyn Layer> {
    if let Some(seed) = seed {
        tch::manual_seed(seed);
    }
    let mut l = create_layer(&lp(text)).unwrap_or_else(|e| panic!("{e}"));
    l.setup(&[]).unwrap_or_else(|e| panic!("{e}"));
    l
}

fn setup(text: &str) -> Box<dyn Layer> {
    setup_seeded(text, None)
}

fn forward(l: &mut Box<dyn Layer>) -> (Tensor, Vec<f32>) {
    let tops = l.forward(&ctx(Phase::Train), &[], &[]).unwrap_or_else(|e| panic!("{e}"));
    let labels = Vec::<f32>::try_from(tops[1].to_kind(Kind::Float)).unwrap();
    (tops[0].shallow_clone(), labels)
}

fn load(path: &Path) -> Image {
    img::decode(&std::fs::read(path).unwrap(), ColorMode::Color).unwrap()
}

/// The inclusive region x1..=x2 × y1..=y2, cut by hand (BGR planes).
fn cut(im: &Image, x1: usize, y1: usize, x2: usize, y2: usize) -> Image {
    let mut data = Vec::new();
    for c in 0..im.channels {
        for y in y1..=y2 {
            for x in x1..=x2 {
                data.push(im.data[(c * im.height + y) * im.width + x]);
            }
        }
    }
    Image { channels: im.channels, height: y2 - y1 + 1, width: x2 - x1 + 1, data }
}

/// A crop×crop×3 item: `warped` placed at (pad_h, pad_w), optionally mirrored, zeros elsewhere.
fn placed(
    warped: &Image,
    crop: usize,
    pad_h: usize,
    pad_w: usize,
    mirror: bool,
    f: impl Fn(usize, f32) -> f32,
) -> Vec<f32> {
    let mut out = vec![0f32; 3 * crop * crop];
    let (h, w) = (warped.height, warped.width);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let sx = if mirror { w - 1 - x } else { x };
                out[(c * crop + y + pad_h) * crop + x + pad_w] = f(c, warped.data[(c * h + y) * w + sx] as f32);
            }
        }
    }
    out
}

// ------------------------------------------------------------------- tests

#[test]
fn window_file_splits_foreground_and_background() {
    let f = fixture();
    let wf = read_window_file(&f.windows.display().to_string(), "root/", 0.5, 0.3).unwrap();
    assert_eq!(wf.images.len(), 2);
    assert_eq!(wf.images[1].path, "root/img1.png");
    assert_eq!(wf.images[1].declared, [3, 30, 40]);
    let fg: Vec<(usize, i32)> = wf.fg.iter().map(|w| (w.image, w.label)).collect();
    assert_eq!(fg, vec![(0, 1), (1, 3)]);
    assert_eq!(wf.fg[1], Window { image: 1, label: 3, overlap: 0.7, x1: 5, y1: 5, x2: 30, y2: 25 });
    assert_eq!(wf.bg.len(), 2, "the 0.4-overlap window falls between the thresholds and is dropped");
    assert!(wf.bg.iter().all(|w| w.label == 0 && w.overlap == 0.0));
    assert_eq!(wf.class_counts.iter().map(|(&k, &v)| (k, v)).collect::<Vec<_>>(), vec![(0, 2), (1, 1), (3, 1)]);
    // With bg_threshold 0.5 (Caffe's default) the in-between window becomes background.
    let wf = read_window_file(&f.windows.display().to_string(), "", 0.5, 0.5).unwrap();
    assert_eq!(wf.bg.len(), 3);
}

#[test]
fn batches_hold_fg_fraction_foreground_after_background() {
    let _rng = rng_exclusive(); // seeded layers: the same draws every run
    let f = fixture();
    // 8 × 0.25 = 2 foreground windows per batch, after 6 background ones.
    let mut l = setup_seeded(&layer_text(&f, "batch_size: 8", "crop_size: 6 mirror: true"), Some(3));
    let mut fg_classes = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let (data, labels) = forward(&mut l);
        assert_eq!(data.size(), vec![8, 3, 6, 6]);
        assert_eq!(labels.len(), 8);
        assert!(labels[..6].iter().all(|&l| l == 0.0), "{labels:?}");
        assert!(labels[6..].iter().all(|&l| l == 1.0 || l == 3.0), "{labels:?}");
        fg_classes.extend(labels[6..].iter().map(|&l| l as i32));
    }
    assert_eq!(fg_classes.into_iter().collect::<Vec<_>>(), vec![1, 3], "both foreground windows are drawn");

    // ⌊5 × 0.5⌋ = 2 foreground; fg_fraction 1 is all foreground, 0 all background.
    for (batch, frac, want_fg) in [(5, 0.5, 2), (4, 1.0, 4), (3, 0.0, 0)] {
        let mut l = setup(&layer_text(&f, &format!("batch_size: {batch} fg_fraction: {frac}"), "crop_size: 4"));
        let (_, labels) = forward(&mut l);
        let n_fg = labels.iter().filter(|&&l| l > 0.0).count();
        assert_eq!(n_fg, want_fg, "batch {batch}, fg_fraction {frac}: {labels:?}");
        assert!(labels[..batch - want_fg].iter().all(|&l| l == 0.0));
    }
}

#[test]
fn warp_mode_equals_a_direct_resize_of_the_window() {
    let _rng = rng_exclusive(); // seeded layers: the same draws every run
    let f = fixture();
    let im0 = load(&f.dir.join("img0.png"));
    let im1 = load(&f.dir.join("img1.png"));
    let crop = 8;
    let fg0 = img::resize(&cut(&im0, 4, 2, 19, 13), crop, crop);
    let fg1 = img::resize(&cut(&im1, 5, 5, 30, 25), crop, crop);
    let bg0 = img::resize(&cut(&im0, 0, 0, 10, 10), crop, crop);
    let bg1 = img::resize(&cut(&im1, 10, 10, 39, 29), crop, crop);
    let plain = |w: &Image| placed(w, crop, 0, 0, false, |_, v| v);
    let (fg, bg) = ([plain(&fg0), plain(&fg1)], [plain(&bg0), plain(&bg1)]);

    let mut l = setup_seeded(&layer_text(&f, "batch_size: 6 fg_fraction: 0.5", &format!("crop_size: {crop}")), Some(7));
    let item = 3 * crop * crop;
    for _ in 0..3 {
        let (data, labels) = forward(&mut l);
        let v = values(&data);
        for i in 0..6 {
            let got = &v[i * item..(i + 1) * item];
            let want = match labels[i] as i32 {
                0 => bg.iter().find(|b| b.as_slice() == got),
                1 => Some(&fg[0]),
                3 => Some(&fg[1]),
                other => panic!("label {other}"),
            };
            assert_eq!(
                Some(got),
                want.map(|w| w.as_slice()),
                "item {i} (label {}) is not its window resized",
                labels[i]
            );
        }
    }
}

#[test]
fn mean_value_and_window_scale_apply_and_transform_scale_is_ignored() {
    let _rng = rng_shared(); // the layers draw their seeds
    let f = fixture();
    let crop = 8;
    let im0 = load(&f.dir.join("img0.png"));
    let fg0 = img::resize(&cut(&im0, 4, 2, 19, 13), crop, crop);
    let mean = [10.0f32, 20.0, 30.0];
    let want = placed(&fg0, crop, 0, 0, false, |c, v| (v - mean[c]) * 0.5);
    // Only one foreground window in img0: fg_threshold 0.8 leaves just class 1.
    let text = layer_text(
        &f,
        "batch_size: 2 fg_fraction: 1 fg_threshold: 0.8 scale: 0.5",
        &format!("crop_size: {crop} mean_value: 10 mean_value: 20 mean_value: 30 scale: 7"),
    );
    let mut l = setup(&text);
    let (data, labels) = forward(&mut l);
    assert_eq!(labels, vec![1.0, 1.0]);
    let v = values(&data);
    assert_eq!(&v[..3 * crop * crop], want.as_slice());
    assert_eq!(&v[3 * crop * crop..], want.as_slice());

    // A mean file 3×10×12 is read at its centre: offset (12 − 8) / 2 = 2 on both axes.
    let (mc, mh, mw) = (3usize, 10usize, 12usize);
    let mean_data: Vec<f32> = (0..mc * mh * mw).map(|i| (i % 97) as f32 * 0.5).collect();
    let mean_path = f.dir.join("mean.binaryproto");
    binary::write_message(&mean_path, &binary::make_blob(&[1, 3, 10, 12], mean_data.clone())).unwrap();
    let text = layer_text(
        &f,
        "batch_size: 1 fg_fraction: 1 fg_threshold: 0.8",
        &format!(r#"crop_size: {crop} mean_file: "{}""#, mean_path.display()),
    );
    let mut l = setup(&text);
    let (data, _) = forward(&mut l);
    let want = placed(&fg0, crop, 0, 0, false, |_, v| v);
    let v = values(&data);
    for c in 0..3 {
        for y in 0..crop {
            for x in 0..crop {
                let i = (c * crop + y) * crop + x;
                assert_eq!(v[i], want[i] - mean_data[(c * mh + y + 2) * mw + x + 2], "c {c} y {y} x {x}");
            }
        }
    }
}

#[test]
fn context_pad_and_square_mode_geometry() {
    let _rng = rng_exclusive(); // seeded layers: the same draws every run
                                // Window (0,0)-(9,9), crop 10, context_pad 1: grown by 10/8 to (−1,−1)-(11,11),
                                // 13 px unclipped; the clipped 12 px warp to round(12·10/13) = 9 px at offset 1.
    let w = Window { image: 0, label: 1, overlap: 1.0, x1: 0, y1: 0, x2: 9, y2: 9 };
    let plan = plan_window(&w, 24, 32, 10, 1, false, false).unwrap();
    assert_eq!(plan, WarpPlan { x1: 0, y1: 0, x2: 11, y2: 11, out_height: 9, out_width: 9, pad_h: 1, pad_w: 1 });
    // Mirrored, the padding moves to the right side (none there).
    let plan_m = plan_window(&w, 24, 32, 10, 1, false, true).unwrap();
    assert_eq!((plan_m.pad_h, plan_m.pad_w, plan_m.out_width), (1, 0, 9));
    // Square mode: the 16×12 window (4,2)-(19,13) grows to 17×17 around its centre (12, 8).
    let w = Window { image: 0, label: 1, overlap: 1.0, x1: 4, y1: 2, x2: 19, y2: 13 };
    let plan = plan_window(&w, 24, 32, 8, 0, true, false).unwrap();
    assert_eq!(plan, WarpPlan { x1: 4, y1: 0, x2: 20, y2: 16, out_height: 8, out_width: 8, pad_h: 0, pad_w: 0 });
    // Without context a window must lie inside the image.
    let out = Window { image: 0, label: 1, overlap: 1.0, x1: 20, y1: 0, x2: 32, y2: 5 };
    assert!(plan_window(&out, 24, 32, 8, 0, false, false).is_err());

    // The layer places the warped region at the padding offset, zeros around it,
    // mirrored (padding included) or not.
    let f = fixture();
    std::fs::write(&f.windows, "# 0\nimg0.png\n3 24 32\n1\n1 1.0 0 0 9 9\n").unwrap();
    let im0 = load(&f.dir.join("img0.png"));
    let warped = img::resize(&cut(&im0, 0, 0, 11, 11), 9, 9);
    let plain = placed(&warped, 10, 1, 1, false, |_, v| v);
    let mirrored = placed(&warped, 10, 1, 0, true, |_, v| v);
    let mut l = setup_seeded(
        &layer_text(&f, "batch_size: 8 fg_fraction: 1 context_pad: 1", "crop_size: 10 mirror: true"),
        Some(11),
    );
    let (mut n_plain, mut n_mirrored) = (0, 0);
    for _ in 0..4 {
        let v = values(&forward(&mut l).0);
        for item in v.chunks(300) {
            if item == plain.as_slice() {
                n_plain += 1;
            } else if item == mirrored.as_slice() {
                n_mirrored += 1;
            } else {
                panic!("an item is neither the padded window nor its mirror");
            }
        }
    }
    assert!(n_plain > 0 && n_mirrored > 0, "mirror draws: {n_plain} plain, {n_mirrored} mirrored");
}

#[test]
fn cached_images_give_the_same_batches() {
    let _rng = rng_exclusive(); // seeded layers: the same draws every run
    let f = fixture();
    let run = |cache: bool| {
        let text = layer_text(
            &f,
            &format!("batch_size: 6 fg_fraction: 0.5 context_pad: 2 cache_images: {cache}"),
            "crop_size: 12 mirror: true",
        );
        let mut l = setup_seeded(&text, Some(5));
        (0..3).map(|_| values(&forward(&mut l).0)).collect::<Vec<_>>()
    };
    assert_eq!(run(false), run(true));
}

#[test]
fn bad_inputs_are_one_line_errors_naming_layer_window_file_and_image() {
    let _rng = rng_shared(); // the nets' layers draw their seeds
    let f = fixture();
    let net_err = |layer: &str, forwards: usize| -> String {
        match net(&format!("name: \"n\" layer {{ {layer} }}"), "test.prototxt", Phase::Train) {
            Err(e) => e.to_string(),
            Ok(mut n) => {
                for _ in 0..forwards {
                    if let Err(e) = n.forward() {
                        return e.to_string();
                    }
                }
                panic!("no error for {layer}")
            }
        }
    };
    let write = |s: &str| std::fs::write(&f.windows, s).unwrap();

    // A missing image: found at setup, with or without caching.
    write(&WINDOWS.replace("img1.png", "missing.png"));
    for cache in ["false", "true"] {
        let e = net_err(&layer_text(&f, &format!("batch_size: 4 cache_images: {cache}"), "crop_size: 8"), 0);
        assert_one_line_error(&e, &["windows", "windows.txt", "missing.png"]);
    }
    // An image deleted after setup: found while prefetching.
    write(WINDOWS);
    let text = layer_text(&f, "batch_size: 4 fg_fraction: 1 fg_threshold: 0.8", "crop_size: 8");
    let gone = f.dir.join("img0.png");
    let saved = std::fs::read(&gone).unwrap();
    let mut n = net(&format!("name: \"n\" layer {{ {text} }}"), "t", Phase::Train).unwrap();
    std::fs::remove_file(&gone).unwrap();
    let mut e = String::new();
    for _ in 0..8 {
        if let Err(err) = n.forward() {
            e = err.to_string();
            break;
        }
    }
    assert_one_line_error(&e, &["windows", "windows.txt", "img0.png"]);
    drop(n);
    std::fs::write(&gone, saved).unwrap();

    // A window outside its image (no context_pad: nothing clips it).
    write("# 0\nimg0.png\n3 24 32\n1\n1 0.9 20 0 40 5\n");
    let e = net_err(&layer_text(&f, "batch_size: 2 fg_fraction: 1", "crop_size: 8"), 2);
    assert_one_line_error(&e, &["windows", "windows.txt", "img0.png", "(20, 0, 40, 5)"]);

    // A foreground window of class 0.
    write("# 0\nimg0.png\n3 24 32\n1\n0 0.9 0 0 5 5\n");
    let e = net_err(&layer_text(&f, "batch_size: 2", "crop_size: 8"), 0);
    assert_one_line_error(&e, &["windows", "windows.txt", "line 5", "class 0"]);

    // No background windows to sample from.
    write("# 0\nimg0.png\n3 24 32\n1\n1 0.9 0 0 5 5\n");
    let e = net_err(&layer_text(&f, "batch_size: 2", "crop_size: 8"), 0);
    assert_one_line_error(&e, &["windows", "windows.txt", "no background windows"]);

    // A truncated file, an empty one, a bad number, a missing file.
    write("# 0\nimg0.png\n3 24 32\n2\n1 0.9 0 0 5 5\n");
    let e = net_err(&layer_text(&f, "batch_size: 2", "crop_size: 8"), 0);
    assert_one_line_error(&e, &["windows", "windows.txt", "ends where a window"]);
    write("");
    assert_one_line_error(
        &net_err(&layer_text(&f, "batch_size: 2", "crop_size: 8"), 0),
        &["windows", "windows.txt", "empty"],
    );
    write("# 0\nimg0.png\n3 24 x32\n0\n");
    let e = net_err(&layer_text(&f, "batch_size: 2", "crop_size: 8"), 0);
    assert_one_line_error(&e, &["windows", "windows.txt", "line 3", "x32"]);
    std::fs::remove_file(&f.windows).unwrap();
    assert_one_line_error(&net_err(&layer_text(&f, "batch_size: 2", "crop_size: 8"), 0), &["windows", "windows.txt"]);

    // Parameters: crop_size is required; crop_mode is warp or square.
    write(WINDOWS);
    assert_one_line_error(&net_err(&layer_text(&f, "batch_size: 2", ""), 0), &["windows", "crop_size"]);
    let e = net_err(&layer_text(&f, r#"batch_size: 2 crop_mode: "stretch""#, "crop_size: 8"), 0);
    assert_one_line_error(&e, &["windows", "crop_mode", "stretch"]);
    let e = net_err(&layer_text(&f, "batch_size: 2 context_pad: 4", "crop_size: 8"), 0);
    assert_one_line_error(&e, &["windows", "context_pad"]);
}
