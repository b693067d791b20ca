//! MultiBoxLoss's matching: the ground-truth boxes of each image, and the
//! priors (or decoded predictions) matched to them, by the fork's rules.
use super::MultiBoxLoss;
use crate::bail;
use crate::layers::detection::bbox::BBox;
use crate::proto::caffe::multi_box_loss_parameter::MatchType;
use crate::Result;

/// A ground-truth box of one image.
#[derive(Clone, Copy)]
pub(super) struct Truth {
    pub(super) bbox: BBox,
    pub(super) label: i64,
}

/// One image's matches for one location class (-1: shared by all): per
/// prior, the ground-truth box's index (-1 none, -2 ignored across the
/// border) and its best overlap.
pub(super) struct Matches {
    pub(super) class: i64,
    pub(super) indices: Vec<i32>,
    pub(super) overlaps: Vec<f32>,
}

impl MultiBoxLoss {
    /// The fork's GetGroundTruth: the boxes of each image; rows of image -1
    /// are padding, difficult boxes are skipped unless use_difficult_gt.
    pub(super) fn ground_truth(&self, gt: &[f32], num: usize) -> Result<Vec<Vec<Truth>>> {
        let mut per_image: Vec<Vec<Truth>> = vec![Vec::new(); num];
        for (r, row) in gt.chunks_exact(8).enumerate() {
            let image = row[0] as i64;
            if image == -1 {
                continue;
            }
            if !row.iter().all(|v| v.is_finite()) || !(0..num as i64).contains(&image) {
                bail!("ground-truth row {r} {row:?}: its image {} is not one of the batch's {num}", row[0]);
            }
            let label = row[1] as i64;
            if label == self.background {
                bail!("Found background label in the dataset: ground-truth row {r} has label {label}");
            }
            if !(0..self.num_classes as i64).contains(&label) {
                bail!("ground-truth row {r} has label {label}, outside the {} classes", self.num_classes);
            }
            if !self.use_difficult_gt && row[7] != 0.0 {
                continue;
            }
            per_image[image as usize].push(Truth { bbox: BBox::from_slice(&row[3..7]), label });
        }
        Ok(per_image)
    }

    /// The fork's MatchBBox: a bipartite round (each box takes its best
    /// prior, best pairs first), then, for PER_PREDICTION, each prior left
    /// takes its best box overlapping by at least overlap_threshold.
    pub(super) fn match_boxes(&self, truths: &[Truth], preds: &[BBox], class: i64) -> (Vec<i32>, Vec<f32>) {
        let mut indices = vec![-1i32; preds.len()];
        let mut best = vec![0f32; preds.len()];
        let gt: Vec<usize> = (0..truths.len()).filter(|&g| class == -1 || truths[g].label == class).collect();
        if gt.is_empty() {
            return (indices, best);
        }
        // Per prediction with some overlap: (index into gt, overlap), ascending.
        let mut overlaps: Vec<(usize, Vec<(usize, f32)>)> = Vec::new();
        for (i, pred) in preds.iter().enumerate() {
            if self.ignore_cross_boundary && pred.crosses_boundary() {
                indices[i] = -2;
                continue;
            }
            let row: Vec<(usize, f32)> = gt
                .iter()
                .enumerate()
                .map(|(j, &g)| (j, pred.jaccard(&truths[g].bbox)))
                .filter(|&(_, o)| o > 1e-6)
                .collect();
            if let Some(m) = row.iter().map(|&(_, o)| o).reduce(f32::max) {
                best[i] = m;
                overlaps.push((i, row));
            }
        }
        let mut in_pool = vec![true; gt.len()];
        for _ in 0..gt.len() {
            let mut pick: Option<(usize, usize, f32)> = None;
            for (i, row) in &overlaps {
                if indices[*i] != -1 {
                    continue;
                }
                for &(j, o) in row {
                    if in_pool[j] && pick.is_none_or(|(_, _, m)| o > m) {
                        pick = Some((*i, j, o));
                    }
                }
            }
            let Some((i, j, o)) = pick else { break };
            indices[i] = gt[j] as i32;
            best[i] = o;
            in_pool[j] = false;
        }
        if self.match_type == MatchType::PerPrediction {
            for (i, row) in &overlaps {
                if indices[*i] != -1 {
                    continue;
                }
                let mut pick: Option<(usize, f32)> = None;
                for &(j, o) in row {
                    if o >= self.overlap_threshold && pick.is_none_or(|(_, m)| o > m) {
                        pick = Some((j, o));
                    }
                }
                if let Some((j, o)) = pick {
                    indices[*i] = gt[j] as i32;
                    best[*i] = o;
                }
            }
        }
        (indices, best)
    }

    /// One image's location predictions for location class `c`, decoded.
    pub(super) fn decoded(&self, loc: &[f32], priors: &[BBox], variances: &[f32], c: usize) -> Result<Vec<BBox>> {
        let lc = self.loc_classes();
        (0..priors.len())
            .map(|p| {
                let s = (p * lc + c) * 4;
                self.coder.decode(&priors[p], &variances[p * 4..p * 4 + 4], &loc[s..s + 4])
            })
            .collect()
    }

    /// The fork's FindMatches for one image.
    pub(super) fn find_matches(
        &self,
        truths: &[Truth],
        loc: &[f32],
        priors: &[BBox],
        variances: &[f32],
    ) -> Result<Vec<Matches>> {
        if truths.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if self.use_prior_for_matching {
            let (indices, overlaps) = self.match_boxes(truths, priors, -1);
            if self.share_location {
                out.push(Matches { class: -1, indices, overlaps });
            } else {
                for c in (0..self.num_classes as i64).filter(|&c| c != self.background) {
                    let per_class =
                        indices.iter().map(|&g| if g > -1 && truths[g as usize].label == c { g } else { -1 }).collect();
                    out.push(Matches { class: c, indices: per_class, overlaps: overlaps.clone() });
                }
            }
        } else {
            for c in 0..self.loc_classes() {
                let class = if self.share_location { -1 } else { c as i64 };
                if !self.share_location && class == self.background {
                    continue;
                }
                let boxes = self.decoded(loc, priors, variances, c)?;
                let (indices, overlaps) = self.match_boxes(truths, &boxes, class);
                out.push(Matches { class, indices, overlaps });
            }
        }
        Ok(out)
    }
}
