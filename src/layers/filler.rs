//! Caffe's weight fillers: constant, uniform, gaussian (with `sparse`),
//! positive_unitball, xavier, msra and bilinear. Values are drawn on the CPU
//! from libtorch's generator (seeded by the solver's `random_seed`) and then
//! moved to the net's device, so a seed gives the same weights on any device.
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

use crate::proto::caffe::{filler_parameter::VarianceNorm, FillerParameter};

/// Caffe's fan-in/fan-out: fan_in = count / shape[0], fan_out = count / shape[1].
fn fans(shape: &[i64]) -> (f64, f64) {
    let count: i64 = shape.iter().product();
    let fan_in = if shape.is_empty() || shape[0] == 0 { count } else { count / shape[0] };
    let fan_out = if shape.len() > 1 && shape[1] != 0 { count / shape[1] } else { count };
    (fan_in as f64, fan_out as f64)
}

fn variance_n(f: &FillerParameter, shape: &[i64]) -> f64 {
    let (fan_in, fan_out) = fans(shape);
    match f.variance_norm() {
        VarianceNorm::FanIn => fan_in,
        VarianceNorm::FanOut => fan_out,
        VarianceNorm::Average => (fan_in + fan_out) / 2.0,
    }
}

/// Creates a float tensor of `shape` filled as `f` says, on `device`. Every
/// allocation is fallible: the shape comes from a prototxt or a weights file.
pub fn fill(f: &FillerParameter, shape: &[i64], device: Device) -> Result<Tensor> {
    let cpu = (Kind::Float, Device::Cpu);
    let empty = || Tensor::f_empty(shape, cpu);
    let t = match f.r#type() {
        "constant" => Tensor::f_full(shape, f.value() as f64, cpu)?,
        "uniform" => empty()?.f_uniform_(f.min() as f64, f.max() as f64)?,
        "gaussian" => {
            let t = empty()?.f_normal_(f.mean() as f64, f.std() as f64)?;
            if f.sparse() >= 0 {
                // Keep each weight with probability sparse / num_outputs.
                if shape.is_empty() {
                    return Err(Error::invalid("sparse gaussian filler needs at least 1 axis"));
                }
                let p = (f.sparse() as f64 / shape[0] as f64).clamp(0.0, 1.0);
                t.f_mul(&empty()?.f_bernoulli_float_(p)?)?
            } else {
                t
            }
        }
        "positive_unitball" => {
            if shape.is_empty() || shape[0] == 0 {
                return Err(Error::invalid("positive_unitball filler needs a non-empty first axis"));
            }
            let rows = empty()?.f_uniform_(0.0, 1.0)?.f_reshape([shape[0], -1])?;
            let sums = rows.f_sum_dim_intlist([1i64].as_slice(), true, Kind::Float)?;
            rows.f_div(&sums)?.f_reshape(shape)?
        }
        "xavier" => {
            let scale = (3.0 / variance_n(f, shape)).sqrt();
            empty()?.f_uniform_(-scale, scale)?
        }
        "msra" => {
            let std = (2.0 / variance_n(f, shape)).sqrt();
            empty()?.f_normal_(0.0, std)?
        }
        "bilinear" => bilinear(shape)?,
        other => {
            return Err(Error::Invalid(format!(
                "unknown filler type \"{other}\" (known: constant, uniform, gaussian, positive_unitball, xavier, msra, bilinear)"
            )))
        }
    };
    Ok(t.f_to_device(device)?)
}

/// The bilinear upsampling kernel for Deconvolution: square 4-D kernels only.
fn bilinear(shape: &[i64]) -> Result<Tensor> {
    if shape.len() != 4 || shape[2] != shape[3] {
        return Err(Error::Invalid(format!("bilinear filler needs a 4-D blob with square kernels, got {shape:?}")));
    }
    let (h, w) = (shape[2], shape[3]);
    let f = (w as f64 / 2.0).ceil();
    let c = (2.0 * f - 1.0 - f % 2.0) / (2.0 * f);
    let plane: Vec<f32> = (0..h * w)
        .map(|i| {
            let x = (i % w) as f64;
            let y = ((i / w) % h) as f64;
            ((1.0 - (x / f - c).abs()) * (1.0 - (y / f - c).abs())) as f32
        })
        .collect();
    let plane = Tensor::f_from_slice(&plane)?.f_reshape([1, 1, h, w])?;
    Ok(plane.f_expand([shape[0], shape[1], h, w], false)?.f_contiguous()?)
}

/// A filler given as `constant` `value`.
pub fn constant(value: f32) -> FillerParameter {
    FillerParameter { r#type: Some("constant".into()), value: Some(value), ..Default::default() }
}
