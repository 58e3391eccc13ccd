//! `[train]`: epochs, seed, checkpoints, validation, logging and the float type.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs. Default: 10.
    pub epochs: u64,
    /// Seed of the initial weights, the sampler and the augmentation. Default: 0.
    pub seed: u64,
    /// Also checkpoint every N steps (0: only at the end of each epoch). Default: 0.
    pub checkpoint_every_steps: u64,
    /// Checkpoints kept (the newest ones). Default: 2.
    pub keep_checkpoints: usize,
    /// A progress line every N steps when the output is not a terminal. Default: 20.
    pub log_every_steps: u64,
    /// Images per forward pass when embedding the evaluation split. Default: 256.
    pub eval_batch: usize,
    /// Validate on the evaluation split every N epochs, and after the last: P@1, Recall@K,
    /// R-Precision and MAP@R (leave-one-out); the checkpoint with the best MAP@R is kept as
    /// `checkpoints/best`. 0: evaluate only at the end. Default: 1.
    pub validate_every_epochs: u64,
    /// Stop after N validations without a better MAP@R (0: never). Default: 0.
    pub early_stopping_patience: u64,
    /// Write `curves.png` and `embeddings_pca.png` into the run folder at the end. Default:
    /// true.
    pub plots: bool,
    /// Float type of the forward and backward: `f32`, or `f16` / `bf16` (mixed precision,
    /// where the device supports them): weights, optimiser state and checkpoints stay f32,
    /// BatchNorm, the embeddings and the loss run in f32. Default: `f32`.
    pub precision: Precision,
    /// The initial loss scale of an f16 run (dynamic: halved when the gradients overflow,
    /// doubled after 2000 steps without). Default: 65536, as PyTorch's `GradScaler`.
    pub loss_scale: f64,
}

/// Float types a run can train in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "f16" | "fp16" | "half" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!(
                "unknown precision `{other}`; expected f32, f16 or bf16"
            )),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            seed: 0,
            checkpoint_every_steps: 0,
            keep_checkpoints: 2,
            log_every_steps: 20,
            eval_batch: 256,
            validate_every_epochs: 1,
            early_stopping_patience: 0,
            plots: true,
            precision: Precision::F32,
            loss_scale: 65536.0,
        }
    }
}

impl TrainConfig {
    /// Checks `[train]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::value(field, problem));
        if self.epochs == 0 {
            return bad("train.epochs", "must be at least 1, got 0".into());
        }
        if self.keep_checkpoints == 0 {
            return bad("train.keep_checkpoints", "must be at least 1, got 0".into());
        }
        if self.eval_batch == 0 {
            return bad("train.eval_batch", "must be at least 1, got 0".into());
        }
        if !(self.loss_scale.is_finite() && self.loss_scale >= crate::train::amp::MIN_LOSS_SCALE) {
            return bad(
                "train.loss_scale",
                format!(
                    "must be a number of at least {}, got {}",
                    crate::train::amp::MIN_LOSS_SCALE,
                    self.loss_scale
                ),
            );
        }
        if self.early_stopping_patience > 0 && self.validate_every_epochs == 0 {
            return bad(
                "train.early_stopping_patience",
                "needs validation: set train.validate_every_epochs to at least 1".into(),
            );
        }
        Ok(())
    }
}
