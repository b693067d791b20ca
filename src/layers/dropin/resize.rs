//! Resize: changes a blob's height, width and channel count so DropIn can
//! join layers of different sizes.
use crate::Result;
use tch::{Kind, Tensor};

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::resize_parameter::Interpolation;
use crate::proto::caffe::{LayerParameter, ResizeParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Resize",
        family: family_of(file!()),
        params: "resize_param.height, width, channels, interpolation (BILINEAR, NEAREST); optional second bottom gives the target shape",
        tests: "tests/dropin.rs: shapes, channel rules; gradient check",
        create: |p| Ok(Box::new(Resize::new(p))),
    });
}

pub struct Resize {
    p: ResizeParameter,
    target: Shape,
}

impl Resize {
    fn new(lp: &LayerParameter) -> Self {
        Resize { p: lp.resize_param.unwrap_or_default(), target: vec![] }
    }

    /// To `c` channels: fewer keeps the first c; more repeats them cyclically.
    fn channels(&self, x: &Tensor, c: i64) -> Result<Tensor> {
        let have = x.size()[1];
        if c == have {
            return Ok(x.shallow_clone());
        }
        let idx = Tensor::f_arange(c, (Kind::Int64, x.device()))?.f_remainder(have)?;
        Ok(x.f_index_select(1, &idx)?)
    }

    /// To `h`×`w` by the layer's interpolation.
    fn spatial(&self, x: &Tensor, h: i64, w: i64) -> Result<Tensor> {
        let s = x.size();
        if (h, w) == (s[2], s[3]) {
            return Ok(x.shallow_clone());
        }
        Ok(match self.p.interpolation() {
            Interpolation::Bilinear => x.f_upsample_bilinear2d([h, w], false, None, None)?,
            Interpolation::Nearest => x.f_upsample_nearest2d([h, w], None, None)?,
        })
    }
}

impl Layer for Resize {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        let s = &bottoms[0];
        if s.len() != 4 {
            bail!("Resize needs a 4-D bottom (N, C, H, W), got {s:?}");
        }
        let mut t = s.clone();
        if let Some(r) = bottoms.get(1) {
            if r.len() != 4 {
                bail!("Resize's second bottom gives the target shape and must be 4-D, got {r:?}");
            }
            t[1..].copy_from_slice(&r[1..]);
        }
        if let Some(c) = self.p.channels {
            t[1] = c as i64;
        }
        if let Some(h) = self.p.height {
            t[2] = h as i64;
        }
        if let Some(w) = self.p.width {
            t[3] = w as i64;
        }
        if t.iter().skip(1).any(|&d| d <= 0) {
            bail!("Resize target {t:?} has a zero dimension");
        }
        self.target = t.clone();
        Ok(SetupOut { tops: vec![t], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = x.size();
        let (c, h, w) = (self.target[1], self.target[2], self.target[3]);
        if c != s[1] && s[1] == 0 {
            bail!("Resize cannot make {c} channels from a bottom with none (shape {s:?})");
        }
        // Both steps work channel by channel, so their order does not change
        // the result; the one with the smaller intermediate goes first, which
        // keeps it no larger than the bottom or the top (fuzzing found a
        // channels-first intermediate of 16 GB between a 3 MB bottom and top).
        let channels_first = c.saturating_mul(s[2]).saturating_mul(s[3]) <= s[1].saturating_mul(h).saturating_mul(w);
        let y = if channels_first {
            self.spatial(&self.channels(x, c)?, h, w)?
        } else {
            self.channels(&self.spatial(x, h, w)?, c)?
        };
        Ok(vec![y])
    }
}
