//! From `triplet train`'s options to one resolved plan, before anything is written or trained:
//! the flags checked against each other, the config (the file's, the defaults, or a resumed
//! run's own), the checkpoint to resume from, the devices and their float type, the data with
//! its split, transforms and sampler, and the input the run records in its config.

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, FloatDType};

use super::TrainOptions;
use super::setup::{self, Plan};
use crate::config::{ExperimentConfig, Precision, toml_name};
use crate::console::say;
use crate::data::source;
use crate::device::Backend;
use crate::run::RunDir;
use crate::run::checkpoint::Checkpoint;
use crate::run::weights;

/// A run as it will go: everything `train` needs to start.
pub struct Resolved {
    /// The run folder.
    pub run: RunDir,
    /// The config as the run uses and saves it: flags applied, input resolved.
    pub config: ExperimentConfig,
    /// The checkpoint resumed from.
    pub resumed: Option<Checkpoint>,
    /// `--devices` as the run trains on them (empty: the backend's default device).
    pub devices: Vec<usize>,
    /// Those devices, configured for the run's float type; the first holds the model.
    pub replica_devices: Vec<Device>,
    /// The data: split, transforms and sampler.
    pub data: Plan,
    /// Whether `--epochs` extends a resumed run beyond its saved number of epochs.
    pub extends_epochs: bool,
}

/// Resolves `options`; the first problem is the error, before anything is written.
pub fn resolve(options: &TrainOptions) -> Result<Resolved> {
    check_flags(options)?;
    let run = RunDir::new(&options.out);

    // The run's config and position: fresh, or from the latest checkpoint.
    let (mut config, resumed) = if options.resume && run.started_without_checkpoint()? {
        // Killed before its first checkpoint (a preempted job re-runs the same command):
        // nothing to go on from, so the run starts over, with the config it was started with.
        let config = ExperimentConfig::load(&run.config_file())?;
        say(&format!(
            "{} holds the run's config but no checkpoint yet (it stopped before the first): \
             starting it again from step 0 with that config",
            run.path().display()
        ));
        (config, None)
    } else if options.resume {
        let resumable = run.load_resumable(decodes)?;
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
        let config = match &options.config {
            Some(path) => ExperimentConfig::load(path)?,
            None => ExperimentConfig::default(),
        };
        if run.holds_checkpoint()? {
            bail!(
                "{} already holds a run; pass --resume to continue it, or choose another --out",
                run.path().display()
            );
        }
        (config, None)
    };
    let devices = choose_devices(options, resumed.as_ref());
    let replica_devices: Vec<Device> = if devices.is_empty() {
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
    configure_precision(&replica_devices, config.train.precision, options.backend)?;
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
    let data = setup::plan(&config, source, &data_path)?;
    if config.loss.memory_size > 0 {
        let batch = data.sampler.batch_size();
        if config.loss.memory_size < batch {
            bail!(
                "loss.memory_size = {} is smaller than a batch of P×K = {batch} images: the \
                 cross-batch memory holds at least one batch",
                config.loss.memory_size
            );
        }
        if config.loss.memory_size > data.train.len() {
            bail!(
                "loss.memory_size = {} is larger than the {} training images: the cross-batch \
                 memory would hold several copies of each",
                config.loss.memory_size,
                data.train.len()
            );
        }
        if config.loss.swap {
            bail!(
                "loss.swap cannot be combined with loss.memory_size: the swap gathers every \
                 mined triplet against the whole memory (and PML's swap with a memory is not \
                 defined correctly, so there is nothing to match)"
            );
        }
        if replica_devices.len() > 1 {
            bail!(
                "--devices {}: the cross-batch memory (loss.memory_size) trains on one device \
                 only",
                list_devices(&devices)
            );
        }
    }
    let p = data.sampler.classes_per_batch();
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
    config.data.channels = Some(data.transform.channels);
    config.data.size = Some(data.transform.size);
    config.data.mean = Some(data.transform.mean.clone());
    config.data.std = Some(data.transform.std.clone());
    config.data.resize = Some(data.transform.resize);
    Ok(Resolved {
        run,
        config,
        resumed,
        devices,
        replica_devices,
        data,
        extends_epochs: options.epochs.is_some_and(|e| e > saved_epochs),
    })
}

/// The flags that a resumed run cannot take: it keeps what it was started with.
fn check_flags(options: &TrainOptions) -> Result<()> {
    if !options.resume {
        return Ok(());
    }
    if options.precision.is_some() {
        bail!(
            "--precision cannot be combined with --resume: a run keeps the precision it started \
             with"
        );
    }
    if options.pretrained.is_some() {
        bail!(
            "--pretrained cannot be combined with --resume: the run's checkpoint in {} already \
             holds its weights",
            options.out.display()
        );
    }
    if options.config.is_some() {
        bail!(
            "--config cannot be combined with --resume: a resumed run keeps the config saved in \
             {} (--epochs and --data may still be given)",
            options.out.display()
        );
    }
    Ok(())
}

/// `--devices`, else those the resumed run trained on (they decide how each batch is split and
/// how BatchNorm statistics are averaged), else the backend's default (empty).
fn choose_devices(options: &TrainOptions, resumed: Option<&Checkpoint>) -> Vec<usize> {
    match resumed.map(|c| &c.state.devices) {
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
    }
}

/// Checks that `devices` (of `backend`) run `precision`'s float type, and returns the half type
/// a step casts its batch to (`None` for f32). The devices stay f32: weights, optimiser state and
/// checkpoints are f32, the forward and backward half ([`super::amp`]). Also used by the
/// training benchmark, so that it measures what `triplet train` runs.
pub fn configure_precision(
    devices: &[Device],
    precision: Precision,
    backend: Backend,
) -> Result<Option<FloatDType>> {
    let Some(dtype) = super::amp::half_dtype(precision) else {
        return Ok(None);
    };
    if let Some(device) = devices.iter().find(|d| !d.supports_dtype(dtype)) {
        bail!(
            "backend {backend} does not support {} on {device:?} (train.precision / --precision)",
            toml_name(&precision)
        );
    }
    Ok(Some(dtype))
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
/// Only parses: no tensor is created, so no device is touched before the run has chosen its
/// devices.
fn decodes(ckpt: &Checkpoint) -> Result<(), String> {
    ExperimentConfig::from_toml(&ckpt.config)
        .map_err(|e| format!("config.toml is not a valid config ({e})"))?;
    weights::decode(ckpt.model.clone()).map_err(|e| e.to_string())?;
    burn::optim::OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
        ckpt.optimizer.clone(),
    ))
    .map_err(|e| format!("optimizer.bpk is not a complete optimiser record ({e})"))?;
    Ok(())
}
