//! `[loss]`: the triplet loss, as the loss crate's [`TripletLossConfig`] describes it; the
//! config's names for its options convert into the crate's types.

use serde::{Deserialize, Serialize};
use triplet_loss::{CrossBatchMemoryConfig, Distance, Mining, Reduction, TripletLossConfig};

use super::ConfigError;

/// Distances, as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DistanceKind {
    /// `‖a − b‖`.
    Euclidean,
    /// `‖a − b‖²`.
    SquaredEuclidean,
    /// `1 − cos(a, b)`.
    Cosine,
}

/// Mining strategies, as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MiningKind {
    /// Every valid triplet.
    All,
    /// Hardest positive and negative per anchor.
    Hard,
    /// FaceNet's semi-hard negatives.
    SemiHard,
    /// pytorch-metric-learning's "semihard" miner: every triplet with
    /// `0 < d_an − d_ap ≤ margin` (not FaceNet's rule; for reproducing PML runs).
    PmlSemiHard,
}

/// Reductions, as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReductionKind {
    /// Mean over mined triplets.
    Mean,
    /// Mean over triplets with a positive loss.
    MeanActive,
    /// Sum.
    Sum,
}

/// `[loss]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Margin α. Default: 0.2.
    pub margin: f64,
    /// Default: `euclidean`.
    pub distance: DistanceKind,
    /// Default: `semi-hard`.
    pub mining: MiningKind,
    /// Default: `mean`.
    pub reduction: ReductionKind,
    /// Soft margin (softplus) instead of the hinge. Default: false.
    pub soft: bool,
    /// Anchor swap: the negative's distance is the smaller of `d(a,n)` and `d(p,n)`
    /// (PyTorch's and PML's `swap=True`). Default: false.
    pub swap: bool,
    /// Cross-batch memory (XBM, PML's `CrossBatchMemory`): each batch's anchors are mined
    /// against the last `memory_size` training embeddings (detached), the batch's own
    /// included. At least one batch (P×K), at most the training images; one device only, no
    /// `swap`. Default: 0, no memory.
    pub memory_size: usize,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            margin: 0.2,
            distance: DistanceKind::Euclidean,
            mining: MiningKind::SemiHard,
            reduction: ReductionKind::Mean,
            soft: false,
            swap: false,
            memory_size: 0,
        }
    }
}

impl From<DistanceKind> for Distance {
    fn from(kind: DistanceKind) -> Self {
        match kind {
            DistanceKind::Euclidean => Distance::Euclidean,
            DistanceKind::SquaredEuclidean => Distance::SquaredEuclidean,
            DistanceKind::Cosine => Distance::Cosine,
        }
    }
}

impl From<MiningKind> for Mining {
    fn from(kind: MiningKind) -> Self {
        match kind {
            MiningKind::All => Mining::All,
            MiningKind::Hard => Mining::Hard,
            MiningKind::SemiHard => Mining::SemiHard,
            MiningKind::PmlSemiHard => Mining::PmlSemiHard,
        }
    }
}

impl From<ReductionKind> for Reduction {
    fn from(kind: ReductionKind) -> Self {
        match kind {
            ReductionKind::Mean => Reduction::Mean,
            ReductionKind::MeanActive => Reduction::MeanActive,
            ReductionKind::Sum => Reduction::Sum,
        }
    }
}

impl LossConfig {
    /// The loss crate's config of this section.
    pub fn triplet_loss(&self) -> TripletLossConfig {
        TripletLossConfig::new()
            .with_margin(self.margin)
            .with_soft(self.soft)
            .with_swap(self.swap)
            .with_distance(self.distance.into())
            .with_mining(self.mining.into())
            .with_reduction(self.reduction.into())
    }

    /// Checks `[loss]` as the loss crate does ([`TripletLossConfig::validate`]), naming the
    /// field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.triplet_loss().validate().map_err(|e| match e {
            triplet_loss::ConfigError::Margin(margin) => ConfigError::value(
                "loss.margin",
                format!("must be finite and >= 0, got {margin}"),
            ),
            other => ConfigError::value("loss", other.to_string()),
        })
    }

    /// The cross-batch memory this section asks for, if any.
    pub fn memory(&self) -> Option<CrossBatchMemoryConfig> {
        (self.memory_size > 0)
            .then(|| CrossBatchMemoryConfig::new().with_memory_size(self.memory_size))
    }
}

#[cfg(test)]
mod tests {
    use super::super::ExperimentConfig;
    use super::*;

    #[test]
    fn the_config_names_reach_the_loss_crate() {
        let config = ExperimentConfig::from_toml(
            "[loss]\nmining = \"pml-semi-hard\"\nswap = true\ndistance = \"cosine\"\n\
             reduction = \"mean-active\"\nmargin = 0.05\n",
        )
        .unwrap();
        let loss = config.loss();
        assert_eq!(
            (loss.mining, loss.distance, loss.reduction, loss.swap),
            (
                Mining::PmlSemiHard,
                Distance::Cosine,
                Reduction::MeanActive,
                true
            )
        );
        assert_eq!(loss.margin, 0.05);
        // The margin is checked by the loss crate, and named as the config's field.
        let bad = ExperimentConfig::from_toml("[loss]\nmargin = -1.0\n").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid config: loss.margin must be finite and >= 0, got -1"
        );
    }
}
