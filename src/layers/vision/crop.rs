//! Crop: cuts bottom[0] down to bottom[1]'s size on every axis from `axis`
//! on, starting at `offset` (one value for all those axes, one per axis, or
//! none for 0). Axes before `axis` keep bottom[0]'s size. bottom[1] only
//! gives the shape and gets no gradient, as in Caffe.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::CropParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Crop",
        family: family_of(file!()),
        params: "axis, offset (one for all axes or one per cropped axis)",
        tests: "layers_vision (offset forms, bounds errors, gradient check)",
        create: |p| Ok(Box::new(Crop { p: p.crop_param.clone().unwrap_or_default() })),
    });
}

pub struct Crop {
    p: CropParameter,
}

impl Crop {
    /// The top shape and the offset of each axis.
    fn plan(&self, data: &[i64], like: &[i64]) -> Result<(Shape, Vec<i64>)> {
        let n = data.len();
        let start = canonical_axis(self.p.axis(), n)?;
        if start >= n {
            bail!("crop axis bigger than input dim ({start} >= {n})");
        }
        let offsets = &self.p.offset;
        if offsets.len() > 1 && start + offsets.len() != n {
            bail!(
                "number of offset values specified must be equal to the number of dimensions following axis \
                 ({} offsets, {} axes from axis {start})",
                offsets.len(),
                n - start
            );
        }
        if like.len() < n {
            bail!("bottom[1] {like:?} has fewer axes than bottom[0] {data:?}");
        }
        let mut top = data.to_vec();
        let mut offs = vec![0i64; n];
        for i in start..n {
            let off = match offsets.len() {
                0 => 0,
                1 => offsets[0] as i64,
                _ => offsets[i - start] as i64,
            };
            if data[i] - off < like[i] {
                bail!(
                    "the crop for dimension {i} is out-of-bounds with size {} and offset {off} (input size {})",
                    like[i],
                    data[i]
                );
            }
            top[i] = like[i];
            offs[i] = off;
        }
        Ok((top, offs))
    }
}

impl Layer for Crop {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        let (top, _) = self.plan(&bottoms[0], &bottoms[1])?;
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = x.size();
        let (top, offs) = self.plan(&s, &bottoms[1].size())?;
        let mut y = x.shallow_clone();
        for (i, (&t, &o)) in top.iter().zip(&offs).enumerate() {
            if t != s[i] {
                y = y.f_narrow(i as i64, o, t)?;
            }
        }
        Ok(vec![y])
    }
}
