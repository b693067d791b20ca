//! `convert_annoset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME` (the SSD fork's
//! tool, which its `create_annoset.py` and `create_data.sh` call): images
//! and their box annotations into a DB of AnnotatedDatum keyed
//! `%08d_<path>`. With `-anno_type detection` each list line is `image
//! annotation` (a VOC XML file, a JSON file of COCO boxes as the fork's
//! COCO scripts split them per image, or a text file of `label xmin ymin
//! xmax ymax` lines); boxes are stored normalized to the image, grouped by label as the
//! fork groups them. With `-anno_type classification`, `image label`.
use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use rand::seq::SliceRandom;

use super::gflags::{self, Spec};
use crate::data::datum;
use crate::data::db::{Backend, DbWriter};
use crate::data::image::{self, ColorMode};
use crate::log::progress::Progress;
use crate::proto::caffe::annotated_datum::AnnotationType;
use crate::proto::caffe::{AnnotatedDatum, Annotation, AnnotationGroup, Datum, LabelMap, NormalizedBBox};
use crate::proto::text::{self, TextOptions};
use crate::{info, warn, Error, Result};

pub const SPEC: Spec = Spec {
    tool: "convert_annoset",
    usage: "[-anno_type classification|detection] [-label_type xml|json|txt] [-label_map_file F] [-check_label] \
            [-gray] [-shuffle] [-backend lmdb|leveldb] [-min_dim N] [-max_dim N] [-resize_width N] \
            [-resize_height N] [-check_size] \
            [-encoded] [-encode_type png|jpg] ROOTFOLDER/ LISTFILE DB_NAME",
    bools: &[
        ("gray", false, "read the images as grayscale"),
        ("shuffle", false, "shuffle the list's order (and so the DB's)"),
        ("check_label", false, "fail on a name listed twice in the label map"),
        ("check_size", false, "check that every image has the first image's size"),
        ("encoded", false, "store each image encoded (its file, or -encode_type) instead of raw pixels"),
    ],
    values: &[
        ("backend", "lmdb", "the database type: lmdb or leveldb"),
        ("anno_type", "classification", "classification (image label) or detection (image annotation)"),
        (
            "label_type",
            "xml",
            "the annotation files: xml (PASCAL VOC), json (COCO boxes, one file per image) or txt (label xmin ymin \
             xmax ymax lines)",
        ),
        ("label_map_file", "", "a LabelMap prototxt naming the labels (detection with xml or json)"),
        ("min_dim", "0", "scale up (aspect kept) an image whose shorter side is under this"),
        ("max_dim", "0", "scale down (aspect kept) an image whose longer side would exceed this"),
        ("resize_width", "0", "resize every image to this width (0: keep)"),
        ("resize_height", "0", "resize every image to this height (0: keep)"),
        ("encode_type", "", "with -encoded: png or jpg (default: the file's own format)"),
    ],
};

/// The tool's options (its flags).
#[derive(Debug, Clone)]
pub struct Options {
    pub gray: bool,
    pub shuffle: bool,
    pub backend: Backend,
    pub detection: bool,
    pub label_type: String,
    pub label_map_file: String,
    pub check_label: bool,
    pub resize_width: usize,
    pub resize_height: usize,
    /// Scale (aspect kept) so the shorter side is at least this; 0: off.
    pub min_dim: usize,
    /// Scale (aspect kept) so the longer side is at most this; 0: off.
    pub max_dim: usize,
    pub check_size: bool,
    pub encoded: bool,
    pub encode_type: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gray: false,
            shuffle: false,
            backend: Backend::Lmdb,
            detection: true,
            label_type: "xml".into(),
            label_map_file: String::new(),
            check_label: false,
            resize_width: 0,
            resize_height: 0,
            min_dim: 0,
            max_dim: 0,
            check_size: false,
            encoded: false,
            encode_type: String::new(),
        }
    }
}

pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 3, 3)?;
    let detection = match flags.value("anno_type") {
        "detection" => true,
        "classification" => false,
        other => {
            return Err(Error::invalid(format!(
                "convert_annoset: unknown -anno_type '{other}' (classification or detection)"
            )))
        }
    };
    let opts = Options {
        gray: flags.flag("gray"),
        shuffle: flags.flag("shuffle"),
        backend: Backend::parse(flags.value("backend"))?,
        detection,
        label_type: flags.value("label_type").to_string(),
        label_map_file: flags.value("label_map_file").to_string(),
        check_label: flags.flag("check_label"),
        resize_width: flags.int("resize_width")?.max(0) as usize,
        resize_height: flags.int("resize_height")?.max(0) as usize,
        min_dim: flags.int("min_dim")?.max(0) as usize,
        max_dim: flags.int("max_dim")?.max(0) as usize,
        check_size: flags.flag("check_size"),
        encoded: flags.flag("encoded"),
        encode_type: flags.value("encode_type").to_string(),
    };
    let p = &flags.positional;
    convert(&p[0], Path::new(&p[1]), Path::new(&p[2]), &opts)?;
    Ok(())
}

/// The label of each name in a LabelMap prototxt (the fork's MapNameToLabel).
pub fn name_to_label(file: &Path, strict: bool) -> Result<HashMap<String, i32>> {
    let map = text::read_file::<LabelMap>(file, TextOptions::default())?.message;
    let mut names = HashMap::new();
    for item in &map.item {
        if names.insert(item.name().to_string(), item.label()).is_some() && strict {
            return Err(Error::invalid(format!(
                "label map '{}': There are many duplicates of name: {}",
                file.display(),
                item.name()
            )));
        }
    }
    Ok(names)
}

/// Adds a box of `label` to its group (made on the label's first box), with
/// the next instance id of that group, as the fork numbers them.
fn add_box(groups: &mut Vec<AnnotationGroup>, label: i32) -> &mut Annotation {
    let g = match groups.iter().position(|g| g.group_label() == label) {
        Some(g) => g,
        None => {
            groups.push(AnnotationGroup { group_label: Some(label), annotation: Vec::new() });
            groups.len() - 1
        }
    };
    let group = &mut groups[g];
    let instance = group.annotation.last().map_or(0, |a| a.instance_id() + 1);
    group.annotation.push(Annotation { instance_id: Some(instance), bbox: None });
    let last = group.annotation.len() - 1;
    &mut group.annotation[last]
}

/// A box in pixels of a `width` × `height` image, normalized, with the
/// fork's warnings for corners outside the image or inverted.
fn normalized(file: &str, [x0, y0, x1, y1]: [f32; 4], width: f32, height: f32, difficult: bool) -> NormalizedBBox {
    if [x0, x1].iter().any(|&x| x < 0.0 || x > width) || [y0, y1].iter().any(|&y| y < 0.0 || y > height) {
        warn!("io.cpp:313", "{file} bounding box exceeds image boundary.");
    }
    if x0 > x1 || y0 > y1 {
        warn!("io.cpp:329", "{file} bounding box irregular.");
    }
    NormalizedBBox {
        xmin: Some(x0 / width),
        ymin: Some(y0 / height),
        xmax: Some(x1 / width),
        ymax: Some(y1 / height),
        difficult: Some(difficult),
        ..Default::default()
    }
}

/// The first child element named `name`.
fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

/// An element's text as a number (VOC's pixel corners are integers, some
/// datasets' have decimals).
fn number(n: Option<roxmltree::Node<'_, '_>>) -> Option<f32> {
    n?.text()?.trim().parse::<f32>().ok()
}

/// A PASCAL VOC annotation file's boxes (the fork's ReadXMLToAnnotatedDatum).
pub fn read_voc_xml(
    file: &str,
    image_size: (usize, usize),
    labels: &HashMap<String, i32>,
) -> Result<Vec<AnnotationGroup>> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let doc = roxmltree::Document::parse(&text).map_err(|e| Error::invalid(format!("{file}: not XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "annotation" {
        return Err(Error::invalid(format!(
            "{file}: the root element is <{}>, not <annotation>",
            root.tag_name().name()
        )));
    }
    let size = child(root, "size");
    let (height, width) =
        match (number(size.and_then(|s| child(s, "height"))), number(size.and_then(|s| child(s, "width")))) {
            (Some(h), Some(w)) => (h, w),
            _ => {
                warn!("io.cpp:269", "When parsing {file}: no annotation.size.height/width; using the image's");
                (image_size.0 as f32, image_size.1 as f32)
            }
        };
    if height != image_size.0 as f32 {
        warn!("io.cpp:276", "{file} inconsistent image height.");
    }
    if width != image_size.1 as f32 {
        warn!("io.cpp:278", "{file} inconsistent image width.");
    }
    if !(width > 0.0 && height > 0.0) {
        return Err(Error::invalid(format!("{file} no valid image width/height.")));
    }
    let mut groups: Vec<AnnotationGroup> = Vec::new();
    for object in root.children().filter(|c| c.has_tag_name("object")) {
        let mut current: Option<(usize, usize)> = None;
        let mut difficult = false;
        for field in object.children().filter(|c| c.is_element()) {
            match field.tag_name().name() {
                "name" => {
                    let name = field.text().unwrap_or("").trim();
                    let Some(&label) = labels.get(name) else {
                        return Err(Error::invalid(format!("{file}: Unknown name: {name} (not in the label map)")));
                    };
                    add_box(&mut groups, label);
                    let g = groups.iter().position(|g| g.group_label() == label).unwrap_or(0);
                    current = Some((g, groups[g].annotation.len() - 1));
                }
                "difficult" => difficult = field.text().map(str::trim) == Some("1"),
                "bndbox" => {
                    let Some((g, a)) = current else {
                        return Err(Error::invalid(format!("{file}: an object's <bndbox> comes before its <name>")));
                    };
                    let corner = |n: &str| number(child(field, n)).unwrap_or(0.0);
                    let corners = [corner("xmin"), corner("ymin"), corner("xmax"), corner("ymax")];
                    groups[g].annotation[a].bbox = Some(normalized(file, corners, width, height, difficult));
                }
                _ => {}
            }
        }
    }
    Ok(groups)
}

/// A JSON annotation file's boxes (the fork's ReadJSONToAnnotatedDatum, for
/// the per-image files its COCO scripts write): `image.height`/`width` (the
/// image's own size when missing), and per entry of `annotation` a
/// `category_id` looked up by name in the label map (COCO's label maps name
/// each class by its id), `bbox` [x, y, width, height] in pixels and
/// `iscrowd`, which is stored as the box's difficult flag.
pub fn read_coco_json(
    file: &str,
    image_size: (usize, usize),
    labels: &HashMap<String, i32>,
) -> Result<Vec<AnnotationGroup>> {
    use serde_json::Value;
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{file}:{}:{}: not JSON: {e}", e.line(), e.column())))?;
    let side = |key: &str| doc.get("image").and_then(|i| i.get(key)).and_then(json_number);
    let (height, width) = match (side("height"), side("width")) {
        (Some(h), Some(w)) => (h.trunc() as f32, w.trunc() as f32),
        _ => {
            warn!("io.cpp:357", "When parsing {file}: no image.height/width; using the image's");
            (image_size.0 as f32, image_size.1 as f32)
        }
    };
    if height != image_size.0 as f32 {
        warn!("io.cpp:362", "{file} inconsistent image height.");
    }
    if width != image_size.1 as f32 {
        warn!("io.cpp:364", "{file} inconsistent image width.");
    }
    if !(width > 0.0 && height > 0.0) {
        return Err(Error::invalid(format!("{file} no valid image width/height.")));
    }
    let Some(objects) = doc.get("annotation").and_then(Value::as_array) else {
        return Err(Error::invalid(format!("{file}: no \"annotation\" array")));
    };
    let mut groups: Vec<AnnotationGroup> = Vec::new();
    for (k, object) in objects.iter().enumerate() {
        let name = match object.get("category_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Error::invalid(format!("{file}: annotation {k} has no category_id"))),
        };
        let Some(&label) = labels.get(&name) else {
            return Err(Error::invalid(format!("{file}: Unknown name: {name} (not in the label map)")));
        };
        let crowd = match object.get("iscrowd") {
            None => false,
            Some(v) => json_number(v)
                .map(|v| v.trunc() != 0.0)
                .ok_or_else(|| Error::invalid(format!("{file}: annotation {k}: iscrowd {v} is not a number")))?,
        };
        let items: Option<Vec<f32>> = object
            .get("bbox")
            .and_then(Value::as_array)
            .map(|b| b.iter().filter_map(json_number).map(|v| v as f32).collect());
        let Some([x, y, w, h]) = items.and_then(|v| <[f32; 4]>::try_from(v).ok()) else {
            return Err(Error::invalid(format!(
                "{file}: annotation {k}: bbox must be 4 numbers [x, y, width, height]"
            )));
        };
        let bbox = normalized(file, [x, y, x + w, y + h], width, height, crowd);
        add_box(&mut groups, label).bbox = Some(bbox);
    }
    Ok(groups)
}

/// A JSON number, or a string holding one (Boost's property tree, which the
/// fork reads JSON with, keeps every value as text).
fn json_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The fork's min_dim/max_dim scale factor for an image (1: unchanged): up
/// so the shorter side reaches min_dim, then down if the longer side would
/// pass max_dim, in f32 as the fork computes it.
pub fn dim_scale(height: usize, width: usize, min_dim: usize, max_dim: usize) -> f32 {
    let (short, long) = (height.min(width) as f32, height.max(width) as f32);
    let mut scale = 1f32;
    if min_dim > 0 && short < min_dim as f32 {
        scale = min_dim as f32 / short;
    }
    if max_dim > 0 && (scale * long) as i64 > max_dim as i64 {
        scale = max_dim as f32 / long;
    }
    scale
}

/// A text annotation file's boxes: `label xmin ymin xmax ymax` per line, in
/// pixels (the fork's ReadTxtToAnnotatedDatum).
pub fn read_txt_boxes(file: &str, (height, width): (usize, usize)) -> Result<Vec<AnnotationGroup>> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut groups = Vec::new();
    for (k, w) in words.chunks(5).enumerate() {
        let parsed = (w.len() == 5).then(|| {
            let label = w[0].parse::<i32>().ok()?;
            let v: Option<Vec<f32>> = w[1..].iter().map(|s| s.parse::<f32>().ok()).collect();
            Some((label, v?))
        });
        let Some(Some((label, v))) = parsed else {
            return Err(Error::invalid(format!("{file}: box {} ({w:?}) is not 'label xmin ymin xmax ymax'", k + 1)));
        };
        let bbox = normalized(file, [v[0], v[1], v[2], v[3]], width as f32, height as f32, false);
        add_box(&mut groups, label).bbox = Some(bbox);
    }
    Ok(groups)
}

/// Converts; returns the number of records written. Unreadable images are
/// skipped with an error line, as the fork does; the DB appears only when complete.
pub fn convert(root: &str, list: &Path, db: &Path, opts: &Options) -> Result<usize> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() % 2 != 0 {
        return Err(Error::invalid(format!(
            "{}: every line must be 'image {}' (an odd number of words)",
            list.display(),
            if opts.detection { "annotation" } else { "label" }
        )));
    }
    let mut lines: Vec<(String, String)> = words.chunks(2).map(|w| (w[0].to_string(), w[1].to_string())).collect();
    if opts.detection && !matches!(opts.label_type.as_str(), "xml" | "json" | "txt") {
        return Err(Error::invalid(format!(
            "convert_annoset: unknown -label_type '{}' (xml, json or txt)",
            opts.label_type
        )));
    }
    let labels = if opts.detection && opts.label_type != "txt" {
        if opts.label_map_file.is_empty() {
            return Err(Error::invalid(format!(
                "convert_annoset: -anno_type detection with {} needs -label_map_file",
                opts.label_type
            )));
        }
        name_to_label(Path::new(&opts.label_map_file), opts.check_label)?
    } else {
        HashMap::new()
    };
    if opts.shuffle {
        info!("convert_annoset.cpp:114", "Shuffling data");
        lines.shuffle(&mut rand::thread_rng());
    }
    info!("convert_annoset.cpp:119", "A total of {} images.", lines.len());
    let encoded = opts.encoded || !opts.encode_type.is_empty();
    let is_color = !opts.gray;
    let (rh, rw) = (opts.resize_height, opts.resize_width);
    let mut writer = DbWriter::create(db, opts.backend)?;
    let (mut count, mut data_size) = (0usize, None);
    let mut progress = Progress::for_stderr();
    progress.start(0);
    for (line_id, (file, second)) in lines.iter().enumerate() {
        progress.update_count("convert_annoset", line_id as i64, Some(lines.len() as i64));
        let path = format!("{root}{file}");
        let read = std::fs::read(&path)
            .map_err(|e| Error::data(format!("could not open or find file {path}: {e}")))
            .and_then(|bytes| {
                let img = image::decode(&bytes, if is_color { ColorMode::Color } else { ColorMode::Gray })
                    .map_err(|e| Error::data(format!("{path}: {e}")))?;
                Ok((bytes, img))
            });
        let (bytes, original) = match read {
            Ok(r) => r,
            Err(e) => {
                crate::log::write(crate::log::Severity::Error, "io.cpp:80", &e.to_string());
                warn!("convert_annoset.cpp:160", "Failed to read {file}");
                continue;
            }
        };
        let size = (original.height, original.width);
        let resized = opts.min_dim > 0 || opts.max_dim > 0 || (rh > 0 && rw > 0);
        let img = if opts.min_dim > 0 || opts.max_dim > 0 {
            // The fork lets min_dim/max_dim take the place of resize_height/width.
            match dim_scale(original.height, original.width, opts.min_dim, opts.max_dim) {
                1.0 => original,
                s => image::resize_by(&original, f64::from(s)).map_err(|e| Error::data(format!("{path}: {e}")))?,
            }
        } else if rh > 0 && rw > 0 {
            image::resize(&original, rh, rw)
        } else {
            original
        };
        let mut d: Datum = if encoded {
            let enc = if opts.encode_type.is_empty() {
                file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default()
            } else {
                opts.encode_type.clone()
            };
            let bytes = if (img.channels == 3) == is_color && !resized && image::extension_matches(file, &enc) {
                bytes
            } else {
                image::encode(&img, &enc).map_err(|e| Error::invalid(format!("{path}: {e}")))?
            };
            datum::encoded(bytes, -1)
        } else {
            datum::from_image(&img, -1)
        };
        // The fork records the size of an encoded image too.
        (d.channels, d.height, d.width) = (Some(img.channels as i32), Some(img.height as i32), Some(img.width as i32));
        let record = if opts.detection {
            let anno = format!("{root}{second}");
            let groups = if !Path::new(&anno).exists() {
                Vec::new()
            } else if opts.label_type == "xml" {
                read_voc_xml(&anno, size, &labels)?
            } else if opts.label_type == "json" {
                read_coco_json(&anno, size, &labels)?
            } else {
                read_txt_boxes(&anno, size)?
            };
            AnnotatedDatum { datum: Some(d), r#type: Some(AnnotationType::Bbox as i32), annotation_group: groups }
        } else {
            let label = second.parse::<i32>().map_err(|_| {
                Error::invalid(format!("{}: line {}: label '{second}' is not an integer", list.display(), line_id + 1))
            })?;
            d.label = Some(label);
            AnnotatedDatum { datum: Some(d), r#type: None, annotation_group: Vec::new() }
        };
        if opts.check_size && !encoded {
            let n = img.channels * img.height * img.width;
            match data_size {
                None => data_size = Some(n),
                Some(want) if want != n => {
                    return Err(Error::invalid(format!(
                        "{path}: Incorrect data field size {n} (the first image has {want})"
                    )));
                }
                _ => {}
            }
        }
        writer.put(format!("{line_id:08}_{file}").as_bytes(), &record.encode_to_vec());
        count += 1;
        if count % 1000 == 0 {
            writer.commit()?;
            info!("convert_annoset.cpp:180", "Processed {count} files.");
        }
    }
    progress.finish();
    writer.finish()?;
    if count % 1000 != 0 {
        info!("convert_annoset.cpp:187", "Processed {count} files.");
    }
    Ok(count)
}

pub const SIZE_SPEC: Spec = Spec {
    tool: "get_image_size",
    usage: "[-name_id_file F] ROOTFOLDER/ LISTFILE OUTFILE",
    bools: &[],
    values: &[("name_id_file", "", "a file of 'name id' lines: write each image's id instead of its name")],
};

/// `get_image_size ROOTFOLDER/ LISTFILE OUTFILE` (the SSD fork's tool): the
/// `name height width` of each listed image (its file name without the
/// extension), the `name_size_file` DetectionEvaluate reads.
pub fn get_image_size(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SIZE_SPEC, args)?;
    gflags::expect_positional(&SIZE_SPEC, &flags, 3, 3)?;
    let p = &flags.positional;
    let list = Path::new(&p[1]);
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let images: Vec<&str> = words.chunks(2).filter(|w| w.len() == 2).map(|w| w[0]).collect();
    info!("get_image_size.cpp:50", "A total of {} images.", images.len());
    let ids: HashMap<String, String> = match flags.value("name_id_file") {
        "" => HashMap::new(),
        f => {
            let t = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
            let w: Vec<&str> = t.split_whitespace().collect();
            w.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].to_string(), c[1].to_string())).collect()
        }
    };
    let mut out = String::new();
    for (k, file) in images.iter().enumerate() {
        let path = Path::new(&p[0]).join(file);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let img =
            image::decode(&bytes, ColorMode::Native).map_err(|e| Error::data(format!("{}: {e}", path.display())))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = if ids.is_empty() {
            stem
        } else {
            ids.get(&stem).cloned().ok_or_else(|| Error::invalid(format!("{stem} is not in the name_id_file")))?
        };
        out.push_str(&format!("{name} {} {}\n", img.height, img.width));
        if (k + 1) % 1000 == 0 {
            info!("get_image_size.cpp:80", "Processed {} files.", k + 1);
        }
    }
    crate::util::write_atomic(Path::new(&p[2]), out.as_bytes())?;
    info!("get_image_size.cpp:85", "Processed {} files.", images.len());
    Ok(())
}
