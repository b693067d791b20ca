//! The SSD fork's box arithmetic on normalized boxes, shared by its layers
//! (DetectionOutput, MultiBoxLoss, AnnotatedData's crops): overlap, coding
//! against a prior, and the suppression MultiBoxLoss mines with.
use crate::bail;
use crate::proto::caffe::prior_box_parameter::CodeType;
use crate::proto::caffe::ssd_resize_parameter::ResizeMode;
use crate::proto::caffe::SsdResizeParameter;
use crate::Result;

/// A box in normalized coordinates and its area (0 where it is inverted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BBox {
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
    pub size: f32,
}

impl BBox {
    pub fn new(xmin: f32, ymin: f32, xmax: f32, ymax: f32) -> Self {
        let size = if xmax < xmin || ymax < ymin { 0.0 } else { (xmax - xmin) * (ymax - ymin) };
        BBox { xmin, ymin, xmax, ymax, size }
    }

    pub fn from_slice(v: &[f32]) -> Self {
        BBox::new(v[0], v[1], v[2], v[3])
    }

    pub fn corners(&self) -> [f32; 4] {
        [self.xmin, self.ymin, self.xmax, self.ymax]
    }

    /// The overlap with another box; None where they do not touch.
    pub fn intersection(&self, o: &BBox) -> Option<BBox> {
        if o.xmin > self.xmax || o.xmax < self.xmin || o.ymin > self.ymax || o.ymax < self.ymin {
            return None;
        }
        Some(BBox::new(self.xmin.max(o.xmin), self.ymin.max(o.ymin), self.xmax.min(o.xmax), self.ymax.min(o.ymax)))
    }

    /// Intersection over union; 0 where they do not overlap.
    pub fn jaccard(&self, o: &BBox) -> f32 {
        let Some(i) = self.intersection(o) else { return 0.0 };
        let (w, h) = (i.xmax - i.xmin, i.ymax - i.ymin);
        if w > 0.0 && h > 0.0 {
            let inter = w * h;
            inter / (self.size + o.size - inter)
        } else {
            0.0
        }
    }

    /// The share of this box that `o` covers.
    pub fn coverage_by(&self, o: &BBox) -> f32 {
        match self.intersection(o) {
            Some(i) if self.size > 0.0 => i.size / self.size,
            _ => 0.0,
        }
    }

    /// Whether a corner lies outside the unit square.
    pub fn crosses_boundary(&self) -> bool {
        self.corners().iter().any(|&v| !(0.0..=1.0).contains(&v))
    }
}

/// How boxes are coded against their prior, and whether the prior's
/// variances are part of the code (detection_output_param's and
/// multibox_loss_param's code_type and variance flag).
#[derive(Clone, Copy, Debug)]
pub struct BoxCoder {
    pub code_type: CodeType,
    pub variance_in_target: bool,
}

fn check_area(prior: &BBox, what: &str) -> Result<(f32, f32)> {
    let (w, h) = (prior.xmax - prior.xmin, prior.ymax - prior.ymin);
    if !(w > 0.0 && h > 0.0) {
        bail!(
            "a {what} box has no area ({}, {}, {}, {}): it cannot be coded against",
            prior.xmin,
            prior.ymin,
            prior.xmax,
            prior.ymax
        );
    }
    Ok((w, h))
}

impl BoxCoder {
    fn variances(&self, var: &[f32]) -> [f32; 4] {
        if self.variance_in_target {
            [1.0; 4]
        } else {
            [var[0], var[1], var[2], var[3]]
        }
    }

    /// The fork's DecodeBBox (unclipped): a location prediction against its prior.
    pub fn decode(&self, prior: &BBox, var: &[f32], b: &[f32]) -> Result<BBox> {
        let v = self.variances(var);
        Ok(match self.code_type {
            CodeType::Corner => BBox::new(
                prior.xmin + v[0] * b[0],
                prior.ymin + v[1] * b[1],
                prior.xmax + v[2] * b[2],
                prior.ymax + v[3] * b[3],
            ),
            CodeType::CenterSize => {
                let (pw, ph) = check_area(prior, "prior")?;
                let pcx = (prior.xmin + prior.xmax) / 2.0;
                let pcy = (prior.ymin + prior.ymax) / 2.0;
                let cx = v[0] * b[0] * pw + pcx;
                let cy = v[1] * b[1] * ph + pcy;
                let w = (v[2] * b[2]).exp() * pw;
                let h = (v[3] * b[3]).exp() * ph;
                BBox::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
            }
            CodeType::CornerSize => {
                let (pw, ph) = check_area(prior, "prior")?;
                BBox::new(
                    prior.xmin + v[0] * b[0] * pw,
                    prior.ymin + v[1] * b[1] * ph,
                    prior.xmax + v[2] * b[2] * pw,
                    prior.ymax + v[3] * b[3] * ph,
                )
            }
        })
    }

    /// The fork's EncodeBBox: the code that decodes to `b` against `prior`.
    pub fn encode(&self, prior: &BBox, var: &[f32], b: &BBox) -> Result<[f32; 4]> {
        let v = self.variances(var);
        if !self.variance_in_target && v.iter().any(|&x| x.is_nan() || x <= 0.0) {
            bail!("a prior's variances {v:?} must be positive to code a box against it");
        }
        Ok(match self.code_type {
            CodeType::Corner => [
                (b.xmin - prior.xmin) / v[0],
                (b.ymin - prior.ymin) / v[1],
                (b.xmax - prior.xmax) / v[2],
                (b.ymax - prior.ymax) / v[3],
            ],
            CodeType::CenterSize => {
                let (pw, ph) = check_area(prior, "prior")?;
                let (bw, bh) = check_area(b, "ground-truth")?;
                let (pcx, pcy) = ((prior.xmin + prior.xmax) / 2.0, (prior.ymin + prior.ymax) / 2.0);
                let (bcx, bcy) = ((b.xmin + b.xmax) / 2.0, (b.ymin + b.ymax) / 2.0);
                [(bcx - pcx) / pw / v[0], (bcy - pcy) / ph / v[1], (bw / pw).ln() / v[2], (bh / ph).ln() / v[3]]
            }
            CodeType::CornerSize => {
                let (pw, ph) = check_area(prior, "prior")?;
                [
                    (b.xmin - prior.xmin) / pw / v[0],
                    (b.ymin - prior.ymin) / ph / v[1],
                    (b.xmax - prior.xmax) / pw / v[2],
                    (b.ymax - prior.ymax) / ph / v[3],
                ]
            }
        })
    }
}

/// Higher scores first; equal ones keep their order (the sorts are stable).
/// The images and priors an SSD head's bottoms give (location predictions,
/// confidences, PriorBox's boxes and variances), checked against each other
/// as the fork checks them; `whole_axis`: each prediction bottom must also
/// hold an image's values on its axis 1 (DetectionOutput's check).
pub fn prediction_dims(
    bottoms: &[crate::layers::Shape],
    loc_classes: usize,
    num_classes: usize,
    whole_axis: bool,
) -> Result<(i64, i64)> {
    let loc = crate::layers::legacy_dims(&bottoms[0])?;
    let conf = crate::layers::legacy_dims(&bottoms[1])?;
    let prior = crate::layers::legacy_dims(&bottoms[2])?;
    if loc[0] != conf[0] {
        bail!(
            "the location (bottom[0]) and confidence (bottom[1]) predictions are for {} and {} images",
            loc[0],
            conf[0]
        );
    }
    let priors = prior[2] / 4;
    if prior[1] < 2 || bottoms[2].iter().product::<i64>() < 2 * priors * 4 {
        bail!("bottom[2] must be PriorBox's 1×2×(priors·4) boxes and variances, got shape {:?}", bottoms[2]);
    }
    let per_image = |s: &[i64]| s.iter().skip(1).product::<i64>();
    // Products a crafted num_classes could overflow count as a mismatch.
    let want_loc = priors.checked_mul(loc_classes as i64 * 4).unwrap_or(-1);
    if (whole_axis && loc[1] != want_loc) || per_image(&bottoms[0]) != want_loc {
        bail!(
            "Number of priors must match number of location predictions: {priors} priors × {loc_classes} location \
             classes × 4 is {want_loc}, but bottom[0] has shape {:?}",
            bottoms[0]
        );
    }
    let want_conf = priors.checked_mul(num_classes as i64).unwrap_or(-1);
    if (whole_axis && conf[1] != want_conf) || per_image(&bottoms[1]) != want_conf {
        bail!(
            "Number of priors must match number of confidence predictions: {priors} priors × {num_classes} classes \
             is {want_conf}, but bottom[1] has shape {:?}",
            bottoms[1]
        );
    }
    Ok((loc[0], priors))
}

pub fn descending(a: f32, b: f32) -> std::cmp::Ordering {
    b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
}

/// The fork's ApplyNMS (the one MultiBoxLoss mines with): boxes by score,
/// best first, at most top_k kept (-1: all); boxes smaller than 1e-5 are
/// dropped, and so is each box overlapping a kept one by more than
/// `threshold`. Returns indices into `boxes`.
pub fn suppress(boxes: &[BBox], scores: &[f32], threshold: f32, top_k: i32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| descending(scores[a], scores[b]));
    if top_k > -1 {
        order.truncate(top_k as usize);
    }
    let mut kept = Vec::new();
    let mut alive = vec![true; order.len()];
    for (k, &best) in order.iter().enumerate() {
        if !alive[k] || boxes[best].size < 1e-5 {
            continue;
        }
        kept.push(best);
        if top_k > -1 && kept.len() >= top_k as usize {
            break;
        }
        for (l, &other) in order.iter().enumerate().skip(k + 1) {
            if alive[l] && boxes[other].size >= 1e-5 && boxes[best].jaccard(&boxes[other]) > threshold {
                alive[l] = false;
            }
        }
    }
    kept
}

/// A normalized box in pixels of a `height` × `width` image (the fork's
/// OutputBBox): clipped to the image, mapped back through the test
/// transform's FIT_LARGE_SIZE_AND_PAD resize where there is one, scaled.
pub fn to_pixels(b: &BBox, (height, width): (f32, f32), resize: Option<&SsdResizeParameter>) -> BBox {
    let clip = |b: &BBox| {
        BBox::new(b.xmin.clamp(0.0, 1.0), b.ymin.clamp(0.0, 1.0), b.xmax.clamp(0.0, 1.0), b.ymax.clamp(0.0, 1.0))
    };
    let mut b = clip(b);
    if let Some(r) = resize.filter(|r| r.resize_mode() == ResizeMode::FitLargeSizeAndPad) {
        let (rh, rw) = (r.height() as f32, r.width() as f32);
        let aspect = width / height;
        let source = if aspect > rw / rh {
            let pad = (rh - rw / aspect) / 2.0;
            BBox::new(0.0, pad / rh, 1.0, 1.0 - pad / rh)
        } else {
            let pad = (rw - rh * aspect) / 2.0;
            BBox::new(pad / rw, 0.0, 1.0 - pad / rw, 1.0)
        };
        let (sw, sh) = (source.xmax - source.xmin, source.ymax - source.ymin);
        b = clip(&BBox::new(
            (b.xmin - source.xmin) / sw,
            (b.ymin - source.ymin) / sh,
            (b.xmax - source.xmin) / sw,
            (b.ymax - source.ymin) / sh,
        ));
    }
    BBox::new(b.xmin * width, b.ymin * height, b.xmax * width, b.ymax * height)
}
