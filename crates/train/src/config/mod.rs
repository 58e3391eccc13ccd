//! The experiment config: commented TOML with a section per concern (`[data]`, `[model]`,
//! `[loss]`, `[optimizer]`, `[schedule]`, `[sampler]`, `[augment]`, `[train]`).
//!
//! Every field has a default, so an empty file (or no file) is a valid experiment; a file only
//! lists what it changes. Unknown fields are errors, so a typo never silently keeps a default.
//! [`ExperimentConfig::validate`] checks the values once, before anything runs.

use std::path::{Path, PathBuf};

mod data;
mod loss;
mod model;
mod optim;
mod train;

use serde::{Deserialize, Serialize};
use triplet_loss::TripletLossConfig;
use triplet_model::EmbeddingModelConfig;

pub use data::{AugmentConfig, DataConfig, ResizeKind, SamplerConfig, SplitKind};
pub use loss::{DistanceKind, LossConfig, MiningKind, ReductionKind};
pub use model::{BackboneKind, IMAGENET_MEAN, IMAGENET_STD, ModelConfig};
pub use optim::{OptimizerConfig, OptimizerKind, ScheduleConfig, ScheduleKind};
pub use train::{Precision, TrainConfig};

/// A config that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown field or a value of the wrong type.
    #[error("invalid config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line, column, field).
        message: String,
    },
    /// A field has a value out of range.
    #[error("invalid config{}: {field} {problem}", source_of(.path))]
    Value {
        /// The file, when the config came from one.
        path: Option<PathBuf>,
        /// `section.field`.
        field: &'static str,
        /// What is wrong, with the value.
        problem: String,
    },
}

fn source_of(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// A config enum as written in the TOML (`semi-hard`, not `SemiHard`).
pub(crate) fn toml_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The whole experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Where the images come from and how they are split and shaped.
    pub data: DataConfig,
    /// The embedding network.
    pub model: ModelConfig,
    /// The triplet loss.
    pub loss: LossConfig,
    /// The optimiser.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// P×K batches.
    pub sampler: SamplerConfig,
    /// Training-time augmentation (never applied at evaluation).
    pub augment: AugmentConfig,
    /// Epochs, seed, checkpoints and logging.
    pub train: TrainConfig,
}

impl ExperimentConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// Parses TOML text (not validated). The error is one line: where (line, column, section
    /// and the line's text) and what.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().replace('\n', " ");
            let Some(span) = e.span() else {
                return message;
            };
            let start = span.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_no = text[..start].matches('\n').count() + 1;
            let column = text[line_start..start].chars().count() + 1;
            let line = text[line_start..].lines().next().unwrap_or("").trim();
            let section = text[..line_start]
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .map(|l| format!(" in {}", l.split('#').next().unwrap_or(l).trim()))
                .unwrap_or_default();
            format!("line {line_no}, column {column}{section} (`{line}`): {message}")
        })
    }

    /// The config as TOML, as saved in a run folder.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config types serialise to TOML")
    }

    /// Checks every value, section by section; the first problem is returned with its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.data.validate()?;
        self.model.validate()?;
        self.loss.validate()?;
        self.optimizer.validate()?;
        self.schedule.validate(self.optimizer.lr)?;
        self.sampler.validate()?;
        self.augment.validate()?;
        self.train.validate()
    }

    /// The loss this config describes.
    pub fn loss(&self) -> TripletLossConfig {
        self.loss.triplet_loss()
    }

    /// The model this config describes, for `channels` input channels.
    pub fn model(&self, channels: usize) -> EmbeddingModelConfig {
        self.model.embedding_model(channels)
    }
}

impl ConfigError {
    /// A value out of range in `field`.
    pub(crate) fn value(field: &'static str, problem: String) -> Self {
        ConfigError::Value {
            path: None,
            field,
            problem,
        }
    }

    fn in_file(self, file: &Path) -> Self {
        match self {
            ConfigError::Value { field, problem, .. } => ConfigError::Value {
                path: Some(file.to_owned()),
                field,
                problem,
            },
            other => other,
        }
    }
}
