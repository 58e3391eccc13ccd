//! Evaluation: embedding image sets, exact nearest neighbours on a device, retrieval metrics,
//! embedding exports and plots.

pub mod command;
pub mod embed;
pub mod export;
pub mod knn;
pub mod metrics;
pub mod plot;
