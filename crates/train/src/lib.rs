//! The `triplet` command-line tool as a library: data sources and the streaming loader, P×K
//! sampling, the experiment config, training with checkpoints and resume, evaluation, search,
//! embedding export and plots. The metrics themselves (retrieval, clustering, verification,
//! re-identification, nearest neighbours over rows of vectors) are the `triplet-metrics` crate.
//!
//! `main.rs` only parses the command line and calls [`run()`]. The modules, from the top down:
//! - the commands, one module each: [`train`] (`triplet train`), [`eval`] (`triplet eval`, in
//!   named stages), [`search`], [`embed`] (`triplet embed`, and the embedding of image sets the
//!   others share), [`export`], [`index`](mod@index) (`triplet index`, and the index layer
//!   `search --index` and `serve` share: a gallery of a model's embeddings in a
//!   [`triplet_index`] folder) and [`serve`] (`triplet serve`: HTTP over the embedding and
//!   index layers); training validates with the embedding and the metrics, no command
//!   reaches into another;
//! - [`plot`]: the figures (PCA map, retrievals, ROC, training curves);
//! - [`run`](mod@run): the run folder the commands read and write (checkpoints,
//!   `metrics.jsonl`, the trained model);
//! - [`data`]: sources, splits, the sampler, the transform and the loader;
//! - [`cli`], [`config`], [`device`], [`threshold`], and the utilities [`console`], [`files`],
//!   [`memory`], [`fault`].
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod console;
pub mod data;
pub mod device;
pub mod embed;
pub mod eval;
pub mod export;
pub mod fault;
pub mod files;
pub mod index;
pub mod memory;
pub mod plot;
pub mod run;
pub mod search;
pub mod serve;
pub mod threshold;
pub mod train;

use anyhow::Result;

use cli::{Cli, Command};

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            train::train(train::TrainOptions {
                backend: args.device.backend,
                precision: args.precision,
                config: args.config,
                data: args.data,
                epochs: args.epochs,
                out: args.out,
                resume: args.resume,
                pretrained: args.pretrained,
                devices: args.devices,
            })?;
        }
        Command::Eval(args) => {
            eval::eval(&eval::EvalOptions {
                checkpoint: args.checkpoint,
                data: args.data,
                reference: args.reference,
                out: args.out,
                backend: args.device.backend,
                plot: args.plot,
                classes: args.classes,
                metrics: args.metrics,
                pairs: args.pairs,
                query_column: args.query_column,
                gallery_column: args.gallery_column,
                group_column: args.group_column,
                show: args.show.map(|n| n as usize),
                seed: args.seed,
            })?;
        }
        Command::Search(args) => {
            search::search(&search::SearchOptions {
                checkpoint: args.checkpoint,
                gallery: args.gallery,
                index: args.index,
                exact: args.exact,
                query: args.query,
                k: args.k,
                threshold: args.threshold,
                out: args.out,
                backend: args.device.backend,
            })?;
        }
        Command::Embed(args) => {
            embed::command::embed_command(&embed::command::EmbedCommand {
                checkpoint: args.checkpoint,
                data: args.data,
                out: args.out,
                backend: args.device.backend,
                classes: args.classes,
                format: args.format,
            })?;
        }
        Command::Export(args) => export::export(&args.checkpoint, &args.out)?,
        Command::Index(command) => index::command::run(command)?,
        Command::Serve(args) => serve::serve(serve::ServeOptions::of(args)?)?,
    }
    Ok(())
}
