//! Mining and the loss against reference embeddings (pytorch-metric-learning's `ref_emb` /
//! `ref_labels`): anchors from the batch, positives and negatives from another set.

use burn::prelude::*;

use crate::mining::{
    Mining, PML_MINER_MARGIN, assert_finite, host, mine_host, mines_faster_on_host, read_distances,
    read_ints,
};
use crate::output::{DeferredOutput, PendingStats, TripletOutput};
use crate::triplet::TripletLoss;
use crate::triplets::Triplets;

/// Reference embeddings and their labels, which a batch's anchors are mined against
/// (pytorch-metric-learning's `ref_emb` and `ref_labels`): positives are the references with the
/// anchor's label, negatives those with another. Every reference counts, so a reference that is
/// a copy of the anchor is one of its positives; [`CrossBatchMemory`](crate::CrossBatchMemory)
/// leaves out the copies it holds of its batch, as PML's does.
///
/// Gradients flow to the references too where they are attached to a graph; detach them (as a
/// memory bank does) to train through the anchors only.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct References {
    /// `[M, dim]`.
    pub embeddings: Tensor<2>,
    /// `[M]`, any integer values.
    pub labels: Tensor<1, Int>,
}

impl References {
    /// References from embeddings and labels.
    ///
    /// # Panics
    /// If `labels` does not have one entry per embedding.
    pub fn new(embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Self {
        let ([m, _], [n]) = (embeddings.dims(), labels.dims());
        assert_eq!(
            n, m,
            "reference labels have {n} entries for {m} reference embeddings"
        );
        Self { embeddings, labels }
    }

    /// The number of references.
    pub fn len(&self) -> usize {
        self.embeddings.dims()[0]
    }

    /// Whether there is no reference.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TripletLoss {
    /// The loss of a batch's anchors against reference embeddings: triplets `(a, p, n)` with `a`
    /// a row of `embeddings` and `p`, `n` rows of the references, mined from the detached
    /// `[batch, M]` distances with the configured rule (on the device where the batch is: see
    /// the crate docs; else on the host), and reduced as
    /// [`forward`](Self::forward) does. Nothing `M×M` is formed: memory is `O(batch·M)` for
    /// batch-all (reduced to weights), batch-hard and semi-hard, and for
    /// [`Mining::PmlSemiHard`] on the device; on the host, `O(T)` for the triplets that
    /// PML's band keeps, and with the swap every mined triplet is gathered (`O(T·dim)`, and
    /// batch-all's `T = batch·|P|·|N|` grows with `M`).
    ///
    /// With [`swap`](crate::TripletLossConfig::swap), `d(p, n)` is measured between the two
    /// references. (pytorch-metric-learning 2.9 reads it from the query-by-reference matrix,
    /// which is wrong with references, so it is not compared with PML there.)
    ///
    /// # Shapes
    /// - `embeddings`: `[batch, dim]`, `labels`: `[batch]`
    /// - `refs`: `[M, dim]` and `[M]`
    /// - output: `[1]`
    ///
    /// # Panics
    /// If `labels` does not have one entry per embedding, or the dimensions differ.
    ///
    /// # Example
    /// ```
    /// # use burn::prelude::*; use triplet_loss::{Mining, References, TripletLossConfig};
    /// let device = Device::flex();
    /// let x = Tensor::<2>::from_data([[0.0, 0.0]], &device);
    /// let y = Tensor::<1, Int>::from_data([0], &device);
    /// let refs = References::new(
    ///     Tensor::<2>::from_data([[0.0, 2.0], [0.0, 3.0]], &device),
    ///     Tensor::<1, Int>::from_data([0, 1], &device),
    /// );
    /// let loss = TripletLossConfig::new().with_margin(1.0).with_mining(Mining::All).init();
    /// // One triplet: d(a, p) = 2, d(a, n) = 3, loss max(2 − 3 + 1, 0) = 0.
    /// let value: f32 = loss.forward_refs(x, y, refs).into_scalar();
    /// assert_eq!(value, 0.0);
    /// ```
    pub fn forward_refs(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        refs: References,
    ) -> Tensor<1> {
        self.forward_refs_with_stats(embeddings, labels, refs).loss
    }

    /// Like [`forward_refs`](Self::forward_refs), also returning what mining found
    /// ([`MiningStats`](crate::MiningStats) over the `[batch, M]` distances).
    ///
    /// # Shapes
    /// As [`forward_refs`](Self::forward_refs); output: `loss` `[1]`, and `stats`.
    ///
    /// # Panics
    /// As [`forward_refs`](Self::forward_refs).
    pub fn forward_refs_with_stats(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        refs: References,
    ) -> TripletOutput {
        let own = vec![None; embeddings.dims()[0]];
        self.against(embeddings, labels, refs.embeddings, refs.labels, own)
            .read()
    }

    /// The loss of `embeddings` labelled `labels` against `refs` labelled `ref_labels`, where
    /// `own[a]` is the reference that holds anchor `a` itself (never its positive): on the
    /// device where [`mines_against_on_device`](Self::mines_against_on_device) says so,
    /// else on the host (the labels and the `B×M` distances read back).
    pub(crate) fn against(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        refs: Tensor<2>,
        ref_labels: Tensor<1, Int>,
        own: Vec<Option<u32>>,
    ) -> DeferredOutput {
        check_shapes(&embeddings, labels.dims()[0], &refs, ref_labels.dims()[0]);
        let device = embeddings.device();
        if self.mines_against_on_device(&device) {
            let own: Vec<i64> = own.iter().map(|o| o.map_or(-1, i64::from)).collect();
            let n = own.len();
            let own = Tensor::<1, Int>::from_data(TensorData::new(own, [n]), &device);
            return self.against_on_device(embeddings, labels, refs, ref_labels, own);
        }
        let (labels, ref_labels) = (read_ints(labels), read_ints(ref_labels));
        let dist = self
            .distance()
            .pairwise(embeddings.clone().detach(), refs.clone().detach());
        let dist = read_distances(dist);
        let classes = host::Classes::against(&labels, &ref_labels, own);
        let out = self.host_mined(embeddings, Some(refs), &dist, &classes, self.mining(), None);
        DeferredOutput {
            loss: out.loss,
            stats: PendingStats::ready(out.stats),
        }
    }

    /// Whether this loss mines against references on `device` without reading the distances
    /// back: batch-hard on every device but Burn's CPU backends (whose host miner is faster);
    /// the other rules on CubeCL devices (features `wgpu`, `cuda`) without the swap, whose
    /// `d(p, n)` between two references is not in the `B×M` matrix.
    fn mines_against_on_device(&self, device: &Device) -> bool {
        match self.mining() {
            Mining::Hard => !mines_faster_on_host(device),
            #[cfg(feature = "cube")]
            _ => !self.swaps() && crate::mining::mines_on_cube(device),
            #[cfg(not(feature = "cube"))]
            _ => false,
        }
    }

    /// The loss against references mined on the device (where
    /// [`mines_against_on_device`](Self::mines_against_on_device) says so). `own`: `[B]`,
    /// each anchor's own reference or `-1`.
    fn against_on_device(
        &self,
        queries: Tensor<2>,
        labels: Tensor<1, Int>,
        refs: Tensor<2>,
        ref_labels: Tensor<1, Int>,
        own: Tensor<1, Int>,
    ) -> DeferredOutput {
        let refs = Some(refs);
        let (loss, stats) = match self.mining() {
            Mining::Hard => self.batch_hard(queries, refs, labels, Some((ref_labels, own)), true),
            #[cfg(feature = "cube")]
            mining => {
                let labels = crate::mining::cube::DeviceLabels::against(labels, ref_labels, own);
                if mining == Mining::SemiHard {
                    self.semi_hard_on_device(queries, refs, &labels, true)
                } else {
                    self.weighted_on_device(queries, refs, &labels, true)
                }
            }
            #[cfg(not(feature = "cube"))]
            _ => unreachable!("only batch-hard mines against references without `cube`"),
        };
        DeferredOutput {
            loss,
            stats: stats.expect("statistics were asked for"),
        }
    }
}

/// Panics naming the shapes unless the labels match the embeddings and the dimensions agree.
fn check_shapes(embeddings: &Tensor<2>, n: usize, refs: &Tensor<2>, ref_n: usize) {
    let ([b, dim], [m, ref_dim]) = (embeddings.dims(), refs.dims());
    assert_eq!(n, b, "labels have {n} entries for {b} embeddings");
    assert_eq!(
        dim, ref_dim,
        "the embeddings are {dim}-d and the references {ref_dim}-d"
    );
    assert_eq!(
        ref_n, m,
        "reference labels have {ref_n} entries for {m} reference embeddings"
    );
}

/// Mines triplets of a batch's anchors against references, from their distance matrix: `a`
/// indexes the rows (the batch), `p` and `n` the columns (the references). The references'
/// copy of an anchor, if any, is a positive like any other (see [`References`]).
/// [`Mining::PmlSemiHard`] gets PML's default margin, as with [`mine`](crate::mine).
///
/// # Shapes
/// - `dist`: `[batch, M]`, smaller = closer (e.g. `Distance::pairwise(x, refs)`)
/// - `labels`: `[batch]`, `ref_labels`: `[M]`
/// - output: three `[num_triplets]` index tensors, ordered by anchor, positive, negative
///
/// # Panics
/// If the labels do not match `dist`'s rows and columns, or `dist` holds a NaN or an
/// infinity.
pub fn mine_refs(
    dist: Tensor<2>,
    labels: Tensor<1, Int>,
    ref_labels: Tensor<1, Int>,
    mining: Mining,
) -> Triplets {
    mine_refs_with_margin(dist, labels, ref_labels, mining, PML_MINER_MARGIN)
}

/// [`mine_refs`] with the band's margin for [`Mining::PmlSemiHard`].
///
/// # Panics
/// As [`mine_refs`].
pub fn mine_refs_with_margin(
    dist: Tensor<2>,
    labels: Tensor<1, Int>,
    ref_labels: Tensor<1, Int>,
    mining: Mining,
    margin: f64,
) -> Triplets {
    let device = dist.device();
    let ([b, m], [n], [r]) = (dist.dims(), labels.dims(), ref_labels.dims());
    assert_eq!(
        n, b,
        "labels have {n} entries for {b} rows of the distance matrix"
    );
    assert_eq!(
        r, m,
        "reference labels have {r} entries for {m} columns of the distance matrix"
    );
    let dist = read_distances(dist);
    assert_finite(&dist);
    let classes = host::Classes::against(&read_ints(labels), &read_ints(ref_labels), vec![None; b]);
    mine_host(&dist, &classes, mining, margin).into_tensors(&device)
}
