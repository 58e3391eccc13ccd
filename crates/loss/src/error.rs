//! Errors reported by [`TripletLossConfig::validate`](crate::TripletLossConfig::validate).

/// A triplet loss configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The margin is negative, NaN or infinite.
    #[error("triplet loss config error: margin must be a finite number >= 0, got {0}")]
    Margin(f64),
}
