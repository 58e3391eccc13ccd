//! How per-triplet losses become one number.

use burn::prelude::*;

/// How the per-triplet losses of a batch are reduced to the loss.
///
/// A batch with no triplet gives 0 for every reduction, still connected to the graph (its
/// gradient is 0), never NaN. Default: [`Reduction::Mean`].
#[derive(Config, Debug, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reduction {
    /// Mean over the mined triplets (pytorch-metric-learning's `MeanReducer`).
    Mean,
    /// Mean over the mined triplets whose loss is `> 0` (pytorch-metric-learning's
    /// `AvgNonZeroReducer`, its default for `TripletMarginLoss`; Hermans et al.'s batch-all).
    MeanActive,
    /// Sum over the mined triplets.
    Sum,
}

// Written out: `#[derive(Config)]` on an enum does not accept `#[default]` variants.
#[allow(clippy::derivable_impls)]
impl Default for Reduction {
    fn default() -> Self {
        Reduction::Mean
    }
}

impl Reduction {
    /// The factor that turns a sum of `triplets` losses, `active` of them non-zero, into this
    /// reduction (0 when there is nothing to average).
    pub(crate) fn scale(self, triplets: u64, active: u64) -> f64 {
        let n = match self {
            Reduction::Mean => triplets,
            Reduction::MeanActive => active,
            Reduction::Sum => return 1.0,
        };
        if n == 0 { 0.0 } else { 1.0 / n as f64 }
    }

    /// Reduces per-triplet losses `[num_triplets]` (at least one) on the device, without
    /// reading anything back.
    pub(crate) fn reduce(self, losses: Tensor<1>) -> Tensor<1> {
        match self {
            Reduction::Mean => losses.mean(),
            Reduction::Sum => losses.sum(),
            Reduction::MeanActive => {
                let active = losses
                    .clone()
                    .greater_elem(0.0)
                    .float()
                    .sum()
                    .clamp_min(1.0);
                losses.sum() / active
            }
        }
    }

    /// Reduces per-row losses `[rows]` of which only those with `valid` (0/1, `[rows]`) are
    /// triplets; invalid rows must already be 0. No read-back; 0 without any valid row.
    /// With `all_active` (the soft margin, whose every triplet has a loss `> 0` in exact
    /// arithmetic, as the host miners count) `MeanActive` divides by the valid rows too: `f32`
    /// flushes a softplus below about `e^-88` to 0.
    pub(crate) fn reduce_rows(
        self,
        losses: Tensor<1>,
        valid: Tensor<1>,
        all_active: bool,
    ) -> Tensor<1> {
        match self {
            Reduction::Mean => losses.sum() / valid.sum().clamp_min(1.0),
            Reduction::MeanActive if all_active => losses.sum() / valid.sum().clamp_min(1.0),
            Reduction::Sum | Reduction::MeanActive => self.reduce(losses),
        }
    }
}
