//! Caffe's `MemoryData` layer: batches from arrays the caller sets.
use crate::Result;
use tch::{Kind, Tensor};

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "MemoryData",
        family: family_of(file!()),
        params:
            "memory_data_param.batch_size, channels, height, width (fed by Net::set_input_arrays / Layer::set_input)",
        tests: "tests/data.rs",
        create: |p| Ok(Box::new(MemoryDataLayer::new(p)?)),
    });
}

/// Caffe's `MemoryData` layer: serves batches from arrays the caller sets
/// (data N×C×H×W and labels N, N a multiple of batch_size), cycling through them.
pub struct MemoryDataLayer {
    batch_size: i64,
    item: [i64; 3],
    data: Option<Tensor>,
    labels: Option<Tensor>,
    pos: i64,
}

impl MemoryDataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        let mp = p.memory_data_param.unwrap_or_default();
        let dims = [mp.batch_size() as i64, mp.channels() as i64, mp.height() as i64, mp.width() as i64];
        if dims.iter().any(|&d| d <= 0) {
            bail!(
                "memory_data_param batch_size, channels, height and width must all be given and positive, got {dims:?}"
            );
        }
        Ok(MemoryDataLayer { batch_size: dims[0], item: [dims[1], dims[2], dims[3]], data: None, labels: None, pos: 0 })
    }
}

impl Layer for MemoryDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("MemoryData takes no bottom blobs, got {}", bottoms.len());
        }
        let [c, h, w] = self.item;
        Ok(SetupOut { tops: vec![vec![self.batch_size, c, h, w], vec![self.batch_size]], params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let (Some(data), Some(labels)) = (&self.data, &self.labels) else {
            bail!("MemoryData needs its data and labels set before forward (Net::set_input_arrays)");
        };
        let n = data.size()[0];
        if labels.size()[0] != n {
            bail!("MemoryData has {n} data items but {} labels", labels.size()[0]);
        }
        let d = data.f_narrow(0, self.pos, self.batch_size)?.f_to_device(ctx.device)?;
        let l = labels.f_narrow(0, self.pos, self.batch_size)?.f_to_device(ctx.device)?;
        self.pos = (self.pos + self.batch_size) % n;
        Ok(vec![d, l])
    }

    /// Top 0: data (N×C×H×W); top 1: labels (N values). N must be a multiple of batch_size.
    fn set_input(&mut self, top: usize, value: Tensor) -> Result<()> {
        let size = value.size();
        let n = size.first().copied().unwrap_or(0);
        if n == 0 || n % self.batch_size != 0 {
            bail!("MemoryData input has {n} items; it must be a positive multiple of batch_size {}", self.batch_size);
        }
        let value = value.f_to_kind(Kind::Float)?.detach();
        match top {
            0 => {
                let [c, h, w] = self.item;
                if size.len() != 4 || size[1..] != [c, h, w] {
                    bail!("MemoryData data must be N×{c}×{h}×{w}, got {size:?}");
                }
                self.data = Some(value);
            }
            1 => {
                let count: i64 = size.iter().product();
                if count != n {
                    bail!("MemoryData labels must hold one value per item, got shape {size:?}");
                }
                self.labels = Some(value.f_reshape([n])?);
            }
            _ => bail!("MemoryData has 2 tops (data, label), not top {top}"),
        }
        // New arrays restart from their first item, as Caffe's Reset does.
        self.pos = 0;
        Ok(())
    }
}
