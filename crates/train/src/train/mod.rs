//! `triplet train`: from a config and a data path to a trained model, with checkpoints,
//! progress, metrics and a final retrieval evaluation on the held-out split.

pub mod checkpoint;
pub mod report;
mod setup;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, FloatDType, Int, Tensor, TensorData};
use serde_json::json;
use triplet_loss::{MiningStats, TripletLoss};
use triplet_model::EmbeddingModel;

use crate::config::{ExperimentConfig, Precision, toml_name};
use crate::data::augment::Transform;
use crate::data::loader::{BadImages, Loader, LoaderOptions};
use crate::data::sampler::SamplerState;
use crate::data::source::{self, ImageSet};
use crate::device::Backend;
use crate::eval::embed::{EmbedOptions, Embedded, embed, model_device};
use crate::eval::metrics::{Retrieval, retrieval};
use crate::eval::plot;
use checkpoint::{Best, RunState};
use report::{CollapseWatch, MetricsLog, Progress, num, say};

pub use setup::{Plan, input_transform, learning_rate};

/// What `triplet train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The experiment (from `--config`, or the defaults).
    pub config: ExperimentConfig,
    /// Whether `--config` was given (not allowed with `--resume`).
    pub config_given: bool,
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
    let out = options.out.clone();

    // The run's config and position: fresh, or from the latest checkpoint.
    let (mut config, resumed) = if options.resume {
        if options.config_given {
            bail!("--config cannot be combined with --resume");
        }
        let resumable = checkpoint::load_resumable(&out, decodes)?;
        let ckpt = resumable.checkpoint;
        for (dir, why, aside) in &resumable.damaged {
            say(&format!(
                "warning: checkpoint {} is damaged: {why}; it was moved to {} and the run \
                 resumes from {}, the newest intact checkpoint",
                dir.display(),
                aside.display(),
                ckpt.dir.display()
            ));
        }
        let config = ExperimentConfig::from_toml(&ckpt.config).map_err(|e| {
            anyhow::anyhow!(
                "checkpoint {} has an invalid config: {e}",
                ckpt.dir.display()
            )
        })?;
        (config, Some(ckpt))
    } else {
        if checkpoint::exists(&out)? {
            bail!(
                "{} already holds a run; pass --resume to continue it, or choose another --out",
                out.display()
            );
        }
        (options.config.clone(), None)
    };
    // The devices: `--devices`, else those the resumed run trained on (they decide how each
    // batch is split and how BatchNorm statistics are averaged), else the backend's default.
    let saved_devices = resumed.as_ref().map(|c| c.state.devices.clone());
    let devices = match &saved_devices {
        Some(saved) if options.devices.is_empty() && !saved.is_empty() => {
            say(&format!(
                "--devices {} (as the run was trained)",
                list_devices(saved)
            ));
            saved.clone()
        }
        Some(saved) if *saved != options.devices => {
            say(&format!(
                "warning: the run was trained on --devices {} and goes on on --devices {}: batches \
                 are split differently from here on, so it will not end as an uninterrupted run \
                 would",
                if saved.is_empty() {
                    "(default)".into()
                } else {
                    list_devices(saved)
                },
                list_devices(&options.devices)
            ));
            options.devices.clone()
        }
        _ => options.devices.clone(),
    };
    let mut replica_devices: Vec<Device> = if devices.is_empty() {
        vec![options.backend.device().map_err(anyhow::Error::msg)?]
    } else {
        devices
            .iter()
            .map(|&i| options.backend.device_at(i))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?
    };
    // `--epochs` beyond the saved number extends the run (and restarts early stopping's
    // patience); the same number changes nothing.
    let saved_epochs = config.train.epochs;
    if let Some(data) = &options.data {
        config.data.path = Some(data.clone());
    }
    if let Some(epochs) = options.epochs {
        config.train.epochs = epochs;
    }
    if let Some(pretrained) = &options.pretrained {
        config.model.pretrained = Some(pretrained.clone());
    }
    if let Some(precision) = options.precision {
        config.train.precision = precision;
    }
    let float = match config.train.precision {
        Precision::F32 => None,
        Precision::F16 => Some(FloatDType::F16),
        Precision::Bf16 => Some(FloatDType::BF16),
    };
    if let Some(dtype) = float {
        for i in 0..replica_devices.len() {
            if replica_devices[..i].contains(&replica_devices[i]) {
                continue; // `--devices 0,0`: the same device, configured once
            }
            let device = &mut replica_devices[i];
            if !device.supports_dtype(dtype) {
                bail!(
                    "backend {} does not support {} (train.precision / --precision)",
                    options.backend,
                    toml_name(&config.train.precision)
                );
            }
            device.configure(dtype).map_err(|e| {
                anyhow::anyhow!("cannot switch {} to {dtype:?}: {e:?}", options.backend)
            })?;
        }
        // Burn creates the optimiser state it reads back from a checkpoint on its default
        // device (the backend's first, `main.rs`) in that device's float type, then moves it to
        // each parameter's device: the default device must be half too.
        let mut default = Device::default();
        if !replica_devices.contains(&default) && default.supports_dtype(dtype) {
            let _ = default.configure(dtype);
        }
        say(&format!(
            "warning: train.precision = \"{}\" keeps weights and optimiser state in half precision \
             too (Burn 0.22.1 has no f32 master weights): an update smaller than about 5e-4 \
             (f16) or 4e-3 (bf16) of a weight is lost, so small learning rates barely train",
            toml_name(&config.train.precision)
        ));
    }
    let device = replica_devices[0].clone();
    config.validate().context("invalid settings")?;
    if resumed.is_none()
        && let Some(p) = &config.model.pretrained
        && !p.is_file()
    {
        bail!(
            "pretrained weights {} not found (model.pretrained / --pretrained)",
            p.display()
        );
    }
    let data_path = config.data.path.clone().context(
        "no training data: pass --data PATH (an image folder, IDX file or folder, or CSV list) \
         or set data.path in the config",
    )?;

    let source = source::open(&data_path)?;
    let plan = setup::plan(&config, source, &data_path)?;
    let p = plan.sampler.classes_per_batch();
    if p < 2 * replica_devices.len() {
        bail!(
            "--devices {}: each device mines inside its own share of a batch's classes and needs \
             at least 2 of them, but a batch has P = {p} classes; set [sampler] p to at least {}",
            list_devices(&devices),
            2 * replica_devices.len()
        );
    }
    // The run's config records the input it resolved (channels, size, normalisation), so that
    // `triplet eval` and `embed` feed the model exactly what it was trained on.
    config.data.channels = Some(plan.transform.channels);
    config.data.size = Some(plan.transform.size);
    config.data.mean = Some(plan.transform.mean.clone());
    config.data.std = Some(plan.transform.std.clone());
    config.data.resize = Some(plan.transform.resize);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    checkpoint::clean_partial(&out)?;
    let config_toml = config.to_toml();
    checkpoint::write_atomic(&out.join("config.toml"), config_toml.as_bytes())?;

    for line in &plan.notes {
        say(line);
    }
    if plan.eval.is_none() && config.train.early_stopping_patience > 0 {
        say(
            "warning: train.early_stopping_patience is set but there is no evaluation split to \
             validate on (data.split = \"none\"); training runs all epochs",
        );
    }
    say(&format!(
        "backend {}{}; {} data worker(s), {} batches prefetched",
        options.backend,
        if replica_devices.len() > 1 {
            format!(
                " on {} devices ({} classes of each batch per device)",
                replica_devices.len(),
                p / replica_devices.len()
            )
        } else {
            String::new()
        },
        config.data.workers,
        config.data.prefetch
    ));

    // Model and optimiser: fresh weights are drawn on the host from the seed, so every backend
    // starts from the same ones; a resume loads the checkpoint's.
    let train_device = device.autodiff();
    // Data parallelism: the first device holds the model and the optimiser; every device
    // (the first included) gets a replica and its own P×K part of each batch.
    let replicas: Vec<Device> = replica_devices
        .iter()
        .cloned()
        .map(Device::autodiff)
        .collect();
    let model_config = config.model(plan.transform.channels);
    let mut model = model_config.init(&train_device);
    let mut optim = setup::optimizer(&config.optimizer);
    let mut state = RunState::new(config.train.seed);
    state.devices = devices.clone();
    match &resumed {
        Some(ckpt) => {
            let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(ckpt.model.clone()))
                .and_then(|r| model.clone().try_load_record(r.cast_to_module_dtype()))
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("loading the model of {}", ckpt.dir.display()))?;
            model = record;
            optim = optim
                .from_bytes(Bytes::from_bytes_vec(ckpt.optimizer.clone()))
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("loading the optimiser of {}", ckpt.dir.display()))?;
            state = ckpt.state.clone();
            state.devices = devices.clone();
            say(&format!(
                "resuming from {} (epoch {}, step {})",
                ckpt.dir.display(),
                state.sampler.epoch + 1,
                state.step
            ));
            // A kill between a checkpoint and its `best` pointer: point it again.
            if let Some(best) = state.best {
                checkpoint::repair_best(&out, best.step)?;
            }
            if options.epochs.is_some_and(|e| e > saved_epochs) && state.validations_since_best > 0
            {
                say("--epochs extends the run: early-stopping patience starts again");
                state.validations_since_best = 0;
            }
        }
        None => {
            let (record, report) = setup::initial_weights(
                &model_config,
                config.train.seed,
                config.model.pretrained.as_deref(),
            )?;
            model = model.load_record(record.cast_to_module_dtype());
            if let (Some(path), Some(report)) = (&config.model.pretrained, report) {
                say(&format!(
                    "pretrained: {} tensors from {}{}",
                    report.loaded,
                    path.display(),
                    if report.ignored.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} not used by an embedding backbone: the classifier and \
                             BatchNorm counters)",
                            report.ignored.len()
                        )
                    }
                ));
            }
        }
    }
    if config.model.freeze_backbone {
        model = model.freeze_backbone();
        say("backbone frozen: only the head trains");
    } else if config.model.freeze_batch_norm {
        model = model.freeze_backbone_batch_norm();
        say("backbone BatchNorm statistics frozen");
    }

    let loss = config.loss().init();
    let epochs = config.train.epochs;
    let bpe = plan.sampler.batches_per_epoch() as u64;
    let total_steps = epochs * bpe;
    let mut metrics = MetricsLog::open(
        &out,
        resumed.as_ref().map(|c| report::Resume {
            step: c.state.step,
            records: c.state.metrics_records,
        }),
    )?;
    let mut progress = Progress::new(config.train.log_every_steps);
    let mut collapse = CollapseWatch::restore(config.loss.margin, state.collapse);
    let bad = Arc::new(BadImages::with_known(&state.bad_images));
    // The unreadable images of the batches trained on (a checkpoint saves these, not those the
    // workers found ahead in prefetched batches, which a resumed run finds again).
    let mut unreadable: std::collections::BTreeSet<usize> =
        state.bad_images.iter().copied().collect();
    let [c, h, w] = [
        plan.transform.channels,
        plan.transform.size[0],
        plan.transform.size[1],
    ];
    let mut last_epoch_loss = None;
    let mut last_validation: Option<(u64, Retrieval, Embedded)> = None;
    let saver = Saver {
        out: &out,
        config: &config_toml,
        keep: config.train.keep_checkpoints,
    };
    // A run that stopped early stays stopped when it is resumed (`--epochs` restarts the
    // patience above).
    let patience = config.train.early_stopping_patience;
    let mut stopped = patience > 0 && state.validations_since_best >= patience;

    while !stopped && state.sampler.epoch < epochs {
        let epoch = state.sampler.epoch;
        let first = state.sampler.batch;
        let mut loader = Loader::spawn(
            Arc::clone(&plan.train),
            Arc::clone(&plan.transform),
            plan.sampler.remaining(state.sampler),
            Arc::clone(&bad),
            LoaderOptions {
                workers: config.data.workers,
                prefetch: config.data.prefetch,
                seed: config.train.seed,
                epoch,
                first_batch: first,
            },
        );
        progress.start_epoch(epoch, epochs, bpe, first as u64);
        // The epoch's totals go on from the checkpoint's when it is resumed mid-epoch.
        let epoch_start = Instant::now();
        let (seconds_before, waited_earlier) =
            (state.epoch_totals.seconds, state.epoch_totals.waited);
        let mut waited_before = Duration::ZERO;
        let mut step_start = Instant::now();
        while let Some(batch) = loader.next_batch() {
            for message in &batch.new_errors {
                progress.println(&format!("warning: {message}"));
            }
            state.epoch_totals.skipped += batch.skipped as u64;
            unreadable.extend(&batch.unreadable);
            let lr = learning_rate(&config, state.step, total_steps, bpe);
            let mut record = json!({ "kind": "step", "epoch": epoch + 1, "lr": lr });
            if batch.count >= 2 {
                let n = batch.count;
                let (value, s, grads) = step_on_replicas(
                    &model,
                    &loss,
                    &replicas,
                    &batch.images,
                    &batch.labels,
                    [c, h, w],
                );
                crate::fault::point("step");
                if !value.is_finite() {
                    bail!(
                        "the loss became {value} at step {} (epoch {}); nothing was saved from this \
                         step, the last good checkpoint is in {}. Lower optimizer.lr or set \
                         optimizer.grad_clip_norm, and check the input normalisation",
                        state.step + 1,
                        epoch + 1,
                        checkpoint::folder(&out).display()
                    );
                }
                model = optim.step(lr, model, grads);
                let active = s.active_fraction();
                let totals = &mut state.epoch_totals;
                totals.loss += value;
                totals.active += active;
                totals.d_ap += s.mean_d_ap;
                totals.d_an += s.mean_d_an;
                totals.steps += 1;
                totals.images += n as u64;
                if let Some(warning) = collapse.observe(value, active, s.mean_d_ap, s.mean_d_an) {
                    progress.println(&warning);
                }
                record["loss"] = num(value);
                record["active_fraction"] = num(active);
                record["triplets"] = json!(s.triplets);
                record["mean_d_ap"] = num(s.mean_d_ap);
                record["mean_d_an"] = num(s.mean_d_an);
                record["images"] = json!(n);
            }
            state.step += 1;
            state.sampler.batch += 1;
            let now = Instant::now();
            let seconds = now.duration_since(step_start).as_secs_f64();
            step_start = now;
            let waited = loader.waited() - waited_before;
            waited_before = loader.waited();
            record["step"] = json!(state.step);
            record["seconds"] = num(seconds);
            record["data_wait_seconds"] = num(waited.as_secs_f64());
            record["images_per_second"] = num(batch.count as f64 / seconds);
            metrics.write(&record)?;
            progress.step(
                epoch,
                state.sampler.batch as u64,
                bpe,
                state.step,
                &format!(
                    "loss {:.4} active {:.1}% {:.0} img/s",
                    record["loss"].as_f64().unwrap_or(f64::NAN),
                    record["active_fraction"].as_f64().unwrap_or(0.0) * 100.0,
                    batch.count as f64 / seconds
                ),
            );
            state.epoch_totals.seconds = seconds_before + epoch_start.elapsed().as_secs_f64();
            state.epoch_totals.waited = waited_earlier + loader.waited().as_secs_f64();
            let every = config.train.checkpoint_every_steps;
            if every > 0 && state.step.is_multiple_of(every) && (state.sampler.batch as u64) < bpe {
                state.collapse = collapse.state();
                saver.save(&mut state, &unreadable, &metrics, &model, &optim)?;
            }
        }
        let waited = waited_earlier + loader.waited().as_secs_f64();
        drop(loader);
        progress.finish_epoch();
        state.sampler = SamplerState {
            epoch: epoch + 1,
            batch: 0,
        };
        let seconds = seconds_before + epoch_start.elapsed().as_secs_f64();
        let totals = std::mem::take(&mut state.epoch_totals);
        let every = config.train.validate_every_epochs;
        let due = every > 0 && ((epoch + 1).is_multiple_of(every) || epoch + 1 == epochs);
        let mut improved = false;
        if let (Some(eval), true) = (&plan.eval, due) {
            let started = Instant::now();
            let (r, embedded) = evaluate(&model.valid(), eval, &plan.eval_transform, &config)?;
            crate::fault::point("validation");
            if r.queries == 0 {
                // Nothing was measured: neither a best nor a step towards early stopping.
                say(
                    "warning: no validation image has another image of its class; validation \
                     measures nothing (the evaluation split needs at least 2 images per class)",
                );
            } else {
                improved = state.best.is_none_or(|b| r.map_at_r > b.map_at_r);
                if improved {
                    state.best = Some(Best {
                        step: state.step,
                        epoch: epoch + 1,
                        map_at_r: r.map_at_r,
                    });
                    state.validations_since_best = 0;
                } else {
                    state.validations_since_best += 1;
                    stopped = patience > 0 && state.validations_since_best >= patience;
                }
            }
            let mut record = r.to_json();
            record["kind"] = json!("validation");
            record["epoch"] = json!(epoch + 1);
            record["step"] = json!(state.step);
            record["images"] = json!(embedded.indices.len());
            record["best"] = json!(improved);
            record["seconds"] = num(started.elapsed().as_secs_f64());
            metrics.write(&record)?;
            say(&format!(
                "validation after epoch {}: {}{}",
                epoch + 1,
                summary_line(&r),
                match (improved, state.best) {
                    (true, _) => " (best so far)".into(),
                    (false, Some(b)) => format!(" (best: epoch {}, {:.4})", b.epoch, b.map_at_r),
                    (false, None) => String::new(),
                }
            ));
            last_validation = Some((state.step, r, embedded));
        }
        let mean = |x: f64| {
            if totals.steps == 0 {
                f64::NAN
            } else {
                x / totals.steps as f64
            }
        };
        last_epoch_loss = Some(mean(totals.loss));
        // The epoch's record goes before its checkpoint, which counts it: a run resumed from
        // that checkpoint has it once.
        metrics.write(&json!({
            "kind": "epoch",
            "epoch": epoch + 1,
            "step": state.step,
            "loss": num(mean(totals.loss)),
            "active_fraction": num(mean(totals.active)),
            "mean_d_ap": num(mean(totals.d_ap)),
            "mean_d_an": num(mean(totals.d_an)),
            "seconds": num(seconds),
            "images_per_second": num(totals.images as f64 / seconds),
            "data_wait_fraction": num(waited / seconds),
            "skipped_images": totals.skipped,
        }))?;
        state.collapse = collapse.state();
        let dir = saver.save(&mut state, &unreadable, &metrics, &model, &optim)?;
        if improved {
            checkpoint::mark_best(&out, &dir)?;
        }
        say(&format!(
            "epoch {}/{epochs}: loss {:.4}, active {:.1}%, d_ap {:.3}, d_an {:.3}, {:.0} img/s, \
             {seconds:.1} s (waiting for data {:.1}%), {} image(s) skipped; saved {}",
            epoch + 1,
            mean(totals.loss),
            mean(totals.active) * 100.0,
            mean(totals.d_ap),
            mean(totals.d_an),
            totals.images as f64 / seconds,
            100.0 * waited / seconds,
            totals.skipped,
            dir.display()
        ));
        if stopped && state.sampler.epoch < epochs {
            say(&format!(
                "early stopping: MAP@R has not improved for {} validation(s); the best \
                 checkpoint is from epoch {}",
                state.validations_since_best,
                state.best.map_or(0, |b| b.epoch)
            ));
            break;
        }
    }

    if stopped
        && state.sampler.epoch < epochs
        && resumed
            .as_ref()
            .is_some_and(|c| c.state.sampler.epoch == state.sampler.epoch)
    {
        say(&format!(
            "early stopping: the run had stopped after {} validation(s) without a better MAP@R",
            state.validations_since_best
        ));
    }
    let final_model = out.join("model.bpk");
    checkpoint::write_atomic(&final_model, &model_bytes(&model)?)?;
    say(&format!("model saved to {}", final_model.display()));

    let evaluated = match (&plan.eval, last_validation) {
        (None, _) => None,
        // The last epoch was just validated with these very weights.
        (Some(_), Some((step, r, embedded))) if step == state.step => Some((r, embedded)),
        (Some(eval), _) => Some(evaluate(
            &model.valid(),
            eval,
            &plan.eval_transform,
            &config,
        )?),
    };
    if evaluated.is_some() {
        crate::fault::point("eval");
    }
    if let (Some(eval), Some((r, embedded))) = (&plan.eval, &evaluated) {
        let mut record = r.to_json();
        record["kind"] = json!("eval");
        record["epoch"] = json!(state.sampler.epoch);
        record["step"] = json!(state.step);
        record["images"] = json!(embedded.indices.len());
        record["classes"] = json!(eval.classes().len());
        metrics.write(&record)?;
        say(&format!(
            "retrieval on the evaluation split ({}: {} images, {} classes, leave-one-out): {}",
            plan.eval_description,
            embedded.indices.len(),
            eval.classes().len(),
            summary_line(r),
        ));
    }
    if let Some(best) = state.best {
        say(&format!(
            "best checkpoint: epoch {} (step {}), MAP@R {:.4}; `triplet eval --checkpoint {}` \
             uses it",
            best.epoch,
            best.step,
            best.map_at_r,
            out.display()
        ));
    }
    if config.train.plots {
        let mut written = Vec::new();
        if plot::write_curves(&out, &out)? {
            written.push("curves.png");
        }
        crate::fault::point("plots");
        if let (Some(eval), Some((_, embedded))) = (&plan.eval, &evaluated) {
            let png = plot::pca_png(
                &embedded.embeddings,
                embedded.dim,
                &embedded.labels,
                eval.classes(),
                &format!(
                    "PCA of {} embeddings ({})",
                    embedded.indices.len(),
                    plan.eval_description
                ),
                10_000,
            )?;
            checkpoint::write_atomic(&out.join("embeddings_pca.png"), &png)?;
            written.push("embeddings_pca.png");
        }
        if !written.is_empty() {
            say(&format!(
                "plots: {} in {}",
                written.join(", "),
                out.display()
            ));
        }
    }
    let retrieval = evaluated.map(|e| e.0);
    Ok(TrainSummary {
        steps: state.step,
        last_epoch_loss,
        retrieval,
        skipped_images: bad.len(),
    })
}

fn model_bytes(model: &EmbeddingModel) -> Result<Vec<u8>> {
    settle_running_stats(model);
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("serialising the model")?;
    Ok(bytes.to_vec())
}

/// `0,1` for `--devices`.
fn list_devices(devices: &[usize]) -> String {
    devices
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Folds every BatchNorm's pending running-statistics update into its value.
///
/// Burn's `RunningState` keeps the update of a forward pass pending, keyed by the thread that
/// made it, until the next training forward on that thread (or `valid()`) merges the pending
/// updates of all threads into their mean. Records read the merged value only, so
/// without this a checkpoint taken after step N held the statistics of step N − 1 (a resumed
/// run lost one update per interruption), and replicas, each a new thread every step, were
/// never merged until the epoch's validation averaged all of the epoch's updates at once.
/// Called after every training step, so between steps nothing is pending: one replica's update
/// is taken as it is (x / 1 is exact, as Burn's own merge at the next forward would have taken
/// it), several replicas' updates are averaged once per step.
fn settle_running_stats(model: &EmbeddingModel) {
    // `valid()` merges each running state in place (the states are shared by the clones of
    // `model`); the inference copy it returns is not needed.
    drop(model.valid());
}

/// Whether a checkpoint's records decode (its config, model and optimiser), for choosing the
/// newest intact checkpoint to resume from; the reason in words when not.
/// Only parses: no tensor is created, so no device is touched before the run configures its
/// devices (a half-precision device must be configured before its first tensor).
fn decodes(ckpt: &checkpoint::Checkpoint) -> Result<(), String> {
    ExperimentConfig::from_toml(&ckpt.config)
        .map_err(|e| format!("config.toml is not a valid config ({e})"))?;
    ModuleRecord::from_bytes(Bytes::from_bytes_vec(ckpt.model.clone()))
        .map_err(|e| format!("model.bpk is not a complete model record ({e})"))?;
    burn::optim::OptimizerRecord::from_bytes(Bytes::from_bytes_vec(ckpt.optimizer.clone()))
        .map_err(|e| format!("optimizer.bpk is not a complete optimiser record ({e})"))?;
    Ok(())
}

/// Writes checkpoints of one run.
struct Saver<'a> {
    out: &'a Path,
    config: &'a str,
    keep: usize,
}

impl Saver<'_> {
    fn save(
        &self,
        state: &mut RunState,
        unreadable: &std::collections::BTreeSet<usize>,
        metrics: &MetricsLog,
        model: &EmbeddingModel,
        optim: &burn::optim::ModuleOptimizer,
    ) -> Result<PathBuf> {
        state.bad_images = unreadable.iter().copied().collect();
        state.skipped_images = state.bad_images.len() as u64;
        state.metrics_records = Some(metrics.sync()?);
        let optimizer = optim
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("serialising the optimiser")?;
        checkpoint::save(
            self.out,
            state,
            self.config,
            &model_bytes(model)?,
            &optimizer,
            self.keep,
        )
    }
}

/// One line of metrics.
pub fn summary_line(r: &Retrieval) -> String {
    format!(
        "P@1 {:.4}  R@2 {:.4}  R@4 {:.4}  R@8 {:.4}  R-Precision {:.4}  MAP@R {:.4}",
        r.precision_at_1, r.recall_at[1], r.recall_at[2], r.recall_at[3], r.r_precision, r.map_at_r
    )
}

/// Embeds `set` (no augmentation) and scores leave-one-out retrieval on the model's device.
pub fn evaluate(
    model: &EmbeddingModel,
    set: &Arc<ImageSet>,
    transform: &Arc<Transform>,
    config: &ExperimentConfig,
) -> Result<(Retrieval, Embedded)> {
    let embedded = embed(
        model,
        set,
        transform,
        EmbedOptions {
            batch: config.train.eval_batch,
            workers: config.data.workers,
            prefetch: config.data.prefetch,
        },
        &|line| say(line),
    )?;
    let r = retrieval(
        &embedded.embeddings,
        &embedded.labels,
        None,
        embedded.dim,
        config.loss().distance,
        &model_device(model),
    )?;
    Ok((r, embedded))
}

/// One training step's loss, mining statistics and gradients (on the first device), with the
/// batch split by class over `replicas`: each replica mines inside its own P×K part (P/n
/// classes of K images), and the gradients of the parts' losses (each weighted 1/n) are summed
/// on the first device, as Burn's `MultiDevice` strategy does. With several replicas each runs
/// in its own thread, as in `MultiDevice`: the devices work at the same time, and Burn's
/// BatchNorm running statistics, which merge the updates of different threads, take one
/// averaged step instead of one per replica.
fn step_on_replicas(
    model: &EmbeddingModel,
    loss: &TripletLoss,
    replicas: &[Device],
    images: &[f32],
    labels: &[i64],
    [c, h, w]: [usize; 3],
) -> (f64, MiningStats, GradientsParams) {
    let main = &replicas[0];
    let image_len = c * h * w;
    let parts = split_by_class(labels, replicas.len());
    let weight = 1.0 / parts.len() as f64;
    let part = |device: &Device, rows: &[usize]| {
        let replica = if device == main {
            model.clone()
        } else {
            model.clone().fork(device)
        };
        let mut x = Vec::with_capacity(rows.len() * image_len);
        for &r in rows {
            x.extend_from_slice(&images[r * image_len..(r + 1) * image_len]);
        }
        let y: Vec<i64> = rows.iter().map(|&r| labels[r]).collect();
        let n = rows.len();
        let x = Tensor::<4>::from_data(TensorData::new(x, [n, c, h, w]), device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [n]), device);
        let output = loss.forward_with_stats(replica.forward(x), y);
        let part_loss = if parts.len() == 1 {
            output.loss
        } else {
            output.loss.mul_scalar(weight)
        };
        let value = f64::from(part_loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(part_loss.backward(), &replica);
        let grads = if device == main {
            grads
        } else {
            grads.to_device(main, &replica)
        };
        (value, output.stats, grads)
    };
    let results: Vec<(f64, MiningStats, GradientsParams)> = if parts.len() == 1 {
        vec![part(main, &parts[0])]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = replicas
                .iter()
                .zip(&parts)
                .map(|(device, rows)| scope.spawn(|| part(device, rows)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    settle_running_stats(model);
    let mut accumulator = GradientsAccumulator::new();
    let mut value = 0.0;
    let mut stats = MiningStats::default();
    for (v, s, grads) in results {
        value += v;
        accumulator.accumulate(model, grads);
        stats.triplets += s.triplets;
        stats.active += s.active;
        stats.anchors_with_triplet += s.anchors_with_triplet;
        stats.mean_d_ap += s.mean_d_ap * weight;
        stats.mean_d_an += s.mean_d_an * weight;
    }
    (value, stats, accumulator.grads())
}

/// The batch's rows split into `parts` groups of whole classes (class `j` in order of first
/// appearance goes to group `j mod parts`), so each group is itself a P×K batch.
fn split_by_class(labels: &[i64], parts: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<i64> = Vec::new();
    for &l in labels {
        if !order.contains(&l) {
            order.push(l);
        }
    }
    let mut groups = vec![Vec::new(); parts.min(order.len()).max(1)];
    let count = groups.len();
    for (row, l) in labels.iter().enumerate() {
        let class = order.iter().position(|o| o == l).unwrap_or(0);
        groups[class % count].push(row);
    }
    groups
}

#[cfg(test)]
mod replica_tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use triplet_loss::{Mining, TripletLossConfig};
    use triplet_model::{EmbeddingHeadConfig, EmbeddingModelConfig, SmallCnnConfig};

    /// Every gradient of `model`'s parameters in `grads`, flattened in visiting order.
    fn flat(model: &EmbeddingModel, grads: &GradientsParams) -> Vec<f32> {
        struct Collect<'a>(&'a GradientsParams, Vec<f32>);
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                // Parameters without a gradient (none reached them) add nothing.
                if let Some(g) = self.0.get::<D>(param.id) {
                    self.1
                        .extend(g.into_data().try_into_vec_as::<f32>().unwrap());
                }
            }
        }
        let mut c = Collect(grads, Vec::new());
        model.visit(&mut c);
        c.1
    }

    /// Every float tensor of `model`, parameters and BatchNorm running statistics, flattened
    /// in visiting order (records and `valid()` read these values).
    fn state_of(model: &EmbeddingModel) -> Vec<f32> {
        struct Collect(Vec<f32>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0
                    .extend(param.val().into_data().try_into_vec_as::<f32>().unwrap());
            }
        }
        let mut c = Collect(Vec::new());
        model.visit(&mut c);
        c.0
    }

    /// After each step the running statistics are those of one BatchNorm update per step, the
    /// mean of the replicas' updates, and nothing is left pending: a checkpoint taken between
    /// steps holds them. (Burn leaves a step's update pending per thread; replicas run in a new
    /// thread each step, so without settling they were never merged within an epoch, and a
    /// single device's checkpoint lagged one update behind.)
    #[test]
    fn each_step_settles_one_averaged_batch_norm_update() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let config = EmbeddingModelConfig::new()
            .with_backbone(SmallCnnConfig::new().with_in_channels(1).into())
            .with_head(EmbeddingHeadConfig::new().with_dim(8));
        let model = config.init(&device);
        let loss = TripletLossConfig::new().with_mining(Mining::All).init();
        let labels = [0i64, 0, 1, 1, 2, 2, 3, 3];
        let images: Vec<f32> = (0..8 * 64)
            .map(|i| ((i * 53 + i / 64 * 17) % 31) as f32 / 15.0 - 1.0)
            .collect();
        // An independent copy (its own running statistics) of `model` as it stands.
        let copy = |m: &EmbeddingModel| config.init(&device).load_record(m.clone().into_record());
        for replicas in [1usize, 2] {
            let model = copy(&model);
            for _step in 0..3 {
                // Expected: each part's update made on its own copy, then their mean.
                let parts = split_by_class(&labels, replicas);
                let mut want = vec![0f32; state_of(&model).len()];
                for rows in &parts {
                    let part = copy(&model);
                    let x: Vec<f32> = rows
                        .iter()
                        .flat_map(|&r| images[r * 64..(r + 1) * 64].to_vec())
                        .collect();
                    let n = rows.len();
                    let x = Tensor::<4>::from_data(TensorData::new(x, [n, 1, 8, 8]), &device);
                    drop(part.forward(x));
                    settle_running_stats(&part);
                    for (w, v) in want.iter_mut().zip(state_of(&part)) {
                        *w += v;
                    }
                }
                for w in &mut want {
                    *w /= parts.len() as f32;
                }
                let before = state_of(&model);
                step_on_replicas(
                    &model,
                    &loss,
                    &vec![device.clone(); replicas],
                    &images,
                    &labels,
                    [1, 8, 8],
                );
                let got = state_of(&model);
                assert_ne!(got, before, "the running statistics moved");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "{replicas} replica(s), value {i}: {g} vs {w}"
                    );
                }
                // What a checkpoint records is the same.
                assert_eq!(state_of(&copy(&model)), got);
            }
        }
    }

    #[test]
    fn whole_classes_go_to_each_part() {
        let parts = split_by_class(&[7, 7, 3, 3, 9, 9, 1, 1, 5, 5], 2);
        assert_eq!(parts, [vec![0, 1, 4, 5, 8, 9], vec![2, 3, 6, 7]]);
        assert_eq!(split_by_class(&[1, 1, 2, 2], 1), [vec![0, 1, 2, 3]]);
    }

    /// Two replicas (here on one device) give the mean of their parts' losses and gradients,
    /// each part mined on its own.
    #[test]
    fn replicas_average_their_parts() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = EmbeddingModelConfig::new()
            .with_backbone(SmallCnnConfig::new().with_in_channels(1).into())
            .with_head(EmbeddingHeadConfig::new().with_dim(8))
            .init(&device);
        let loss = TripletLossConfig::new()
            .with_mining(Mining::All)
            .with_margin(1.0)
            .init();
        let labels = [0i64, 0, 1, 1, 2, 2, 3, 3];
        let images: Vec<f32> = (0..8 * 64)
            .map(|i| ((i * 37 + i / 64 * 11) % 29) as f32 / 14.0 - 1.0)
            .collect();
        let (value, stats, grads) = step_on_replicas(
            &model,
            &loss,
            &[device.clone(), device.clone()],
            &images,
            &labels,
            [1, 8, 8],
        );
        let mut want_value = 0.0;
        let mut want_grads: Vec<f32> = Vec::new();
        let mut triplets = 0;
        for rows in [[0usize, 1, 4, 5], [2, 3, 6, 7]] {
            let x: Vec<f32> = rows
                .iter()
                .flat_map(|&r| images[r * 64..(r + 1) * 64].to_vec())
                .collect();
            let y: Vec<i64> = rows.iter().map(|&r| labels[r]).collect();
            let x = Tensor::<4>::from_data(TensorData::new(x, [4, 1, 8, 8]), &device);
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [4]), &device);
            let out = loss.forward_with_stats(model.forward(x), y);
            want_value += 0.5 * f64::from(out.loss.clone().into_scalar::<f32>());
            triplets += out.stats.triplets;
            let g = flat(
                &model,
                &GradientsParams::from_grads(out.loss.backward(), &model),
            );
            if want_grads.is_empty() {
                want_grads = g.iter().map(|v| 0.5 * v).collect();
            } else {
                for (w, v) in want_grads.iter_mut().zip(g) {
                    *w += 0.5 * v;
                }
            }
        }
        assert!((value - want_value).abs() < 1e-6, "{value} vs {want_value}");
        assert!(value > 0.0, "the margin makes the loss positive");
        assert_eq!(stats.triplets, triplets);
        let got = flat(&model, &grads);
        assert_eq!(got.len(), want_grads.len());
        let scale = want_grads.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0);
        for (g, w) in got.iter().zip(&want_grads) {
            assert!((g - w).abs() <= 1e-5 * scale, "{g} vs {w}");
        }
    }
}
