//! Evaluation: embedding image sets, exact nearest neighbours on a device, retrieval,
//! clustering, verification and re-identification metrics, searching a gallery with a trained
//! model, embedding exports and plots.

pub mod applications;
pub mod clustering;
pub mod command;
pub mod embed;
pub mod export;
pub mod knn;
pub mod metrics;
pub mod pairs;
pub mod plot;
pub mod reid;
pub mod search;
pub mod verification;
