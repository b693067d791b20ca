//! HingeLoss: the one-vs-all hinge loss, L1 or L2.
use crate::Result;
use tch::Tensor;

use super::{check_same_num, class_labels};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::hinge_loss_parameter::Norm;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "HingeLoss",
        family: family_of(file!()),
        params: "hinge_loss_param.norm (L1, L2)",
        tests: "gradient check, numeric tests (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(HingeLoss { norm: p.hinge_loss_param.unwrap_or_default().norm() })),
    });
}

/// HingeLoss (one-vs-all): Σ max(0, 1 − δ·x)^p / N with δ = +1 at the label and
/// −1 elsewhere, p = 1 (L1) or 2 (L2).
pub struct HingeLoss {
    norm: Norm,
}

fn check_per_sample_labels(bottoms: &[Shape]) -> Result<()> {
    check_same_num(&bottoms[0], &bottoms[1])?;
    let labels: i64 = bottoms[1].iter().product();
    if labels != bottoms[0][0] {
        bail!("expects one label per sample: {} samples, label shape {:?}", bottoms[0][0], bottoms[1]);
    }
    Ok(())
}

impl Layer for HingeLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        check_per_sample_labels(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        check_per_sample_labels(&[shape.clone(), bottoms[1].size()])?;
        let num = shape[0];
        let dim = count(&shape, 1, shape.len());
        let x = x.f_reshape([num, dim])?;
        let labels = class_labels(&bottoms[1], num, 1, dim, None)?;
        let onehot = x.detach().f_zeros_like()?.f_scatter_value(1, &labels, 1.0)?;
        // −1 at the label, +1 elsewhere: the margin is max(0, 1 + sign·x).
        let sign = onehot.f_mul_scalar(-2.0)?.f_add_scalar(1.0)?;
        // relu' is 0 at the hinge, as Caffe's sign(0) = 0.
        let margin = x.f_mul(&sign)?.f_add_scalar(1.0)?.f_relu()?;
        let total = match self.norm {
            Norm::L1 => margin.f_sum(x.kind())?,
            Norm::L2 => margin.f_square()?.f_sum(x.kind())?,
        };
        Ok(vec![total.f_div_scalar(num.max(1) as f64)?])
    }
}
