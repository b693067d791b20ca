//! Reading a `.caffemodel` whatever Caffe fork wrote it.
//!
//! A `.caffemodel` holds every layer's whole LayerParameter, but loading
//! weights needs only each layer's name and blobs (Caffe's
//! CopyTrainedLayersFrom reads nothing else). Forks gave their own layers'
//! parameters field numbers that BVLC Caffe later used for others (DeepLab's
//! `interp_param` is 143, BVLC's `input_param`; SegNet's `upsample_param` is
//! 137, BVLC's `embed_param`), and a field whose wire type differs from this
//! schema's makes the full decode fail. When it does, the file is read again
//! through the messages below, which know only names, types and blobs: every
//! other field, whatever its number, is skipped.
use std::path::Path;

use prost::Message;

use crate::proto::binary::{decode_message, read_bytes};
use crate::proto::caffe::{BlobProto, LayerParameter, NetParameter, V0LayerParameter, V1LayerParameter};
use crate::{warn, Result};

#[derive(Clone, PartialEq, Message)]
struct NetWeights {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "100")]
    layer: Vec<LayerWeights>,
    #[prost(message, repeated, tag = "2")]
    layers: Vec<V1LayerWeights>,
}

#[derive(Clone, PartialEq, Message)]
struct LayerWeights {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    r#type: Option<String>,
    #[prost(message, repeated, tag = "7")]
    blobs: Vec<BlobProto>,
}

#[derive(Clone, PartialEq, Message)]
struct V1LayerWeights {
    #[prost(message, optional, tag = "1")]
    layer: Option<V0LayerWeights>,
    #[prost(string, optional, tag = "4")]
    name: Option<String>,
    #[prost(int32, optional, tag = "5")]
    r#type: Option<i32>,
    #[prost(message, repeated, tag = "6")]
    blobs: Vec<BlobProto>,
}

#[derive(Clone, PartialEq, Message)]
struct V0LayerWeights {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    r#type: Option<String>,
    #[prost(message, repeated, tag = "50")]
    blobs: Vec<BlobProto>,
}

impl NetWeights {
    /// The layers as this schema's NetParameter, holding names, types and blobs only.
    fn into_net_parameter(self) -> NetParameter {
        let layer = self
            .layer
            .into_iter()
            .map(|l| LayerParameter { name: l.name, r#type: l.r#type, blobs: l.blobs, ..Default::default() })
            .collect();
        let layers = self
            .layers
            .into_iter()
            .map(|l| V1LayerParameter {
                layer: l.layer.map(|v0| V0LayerParameter {
                    name: v0.name,
                    r#type: v0.r#type,
                    blobs: v0.blobs,
                    ..Default::default()
                }),
                name: l.name,
                r#type: l.r#type,
                blobs: l.blobs,
                ..Default::default()
            })
            .collect();
        NetParameter { name: self.name, layer, layers, ..Default::default() }
    }
}

/// Reads a `.caffemodel` for its weights: the whole NetParameter when this
/// schema can decode it, else (a fork's parameters under clashing field
/// numbers) each layer's name, type and blobs, with a warning. A file neither
/// decode reads is the full decode's error.
pub fn read_caffemodel(path: &Path) -> Result<NetParameter> {
    let bytes = read_bytes(path)?;
    let why = match NetParameter::decode(bytes.as_slice()) {
        Ok(net) => return Ok(net),
        Err(e) => e,
    };
    match NetWeights::decode(bytes.as_slice()) {
        Ok(weights) => {
            warn!(
                "net.cpp:840",
                "{}: its layers' parameters do not decode in this schema ({why}), as when a Caffe fork numbered \
                 its own parameters as BVLC Caffe numbers others; reading each layer's name and blobs, all that \
                 loading weights uses",
                path.display()
            );
            Ok(weights.into_net_parameter())
        }
        Err(_) => decode_message::<NetParameter>(&bytes, path),
    }
}
