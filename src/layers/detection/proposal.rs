//! Proposal: Faster R-CNN's region proposals. py-faster-rcnn has them as a
//! Python layer (`rpn.proposal_layer`); OpenCV's Caffe importer, OpenVINO and
//! several forks as a native `Proposal` layer with `proposal_param`, which is
//! this one. The rules are py-faster-rcnn's, in f32 as its numpy code runs:
//! 1. anchors: for each ratio, a box of base_size² area with that aspect
//!    ratio (sides rounded half to even, as numpy rounds), scaled by each
//!    scale, centred on the base box's centre, placed at every cell of the
//!    map (`feat_stride` pixels apart), in the order (row, column, anchor);
//! 2. each anchor moved by its deltas (dx, dy, dw, dh) from bottom[1]
//!    (width = x2 − x1 + 1, centre x1 + width/2), clipped to the image of
//!    bottom[2]'s [height, width, scale];
//! 3. boxes with a side under min_size·scale dropped;
//! 4. the foreground scores (bottom[0]'s second half of channels) sorted
//!    from the highest, the first pre_nms_topn kept;
//! 5. non-maximum suppression: a box overlapping a kept one by an IoU over
//!    nms_thresh (areas with the +1 of pixel boxes) is dropped; the first
//!    post_nms_topn kept.
//!
//! Top 0: R × 5 regions [image, x1, y1, x2, y2] (image 0 for a batch of one,
//! as in py-faster-rcnn; each image's regions in turn for a larger batch, with
//! its own row of bottom[2]); top 1 (optional): their R × 1 scores. No gradient.
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, legacy_dims, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::ProposalParameter;
use crate::util::tensor_values;
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Proposal",
        family: family_of(file!()),
        params: "proposal_param: feat_stride, base_size, min_size, ratio, scale, pre_nms_topn, post_nms_topn, \
                 nms_thresh (OpenCV's and OpenVINO's; py-faster-rcnn's rules); bottoms: scores (N×2A×H×W), deltas \
                 (N×4A×H×W), im_info (N×3); tops: regions, optional scores",
        tests: "layers_detection: proposal_* (anchors, decoding, clipping, min size, order, suppression, errors); \
                python/tests/test_fork_layers_opencv.py (py-faster-rcnn's rules written out in numpy; OpenCV 4.14)",
        create: |p| Ok(Box::new(Proposal::new(p.proposal_param.clone().unwrap_or_default(), p.top.len())?)),
    });
}

pub struct Proposal {
    p: ProposalParameter,
    /// (x1, y1, x2, y2) of each anchor at cell (0, 0).
    anchors: Vec<[f32; 4]>,
    with_scores: bool,
}

/// py-faster-rcnn's anchors (its generate_anchors) for a base box of
/// `base_size` pixels, in the order ratio-major, scale-minor.
pub fn generate_anchors(base_size: f64, ratios: &[f64], scales: &[f64]) -> Vec<[f32; 4]> {
    // A box (w, h) centred at (cx, cy), as pixel corners.
    let corners = |w: f64, h: f64, cx: f64, cy: f64| {
        [cx - 0.5 * (w - 1.0), cy - 0.5 * (h - 1.0), cx + 0.5 * (w - 1.0), cy + 0.5 * (h - 1.0)]
    };
    let base = [0.0, 0.0, base_size - 1.0, base_size - 1.0];
    let (w, h) = (base[2] - base[0] + 1.0, base[3] - base[1] + 1.0);
    let (cx, cy) = (base[0] + 0.5 * (w - 1.0), base[1] + 0.5 * (h - 1.0));
    let mut anchors = Vec::new();
    for &ratio in ratios {
        let rw = (w * h / ratio).sqrt().round_ties_even();
        let rh = (rw * ratio).round_ties_even();
        let r = corners(rw, rh, cx, cy);
        let (rw, rh) = (r[2] - r[0] + 1.0, r[3] - r[1] + 1.0);
        let (rcx, rcy) = (r[0] + 0.5 * (rw - 1.0), r[1] + 0.5 * (rh - 1.0));
        for &scale in scales {
            let a = corners(rw * scale, rh * scale, rcx, rcy);
            anchors.push([a[0] as f32, a[1] as f32, a[2] as f32, a[3] as f32]);
        }
    }
    anchors
}

/// Pixel boxes' intersection over union, with py-faster-rcnn's +1.
fn iou(a: &[f32; 4], b: &[f32; 4], area_a: f32, area_b: f32) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = w * h;
    inter / (area_a + area_b - inter)
}

impl Proposal {
    fn new(p: ProposalParameter, tops: usize) -> Result<Self> {
        let ratios: Vec<f64> =
            if p.ratio.is_empty() { vec![0.5, 1.0, 2.0] } else { p.ratio.iter().map(|&r| r as f64).collect() };
        let scales: Vec<f64> =
            if p.scale.is_empty() { vec![8.0, 16.0, 32.0] } else { p.scale.iter().map(|&s| s as f64).collect() };
        if let Some(bad) = ratios.iter().chain(&scales).find(|v| !(v.is_finite() && **v > 0.0)) {
            bail!("proposal_param's ratios and scales must be positive, got {bad}");
        }
        if p.feat_stride() == 0 || p.base_size() == 0 {
            bail!("proposal_param.feat_stride and base_size must be positive");
        }
        if !(0.0..=1.0).contains(&p.nms_thresh()) {
            bail!("proposal_param.nms_thresh must be in [0, 1], got {}", p.nms_thresh());
        }
        if !(1..=2).contains(&tops) && tops != 0 {
            bail!("Proposal gives 1 or 2 tops (regions, and their scores), got {tops}");
        }
        let anchors = generate_anchors(p.base_size() as f64, &ratios, &scales);
        Ok(Proposal { p, anchors, with_scores: tops == 2 })
    }

    /// The layer a `proposal_param` describes (the exporters read its anchors).
    pub fn from_param(p: ProposalParameter) -> Result<Self> {
        Proposal::new(p, 1)
    }

    /// The anchors at cell (0, 0), as (x1, y1, x2, y2).
    pub fn anchors(&self) -> &[[f32; 4]] {
        &self.anchors
    }

    fn check(&self, bottoms: &[Shape]) -> Result<[i64; 4]> {
        check_bottoms(bottoms, 3, 3)?;
        let [n, c, h, w] = legacy_dims(&bottoms[0])?;
        let a = self.anchors.len() as i64;
        if c != 2 * a {
            bail!("bottom[0] (scores) has {c} channels; {a} anchors need {} (background, then foreground)", 2 * a);
        }
        let deltas = legacy_dims(&bottoms[1])?;
        if deltas != [n, 4 * a, h, w] {
            bail!(
                "bottom[1] (deltas) has shape {:?}; {a} anchors on the scores' map need {:?}",
                bottoms[1],
                [n, 4 * a, h, w]
            );
        }
        let info = &bottoms[2];
        let per_image = info.iter().skip(1).product::<i64>();
        if info.is_empty() || per_image < 3 || (info[0] != n && info[0] != 1) {
            bail!("bottom[2] (im_info) must hold [height, width, scale] per image (or one row for all), got shape {info:?}");
        }
        Ok([n, a, h, w])
    }

    /// One image's regions and scores.
    fn propose(
        &self,
        scores: &[f32],
        deltas: &[f32],
        info: [f32; 3],
        a: usize,
        h: usize,
        w: usize,
    ) -> Vec<([f32; 4], f32)> {
        let p = &self.p;
        let stride = p.feat_stride() as f32;
        let (im_h, im_w, im_scale) = (info[0], info[1], info[2]);
        let min_size = p.min_size() as f32 * im_scale;
        let plane = h * w;
        let mut boxes = Vec::with_capacity(plane * a);
        for y in 0..h {
            for x in 0..w {
                for (k, anchor) in self.anchors.iter().enumerate() {
                    let (sx, sy) = (x as f32 * stride, y as f32 * stride);
                    let (x1, y1, x2, y2) = (anchor[0] + sx, anchor[1] + sy, anchor[2] + sx, anchor[3] + sy);
                    let d = |j: usize| deltas[(4 * k + j) * plane + y * w + x];
                    let (bw, bh) = (x2 - x1 + 1.0, y2 - y1 + 1.0);
                    let (cx, cy) = (x1 + 0.5 * bw, y1 + 0.5 * bh);
                    let (pcx, pcy) = (d(0) * bw + cx, d(1) * bh + cy);
                    let (pw, ph) = (d(2).exp() * bw, d(3).exp() * bh);
                    let clip = |v: f32, hi: f32| v.min(hi - 1.0).max(0.0);
                    let b = [
                        clip(pcx - 0.5 * pw, im_w),
                        clip(pcy - 0.5 * ph, im_h),
                        clip(pcx + 0.5 * pw, im_w),
                        clip(pcy + 0.5 * ph, im_h),
                    ];
                    if b[2] - b[0] + 1.0 >= min_size && b[3] - b[1] + 1.0 >= min_size {
                        // The foreground scores are the second half of the channels.
                        boxes.push((b, scores[(a + k) * plane + y * w + x]));
                    }
                }
            }
        }
        // numpy's argsort()[::-1]: the highest first, ties with the later box first.
        let mut order: Vec<usize> = (0..boxes.len()).collect();
        order.sort_by(|&i, &j| boxes[j].1.total_cmp(&boxes[i].1).then(j.cmp(&i)));
        if p.pre_nms_topn() > 0 {
            order.truncate(p.pre_nms_topn() as usize);
        }
        let area = |b: &[f32; 4]| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
        let areas: Vec<f32> = order.iter().map(|&i| area(&boxes[i].0)).collect();
        let mut suppressed = vec![false; order.len()];
        let mut kept = Vec::new();
        for i in 0..order.len() {
            if suppressed[i] {
                continue;
            }
            kept.push(boxes[order[i]]);
            if p.post_nms_topn() > 0 && kept.len() == p.post_nms_topn() as usize {
                break;
            }
            for j in i + 1..order.len() {
                if !suppressed[j] && iou(&boxes[order[i]].0, &boxes[order[j]].0, areas[i], areas[j]) > p.nms_thresh() {
                    suppressed[j] = true;
                }
            }
        }
        kept
    }
}

impl Layer for Proposal {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        self.check(bottoms)?;
        let mut tops = vec![vec![1, 5]];
        if self.with_scores {
            tops.push(vec![1, 1]);
        }
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let [n, a, h, w] = self.check(&shapes)?;
        let (scores, deltas, info) =
            (tensor_values(&bottoms[0])?, tensor_values(&bottoms[1])?, tensor_values(&bottoms[2])?);
        let per_image = info.len() / shapes[2][0].max(1) as usize;
        let (a, h, w) = (a as usize, h as usize, w as usize);
        let mut rows: Vec<f32> = Vec::new();
        let mut kept_scores: Vec<f32> = Vec::new();
        for image in 0..n as usize {
            let row = if shapes[2][0] == 1 { 0 } else { image * per_image };
            let im_info = [info[row], info[row + 1], info[row + 2]];
            if im_info.iter().any(|v| !v.is_finite()) || im_info[0] < 1.0 || im_info[1] < 1.0 {
                bail!("image {image}'s im_info [height, width, scale] is {im_info:?}; its height and width must be at least 1");
            }
            let s = &scores[image * 2 * a * h * w..(image + 1) * 2 * a * h * w];
            let d = &deltas[image * 4 * a * h * w..(image + 1) * 4 * a * h * w];
            for (b, score) in self.propose(s, d, im_info, a, h, w) {
                rows.extend([image as f32, b[0], b[1], b[2], b[3]]);
                kept_scores.push(score);
            }
        }
        let device = bottoms[0].device();
        let count = kept_scores.len() as i64;
        let kind = bottoms[0].kind();
        let regions = Tensor::f_from_slice(&rows)?.f_reshape([count, 5])?.f_to_kind(kind)?.f_to_device(device)?;
        let mut tops = vec![regions];
        if self.with_scores {
            tops.push(Tensor::f_from_slice(&kept_scores)?.f_reshape([count, 1])?.f_to_kind(kind)?.f_to_device(device)?);
        }
        Ok(tops)
    }
}
