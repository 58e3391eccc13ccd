//! Evaluation: retrieval metrics over embeddings.

pub mod metrics;
