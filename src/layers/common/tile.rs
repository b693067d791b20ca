//! Tile: repeats its bottom along `axis`.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Tile",
        family: family_of(file!()),
        params: "axis, tiles",
        tests: "layers_common: tile_* (values, gradient check)",
        create: |p| Ok(Box::new(Tile::new(p)?)),
    });
}

/// Tile: repeats the block of axes from `axis` on `tiles` times along `axis`.
pub struct Tile {
    axis: i32,
    tiles: i64,
    canonical: usize,
}

impl Tile {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.tile_param.unwrap_or_default();
        let Some(tiles) = p.tiles else { bail!("tile_param.tiles must be specified") };
        if tiles <= 0 {
            bail!("Number of tiles must be positive, got {tiles}");
        }
        Ok(Tile { axis: p.axis(), tiles: tiles as i64, canonical: 0 })
    }
}

impl Layer for Tile {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        self.canonical = canonical_axis(self.axis, bottoms[0].len())?;
        let mut top = bottoms[0].clone();
        top[self.canonical] *= self.tiles;
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        // repeat() along one axis copies the whole trailing block, as Caffe's
        // tiling of each count(axis) chunk does.
        let mut reps = vec![1i64; x.dim()];
        reps[self.canonical] = self.tiles;
        Ok(vec![x.f_repeat(reps.as_slice())?])
    }
}
