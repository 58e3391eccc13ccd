//! Errors reported by [`TripletLossConfig::validate`](crate::TripletLossConfig::validate) and
//! the cross-batch memory's configuration and state.

/// A triplet loss or cross-batch memory configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The margin is negative, NaN or infinite.
    #[error("triplet loss config error: margin must be a finite number >= 0, got {0}")]
    Margin(f64),
    /// A cross-batch memory of no rows.
    #[error("cross-batch memory config error: memory_size must be at least 1, got {0}")]
    MemorySize(usize),
    /// A saved cross-batch memory whose parts do not fit together.
    #[error("cross-batch memory state is inconsistent: {0}")]
    MemoryState(String),
}
