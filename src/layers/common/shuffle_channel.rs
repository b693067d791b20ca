//! ShuffleChannel (ShuffleNet's fork): interleaves the channels of groups.
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ShuffleChannel",
        family: family_of(file!()),
        params: "shuffle_channel_param.group (ShuffleNet's fork)",
        tests: "layers_common: shuffle_channel_* (values, errors, gradient check); python/tests/test_fork_layers_opencv.py",
        create: |p| Ok(Box::new(ShuffleChannel { group: p.shuffle_channel_param.unwrap_or_default().group() as i64 })),
    });
}

/// The C channels, read as `group` rows of C/group, are written column by
/// column: top channel j·group + i is bottom channel i·(C/group) + j.
pub struct ShuffleChannel {
    group: i64,
}

/// The channels in each of `group` groups of a bottom of `shape`, checked
/// (the exporters write the same shuffle).
pub fn channels_per_group(shape: &[i64], group: i64) -> Result<i64> {
    if shape.len() < 2 {
        bail!("ShuffleChannel needs a bottom with a channel axis, got shape {shape:?}");
    }
    if group < 1 || shape[1] % group != 0 {
        bail!("shuffle_channel_param.group {group} must divide the bottom's {} channels", shape[1]);
    }
    Ok(shape[1] / group)
}

impl Layer for ShuffleChannel {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        channels_per_group(&bottoms[0], self.group)?;
        Ok(SetupOut { tops: vec![bottoms[0].clone()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shape = x.size();
        let mut grouped = vec![shape[0], self.group, channels_per_group(&shape, self.group)?];
        grouped.extend_from_slice(&shape[2..]);
        Ok(vec![x.f_reshape(grouped.as_slice())?.f_transpose(1, 2)?.f_contiguous()?.f_reshape(shape.as_slice())?])
    }
}
