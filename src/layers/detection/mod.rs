//! The detection layers of two Caffe forks, one file each: the SSD fork's
//! inference layers (Liu et al., "SSD: Single Shot MultiBox Detector",
//! weiliu89/caffe), which SSD, MobileNet-SSD and OpenCV's face detector
//! need: Permute, Normalize, PriorBox and DetectionOutput; and Fast R-CNN's
//! ROIPooling (rbgirshick/caffe-fast-rcnn), which Fast and Faster R-CNN
//! nets need, R-FCN's PSROIPooling, with Faster R-CNN's Proposal as
//! OpenCV's and OpenVINO's schemas have it natively (py-faster-rcnn's own is a Python layer). Their
//! parameters sit in `proto/caffe.proto` at the forks' field numbers
//! (Proposal's at one of ours), so the forks' prototxt and `.caffemodel`
//! files read as they are. The SSD
//! fork's training layers (MultiBoxLoss, AnnotatedData, DetectionEvaluate)
//! are not here.
use super::registry::LayerInfo;

pub mod detection_output;
pub mod normalize;
pub mod permute;
pub mod prior_box;
pub mod proposal;
pub mod psroi_pooling;
pub mod roi_pooling;

pub fn register(r: &mut Vec<LayerInfo>) {
    detection_output::register(r);
    normalize::register(r);
    permute::register(r);
    prior_box::register(r);
    proposal::register(r);
    psroi_pooling::register(r);
    roi_pooling::register(r);
}
