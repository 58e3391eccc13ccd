//! Distances between embeddings: pairwise matrices for mining and row-wise values for the loss.
//!
//! Every function here is composed from differentiable Burn tensor ops, so it runs on every
//! device, with or without autodiff, and its gradient is finite everywhere: the square root is
//! masked where its argument is 0 (two identical embeddings, common in P×K batches of duplicated
//! images), and cosine treats a zero vector as having norm 1 (distance 1 to everything).

use burn::prelude::*;

/// Below this squared distance (or squared norm) the square root and its gradient are taken as 0.
const SQRT_EPS: f64 = 1e-12;
/// A row whose squared norm is at most this is treated as the zero vector by cosine.
const NORM_EPS: f64 = 1e-12;

/// The distance `d(a, b)` the loss compares: smaller means more similar.
///
/// Default: [`Distance::Euclidean`] (FaceNet, Schroff et al. 2015; pytorch-metric-learning's
/// `LpDistance(normalize_embeddings=False)`: PML's default `LpDistance()` normalises the
/// embeddings first, which this distance does not).
#[derive(Config, Debug, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Distance {
    /// `‖a − b‖₂`. Its gradient is 0, never NaN, where the distance is 0.
    Euclidean,
    /// `‖a − b‖₂²` (the distance of the original FaceNet loss).
    SquaredEuclidean,
    /// `1 − a·b / (‖a‖ ‖b‖)`, in `[0, 2]`. A zero vector is at distance 1 from everything.
    Cosine,
}

// Written out: `#[derive(Config)]` on an enum does not accept `#[default]` variants.
#[allow(clippy::derivable_impls)]
impl Default for Distance {
    fn default() -> Self {
        Distance::Euclidean
    }
}

impl Distance {
    /// Distances between every row of `x` and every row of `y`.
    ///
    /// Computed as `‖x‖² + ‖y‖² − 2·x·yᵀ` (one matrix product, as `torch.cdist` does for large
    /// inputs), clamped at 0.
    ///
    /// # Shapes
    /// - `x`: `[n, dim]`, `y`: `[m, dim]`
    /// - output: `[n, m]`
    ///
    /// # Panics
    /// If the embedding dimensions differ.
    pub fn pairwise(&self, x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
        let [_, dx] = x.dims();
        let [_, dy] = y.dims();
        assert_eq!(
            dx, dy,
            "pairwise distance: embedding dims differ ({dx} vs {dy})"
        );
        match self {
            Distance::Cosine => {
                let sim = normalize_rows(x).matmul(normalize_rows(y).transpose());
                sim.neg().add_scalar(1.0)
            }
            Distance::Euclidean => safe_sqrt(squared_pairwise(x, y)),
            Distance::SquaredEuclidean => squared_pairwise(x, y),
        }
    }

    /// Row-wise distances `d(a[i], b[i])`.
    ///
    /// # Shapes
    /// - `a`, `b`: `[n, dim]`
    /// - output: `[n]`
    ///
    /// # Panics
    /// If the shapes differ.
    pub fn paired(&self, a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
        assert_eq!(a.dims(), b.dims(), "paired distance: shapes differ");
        let [n, _] = a.dims();
        let d = match self {
            Distance::Cosine => (normalize_rows(a) * normalize_rows(b))
                .sum_dim(1)
                .neg()
                .add_scalar(1.0),
            Distance::Euclidean => safe_sqrt((a - b).square().sum_dim(1)),
            Distance::SquaredEuclidean => (a - b).square().sum_dim(1),
        };
        d.reshape([n])
    }
}

/// `‖x_i − y_j‖²` for all pairs, clamped at 0 against rounding.
fn squared_pairwise(x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
    let x_sq = x.clone().square().sum_dim(1); // [n, 1]
    let y_sq = y.clone().square().sum_dim(1).transpose(); // [1, m]
    let gram = x.matmul(y.transpose()); // [n, m]
    (x_sq + y_sq - gram.mul_scalar(2.0)).clamp_min(0.0)
}

/// `sqrt` whose value and gradient are 0 (not NaN or infinite) where the argument is ~0.
pub(crate) fn safe_sqrt<const D: usize>(sq: Tensor<D>) -> Tensor<D> {
    let zero = sq.clone().lower_equal_elem(SQRT_EPS);
    sq.mask_fill(zero.clone(), 1.0).sqrt().mask_fill(zero, 0.0)
}

/// Rows divided by their L2 norm. A (near-)zero row is divided by 1 instead, so it stays ~0
/// and its gradient stays moderate (PyTorch's `F.normalize` divides by `1e-12` there).
fn normalize_rows(x: Tensor<2>) -> Tensor<2> {
    let sq = x.clone().square().sum_dim(1);
    let zero = sq.clone().lower_equal_elem(NORM_EPS);
    x / sq.mask_fill(zero, 1.0).sqrt()
}
