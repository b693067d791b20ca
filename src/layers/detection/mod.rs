//! The detection layers of two Caffe forks, one file each: the SSD fork's
//! inference layers (Liu et al., "SSD: Single Shot MultiBox Detector",
//! weiliu89/caffe), which SSD, MobileNet-SSD and OpenCV's face detector
//! need: Permute, Normalize, PriorBox and DetectionOutput; and Fast R-CNN's
//! ROIPooling (rbgirshick/caffe-fast-rcnn), which Fast and Faster R-CNN
//! nets need (their Proposal layer is Python, run as a Python layer). Their
//! parameters sit in `proto/caffe.proto` at the forks' field numbers, so
//! the forks' prototxt and `.caffemodel` files read as they are. The SSD
//! fork's training layers (MultiBoxLoss, AnnotatedData, DetectionEvaluate)
//! are not here.
use super::registry::LayerInfo;

pub mod detection_output;
pub mod normalize;
pub mod permute;
pub mod prior_box;
pub mod roi_pooling;

pub fn register(r: &mut Vec<LayerInfo>) {
    detection_output::register(r);
    normalize::register(r);
    permute::register(r);
    prior_box::register(r);
    roi_pooling::register(r);
}

/// Caffe's legacy num/channels/height/width of a blob: missing axes read as
/// 1; a blob of more than 4 axes has no such view.
pub fn legacy_dims(shape: &[i64]) -> crate::Result<[i64; 4]> {
    if shape.len() > 4 {
        crate::bail!("this layer reads its bottoms as N×C×H×W, but a bottom has {} axes ({shape:?})", shape.len());
    }
    let mut d = [1i64; 4];
    d[..shape.len()].copy_from_slice(shape);
    Ok(d)
}
