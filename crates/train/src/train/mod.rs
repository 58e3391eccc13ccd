//! `triplet train`: from a config and a data path to a trained model, with checkpoints,
//! progress, metrics and a final retrieval evaluation on the held-out split.
//!
//! A run, in the order [`train`] goes through it:
//! 1. [`resolve`](mod@resolve): options, config and resume → one plan (devices, data, sampler), checked
//!    before anything is written;
//! 2. [`setup`]: the model and optimiser, fresh or from the checkpoint;
//! 3. per epoch, `epoch` (each batch one [`step`] on the replicas and one optimiser step),
//!    `validation` and a checkpoint in the run folder ([`crate::run`](mod@crate::run));
//! 4. `finish`: the final model, the evaluation of the held-out split, the plots.

pub mod amp;
mod collapse;
mod epoch;
mod finish;
pub mod optim;
pub mod resolve;
pub mod setup;
pub mod step;
mod validation;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;

use crate::config::Precision;
use crate::console::{Progress, say};
use crate::data::loader::BadImages;
use crate::device::Backend;
use crate::run::checkpoint::Checkpoint;
use crate::run::metrics::{EpochRecord, MetricsLog, Record, Resume};
use collapse::CollapseWatch;
use epoch::{EpochEnd, Trainer};
use resolve::{Resolved, resolve};
use triplet_loss::CrossBatchMemory;
use triplet_metrics::Retrieval;

pub use optim::{learning_rate, optimizer};
pub use validation::{evaluate, summary_line};

/// What `triplet train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// `--config`: the experiment; the defaults without it (not with `--resume`).
    pub config: Option<PathBuf>,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--epochs`.
    pub epochs: Option<u64>,
    /// `--out`.
    pub out: PathBuf,
    /// `--backend`.
    pub backend: Backend,
    /// `--resume`.
    pub resume: bool,
    /// `--pretrained`.
    pub pretrained: Option<PathBuf>,
    /// `--precision`.
    pub precision: Option<Precision>,
    /// `--devices`: indices of `backend`'s devices; empty for its default device.
    pub devices: Vec<usize>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Optimiser steps taken in total (including before a resume).
    pub steps: u64,
    /// Mean loss of the last epoch trained in this process.
    pub last_epoch_loss: Option<f64>,
    /// Retrieval quality on the evaluation split, if there is one.
    pub retrieval: Option<Retrieval>,
    /// Distinct training images found unreadable and skipped.
    pub skipped_images: usize,
}

/// Runs `triplet train`.
pub fn train(options: TrainOptions) -> Result<TrainSummary> {
    let Resolved {
        run,
        config,
        resumed,
        devices,
        replica_devices,
        data,
        extends_epochs,
    } = resolve(&options)?;
    run.create()?;
    run.clean_partial()?;
    let config_toml = config.to_toml();
    run.write_config(&config_toml)?;
    announce(&config, &data, options.backend, &replica_devices);

    // Data parallelism: the first device holds the model and the optimiser; every device
    // (the first included) gets a replica and its own P×K part of each batch.
    let replicas: Vec<Device> = replica_devices.into_iter().map(Device::autodiff).collect();
    let (mut model, optim, mut state) = setup::start(
        &config,
        &data,
        &replicas[0],
        resumed.as_ref(),
        &run,
        extends_epochs,
    )?;
    state.devices = devices;
    if config.train.precision == Precision::F16 && state.loss_scale.is_none() {
        state.loss_scale = Some(amp::LossScale::new(config.train.loss_scale));
    }
    let metrics = MetricsLog::open(
        &run,
        resumed.as_ref().map(|c| Resume {
            step: c.state.step,
            records: c.state.metrics_records,
        }),
    )?;
    let memory = restore_memory(&config, resumed.as_ref(), &replicas[0])?;
    let mut trainer = Trainer {
        run: &run,
        config: &config,
        config_toml: &config_toml,
        data: &data,
        loss: config.loss().init(),
        memory,
        replicas,
        optim,
        metrics,
        progress: Progress::new(config.train.log_every_steps),
        collapse: CollapseWatch::restore(config.loss.margin, state.collapse),
        bad: Arc::new(BadImages::with_known(&state.bad_images)),
        unreadable: state.bad_images.iter().copied().collect(),
        state,
    };

    // A run that stopped early stays stopped when it is resumed (`--epochs` restarts the
    // patience, `setup::start`).
    let patience = config.train.early_stopping_patience;
    let epochs = config.train.epochs;
    let mut stopped = trainer.state.patience_spent(patience);
    let mut last_epoch_loss = None;
    let mut last_validation = None;
    while !stopped && trainer.state.sampler.epoch < epochs {
        let (trained, end) = trainer.train_epoch(model)?;
        model = trained;
        let every = config.train.validate_every_epochs;
        let due = every > 0 && ((end.epoch + 1).is_multiple_of(every) || end.epoch + 1 == epochs);
        let mut improved = false;
        if let (Some(eval), true) = (&data.eval, due) {
            let (validation, validated) = trainer.validate(&model, eval, end.epoch)?;
            improved = validated.improved;
            stopped = validated.stop;
            last_validation = Some(validation);
        }
        last_epoch_loss = Some(end.mean(end.totals.loss));
        trainer.end_epoch(&model, &end, improved)?;
        if stopped && trainer.state.sampler.epoch < epochs {
            say(&format!(
                "early stopping: MAP@R has not improved for {} validation(s); the best \
                 checkpoint is from epoch {}",
                trainer.state.validations_since_best,
                trainer.state.best.map_or(0, |b| b.epoch)
            ));
            break;
        }
    }
    if stopped
        && trainer.state.sampler.epoch < epochs
        && resumed
            .as_ref()
            .is_some_and(|c| c.state.sampler.epoch == trainer.state.sampler.epoch)
    {
        say(&format!(
            "early stopping: the run had stopped after {} validation(s) without a better MAP@R",
            trainer.state.validations_since_best
        ));
    }
    let retrieval = trainer.finish(&model, last_validation)?;
    Ok(TrainSummary {
        steps: trainer.state.step,
        last_epoch_loss,
        retrieval,
        skipped_images: trainer.bad.len(),
    })
}

/// The cross-batch memory of `[loss] memory_size`: empty for a new run, as the checkpoint
/// saved it for a resumed one (on the first device).
fn restore_memory(
    config: &crate::config::ExperimentConfig,
    resumed: Option<&Checkpoint>,
    device: &Device,
) -> Result<Option<CrossBatchMemory>> {
    let Some(memory) = config.loss.memory() else {
        return Ok(None);
    };
    let Some(checkpoint) = resumed else {
        return Ok(Some(memory.init()));
    };
    let dir = checkpoint.dir.display();
    let bytes = checkpoint.memory.as_deref().with_context(|| {
        format!("checkpoint {dir} has no memory.bin, but its config sets loss.memory_size")
    })?;
    let state = crate::run::memory::decode(bytes).map_err(|e| anyhow::anyhow!("{dir}: {e}"))?;
    let restored = CrossBatchMemory::from_state(state, device)
        .with_context(|| format!("the cross-batch memory of checkpoint {dir}"))?;
    if restored.capacity() != memory.memory_size {
        bail!(
            "checkpoint {dir} holds a cross-batch memory of {} rows, its config {}",
            restored.capacity(),
            memory.memory_size
        );
    }
    Ok(Some(restored))
}

/// Prints what the run will do: the plan's notes, a warning for patience without validation,
/// and the devices and loader.
fn announce(
    config: &crate::config::ExperimentConfig,
    data: &setup::Plan,
    backend: Backend,
    devices: &[Device],
) {
    for line in &data.notes {
        say(line);
    }
    if data.eval.is_none() && config.train.early_stopping_patience > 0 {
        say(
            "warning: train.early_stopping_patience is set but there is no evaluation split to \
             validate on (data.split = \"none\"); training runs all epochs",
        );
    }
    say(&format!(
        "backend {backend}{}; {} data worker(s), {} batches prefetched",
        if devices.len() > 1 {
            format!(
                " on {} devices ({} classes of each batch per device)",
                devices.len(),
                data.sampler.classes_per_batch() / devices.len()
            )
        } else {
            String::new()
        },
        config.data.workers,
        config.data.prefetch
    ));
}

impl Trainer<'_> {
    /// The end of an epoch: its record (before its checkpoint, which counts it: a run resumed
    /// from that checkpoint has it once), the checkpoint, `best` pointed at it when the
    /// validation improved, and the epoch's line.
    fn end_epoch(
        &mut self,
        model: &triplet_model::EmbeddingModel,
        end: &EpochEnd,
        improved: bool,
    ) -> Result<()> {
        let totals = &end.totals;
        let seconds = end.seconds;
        self.metrics.write(&Record::Epoch(EpochRecord {
            epoch: end.epoch + 1,
            step: self.state.step,
            loss: end.mean(totals.loss),
            active_fraction: end.mean(totals.active),
            mean_d_ap: end.mean(totals.d_ap),
            mean_d_an: end.mean(totals.d_an),
            seconds,
            images_per_second: totals.images as f64 / seconds,
            data_wait_fraction: end.waited / seconds,
            skipped_images: totals.skipped,
        }))?;
        let dir = self.save(model)?;
        if improved {
            self.run.mark_best(&dir)?;
        }
        say(&format!(
            "epoch {}/{}: loss {:.4}, active {:.1}%, d_ap {:.3}, d_an {:.3}, {:.0} img/s, \
             {seconds:.1} s (waiting for data {:.1}%), {} image(s) skipped; saved {}",
            end.epoch + 1,
            self.config.train.epochs,
            end.mean(totals.loss),
            end.mean(totals.active) * 100.0,
            end.mean(totals.d_ap),
            end.mean(totals.d_an),
            totals.images as f64 / seconds,
            100.0 * end.waited / seconds,
            totals.skipped,
            dir.display()
        ));
        Ok(())
    }
}
