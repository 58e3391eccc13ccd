//! Mined triplets as index tensors.

use burn::prelude::*;

/// Triplets `(anchor[i], positive[i], negative[i])`, as row indices into the batch.
///
/// Returned by [`mine`](crate::mine); accepted by
/// [`TripletLoss::forward_triplets`](crate::TripletLoss::forward_triplets).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Triplets {
    /// Anchor indices, `[num_triplets]`.
    pub anchor: Tensor<1, Int>,
    /// Positive indices (same label as the anchor), `[num_triplets]`.
    pub positive: Tensor<1, Int>,
    /// Negative indices (another label), `[num_triplets]`.
    pub negative: Tensor<1, Int>,
}

impl Triplets {
    /// Triplets from index tensors of equal length.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn new(anchor: Tensor<1, Int>, positive: Tensor<1, Int>, negative: Tensor<1, Int>) -> Self {
        let (a, p, n) = (anchor.dims()[0], positive.dims()[0], negative.dims()[0]);
        assert!(
            a == p && p == n,
            "triplet index tensors differ in length: {a}, {p}, {n}"
        );
        Self {
            anchor,
            positive,
            negative,
        }
    }

    /// The number of triplets.
    pub fn len(&self) -> usize {
        self.anchor.dims()[0]
    }

    /// Whether there is no triplet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
