//! A model's weights as bytes (a Burn record, `model.bpk`), both ways: what a checkpoint or the
//! final model file holds, and loading it into a model built from the run's config.

use anyhow::{Context, Result};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use triplet_model::EmbeddingModel;

/// Why weights did not load.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The bytes are not a whole record (a truncated or foreign file).
    #[error("model.bpk is not a complete model record ({0})")]
    Incomplete(String),
    /// A whole record, but for another model (architecture, input channels, embedding size).
    #[error("{0}")]
    Mismatch(String),
}

/// The record of `bytes`, without creating any tensor (no device is touched).
pub fn decode(bytes: Vec<u8>) -> Result<ModuleRecord, WeightsError> {
    ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| WeightsError::Incomplete(e.to_string()))
}

/// `model` with the weights of `bytes`, cast to the model's float type.
pub fn load(model: EmbeddingModel, bytes: Vec<u8>) -> Result<EmbeddingModel, WeightsError> {
    model
        .try_load_record(decode(bytes)?.cast_to_module_dtype())
        .map_err(|e| WeightsError::Mismatch(e.to_string()))
}

/// The weights of `model` (parameters and BatchNorm running statistics) as bytes.
pub fn to_bytes(model: &EmbeddingModel) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("serialising the model")?;
    Ok(bytes.to_vec())
}
