//! PSROIPooling (R-FCN's fork, daijifeng001/caffe-rfcn): position-sensitive
//! average pooling of regions of interest.
use tch::{Kind, Tensor};

use super::{region_count, region_image};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, legacy_dims, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::PsroiPoolingParameter;
use crate::util::tensor_values;
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "PSROIPooling",
        family: family_of(file!()),
        params: "psroi_pooling_param.spatial_scale, output_dim, group_size; bottom[1]: R×5 regions [batch index, x1, \
                 y1, x2, y2] (R-FCN's fork; the regions get no gradient)",
        tests: "layers_detection: psroi_pooling_* (bins worked out by hand, empty bins, the gradient, errors); \
                python/tests/test_fork_layers_opencv.py",
        create: |p| Ok(Box::new(PsroiPooling::new(p.psroi_pooling_param.unwrap_or_default())?)),
    });
}

/// For each region [b, x1, y1, x2, y2], corners rounded (half away from zero)
/// then scaled by spatial_scale, the end one pixel further ([x1, x2 + 1)),
/// at least 0.1 cells each way, cut into group_size × group_size bins, bin
/// (i, j) covering rows floor(i·h/g + y1) to ceil((i + 1)·h/g + y1) clipped to
/// the map (f32, as the fork computes them). Top channel k of bin (i, j) is
/// the mean of bottom channel (k·g + i)·g + j of image b over the bin (0 for
/// an empty bin). Top: R × output_dim × g × g.
pub struct PsroiPooling {
    spatial_scale: f32,
    output_dim: i64,
    group: i64,
}

impl PsroiPooling {
    fn new(p: PsroiPoolingParameter) -> Result<Self> {
        if p.output_dim() <= 0 || p.group_size() <= 0 {
            bail!(
                "psroi_pooling_param.output_dim and group_size must be > 0, got {} and {}",
                p.output_dim(),
                p.group_size()
            );
        }
        if !p.spatial_scale().is_finite() {
            bail!("psroi_pooling_param.spatial_scale must be finite, got {}", p.spatial_scale());
        }
        Ok(PsroiPooling {
            spatial_scale: p.spatial_scale(),
            output_dim: p.output_dim() as i64,
            group: p.group_size() as i64,
        })
    }

    fn check(&self, bottoms: &[Shape]) -> Result<(i64, [i64; 4])> {
        check_bottoms(bottoms, 2, 2)?;
        let x = legacy_dims(&bottoms[0])?;
        let regions = region_count(&bottoms[1])?;
        let want = self.output_dim.saturating_mul(self.group).saturating_mul(self.group);
        if x[1] != want {
            bail!(
                "bottom[0] has {} channels; output_dim {} × group_size² {} needs {want}",
                x[1],
                self.output_dim,
                self.group * self.group
            );
        }
        Ok((regions, x))
    }

    /// One axis's bins of a region from `lo` to `hi` (image pixels): [start,
    /// end) per bin, clipped to `extent` cells.
    fn bins(&self, lo: f32, hi: f32, extent: i64) -> Vec<(i64, i64)> {
        let start = lo.round() * self.spatial_scale;
        let end = (hi.round() + 1.0) * self.spatial_scale;
        let bin = (end - start).max(0.1) / self.group as f32;
        (0..self.group)
            .map(|p| {
                let a = (p as f32 * bin + start).floor() as i64;
                let b = ((p + 1) as f32 * bin + start).ceil() as i64;
                (a.clamp(0, extent), b.clamp(0, extent))
            })
            .collect()
    }
}

impl Layer for PsroiPooling {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        let (regions, _) = self.check(bottoms)?;
        Ok(SetupOut { tops: vec![vec![regions, self.output_dim, self.group, self.group]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let (regions, [n, c, h, w]) = self.check(&shapes)?;
        let x = bottoms[0].f_reshape([n, c, h, w])?;
        let rois = tensor_values(&bottoms[1])?;
        let g = self.group;
        // Bin sums from an integral image, summed in f64 so a sum over a
        // large map keeps f32's precision.
        let integral = x
            .f_to_kind(Kind::Double)?
            .f_cumsum(2, Kind::Double)?
            .f_cumsum(3, Kind::Double)?
            .f_constant_pad_nd([1, 0, 1, 0])?
            .f_reshape([-1])?;
        let (hp, wp) = (h + 1, w + 1);
        let count = (regions * self.output_dim * g * g) as usize;
        let mut corners: [Vec<i64>; 4] = std::array::from_fn(|_| Vec::with_capacity(count));
        let mut areas = Vec::with_capacity(count);
        for roi in rois.chunks_exact(5) {
            let image = region_image(roi, n)?;
            let (rows, cols) = (self.bins(roi[2], roi[4], h), self.bins(roi[1], roi[3], w));
            for k in 0..self.output_dim {
                for (i, &(h0, h1)) in rows.iter().enumerate() {
                    for (j, &(w0, w1)) in cols.iter().enumerate() {
                        let channel = (k * g + i as i64) * g + j as i64;
                        let base = (image * c + channel) * hp * wp;
                        let (h1, w1) = (h1.max(h0), w1.max(w0));
                        for (slot, (r, col)) in [(h1, w1), (h0, w1), (h1, w0), (h0, w0)].into_iter().enumerate() {
                            corners[slot].push(base + r * wp + col);
                        }
                        areas.push(((h1 - h0) * (w1 - w0)) as f64);
                    }
                }
            }
        }
        let device = x.device();
        let at = |v: &[i64]| -> Result<Tensor> { Ok(integral.f_take(&Tensor::f_from_slice(v)?.f_to_device(device)?)?) };
        let [a, b, cc, d] = &corners;
        let sums = at(a)?.f_sub(&at(b)?)?.f_sub(&at(cc)?)?.f_add(&at(d)?)?;
        let area = Tensor::f_from_slice(&areas)?.f_to_device(device)?;
        // An empty bin is 0 (its sum is 0; the area 1 keeps 0/0 away).
        let mean = sums.f_div(&area.f_clamp_min(1.0)?)?;
        let top = mean.f_to_kind(x.kind())?.f_reshape([regions, self.output_dim, g, g])?;
        Ok(vec![top])
    }
}
