//! Im2col: the convolution's column buffer as a blob, N-D, with Caffe's
//! layout. For a bottom (…, C, d1..dk) at `axis` (the channel axis) the top is
//! (…, C·K1·…·Kk, o1..ok): channel `c·K + kernel offset` (kernel offsets in
//! row-major order) at output position (o1..ok) holds the input under that
//! kernel tap, 0 in the padding. The geometry fields are the convolution's
//! (kernel_size/kernel_h/kernel_w, stride, pad, dilation, axis).
use crate::Result;
use tch::Tensor;

use super::base_conv::{geometry, Geometry};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{ConvolutionParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Im2col",
        family: family_of(file!()),
        params: "convolution_param: kernel_size|kernel_h/w, stride|stride_h/w, pad|pad_h/w, dilation, axis (force_nd_im2col: same result)",
        tests: "layers_vision (naive im2col reference in 1-D, 2-D and 3-D, gradient check)",
        create: |p| Ok(Box::new(Im2col::new(p))),
    });
}

pub struct Im2col {
    p: ConvolutionParameter,
    axis: usize,
    geom: Option<Geometry>,
}

impl Im2col {
    fn new(lp: &LayerParameter) -> Self {
        Im2col { p: lp.convolution_param.clone().unwrap_or_default(), axis: 1, geom: None }
    }
}

/// Output size of one spatial axis, Caffe's conv rule.
fn out_size(input: i64, g: &Geometry, i: usize) -> i64 {
    let extent = g.dilation[i] * (g.kernel[i] - 1) + 1;
    (input + 2 * g.pad[i] - extent) / g.stride[i] + 1
}

impl Layer for Im2col {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        self.axis = canonical_axis(self.p.axis(), s.len())?;
        let n_spatial = s.len() - self.axis - 1;
        if n_spatial == 0 {
            bail!("im2col needs at least one spatial axis after the channel axis {} (bottom {s:?})", self.axis);
        }
        let g = geometry(&self.p, n_spatial)?;
        if g.dilation.iter().any(|&d| d <= 0) {
            bail!("dilation must be positive, got {:?}", g.dilation);
        }
        let mut top = s.clone();
        for i in 0..n_spatial {
            top[self.axis] *= g.kernel[i];
            let o = out_size(s[self.axis + 1 + i], &g, i);
            if o <= 0 {
                bail!(
                    "output size {o} along spatial axis {i} is not positive (input {}, kernel {}, pad {}, stride {}, dilation {})",
                    s[self.axis + 1 + i], g.kernel[i], g.pad[i], g.stride[i], g.dilation[i]
                );
            }
            top[self.axis + 1 + i] = o;
        }
        self.geom = Some(g);
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let Some(g) = &self.geom else { bail!("forward before setup") };
        let x = &bottoms[0];
        let s = x.size();
        let a = self.axis;
        let ns = g.kernel.len();
        let num = count(&s, 0, a);
        let channels = s[a];
        let taps: i64 = g.kernel.iter().product();
        let outs: Vec<i64> = (0..ns).map(|i| out_size(s[a + 1 + i], g, i)).collect();
        if outs.iter().any(|&o| o <= 0) {
            bail!("input {s:?} is too small for the kernel");
        }
        let mut lead = vec![num, channels];
        lead.extend(&s[a + 1..]);
        let xr = x.f_reshape(lead.as_slice())?;

        let cols = if ns == 2 {
            // libtorch's im2col has exactly Caffe's 2-D column layout.
            xr.f_im2col(g.kernel.as_slice(), g.dilation.as_slice(), g.pad.as_slice(), g.stride.as_slice())?
        } else {
            // N-D: pad, slide a window of the dilated extent along each axis,
            // keep every dilation-th tap, then put the taps before the positions.
            let mut pads = Vec::with_capacity(2 * ns);
            for i in (0..ns).rev() {
                pads.push(g.pad[i]);
                pads.push(g.pad[i]);
            }
            let mut u = xr.f_constant_pad_nd(pads.as_slice())?;
            for i in 0..ns {
                let extent = g.dilation[i] * (g.kernel[i] - 1) + 1;
                u = u.f_unfold(2 + i as i64, extent, g.stride[i])?;
            }
            for i in 0..ns {
                let dim = (2 + ns + i) as i64;
                u = u.f_slice(dim, 0, None::<i64>, g.dilation[i])?;
            }
            // [num, C, o.., k..] -> [num, C, k.., o..]
            let mut order: Vec<i64> = vec![0, 1];
            order.extend((0..ns).map(|i| (2 + ns + i) as i64));
            order.extend((0..ns).map(|i| (2 + i) as i64));
            u.f_permute(order.as_slice())?.f_contiguous()?
        };
        let mut top = s[..a].to_vec();
        top.push(channels * taps);
        top.extend(&outs);
        Ok(vec![cols.f_reshape(top.as_slice())?])
    }
}
