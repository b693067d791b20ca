//! MultinomialLogisticLoss: −log of the probability given to the true class.
use crate::Result;
use tch::Tensor;

use super::{check_one_per_sample, check_same_num, class_labels, value_with_grad_of, LOG_THRESHOLD};
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, count, Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "MultinomialLogisticLoss",
        family: family_of(file!()),
        params: "(none; input is probabilities, clamped at 1e-20)",
        tests: "gradient check, numeric tests incl. Caffe's clamped gradient (tests/layers_loss.rs)",
        create: |_| Ok(Box::new(MultinomialLogisticLoss)),
    });
}

/// MultinomialLogisticLoss: −Σ log(max(p[label], 1e-20)) / N over probabilities.
/// Caffe's gradient is −1/(N·max(p, 1e-20)) at the label even where the clamp is active.
pub struct MultinomialLogisticLoss;

fn check_multinomial(bottoms: &[Shape]) -> Result<()> {
    check_same_num(&bottoms[0], &bottoms[1])?;
    check_one_per_sample(&bottoms[1], "the label")
}

impl Layer for MultinomialLogisticLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        check_multinomial(bottoms)?;
        Ok(SetupOut { tops: vec![vec![]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        check_multinomial(&[shape.clone(), bottoms[1].size()])?;
        let num = shape[0];
        let dim = count(&shape, 1, shape.len());
        let labels = class_labels(&bottoms[1], num, 1, dim, None)?;
        let p = x.f_reshape([num, dim])?.f_gather(1, &labels, false)?;
        let clamped = p.detach().f_clamp_min(LOG_THRESHOLD)?;
        // Value log(clamped); gradient 1/clamped (a linear term in p with a detached slope).
        let grad_source = p.f_div(&clamped)?;
        let term = value_with_grad_of(&clamped.f_log()?, &grad_source)?;
        Ok(vec![term.f_sum(x.kind())?.f_neg()?.f_div_scalar(num.max(1) as f64)?])
    }
}
