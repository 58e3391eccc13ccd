//! The run folder, one concept below training and evaluation: `triplet train` writes it,
//! `triplet eval`, `embed` and `export` read it, and its layout is spelled here only.
//!
//! ```text
//! <run>/config.toml         the run's config, with the input it resolved
//! <run>/metrics.jsonl       one record per step, epoch, validation and evaluation (metrics)
//! <run>/model.bpk           the final model
//! <run>/curves.png          loss, active triplets and validation MAP@R (when plots are on)
//! <run>/embeddings_pca.png  a PCA map of the evaluation split's embeddings
//! <run>/checkpoints/step-N/ model.bpk, optimizer.bpk, config.toml, state.json (checkpoint)
//! <run>/checkpoints/latest  the name of the newest checkpoint
//! <run>/checkpoints/best    the name of the checkpoint with the best validation MAP@R
//! ```

pub mod checkpoint;
pub mod memory;
pub mod metrics;
pub mod state;
pub mod trained;
pub mod weights;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::files::write_atomic;

/// A model's config file, in a run folder and in each checkpoint.
pub const CONFIG_FILE: &str = "config.toml";
/// A model's weights (a Burn record), in a run folder and in each checkpoint.
pub const MODEL_FILE: &str = "model.bpk";
/// The folder of a run's checkpoints.
pub const CHECKPOINTS: &str = "checkpoints";

/// A run folder (`triplet train --out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run folder at `path` (nothing is read or created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The run folder that the folder `dir` belongs to: the run itself for a checkpoint folder
    /// `<run>/checkpoints/step-N`, else `dir` (a run folder, or a folder holding a model file).
    pub fn of_folder(dir: &Path) -> Option<Self> {
        let parent = dir.parent()?;
        if parent.file_name().is_some_and(|n| n == CHECKPOINTS) {
            parent.parent().map(Self::new)
        } else {
            Some(Self::new(dir))
        }
    }

    /// Whether `path` looks like a run folder (it has a `checkpoints/` folder).
    pub fn is_run(path: &Path) -> bool {
        path.join(CHECKPOINTS).is_dir()
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`: the run's config.
    pub fn config_file(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    /// `metrics.jsonl`.
    pub fn metrics_file(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    /// `model.bpk`: the final model.
    pub fn model_file(&self) -> PathBuf {
        self.path.join(MODEL_FILE)
    }

    /// `curves.png`.
    pub fn curves_png(&self) -> PathBuf {
        self.path.join("curves.png")
    }

    /// `embeddings_pca.png`.
    pub fn pca_png(&self) -> PathBuf {
        self.path.join("embeddings_pca.png")
    }

    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.path.join(CHECKPOINTS)
    }

    /// Creates the folder if needed.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.path)
            .with_context(|| format!("creating {}", self.path.display()))
    }

    /// Writes the run's config (atomically).
    pub fn write_config(&self, toml: &str) -> Result<()> {
        write_atomic(&self.config_file(), toml.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_folder_belongs_to_its_run() {
        let run = Path::new("/data/runs/a");
        let ckpt = run.join("checkpoints").join("step-000000042");
        assert_eq!(RunDir::of_folder(&ckpt), Some(RunDir::new(run)));
        assert_eq!(RunDir::of_folder(run), Some(RunDir::new(run)));
        assert_eq!(RunDir::new(run).model_file(), run.join("model.bpk"));
        assert_eq!(RunDir::new(run).checkpoints(), run.join("checkpoints"));
    }
}
