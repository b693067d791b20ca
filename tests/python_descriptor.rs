//! `python/caffe/proto/caffe.desc`, the compiled schema that the Python
//! package's `caffe_pb2` loads, must be byte-equal to the descriptor set the
//! library embeds (build.rs compiles `proto/caffe.proto` with protox), or Python
//! and Rust would disagree on the schema. Regenerate after editing the .proto
//! with `UPDATE_PYTHON_DESCRIPTOR=1 cargo test --test suite -- python_descriptor`.
use caffe_tch::proto::DESCRIPTOR_SET;

#[test]
fn python_caffe_desc_equals_the_library_schema() {
    let path = crate::common::repo().join("python/caffe/proto/caffe.desc");
    if std::env::var("UPDATE_PYTHON_DESCRIPTOR").is_ok() {
        std::fs::write(&path, DESCRIPTOR_SET).expect("write python/caffe/proto/caffe.desc");
    }
    let on_disk = std::fs::read(&path).unwrap_or_default();
    assert!(
        on_disk == DESCRIPTOR_SET,
        "{} is stale ({} bytes, the library's schema is {} bytes): rerun this test with UPDATE_PYTHON_DESCRIPTOR=1",
        path.display(),
        on_disk.len(),
        DESCRIPTOR_SET.len()
    );
}
