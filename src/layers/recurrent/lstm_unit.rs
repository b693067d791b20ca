//! LSTMUnit: one step of the LSTM cell (lstm.rs's `lstm_unit`) as a layer.
use crate::Result;
use tch::Tensor;

use super::lstm::{is_binary, lstm_unit};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "LSTMUnit",
        family: family_of(file!()),
        params: "(none) bottoms c_prev (1×N×H), gates (1×N×4H, order i f o g), cont (1×N); tops c, h",
        tests: "gradient check, scalar reference, Caffe's forget-gate derivative for non-binary cont, shape errors (tests/layers_recurrent.rs)",
        create: |_| Ok(Box::new(LstmUnit { hidden: 0 })),
    });
}

/// Caffe's LSTMUnit: one LSTM step, no blobs. cont gets no gradient.
pub struct LstmUnit {
    hidden: i64,
}

impl LstmUnit {
    fn check(&self, bottoms: &[Shape]) -> Result<i64> {
        check_bottoms(bottoms, 3, 3)?;
        let n = bottoms[0].get(1).copied().unwrap_or(-1);
        for (i, b) in bottoms.iter().enumerate() {
            let axes = if i == 2 { 2 } else { 3 };
            if b.len() != axes || b[0] != 1 || b[1] != n {
                let what = ["c_prev (1×N×H)", "gates (1×N×4H)", "cont (1×N)"][i];
                bail!("bottom[{i}] {what} must have {axes} axes, a first axis of 1 and N = {n}, got {b:?}");
            }
        }
        let h = bottoms[0][2];
        if bottoms[1][2] != 4 * h {
            bail!("bottom[1] (gates) must have 4·H = {} channels for H = {h}, got {:?}", 4 * h, bottoms[1]);
        }
        Ok(h)
    }
}

impl Layer for LstmUnit {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        self.hidden = self.check(bottoms)?;
        Ok(SetupOut { tops: vec![bottoms[0].clone(), bottoms[0].clone()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        self.hidden = self.check(&shapes)?;
        let (c_prev, gates) = (&bottoms[0], &bottoms[1]);
        let cont = bottoms[2].detach().f_to_kind(gates.kind())?.f_unsqueeze(-1)?;
        let (c, h) = lstm_unit(c_prev, gates, &cont, !is_binary(&cont)?)?;
        Ok(vec![c, h])
    }
}
