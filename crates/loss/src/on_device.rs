//! Semi-hard and batch-all mined and reduced on CubeCL devices (wgpu, CUDA): the kernels of
//! [`mining::cube`](crate::mining::cube) give per-entry tables, and the loss is composed from
//! differentiable tensor ops over the `B×B` distance matrix. Nothing is read back unless
//! statistics are asked for, and then only `O(B)` values.

use burn::prelude::*;

use super::TripletLoss;
use crate::mining::{cube, host};
use crate::output::MiningStats;

impl TripletLoss {
    /// FaceNet's semi-hard on the device: one triplet per positive pair `(a, p)` whose anchor
    /// has a negative, the negative chosen by the kernel exactly as the host miner chooses it.
    pub(super) fn semi_hard_on_device(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        want_stats: bool,
    ) -> (Tensor<1>, Option<MiningStats>) {
        let [b, _] = embeddings.dims();
        let device = embeddings.device();
        let dist = self.distance.pairwise(embeddings.clone(), embeddings);
        let detached = dist.clone().detach();
        let negatives = cube::semi_hard_negatives(detached.clone(), labels);
        let valid = negatives.clone().greater_equal_elem(0);
        let index = negatives.clamp_min(0);
        let mut d_an = dist.clone().gather(1, index.clone());
        if self.swap {
            // d(p, n) is entry [p, n] of the same matrix: p is the column of (a, p).
            let rows = Tensor::<1, Int>::arange(0..b as i64, &device)
                .mul_scalar(b as i64)
                .reshape([1, b]);
            let flat = (index + rows).reshape([b * b]);
            let d_pn = dist
                .clone()
                .reshape([b * b])
                .gather(0, flat)
                .reshape([b, b]);
            d_an = d_an.min_pair(d_pn);
        }
        let invalid = valid.clone().bool_not().reshape([b * b]);
        let diff = (dist - d_an.clone()).reshape([b * b]);
        let losses = self
            .per_triplet(diff.clone())
            .mask_fill(invalid.clone(), 0.0);
        let valid_f = valid.clone().float().reshape([b * b]);
        let loss = self
            .reduction
            .reduce_rows(losses, valid_f.clone(), self.soft);
        let stats = want_stats.then(|| {
            let diff = diff.detach();
            let active = if self.soft {
                valid.clone()
            } else {
                diff.add_scalar(self.margin)
                    .greater_elem(0.0)
                    .reshape([b, b])
                    .bool_and(valid.clone())
            };
            let counts = Tensor::cat(
                vec![
                    valid.clone().int().sum_dim(1).reshape([b]),
                    active.int().sum_dim(1).reshape([b]),
                ],
                0,
            );
            let d_an = d_an.detach().mask_fill(valid.clone().bool_not(), 0.0);
            // mask_fill, not a product: 0 · NaN is NaN, and a non-finite distance outside the
            // triplets must not reach their means (as on the host).
            let sums = Tensor::cat(
                vec![
                    detached.clone().mask_fill(valid.bool_not(), 0.0).sum(),
                    d_an.sum(),
                    non_finite(detached),
                ],
                0,
            );
            let counts = read_counts(counts, 2, b);
            let sums: Vec<f64> = sums.into_data().try_into_vec_as().expect("f64 stats");
            MiningStats::from(host::HostStats {
                triplets: counts[0].iter().sum(),
                active: counts[1].iter().sum(),
                anchors_with_triplet: counts[0].iter().filter(|&&c| c > 0).count() as u64,
                sum_d_ap: sums[0],
                sum_d_an: sums[1],
                non_finite: sums[2].round() as u64,
            })
        });
        (loss, stats)
    }

    /// Batch-all on the device: the kernel reduces every triplet to a weight per entry
    /// (`W = ∂L/∂D`) and per-pair losses, and the loss is `Σ W ⊙ D` plus the constant that
    /// makes its value the sum of the triplet losses, scaled by the reduction.
    pub(super) fn batch_all_on_device(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        want_stats: bool,
    ) -> (Tensor<1>, Option<MiningStats>) {
        let [b, _] = embeddings.dims();
        let dist = self.distance.pairwise(embeddings.clone(), embeddings);
        let detached = dist.clone().detach();
        let mined = cube::all_weights(detached.clone(), labels.clone(), self.margin, self.soft);
        // Per anchor: m positives (its class but itself) and n negatives.
        let same = labels
            .clone()
            .reshape([b, 1])
            .expand([b, b])
            .equal(labels.reshape([1, b]).expand([b, b]));
        let class_size = same.clone().int().sum_dim(1).reshape([b]);
        let loss_sum = mined.losses.sum();
        let linear = (mined.weights.clone() * detached.clone()).sum();
        let raw = (dist * mined.weights).sum() + (loss_sum - linear);
        let count = |active: &Tensor<2, Int>| match self.reduction {
            crate::Reduction::Sum => None,
            crate::Reduction::MeanActive => Some(active.clone().float().sum()),
            crate::Reduction::Mean => {
                let size = class_size.clone().float();
                let positives = size.clone().sub_scalar(1.0);
                let negatives = size.neg().add_scalar(b as f64);
                Some((positives * negatives).sum())
            }
        };
        let loss = match count(&mined.active) {
            Some(n) => raw / n.clamp_min(1.0),
            None => raw,
        };
        let stats = want_stats.then(|| {
            let counts = Tensor::cat(vec![class_size, mined.active.sum_dim(1).reshape([b])], 0);
            // Σ over positive (resp. negative) entries of each row, for the mean distances.
            // mask_fill, not a product (0 · NaN is NaN; see the semi-hard statistics).
            let positive =
                same.clone()
                    .bool_and(Tensor::<2, Bool>::diag_mask([b, b], 0, &detached.device()));
            let row_d_ap = detached
                .clone()
                .mask_fill(positive.bool_not(), 0.0)
                .sum_dim(1)
                .reshape([b]);
            let row_d_an = detached
                .clone()
                .mask_fill(same, 0.0)
                .sum_dim(1)
                .reshape([b]);
            let rows = Tensor::cat(vec![row_d_ap, row_d_an], 0);
            let counts = read_counts(counts, 2, b);
            let rows: Vec<f64> = rows.into_data().try_into_vec_as().expect("f64 stats");
            let non_finite: f64 = non_finite(detached).into_scalar();
            let mut stats = host::HostStats {
                non_finite: non_finite.round() as u64,
                ..host::HostStats::default()
            };
            for a in 0..b {
                let size = counts[0][a];
                let (m, n) = (size - 1, b as u64 - size);
                if m == 0 || n == 0 {
                    continue;
                }
                stats.triplets += m * n;
                stats.anchors_with_triplet += 1;
                stats.active += counts[1][a];
                stats.sum_d_ap += rows[a] * n as f64;
                stats.sum_d_an += rows[b + a] * m as f64;
            }
            MiningStats::from(stats)
        });
        (loss, stats)
    }
}

/// The number of non-finite entries of `dist`, `[1]`.
fn non_finite(dist: Tensor<2>) -> Tensor<1> {
    dist.is_finite().bool_not().float().sum()
}

/// `parts` integer vectors of `b` entries each, concatenated in `counts`, on the host.
fn read_counts(counts: Tensor<1, Int>, parts: usize, b: usize) -> Vec<Vec<u64>> {
    let values: Vec<i64> = counts
        .into_data()
        .try_into_vec_as()
        .expect("counts convert to i64");
    (0..parts)
        .map(|i| {
            values[i * b..(i + 1) * b]
                .iter()
                .map(|&v| v as u64)
                .collect()
        })
        .collect()
}
