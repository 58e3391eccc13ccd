//! `triplet train`: from a config and a data path to a trained model, with checkpoints,
//! progress, metrics and a final retrieval evaluation on the held-out split.

pub mod checkpoint;
pub mod report;
mod setup;
pub mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, FloatDType};
use serde_json::json;
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

pub use setup::{Plan, input_transform, learning_rate, optimizer};
use step::{settle_running_stats, step_on_replicas};

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
