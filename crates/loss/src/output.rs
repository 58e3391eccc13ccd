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

/// The loss and what mining found, the statistics not read back yet, from
/// [`TripletLoss::forward_deferred`](crate::TripletLoss::forward_deferred): a training loop
/// reads the loss value and the statistics in one transfer, when it chooses (after the
/// optimiser step is queued, say), instead of the several waits for the device that
/// `forward_with_stats` and `into_scalar` cost on a GPU.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeferredOutput {
    /// The reduced loss, `[1]`, connected to the graph.
    pub loss: Tensor<1>,
    /// The statistics, on the device where they were mined there.
    pub stats: PendingStats,
}

impl DeferredOutput {
    /// The loss with its statistics read back (one transfer where they are on the device).
    pub fn read(self) -> TripletOutput {
        TripletOutput {
            loss: self.loss,
            stats: self.stats.read(),
        }
    }
}

/// Mining statistics that may still be on the device (see [`DeferredOutput`]).
#[derive(Debug, Clone)]
pub struct PendingStats(Pending);

// One per step: the tensors' size next to `MiningStats` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Pending {
    /// Mined on the host: known already.
    Ready(MiningStats),
    /// `counts` `[2·B]`: triplets, then active triplets, per anchor; `sums` `[3]`: Σ d_ap and
    /// Σ d_an over the triplets, non-finite distances (the CubeCL miners').
    #[cfg(feature = "cube")]
    Rows {
        counts: Tensor<1, Int>,
        sums: Tensor<1>,
        anchors: usize,
    },
    /// `sums` `[5]`: triplets, active triplets, Σ d_ap, Σ d_an, non-finite distances (one
    /// triplet per anchor with one).
    Totals { sums: Tensor<1> },
}

impl PendingStats {
    /// Statistics already on the host.
    pub(crate) fn ready(stats: MiningStats) -> Self {
        Self(Pending::Ready(stats))
    }

    /// Per-anchor counts and sums on the device (see [`Pending::Rows`]).
    #[cfg(feature = "cube")]
    pub(crate) fn rows(counts: Tensor<1, Int>, sums: Tensor<1>, anchors: usize) -> Self {
        Self(Pending::Rows {
            counts,
            sums,
            anchors,
        })
    }

    /// Totals on the device (see [`Pending::Totals`]).
    pub(crate) fn totals(sums: Tensor<1>) -> Self {
        Self(Pending::Totals { sums })
    }

    /// Whether reading them waits for nothing (they were mined on the host).
    pub fn is_ready(&self) -> bool {
        matches!(self.0, Pending::Ready(_))
    }

    /// The statistics, read back (one transfer where they are on the device).
    pub fn read(self) -> MiningStats {
        self.read_with(None).1
    }

    /// The value of `loss` (`[1]`, e.g. [`DeferredOutput::loss`] or a scaled copy of it) and
    /// the statistics, read back together in one transfer.
    ///
    /// # Panics
    /// If `loss` does not hold exactly one value.
    pub fn read_with_loss(self, loss: Tensor<1>) -> (f32, MiningStats) {
        let (value, stats) = self.read_with(Some(loss));
        (value.expect("a loss was given"), stats)
    }

    fn read_with(self, loss: Option<Tensor<1>>) -> (Option<f32>, MiningStats) {
        let mut read = burn::tensor::Transaction::default();
        let has_loss = loss.is_some();
        if let Some(loss) = loss {
            assert_eq!(loss.dims(), [1], "the loss holds one value");
            read = read.register(loss.detach());
        }
        match &self.0 {
            Pending::Ready(_) => {}
            #[cfg(feature = "cube")]
            Pending::Rows { counts, sums, .. } => {
                read = read.register(counts.clone()).register(sums.clone());
            }
            Pending::Totals { sums } => {
                read = read.register(sums.clone());
            }
        }
        let data = if has_loss || !self.is_ready() {
            read.execute()
        } else {
            Vec::new()
        };
        let mut data = data.into_iter();
        let value = has_loss.then(|| {
            let v: Vec<f32> = data
                .next()
                .expect("the loss was read")
                .try_into_vec_as()
                .expect("the loss converts to f32");
            v[0]
        });
        let floats = |d: TensorData| -> Vec<f64> { d.try_into_vec_as().expect("f64 stats") };
        let stats = match self.0 {
            Pending::Ready(stats) => stats,
            #[cfg(feature = "cube")]
            Pending::Rows { anchors, .. } => {
                let counts: Vec<i64> = data
                    .next()
                    .expect("the counts were read")
                    .try_into_vec_as()
                    .expect("counts convert to i64");
                let sums = floats(data.next().expect("the sums were read"));
                let (triplets, active) = counts.split_at(anchors);
                MiningStats::from(crate::mining::host::HostStats {
                    triplets: triplets.iter().map(|&c| c as u64).sum(),
                    active: active.iter().map(|&c| c as u64).sum(),
                    anchors_with_triplet: triplets.iter().filter(|&&c| c > 0).count() as u64,
                    sum_d_ap: sums[0],
                    sum_d_an: sums[1],
                    non_finite: sums[2].round() as u64,
                })
            }
            Pending::Totals { .. } => {
                let sums = floats(data.next().expect("the sums were read"));
                let triplets = sums[0].round() as u64;
                MiningStats::from(crate::mining::host::HostStats {
                    triplets,
                    active: sums[1].round() as u64,
                    anchors_with_triplet: triplets,
                    sum_d_ap: sums[2],
                    sum_d_an: sums[3],
                    non_finite: sums[4].round() as u64,
                })
            }
        };
        (value, stats)
    }
}
