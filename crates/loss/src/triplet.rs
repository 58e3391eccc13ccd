//! The triplet margin loss with online mining: configuration, module and forward passes.

use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::distance::Distance;
use crate::error::ConfigError;
use crate::mining::{
    Mining, device, host, mine_host, mines_faster_on_host, read_batch, read_distances, read_ints,
};
#[cfg(feature = "cube")]
use crate::mining::{cube::DeviceLabels, mines_on_cube};
use crate::output::{DeferredOutput, MiningStats, PendingStats, TripletOutput};
use crate::reduction::Reduction;
use crate::triplets::Triplets;

#[path = "batch_all.rs"]
mod batch_all;
use batch_all::weighted_loss;
#[cfg(feature = "cube")]
#[path = "on_device.rs"]
mod on_device;

/// Configuration of a [`TripletLoss`].
///
/// Every field has a default, so `TripletLossConfig::new().init()` is FaceNet's semi-hard
/// triplet loss with Euclidean distance and margin 0.2, averaged over the mined triplets.
#[derive(Config, Debug)]
pub struct TripletLossConfig {
    /// The margin `α` of `max(d(a,p) − d(a,n) + α, 0)`; unused with [`soft`](Self::soft).
    /// Default: `0.2` (FaceNet used 0.2 on L2-normalised embeddings).
    #[config(default = 0.2)]
    pub margin: f64,
    /// The distance `d`. Default: [`Distance::Euclidean`].
    #[config(default = "Distance::Euclidean")]
    pub distance: Distance,
    /// How triplets are mined in the batch. Default: [`Mining::SemiHard`] (FaceNet).
    #[config(default = "Mining::SemiHard")]
    pub mining: Mining,
    /// How per-triplet losses are reduced. Default: [`Reduction::Mean`].
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
    /// Soft margin: `softplus(d(a,p) − d(a,n))` per triplet instead of the hinge (Hermans et al.
    /// 2017). Default: `false`.
    #[config(default = false)]
    pub soft: bool,
    /// Anchor swap (Balntas et al. 2016, "Learning local feature descriptors with triplets and
    /// shallow convolutional neural networks"; PyTorch's and PML's `swap=True`): the negative's
    /// distance is the smaller of `d(a,n)` and `d(p,n)`. Mining is unchanged; the swap applies
    /// to the loss and its statistics. With [`Mining::All`] on the host the triplets are then
    /// materialised (`O(T·dim)` memory, `T = B·(K−1)·(B−K)` in a P×K batch) instead of reduced
    /// to `B×B` weights; the device kernels (features `wgpu`, `cuda`) keep the `B×B` weights.
    /// Default: `false`.
    #[config(default = false)]
    pub swap: bool,
}

impl TripletLossConfig {
    /// Checks the configuration: the margin must be finite and `>= 0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(ConfigError::Margin(self.margin));
        }
        Ok(())
    }

    /// Builds the loss, or says why the configuration cannot be used.
    pub fn try_init(&self) -> Result<TripletLoss, ConfigError> {
        self.validate()?;
        Ok(TripletLoss {
            margin: self.margin,
            distance: self.distance,
            mining: self.mining,
            reduction: self.reduction,
            soft: self.soft,
            swap: self.swap,
        })
    }

    /// Builds the loss.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails, with its message; [`try_init`](Self::try_init)
    /// returns the error instead.
    pub fn init(&self) -> TripletLoss {
        self.try_init().unwrap_or_else(|err| panic!("{err}"))
    }
}

/// Triplet margin loss with in-batch mining: `max(d(a,p) − d(a,n) + margin, 0)` per mined
/// triplet, reduced to one value. Should be created with [`TripletLossConfig`].
///
/// It has no parameters; it is a [`Module`] so that it can sit inside a model.
#[derive(Module, Debug)]
pub struct TripletLoss {
    margin: f64,
    #[module(skip)]
    distance: Distance,
    #[module(skip)]
    mining: Mining,
    #[module(skip)]
    reduction: Reduction,
    soft: bool,
    swap: bool,
}

impl TripletLoss {
    /// The margin `α`.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// The distance.
    pub fn distance(&self) -> Distance {
        self.distance
    }

    /// The mining rule.
    pub fn mining(&self) -> Mining {
        self.mining
    }

    /// Whether the anchor swap is on.
    #[cfg(feature = "cube")]
    pub(crate) fn swaps(&self) -> bool {
        self.swap
    }

    /// The loss of a batch: mines triplets, then reduces their losses.
    ///
    /// # Shapes
    /// - `embeddings`: `[batch, dim]`
    /// - `labels`: `[batch]`, any integer values
    /// - output: `[1]`
    ///
    /// # Panics
    /// If `labels` does not have one entry per embedding.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        self.run(embeddings, labels, false).0
    }

    /// Like [`forward`](Self::forward), also returning what mining found.
    ///
    /// Where semi-hard and batch-all are mined on the host (CPU devices) their statistics come
    /// at no extra cost; mined on a GPU (batch-hard everywhere but flex and ndarray, semi-hard
    /// and batch-all on cubecl devices) they cost one read of a few numbers (`O(B)` counts).
    ///
    /// # Shapes
    /// - `embeddings`: `[batch, dim]`
    /// - `labels`: `[batch]`
    ///
    /// # Panics
    /// If `labels` does not have one entry per embedding.
    pub fn forward_with_stats(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> TripletOutput {
        self.forward_deferred(embeddings, labels).read()
    }

    /// Like [`forward_with_stats`](Self::forward_with_stats), the statistics left where they
    /// were mined: nothing is read back here, and [`PendingStats::read_with_loss`] reads the
    /// loss value and the statistics in one transfer when the caller chooses (a GPU training
    /// step's only wait for the device).
    ///
    /// # Shapes
    /// - `embeddings`: `[batch, dim]`
    /// - `labels`: `[batch]`
    ///
    /// # Panics
    /// If `labels` does not have one entry per embedding.
    pub fn forward_deferred(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> DeferredOutput {
        let (loss, stats) = self.run(embeddings, labels, true);
        DeferredOutput {
            loss,
            stats: stats.expect("statistics were asked for"),
        }
    }

    fn run(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        want_stats: bool,
    ) -> (Tensor<1>, Option<PendingStats>) {
        let [b, _] = embeddings.dims();
        let [n] = labels.dims();
        assert_eq!(n, b, "labels have {n} entries for {b} embeddings");
        let device = embeddings.device();
        match self.mining {
            #[cfg(feature = "cube")]
            Mining::All | Mining::PmlSemiHard if mines_on_cube(&device) => {
                let labels = DeviceLabels::in_batch(labels);
                self.weighted_on_device(embeddings, None, &labels, want_stats)
            }
            #[cfg(feature = "cube")]
            Mining::SemiHard if mines_on_cube(&device) => {
                let labels = DeviceLabels::in_batch(labels);
                self.semi_hard_on_device(embeddings, None, &labels, want_stats)
            }
            Mining::All => {
                let out = self.batch_all(embeddings, labels);
                (out.loss, Some(PendingStats::ready(out.stats)))
            }
            Mining::Hard if !mines_faster_on_host(&device) => {
                self.batch_hard(embeddings, None, labels, None, want_stats)
            }
            mining => {
                let (loss, stats) = self.mined_on_host(embeddings, labels, mining, None);
                (loss, Some(PendingStats::ready(stats)))
            }
        }
    }

    /// Semi-hard (and batch-hard on CPU backends): mined on the host (see
    /// [`host_mined`](Self::host_mined)). `weighted` forces a path (tests).
    fn mined_on_host(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        mining: Mining,
        weighted: Option<bool>,
    ) -> (Tensor<1>, MiningStats) {
        let dist = self.mining_distances(&embeddings);
        let (dist, classes) = read_batch(dist, labels);
        let out = self.host_mined(embeddings.clone(), None, &dist, &classes, mining, weighted);
        (out.loss, out.stats)
    }

    /// The loss of `queries` mined on the host against `refs` (`None`: the batch itself),
    /// from their detached distances `dist` (`[B, M]`) and classes. Batch-all (without the
    /// swap) is reduced to per-entry weights; other triplets are either gathered row-wise
    /// (`O(T·dim)` memory, exact distances) or, when that would exceed the `B×M` distance
    /// matrix (few, large classes: `T = B·(K−1)` approaches `B²/2`), reduced to weights like
    /// batch-all, so memory stays `O(B·M)`. `weighted` forces that choice (tests).
    pub(crate) fn host_mined(
        &self,
        queries: Tensor<2>,
        refs: Option<Tensor<2>>,
        dist: &[f32],
        classes: &host::Classes,
        mining: Mining,
        weighted: Option<bool>,
    ) -> TripletOutput {
        let (b, m) = (classes.queries(), classes.refs());
        let dim = queries.dims()[1];
        let (weights, loss_sum, stats) = if mining == Mining::All && !self.swap {
            let all = host::all_weights(dist, classes, self.margin, self.soft);
            (all.weights, all.loss_sum, all.stats)
        } else {
            let triplets = mine_host(dist, classes, mining, self.margin);
            // The swap has no weight form: its triplets are always gathered row-wise.
            if self.swap || !weighted.unwrap_or(triplets.len() * dim > b * m) {
                return self.gathered(queries, refs, dist, triplets);
            }
            let stats =
                host::HostStats::of_triplets(dist, m, &triplets, self.margin, self.soft, None);
            let (weights, loss_sum) =
                host::triplet_weights(dist, [b, m], &triplets, self.margin, self.soft);
            (weights, loss_sum, stats)
        };
        let stats = MiningStats::from(stats.counting_non_finite(dist));
        let scale = self.reduction.scale(stats.triplets, stats.active);
        let loss = if stats.triplets == 0 || scale == 0.0 {
            zero_in_graph(queries, refs)
        } else {
            let refs = refs.unwrap_or_else(|| queries.clone());
            let dist_graph = self.distance.pairwise(queries, refs);
            weighted_loss(dist_graph, dist, &weights, scale, loss_sum)
        };
        TripletOutput { loss, stats }
    }

    /// The loss and statistics of explicit triplets of `queries` against `refs` (`None`: the
    /// batch itself), whose detached distances are `dist` (`[B, M]`; indices in range).
    fn gathered(
        &self,
        queries: Tensor<2>,
        refs: Option<Tensor<2>>,
        dist: &[f32],
        host: host::IndexTriplets,
    ) -> TripletOutput {
        let cols = refs.as_ref().unwrap_or(&queries).dims()[0];
        let triplets = host.clone().into_tensors(&queries.device());
        let swapped = self.swap.then(|| match &refs {
            // In the batch, d(p, n) is in the matrix; against references it is not (it is a
            // distance between two references): the pairs are measured, detached.
            None => host::positive_negative(dist, cols, &host),
            Some(refs) => {
                let r = refs.clone().detach();
                let d = self.distance.paired(
                    r.clone().select(0, triplets.positive.clone()),
                    r.select(0, triplets.negative.clone()),
                );
                d.into_data()
                    .try_into_vec_as::<f32>()
                    .expect("distances convert to f32")
            }
        });
        let stats = host::HostStats::of_triplets(
            dist,
            cols,
            &host,
            self.margin,
            self.soft,
            swapped.as_deref(),
        )
        .counting_non_finite(dist)
        .into();
        let loss = match refs {
            None => self.loss_of(queries.clone(), queries, triplets),
            Some(refs) => self.loss_of(queries, refs, triplets),
        };
        TripletOutput { loss, stats }
    }

    /// The loss of given triplets (from [`mine`](crate::mine), or one's own), with the
    /// configured distance, margin and reduction; the mining setting is not used. With
    /// [`Reduction::Sum`] this is `Σ max(d(a,p) − d(a,n) + α, 0)` over the triplets.
    ///
    /// The triplets are used as they are: no labels are known here, so a "positive" of another
    /// class is not noticed. The indices are read back once to check them (a wait for the
    /// device). No triplet gives a loss of 0 that is still in the graph.
    ///
    /// # Shapes
    /// - `embeddings`: `[batch, dim]`
    /// - `triplets`: `[num_triplets]` row indices into `embeddings`, each
    /// - output: `[1]`
    ///
    /// # Panics
    /// If an index is negative or not below `batch`.
    ///
    /// # Example
    /// ```
    /// # use burn::prelude::*; use triplet_loss::{mine, Distance, Mining, Reduction, TripletLossConfig};
    /// let device = Device::flex();
    /// let x = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 2.0], [0.0, 3.0]], &device);
    /// let y = Tensor::<1, Int>::from_data([0, 0, 1], &device);
    /// let loss = TripletLossConfig::new().with_margin(1.0).init();
    /// // Mine once, then use the triplets with one's own selection or weighting.
    /// let triplets = mine(Distance::Euclidean.pairwise(x.clone(), x.clone()), y, Mining::SemiHard);
    /// let value: f32 = loss.forward_triplets(x, triplets).into_scalar();
    /// assert_eq!(value, 1.0);
    /// ```
    pub fn forward_triplets(&self, embeddings: Tensor<2>, triplets: Triplets) -> Tensor<1> {
        check_indices(&triplets, embeddings.dims()[0]);
        self.loss_of(embeddings.clone(), embeddings, triplets)
    }

    /// Like [`forward_triplets`](Self::forward_triplets), also returning the statistics of the
    /// given triplets ([`MiningStats`], from their detached distances).
    ///
    /// # Shapes
    /// - `embeddings`: `[batch, dim]`
    /// - `triplets`: `[num_triplets]` row indices into `embeddings`, each
    /// - output: `loss` `[1]`, and `stats`
    ///
    /// # Panics
    /// If an index is negative or not below `batch`.
    pub fn forward_triplets_with_stats(
        &self,
        embeddings: Tensor<2>,
        triplets: Triplets,
    ) -> TripletOutput {
        let host = check_indices(&triplets, embeddings.dims()[0]);
        let dist = read_distances(self.mining_distances(&embeddings));
        self.gathered(embeddings, None, &dist, host)
    }

    /// Per-triplet losses from row-wise distances of the gathered embeddings (anchors from
    /// `queries`, positives and negatives from `refs`), reduced on the device. The gradient
    /// flows through `select` to the rows used, `O(T·dim)` work.
    fn loss_of(&self, queries: Tensor<2>, refs: Tensor<2>, triplets: Triplets) -> Tensor<1> {
        if triplets.is_empty() {
            return zero_in_graph(queries, Some(refs));
        }
        let anchors = queries.select(0, triplets.anchor);
        let positives = refs.clone().select(0, triplets.positive);
        let negatives = refs.select(0, triplets.negative);
        let d_an = self.distance.paired(anchors.clone(), negatives.clone());
        let d_an = self.swapped(d_an, positives.clone(), negatives);
        let d_ap = self.distance.paired(anchors, positives);
        self.reduction.reduce(self.per_triplet(d_ap - d_an))
    }

    /// With [`swap`](TripletLossConfig::swap), the smaller of `d_an` and `d(positives,
    /// negatives)` row by row (the gradient goes to the smaller); else `d_an`.
    fn swapped(&self, d_an: Tensor<1>, positives: Tensor<2>, negatives: Tensor<2>) -> Tensor<1> {
        if self.swap {
            d_an.min_pair(self.distance.paired(positives, negatives))
        } else {
            d_an
        }
    }

    /// The `[B, B]` distance matrix of the detached embeddings: what the miners see.
    fn mining_distances(&self, embeddings: &Tensor<2>) -> Tensor<2> {
        let detached = embeddings.clone().detach();
        self.distance.pairwise(detached.clone(), detached)
    }

    /// The loss of each triplet from `d(a,p) − d(a,n)`.
    fn per_triplet(&self, diff: Tensor<1>) -> Tensor<1> {
        if self.soft {
            softplus(diff)
        } else {
            // relu, not clamp_min: its gradient is 0 at the kink, as PyTorch's and as batch-all's.
            relu(diff.add_scalar(self.margin))
        }
    }

    /// Batch-hard, mined and reduced on the device: one row per anchor, invalid anchors (no
    /// positive or no negative) masked to 0. Nothing is read back unless `want_stats`.
    /// Against `refs` (`None`: the batch), `against` holds their labels and each anchor's own
    /// reference (`-1` for none); with the swap `d(p, n)` is measured between the references.
    pub(crate) fn batch_hard(
        &self,
        queries: Tensor<2>,
        refs: Option<Tensor<2>>,
        labels: Tensor<1, Int>,
        against: Option<(Tensor<1, Int>, Tensor<1, Int>)>,
        want_stats: bool,
    ) -> (Tensor<1>, Option<PendingStats>) {
        let refs = refs.unwrap_or_else(|| queries.clone());
        let dist = self
            .distance
            .pairwise(queries.clone().detach(), refs.clone().detach());
        let non_finite = want_stats.then(|| crate::mining::non_finite(dist.clone()));
        let mined = device::hard(dist, labels, against);
        let positives = refs.clone().select(0, mined.positive);
        let negatives = refs.select(0, mined.negative);
        let d_ap = self.distance.paired(queries.clone(), positives.clone());
        let d_an = self.distance.paired(queries, negatives.clone());
        let d_an = self.swapped(d_an, positives, negatives);
        let valid = mined.valid.float();
        // With the swap, the statistics see the swapped distance (detached), as the loss does.
        let mined_d_an = if self.swap {
            d_an.clone().detach() * valid.clone()
        } else {
            mined.d_an
        };
        let losses = self.per_triplet(d_ap - d_an) * valid.clone();
        let loss = self.reduction.reduce_rows(losses, valid.clone(), self.soft);
        let stats = want_stats.then(|| {
            let diff = mined.d_ap.clone() - mined_d_an.clone();
            let active = if self.soft {
                valid.clone()
            } else {
                diff.add_scalar(self.margin).greater_elem(0.0).float() * valid.clone()
            };
            let sums = Tensor::cat(
                vec![
                    valid.sum(),
                    active.sum(),
                    mined.d_ap.sum(),
                    mined_d_an.sum(),
                    non_finite.expect("counted with the statistics"),
                ],
                0,
            );
            PendingStats::totals(sums)
        });
        (loss, stats)
    }
}

/// `log(1 + eˣ)` without overflow.
///
/// Written as `(x + |x|)/2 + log(1 + e^−|x|)` rather than with `clamp_min`, whose gradient at
/// 0 is 1: this form's slope at 0 is exactly `sigmoid(0) = 0.5`, as the host miner's.
fn softplus(x: Tensor<1>) -> Tensor<1> {
    (x.clone() + x.clone().abs()).mul_scalar(0.5) + x.abs().neg().exp().log1p()
}

/// A zero loss `[1]` that is still connected to the graphs of `embeddings` and `refs`
/// (gradient 0).
pub(crate) fn zero_in_graph(embeddings: Tensor<2>, refs: Option<Tensor<2>>) -> Tensor<1> {
    let zero = embeddings.mul_scalar(0.0).sum();
    match refs {
        Some(refs) => zero + refs.mul_scalar(0.0).sum(),
        None => zero,
    }
}

/// The triplets' indices on the host, each checked to be a row of a batch of `b`.
fn check_indices(triplets: &Triplets, b: usize) -> host::IndexTriplets {
    let t = host::IndexTriplets {
        anchor: read_ints(triplets.anchor.clone()),
        positive: read_ints(triplets.positive.clone()),
        negative: read_ints(triplets.negative.clone()),
    };
    for (name, indices) in [
        ("anchor", &t.anchor),
        ("positive", &t.positive),
        ("negative", &t.negative),
    ] {
        if let Some((i, &bad)) = indices
            .iter()
            .enumerate()
            .find(|&(_, &v)| v < 0 || v as usize >= b)
        {
            panic!(
                "triplet {i} has {name} index {bad}, outside the batch of {b} embeddings \
                 (0..{b})"
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    //! The paths a device or a batch shape selects, against each other on flex: batch-hard on
    //! the device against the host miner, and weighted against gathered host triplets. Loss
    //! values, statistics and gradients must agree (random data: no ties).
    use super::*;

    fn batch(seed: u64, b: usize, classes: i64) -> (Vec<f32>, Vec<i64>) {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        };
        let x = (0..b * 5).map(|_| next()).collect();
        // Label 99 is a singleton: an anchor without positives.
        let y = (0..b as i64)
            .map(|i| if i == 0 { 99 } else { i % classes })
            .collect();
        (x, y)
    }

    type Run<'a> = &'a dyn Fn(&TripletLoss, Tensor<2>, Tensor<1, Int>) -> (Tensor<1>, MiningStats);

    fn agree(name: &str, left: Run, right: Run) {
        let device = Device::flex().autodiff();
        let mut cases = 0;
        for seed in 0..12u64 {
            let (x, y) = batch(seed, 10 + seed as usize % 5, 2 + (seed % 3) as i64);
            for distance in [
                Distance::Euclidean,
                Distance::SquaredEuclidean,
                Distance::Cosine,
            ] {
                for reduction in [Reduction::Mean, Reduction::MeanActive, Reduction::Sum] {
                    for soft in [false, true] {
                        let loss = TripletLossConfig::new()
                            .with_distance(distance)
                            .with_reduction(reduction)
                            .with_soft(soft)
                            .with_margin(0.5)
                            .init();
                        let mut results = Vec::new();
                        for run in [left, right] {
                            let b = y.len();
                            let e =
                                Tensor::<2>::from_data(TensorData::new(x.clone(), [b, 5]), &device)
                                    .require_grad();
                            let l = Tensor::<1, Int>::from_data(
                                TensorData::new(y.clone(), [b]),
                                &device,
                            );
                            let (value, stats) = run(&loss, e.clone(), l);
                            let grad: Vec<f32> = e
                                .grad(&value.backward())
                                .unwrap()
                                .into_data()
                                .try_into_vec_as()
                                .unwrap();
                            let value: f32 = value.into_scalar();
                            results.push((value, stats, grad));
                        }
                        let ((v1, s1, g1), (v2, s2, g2)) = (&results[0], &results[1]);
                        let ctx =
                            format!("{name} seed {seed} {distance:?} {reduction:?} soft={soft}");
                        assert!(
                            (v1 - v2).abs() <= 1e-4 * v1.abs().max(1.0),
                            "{ctx}: {v1} vs {v2}"
                        );
                        assert_eq!(
                            (s1.triplets, s1.active, s1.anchors_with_triplet),
                            (s2.triplets, s2.active, s2.anchors_with_triplet),
                            "{ctx}"
                        );
                        assert!(
                            (s1.mean_d_ap - s2.mean_d_ap).abs() < 1e-5
                                && (s1.mean_d_an - s2.mean_d_an).abs() < 1e-5,
                            "{ctx}"
                        );
                        for (a, b) in g1.iter().zip(g2) {
                            assert!(
                                (a - b).abs() <= 2e-3 * a.abs().max(1.0),
                                "{ctx}: gradient {a} vs {b}"
                            );
                        }
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 12 * 3 * 3 * 2);
    }

    #[test]
    fn batch_hard_on_the_device_agrees_with_the_host_miner() {
        agree(
            "hard",
            &|loss, x, y| {
                let (v, s) = loss.batch_hard(x, None, y, None, true);
                (v, s.unwrap().read())
            },
            &|loss, x, y| loss.mined_on_host(x, y, Mining::Hard, Some(false)),
        );
    }

    #[test]
    fn weighted_and_gathered_host_triplets_agree() {
        for mining in [Mining::SemiHard, Mining::Hard] {
            agree(
                "weighted",
                &move |loss, x, y| loss.mined_on_host(x, y, mining, Some(true)),
                &move |loss, x, y| loss.mined_on_host(x, y, mining, Some(false)),
            );
        }
    }

    #[test]
    fn device_batch_hard_without_triplets_is_zero() {
        let device = Device::flex().autodiff();
        let x =
            Tensor::<2>::from_data([[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &device).require_grad();
        for labels in [[4i64, 4, 4], [1, 2, 3]] {
            for reduction in [Reduction::Mean, Reduction::MeanActive, Reduction::Sum] {
                let loss = TripletLossConfig::new()
                    .with_mining(Mining::Hard)
                    .with_reduction(reduction)
                    .init();
                let y = Tensor::<1, Int>::from_data(labels, &device);
                let (value, stats) = loss.batch_hard(x.clone(), None, y, None, true);
                assert_eq!(stats.unwrap().read().triplets, 0);
                let grad: Vec<f32> = x
                    .grad(&value.clone().backward())
                    .unwrap()
                    .into_data()
                    .try_into_vec_as()
                    .unwrap();
                assert_eq!(value.into_scalar::<f32>(), 0.0);
                assert!(grad.iter().all(|&g| g == 0.0));
            }
        }
    }
}
