//! The detection layers of two Caffe forks, one file each: the SSD fork's
//! layers (Liu et al., "SSD: Single Shot MultiBox Detector",
//! weiliu89/caffe): for inference, which SSD, MobileNet-SSD and OpenCV's
//! face detector need, Permute, Normalize, PriorBox and DetectionOutput; for
//! training, MultiBoxLoss and DetectionEvaluate (its AnnotatedData is a data
//! layer, in `layers/data/`), with the box arithmetic they share in bbox.rs.
//! And Fast R-CNN's ROIPooling (rbgirshick/caffe-fast-rcnn), which Fast and
//! Faster R-CNN nets need, R-FCN's PSROIPooling, with Faster R-CNN's
//! Proposal as OpenCV's and OpenVINO's schemas have it natively
//! (py-faster-rcnn's own is a Python layer, which runs as the native one
//! where its module cannot be imported: py_proposal.rs). Their parameters sit in
//! `proto/caffe.proto` at the forks' field numbers (Proposal's at one of
//! ours), so the forks' prototxt and `.caffemodel` files read as they are.
use super::registry::LayerInfo;
use crate::bail;
use crate::layers::{legacy_dims, Shape};
use crate::Result;

pub mod bbox;
pub mod detection_evaluate;
pub mod detection_output;
pub mod multibox_loss;
pub mod normalize;
pub mod permute;
pub mod prior_box;
pub mod proposal;
pub mod psroi_pooling;
pub mod py_proposal;
pub mod roi_pooling;
pub mod save_output;
pub mod yolo_detection_output;
pub mod yolov3_detection_output;

pub fn register(r: &mut Vec<LayerInfo>) {
    detection_evaluate::register(r);
    detection_output::register(r);
    multibox_loss::register(r);
    normalize::register(r);
    permute::register(r);
    prior_box::register(r);
    proposal::register(r);
    psroi_pooling::register(r);
    roi_pooling::register(r);
    yolo_detection_output::register(r);
    yolov3_detection_output::register(r);
}

/// The number of regions in a ROI pooling's bottom[1], which holds one row of
/// 5 values [batch index, x1, y1, x2, y2] per region (ROIPooling, PSROIPooling).
pub fn region_count(rois: &Shape) -> Result<i64> {
    let d = legacy_dims(rois)?;
    if d[1] * d[2] * d[3] != 5 {
        bail!("bottom[1] must hold one row of 5 values [batch index, x1, y1, x2, y2] per region, got shape {rois:?}");
    }
    Ok(d[0])
}

/// A region row's image, checked to be one of the `batch` images, with its
/// corners checked to be finite (the forks read past their blob otherwise).
pub fn region_image(roi: &[f32], batch: i64) -> Result<i64> {
    let image = roi[0] as i64;
    if !roi[0].is_finite() || !(0..batch).contains(&image) {
        bail!("a region's batch index {} is outside the {batch} images of bottom[0]", roi[0]);
    }
    if let Some(v) = roi[1..].iter().find(|v| !v.is_finite()) {
        bail!("a region's corner {v} is not a finite number");
    }
    Ok(image)
}

/// A name_size_file's "name height width" entries (the SSD fork's
/// get_image_size output, read by DetectionOutput and DetectionEvaluate).
pub fn read_name_sizes(file: &str) -> Result<Vec<(String, (f32, f32))>> {
    let path = std::path::PathBuf::from(file);
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut entries = Vec::new();
    for (k, chunk) in words.chunks(3).enumerate() {
        let side = |s: &str| s.parse::<i64>().ok().filter(|&v| v > 0);
        match chunk {
            [name, h, w] => match (side(h), side(w)) {
                (Some(h), Some(w)) => entries.push((name.to_string(), (h as f32, w as f32))),
                _ => bail!("name_size_file '{file}': entry {} ({chunk:?}) is not 'name height width'", k + 1),
            },
            _ => bail!("name_size_file '{file}': entry {} ({chunk:?}) is not 'name height width'", k + 1),
        }
    }
    Ok(entries)
}

/// DetectionOutput's top, which the YOLO outputs share: the rows [image,
/// label, confidence, xmin, ymin, xmax, ymax] as 1 × 1 × rows × 7 in
/// `like`'s kind and device, or the forks' row [i, -1, …, -1] per image of
/// `images` when none was kept.
pub(crate) fn detection_rows_top(mut rows: Vec<[f32; 7]>, images: usize, like: &tch::Tensor) -> Result<tch::Tensor> {
    if rows.is_empty() {
        rows = (0..images).map(|i| [i as f32, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]).collect();
    }
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(tch::Tensor::f_from_slice(&flat)?
        .f_reshape([1, 1, rows.len() as i64, 7])?
        .f_to_kind(like.kind())?
        .f_to_device(like.device())?)
}
