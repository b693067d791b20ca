//! Filter: keeps the items whose selector is non-zero.
use crate::Result;
use tch::Tensor;

use super::at_least_bottoms;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Filter",
        family: family_of(file!()),
        params: "(bottoms to filter, then the selector; tops keep the items whose selector is non-zero. The top's first dim is data-dependent: setup declares the bottom's)",
        tests: "layers_common: filter_* (selection, empty selection, net with a data-dependent shape, gradient check)",
        create: |_| Ok(Box::new(Filter)),
    });
}

/// Filter: keeps the items (first-axis entries) of each bottom whose selector
/// value is non-zero. The number kept depends on the data, so `setup` can only
/// declare each bottom's own shape (Caffe's first Reshape does the same); the
/// real top has the selected count on axis 0, possibly 0. Gradients go back
/// to the kept items; the rest get zero, and the selector gets none.
pub struct Filter;

impl Filter {
    fn check(bottoms: &[Shape]) -> Result<()> {
        let selector = &bottoms[bottoms.len() - 1];
        if selector.is_empty() {
            bail!("the selector (last bottom) needs at least one axis");
        }
        if selector[1..].iter().any(|&d| d != 1) {
            bail!("Selector blob dimensions must be singletons (1), except the first; got {selector:?}");
        }
        for (i, b) in bottoms[..bottoms.len() - 1].iter().enumerate() {
            if b.first() != Some(&selector[0]) {
                bail!("Each bottom should have the same 0th dimension as the selector blob: bottom[{i}] is {b:?}, selector is {selector:?}");
            }
        }
        Ok(())
    }
}

impl Layer for Filter {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        at_least_bottoms(bottoms, 2)?;
        Self::check(bottoms)?;
        Ok(SetupOut { tops: bottoms[..bottoms.len() - 1].to_vec(), params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        Self::check(&shapes)?;
        let selector = bottoms[bottoms.len() - 1].detach().f_reshape([-1])?;
        let keep = selector.f_ne(0)?.f_nonzero()?.f_reshape([-1])?;
        let mut tops = Vec::with_capacity(bottoms.len() - 1);
        for b in &bottoms[..bottoms.len() - 1] {
            tops.push(b.f_index_select(0, &keep.f_to_device(b.device())?)?);
        }
        Ok(tops)
    }
}
