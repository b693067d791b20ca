//! Caffe's `HDF5Output` layer: writes its two bottoms to an .h5 file.
use crate::error::Context;
use crate::Result;
use std::path::PathBuf;

use tch::Tensor;

use super::shape_text;
use crate::bail;
use crate::data::hdf5 as h5;
use crate::info;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "HDF5Output",
        family: family_of(file!()),
        params: "hdf5_output_param.file_name (datasets \"data\" and \"label\", rewritten on each forward)",
        tests: "tests/hdf5.rs",
        create: |p| Ok(Box::new(Hdf5OutputLayer::new(p))),
    });
}

/// Caffe's `HDF5Output` layer: each forward writes the batch of its two bottoms
/// as the datasets "data" and "label" (4-D, Caffe's num/channels/height/width
/// view). Caffe creates the datasets anew in a file it keeps open, so only its
/// first forward succeeds; here each forward replaces them (the file holds the
/// latest batch).
pub struct Hdf5OutputLayer {
    param: LayerParameter,
    file_name: PathBuf,
}

impl Hdf5OutputLayer {
    fn new(p: &LayerParameter) -> Self {
        Hdf5OutputLayer { param: p.clone(), file_name: PathBuf::new() }
    }
}

/// A shape in Caffe's legacy 4-D view (num, channels, height, width).
fn legacy_4d(shape: &[i64]) -> Result<Shape> {
    if shape.len() > 4 {
        bail!(
            "cannot write a {}-D blob ({}): HDF5Output writes 4-D (num, channels, height, width)",
            shape.len(),
            shape_text(shape)
        );
    }
    Ok((0..4).map(|i| shape.get(i).copied().unwrap_or(1)).collect())
}

impl Layer for Hdf5OutputLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if bottoms.len() != 2 {
            bail!("HDF5Output takes 2 bottom blobs (data, label), got {}", bottoms.len());
        }
        if !self.param.top.is_empty() {
            bail!("HDF5Output has no top blobs, got {}", self.param.top.len());
        }
        if bottoms[0].first() != bottoms[1].first() {
            bail!(
                "data and label must have the same batch size: ({}) vs ({})",
                shape_text(&bottoms[0]),
                shape_text(&bottoms[1])
            );
        }
        legacy_4d(&bottoms[0])?;
        legacy_4d(&bottoms[1])?;
        let op = self.param.hdf5_output_param.clone().unwrap_or_default();
        self.file_name = match &op.file_name {
            Some(f) if !f.is_empty() => PathBuf::from(f),
            _ => bail!("hdf5_output_param.file_name is required"),
        };
        // Caffe creates (truncates) the file at set-up.
        h5::create(&self.file_name)
            .map_err(|e| crate::Error::Invalid(format!("HDF5Output {}: {e}", self.param.name())))?;
        Ok(SetupOut { tops: vec![], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        info!("hdf5_output_layer.cpp:32", "Saving HDF5 file {}", self.file_name.display());
        let fail = |msg: String| {
            crate::Error::Invalid(format!("HDF5Output {}: file {}: {msg}", self.param.name(), self.file_name.display()))
        };
        let file =
            crate::data::hdf5::options().append(&self.file_name).map_err(|e| fail(format!("cannot open: {e}")))?;
        for (name, blob) in ["data", "label"].iter().zip(bottoms) {
            let shape = legacy_4d(&blob.size())?;
            let values = crate::util::tensor_values(blob)?;
            h5::write_f32(&file, name, &shape, &values)
                .with_context(|| format!("HDF5Output {}: file {}", self.param.name(), self.file_name.display()))?;
        }
        info!("hdf5_output_layer.cpp:52", "Successfully saved {} rows", bottoms[0].size()[0]);
        Ok(vec![])
    }
}
