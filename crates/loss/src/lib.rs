//! Triplet margin loss with online mining for [Burn](https://burn.dev) 0.22, on any device.
//!
//! # Brief overview
//!
//! The triplet loss learns an embedding in which samples of a class are closer to each other
//! than to other classes by a margin: `L = max(d(a,p) − d(a,n) + α, 0)` over triplets of an
//! anchor `a`, a positive `p` (same label) and a negative `n` (another label). Triplets are
//! *mined online* inside each batch. Four parts, each replaceable, work together:
//!
//! - [`Distance`] gives `d`: the `[B, B]` matrix for mining ([`Distance::pairwise`]) and
//!   row-wise values for the loss ([`Distance::paired`]).
//! - [`Mining`] picks the triplets from the detached distance matrix: all valid ones, the
//!   hardest per anchor, or FaceNet's semi-hard ones. [`mine`] runs the miner alone and
//!   returns [`Triplets`] (index tensors), for users who want only the miner.
//! - [`Reduction`] turns per-triplet losses into one value.
//! - [`TripletLoss`] (built from [`TripletLossConfig`]) ties them together, and
//!   [`TripletLoss::forward_with_stats`] also reports [`MiningStats`];
//!   [`TripletLoss::forward_deferred`] leaves them on the device ([`PendingStats`]) so that a
//!   GPU training loop reads the loss value and the statistics in one transfer, when it
//!   chooses.
//! - [`References`] and [`CrossBatchMemory`] mine a batch's anchors against other embeddings
//!   (pytorch-metric-learning's `ref_emb` and `CrossBatchMemory`): see "Reference embeddings
//!   and cross-batch memory" below.
//!
//! ```text
//! embeddings [B,D] ─Distance─▶ D [B,B] ─detach─▶ Mining ─▶ triplets (indices) or,
//!                                                            for batch-all, weights W [B,B]
//!                  (Mining on the host on CPU devices, by CubeCL kernels on wgpu/CUDA: "Cost")
//! loss = Reduction( hinge( d(x_a, x_p) − d(x_a, x_n) + α ) )        (hard, semi-hard, given triplets)
//! loss = Σ W ⊙ D + c                                                 (batch-all: exact value and gradient)
//! ```
//!
//! # Example
//!
//! ```
//! use burn::prelude::*;
//! use triplet_loss::{Distance, Mining, Reduction, TripletLossConfig};
//!
//! let device = Device::flex().autodiff();
//! // The worked example of "Definitions" below; TensorFlow Addons' triplet_semihard_loss gives the same 1.0.
//! let embeddings =
//!     Tensor::<2>::from_data([[0.0, 0.0], [0.0, 2.0], [0.0, 3.0]], &device).require_grad();
//! let labels = Tensor::<1, Int>::from_data([0, 0, 1], &device);
//!
//! let loss = TripletLossConfig::new()        // defaults: Euclidean, semi-hard, margin 0.2, Mean
//!     .with_margin(1.0)
//!     .with_mining(Mining::SemiHard)
//!     .with_distance(Distance::Euclidean)
//!     .with_reduction(Reduction::Mean)
//!     .init();
//! let out = loss.forward_with_stats(embeddings.clone(), labels);
//! // (0,1): the negative at 3 lies beyond d_ap = 2: 2 − 3 + 1 → 0.
//! // (1,0): no negative beyond 2, so the farthest one, at 1: 2 − 1 + 1 = 2.
//! assert_eq!((out.stats.triplets, out.stats.active), (2, 1));
//! let value: f32 = out.loss.clone().into_scalar();
//! assert_eq!(value, 1.0);
//!
//! let grads = out.loss.backward();
//! let grad = embeddings.grad(&grads).unwrap(); // exact: ∂/∂x of (d(x₁,x₀) − d(x₁,x₂) + 1) / 2
//! let grad: Vec<f32> = grad.into_data().try_into_vec_as().unwrap();
//! assert_eq!(grad, [0.0, -0.5, 0.0, 1.0, 0.0, -0.5]);
//! ```
//!
//! # Definitions
//!
//! The contract every device and path of this crate keeps, and that its tests check against a
//! brute-force oracle. With `D` the `B×B` distance matrix, `P(a) = {p ≠ a : y_p = y_a}` and
//! `N(a) = {n : y_n ≠ y_a}`:
//!
//! - **Distances.** Euclidean `‖a − b‖`, squared Euclidean `‖a − b‖²`, cosine
//!   `1 − a·b / (‖a‖‖b‖)`.
//! - **Per-triplet loss.** `max(D[a,p] − D[a,n] + margin, 0)`; with `soft`,
//!   `softplus(D[a,p] − D[a,n])`, and the margin is unused.
//! - **Mining** picks triplets from the detached `D`; gradients flow only through the distances
//!   of the triplets picked ([`Mining`] gives each rule).
//! - **Reduction.** [`Reduction::Mean`] over the mined triplets, [`Reduction::MeanActive`] over
//!   those whose loss is `> 0`, [`Reduction::Sum`].
//! - [`TripletLoss::forward_triplets`] uses the triplets it is given as they are; the mining
//!   setting is not used.
//! - **Statistics** ([`MiningStats`]): mined triplets, active ones (loss `> 0`), anchors with a
//!   triplet, and the mean `D[a,p]` and `D[a,n]` over the mined triplets. Reading them may wait
//!   for the device; [`TripletLoss::forward`] computes none.
//!
//! Worked example (Euclidean, margin 1, semi-hard, mean), the one of the example above:
//! `x = [[0,0],[0,2],[0,3]]`, `y = [0,0,1]`. Pair `(0,1)`: `d_ap = 2`, and negative 2 at 3 lies
//! beyond it: `1 + 2 − 3 → 0`. Pair `(1,0)`: `d_ap = 2`, the only negative is at 1, not beyond,
//! so the farthest negative is taken: `1 + 2 − 1 = 2`. The mean over the two pairs is **1.0**, as
//! TensorFlow Addons' `triplet_semihard_loss` gives; with squared Euclidean it is 2.0.
//!
//! # Options, defaults and where they come from
//!
//! | option | values (default first) | follows |
//! |---|---|---|
//! | `margin` | `0.2`, any finite `≥ 0` | FaceNet (Schroff et al., CVPR 2015) |
//! | `distance` | [`Distance::Euclidean`], [`Distance::SquaredEuclidean`], [`Distance::Cosine`] | PML's `LpDistance(normalize_embeddings=False)` (PML's default normalises; ours measures the embeddings as given), FaceNet's squared L2, PML's `CosineSimilarity` |
//! | `mining` | [`Mining::SemiHard`], [`Mining::Hard`], [`Mining::All`], [`Mining::PmlSemiHard`] | FaceNet / TF Addons `TripletSemiHardLoss` (**not** PML's `TripletMarginMiner("semihard")`, which keeps every triplet with `0 < d_an − d_ap ≤ margin`: that one is [`Mining::PmlSemiHard`]); Hermans et al. 2017 ("In Defense of the Triplet Loss") batch-hard and batch-all (PML's `BatchHardMiner`, and `TripletMarginLoss` without a miner) |
//! | `reduction` | [`Reduction::Mean`], [`Reduction::MeanActive`], [`Reduction::Sum`] | PML's `MeanReducer`, `AvgNonZeroReducer`, `SumReducer` |
//! | `soft` | `false`, `true` | soft margin `softplus(d_ap − d_an)`, Hermans et al. 2017 (PML's `smooth_loss` keeps the margin inside; we drop it) |
//! | `swap` | `false`, `true` | anchor swap, Balntas et al. 2016: `d_an` is the smaller of `d(a,n)` and `d(p,n)` (PyTorch's and PML's `swap=True`) |
//!
//! pytorch-metric-learning's default `TripletMarginLoss()` (margin 0.05, `LpDistance()` on
//! L2-normalised embeddings, every triplet, `AvgNonZeroReducer`) is, on embeddings the model
//! already normalises (`triplet-model`'s head does by default):
//!
//! ```
//! # use triplet_loss::{Mining, Reduction, TripletLossConfig};
//! let pml_default = TripletLossConfig::new()
//!     .with_margin(0.05)
//!     .with_mining(Mining::All)
//!     .with_reduction(Reduction::MeanActive);
//! # let _ = pml_default.init();
//! ```
//!
//! A batch with no triplet (one class only, or every label distinct) gives a loss of 0 that is
//! still connected to the graph, with a zero gradient: never NaN. The Euclidean distance has a
//! zero gradient, not NaN, where two embeddings are identical (duplicated images in P×K
//! batches); a zero vector is at cosine distance 1 from everything.
//!
//! Identical embeddings (a collapsed model) put every triplet at the margin with a zero
//! gradient: the loss stays at `margin` and training cannot move; `MiningStats` shows every
//! triplet active with `mean_d_ap = mean_d_an = 0`.
//!
//! NaN or infinite embeddings make the loss and its gradient NaN, as in PyTorch; the statistics
//! count the distances that are not finite ([`MiningStats::non_finite`]), so a training loop
//! can stop on them, and [`mine`] refuses such a matrix with a panic.
//!
//! Labels are any integers the device's `Int` type holds (`i32` on flex by default).
//! Ties between equal distances pick the lowest index (batch-hard on a GPU: the kernel's choice).
//!
//! Mining and batch-all use the `B×B` matrix `‖x‖² + ‖y‖² − 2·x·yᵀ`, as `torch.cdist` does:
//! for nearly identical rows its Euclidean entries are `√(rounding noise)`, about 3e-4 for unit
//! vectors, not 0. Semi-hard and batch-hard losses recompute their distances from the rows,
//! except semi-hard mined on a cubecl device, which reads them off the matrix too.
//!
//! # Reference embeddings and cross-batch memory
//!
//! [`TripletLoss::forward_refs`] takes the anchors from the batch (`[B, D]`) and the positives
//! and negatives from [`References`] (`[M, D]`, PML's `ref_emb` / `ref_labels`); [`mine_refs`]
//! is its miner alone. Every rule above applies per anchor over the references; nothing
//! `M×M` is formed, and memory is `O(B·M)` except for the triplets that are kept explicitly
//! ([`Mining::PmlSemiHard`]'s, and every mined triplet with the swap: see
//! [`TripletLoss::forward_refs`]).
//!
//! [`CrossBatchMemory`] (XBM, Wang et al. 2020, "Cross-Batch Memory for Embedding Learning")
//! keeps the last `memory_size` embeddings (detached) and labels in a ring buffer: each call
//! adds the batch, then mines the batch's anchors against the whole memory, so a small batch
//! mines among thousands of recent embeddings. It matches PML's `CrossBatchMemory(loss,
//! embedding_size, memory_size, miner)` step by step (loss, gradient, triplets; checked on
//! fixed sequences of batches that wrap the memory):
//!
//! ```
//! # use burn::prelude::*;
//! use triplet_loss::{CrossBatchMemoryConfig, Mining, TripletLossConfig};
//!
//! let device = Device::flex().autodiff();
//! let loss = TripletLossConfig::new().with_mining(Mining::Hard).with_margin(0.5).init();
//! let mut memory = CrossBatchMemoryConfig::new().with_memory_size(4).init();
//! let labels = Tensor::<1, Int>::from_data([0, 1], &device);
//! let first = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 3.0]], &device).require_grad();
//! // Alone, a batch of one image per class has no positive: a loss of 0.
//! let value: f32 = memory.forward(&loss, first, labels.clone()).into_scalar();
//! assert_eq!(value, 0.0);
//! // The next batch finds its positives in the memory (the first batch's rows, d_ap = 1) and
//! // its hardest negatives in itself (d_an = 1): 1 − 1 + 0.5 for both anchors.
//! let second = Tensor::<2>::from_data([[0.0, 1.0], [0.0, 2.0]], &device).require_grad();
//! let value: f32 = memory.forward(&loss, second, labels).into_scalar();
//! assert!((value - 0.5).abs() < 1e-6 && memory.len() == 4);
//! ```
//!
//! The memory is state: [`CrossBatchMemory::state`] and [`CrossBatchMemory::from_state`] save
//! and restore it beside a checkpoint. On CubeCL devices (features `wgpu`, `cuda`) the
//! references and the memory are mined on the device by the same kernels as the batch, over
//! the `B×M` matrix (batch-hard on every GPU backend); only the swap against references, whose
//! `d(p, n)` is between two references and not in that matrix, reads the `B×M` distances back
//! to the host miner. On CPU devices they are mined on the host.
//!
//! # Cost
//!
//! Memory is `O(B²)` for every strategy: no `B×B×B` tensor ever exists (pytorch-metric-learning
//! and TF Addons build one). The host miners run over the distance matrix in
//! `O(B² log K)` (K = largest class): per anchor the few positives are sorted, and each
//! negative is dropped into its bucket by binary search; bucket minima give the semi-hard
//! negatives, bucket counts and sums give batch-all's hinge sums and gradient weights. The soft
//! margin with batch-all is `O(B²·K)`. Forward + backward of 8192 × 128 embeddings runs on two
//! CPU cores in about 1–3 s (forward + backward, D = 128, P×K labels with K = 8), where
//! pytorch-metric-learning, measured the same way, peaks at 7.8 GiB for semi-hard at B = 4096
//! and runs out of 20 GiB at B = 8192.
//!
//! On flex and ndarray semi-hard and batch-all read the detached `B×B` distances once (a
//! copy) and mine them there. On Burn's CubeCL backends (wgpu, CUDA, and cubecl's own CPU
//! runtime, which is one of them), with this crate's `wgpu` or `cuda` feature, they are mined **on the device** by CubeCL kernels (a Burn backend
//! extension): one thread per distance-matrix entry gives semi-hard's negative of each positive
//! pair (`O(B²·K)` work) or the per-entry weights and losses of batch-all and of
//! [`Mining::PmlSemiHard`]'s band (`O(B³)` simple steps; with the swap each entry also sums the
//! triplets whose `d(p, n)` it is), the same triplets and tie rule as the host miners, and the
//! loss is composed over the `B×B` matrix (`B×M` against references and the cross-batch
//! memory), so [`TripletLoss::forward`] and [`TripletLoss::forward_deferred`] never wait for
//! the device (`forward_with_stats` reads `O(B)` counts back; [`PendingStats::read_with_loss`]
//! reads them with the loss value in one transfer). PML's band is decided in `f32` on the device (`0 < d_an − d_ap ≤ α`)
//! and in `f64` on the host, so a triplet within `f32` rounding of either bound may be in on
//! one and out on the other. Without those features such devices take the host miners, which are
//! equally exact. Batch-hard is mined on the device with `argmax`/`argmin` kernels on every
//! GPU backend (on Burn's CPU backends the host miner is faster and is used instead). The
//! pattern `mine` (explicit triplets) always reads back: it returns a variable number of
//! triplets; on cubecl devices semi-hard is still chosen by the kernel, and only its `B×B`
//! table of indices is read.
//!
//! # The backward pass: composed ops, measured against a hand-written one
//!
//! Hard and semi-hard gather only the mined rows, `O(T·D)` work, and autodiff differentiates
//! through that gather. Batch-all touches all `B²` pairs, so its gradient is where a
//! hand-written backward could pay: `∂L/∂X = 2(diag(S·1) − S)·X` with `S = W + Wᵀ`, one
//! `B×B` sum and one `B×B·D` product, against autodiff through the composed distance matrix.
//! Both are implemented (the hand-written one behind the `fused` feature, a Burn backend
//! extension with a `Backward` impl) and benchmarked in the same binary:
//!
#![doc = include_str!("../docs/backward_choice.md")]
#![deny(missing_docs)]

mod distance;
mod error;
#[cfg(feature = "fused")]
mod fused;
mod memory;
mod mining;
mod output;
mod reduction;
mod refs;
mod triplet;
mod triplets;
mod weighted;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use crate::{
    distance::Distance,
    error::ConfigError,
    memory::{CrossBatchMemory, CrossBatchMemoryConfig, MemoryState},
    mining::{Mining, PML_MINER_MARGIN, mine, mine_with_margin},
    output::{DeferredOutput, MiningStats, PendingStats, TripletOutput},
    reduction::Reduction,
    refs::{References, mine_refs, mine_refs_with_margin},
    triplet::{TripletLoss, TripletLossConfig},
    triplets::Triplets,
};
