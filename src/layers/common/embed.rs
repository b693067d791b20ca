//! Embed: a learnable lookup table indexed by the bottom's values.
use crate::Result;
use tch::Tensor;

use super::float_indices;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{EmbedParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Embed",
        family: family_of(file!()),
        params: "num_output, input_dim, bias_term, weight_filler, bias_filler (bottom: indices stored as floats; out of range is an error)",
        tests: "layers_common: embed_* (lookup values, bad index errors, gradient check of weight and bias)",
        create: |p| Ok(Box::new(Embed::new(p)?)),
    });
}

/// Embed: a lookup table. Each bottom value is a row index into the weight
/// [input_dim, num_output] (InnerProduct's layout transposed); top shape is
/// the bottom's shape plus num_output. The indices get no gradient (Caffe
/// refuses to backpropagate to them); repeated indices accumulate into the
/// same weight row, as Caffe's backward does.
pub struct Embed {
    p: EmbedParameter,
}

impl Embed {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.embed_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            bail!("embed_param.num_output must be positive");
        }
        if p.input_dim() == 0 {
            bail!("embed_param.input_dim must be positive");
        }
        Ok(Embed { p })
    }
}

impl Layer for Embed {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let n = self.p.num_output() as i64;
        let k = self.p.input_dim() as i64;
        let mut top = bottoms[0].clone();
        top.push(n);
        let mut params = vec![ParamDecl::new(vec![k, n], self.p.weight_filler.clone().unwrap_or_default())];
        if self.p.bias_term() {
            params.push(ParamDecl::new(vec![n], self.p.bias_filler.clone().unwrap_or_default()));
        }
        Ok(SetupOut { tops: vec![top], params })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let idx = float_indices(x, self.p.input_dim() as i64, "Embed")?;
        let mut y = params[0].f_index_select(0, &idx.f_to_device(params[0].device())?)?;
        if let Some(b) = params.get(1) {
            y = y.f_add(b)?;
        }
        let mut top = x.size();
        top.push(self.p.num_output() as i64);
        Ok(vec![y.f_reshape(top.as_slice())?])
    }
}
