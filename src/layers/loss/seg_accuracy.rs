//! SegAccuracy (DeepLab v2's fork): a confusion matrix of each pixel's
//! arg-max class against its label, and from it the pixel accuracy, the mean
//! recall and the mean Jaccard index (intersection over union).
use tch::Tensor;

use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, legacy_dims, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;
use crate::util::tensor_values;
use crate::{bail, Result};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SegAccuracy",
        family: family_of(file!()),
        params: "seg_accuracy_param.ignore_label (repeated), reset; bottoms: scores N×C×H×W, labels N×1×H×W; top: \
                 [pixel accuracy, mean recall, mean Jaccard index] (DeepLab v2's fork)",
        tests: "layers_loss: seg_accuracy_* (a confusion matrix worked out by hand, ties, ignored labels, \
                accumulation without reset, errors)",
        create: |p| Ok(Box::new(SegAccuracy::new(p))),
    });
}

/// Top: 1 × 1 × 1 × 3. The arg-max takes the highest class among equal
/// scores (the fork sorts (score, class) pairs); a pixel whose label is in
/// ignore_label is skipped, any other label outside [0, C) is an error. The
/// mean recall is over the classes that have pixels; the mean Jaccard index
/// is over every class, one with neither pixels nor predictions counting as
/// 1. With reset (the default) each forward counts afresh.
pub struct SegAccuracy {
    ignore: Vec<i32>,
    reset: bool,
    /// counts[label][predicted]
    counts: Vec<Vec<u64>>,
}

impl SegAccuracy {
    fn new(lp: &LayerParameter) -> Self {
        let p = lp.seg_accuracy_param.clone().unwrap_or_default();
        SegAccuracy { ignore: p.ignore_label.clone(), reset: p.reset(), counts: Vec::new() }
    }

    fn check(bottoms: &[Shape]) -> Result<[i64; 4]> {
        check_bottoms(bottoms, 2, 2)?;
        let x = legacy_dims(&bottoms[0])?;
        let l = legacy_dims(&bottoms[1])?;
        if x[1] < 1 {
            bail!("bottom[0] must have at least one channel (class), got shape {:?}", bottoms[0]);
        }
        if l[0] != x[0] || l[1] != 1 || l[2] != x[2] || l[3] != x[3] {
            bail!(
                "the label (bottom[1]) must be N × 1 × H × W for scores of shape {:?}, got {:?}",
                bottoms[0],
                bottoms[1]
            );
        }
        Ok(x)
    }

    /// [pixel accuracy, mean recall, mean Jaccard index] of the counts.
    fn scores(&self) -> [f32; 3] {
        let classes = self.counts.len();
        let row = |i: usize| self.counts[i].iter().sum::<u64>() as f64;
        let col = |j: usize| self.counts.iter().map(|r| r[j]).sum::<u64>() as f64;
        let diag = |i: usize| self.counts[i][i] as f64;
        let total: f64 = (0..classes).map(row).sum();
        let hits: f64 = (0..classes).map(diag).sum();
        let accuracy = if total == 0.0 { 0.0 } else { hits / total };
        let present: Vec<usize> = (0..classes).filter(|&i| row(i) > 0.0).collect();
        let recall = if present.is_empty() {
            0.0
        } else {
            present.iter().map(|&i| diag(i) / row(i)).sum::<f64>() / present.len() as f64
        };
        let jaccard = (0..classes)
            .map(|i| {
                let union = row(i) + col(i) - diag(i);
                if diag(i) == union {
                    1.0
                } else {
                    diag(i) / union
                }
            })
            .sum::<f64>()
            / classes as f64;
        [accuracy as f32, recall as f32, jaccard as f32]
    }
}

impl Layer for SegAccuracy {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        let [_, c, _, _] = Self::check(bottoms)?;
        self.counts = vec![vec![0; c as usize]; c as usize];
        Ok(SetupOut { tops: vec![vec![1, 1, 1, 3]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let [n, c, h, w] = Self::check(&shapes)?;
        let (c, plane) = (c as usize, (h * w) as usize);
        if self.counts.len() != c {
            self.counts = vec![vec![0; c]; c];
        }
        if self.reset {
            self.counts.iter_mut().for_each(|r| r.fill(0));
        }
        let scores = tensor_values(&bottoms[0])?;
        let labels = tensor_values(&bottoms[1])?;
        for image in 0..n as usize {
            let x = &scores[image * c * plane..(image + 1) * c * plane];
            for p in 0..plane {
                let truth = labels[image * plane + p] as i32;
                if self.ignore.contains(&truth) {
                    continue;
                }
                if !(0..c as i32).contains(&truth) {
                    bail!("Unexpected label {truth}. num: {image}. row: {}. col: {}", p / w as usize, p % w as usize);
                }
                let mut best = 0;
                for k in 1..c {
                    if x[k * plane + p] >= x[best * plane + p] {
                        best = k;
                    }
                }
                self.counts[truth as usize][best] += 1;
            }
        }
        let device = bottoms[0].device();
        let top = Tensor::f_from_slice(&self.scores())?.f_reshape([1, 1, 1, 3])?;
        Ok(vec![top.f_to_kind(bottoms[0].kind())?.f_to_device(device)?])
    }
}
