//! The emitters of the detection forks' layers (Permute, Normalize, PriorBox,
//! ROIPooling, PSROIPooling, Proposal, DetectionOutput, YoloDetectionOutput,
//! Yolov3DetectionOutput),
//! listed in layers.rs's table; each follows src/layers/detection/<type>.rs.
use super::layers::{blobs_module, f, list, py_bool, tup};
use super::{Code, Site};
use crate::layers::detection::{permute::full_order, prior_box::PriorBox};
use crate::Result;

pub(super) fn permute(s: &Site, c: &mut Code) -> Result<()> {
    let order = full_order(&s.l.param.permute_param.clone().unwrap_or_default().order, s.bottom_shape(0).len())?;
    c.assign(&s.tops, format!("{}.permute{}.contiguous()", s.b(0), tup(&order)));
    Ok(())
}

pub(super) fn normalize(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.norm_param.clone().unwrap_or_default();
    blobs_module(c, &s.module, &[("weight", s.blob_shape(0))], &[]);
    c.helper("caffe_normalize");
    c.assign(
        &s.tops,
        format!("caffe_normalize({}, {}.weight, {}, {})", s.b(0), s.module, py_bool(p.across_spatial()), f(p.eps())),
    );
    Ok(())
}

pub(super) fn prior_box(s: &Site, c: &mut Code) -> Result<()> {
    let layer = PriorBox::new(s.l.param.prior_box_param.clone().unwrap_or_default())?;
    let sizes: Vec<String> = layer.box_sizes().iter().map(|&(w, h)| format!("({}, {})", f(w), f(h))).collect();
    let variance: Vec<String> = layer.variance().iter().map(|&v| f(v)).collect();
    // The image's size: fixed by the parameters, else bottom[1]'s at run time.
    let image = match layer.fixed_image() {
        Some((h, w)) => list(&[h as i64, w as i64]),
        None => s.b(1).to_string(),
    };
    let step = match layer.fixed_step() {
        Some((h, w)) => format!("({}, {})", f(h), f(w)),
        None => "None".to_string(),
    };
    c.helper("caffe_prior_box");
    c.assign(
        &s.tops,
        format!(
            "caffe_prior_box({}, {image}, [{}], {step}, {}, {}, [{}])",
            s.b(0),
            sizes.join(", "),
            f(layer.offset()),
            py_bool(layer.clip()),
            variance.join(", ")
        ),
    );
    Ok(())
}

pub(super) fn roi_pooling(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.roi_pooling_param.unwrap_or_default();
    c.helper("caffe_roi_pool");
    c.assign(
        &s.tops,
        format!("caffe_roi_pool({}, {}, {}, {}, {})", s.b(0), s.b(1), p.pooled_h(), p.pooled_w(), f(p.spatial_scale())),
    );
    Ok(())
}

/// PSROIPooling (detection/psroi_pooling.rs).
pub(super) fn psroi_pooling(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.psroi_pooling_param.unwrap_or_default();
    c.helper("caffe_psroi_pool");
    c.assign(
        &s.tops,
        format!(
            "caffe_psroi_pool({}, {}, {}, {}, {})",
            s.b(0),
            s.b(1),
            f(p.spatial_scale()),
            p.output_dim(),
            p.group_size()
        ),
    );
    Ok(())
}

/// Proposal (detection/proposal.rs): the helper runs its rules in eager
/// PyTorch (data-dependent, one image at a time); the anchors are written in.
pub(super) fn proposal(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.proposal_param.clone().unwrap_or_default();
    let layer = crate::layers::detection::proposal::Proposal::from_param(p.clone())?;
    let anchors: Vec<String> = layer
        .anchors()
        .iter()
        .map(|a| format!("[{}]", a.iter().map(|&v| f(v)).collect::<Vec<_>>().join(", ")))
        .collect();
    c.helper("caffe_proposal");
    let call = format!(
        "caffe_proposal({}, {}, {}, [{}], {}, {}, {}, {}, {})",
        s.b(0),
        s.b(1),
        s.b(2),
        anchors.join(", "),
        p.feat_stride(),
        p.min_size(),
        p.pre_nms_topn(),
        p.post_nms_topn(),
        f(p.nms_thresh())
    );
    if s.tops.len() > 1 {
        c.assign(&s.tops, call);
    } else {
        c.assign(&s.tops, format!("{call}[0]"));
    }
    Ok(())
}

/// DetectionOutput (detection/detection_output.rs): the helper runs the
/// fork's decoding and suppression in eager PyTorch, image by image.
pub(super) fn detection_output(s: &Site, c: &mut Code) -> Result<()> {
    use crate::proto::caffe::prior_box_parameter::CodeType;
    let p = s.l.param.detection_output_param.clone().unwrap_or_default();
    let Some(classes) = p.num_classes else { crate::bail!("detection_output_param must specify num_classes") };
    let nms = p.nms_param.unwrap_or_default();
    let code = match p.code_type() {
        CodeType::Corner => 1,
        CodeType::CenterSize => 2,
        CodeType::CornerSize => 3,
    };
    c.helper("caffe_detection_output");
    c.assign(
        &s.tops,
        format!(
            "caffe_detection_output({}, {}, {}, {classes}, {}, {}, {code}, {}, {}, {}, {}, {}, {})",
            s.b(0),
            s.b(1),
            s.b(2),
            py_bool(p.share_location()),
            p.background_label_id(),
            py_bool(p.variance_encoded_in_target()),
            p.keep_top_k(),
            p.confidence_threshold.map_or("None".to_string(), f),
            f(nms.nms_threshold()),
            f(nms.eta()),
            nms.top_k.unwrap_or(-1)
        ),
    );
    Ok(())
}

/// Yolov3DetectionOutput (detection/yolov3_detection_output.rs): the helper
/// decodes and suppresses in eager PyTorch; each scale's anchors written in.
pub(super) fn yolov3_detection_output(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.yolov3_detection_output_param.clone().unwrap_or_default();
    let scales = p.mask_group_num() as usize;
    if scales == 0 || s.l.bottoms.len() != scales || p.anchors_scale.len() < scales {
        crate::bail!("yolov3_detection_output_param does not match the layer's {} bottoms", s.l.bottoms.len());
    }
    let per_scale = p.mask.len() / scales;
    let anchors: Vec<String> = (0..scales)
        .map(|t| {
            let pairs: Vec<String> = (0..p.num_box() as usize)
                .map(|k| {
                    let m = p.mask.get(t * per_scale + k).copied().unwrap_or(0) as usize;
                    let bias = |j: usize| p.biases.get(2 * m + j).copied().unwrap_or(0.0);
                    format!("({}, {})", f(bias(0)), f(bias(1)))
                })
                .collect();
            format!("[{}]", pairs.join(", "))
        })
        .collect();
    let maps: Vec<String> = (0..scales).map(|k| s.b(k).to_string()).collect();
    let strides: Vec<String> = p.anchors_scale[..scales].iter().map(|v| v.to_string()).collect();
    c.helper("caffe_yolov3_detection_output");
    c.assign(
        &s.tops,
        format!(
            "caffe_yolov3_detection_output([{}], {}, {}, {}, {}, [{}], [{}])",
            maps.join(", "),
            p.num_classes(),
            p.num_box(),
            f(p.confidence_threshold()),
            f(p.nms_threshold()),
            anchors.join(", "),
            strides.join(", ")
        ),
    );
    Ok(())
}

/// YoloDetectionOutput (detection/yolo_detection_output.rs): the helper
/// decodes and suppresses in eager PyTorch.
pub(super) fn yolo_detection_output(s: &Site, c: &mut Code) -> Result<()> {
    let p = s.l.param.yolo_detection_output_param.clone().unwrap_or_default();
    let maps: Vec<String> = (0..s.l.bottoms.len()).map(|k| s.b(k).to_string()).collect();
    let biases: Vec<String> = p.biases.iter().map(|&v| f(v)).collect();
    c.helper("caffe_yolo_detection_output");
    c.assign(
        &s.tops,
        format!(
            "caffe_yolo_detection_output([{}], {}, {}, {}, {}, [{}])",
            maps.join(", "),
            p.num_classes(),
            p.num_box(),
            f(p.confidence_threshold()),
            f(p.nms_threshold()),
            biases.join(", ")
        ),
    );
    Ok(())
}
