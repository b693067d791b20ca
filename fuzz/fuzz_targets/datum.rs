//! Datum records (raw, float, encoded PNG/JPEG) through Caffe's
//! DataTransformer with arbitrary crop, mirror, scale and mean values.
#![no_main]
use arbitrary::Arbitrary;
use caffe_tch::data::datum;
use caffe_tch::data::transform::Transformer;
use caffe_tch::proto::caffe::{Phase, TransformationParameter};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    crop: u8,
    mirror: bool,
    train: bool,
    scale: i8,
    means: Vec<i8>,
    force_color: bool,
    force_gray: bool,
    record: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let Ok(mode) = datum::color_mode(input.force_color, input.force_gray) else { return };
    let Ok(sample) = datum::parse_and_decode(&input.record, mode) else { return };
    let p = TransformationParameter {
        crop_size: Some(u32::from(input.crop % 64)),
        mirror: Some(input.mirror),
        scale: Some(f32::from(input.scale) / 16.0),
        mean_value: input.means.iter().take(4).map(|&m| f32::from(m)).collect(),
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
    let _ = t.transform(&sample, &mut out);
});
