//! caffe-tch: Caffe's file formats, nets, data and solvers on libtorch.
//!
//! Data flow: prototxt → [`proto::caffe::NetParameter`] (text or binary) →
//! [`proto::upgrade`] (legacy V0/V1 forms) → [`net::Net`] of layers from the
//! [`layers`] registry → [`solver`] steps. Datasets enter through [`data`];
//! weights and snapshots through [`proto::binary`].
pub mod cli;
pub mod data;
pub mod dist;
pub mod error;
pub mod export;
pub mod layers;
pub mod log;
pub mod net;
pub mod proto;
pub mod solver;
pub mod tools;
pub mod util;

pub use error::{Error, Result};
