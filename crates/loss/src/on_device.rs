//! Semi-hard, batch-all and PML's band mined and reduced on CubeCL devices (wgpu, CUDA): the
//! kernels of [`mining::cube`](crate::mining::cube) give per-entry tables, and the loss is
//! composed from differentiable tensor ops over the `B×M` distance matrix (the batch against
//! itself, `M = B`, or against references). Nothing is read back; the statistics are `O(B)`
//! values left on the device ([`PendingStats`]).

use burn::prelude::*;

use super::TripletLoss;
use crate::Mining;
use crate::mining::cube::{self, DeviceLabels, WeightRule};
use crate::mining::non_finite;
use crate::output::PendingStats;

impl TripletLoss {
    /// FaceNet's semi-hard on the device: one triplet per positive pair `(a, p)` whose anchor
    /// has a negative, the negative chosen by the kernel exactly as the host miner chooses it.
    /// `refs`: the references (`None`: the batch itself); the swap needs the batch.
    pub(crate) fn semi_hard_on_device(
        &self,
        queries: Tensor<2>,
        refs: Option<Tensor<2>>,
        labels: &DeviceLabels,
        want_stats: bool,
    ) -> (Tensor<1>, Option<PendingStats>) {
        let b = queries.dims()[0];
        let device = queries.device();
        let refs = refs.unwrap_or_else(|| queries.clone());
        let m = refs.dims()[0];
        let dist = self.distance.pairwise(queries, refs);
        let detached = dist.clone().detach();
        let negatives = cube::semi_hard_negatives(detached.clone(), labels);
        let valid = negatives.clone().greater_equal_elem(0);
        let index = negatives.clamp_min(0);
        let mut d_an = dist.clone().gather(1, index.clone());
        if self.swap {
            assert_eq!(
                b, m,
                "the swap on the device mines the batch against itself"
            );
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
        let invalid = valid.clone().bool_not().reshape([b * m]);
        let diff = (dist - d_an.clone()).reshape([b * m]);
        let losses = self
            .per_triplet(diff.clone())
            .mask_fill(invalid.clone(), 0.0);
        let valid_f = valid.clone().float().reshape([b * m]);
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
                    .reshape([b, m])
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
            PendingStats::rows(counts, sums, b)
        });
        (loss, stats)
    }

    /// Batch-all, or PML's band ([`Mining::PmlSemiHard`]), on the device: the kernel reduces
    /// every mined triplet to a weight per entry (`W = ∂L/∂D`) and per-pair losses, and the
    /// loss is `Σ W ⊙ D` plus the constant that makes its value the sum of the triplet losses,
    /// scaled by the reduction. The swap (in-batch only) moves a triplet's negative weight to
    /// entry `[p, n]` where `d(p, n)` is the smaller distance.
    pub(crate) fn weighted_on_device(
        &self,
        queries: Tensor<2>,
        refs: Option<Tensor<2>>,
        labels: &DeviceLabels,
        want_stats: bool,
    ) -> (Tensor<1>, Option<PendingStats>) {
        let b = queries.dims()[0];
        let in_batch = refs.is_none();
        let refs = refs.unwrap_or_else(|| queries.clone());
        let dist = self.distance.pairwise(queries, refs);
        let detached = dist.clone().detach();
        let rule = WeightRule {
            margin: self.margin as f32,
            band: (self.mining == Mining::PmlSemiHard).then_some(self.margin as f32),
            soft: self.soft,
            swap: self.swap,
        };
        assert!(
            in_batch || !rule.swap,
            "the swap on the device mines the batch against itself"
        );
        let mined = cube::triplet_weights(detached.clone(), labels, rule);
        let loss_sum = mined.losses.sum();
        // Entries in no triplet masked, not multiplied by their 0 weight: a non-finite
        // distance outside every triplet must not make the loss NaN (0 · NaN is NaN), as the
        // host's gathered triplets never see it.
        let outside = mined.weights.clone().equal_elem(0.0);
        let linear =
            (detached.clone().mask_fill(outside.clone(), 0.0) * mined.weights.clone()).sum();
        let raw = (dist.mask_fill(outside, 0.0) * mined.weights).sum() + (loss_sum - linear);
        let loss = match self.reduction {
            crate::Reduction::Sum => raw,
            crate::Reduction::MeanActive => raw / mined.active.clone().float().sum().clamp_min(1.0),
            crate::Reduction::Mean => raw / mined.mined.clone().float().sum().clamp_min(1.0),
        };
        let stats = want_stats.then(|| {
            let counts = Tensor::cat(
                vec![
                    mined.mined.clone().sum_dim(1).reshape([b]),
                    mined.active.sum_dim(1).reshape([b]),
                ],
                0,
            );
            // Σ d_ap over the triplets: each positive pair's distance times its triplets
            // (mask_fill, not a product, where it has none: 0 · NaN is NaN).
            let has = mined.mined.clone().greater_elem(0);
            let d_ap = detached.clone().mask_fill(has.bool_not(), 0.0) * mined.mined.float();
            let sums = Tensor::cat(
                vec![d_ap.sum(), mined.an_sums.sum(), non_finite(detached)],
                0,
            );
            PendingStats::rows(counts, sums, b)
        });
        (loss, stats)
    }
}
