//! Datum records (raw, float, encoded images of every format read) through Caffe's
//! DataTransformer with arbitrary crop, mirror, scale, mean values or a mean
//! file of any size (often not the image's).
#![no_main]
use arbitrary::Arbitrary;
use caffe_tch::data::datum;
use caffe_tch::data::transform::Transformer;
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::{Phase, TransformationParameter};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    crop: u8,
    mirror: bool,
    train: bool,
    scale: i8,
    means: Vec<i8>,
    force_color: bool,
    force_gray: bool,
    /// A mean file of 1×C×H×W (each 0 to 31) instead of the mean values.
    mean_file: Option<[u8; 3]>,
    /// The record's bytes as they are (a `Vec<u8>` here would interleave a
    /// continue-flag byte before each of them).
    record: &'a [u8],
}

/// Writes a mean file of `dims` to a scratch path.
fn mean_file(dims: [u8; 3]) -> String {
    let dir = std::env::temp_dir().join(format!("caffe-tch-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join("mean.binaryproto");
    let shape: Vec<i64> = [1, dims[0] % 32, dims[1] % 32, dims[2] % 32].iter().map(|&d| i64::from(d)).collect();
    let values = (0..shape.iter().product::<i64>()).map(|i| (i % 256) as f32).collect();
    binary::write_message(&path, &binary::make_blob(&shape, values)).expect("mean file");
    path.display().to_string()
}

fuzz_target!(|input: Input<'_>| {
    // A limit well under libFuzzer's RSS limit: a file may ask for anything up
    // to the limit (the product's default is the machine's memory).
    caffe_tch::util::limits::set_max_memory(256 << 20);
    let Ok(mode) = datum::color_mode(input.force_color, input.force_gray) else { return };
    let Ok(sample) = datum::parse_and_decode(input.record, mode) else { return };
    let p = TransformationParameter {
        crop_size: Some(u32::from(input.crop % 64)),
        mirror: Some(input.mirror),
        scale: Some(f32::from(input.scale) / 16.0),
        mean_value: if input.mean_file.is_some() {
            vec![]
        } else {
            input.means.iter().take(4).map(|&m| f32::from(m)).collect()
        },
        mean_file: input.mean_file.map(mean_file),
        force_color: Some(input.force_color),
        force_gray: Some(input.force_gray),
        ..Default::default()
    };
    let phase = if input.train { Phase::Train } else { Phase::Test };
    let Ok(mut t) = Transformer::new(&p, phase, 7) else { return };
    let Ok([c, h, w]) = t.output_shape(sample.channels, sample.height, sample.width) else { return };
    if c.saturating_mul(h).saturating_mul(w) > 1 << 24 {
        return;
    }
    let mut out = vec![0f32; c * h * w];
    let _transformed = t.transform(&sample, &mut out);
});
