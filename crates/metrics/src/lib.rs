//! Metrics of embedding models over rows of vectors, as pytorch-metric-learning, scikit-learn
//! and the re-identification benchmarks define them, with the exact nearest neighbours they
//! rank by computed on any Burn device.
//!
//! # Brief overview
//! Embeddings come as [`Rows`] (borrowed; [`RowsBuf`] owns them): `len × dim` values, the
//! dimension carried with them. Labels are one `usize` per row, compared by value.
//! - [`retrieval`]: P@1, Recall@K, R-Precision, MAP@R, MAP and MRR, leave-one-out or queries
//!   against references (Musgrave et al., "A Metric Learning Reality Check").
//! - [`clustering`]: k-means with k = the number of classes, then NMI and AMI.
//! - [`verification`](verification::verification): ROC, AUC, TAR@FAR, LFW's 10-fold accuracy and
//!   the best threshold, over pairs drawn from labels or given.
//! - [`reid`]: CMC rank-1/5/10 and mAP of a query/gallery split, with Market-1501's
//!   same-camera exclusion.
//! - [`knn`]: the exact nearest neighbours all of them use: blocks of query rows against the
//!   references by one matrix product each on the device, never the whole distance matrix;
//!   ties ranked by index. [`nearest`] searches a large gallery.
//!
//! Each metric is checked against its reference implementation in this crate's tests (fixtures
//! from `scripts/pml_retrieval_golden.py` and `scripts/applications_golden.py`).
//!
//! # Example
//! ```
//! use burn::tensor::Device;
//! use triplet_loss::Distance;
//! use triplet_metrics::{Rows, retrieval};
//!
//! // Two tight classes on a line: every item's nearest neighbour is of its class.
//! let x = [0.0, 0.1, 5.0, 5.1];
//! let labels = [0, 0, 1, 1];
//! let m = retrieval(Rows::new(&x, 1), &labels, None, Distance::Euclidean, &Device::flex())?;
//! assert_eq!((m.precision_at_1, m.map_at_r, m.queries), (1.0, 1.0, 4));
//! # Ok::<(), triplet_metrics::KnnError>(())
//! ```
#![deny(missing_docs)]

mod clustering;
pub mod knn;
mod reid;
mod retrieval;
mod rng;
mod rows;
pub mod verification;

pub use crate::clustering::{
    Clustering, KMeans, MAX_ITERATIONS, RESTARTS, ami, clustering, kmeans, nmi,
};
pub use crate::knn::{KnnError, exact_distance, nearest};
pub use crate::reid::{CMC_AT, Reid, Split, reid};
pub use crate::retrieval::{RECALL_AT, Ranks, Retrieval, ranks, retrieval, retrieval_per_query};
pub use crate::rng::SplitMix64;
pub use crate::rows::{Rows, RowsBuf, RowsError};
pub use crate::verification::{Roc, Verification};

/// The CPU device the unit tests compute on.
#[cfg(test)]
pub(crate) fn test_device() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
