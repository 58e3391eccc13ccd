//! Online triplet mining: which `(anchor, positive, negative)` triplets of a batch the loss uses.
//!
//! On CPU devices semi-hard and batch-all read the detached distance matrix back to the host
//! once (`B²` floats, a copy) and run exact `O(B² log K)` algorithms there ([`host`]). On
//! CubeCL devices (features `wgpu`, `cuda`) CubeCL kernels mine semi-hard, batch-all and PML's
//! band on the device with the same triplets and tie rule (`cube`), in the batch and against
//! references. The loss's batch-hard stays on the device ([`device`])
//! on every GPU backend: argmax and argmin are native kernels. Miners return indices;
//! gradients flow only through the distances that the loss gathers with them
//! (pytorch-metric-learning's design: miners return indices, never losses).

#[cfg(feature = "cube")]
pub(crate) mod cube;
pub(crate) mod device;
pub(crate) mod host;

use burn::prelude::*;

use crate::triplets::Triplets;

/// How triplets are chosen inside a batch.
///
/// With `P(a)` the other samples of the anchor's class, `N(a)` the samples of other classes and
/// `D` the distance matrix:
/// - [`Mining::All`] (batch-all): every `(a, p, n)` with `p ∈ P(a)`, `n ∈ N(a)`.
/// - [`Mining::Hard`] (batch-hard, Hermans et al. 2017, "In Defense of the Triplet Loss for
///   Person Re-Identification"): per anchor with a positive and a negative, the farthest positive
///   and the nearest negative.
/// - [`Mining::SemiHard`] (FaceNet, Schroff et al. 2015; TensorFlow Addons'
///   `TripletSemiHardLoss`): for every positive pair `(a, p)` whose anchor has a negative, the
///   nearest negative with `D[a,n] > D[a,p]` (strictly), or, if none is that far, the farthest
///   negative.
/// - [`Mining::PmlSemiHard`] (pytorch-metric-learning's `TripletMarginMiner(margin,
///   type_of_triplets="semihard")`): every `(a, p, n)` with `0 < D[a,n] − D[a,p] ≤ margin`, the
///   loss's margin. It is **not** FaceNet's rule: it keeps no triplet whose negative is closer
///   than the positive, and many per pair; it is here so that PML code can be ported with its
///   numbers.
///
/// Ties pick the lowest index, except batch-hard inside the loss on GPU devices, which takes
/// the `argmax`/`argmin` kernel's choice (loss values and statistics do not depend on it; which
/// of two identical rows gets the gradient does). Default: [`Mining::SemiHard`].
#[derive(Config, Debug, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mining {
    /// Every valid triplet (batch-all).
    All,
    /// The hardest positive and hardest negative of each anchor (batch-hard).
    Hard,
    /// One semi-hard negative per positive pair (FaceNet).
    SemiHard,
    /// Every triplet in the band `0 < d_an − d_ap ≤ margin` (pytorch-metric-learning's
    /// "semihard" `TripletMarginMiner`).
    PmlSemiHard,
}

// Written out: `#[derive(Config)]` on an enum does not accept `#[default]` variants.
#[allow(clippy::derivable_impls)]
impl Default for Mining {
    fn default() -> Self {
        Mining::SemiHard
    }
}

/// Mines triplets from a distance matrix, for users who want the miner without the loss.
///
/// `dist` is read back to the host (it is detached first); on cubecl devices semi-hard is
/// mined there by the device kernel and only its `[B, B]` index table is read. [`Mining::All`]
/// materialises every
/// valid triplet, `B·(K−1)·(B−K)` of them in a P×K batch: use it for inspection and small
/// batches (the loss itself never materialises them).
///
/// # Shapes
/// - `dist`: `[batch, batch]`, smaller = closer (e.g. from [`Distance::pairwise`](crate::Distance::pairwise))
/// - `labels`: `[batch]`, any integer values
/// - output: three `[num_triplets]` index tensors on `dist`'s device, ordered by anchor, then
///   positive, then negative
///
/// # Panics
/// If `dist` is not square, `labels` does not have one entry per row, or `dist` holds a NaN or
/// an infinity (NaN or infinite embeddings: no triplet of them means anything).
///
/// # Example
/// ```
/// # use burn::prelude::*; use triplet_loss::{mine, Distance, Mining};
/// let device = Device::flex();
/// let x = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 2.0], [0.0, 3.0]], &device);
/// let y = Tensor::<1, Int>::from_data([0, 0, 1], &device);
/// let dist = Distance::Euclidean.pairwise(x.clone(), x);
/// let triplets = mine(dist, y, Mining::SemiHard);
/// assert_eq!(triplets.len(), 2);
/// let negatives: Vec<i64> = triplets.negative.into_data().try_into_vec_as().unwrap();
/// assert_eq!(negatives, [2, 2]);
/// ```
pub fn mine(dist: Tensor<2>, labels: Tensor<1, Int>, mining: Mining) -> Triplets {
    mine_with_margin(dist, labels, mining, PML_MINER_MARGIN)
}

/// pytorch-metric-learning's default `TripletMarginMiner` margin, which [`mine`] gives
/// [`Mining::PmlSemiHard`].
pub const PML_MINER_MARGIN: f64 = 0.2;

/// [`mine`] with the band's margin for [`Mining::PmlSemiHard`] (the other rules have no
/// margin). The loss mines that rule with its own margin.
///
/// # Panics
/// As [`mine`].
pub fn mine_with_margin(
    dist: Tensor<2>,
    labels: Tensor<1, Int>,
    mining: Mining,
    margin: f64,
) -> Triplets {
    let device = dist.device();
    #[cfg(feature = "cube")]
    if mining == Mining::SemiHard && mines_on_cube(&device) {
        return semi_hard_on_cube(dist, labels).into_tensors(&device);
    }
    let (dist, classes) = read_batch(dist, labels);
    assert_finite(&dist);
    mine_host(&dist, &classes, mining, margin).into_tensors(&device)
}

/// Semi-hard mined by the device kernel, its `[B, B]` table of negatives read back once (the
/// triplets' number is only known then) and listed by anchor, then positive.
#[cfg(feature = "cube")]
fn semi_hard_on_cube(dist: Tensor<2>, labels: Tensor<1, Int>) -> host::IndexTriplets {
    let rows = batch_size(&dist, &labels);
    let bad: f64 = non_finite(dist.clone().detach()).into_scalar();
    refuse_non_finite(bad as u64);
    let negatives = cube::semi_hard_negatives(dist, &cube::DeviceLabels::in_batch(labels));
    cube::table_triplets(&read_ints(negatives.reshape([rows * rows])), rows)
}

/// Whether semi-hard and batch-all are mined by the CubeCL kernels on this device (any cubecl
/// runtime: wgpu, CUDA, …) rather than read back to the host miner.
#[cfg(feature = "cube")]
pub(crate) fn mines_on_cube(device: &Device) -> bool {
    cube::is_cube(device)
}

/// The number of NaN or infinite entries of `dist`, `[1]`, left on its device.
pub(crate) fn non_finite(dist: Tensor<2>) -> Tensor<1> {
    dist.is_finite().bool_not().float().sum()
}

/// The public miners' refusal of a distance matrix with NaN or infinite entries.
pub(crate) fn assert_finite(dist: &[f32]) {
    refuse_non_finite(host::count_non_finite(dist));
}

/// The refusal itself, given how many entries are NaN or infinite.
fn refuse_non_finite(bad: u64) {
    assert!(
        bad == 0,
        "the distance matrix has {bad} non-finite entries (NaN or infinite embeddings): \
         nothing can be mined from it"
    );
}

/// Whether batch-hard is cheaper through the host miner than on the device: true for Burn's
/// CPU backends (the "read-back" is a copy, and the host loop beats the device path's dozen
/// `B×B` mask passes: 1.6 s against 2.4 s at B = 8192 on two cores, forward + backward),
/// false elsewhere (on a GPU the device path avoids the transfer and the stall). The device's
/// type decides, as for the fused backward: Burn 0.22 names its backends only behind its cargo
/// features, so the crate's `flex` and `ndarray` features name them here. A backend not named
/// takes the device path, which is equally exact.
pub(crate) fn mines_faster_on_host(device: &Device) -> bool {
    #[allow(unused_imports)] // Empty without the `flex` and `ndarray` features.
    use burn::backend::DispatchDevice;
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        DispatchDevice::NdArray(_) => true,
        _ => false,
    }
}

pub(crate) fn mine_host(
    dist: &[f32],
    classes: &host::Classes,
    mining: Mining,
    margin: f64,
) -> host::IndexTriplets {
    match mining {
        Mining::PmlSemiHard => host::pml_semi_hard(dist, classes, margin),
        Mining::All => host::all(classes),
        Mining::Hard => host::hard(dist, classes),
        Mining::SemiHard => host::semi_hard(dist, classes),
    }
}

/// Reads a detached `[B, B]` distance matrix and `[B]` labels to the host.
pub(crate) fn read_batch(dist: Tensor<2>, labels: Tensor<1, Int>) -> (Vec<f32>, host::Classes) {
    batch_size(&dist, &labels);
    let labels = read_ints(labels);
    (read_distances(dist), host::Classes::new(&labels))
}

/// The batch size of a `[B, B]` distance matrix with `[B]` labels; panics naming the shapes
/// otherwise.
fn batch_size(dist: &Tensor<2>, labels: &Tensor<1, Int>) -> usize {
    let [rows, cols] = dist.dims();
    assert_eq!(
        rows, cols,
        "distance matrix must be square, got [{rows}, {cols}]"
    );
    let [n] = labels.dims();
    assert_eq!(n, rows, "labels have {n} entries for a batch of {rows}");
    rows
}

/// A distance matrix's values on the host, detached, row-major.
pub(crate) fn read_distances(dist: Tensor<2>) -> Vec<f32> {
    dist.detach()
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("distance matrix converts to f32")
}

/// An integer tensor's values on the host (labels, triplet indices).
pub(crate) fn read_ints(labels: Tensor<1, Int>) -> Vec<i64> {
    labels
        .into_data()
        .try_into_vec_as::<i64>()
        .expect("labels convert to i64")
}
