//! BatchReindex: picks (and repeats) items of the batch by index.
use crate::Result;
use tch::{Kind, Tensor};

use super::float_indices;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "BatchReindex",
        family: family_of(file!()),
        params: "(bottom[1]: 1-D item indices stored as floats; out of range is an error; repeated indices accumulate gradients)",
        tests: "layers_common: batch_reindex_* (values, bad index error, gradient check)",
        create: |_| Ok(Box::new(BatchReindex)),
    });
}

/// BatchReindex: top item i is bottom[0] item `bottom[1][i]`.
pub struct BatchReindex;

impl Layer for BatchReindex {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        if bottoms[1].len() != 1 {
            bail!("the index blob (bottom[1]) must be 1-D, got {:?}", bottoms[1]);
        }
        if bottoms[0].is_empty() {
            bail!("bottom[0] needs at least one axis");
        }
        let mut top = bottoms[0].clone();
        top[0] = bottoms[1][0];
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        if bottoms[1].dim() != 1 {
            bail!("the index blob (bottom[1]) must be 1-D, got {:?}", bottoms[1].size());
        }
        let idx = float_indices(&bottoms[1], x.size()[0], "BatchReindex")?;
        Ok(vec![x.f_index_select(0, &idx.f_to_device(x.device())?.f_to_kind(Kind::Int64)?)?])
    }
}
