//! What Convolution and Deconvolution share (Caffe's BaseConvolutionLayer):
//! N-D geometry from Caffe's fields (kernel_size/kernel_h/kernel_w, stride,
//! pad, dilation, group, axis), and one layer, [`Conv`], for both types.
//! convolution.rs and deconvolution.rs register their type and hold what
//! differs between them, the output size and the weight layout; a
//! Deconvolution runs as libtorch's transposed convolution. Im2col reads its
//! geometry with [`geometry`] too.
use crate::Result;
use tch::Tensor;

use super::inference_weights::InferenceConvWeights;
use super::{convolution, deconvolution};
use crate::bail;
use crate::layers::fold::Epilogue;
use crate::layers::onednn::Conv2dGeometry;
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{ConvolutionParameter, LayerParameter};

/// The spatial geometry of a conv: per spatial axis.
#[derive(Debug, Clone)]
pub struct Geometry {
    pub kernel: Vec<i64>,
    pub stride: Vec<i64>,
    pub pad: Vec<i64>,
    pub dilation: Vec<i64>,
}

/// Reads Caffe's kernel/stride/pad/dilation fields for `n` spatial axes: the
/// `_h`/`_w` forms (2-D only) or repeated values (one for all, or one per axis).
pub fn geometry(p: &ConvolutionParameter, n: usize) -> Result<Geometry> {
    let per_axis = |name: &str, vals: &[u32], h: Option<u32>, w: Option<u32>, default: i64| -> Result<Vec<i64>> {
        if h.is_some() || w.is_some() {
            if n != 2 {
                bail!("{name}_h/{name}_w can only be used for 2-D convolution");
            }
            if !vals.is_empty() {
                bail!("either {name} or {name}_h/w should be specified, not both");
            }
            return Ok(vec![h.unwrap_or(default as u32) as i64, w.unwrap_or(default as u32) as i64]);
        }
        match vals.len() {
            0 => Ok(vec![default; n]),
            1 => Ok(vec![vals[0] as i64; n]),
            k if k == n => Ok(vals.iter().map(|&v| v as i64).collect()),
            k => bail!("{name} must be given once or once per spatial axis ({n}), got {k} values"),
        }
    };
    let kernel_given = !p.kernel_size.is_empty() || p.kernel_h.is_some() || p.kernel_w.is_some();
    if !kernel_given {
        bail!("kernel_size (or kernel_h and kernel_w) is required");
    }
    if (p.kernel_h.is_some()) != (p.kernel_w.is_some()) {
        bail!("kernel_h and kernel_w must be given together");
    }
    let g = Geometry {
        kernel: per_axis("kernel_size", &p.kernel_size, p.kernel_h, p.kernel_w, 0)?,
        stride: per_axis("stride", &p.stride, p.stride_h, p.stride_w, 1)?,
        pad: per_axis("pad", &p.pad, p.pad_h, p.pad_w, 0)?,
        dilation: match p.dilation.len() {
            0 => vec![1; n],
            1 => vec![p.dilation[0] as i64; n],
            k if k == n => p.dilation.iter().map(|&v| v as i64).collect(),
            k => bail!("dilation must be given once or once per spatial axis ({n}), got {k} values"),
        },
    };
    if g.kernel.iter().any(|&k| k <= 0) {
        bail!("kernel dimensions must be positive, got {:?}", g.kernel);
    }
    if g.stride.iter().any(|&s| s <= 0) {
        bail!("stride must be positive, got {:?}", g.stride);
    }
    Ok(g)
}

pub struct Conv {
    p: ConvolutionParameter,
    transposed: bool,
    /// The ConvolutionDepthwise fork's layer: one filter per input channel.
    depthwise: bool,
    axis: usize,
    geom: Option<Geometry>,
    groups: i64,
    inference: InferenceConvWeights,
}

impl Conv {
    pub(super) fn new(lp: &LayerParameter, transposed: bool) -> Result<Self> {
        let p = lp.convolution_param.clone().unwrap_or_default();
        if p.num_output.is_none() {
            bail!("convolution_param.num_output is required");
        }
        Ok(Conv::with(p, transposed, false))
    }

    /// ConvolutionDepthwise: num_output and group are the input's channels,
    /// whatever the prototxt says (the fork reads neither).
    pub(super) fn depthwise(lp: &LayerParameter) -> Self {
        Conv::with(lp.convolution_param.clone().unwrap_or_default(), false, true)
    }

    fn with(p: ConvolutionParameter, transposed: bool, depthwise: bool) -> Self {
        Conv { p, transposed, depthwise, axis: 1, geom: None, groups: 1, inference: InferenceConvWeights::default() }
    }
}

/// The convolution parameters a layer runs with on a bottom of `channels`:
/// its own, or for ConvolutionDepthwise a plain Convolution's (the exporters
/// write every convolution from these).
pub fn effective_conv_param(lp: &LayerParameter, channels: i64) -> ConvolutionParameter {
    let p = lp.convolution_param.clone().unwrap_or_default();
    if lp.r#type() == "ConvolutionDepthwise" {
        depthwise_param(&p, channels)
    } else {
        p
    }
}

/// A ConvolutionDepthwise layer's parameters as a plain Convolution's: one
/// group and one output per input channel (the exporters write it so).
pub fn depthwise_param(p: &ConvolutionParameter, channels: i64) -> ConvolutionParameter {
    ConvolutionParameter { num_output: Some(channels as u32), group: Some(channels as u32), ..p.clone() }
}

impl Layer for Conv {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, usize::MAX)?;
        let s = &bottoms[0];
        if bottoms.iter().any(|b| b != s) {
            bail!("all bottoms must have the same shape");
        }
        self.axis = canonical_axis(self.p.axis(), s.len())?;
        let n_spatial = s.len() - self.axis - 1;
        if !(1..=3).contains(&n_spatial) {
            bail!("convolution over {n_spatial} spatial axes is not supported (libtorch handles 1 to 3)");
        }
        if self.axis != 1 {
            bail!("only axis 1 (channels) is supported for convolution, got {}", self.axis);
        }
        let g = geometry(&self.p, n_spatial)?;
        let channels = s[self.axis];
        if self.depthwise {
            if !(1..=u32::MAX as i64).contains(&channels) {
                bail!("ConvolutionDepthwise needs 1 or more input channels, got {channels}");
            }
            self.p = depthwise_param(&self.p, channels);
        }
        let num_output = self.p.num_output() as i64;
        self.groups = self.p.group() as i64;
        if self.groups <= 0 || channels % self.groups != 0 || num_output % self.groups != 0 {
            bail!(
                "group {} must divide both the input channels ({channels}) and num_output ({num_output})",
                self.groups
            );
        }
        let mut top = s[..=self.axis].to_vec();
        top[self.axis] = num_output;
        for i in 0..n_spatial {
            let input = s[self.axis + 1 + i];
            let extent = g.dilation[i] * (g.kernel[i] - 1) + 1;
            let out = if self.transposed {
                deconvolution::output_size(input, extent, g.stride[i], g.pad[i])
            } else {
                convolution::output_size(input, extent, g.stride[i], g.pad[i])
            };
            if out <= 0 {
                bail!(
                    "output size {out} along spatial axis {i} is not positive (input {input}, kernel {}, pad {}, stride {}, dilation {})",
                    g.kernel[i], g.pad[i], g.stride[i], g.dilation[i]
                );
            }
            top.push(out);
        }
        // Caffe computes a convolution through a column buffer (im2col) of
        // channels x kernel x output positions (a deconvolution: its outputs'
        // channels x kernel x input positions), allocated with the layer. A
        // geometry whose buffer exceeds the memory limit is refused here, as
        // Caffe could not run it either: libtorch's kernels, which need no
        // such buffer for real nets, can take tens of GB on one (a huge pad
        // and kernel over a tiny input).
        let (col_channels, positions) =
            if self.transposed { (num_output, &s[self.axis + 1..]) } else { (channels, &top[self.axis + 1..]) };
        let column: Vec<i64> =
            std::iter::once(col_channels).chain(g.kernel.iter().copied()).chain(positions.iter().copied()).collect();
        crate::util::limits::checked_count(
            &column,
            4,
            "the convolution's column buffer (Caffe's im2col: channels x kernel x positions)",
        )?;
        let mut wshape = if self.transposed {
            deconvolution::weight_shape(channels, num_output, self.groups)
        } else {
            convolution::weight_shape(channels, num_output, self.groups)
        };
        wshape.extend(&g.kernel);
        let mut params = vec![ParamDecl::new(wshape, self.p.weight_filler.clone().unwrap_or_default())];
        if self.p.bias_term() {
            params.push(ParamDecl::new(vec![num_output], self.p.bias_filler.clone().unwrap_or_default()));
        }
        self.geom = Some(g);
        Ok(SetupOut { tops: vec![top; bottoms.len()], params })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let Some(g) = &self.geom else { bail!("forward before setup") };
        let bias = params.get(1);
        let w = &params[0];
        let mut tops = Vec::with_capacity(bottoms.len());
        for x in bottoms {
            let out_pad = vec![0i64; g.kernel.len()];
            let x = &crate::layers::layout::channels_last(x)?;
            let y = if x.device().is_cuda() {
                // cuDNN would run fp32 convs in TF32 (10-bit mantissa) on
                // Ampere and later; Caffe's numbers need full fp32.
                x.f_internal_convolution(
                    w,
                    bias,
                    &g.stride,
                    &g.pad,
                    &g.dilation,
                    self.transposed,
                    &out_pad,
                    self.groups,
                    false,
                    false,
                    true,
                    false,
                )?
            } else if self.transposed {
                x.f_convolution(w, bias, &g.stride, &g.pad, &g.dilation, self.transposed, &out_pad, self.groups)?
            } else {
                let packed = match geometry_2d(g) {
                    Some(g2) => self.inference.convolve(x, w, bias, &[], &g2, self.groups)?,
                    None => None,
                };
                match packed {
                    Some(y) => y,
                    None => {
                        let w = crate::layers::layout::conv_weights_for(w, x)?;
                        x.f_convolution(&w, bias, &g.stride, &g.pad, &g.dilation, false, &out_pad, self.groups)?
                    }
                }
            };
            tops.push(y);
        }
        Ok(tops)
    }

    fn forward_with_epilogues(
        &mut self,
        _ctx: &Ctx,
        bottoms: &[Tensor],
        params: &[Tensor],
        epilogues: &[Epilogue],
    ) -> Option<Result<Vec<Tensor>>> {
        let (Some(g), [x], false) = (&self.geom, bottoms, self.transposed) else { return None };
        let (g2, w) = (geometry_2d(g)?, params.first()?);
        // Only the packed CPU float path folds: leave the others before the
        // layout copy, which the general forward would make again.
        if x.device() != tch::Device::Cpu || x.kind() != tch::Kind::Float {
            return None;
        }
        let x = match crate::layers::layout::channels_last(x) {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        self.inference
            .convolve(&x, w, params.get(1), epilogues, &g2, self.groups)
            .transpose()
            .map(|r| r.map(|y| vec![y]))
    }
}

/// A 2-D geometry in the form oneDNN's kernels take; `None` for other ranks.
fn geometry_2d(g: &Geometry) -> Option<Conv2dGeometry> {
    let pair = |v: &[i64]| -> Option<[i64; 2]> { v.try_into().ok() };
    Some(Conv2dGeometry { pad: pair(&g.pad)?, stride: pair(&g.stride)?, dilation: pair(&g.dilation)? })
}
