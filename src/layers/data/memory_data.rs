//! Caffe's `MemoryData` layer: batches from arrays the caller sets.
use crate::Result;
use tch::{Kind, Tensor};

use super::draw_seed;
use crate::bail;
use crate::data::datum;
use crate::data::transform::Transformer;
use crate::error::Context;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{LayerParameter, Phase};

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

    /// Later batches are `batch` items, from the first item again. Items held
    /// that the new size does not divide are let go (a program sets the size,
    /// then gives the images for it).
    fn set_batch_size(&mut self, batch: usize) -> Result<Vec<Shape>> {
        let batch = batch as i64;
        if batch <= 0 {
            bail!("MemoryData batch size must be positive, got {batch}");
        }
        if self.data.as_ref().is_some_and(|d| d.size()[0] % batch != 0) {
            self.data = None;
            self.labels = None;
        }
        self.batch_size = batch;
        self.pos = 0;
        let [c, h, w] = self.item;
        Ok(vec![vec![batch, c, h, w], vec![batch]])
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

/// Caffe's `MemoryDataLayer::AddDatumVector`: the serialized Datums decoded
/// and put through the layer's `transform_param` (its DataTransformer), as
/// the data and label arrays the layer then serves. Each must transform to
/// the layer's channels × height × width, and their number must be a
/// multiple of its batch size (checked when they are set).
pub fn transform_records(param: &LayerParameter, phase: Phase, records: &[&[u8]]) -> Result<(Tensor, Tensor)> {
    if records.is_empty() {
        bail!("There is no datum to add");
    }
    let mp = param.memory_data_param.unwrap_or_default();
    let item = [mp.channels() as usize, mp.height() as usize, mp.width() as usize];
    let tp = param.transform_param.clone().unwrap_or_default();
    let seed = if Transformer::needs_rand(&tp, phase) { draw_seed()? } else { 0 };
    let mut transformer = Transformer::new(&tp, phase, seed)?;
    let count = item.iter().product::<usize>();
    let mut data = vec![0f32; records.len() * count];
    let mut labels = Vec::with_capacity(records.len());
    for (i, (record, out)) in records.iter().zip(data.chunks_exact_mut(count.max(1))).enumerate() {
        let sample = datum::parse_and_decode(record, transformer.color_mode()).context(format!("datum {i}"))?;
        let shape =
            transformer.output_shape(sample.channels, sample.height, sample.width).context(format!("datum {i}"))?;
        if shape != item {
            bail!(
                "datum {i} ({}×{}×{}) transforms to {}×{}×{}, but memory_data_param gives {}×{}×{}",
                sample.channels,
                sample.height,
                sample.width,
                shape[0],
                shape[1],
                shape[2],
                item[0],
                item[1],
                item[2]
            );
        }
        transformer.transform(&sample, out).context(format!("datum {i}"))?;
        labels.push(sample.label);
    }
    let n = records.len() as i64;
    let dims = [n, item[0] as i64, item[1] as i64, item[2] as i64];
    Ok((Tensor::f_from_slice(&data)?.f_reshape(dims)?, Tensor::f_from_slice(&labels)?))
}
