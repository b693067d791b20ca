//! `extract_features WEIGHTS NET_PROTOTXT BLOB[,BLOB...] DB[,DB...] NUM_MINI_BATCHES
//! DB_TYPE [CPU|GPU] [DEVICE_ID]`: runs a TEST-phase net over its data layer and
//! writes each named blob, one Datum of `float_data` per item (shape from the
//! blob's legacy channels/height/width), keyed `%010d`, as Caffe's tool does.
use std::path::Path;

use tch::{Device, Kind};

use super::gflags::Spec;
use crate::data::datum;
use crate::data::db::{Backend, DbWriter};
use crate::net::Net;
use crate::proto::caffe::{Datum, NetState, Phase};
use crate::proto::text::TextOptions;
use crate::{info, Error, Result};

/// Positional arguments only, as Caffe's tool takes them.
pub const SPEC: Spec = Spec {
    tool: "extract_features",
    usage: "pretrained_net_param feature_extraction_proto_file \
extract_feature_blob_name1[,name2,...] save_feature_dataset_name1[,name2,...] num_mini_batches db_type [CPU/GPU] [DEVICE_ID=0]",
    bools: &[],
    values: &[],
};

pub fn main(args: &[String]) -> Result<()> {
    if args.len() < 6 || args.len() > 8 {
        return Err(Error::usage(format!(
            "usage: caffe {} {} (got {} argument(s))",
            SPEC.tool,
            SPEC.usage,
            args.len()
        )));
    }
    let device = match args.get(6).map(|s| s.to_ascii_uppercase()) {
        Some(m) if m == "GPU" => {
            let id: usize = match args.get(7) {
                Some(s) => s.parse().map_err(|_| Error::invalid(format!("DEVICE_ID must be a number, got '{s}'")))?,
                None => 0,
            };
            if !crate::util::cuda::is_available() {
                return Err(Error::invalid("GPU mode asked for but libtorch sees no CUDA device"));
            }
            Device::Cuda(id)
        }
        Some(m) if m != "CPU" => return Err(Error::invalid(format!("the mode must be CPU or GPU, got '{m}'"))),
        _ => Device::Cpu,
    };
    let blobs: Vec<String> = args[2].split(',').map(String::from).collect();
    let dbs: Vec<String> = args[3].split(',').map(String::from).collect();
    let batches: usize =
        args[4].parse().map_err(|_| Error::invalid(format!("num_mini_batches must be a number, got '{}'", args[4])))?;
    let backend = Backend::parse(&args[5])?;
    extract(Path::new(&args[0]), Path::new(&args[1]), &blobs, &dbs, batches, backend, device)?;
    Ok(())
}

/// Extracts; returns the number of items written per blob.
pub fn extract(
    weights: &Path,
    net_file: &Path,
    blobs: &[String],
    dbs: &[String],
    mini_batches: usize,
    backend: Backend,
    device: Device,
) -> Result<Vec<usize>> {
    if blobs.len() != dbs.len() {
        return Err(Error::invalid(format!(
            "{} blob names but {} dataset names: they must match one to one",
            blobs.len(),
            dbs.len()
        )));
    }
    let state = NetState { phase: Some(Phase::Test as i32), ..Default::default() };
    let mut net = Net::from_file(net_file, &state, TextOptions::default(), device)?;
    net.load_weights(weights)?;
    for b in blobs {
        if net.blob_shape(b).is_none() {
            return Err(Error::invalid(format!("Unknown feature blob name {b} in the network {}", net_file.display())));
        }
    }
    let mut writers = Vec::with_capacity(dbs.len());
    for d in dbs {
        info!("extract_features.cpp:123", "Opening dataset {d}");
        writers.push(DbWriter::create(Path::new(d), backend)?);
    }
    info!("extract_features.cpp:131", "Extracting Features");
    let mut written = vec![0usize; blobs.len()];
    for _ in 0..mini_batches {
        net.forward_inference()?;
        for (i, name) in blobs.iter().enumerate() {
            let t = net.blob(name).ok_or_else(|| Error::invalid(format!("blob {name} has no value after forward")))?;
            let t = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
            let shape = t.size();
            let num = shape.first().copied().unwrap_or(1).max(1) as usize;
            let legacy = |k: usize| shape.get(k).copied().unwrap_or(1) as i32;
            let values: Vec<f32> = Vec::<f32>::try_from(t.f_flatten(0, -1)?)?;
            let dim = values.len() / num;
            for n in 0..num {
                let d = Datum {
                    channels: Some(legacy(1)),
                    height: Some(legacy(2)),
                    width: Some(legacy(3)),
                    float_data: values[n * dim..(n + 1) * dim].to_vec(),
                    ..Default::default()
                };
                writers[i].put(format!("{:010}", written[i]).as_bytes(), &datum::to_bytes(&d));
                written[i] += 1;
                if written[i] % 1000 == 0 {
                    writers[i].commit()?;
                    info!(
                        "extract_features.cpp:165",
                        "Extracted features of {} query images for feature blob {name}", written[i]
                    );
                }
            }
        }
    }
    for (i, w) in writers.into_iter().enumerate() {
        w.finish()?;
        info!(
            "extract_features.cpp:174",
            "Extracted features of {} query images for feature blob {}", written[i], blobs[i]
        );
    }
    info!("extract_features.cpp:178", "Successfully extracted the features!");
    Ok(written)
}
