//! PReLU: ReLU with a learnable negative slope per channel (or one shared).
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{FillerParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "PReLU",
        family: family_of(file!()),
        params: "channel_shared, filler (default constant 0.25)",
        tests: "gradient check (bottom and slopes), numeric tests (tests/layers_activation.rs)",
        create: |p| Ok(Box::new(PReLU::new(p))),
    });
}

/// PReLU: max(x,0) + a_c·min(x,0) with a learnable slope per channel (axis 1),
/// or one shared slope (a 0-D blob, as Caffe stores it).
pub struct PReLU {
    channel_shared: bool,
    filler: FillerParameter,
    channels: i64,
}

impl PReLU {
    fn new(lp: &LayerParameter) -> Self {
        let p = lp.prelu_param.clone().unwrap_or_default();
        let filler = p.filler.clone().unwrap_or_else(|| FillerParameter {
            r#type: Some("constant".into()),
            value: Some(0.25),
            ..Default::default()
        });
        PReLU { channel_shared: p.channel_shared(), filler, channels: 0 }
    }
}

impl Layer for PReLU {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.len() < 2 {
            bail!("Number of axes of bottom blob must be >=2, got shape {s:?}");
        }
        self.channels = s[1];
        let shape = if self.channel_shared { vec![] } else { vec![self.channels] };
        Ok(SetupOut { tops: vec![s.clone()], params: vec![ParamDecl::new(shape, self.filler.clone())] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = x.size();
        if s.len() < 2 {
            bail!("Number of axes of bottom blob must be >=2, got shape {s:?}");
        }
        let Some(a) = params.first() else { bail!("PReLU needs its slope blob") };
        let slope = if self.channel_shared {
            if a.numel() != 1 {
                bail!(
                    "Negative slope size is inconsistent with prototxt config: {} values, channel_shared needs 1",
                    a.numel()
                );
            }
            a.f_reshape([] as [i64; 0])?
        } else {
            if a.numel() as i64 != s[1] {
                bail!(
                    "Negative slope size is inconsistent with prototxt config: {} values for {} channels",
                    a.numel(),
                    s[1]
                );
            }
            let mut view = vec![1i64; s.len()];
            view[1] = s[1];
            a.f_reshape(view.as_slice())?
        };
        // At x == 0 the bottom gets slope (Caffe's x <= 0 branch): relu' is 0 there, clamp_max' is 1.
        let neg = x.f_clamp_max(0.0)?.f_mul(&slope.f_to_kind(x.kind())?)?;
        Ok(vec![x.f_relu()?.f_add(&neg)?])
    }
}
