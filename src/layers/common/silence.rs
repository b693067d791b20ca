//! Silence: consumes blobs, produces nothing.
use crate::Result;
use tch::Tensor;

use super::at_least_bottoms;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Silence",
        family: family_of(file!()),
        params: "(none: consumes its bottoms, no tops)",
        tests: "layers_common: silence_* (net with a silenced blob)",
        create: |_| Ok(Box::new(Silence)),
    });
}

/// Silence: consumes blobs nobody else reads, so they are not net outputs.
pub struct Silence;

impl Layer for Silence {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        at_least_bottoms(bottoms, 1)?;
        Ok(SetupOut::default())
    }

    fn forward(&mut self, _ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![])
    }
}
