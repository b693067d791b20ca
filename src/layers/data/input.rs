//! Input: the net's entry points, fed by the caller (pycaffe's `net.blobs[x].data = ...`).
//! An input that was never set is zeros of the declared shape.
use crate::Result;
use tch::{Kind, Tensor};

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Input",
        family: family_of(file!()),
        params: "input_param.shape (one per top, or one for all)",
        tests: "parity fixtures (all nets)",
        create: |p| Ok(Box::new(Input::new(p))),
    });
}

pub struct Input {
    param: LayerParameter,
    shapes: Vec<Shape>,
    values: Vec<Option<Tensor>>,
    /// The zeros an unset input holds, made once: Caffe's blob keeps its memory.
    zeros: Vec<Option<Tensor>>,
}

impl Input {
    fn new(p: &LayerParameter) -> Self {
        Input { param: p.clone(), shapes: Vec::new(), values: Vec::new(), zeros: Vec::new() }
    }
}

impl Layer for Input {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("Input takes no bottom blobs, got {}", bottoms.len());
        }
        let n_top = self.param.top.len();
        let shapes: Vec<Shape> = self
            .param
            .input_param
            .as_ref()
            .map(|p| p.shape.iter().map(|s| s.dim.clone()).collect())
            .unwrap_or_default();
        self.shapes = match shapes.len() {
            0 => bail!("input_param.shape is required"),
            1 => vec![shapes[0].clone(); n_top],
            n if n == n_top => shapes,
            n => bail!("input_param gives {n} shapes for {n_top} tops (give one, or one per top)"),
        };
        if let Some(s) = self.shapes.iter().find(|s| s.iter().any(|&d| d < 0)) {
            bail!("input shape {s:?} has a negative dimension");
        }
        self.values = (0..n_top).map(|_| None).collect();
        self.zeros = (0..n_top).map(|_| None).collect();
        Ok(SetupOut { tops: self.shapes.clone(), params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut tops = Vec::with_capacity(self.values.len());
        for ((v, s), z) in self.values.iter().zip(&self.shapes).zip(self.zeros.iter_mut()) {
            tops.push(match v {
                Some(t) => t.shallow_clone(),
                None => match z {
                    Some(t) if t.size() == *s && t.device() == ctx.device => t.shallow_clone(),
                    _ => {
                        let t = Tensor::f_zeros(s.as_slice(), (Kind::Float, ctx.device))?;
                        *z = Some(t.shallow_clone());
                        t
                    }
                },
            });
        }
        Ok(tops)
    }

    fn set_input(&mut self, top: usize, value: Tensor) -> Result<()> {
        match self.values.get_mut(top) {
            Some(v) => {
                *v = Some(value);
                Ok(())
            }
            None => bail!("Input has no top {top}"),
        }
    }
}
