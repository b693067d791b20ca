//! EuclideanLoss: half the mean squared distance between two bottoms.
use crate::Result;
use tch::Tensor;

use super::check_same_num;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, count, Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "EuclideanLoss",
        family: family_of(file!()),
        params: "(none; both bottoms get gradients)",
        tests: "gradient check, numeric tests (tests/layers_loss.rs)",
        create: |_| Ok(Box::new(EuclideanLoss)),
    });
}

/// EuclideanLoss: Σ(a − b)² / (2N); both bottoms get gradients.
pub struct EuclideanLoss;

fn check_euclidean(bottoms: &[Shape]) -> Result<()> {
    check_same_num(&bottoms[0], &bottoms[1])?;
    let (a, b) = (&bottoms[0], &bottoms[1]);
    if count(a, 1, a.len()) != count(b, 1, b.len()) {
        bail!("Inputs must have the same dimension: {a:?} vs {b:?}");
    }
    Ok(())
}

impl Layer for EuclideanLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        check_euclidean(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let (a, b) = (&bottoms[0], &bottoms[1]);
        let shape = a.size();
        check_euclidean(&[shape.clone(), b.size()])?;
        let diff = a.f_sub(&b.f_reshape(shape.as_slice())?)?;
        let num = shape[0].max(1) as f64;
        Ok(vec![diff.f_square()?.f_sum(a.kind())?.f_div_scalar(2.0 * num)?])
    }
}
