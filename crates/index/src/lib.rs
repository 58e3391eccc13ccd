//! A persistent embedding index: vectors with ids and metadata (path, label, other columns),
//! the model that made them, exact search and approximate search through an HNSW graph
//! (`usearch`), kept in a folder where adds and removals are atomic: a kill at any moment
//! leaves the index as it was before the change or after it, never unreadable.
//!
//! No Burn and no image code: the vectors come from anywhere. `triplet index` and
//! `triplet serve` embed images with a trained model and keep them here.
//!
//! ```no_run
//! use triplet_index::{Index, IndexSpec, Meta, Metric, Model, SearchMode};
//! # fn main() -> Result<(), triplet_index::IndexError> {
//! let spec = IndexSpec {
//!     dim: 2,
//!     metric: Metric::Euclidean,
//!     model: Model { key: "my-model".into(), info: serde_json::Value::Null },
//!     ann: Default::default(),
//! };
//! let meta = |label: &str| Meta { label: Some(label.into()), ..Meta::default() };
//! let mut index = Index::build(
//!     "faces".as_ref(),
//!     spec,
//!     &[0.0, 1.0, 1.0, 0.0],
//!     vec![meta("alice"), meta("bob")],
//! )?;
//! let ids = index.add(vec![(vec![0.9, 0.1], meta("bob"))])?; // on the disk when it returns
//! let hits = index.search(&[1.0, 0.0], 2, SearchMode::Auto)?;
//! assert_eq!(index.get(hits[0].id).unwrap().0.meta.label.as_deref(), Some("bob"));
//! index.remove(&ids)?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`spec`] (what an index is: dimension, metric, model, graph parameters; items and
//! their metadata), [`index`] (the folder and the index in memory), and inside, the change log,
//! exact search and the graph.

mod ann;
pub mod error;
mod exact;
pub mod index;
mod log;
pub mod spec;

pub use error::{IndexError, Result};
pub use exact::distance;
pub use index::{Hit, Index, SearchMode};
pub use spec::{AnnParams, IndexSpec, Item, Meta, Metric, Model};
