//! ROIPooling (Fast R-CNN's fork): max pooling of regions of interest.
use tch::Tensor;

use super::{region_count, region_image};
use crate::bail;
use crate::layers::legacy_dims;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::RoiPoolingParameter;
use crate::util::tensor_values;
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ROIPooling",
        family: family_of(file!()),
        params: "roi_pooling_param.pooled_h, pooled_w, spatial_scale; bottom[1]: R×5 regions [batch index, x1, y1, \
                 x2, y2]; the gradient goes to each bin's first maximum, none to the regions (Fast R-CNN's fork)",
        tests: "layers_detection: roi_pooling_* (bins worked out by hand, empty bins, the gradient, errors); \
                python/tests/test_fork_layers_opencv.py",
        create: |p| Ok(Box::new(RoiPooling::new(p.roi_pooling_param.unwrap_or_default())?)),
    });
}

/// For each region [b, x1, y1, x2, y2] (bottom[1], one row of 5 per region),
/// the corners are scaled by spatial_scale and rounded to feature-map cells;
/// the region (at least one cell each way) is cut into pooled_h × pooled_w
/// bins, bin (ph, pw) covering rows floor(ph·h/pooled_h) to
/// ceil((ph + 1)·h/pooled_h) (f32, as the fork computes them) clipped to
/// the map, and each bin is the maximum of bottom[0]'s image b there (0 for
/// a bin wholly off the map). Top: R × C × pooled_h × pooled_w.
pub struct RoiPooling {
    pooled: (i64, i64),
    spatial_scale: f32,
}

/// One region's cells on the map: its first row and column, and its size.
struct Region {
    image: i64,
    start: (i64, i64),
    size: (i64, i64),
}

impl RoiPooling {
    fn new(p: RoiPoolingParameter) -> Result<Self> {
        if p.pooled_h() == 0 || p.pooled_w() == 0 {
            bail!("roi_pooling_param.pooled_h and pooled_w must be > 0, got {} and {}", p.pooled_h(), p.pooled_w());
        }
        Ok(RoiPooling { pooled: (p.pooled_h() as i64, p.pooled_w() as i64), spatial_scale: p.spatial_scale() })
    }

    fn check(&self, bottoms: &[Shape]) -> Result<(i64, [i64; 4])> {
        Ok((region_count(&bottoms[1])?, legacy_dims(&bottoms[0])?))
    }

    fn region(&self, roi: &[f32], batch: i64) -> Result<Region> {
        let image = region_image(roi, batch)?;
        // Casts saturate, and so does the arithmetic on them: a corner far off
        // the map only empties its bins.
        let cell = |v: f32| (v * self.spatial_scale).round() as i64;
        let (x1, y1, x2, y2) = (cell(roi[1]), cell(roi[2]), cell(roi[3]), cell(roi[4]));
        let extent = |lo: i64, hi: i64| hi.saturating_sub(lo).saturating_add(1).max(1);
        Ok(Region { image, start: (y1, x1), size: (extent(y1, y2), extent(x1, x2)) })
    }

    /// The fork's bins along one axis: [start, end) per bin, clipped to the map.
    fn bins(start: i64, size: i64, pooled: i64, extent: i64) -> Vec<(i64, i64)> {
        let bin = size as f32 / pooled as f32;
        (0..pooled)
            .map(|p| {
                let lo = ((p as f32 * bin).floor() as i64).saturating_add(start);
                let hi = (((p + 1) as f32 * bin).ceil() as i64).saturating_add(start);
                (lo.clamp(0, extent), hi.clamp(0, extent))
            })
            .collect()
    }
}

impl Layer for RoiPooling {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        let (regions, x) = self.check(bottoms)?;
        Ok(SetupOut { tops: vec![vec![regions, x[1], self.pooled.0, self.pooled.1]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let (regions, [n, c, h, w]) = self.check(&shapes)?;
        let x = bottoms[0].f_reshape([n, c, h, w])?;
        let rois = tensor_values(&bottoms[1])?;
        let (ph, pw) = self.pooled;
        let mut pooled = Vec::with_capacity(regions as usize);
        for roi in rois.chunks_exact(5) {
            let r = self.region(roi, n)?;
            let image = x.f_select(0, r.image)?;
            let (rows, cols) = (Self::bins(r.start.0, r.size.0, ph, h), Self::bins(r.start.1, r.size.1, pw, w));
            if adaptive_bins(r.start.0, r.size.0, h, &rows) && adaptive_bins(r.start.1, r.size.1, w, &cols) {
                // A region on the map whose bins are adaptive pooling's (all but
                // where f32 rounding crosses an integer): libtorch's kernel, which
                // also keeps each bin's first maximum.
                let crop = image.f_narrow(1, r.start.0, r.size.0)?.f_narrow(2, r.start.1, r.size.1)?;
                pooled.push(crop.f_adaptive_max_pool2d([ph, pw])?.0);
            } else {
                // Separable: the maximum over each bin's columns, then over its rows.
                let columns = bin_max(&image, 2, &cols)?;
                pooled.push(bin_max(&columns, 1, &rows)?);
            }
        }
        let top = if pooled.is_empty() {
            Tensor::f_zeros([0, c, ph, pw], (x.kind(), x.device()))?
        } else {
            Tensor::f_stack(&pooled, 0)?
        };
        // The fork starts each bin at -FLT_MAX: a bin of -inf stays there.
        Ok(vec![top.f_clamp_min(-(f32::MAX as f64))?])
    }
}

/// The maximum of each bin [lo, hi) of `t` along `dim` (0 for an empty bin),
/// the bins taking `dim`'s place. Each bin's cells are gathered into a row
/// padded with its last cell, so one max_dim serves every bin: it keeps the
/// first maximum, the fork's argmax, and sends the gradient there alone.
fn bin_max(t: &Tensor, dim: i64, bins: &[(i64, i64)]) -> Result<Tensor> {
    let mut shape = t.size();
    let d = dim as usize;
    let widest = bins.iter().map(|&(lo, hi)| hi - lo).max().unwrap_or(0);
    if widest <= 0 {
        shape[d] = bins.len() as i64;
        return Ok(Tensor::f_zeros(shape.as_slice(), (t.kind(), t.device()))?);
    }
    let mut index = Vec::with_capacity(bins.len() * widest as usize);
    let mut empty = Vec::with_capacity(bins.len());
    for &(lo, hi) in bins {
        empty.push(hi <= lo);
        index.extend((0..widest).map(|k| if hi > lo { lo + k.min(hi - lo - 1) } else { 0 }));
    }
    let index = Tensor::f_from_slice(&index)?.f_to_device(t.device())?;
    let mut split = shape.clone();
    split.splice(d..=d, [bins.len() as i64, widest]);
    let maxima = t.f_index_select(dim, &index)?.f_reshape(split.as_slice())?.f_max_dim(dim + 1, false)?.0;
    let mut mask_shape = vec![1i64; shape.len()];
    mask_shape[d] = bins.len() as i64;
    let mask = Tensor::f_from_slice(&empty)?.f_to_device(t.device())?.f_reshape(mask_shape.as_slice())?;
    Ok(maxima.f_masked_fill(&mask, 0.0)?)
}

/// Whether a region's bins along one axis are those of adaptive pooling over
/// the region: the region lies on the map (no clipping), and each bin is
/// [floor(p·size/pooled), ceil((p + 1)·size/pooled)) in exact arithmetic.
fn adaptive_bins(start: i64, size: i64, extent: i64, bins: &[(i64, i64)]) -> bool {
    let pooled = bins.len() as i64;
    start >= 0
        && start.saturating_add(size) <= extent
        && bins.iter().enumerate().all(|(p, &(lo, hi))| {
            let p = p as i64;
            lo - start == p * size / pooled && hi - start == ((p + 1) * size + pooled - 1) / pooled
        })
}
