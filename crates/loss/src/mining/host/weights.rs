//! Batch-all and explicit triplets reduced to one weight per distance-matrix entry (the
//! gradient of the summed loss with respect to each distance), their exact loss sum, and the
//! statistics of mined triplets: what the loss's backward pass and `MiningStats` are made of.
//! Batch-all never lists its triplets: each anchor's negatives fall into the buckets of its
//! sorted positives (see the parent module), whose counts and sums give every weight.

use crate::output::MiningStats;

use super::{Classes, IndexTriplets, par_anchors};

/// Batch-all reduced to one weight per distance-matrix entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AllWeights {
    /// `∂L/∂D` of the unreduced loss, `B×B` row-major: the number of active triplets each
    /// `(a, p)` pair appears in (≥ 0), minus the number each `(a, n)` pair appears in. For the
    /// soft margin, the sums of `sigmoid(d_ap − d_an)` instead of counts.
    pub weights: Vec<f32>,
    /// Sum of the per-triplet losses (unreduced).
    pub loss_sum: f64,
    pub stats: HostStats,
}

/// How many values of `dist` are NaN or infinite.
pub(crate) fn count_non_finite(dist: &[f32]) -> u64 {
    dist.iter().filter(|v| !v.is_finite()).count() as u64
}

/// Statistics over mined triplets, accumulated in `f64`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct HostStats {
    pub triplets: u64,
    pub active: u64,
    pub anchors_with_triplet: u64,
    pub sum_d_ap: f64,
    pub sum_d_an: f64,
    /// Non-finite entries of the distance matrix.
    pub non_finite: u64,
}

impl From<HostStats> for MiningStats {
    fn from(s: HostStats) -> Self {
        let mean = |sum: f64| {
            if s.triplets == 0 {
                0.0
            } else {
                sum / s.triplets as f64
            }
        };
        MiningStats {
            triplets: s.triplets,
            active: s.active,
            anchors_with_triplet: s.anchors_with_triplet,
            mean_d_ap: mean(s.sum_d_ap),
            mean_d_an: mean(s.sum_d_an),
            non_finite: s.non_finite,
        }
    }
}

impl HostStats {
    fn merge(mut self, other: HostStats) -> HostStats {
        self.triplets += other.triplets;
        self.active += other.active;
        self.anchors_with_triplet += other.anchors_with_triplet;
        self.sum_d_ap += other.sum_d_ap;
        self.sum_d_an += other.sum_d_an;
        self.non_finite += other.non_finite;
        self
    }

    /// These statistics with the non-finite entries of `dist` counted.
    pub fn counting_non_finite(mut self, dist: &[f32]) -> Self {
        self.non_finite = count_non_finite(dist);
        self
    }

    /// Statistics of explicit triplets over a distance matrix of `cols` columns; with the
    /// swap, `swapped[i]` is `d(p, n)` of triplet `i` and `d(a,n)` the smaller of the two, as
    /// the loss takes it.
    pub fn of_triplets(
        dist: &[f32],
        cols: usize,
        t: &IndexTriplets,
        margin: f64,
        soft: bool,
        swapped: Option<&[f32]>,
    ) -> Self {
        let mut stats = HostStats {
            triplets: t.len() as u64,
            ..HostStats::default()
        };
        let mut last_anchor = None;
        for (i, (a, p, n)) in t.iter().enumerate() {
            let (d_ap, mut d_an) = (dist[a * cols + p] as f64, dist[a * cols + n] as f64);
            if let Some(pn) = swapped {
                d_an = d_an.min(pn[i] as f64);
            }
            stats.sum_d_ap += d_ap;
            stats.sum_d_an += d_an;
            if triplet_loss(d_ap - d_an, margin, soft) > 0.0 {
                stats.active += 1;
            }
            if last_anchor != Some(a) {
                stats.anchors_with_triplet += 1;
                last_anchor = Some(a);
            }
        }
        stats
    }
}

/// `d(p, n)` of each triplet, read from a square `[b, b]` distance matrix (in-batch triplets).
pub(crate) fn positive_negative(dist: &[f32], b: usize, t: &IndexTriplets) -> Vec<f32> {
    t.iter().map(|(_, p, n)| dist[p * b + n]).collect()
}

/// Explicit triplets reduced to `∂(Σ losses)/∂D` per distance-matrix entry (`rows × cols`,
/// row-major) and the exact sum of their losses.
pub(crate) fn triplet_weights(
    dist: &[f32],
    [rows, b]: [usize; 2],
    t: &IndexTriplets,
    margin: f64,
    soft: bool,
) -> (Vec<f32>, f64) {
    let mut weights = vec![0.0f32; rows * b];
    let mut sum = 0.0f64;
    for (a, p, n) in t.iter() {
        let diff = dist[a * b + p] as f64 - dist[a * b + n] as f64;
        let loss = triplet_loss(diff, margin, soft);
        let slope = if soft {
            sigmoid(diff)
        } else if loss > 0.0 {
            1.0
        } else {
            0.0
        };
        weights[a * b + p] += slope as f32;
        weights[a * b + n] -= slope as f32;
        sum += loss;
    }
    (weights, sum)
}

/// The loss of one triplet from `d_ap − d_an`.
fn triplet_loss(diff: f64, margin: f64, soft: bool) -> f64 {
    if soft {
        softplus(diff)
    } else {
        (diff + margin).max(0.0)
    }
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Batch-all over every valid triplet, as a weight matrix: `O(B·M log K)` with the hinge,
/// `O(B²·K)` with the soft margin.
pub(crate) fn all_weights(dist: &[f32], classes: &Classes, margin: f64, soft: bool) -> AllWeights {
    let (b, cols) = (classes.queries(), classes.refs());
    let mut weights = vec![0.0f32; b * cols];
    let parts = par_anchors(b, &mut weights, cols, |anchors, w_rows| {
        let mut loss_sum = 0.0f64;
        let mut stats = HostStats::default();
        let mut thresholds: Vec<(f64, usize)> = Vec::new();
        let mut count: Vec<u64> = Vec::new();
        let mut sum: Vec<f64> = Vec::new();
        let first = anchors.start;
        for a in anchors {
            let row = &dist[a * cols..(a + 1) * cols];
            let w = &mut w_rows[(a - first) * cols..(a - first + 1) * cols];
            let (m, nn) = (classes.num_positives(a), classes.num_negatives(a));
            if m == 0 || nn == 0 {
                continue;
            }
            stats.triplets += (m * nn) as u64;
            stats.anchors_with_triplet += 1;
            let own = classes.class(a);
            let negatives = || (0..cols).filter(move |&n| classes.id[n] != own);
            let (mut pos_sum, mut neg_sum) = (0.0f64, 0.0f64);
            for p in classes.positives(a) {
                pos_sum += row[p] as f64;
            }
            for n in negatives() {
                neg_sum += row[n] as f64;
            }
            stats.sum_d_ap += pos_sum * nn as f64;
            stats.sum_d_an += neg_sum * m as f64;
            if soft {
                for p in classes.positives(a) {
                    let mut grad_p = 0.0f64;
                    for n in negatives() {
                        let diff = row[p] as f64 - row[n] as f64;
                        let l = softplus(diff);
                        loss_sum += l;
                        if l > 0.0 {
                            stats.active += 1;
                        }
                        let s = sigmoid(diff);
                        grad_p += s;
                        w[n] -= s as f32;
                    }
                    w[p] += grad_p as f32;
                }
                continue;
            }
            // Hinge: triplet (p, n) is active iff d_an < d_ap + margin =: t_p.
            thresholds.clear();
            thresholds.extend(classes.positives(a).map(|p| (row[p] as f64 + margin, p)));
            thresholds.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            count.clear();
            count.resize(m + 1, 0);
            sum.clear();
            sum.resize(m + 1, 0.0);
            for n in negatives() {
                let d = row[n] as f64;
                // j = number of thresholds <= d: n is active with the m - j largest ones.
                let j = thresholds.partition_point(|&(t, _)| t <= d);
                count[j] += 1;
                sum[j] += d;
                w[n] -= (m - j) as f32;
                stats.active += (m - j) as u64;
            }
            // Sorted positive i is active with the negatives of buckets 0..=i.
            let (mut c, mut s) = (0u64, 0.0f64);
            for (i, &(t, p)) in thresholds.iter().enumerate() {
                c += count[i];
                s += sum[i];
                // Σ_n (d_ap + margin − d_an) over the active negatives n.
                loss_sum += c as f64 * t - s;
                w[p] += c as f32;
            }
        }
        (loss_sum, stats)
    });
    let (loss_sum, stats) = parts
        .into_iter()
        .fold((0.0, HostStats::default()), |(l, s), (pl, ps)| {
            (l + pl, s.merge(ps))
        });
    AllWeights {
        weights,
        loss_sum,
        stats,
    }
}
