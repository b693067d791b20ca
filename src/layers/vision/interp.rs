//! Interp (DeepLab v2's fork, also PSPNet's): bilinear resizing with the
//! corners aligned (output row i reads input row i·(H_in−1)/(H_out−1)),
//! after cropping `-pad_beg` rows and columns at the start and `-pad_end` at
//! the end. libtorch's bilinear upsampling with `align_corners` is that
//! interpolation, and its autograd is the fork's backward.
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::InterpParameter;
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Interp",
        family: family_of(file!()),
        params: "interp_param: height+width | zoom_factor | shrink_factor (both: shrink, then zoom) | a second bottom's size (use_blob_size, soeaver's fork, says so); pad_beg, pad_end ≤ 0 (DeepLab v2's fork)",
        tests: "layers_vision: interp_* (the fork's formula, sizes, errors, gradient check); python/tests/test_fork_layers_opencv.py",
        create: |p| Ok(Box::new(Interp { p: p.interp_param.unwrap_or_default() })),
    });
}

pub struct Interp {
    p: InterpParameter,
}

/// The cropped input size and the output size of an Interp on a bottom of
/// `shape`, `reference` being the second bottom's shape if there is one
/// (the exporters compute the same).
pub fn interp_sizes(p: &InterpParameter, shape: &[i64], reference: Option<&[i64]>) -> Result<([i64; 2], [i64; 2])> {
    if shape.len() != 4 {
        bail!("Interp needs a 4-D bottom (N, C, H, W), got {shape:?}");
    }
    let (pad_beg, pad_end) = (p.pad_beg() as i64, p.pad_end() as i64);
    if pad_beg > 0 || pad_end > 0 {
        bail!("pad_beg ({pad_beg}) and pad_end ({pad_end}) must be zero or negative (Interp only crops)");
    }
    let eff = [shape[2] + pad_beg + pad_end, shape[3] + pad_beg + pad_end];
    if eff[0] <= 0 || eff[1] <= 0 {
        bail!(
            "cropping by pad_beg {pad_beg} and pad_end {pad_end} leaves nothing of the {}x{} input",
            shape[2],
            shape[3]
        );
    }
    let shrink = |size: i64, f: i32| (size - 1) / f as i64 + 1;
    let zoom = |size: i64, f: i32| size + (size - 1) * (f as i64 - 1);
    let check = |name: &str, f: i32| -> Result<()> {
        if f < 1 {
            bail!("{name} ({f}) must be at least 1");
        }
        Ok(())
    };
    if p.use_blob_size() && reference.is_none() {
        bail!("use_blob_size takes the output size from a second bottom, and this Interp has one bottom");
    }
    let out = if let Some(r) = reference {
        if p.shrink_factor.is_some() || p.zoom_factor.is_some() || p.height.is_some() || p.width.is_some() {
            bail!("with a second bottom, which gives the output size, interp_param cannot give one too");
        }
        if r.len() != 4 {
            bail!("Interp's second bottom gives the output size and must be 4-D, got {r:?}");
        }
        [r[2], r[3]]
    } else {
        match (p.shrink_factor, p.zoom_factor) {
            (Some(s), None) => {
                check("shrink_factor", s)?;
                [shrink(eff[0], s), shrink(eff[1], s)]
            }
            (None, Some(z)) => {
                check("zoom_factor", z)?;
                [zoom(eff[0], z), zoom(eff[1], z)]
            }
            (Some(s), Some(z)) => {
                check("shrink_factor", s)?;
                check("zoom_factor", z)?;
                [zoom(shrink(eff[0], s), z), zoom(shrink(eff[1], s), z)]
            }
            (None, None) if p.height.is_some() && p.width.is_some() => [p.height() as i64, p.width() as i64],
            (None, None) => bail!("interp_param must give height and width, zoom_factor or shrink_factor"),
        }
    };
    if out[0] <= 0 || out[1] <= 0 {
        bail!("the output size {}x{} is not positive", out[0], out[1]);
    }
    Ok((eff, out))
}

impl Layer for Interp {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        let (_, out) = interp_sizes(&self.p, &bottoms[0], bottoms.get(1).map(|s| s.as_slice()))?;
        let s = &bottoms[0];
        Ok(SetupOut { tops: vec![vec![s[0], s[1], out[0], out[1]]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let reference = bottoms.get(1).map(|r| r.size());
        let (eff, out) = interp_sizes(&self.p, &x.size(), reference.as_deref())?;
        let start = -self.p.pad_beg() as i64;
        let cropped = x.f_narrow(2, start, eff[0])?.f_narrow(3, start, eff[1])?;
        Ok(vec![cropped.f_upsample_bilinear2d(out, true, None, None)?])
    }
}
