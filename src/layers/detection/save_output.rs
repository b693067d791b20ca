//! DetectionOutput's `save_output_param` (SSD fork): the detections of a
//! test pass written as the benchmarks' result files, in pixels of the
//! original images (`name_size_file`): VOC (one `<prefix><class>.txt` per
//! class, lines `image score xmin ymin xmax ymax`), COCO (`<prefix>.json`)
//! or ILSVRC (`<prefix>.txt`, lines `image label score xmin ymin xmax ymax`).
//! Every `num_test_image` images the files are rewritten.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::bbox::{to_pixels, BBox};
use crate::proto::caffe::{LabelMap, SaveOutputParameter, SsdResizeParameter};
use crate::proto::text::{self, TextOptions};
use crate::util::{format_g, write_atomic};
use crate::{bail, Result};

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Voc,
    Coco,
    Ilsvrc,
}

/// One detection as the files list it: corners in pixels, to 0.01.
struct Saved {
    image: usize,
    label: i64,
    score: f32,
    /// xmin, ymin, width, height.
    bbox: [f32; 4],
}

pub struct SaveOutput {
    directory: PathBuf,
    prefix: String,
    format: Format,
    label_names: BTreeMap<i64, String>,
    images: Vec<(String, (f32, f32))>,
    per_pass: usize,
    resize: Option<SsdResizeParameter>,
    background: i64,
    num_classes: usize,
    /// Images seen in this pass, and their detections.
    count: usize,
    pending: Vec<Saved>,
}

impl SaveOutput {
    /// The writer `p` asks for, or None when it asks for nothing (no output
    /// directory) or, as in the fork, lacks the label map or the image sizes
    /// (a warning then).
    pub fn new(
        p: &SaveOutputParameter,
        layer: &str,
        background: i64,
        num_classes: usize,
    ) -> Result<Option<SaveOutput>> {
        if p.output_directory().is_empty() {
            return Ok(None);
        }
        let (Some(map), Some(sizes)) = (
            p.label_map_file.as_deref().filter(|f| !f.is_empty()),
            p.name_size_file.as_deref().filter(|f| !f.is_empty()),
        ) else {
            crate::warn!(
                crate::here!("detection_output.rs"),
                "layer '{layer}': save_output_param needs label_map_file and name_size_file; no result files are written"
            );
            return Ok(None);
        };
        let format = match p.output_format() {
            "VOC" => Format::Voc,
            "COCO" => Format::Coco,
            "ILSVRC" => Format::Ilsvrc,
            other => bail!("save_output_param.output_format '{other}' is not VOC, COCO or ILSVRC"),
        };
        let labels = text::read_file::<LabelMap>(Path::new(map), TextOptions::default())?.message;
        let mut label_names = BTreeMap::new();
        for item in &labels.item {
            if label_names.insert(item.label() as i64, item.name().to_string()).is_some() {
                bail!("label_map_file '{map}': There are many duplicates of label: {}", item.label());
            }
        }
        let images = super::read_name_sizes(sizes)?;
        let per_pass = p.num_test_image.map_or(images.len(), |n| n as usize);
        if per_pass == 0 || per_pass > images.len() {
            bail!(
                "save_output_param.num_test_image is {per_pass}, but name_size_file '{sizes}' lists {} images",
                images.len()
            );
        }
        let directory = PathBuf::from(p.output_directory());
        std::fs::create_dir_all(&directory).map_err(|e| crate::Error::io(&directory, e))?;
        Ok(Some(SaveOutput {
            directory,
            prefix: p.output_name_prefix().to_string(),
            format,
            label_names,
            images,
            per_pass,
            resize: p.resize_param.clone(),
            background,
            num_classes,
            count: 0,
            pending: Vec::new(),
        }))
    }

    /// Records one image's detections (label, score, normalized box); writes
    /// the files when the pass is complete.
    pub fn image(&mut self, detections: &[(usize, f32, BBox)]) -> Result<()> {
        let Some((_, size)) = self.images.get(self.count).cloned() else {
            bail!("save_output_param: name_size_file lists {} images; the test has more", self.images.len());
        };
        for &(label, score, b) in detections {
            if !self.label_names.contains_key(&(label as i64)) {
                bail!("Cannot find label: {label} in the label map");
            }
            let p = to_pixels(&b, size, self.resize.as_ref());
            let r = |v: f32| (v * 100.0).round() / 100.0;
            let bbox = [r(p.xmin), r(p.ymin), r(p.xmax - p.xmin), r(p.ymax - p.ymin)];
            self.pending.push(Saved { image: self.count, label: label as i64, score, bbox });
        }
        self.count += 1;
        if self.count % self.per_pass == 0 {
            self.write()?;
            self.count = 0;
            self.pending.clear();
        }
        Ok(())
    }

    /// A name as the fork's JSON writer leaves it: numbers unquoted (COCO's
    /// image and category ids), except where that would not be JSON (a
    /// leading zero).
    fn json_value(s: &str) -> String {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let numeric = !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if numeric {
            s.to_string()
        } else {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
    }

    fn write(&self) -> Result<()> {
        let name = |d: &Saved| &self.images[d.image].0;
        // The fork writes the corners as whole pixels (truncated).
        let corners = |d: &Saved| {
            let (x, y, w, h) = (d.bbox[0] as i64, d.bbox[1] as i64, d.bbox[2] as i64, d.bbox[3] as i64);
            format!("{x} {y} {} {}", x + w, y + h)
        };
        match self.format {
            Format::Voc => {
                for c in (0..self.num_classes as i64).filter(|&c| c != self.background) {
                    let Some(class) = self.label_names.get(&c) else { continue };
                    let mut text = String::new();
                    for d in self.pending.iter().filter(|d| d.label == c) {
                        text.push_str(&format!("{} {} {}\n", name(d), format_g(d.score as f64, 6), corners(d)));
                    }
                    write_atomic(&self.directory.join(format!("{}{class}.txt", self.prefix)), text.as_bytes())?;
                }
            }
            Format::Ilsvrc => {
                let mut text = String::new();
                for d in &self.pending {
                    text.push_str(&format!("{} {} {} {}\n", name(d), d.label, format_g(d.score as f64, 6), corners(d)));
                }
                write_atomic(&self.directory.join(format!("{}.txt", self.prefix)), text.as_bytes())?;
            }
            Format::Coco => {
                let rows: Vec<String> = self
                    .pending
                    .iter()
                    .map(|d| {
                        let b: Vec<String> = d.bbox.iter().map(|v| format_g(*v as f64, 6)).collect();
                        format!(
                            "  {{\"image_id\": {}, \"category_id\": {}, \"bbox\": [{}], \"score\": {}}}",
                            Self::json_value(name(d)),
                            Self::json_value(&self.label_names[&d.label]),
                            b.join(", "),
                            format_g(d.score as f64, 6)
                        )
                    })
                    .collect();
                let text = format!("[\n{}\n]\n", rows.join(",\n"));
                write_atomic(&self.directory.join(format!("{}.json", self.prefix)), text.as_bytes())?;
            }
        }
        Ok(())
    }
}
