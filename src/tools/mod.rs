//! The `caffe` command's tools, as library functions the CLI calls.
pub mod device_query;
pub mod summarize;
pub mod upgrade;
