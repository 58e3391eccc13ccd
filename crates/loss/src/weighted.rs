//! `Σᵢⱼ W[i,j] · D[i,j]`: how batch-all's mined weights meet the distance matrix.
//!
//! Composed from differentiable tensor ops: autodiff back-propagates through the distance
//! matrix `D` (the `B×B` product and the element-wise steps). See the crate docs for the
//! measured comparison with a hand-written backward.

use burn::prelude::*;

/// `Σ W ⊙ dist`, where `dist` is `distance.pairwise(x, x)` still attached to the graph of `x`.
///
/// # Shapes
/// - `dist`, `weights`: `[batch, batch]`
/// - output: `[1]`
pub(crate) fn weighted_sum(dist: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    (dist * weights).sum()
}
