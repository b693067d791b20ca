//! Upsample, two Caffe forks' layers under one type name, told apart by
//! their bottoms as the forks' prototxt are:
//! - one bottom (the YOLOv3 forks): nearest neighbour, each value repeated
//!   `scale` times along both spatial axes; the gradient sums over the copies;
//! - two bottoms (SegNet, ENet): max unpooling. The second bottom is a MAX
//!   Pooling's mask, and each value is written at its mask's index h·W + w of
//!   a zero output plane; the gradient reads the top's gradient at that index.
use tch::{Kind, Tensor};

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::UpsampleParameter;
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Upsample",
        family: family_of(file!()),
        params: "upsample_param: one bottom: scale (the YOLOv3 forks' nearest neighbour); two bottoms (data, a Pooling mask): upsample_h+upsample_w | scale, scale_h+scale_w, pad_out_h/w (SegNet's unpooling)",
        tests: "layers_vision: upsample_* (values worked out by hand, sizes, errors, gradient checks); export cases",
        create: |p| Ok(Box::new(Upsample { p: p.upsample_param.unwrap_or_default() })),
    });
}

pub struct Upsample {
    p: UpsampleParameter,
}

/// Which fork's Upsample a layer is, with its output size rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpsampleKind {
    /// One bottom: every value repeated `[h, w]` times.
    Nearest([i64; 2]),
    /// Two bottoms: values written where the mask says, into an output of
    /// this size.
    Unpool([i64; 2]),
}

/// The kind and output size of an Upsample on `bottoms` (the exporters use it too).
pub fn upsample_kind(p: &UpsampleParameter, bottoms: &[Shape]) -> Result<UpsampleKind> {
    check_bottoms(bottoms, 1, 2)?;
    let x = &bottoms[0];
    if x.len() != 4 {
        bail!("Upsample needs a 4-D bottom (N, C, H, W), got {x:?}");
    }
    if bottoms.len() == 1 {
        let scale = p.scale.unwrap_or(1) as i64;
        let (sh, sw) = (p.scale_h.map_or(scale, i64::from), p.scale_w.map_or(scale, i64::from));
        if sh < 1 || sw < 1 {
            bail!("scale must be at least 1, got {sh}x{sw}");
        }
        return Ok(UpsampleKind::Nearest([sh, sw]));
    }
    if bottoms[1] != *x {
        bail!("the mask (second bottom) has shape {:?}, the data {x:?}: they must match", bottoms[1]);
    }
    if let (Some(h), Some(w)) = (p.upsample_h, p.upsample_w) {
        if h <= 1 || w <= 1 {
            bail!("upsample_h and upsample_w must be over 1, got {h} and {w}");
        }
        return Ok(UpsampleKind::Unpool([h as i64, w as i64]));
    }
    let (sh, sw) = match (p.scale, p.scale_h, p.scale_w) {
        (None, Some(h), Some(w)) => (h, w),
        (s, None, None) => (s.unwrap_or(2), s.unwrap_or(2)),
        _ => bail!("give upsample_h and upsample_w, or scale, or scale_h and scale_w"),
    };
    if sh <= 1 || sw <= 1 {
        bail!("the scale must be over 1, got {sh}x{sw}");
    }
    if (p.pad_out_h() && sh != 2) || (p.pad_out_w() && sw != 2) {
        bail!("pad_out_h and pad_out_w need a scale of 2 along their axis");
    }
    Ok(UpsampleKind::Unpool([
        x[2].saturating_mul(sh as i64) - p.pad_out_h() as i64,
        x[3].saturating_mul(sw as i64) - p.pad_out_w() as i64,
    ]))
}

impl Layer for Upsample {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        // The kind first: it checks there is a 4-D bottom.
        let kind = upsample_kind(&self.p, bottoms)?;
        let x = &bottoms[0];
        let [h, w] = match kind {
            UpsampleKind::Nearest([sh, sw]) => [x[2].saturating_mul(sh), x[3].saturating_mul(sw)],
            UpsampleKind::Unpool(size) => size,
        };
        Ok(SetupOut { tops: vec![vec![x[0], x[1], h, w]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let x = &bottoms[0];
        let [n, c, h, w] = [shapes[0][0], shapes[0][1], shapes[0][2], shapes[0][3]];
        match upsample_kind(&self.p, &shapes)? {
            UpsampleKind::Nearest([sh, sw]) => {
                let y = x.f_view([n, c, h, 1, w, 1])?.f_expand([n, c, h, sh, w, sw], false)?;
                Ok(vec![y.f_reshape([n, c, h * sh, w * sw])?])
            }
            UpsampleKind::Unpool([oh, ow]) => {
                let index = bottoms[1].f_to_kind(Kind::Int64)?.f_reshape([n, c, h * w])?;
                if index.numel() > 0 {
                    // One reduction and one read back for both ends.
                    let (low, high) = index.f_aminmax(None, false)?;
                    let ends = Tensor::f_stack(&[low, high], 0)?.f_to_device(tch::Device::Cpu)?;
                    let ends = Vec::<i64>::try_from(&ends)?;
                    let (lowest, highest) = (ends[0], ends[1]);
                    if lowest < 0 || highest >= oh * ow {
                        bail!(
                            "the mask holds index {} where the {oh}x{ow} output has 0 to {}: the scale does not \
                             match the pooling that made the mask",
                            if lowest < 0 { lowest } else { highest },
                            oh * ow - 1
                        );
                    }
                }
                let zeros = Tensor::f_zeros([n, c, oh * ow], (x.kind(), x.device()))?;
                let y = zeros.f_scatter(2, &index, &x.f_reshape([n, c, h * w])?)?;
                Ok(vec![y.f_reshape([n, c, oh, ow])?])
            }
        }
    }
}
