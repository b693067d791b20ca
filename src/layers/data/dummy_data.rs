//! Caffe's `DummyData` layer: tops filled by fillers.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::filler;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{FillerParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "DummyData",
        family: family_of(file!()),
        params: "dummy_data_param.shape or num/channels/height/width, data_filler (one, or one per top)",
        tests: "tests/data.rs",
        create: |p| Ok(Box::new(DummyDataLayer::new(p)?)),
    });
}

/// Caffe's `DummyData` layer: tops filled by fillers; constant tops are filled
/// once, the others again on every forward.
pub struct DummyDataLayer {
    param: LayerParameter,
    shapes: Vec<Shape>,
    fillers: Vec<FillerParameter>,
    cached: Vec<Option<Tensor>>,
}

impl DummyDataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        Ok(DummyDataLayer { param: p.clone(), shapes: vec![], fillers: vec![], cached: vec![] })
    }
}

impl Layer for DummyDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("DummyData takes no bottom blobs, got {}", bottoms.len());
        }
        let n = self.param.top.len();
        if n == 0 {
            bail!("DummyData needs at least one top");
        }
        let dp = self.param.dummy_data_param.clone().unwrap_or_default();
        let one_or_each = |what: &str, len: usize| -> Result<()> {
            if len != 1 && len != n {
                bail!("dummy_data_param.{what} must be given once or once per top ({n}), got {len}");
            }
            Ok(())
        };
        self.fillers = match dp.data_filler.len() {
            0 => vec![filler::constant(0.0); n],
            1 => vec![dp.data_filler[0].clone(); n],
            k if k == n => dp.data_filler.clone(),
            k => bail!("dummy_data_param.data_filler must be given 0, 1 or {n} (one per top) times, got {k}"),
        };
        let legacy = !dp.num.is_empty() || !dp.channels.is_empty() || !dp.height.is_empty() || !dp.width.is_empty();
        let pick = |v: &[u32], i: usize| -> i64 {
            if v.len() == 1 {
                v[0] as i64
            } else {
                v[i] as i64
            }
        };
        self.shapes = if legacy {
            if !dp.shape.is_empty() {
                bail!("dummy_data_param gives both shape and the legacy num/channels/height/width");
            }
            one_or_each("num", dp.num.len())?;
            one_or_each("channels", dp.channels.len())?;
            one_or_each("height", dp.height.len())?;
            one_or_each("width", dp.width.len())?;
            (0..n)
                .map(|i| vec![pick(&dp.num, i), pick(&dp.channels, i), pick(&dp.height, i), pick(&dp.width, i)])
                .collect()
        } else {
            one_or_each("shape", dp.shape.len())?;
            (0..n).map(|i| dp.shape[if dp.shape.len() == 1 { 0 } else { i }].dim.clone()).collect()
        };
        if let Some(s) = self.shapes.iter().find(|s| s.iter().any(|&d| d < 0)) {
            bail!("DummyData shape {s:?} has a negative dimension");
        }
        self.cached = (0..n).map(|_| None).collect();
        Ok(SetupOut { tops: self.shapes.clone(), params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut tops = Vec::with_capacity(self.shapes.len());
        for i in 0..self.shapes.len() {
            if let Some(t) = &self.cached[i] {
                if t.device() == ctx.device {
                    tops.push(t.shallow_clone());
                    continue;
                }
            }
            let t = filler::fill(&self.fillers[i], &self.shapes[i], ctx.device)?;
            if self.fillers[i].r#type() == "constant" {
                self.cached[i] = Some(t.shallow_clone());
            }
            tops.push(t);
        }
        Ok(tops)
    }
}
