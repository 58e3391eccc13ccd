//! What the loss returns besides its value.

use burn::prelude::*;

/// The loss and what mining found, from [`TripletLoss::forward_with_stats`](crate::TripletLoss::forward_with_stats).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TripletOutput {
    /// The reduced loss, `[1]`, connected to the graph.
    pub loss: Tensor<1>,
    /// Counts and mean distances of the mined triplets.
    pub stats: MiningStats,
}

/// Statistics of the triplets mined in one batch (pytorch-metric-learning's `collect_stats`).
///
/// Distances are those the miner saw (the detached distance matrix).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct MiningStats {
    /// The number of mined triplets.
    pub triplets: u64,
    /// The number of mined triplets whose loss is `> 0`.
    pub active: u64,
    /// The number of anchors with at least one mined triplet.
    pub anchors_with_triplet: u64,
    /// Mean `d(a, p)` over the mined triplets (0 without triplets).
    pub mean_d_ap: f64,
    /// Mean `d(a, n)` over the mined triplets (0 without triplets).
    pub mean_d_an: f64,
    /// Entries of the batch's `B×B` distance matrix that are not finite: NaN or infinite
    /// embeddings. Anything but 0 means the loss and its gradient are not finite either, and
    /// the counts above mean nothing (a NaN triplet is never active). Check it, or
    /// [`is_finite`](Self::is_finite), where training must stop on bad input.
    pub non_finite: u64,
}

impl MiningStats {
    /// Whether every distance the miner saw was finite (see [`non_finite`](Self::non_finite)).
    pub fn is_finite(&self) -> bool {
        self.non_finite == 0
    }

    /// The fraction of mined triplets that are active (0 without triplets).
    pub fn active_fraction(&self) -> f64 {
        if self.triplets == 0 {
            0.0
        } else {
            self.active as f64 / self.triplets as f64
        }
    }
}
