//! InfogainLoss: the multinomial logistic loss weighted by an information gain matrix H.
use crate::Result;
use std::path::Path;
use tch::Tensor;

use super::{
    around_axis, check_same_num, class_labels, loss_ignore_label, loss_tops, normalize_sum, safe_labels, valid_mask,
    value_with_grad_of, LOG_THRESHOLD,
};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{BlobProto, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "InfogainLoss",
        family: family_of(file!()),
        params: "infogain_loss_param.source (BlobProto) or third bottom H, infogain_loss_param.axis, loss_param.ignore_label, loss_param.normalization, second top (softmax probabilities)",
        tests: "gradient check, numeric tests with H from a file and from a bottom (tests/layers_loss.rs)",
        create: |p| Ok(Box::new(InfogainLoss::new(p))),
    });
}

/// InfogainLoss (Caffe master: softmax inside): −Σ_l H[label, l]·log(max(p_l, 1e-20))
/// over the class axis, normalized. The gradient is Caffe's p·ΣH[label] − H[label],
/// i.e. that of the unclamped log-softmax.
pub struct InfogainLoss {
    lp: LayerParameter,
    axis: usize,
    ignore: Option<i64>,
    /// H from `infogain_param.source` (when there is no third bottom).
    h_file: Option<(Vec<f32>, usize)>,
}

impl InfogainLoss {
    fn new(lp: &LayerParameter) -> Self {
        InfogainLoss { lp: lp.clone(), axis: 1, ignore: loss_ignore_label(lp), h_file: None }
    }

    fn check(&mut self, bottoms: &[Shape]) -> Result<(i64, i64, i64)> {
        check_same_num(&bottoms[0], &bottoms[1])?;
        let axis = self.lp.infogain_loss_param.as_ref().map(|p| p.axis()).unwrap_or(1);
        self.axis = canonical_axis(axis, bottoms[0].len())?;
        let (outer, classes, inner) = around_axis(&bottoms[0], self.axis);
        let labels: i64 = bottoms[1].iter().product();
        if outer * inner != labels {
            bail!(
                "Number of labels ({labels}) must match number of predictions ({outer}×{inner}); e.g., if infogain axis == 1 and prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, with integer values in {{0, 1, ..., C-1}}"
            );
        }
        let h_count = match (bottoms.get(2), &self.h_file) {
            (Some(h), _) => h.iter().product::<i64>(),
            (None, Some((_, n))) => *n as i64,
            (None, None) => bail!("Infogain matrix source must be specified"),
        };
        if h_count != classes * classes {
            bail!("H must be {classes}x{classes} ({} values), got {h_count} values", classes * classes);
        }
        Ok((outer, classes, inner))
    }
}

/// Reads H from a BlobProto file (Caffe's `ReadProtoFromBinaryFile`).
fn read_infogain_matrix(source: &str) -> Result<Vec<f32>> {
    let blob: BlobProto = crate::proto::binary::read_message(Path::new(source))
        .map_err(|e| crate::Error::Invalid(format!("cannot read the infogain matrix: {e}")))?;
    let data = crate::proto::binary::blob_data_f32(&blob);
    let want: i64 = crate::proto::binary::blob_shape(&blob).iter().product();
    if want != data.len() as i64 {
        bail!("infogain matrix {source}: its shape needs {want} values but it holds {}", data.len());
    }
    Ok(data)
}

impl Layer for InfogainLoss {
    fn is_loss_layer(&self) -> bool {
        true
    }

    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 3)?;
        if self.lp.loss_param.as_ref().is_some_and(|l| l.normalize.is_some()) {
            bail!("normalize is deprecated. use \"normalization\"");
        }
        if bottoms.len() < 3 {
            let source = self.lp.infogain_loss_param.as_ref().and_then(|p| p.source.clone());
            let Some(source) = source else { bail!("Infogain matrix source must be specified") };
            let h = read_infogain_matrix(&source)?;
            let n = h.len();
            self.h_file = Some((h, n));
        }
        self.check(bottoms)?;
        Ok(SetupOut { tops: loss_tops(&self.lp, Some(bottoms[0].clone()))?, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let (outer, classes, inner) = self.check(&shapes)?;
        let h = match (bottoms.get(2), &self.h_file) {
            (Some(h), _) => h.detach().f_to_kind(x.kind())?,
            (None, Some((data, _))) => Tensor::f_from_slice(data)?.f_to_kind(x.kind())?.f_to(x.device())?,
            (None, None) => bail!("Infogain matrix source must be specified"),
        }
        .f_reshape([classes, classes])?;
        let logp = x.f_log_softmax(self.axis as i64, x.kind())?.f_reshape([outer, classes, inner])?;
        let logp = value_with_grad_of(&logp.f_clamp_min(LOG_THRESHOLD.ln())?, &logp)?;
        let labels = class_labels(&bottoms[1], outer, inner, classes, self.ignore)?;
        let valid = valid_mask(&labels, self.ignore)?;
        // Row H[label] for every position, laid out as (outer, classes, inner).
        let rows = h
            .f_index_select(0, &safe_labels(&labels, &valid)?.f_flatten(0, -1)?)?
            .f_reshape([outer, inner, classes])?
            .f_permute([0, 2, 1])?
            .f_mul(&valid.f_unsqueeze(1)?.f_to_kind(x.kind())?)?;
        let mode = self.lp.loss_param.unwrap_or_default().normalization();
        let counted = self.ignore.map(|_| &valid);
        let loss = normalize_sum(&rows.f_mul(&logp)?.f_sum(x.kind())?.f_neg()?, mode, outer, inner, counted)?;
        let mut tops = vec![loss];
        if self.lp.top.len() > 1 {
            tops.push(x.detach().f_softmax(self.axis as i64, x.kind())?);
        }
        Ok(tops)
    }
}
