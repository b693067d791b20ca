//! Permute (SSD fork): reorders a blob's axes.
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Permute",
        family: family_of(file!()),
        params: "permute_param.order (axes not named follow in their order) (SSD fork)",
        tests: "layers_detection: permute_* (values, default order, errors, gradient check)",
        create: |p| Ok(Box::new(Permute { order: p.permute_param.clone().unwrap_or_default().order })),
    });
}

/// Top axis i is bottom axis `order[i]`; the axes `order` leaves out follow
/// in increasing order, as the SSD fork completes it.
pub struct Permute {
    order: Vec<u32>,
}

/// The full axis order of a Permute on a blob of `num_axes` axes: `order`,
/// then the axes it leaves out in increasing order.
pub fn full_order(order: &[u32], num_axes: usize) -> Result<Vec<i64>> {
    let mut orders: Vec<i64> = Vec::with_capacity(num_axes);
    for &o in order {
        if o as usize >= num_axes {
            bail!("permute_param.order {o} should be less than the input's {num_axes} axes");
        }
        if orders.contains(&(o as i64)) {
            bail!("permute_param.order names axis {o} twice");
        }
        orders.push(o as i64);
    }
    for axis in 0..num_axes as i64 {
        if !orders.contains(&axis) {
            orders.push(axis);
        }
    }
    Ok(orders)
}

impl Layer for Permute {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        let order = full_order(&self.order, s.len())?;
        Ok(SetupOut { tops: vec![order.iter().map(|&a| s[a as usize]).collect()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let order = full_order(&self.order, x.dim())?;
        // Caffe's top is a blob of its own in row-major order.
        Ok(vec![x.f_permute(order.as_slice())?.f_contiguous()?])
    }
}
