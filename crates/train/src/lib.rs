//! The `triplet` command-line tool as a library: data sources and the streaming loader, P×K
//! sampling, the experiment config, training with checkpoints and resume, retrieval metrics,
//! evaluation, embedding export and plots.
//!
//! `main.rs` only parses the command line and calls [`run()`]. The modules, from the top down:
//! - [`train`] (`triplet train`) and [`eval`] (`eval`, `search`, `embed`, `export`), the commands; training
//!   validates with evaluation's embedding and metrics, evaluation never reaches into training;
//! - [`run`](mod@run): the run folder both of them read and write (checkpoints, `metrics.jsonl`, the
//!   trained model);
//! - [`data`]: sources, splits, the sampler, the transform and the loader;
//! - [`config`], [`device`], and the utilities [`console`], [`files`], [`memory`], [`fault`].
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod console;
pub mod data;
pub mod device;
pub mod eval;
pub mod fault;
pub mod files;
pub mod memory;
pub mod run;
pub mod train;

use anyhow::Result;

use cli::{Cli, Command};

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            train::train(train::TrainOptions {
                backend: args.backend().map_err(anyhow::Error::msg)?,
                precision: args
                    .precision
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                config: args.config,
                data: args.data,
                epochs: args.epochs,
                out: args.out,
                resume: args.resume,
                pretrained: args.pretrained,
                devices: args.devices,
            })?;
            Ok(())
        }
        Command::Eval(args) => {
            let backend = args.backend.parse().map_err(anyhow::Error::msg)?;
            let metrics = args
                .metrics
                .map(|list| {
                    list.iter()
                        .map(|g| g.parse::<eval::applications::Group>())
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(anyhow::Error::msg)?;
            eval::command::eval(&eval::command::EvalOptions {
                checkpoint: args.checkpoint,
                data: args.data,
                reference: args.reference,
                out: args.out,
                backend,
                plot: args.plot,
                classes: args.classes,
                metrics,
                pairs: eval::applications::PairsSource::parse(&args.pairs)?,
                query_column: args.query_column,
                gallery_column: args.gallery_column,
                group_column: args.group_column,
                show: args.show.map(|n| n as usize),
                seed: args.seed,
            })?;
            Ok(())
        }
        Command::Search(args) => {
            let backend = args.backend.parse().map_err(anyhow::Error::msg)?;
            eval::search::search(&eval::search::SearchOptions {
                checkpoint: args.checkpoint,
                gallery: args.gallery,
                query: args.query,
                k: args.k,
                threshold: args.threshold,
                out: args.out,
                backend,
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
