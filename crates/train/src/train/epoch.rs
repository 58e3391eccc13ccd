//! One epoch of training: the loader streams the sampler's remaining batches, each batch is one
//! step on the replicas and one optimiser step, and each step is logged, shown and, every
//! `checkpoint_every_steps`, checkpointed. The run's changing state lives in [`Trainer`]; the
//! model goes through each epoch by value, as the optimiser takes it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use triplet_loss::{CrossBatchMemory, TripletLoss};
use triplet_model::EmbeddingModel;

use super::amp::{Autocast, MIN_LOSS_SCALE, unscale};
use super::collapse::CollapseWatch;
use super::optim::learning_rate;
use super::setup::Plan;
use super::step::{HostBatch, settle_running_stats, step_deferred};
use crate::config::ExperimentConfig;
use crate::console::Progress;
use crate::data::loader::{BadImages, Loader, LoaderOptions};
use crate::data::sampler::SamplerState;
use crate::run::RunDir;
use crate::run::metrics::{MetricsLog, Record, StepRecord};
use crate::run::state::{EpochTotals, RunState};
use crate::run::weights;

/// A run in progress: the optimiser and everything a checkpoint saves besides the model.
pub(super) struct Trainer<'a> {
    /// The run folder.
    pub run: &'a RunDir,
    /// The run's config.
    pub config: &'a ExperimentConfig,
    /// The run's config as saved in each checkpoint.
    pub config_toml: &'a str,
    /// The data.
    pub data: &'a Plan,
    /// The loss.
    pub loss: TripletLoss,
    /// The cross-batch memory, with `[loss] memory_size`.
    pub memory: Option<CrossBatchMemory>,
    /// One autodiff device per replica; the first holds the model.
    pub replicas: Vec<Device>,
    /// Its optimiser.
    pub optim: ModuleOptimizer,
    /// Where the run stands.
    pub state: RunState,
    /// `metrics.jsonl`.
    pub metrics: MetricsLog,
    /// The progress display.
    pub progress: Progress,
    /// The collapse warning.
    pub collapse: CollapseWatch,
    /// Images found unreadable, shared with the loader's workers.
    pub bad: Arc<BadImages>,
    /// The unreadable images of the batches trained on (a checkpoint saves these, not those
    /// the workers found ahead in prefetched batches, which a resumed run finds again).
    pub unreadable: BTreeSet<usize>,
}

/// An epoch as trained: its totals and its time.
pub(super) struct EpochEnd {
    /// The epoch, from 0.
    pub epoch: u64,
    /// The sums over its steps (those before a resume included).
    pub totals: EpochTotals,
    /// Seconds it trained (before a resume included).
    pub seconds: f64,
    /// Of those, seconds spent waiting for data.
    pub waited: f64,
}

impl EpochEnd {
    /// The mean of a sum over the epoch's steps (NaN without steps).
    pub fn mean(&self, sum: f64) -> f64 {
        if self.totals.steps == 0 {
            f64::NAN
        } else {
            sum / self.totals.steps as f64
        }
    }
}

impl Trainer<'_> {
    /// Trains `model` for the rest of the epoch the sampler stands in (all of it, unless
    /// resumed mid-way).
    pub fn train_epoch(&mut self, mut model: EmbeddingModel) -> Result<(EmbeddingModel, EpochEnd)> {
        let config = self.config;
        let epochs = config.train.epochs;
        let bpe = self.data.sampler.batches_per_epoch() as u64;
        let total_steps = epochs * bpe;
        let [c, h, w] = [
            self.data.transform.channels,
            self.data.transform.size[0],
            self.data.transform.size[1],
        ];
        let epoch = self.state.sampler.epoch;
        let first = self.state.sampler.batch;
        let mut loader = Loader::spawn(
            Arc::clone(&self.data.train),
            Arc::clone(&self.data.transform),
            self.data.sampler.remaining(self.state.sampler),
            Arc::clone(&self.bad),
            LoaderOptions {
                workers: config.data.workers,
                prefetch: config.data.prefetch,
                seed: config.train.seed,
                epoch,
                first_batch: first,
            },
        );
        self.progress.start_epoch(epoch, epochs, bpe, first as u64);
        // The epoch's totals go on from the checkpoint's when it is resumed mid-epoch.
        let epoch_start = Instant::now();
        let (seconds_before, waited_earlier) = (
            self.state.epoch_totals.seconds,
            self.state.epoch_totals.waited,
        );
        let mut waited_before = Duration::ZERO;
        let mut step_start = Instant::now();
        while let Some(batch) = loader.next_batch() {
            for message in &batch.new_errors {
                self.progress.println(&format!("warning: {message}"));
            }
            self.state.epoch_totals.skipped += batch.skipped as u64;
            self.unreadable.extend(&batch.unreadable);
            let lr = learning_rate(config, self.state.step, total_steps, bpe);
            let mut record = StepRecord {
                epoch: epoch + 1,
                lr,
                ..StepRecord::default()
            };
            if batch.count >= 2 {
                let n = batch.count;
                let autocast =
                    Autocast::new(config.train.precision, self.state.loss_scale.as_ref());
                let (pending, mut grads) = step_deferred(
                    &model,
                    &self.loss,
                    self.memory.as_mut(),
                    &self.replicas,
                    HostBatch {
                        images: &batch.images,
                        labels: &batch.labels,
                        shape: [c, h, w],
                    },
                    autocast,
                );
                crate::fault::point("step");
                let take = match &mut self.state.loss_scale {
                    Some(scale) => {
                        let finite = unscale(&model, &mut grads, scale.scale);
                        record.loss_scale = Some(scale.scale);
                        record.skipped = Some(!finite);
                        if !finite && scale.scale * 0.5 < MIN_LOSS_SCALE {
                            bail!(
                                "the gradients were not finite at step {} (epoch {}) with a loss \
                                 scale of {}, {} steps skipped so far: not an f16 overflow. \
                                 Nothing was saved from this step, the last good checkpoint is in \
                                 {}. Lower optimizer.lr, or train in bf16 or f32",
                                self.state.step + 1,
                                epoch + 1,
                                scale.scale,
                                scale.skipped_steps,
                                self.run.checkpoints().display()
                            );
                        }
                        scale.update(finite)
                    }
                    None => true,
                };
                if take {
                    model = self.optim.step(lr, model, grads);
                }
                // The step's one wait for the device (on a GPU): its loss and statistics, read
                // once the optimiser step is queued. A non-finite loss has then reached the
                // weights in memory, but never a checkpoint: the run stops here.
                let (value, s) = pending.read();
                // A NaN embedding can leave the loss finite (a miner keeps no triplet of it):
                // its distances, counted by the statistics, stop the run too.
                if !value.is_finite() || !s.is_finite() {
                    let what = if value.is_finite() {
                        format!(
                            "the embeddings became NaN or infinite ({} distances)",
                            s.non_finite
                        )
                    } else {
                        format!("the loss became {value}")
                    };
                    bail!(
                        "{what} at step {} (epoch {}); nothing was saved from this \
                         step, the last good checkpoint is in {}. Lower optimizer.lr or set \
                         optimizer.grad_clip_norm, and check the input normalisation",
                        self.state.step + 1,
                        epoch + 1,
                        self.run.checkpoints().display()
                    );
                }
                let active = s.active_fraction();
                let totals = &mut self.state.epoch_totals;
                totals.loss += value;
                totals.active += active;
                totals.d_ap += s.mean_d_ap;
                totals.d_an += s.mean_d_an;
                totals.steps += 1;
                totals.images += n as u64;
                if let Some(warning) =
                    self.collapse
                        .observe(value, active, s.mean_d_ap, s.mean_d_an)
                {
                    self.progress.println(&warning);
                }
                record.loss = Some(value);
                record.active_fraction = Some(active);
                record.triplets = Some(s.triplets);
                record.mean_d_ap = Some(s.mean_d_ap);
                record.mean_d_an = Some(s.mean_d_an);
                record.images = Some(n);
            }
            self.state.step += 1;
            self.state.sampler.batch += 1;
            let now = Instant::now();
            let seconds = now.duration_since(step_start).as_secs_f64();
            step_start = now;
            let waited = loader.waited() - waited_before;
            waited_before = loader.waited();
            record.step = self.state.step;
            record.seconds = seconds;
            record.data_wait_seconds = waited.as_secs_f64();
            record.images_per_second = batch.count as f64 / seconds;
            let mut line = format!(
                "loss {:.4} active {:.1}% {:.0} img/s",
                record.loss.filter(|v| v.is_finite()).unwrap_or(f64::NAN),
                record
                    .active_fraction
                    .filter(|v| v.is_finite())
                    .unwrap_or(0.0)
                    * 100.0,
                batch.count as f64 / seconds
            );
            if let Some(scale) = &self.state.loss_scale {
                // The scale the next step runs with, and the overflowed steps so far.
                line.push_str(&format!(
                    " scale {} skipped {}",
                    scale.scale, scale.skipped_steps
                ));
            }
            self.metrics.write(&Record::Step(record))?;
            self.progress.step(
                epoch,
                self.state.sampler.batch as u64,
                bpe,
                self.state.step,
                &line,
            );
            self.state.epoch_totals.seconds = seconds_before + epoch_start.elapsed().as_secs_f64();
            self.state.epoch_totals.waited = waited_earlier + loader.waited().as_secs_f64();
            let every = config.train.checkpoint_every_steps;
            if every > 0
                && self.state.step.is_multiple_of(every)
                && (self.state.sampler.batch as u64) < bpe
            {
                self.save(&model)?;
            }
        }
        let waited = waited_earlier + loader.waited().as_secs_f64();
        drop(loader);
        self.progress.finish_epoch();
        self.state.sampler = SamplerState {
            epoch: epoch + 1,
            batch: 0,
        };
        let end = EpochEnd {
            epoch,
            totals: std::mem::take(&mut self.state.epoch_totals),
            seconds: seconds_before + epoch_start.elapsed().as_secs_f64(),
            waited,
        };
        Ok((model, end))
    }

    /// Saves a checkpoint of the run as it stands with `model` (the metrics log flushed and
    /// counted first).
    pub fn save(&mut self, model: &EmbeddingModel) -> Result<PathBuf> {
        let state = &mut self.state;
        state.collapse = self.collapse.state();
        state.bad_images = self.unreadable.iter().copied().collect();
        state.skipped_images = state.bad_images.len() as u64;
        state.metrics_records = Some(self.metrics.sync()?);
        let optimizer = self
            .optim
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("serialising the optimiser")?;
        let memory = self
            .memory
            .as_ref()
            .map(|m| crate::run::memory::encode(&m.state()));
        self.run.save_checkpoint(
            state,
            self.config_toml,
            &model_bytes(model)?,
            &optimizer,
            memory.as_deref(),
            self.config.train.keep_checkpoints,
        )
    }
}

/// The weights of `model`, its BatchNorm statistics settled.
pub(super) fn model_bytes(model: &EmbeddingModel) -> Result<Vec<u8>> {
    settle_running_stats(model);
    weights::to_bytes(model)
}
