//! Verification (FaceNet, LFW): is a pair of images the same identity? A pair is accepted as
//! "same" when its embedding distance is at most a threshold.
//!
//! - ROC: at each distinct distance `t` (ascending), the false accept rate FAR (different-class
//!   pairs with `d ≤ t`, over all of them) and the true accept rate TAR (same-class pairs with
//!   `d ≤ t`); scikit-learn's `roc_curve(same, -d, drop_intermediate=False)` without its first
//!   point.
//! - AUC: the area under it from (0, 0), trapezoids, so that tied distances count half as in
//!   `roc_auc_score`.
//! - TAR@FAR = x (FaceNet's VAL@FAR): the largest TAR of a threshold whose FAR is at most x.
//! - Accuracy, the LFW protocol: 10 contiguous folds of the pairs in their order (scikit-learn's
//!   `KFold(10)`); each fold is scored with the threshold that is best on the other nine. The
//!   candidates are the midpoints between consecutive distinct distances; ties go to the
//!   smallest. The reported threshold is the best one over all pairs.
//!
//! Pairs are `(i, j, same)` over the rows of a set: drawn from its labels ([`sample_pairs`],
//! balanced as LFW's), all of them ([`all_pairs`]), or given; [`score_pairs`] measures them.

use std::collections::HashSet;

use serde::Serialize;

use triplet_loss::Distance;

use crate::knn::exact_distance;
use crate::rng::SplitMix64;
use crate::rows::Rows;

/// Folds of the accuracy's cross-validation, as LFW's protocol.
pub const FOLDS: usize = 10;

/// The FARs at which TAR is reported.
pub const FAR_TARGETS: [f64; 2] = [1e-3, 1e-2];

/// A ROC curve, one point per distinct distance, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    /// The distance thresholds (`d ≤ t` is accepted).
    pub thresholds: Vec<f64>,
    /// False accept rate at each.
    pub far: Vec<f64>,
    /// True accept rate at each.
    pub tar: Vec<f64>,
    /// Same-class pairs.
    pub positives: usize,
    /// Different-class pairs.
    pub negatives: usize,
}

/// Pairs sorted by distance (NaN last).
fn sorted(distances: &[f64], same: &[bool]) -> Vec<(f64, bool)> {
    let mut pairs: Vec<(f64, bool)> = distances
        .iter()
        .copied()
        .zip(same.iter().copied())
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    pairs
}

/// The ROC of pairs with distances `distances` and truth `same`.
///
/// # Panics
/// If the slices differ in length.
pub fn roc(distances: &[f64], same: &[bool]) -> Roc {
    assert_eq!(distances.len(), same.len(), "one truth per distance");
    let pairs = sorted(distances, same);
    let positives = same.iter().filter(|&&s| s).count();
    let negatives = same.len() - positives;
    let rate = |count: usize, of: usize| {
        if of == 0 {
            f64::NAN
        } else {
            count as f64 / of as f64
        }
    };
    let mut out = Roc {
        thresholds: Vec::new(),
        far: Vec::new(),
        tar: Vec::new(),
        positives,
        negatives,
    };
    let (mut tp, mut fp) = (0, 0);
    for (i, &(d, s)) in pairs.iter().enumerate() {
        if s {
            tp += 1;
        } else {
            fp += 1;
        }
        if pairs.get(i + 1).is_none_or(|next| next.0 != d) {
            out.thresholds.push(d);
            out.far.push(rate(fp, negatives));
            out.tar.push(rate(tp, positives));
        }
    }
    out
}

impl Roc {
    /// Area under the curve from (0, 0) (trapezoids).
    pub fn auc(&self) -> f64 {
        let mut area = 0.0;
        let (mut x, mut y) = (0.0, 0.0);
        for (&f, &t) in self.far.iter().zip(&self.tar) {
            area += (f - x) * (t + y) / 2.0;
            (x, y) = (f, t);
        }
        area
    }

    /// The largest TAR, and its threshold, among the thresholds with FAR ≤ `far` (TAR 0 and no
    /// threshold when even the smallest distance is a false accept above it).
    pub fn tar_at_far(&self, far: f64) -> (f64, Option<f64>) {
        self.far
            .iter()
            .zip(&self.tar)
            .zip(&self.thresholds)
            .filter(|((f, _), _)| **f <= far)
            .fold(
                (0.0, None),
                |best, ((_, &t), &th)| {
                    if t > best.0 { (t, Some(th)) } else { best }
                },
            )
    }
}

/// The threshold with the highest accuracy on these pairs (the smallest on a tie), among the
/// midpoints between consecutive distinct distances (the one distance when all are equal), and
/// that accuracy. `None` without pairs.
pub fn best_threshold(distances: &[f64], same: &[bool]) -> Option<(f64, f64)> {
    let pairs = sorted(distances, same);
    let n = pairs.len();
    if n == 0 {
        return None;
    }
    let negatives = pairs.iter().filter(|p| !p.1).count();
    // Accepting the first i + 1 pairs (through a group of equal distances).
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best: Option<(f64, usize)> = None;
    for (i, &(d, s)) in pairs.iter().enumerate() {
        if s {
            tp += 1;
        } else {
            fp += 1;
        }
        let Some(next) = pairs.get(i + 1) else { break };
        if next.0 == d {
            continue;
        }
        let correct = tp + negatives - fp;
        if best.is_none_or(|b| correct > b.1) {
            best = Some(((d + next.0) / 2.0, correct));
        }
    }
    let (threshold, correct) = best.unwrap_or((pairs[0].0, tp));
    Some((threshold, correct as f64 / n as f64))
}

/// Accuracy of `threshold` on pairs (`d ≤ threshold` accepted).
pub fn accuracy(distances: &[f64], same: &[bool], threshold: f64) -> f64 {
    let correct = distances
        .iter()
        .zip(same)
        .filter(|&(&d, &s)| (d <= threshold) == s)
        .count();
    correct as f64 / distances.len().max(1) as f64
}

/// The fold boundaries of scikit-learn's `KFold(folds)` over `n` items: contiguous, the first
/// `n % folds` one longer.
fn fold_bounds(n: usize, folds: usize) -> Vec<(usize, usize)> {
    let (size, extra) = (n / folds, n % folds);
    let mut start = 0;
    (0..folds)
        .map(|f| {
            let len = size + usize::from(f < extra);
            let b = (start, start + len);
            start += len;
            b
        })
        .collect()
}

/// Cross-validated accuracy: mean and standard deviation (population) over the folds, and each
/// fold's threshold. `folds` is reduced to the number of pairs when there are fewer.
pub fn cross_validated(distances: &[f64], same: &[bool], folds: usize) -> (f64, f64, Vec<f64>) {
    let folds = folds.min(distances.len()).max(1);
    let mut accuracies = Vec::with_capacity(folds);
    let mut thresholds = Vec::with_capacity(folds);
    for (a, b) in fold_bounds(distances.len(), folds) {
        let train_d: Vec<f64> = [&distances[..a], &distances[b..]].concat();
        let train_s: Vec<bool> = [&same[..a], &same[b..]].concat();
        let (threshold, _) = best_threshold(&train_d, &train_s)
            .or_else(|| best_threshold(distances, same))
            .unwrap_or((0.0, 0.0));
        accuracies.push(accuracy(&distances[a..b], &same[a..b], threshold));
        thresholds.push(threshold);
    }
    let mean = accuracies.iter().sum::<f64>() / folds as f64;
    let var = accuracies.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / folds as f64;
    (mean, var.sqrt(), thresholds)
}

/// Verification scores, as in `metrics.json`'s `verification`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// Pairs scored.
    pub pairs: usize,
    /// Same-class pairs.
    pub positive_pairs: usize,
    /// Different-class pairs.
    pub negative_pairs: usize,
    /// Area under the ROC curve.
    pub auc: f64,
    /// TAR at FAR = 1e-3 (FaceNet's VAL@FAR).
    #[serde(rename = "tar_at_far_1e-3")]
    pub tar_at_far_1e3: f64,
    /// TAR at FAR = 1e-2.
    #[serde(rename = "tar_at_far_1e-2")]
    pub tar_at_far_1e2: f64,
    /// Mean accuracy over the 10 folds, each at the threshold best on the other nine.
    pub accuracy: f64,
    /// Its standard deviation over the folds.
    pub accuracy_std: f64,
    /// The best threshold over all pairs (what `triplet search --threshold run` uses).
    pub threshold: f64,
    /// The accuracy of that threshold over all pairs.
    pub threshold_accuracy: f64,
    /// Each fold's threshold.
    pub fold_thresholds: Vec<f64>,
    /// The distance: `euclidean` or `cosine`.
    pub distance: String,
}

/// Verification scores of pairs; an error naming what is missing unless there are both
/// same-class and different-class pairs.
pub fn verification(
    distances: &[f64],
    same: &[bool],
    distance: &str,
) -> Result<(Verification, Roc), String> {
    let r = roc(distances, same);
    if r.positives == 0 || r.negatives == 0 {
        return Err(format!(
            "verification needs same-class and different-class pairs; these {} pairs have {} \
             same-class and {} different-class",
            distances.len(),
            r.positives,
            r.negatives
        ));
    }
    let (accuracy, accuracy_std, fold_thresholds) = cross_validated(distances, same, FOLDS);
    let (threshold, threshold_accuracy) = best_threshold(distances, same).expect("there are pairs");
    Ok((
        Verification {
            pairs: distances.len(),
            positive_pairs: r.positives,
            negative_pairs: r.negatives,
            auc: r.auc(),
            tar_at_far_1e3: r.tar_at_far(FAR_TARGETS[0]).0,
            tar_at_far_1e2: r.tar_at_far(FAR_TARGETS[1]).0,
            accuracy,
            accuracy_std,
            threshold,
            threshold_accuracy,
            fold_thresholds,
            distance: distance.to_owned(),
        },
        r,
    ))
}

/// Most pairs `all` may ask for (each costs 24 bytes and a distance).
pub const MAX_ALL_PAIRS: usize = 10_000_000;

/// Pairs `(i, j, same)` with `i < j` drawn from labels, in a seeded random order: `count / 2`
/// same-class and `count - count / 2` different-class pairs, all distinct (fewer when the labels
/// have fewer), as LFW balances its pairs.
pub fn sample_pairs(labels: &[usize], count: usize, seed: u64) -> Vec<(usize, usize, bool)> {
    let n = labels.len();
    let mut by_class = std::collections::BTreeMap::<usize, Vec<usize>>::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let classes: Vec<&Vec<usize>> = by_class.values().collect();
    let possible_same: usize = classes.iter().map(|c| c.len() * (c.len() - 1) / 2).sum();
    let possible_all = n * n.saturating_sub(1) / 2;
    let possible_different = possible_all - possible_same;
    let want_same = (count / 2).min(possible_same);
    let want_different = (count - count / 2).min(possible_different);
    let mut rng = SplitMix64::new(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(want_same + want_different);
    let order = |a: usize, b: usize| if a < b { (a, b) } else { (b, a) };
    if want_same * 2 > possible_same {
        // Dense: list them all and take a random subset.
        let mut all: Vec<(usize, usize)> = Vec::with_capacity(possible_same);
        for c in &classes {
            for (x, &a) in c.iter().enumerate() {
                all.extend(c[x + 1..].iter().map(|&b| (a, b)));
            }
        }
        rng.shuffle(&mut all);
        out.extend(all[..want_same].iter().map(|&(a, b)| (a, b, true)));
    } else {
        // Sparse: a class drawn by its number of pairs, then two of its members.
        let weights: Vec<usize> = classes
            .iter()
            .map(|c| c.len() * (c.len() - 1) / 2)
            .collect();
        while out.len() < want_same {
            let mut t = rng.below(possible_same);
            let c = weights
                .iter()
                .position(|&w| {
                    if t < w {
                        true
                    } else {
                        t -= w;
                        false
                    }
                })
                .expect("t < total");
            let members = classes[c];
            let (a, b) = (rng.below(members.len()), rng.below(members.len()));
            if a != b && seen.insert(order(members[a], members[b])) {
                let (a, b) = order(members[a], members[b]);
                out.push((a, b, true));
            }
        }
    }
    // Listing every different-class pair visits all n²/2 pairs: only for small sets. A large
    // set asking for most of its different-class pairs gets at most half of them.
    let want_different = if possible_all > MAX_ALL_PAIRS {
        want_different.min(possible_different / 2)
    } else {
        want_different
    };
    if want_different * 2 > possible_different {
        let mut all: Vec<(usize, usize)> = Vec::with_capacity(possible_different);
        for a in 0..n {
            all.extend(
                (a + 1..n)
                    .filter(|&b| labels[a] != labels[b])
                    .map(|b| (a, b)),
            );
        }
        rng.shuffle(&mut all);
        out.extend(all[..want_different].iter().map(|&(a, b)| (a, b, false)));
    } else {
        let mut drawn = 0;
        while drawn < want_different {
            let (a, b) = (rng.below(n), rng.below(n));
            if labels[a] != labels[b] && seen.insert(order(a, b)) {
                let (a, b) = order(a, b);
                out.push((a, b, false));
                drawn += 1;
            }
        }
    }
    rng.shuffle(&mut out);
    out
}

/// Every pair `(i, j, same)` with `i < j`, in a seeded random order (so that the contiguous
/// folds of the accuracy are not grouped by image), or an error when there are more than
/// [`MAX_ALL_PAIRS`].
pub fn all_pairs(labels: &[usize], seed: u64) -> Result<Vec<(usize, usize, bool)>, String> {
    let n = labels.len();
    let total = n * n.saturating_sub(1) / 2;
    if total > MAX_ALL_PAIRS {
        return Err(format!(
            "--pairs all would score {total} pairs of {n} images, more than {MAX_ALL_PAIRS}; \
             give a number of pairs to draw instead, e.g. --pairs 6000"
        ));
    }
    let mut out = Vec::with_capacity(total);
    for a in 0..n {
        out.extend((a + 1..n).map(|b| (a, b, labels[a] == labels[b])));
    }
    SplitMix64::new(seed).shuffle(&mut out);
    Ok(out)
}

/// The distance of each pair `(i, j, same)` of rows, in f64 ([`exact_distance`]).
///
/// # Panics
/// If a pair names a row beyond `rows`.
pub fn score_pairs(rows: Rows<'_>, pairs: &[(usize, usize, bool)], distance: Distance) -> Vec<f64> {
    pairs
        .iter()
        .map(|&(a, b, _)| exact_distance(rows.row(a), rows.row(b), distance))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked: distances 0.1 (same), 0.2 (diff), 0.2 (same), 0.5 (diff).
    /// ROC at 0.1: FAR 0, TAR ½; at 0.2: ½, 1; at 0.5: 1, 1.
    /// AUC = ½·(0·…) + trapezoid (0,0)-(0,½) 0 + (0,½)-(½,1): ½·¾ = 0.375 + (½,1)-(1,1): ½ → 0.875.
    #[test]
    fn roc_and_auc_match_a_hand_computation() {
        let d = [0.2, 0.1, 0.5, 0.2];
        let s = [false, true, false, true];
        let r = roc(&d, &s);
        assert_eq!(r.thresholds, [0.1, 0.2, 0.5]);
        assert_eq!(r.far, [0.0, 0.5, 1.0]);
        assert_eq!(r.tar, [0.5, 1.0, 1.0]);
        assert!((r.auc() - 0.875).abs() < 1e-12);
        assert_eq!(r.tar_at_far(1e-3), (0.5, Some(0.1)));
        // Best threshold: accept ≤ 0.15 → 3 of 4 right; ≤ 0.35 → 3 of 4: the smaller wins.
        assert_eq!(best_threshold(&d, &s), Some((0.15000000000000002, 0.75)));
    }

    #[test]
    fn folds_are_contiguous_like_kfold() {
        assert_eq!(fold_bounds(23, 10)[..4], [(0, 3), (3, 6), (6, 9), (9, 11)]);
        assert_eq!(fold_bounds(23, 10)[9], (21, 23));
    }

    #[test]
    fn separated_pairs_are_all_right() {
        let d: Vec<f64> = (0..40)
            .map(|i| f64::from(i % 2) + f64::from(i) * 1e-3)
            .collect();
        let s: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        let (v, _) = verification(&d, &s, "euclidean").unwrap();
        assert_eq!((v.auc, v.accuracy, v.tar_at_far_1e3), (1.0, 1.0, 1.0));
        assert!(
            v.threshold > 0.038 && v.threshold < 1.001,
            "{}",
            v.threshold
        );
        assert!(verification(&d[..1], &s[..1], "euclidean").is_err());
    }

    #[test]
    fn sampled_pairs_are_balanced_distinct_and_seeded() {
        let labels: Vec<usize> = (0..200).map(|i| i % 10).collect();
        let pairs = sample_pairs(&labels, 600, 1);
        assert_eq!(pairs, sample_pairs(&labels, 600, 1));
        assert_ne!(pairs, sample_pairs(&labels, 600, 2));
        assert_eq!(pairs.iter().filter(|p| p.2).count(), 300);
        let distinct: HashSet<(usize, usize)> = pairs.iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(distinct.len(), 600);
        assert!(
            pairs
                .iter()
                .all(|&(a, b, s)| a < b && (labels[a] == labels[b]) == s)
        );
        // Fewer same-class pairs exist (3 classes of 2: 3 pairs) than asked: all of them.
        let few = sample_pairs(&[0, 0, 1, 1, 2, 2], 100, 0);
        assert_eq!(few.iter().filter(|p| p.2).count(), 3);
        assert_eq!(few.len(), 15);
        assert_eq!(all_pairs(&[0, 0, 1], 0).unwrap().len(), 3);
    }
}
