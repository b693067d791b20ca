//! Axpy (SENet's fork, hujie-frank/SENet): a per-channel scale times x, plus
//! y, the squeeze-and-excitation block's recalibration and residual sum in
//! one layer.
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Axpy",
        family: family_of(file!()),
        params: "(none) bottoms: a (N×C or N×C×1×1), x, y (N×C×…, one shape); top a·x + y (SENet's fork)",
        tests: "layers_common: axpy_* (values, a gradient check, errors); export cases",
        create: |_| Ok(Box::new(Axpy)),
    });
}

/// top[n, c, …] = a[n, c] · x[n, c, …] + y[n, c, …]; all three get gradients.
pub struct Axpy;

fn check(bottoms: &[Shape]) -> Result<()> {
    check_bottoms(bottoms, 3, 3)?;
    let (a, x, y) = (&bottoms[0], &bottoms[1], &bottoms[2]);
    if x.len() < 2 || x != y {
        bail!("x (bottom 1) {x:?} and y (bottom 2) {y:?} must have one shape with a channel axis");
    }
    let per_image_channel = a.len() >= 2 && a[..2] == x[..2] && a[2..].iter().all(|&d| d == 1);
    if !per_image_channel {
        bail!("a (bottom 0) must be N×C or N×C×1×1 for x of shape {x:?}, got {a:?}");
    }
    Ok(())
}

impl Layer for Axpy {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check(bottoms)?;
        Ok(SetupOut { tops: vec![bottoms[1].clone()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        check(&shapes)?;
        let x = &shapes[1];
        let mut scale_shape = x[..2].to_vec();
        scale_shape.extend(std::iter::repeat_n(1, x.len() - 2));
        let a = bottoms[0].f_reshape(scale_shape.as_slice())?;
        Ok(vec![bottoms[1].f_mul(&a)?.f_add(&bottoms[2])?])
    }
}
