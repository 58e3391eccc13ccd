//! What an index is: the vectors' dimension and distance, the model that made them, and the
//! HNSW graph's parameters (`index.json`, written once when the index is made).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};

/// The distance between vectors, as the model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `‖a − b‖₂`.
    Euclidean,
    /// `‖a − b‖₂²`.
    SquaredEuclidean,
    /// `1 − a·b / (‖a‖ ‖b‖)`; a zero vector is at distance 1 from everything.
    Cosine,
}

impl Metric {
    /// The name used in configs and JSON (`euclidean`, `squared_euclidean`, `cosine`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::SquaredEuclidean => "squared_euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "euclidean" => Ok(Metric::Euclidean),
            "squared_euclidean" => Ok(Metric::SquaredEuclidean),
            "cosine" => Ok(Metric::Cosine),
            other => Err(format!(
                "unknown distance `{other}` (euclidean, squared_euclidean, cosine)"
            )),
        }
    }
}

/// The model whose embeddings the index holds. Two models are the same when their `key`s are:
/// an index refuses vectors, and searches, from any other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// What identifies the model: for Triplet, a checksum of its weights file with the
    /// embedding's dimension and distance.
    pub key: String,
    /// Anything else worth keeping about it (the run's `embed.json`: checkpoint, dimension,
    /// distance), shown by `triplet index info`.
    pub info: serde_json::Value,
}

/// The HNSW graph's parameters, as faiss's `IndexHNSWFlat` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Neighbours per node (faiss's `M`).
    pub connectivity: usize,
    /// Candidates kept while inserting (faiss's `efConstruction`).
    pub expansion_add: usize,
    /// Candidates kept while searching (faiss's `efSearch`); a search for more than this many
    /// neighbours keeps `k`.
    pub expansion_search: usize,
    /// Galleries of at most this many items are searched exactly even when approximate
    /// search is asked for "auto": exact is then fast and never misses.
    pub exact_below: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        Self {
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 64,
            exact_below: 10_000,
        }
    }
}

/// Everything fixed when an index is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSpec {
    /// Values per vector.
    pub dim: usize,
    /// The distance searches rank by.
    pub metric: Metric,
    /// The model that embeds what the index holds.
    pub model: Model,
    /// The graph's parameters.
    #[serde(default)]
    pub ann: AnnParams,
}

impl IndexSpec {
    /// Checks the values: a dimension of at least 1, graph parameters of at least 2.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(IndexError::Invalid(
                "an index needs vectors of 1 value or more".into(),
            ));
        }
        if self.ann.connectivity < 2 || self.ann.expansion_add < 2 || self.ann.expansion_search < 1
        {
            return Err(IndexError::Invalid(format!(
                "HNSW parameters: connectivity {} and expansion_add {} must be 2 or more, \
                 expansion_search {} 1 or more",
                self.ann.connectivity, self.ann.expansion_add, self.ann.expansion_search
            )));
        }
        if self.model.key.is_empty() {
            return Err(IndexError::Invalid("the model's key is empty".into()));
        }
        Ok(())
    }
}

/// What an item is besides its vector: where it came from, its class, other columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The image it was embedded from (as given: a path, or `file.idx#row`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its class or identity, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Other values, such as a CSV list's other columns.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// An item of the index: its id and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Given by the index when the item is added, never reused.
    pub id: u64,
    /// Its metadata.
    #[serde(flatten)]
    pub meta: Meta,
}
