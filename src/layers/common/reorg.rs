//! Reorg (MobileNet-YOLO's fork, darknet's reorg layer): YOLOv2's passthrough,
//! space to depth by `stride` in darknet's own order. Darknet reads the
//! bottom's memory as if it were C/s² channels of Hs × Ws pixels and writes
//! each s × s block of that image into s² channel groups, so an (N, C, H, W)
//! bottom becomes (N, C·s², H/s, W/s) whose values are not those of a plain
//! space-to-depth; `reverse` is the inverse arrangement, (N, C, H, W) to
//! (N, C/s², H·s, W·s). YOLOv2 weights were trained on that order.
//!
//! The fork's backward writes a buffer it never fills into the bottom's diff,
//! so no gradient passes through the layer; the same here (its top is
//! computed from the bottom's values, outside autograd's graph).
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Reorg",
        family: family_of(file!()),
        params: "reorg_param.stride (required), reverse (MobileNet-YOLO's fork; no gradient passes, as there)",
        tests:
            "layers_common: reorg_* (darknet's index loop both ways, no gradient, errors); export_onnx, export_pytorch",
        create: |p| {
            let rp = p.reorg_param.unwrap_or_default();
            if rp.stride.is_none() {
                bail!("Reorg needs reorg_param.stride");
            }
            Ok(Box::new(Reorg { stride: rp.stride() as i64, reverse: rp.reverse() }))
        },
    });
}

pub struct Reorg {
    stride: i64,
    reverse: bool,
}

/// How Reorg rearranges a bottom of `shape`: the bottom read as (N, a, b, c,
/// d, e), those axes put in the order `perm`, and the result read as `top`.
/// The exporters write the same three steps.
pub struct Arrangement {
    pub split: [i64; 6],
    pub perm: [i64; 6],
    pub top: [i64; 4],
}

/// The arrangement for a bottom of `shape` (N, C, H, W), checked.
pub fn arrangement(shape: &[i64], stride: i64, reverse: bool) -> Result<Arrangement> {
    let &[n, c, h, w] = shape else {
        bail!("Reorg needs a bottom of 4 axes (N, C, H, W), got shape {shape:?}");
    };
    let s = stride;
    if s < 1 {
        bail!("reorg_param.stride must be positive, got {s}");
    }
    if c % (s * s) != 0 {
        bail!("the bottom's {c} channels must be a multiple of stride² = {} (darknet's order reads them as C/stride² channels)", s * s);
    }
    if reverse {
        // Channel k = (a·s + b)·C/s² + c2 goes to pixel (j·s + a, i·s + b) of channel c2.
        return Ok(Arrangement {
            split: [n, s, s, c / (s * s), h, w],
            perm: [0, 3, 4, 1, 5, 2],
            top: [n, c / (s * s), h * s, w * s],
        });
    }
    if h % s != 0 || w % s != 0 {
        bail!("the bottom's height {h} and width {w} must be multiples of reorg_param.stride {s}");
    }
    // Pixel (j·s + a, i·s + b) of the bottom read as C/s² channels of Hs × Ws
    // goes to channel (a·s + b)·C/s² + c2 at (j, i) of an (N, C, H, W) layout,
    // which the top then reads as (N, C·s², H/s, W/s).
    Ok(Arrangement { split: [n, c / (s * s), h, s, w, s], perm: [0, 3, 5, 1, 2, 4], top: [n, c * s * s, h / s, w / s] })
}

impl Layer for Reorg {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let a = arrangement(&bottoms[0], self.stride, self.reverse)?;
        Ok(SetupOut { tops: vec![a.top.to_vec()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = bottoms[0].f_detach()?;
        let a = arrangement(&x.size(), self.stride, self.reverse)?;
        Ok(vec![x.f_reshape(a.split)?.f_permute(a.perm)?.f_contiguous()?.f_reshape(a.top)?])
    }
}
