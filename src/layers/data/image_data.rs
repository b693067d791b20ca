//! Caffe's `ImageData` layer: images named in a list file, with labels, prefetched.
use crate::{Error, Result};
use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tch::Tensor;

use super::image_list::{ListOrder, ListParams};
use super::prefetch::{next_tops, Batch, BatchBuilder, BatchSource, Prefetcher};
use super::{check_tops, draw_seed, shape_text};
use crate::data::datum::Sample;
use crate::data::image;
use crate::data::transform::Transformer;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{LayerParameter, Phase, TransformationParameter};
use crate::{bail, info};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ImageData",
        family: family_of(file!()),
        params: "image_data_param.source, root_folder, batch_size, new_height, new_width, is_color, shuffle, rand_skip; transform_param",
        tests: "tests/data.rs",
        create: |p| Ok(Box::new(ImageDataLayer::new(p)?)),
    });
}

struct ImageListSource {
    list: String,
    root: String,
    order: ListOrder<(String, i32)>,
    new_height: usize,
    new_width: usize,
    is_color: bool,
    transformer: Transformer,
    batch_size: usize,
    /// Records this reader keeps: those at offsets `rank`, `rank + world`, ...
    /// of the one sequence every rank shuffles alike.
    world: usize,
}

impl ImageListSource {
    fn current(&self) -> Result<Sample> {
        let (file, label) = self.order.current();
        let path = format!("{}{}", self.root, file);
        let img = image::read_file(Path::new(&path), self.new_height, self.new_width, self.is_color).map_err(|e| {
            Error::data(format!("source '{}' (line {}): could not load '{file}': {e}", self.list, self.order.pos + 1))
        })?;
        Ok(Sample::from_image(img, *label as f32))
    }

    /// To the next record this reader keeps (`world` records on in the sequence).
    fn advance(&mut self) {
        for _ in 0..self.world {
            self.order.step();
        }
    }

    fn shape_of(&self, s: &Sample) -> Result<[usize; 3]> {
        self.transformer
            .output_shape(s.channels, s.height, s.width)
            .map_err(|e| Error::data(format!("source '{}': '{}': {e}", self.list, self.order.current().0)))
    }
}

impl BatchSource for ImageListSource {
    fn batch_shape(&mut self) -> Result<Shape> {
        let s = self.current()?;
        let [c, h, w] = self.shape_of(&s)?;
        Ok(vec![self.batch_size as i64, c as i64, h as i64, w as i64])
    }

    fn load_batch(&mut self) -> Result<Batch> {
        let mut builder: Option<BatchBuilder> = None;
        for i in 0..self.batch_size {
            let s = self.current()?;
            let b = match &mut builder {
                Some(b) => b,
                None => builder.insert(BatchBuilder::new(self.batch_size, self.shape_of(&s)?)),
            };
            let (list, file) = (&self.list, &self.order.current().0);
            self.transformer
                .transform(&s, b.item(i))
                .map_err(|e| Error::data(format!("source '{list}': '{file}': {e}")))?;
            b.labels.push(s.label);
            self.advance();
        }
        match builder {
            Some(b) => b.finish(true),
            None => Err(Error::data("batch_size is 0")),
        }
    }
}

/// Caffe's `ImageData` layer: images named in a list file, with labels.
pub struct ImageDataLayer {
    param: LayerParameter,
    prefetch: Option<Prefetcher>,
}

impl ImageDataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        Ok(ImageDataLayer { param: p.clone(), prefetch: None })
    }
}

impl Layer for ImageDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("ImageData takes no bottom blobs, got {}", bottoms.len());
        }
        check_tops(&self.param, 2, 2)?;
        let ip = self.param.image_data_param.clone().unwrap_or_default();
        let ListParams { list, batch_size, new_size: (new_height, new_width) } = ListParams::read(&ip)?;
        info!("image_data_layer.cpp:38", "Opening file {list}");
        let lines = crate::data::image::read_image_list(Path::new(&list))?;
        let phase = self.param.phase();
        // Data-parallel: the ranks split the list when they order it alike (no
        // shuffle and no random skip, or a seed they share for both).
        let (rank, world) = if phase == Phase::Train { crate::data::train_shard() } else { (0, 1) };
        let random_order = ip.shuffle() || ip.rand_skip() > 0;
        let shared = if phase == Phase::Train { crate::data::shared_seed() } else { None };
        let split = world > 1 && (!random_order || shared.is_some());
        if !split {
            super::warn_if_unsharded(&self.param);
        }
        let (rank, world) = if split { (rank, world) } else { (0, 1) };
        let order_seed = match shared {
            _ if !random_order => 0,
            Some(s) => s,
            None => draw_seed()?,
        };
        let rng = StdRng::seed_from_u64(order_seed);
        let (order, skipped) = ListOrder::start(lines, ip.shuffle(), ip.rand_skip(), rng, &list)?;
        if ip.shuffle() {
            info!("image_data_layer.cpp:51", "Shuffling data");
        }
        info!("image_data_layer.cpp:56", "A total of {} images.", order.entries.len());
        if let Some(skip) = skipped {
            info!("image_data_layer.cpp:62", "Skipping first {skip} data points.");
        }
        let tp: TransformationParameter = self.param.transform_param.clone().unwrap_or_default();
        let seed = if Transformer::needs_rand(&tp, phase) { draw_seed()? } else { 0 };
        let transformer = Transformer::new(&tp, phase, seed)?;
        let mut source = ImageListSource {
            list,
            root: ip.root_folder().to_string(),
            order,
            new_height,
            new_width,
            is_color: ip.is_color(),
            transformer,
            batch_size,
            world,
        };
        if world > 1 {
            info!("image_data_layer.cpp:1", "Rank {rank} of {world} reads every {world}th image from offset {rank}");
            for _ in 0..rank {
                source.order.step();
            }
        }
        self.prefetch = None;
        let (prefetch, shape) = Prefetcher::start(self.param.name(), 4, move || Ok(source))?;
        info!("image_data_layer.cpp:85", "output data size: {}", shape_text(&shape));
        self.prefetch = Some(prefetch);
        Ok(SetupOut { tops: vec![shape, vec![batch_size as i64]], params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        next_tops(&mut self.prefetch, ctx.device)
    }
}
