//! The command line (clap derive; doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::device::Backend;

/// Triplet: deep metric learning with triplet loss, on CPU or GPU.
#[derive(Debug, Parser)]
#[command(name = "triplet", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an embedding model; `--resume` continues the run in `--out`.
    Train(TrainArgs),
}

/// `triplet train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Experiment config (TOML). Without it, defaults for small images: the reference CNN,
    /// semi-hard mining, margin 0.2, Adam 1e-3, P×K from the data.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Training data: an image folder (one sub-folder per class), an IDX file or folder, or a
    /// CSV list (`path,label`). Overrides `data.path` of the config.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Number of epochs. Overrides `train.epochs`; with `--resume`, extends the run (a cosine
    /// schedule is stretched to the new length).
    #[arg(long, value_name = "N")]
    pub epochs: Option<u64>,
    /// Run folder: checkpoints, metrics.jsonl, the config and the final model.
    #[arg(long, value_name = "DIR", default_value = "runs/latest")]
    pub out: PathBuf,
    /// Device: flex (default, alias cpu), ndarray, wgpu, cuda (feature `cuda`); gpu = cuda if
    /// built with it, else wgpu.
    #[arg(long, value_name = "NAME", default_value = "flex")]
    pub backend: String,
    /// Continue the run in `--out` from its latest checkpoint, with its saved config.
    #[arg(long)]
    pub resume: bool,
}

impl TrainArgs {
    /// The backend named by `--backend`.
    pub fn backend(&self) -> Result<Backend, String> {
        self.backend.parse()
    }
}
