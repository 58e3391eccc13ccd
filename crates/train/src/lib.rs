//! The `triplet` command-line tool as a library: data sources and the streaming loader, P×K
//! sampling, the experiment config, training with checkpoints and resume, retrieval metrics,
//! evaluation, embedding export and plots.
//!
//! `main.rs` only parses the command line and calls [`run`].
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod fault;
pub mod memory;
pub mod train;

use anyhow::Result;

use cli::{Cli, Command};
use config::ExperimentConfig;

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let backend = args.backend().map_err(anyhow::Error::msg)?;
            if args.resume && args.precision.is_some() {
                anyhow::bail!(
                    "--precision cannot be combined with --resume: a run keeps the precision it \
                     started with"
                );
            }
            if args.resume && args.pretrained.is_some() {
                anyhow::bail!(
                    "--pretrained cannot be combined with --resume: the run's checkpoint in {} \
                     already holds its weights",
                    args.out.display()
                );
            }
            if args.resume && args.config.is_some() {
                anyhow::bail!(
                    "--config cannot be combined with --resume: a resumed run keeps the config \
                     saved in {} (--epochs and --data may still be given)",
                    args.out.display()
                );
            }
            let config = match &args.config {
                Some(path) => ExperimentConfig::load(path)?,
                None => ExperimentConfig::default(),
            };
            train::train(train::TrainOptions {
                config,
                config_given: args.config.is_some(),
                data: args.data,
                epochs: args.epochs,
                out: args.out,
                backend,
                resume: args.resume,
                pretrained: args.pretrained,
                precision: args
                    .precision
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                devices: args.devices,
            })?;
            Ok(())
        }
        Command::Eval(args) => {
            let backend = args.backend.parse().map_err(anyhow::Error::msg)?;
            eval::command::eval(&eval::command::EvalOptions {
                checkpoint: args.checkpoint,
                data: args.data,
                reference: args.reference,
                out: args.out,
                backend,
                plot: args.plot,
                classes: args.classes,
            })?;
            Ok(())
        }
        Command::Embed(args) => {
            let backend = args.backend.parse().map_err(anyhow::Error::msg)?;
            eval::command::embed_command(&eval::command::EmbedCommand {
                checkpoint: args.checkpoint,
                data: args.data,
                out: args.out,
                backend,
                classes: args.classes,
            })?;
            Ok(())
        }
        Command::Export(args) => eval::command::export(&args.checkpoint, &args.out),
    }
}
