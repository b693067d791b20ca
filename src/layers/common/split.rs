//! Split: one copy of the bottom per top (the net inserts it where a blob has several readers).
use crate::Result;
use tch::Tensor;

use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Split",
        family: family_of(file!()),
        params: "(none: one copy of the bottom per top; inserted automatically)",
        tests: "parity (lenet: label/ip2 splits), gradient check (layers_common: split_*)",
        create: |p| Ok(Box::new(Split { tops: p.top.len() })),
    });
}

/// Split: the same blob for each reader; each top is its own autograd node
/// so the readers' gradients are summed into the bottom.
pub struct Split {
    tops: usize,
}

impl Layer for Split {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        Ok(SetupOut { tops: vec![bottoms[0].clone(); self.tops], params: vec![] })
    }
    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok((0..self.tops).map(|_| bottoms[0].alias()).collect())
    }
}
