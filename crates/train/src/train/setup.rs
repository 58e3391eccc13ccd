//! What a run needs before its first step: from its data, the train/evaluation split, the
//! input transforms and the P×K sampler ([`plan`]); from its config or its checkpoint, the
//! model, the optimiser and the run's state ([`start`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use triplet_model::torchvision::ImportReport;
use triplet_model::{EmbeddingModel, EmbeddingModelConfig};

use super::optim::optimizer;
use crate::config::{ExperimentConfig, toml_name};
use crate::console::say;
use crate::data::augment::Transform;
use crate::data::sampler::PkSampler;
use crate::data::source::{DataSource, ImageSet};
use crate::data::split::{Split, split};
use crate::run::RunDir;
use crate::run::checkpoint::Checkpoint;
use crate::run::state::RunState;
use crate::run::weights;

/// Everything a run needs from its data.
pub struct Plan {
    /// Training images.
    pub train: Arc<ImageSet>,
    /// Evaluation images, if the split leaves some.
    pub eval: Option<Arc<ImageSet>>,
    /// How the evaluation part was chosen, for messages.
    pub eval_description: String,
    /// Training transform (with augmentation).
    pub transform: Arc<Transform>,
    /// Evaluation transform (normalisation only).
    pub eval_transform: Arc<Transform>,
    /// The P×K sampler over the training images.
    pub sampler: PkSampler,
    /// Lines describing the run, printed at start.
    pub notes: Vec<String>,
}

/// Splits the data, resolves shapes and builds the sampler.
pub fn plan(config: &ExperimentConfig, source: DataSource, path: &Path) -> Result<Plan> {
    let mut notes = Vec::new();
    if !source.skipped_files.is_empty() {
        let names: Vec<String> = source
            .skipped_files
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        notes.push(format!(
            "warning: skipped {} file(s) that are not images by their extension: {}{}",
            source.skipped_files.len(),
            names.join(", "),
            if source.skipped_files.len() > 5 {
                ", …"
            } else {
                ""
            }
        ));
    }
    for class in &source.empty_classes {
        notes.push(format!(
            "warning: class folder `{class}` has no images; skipped"
        ));
    }
    let native = source.train.native_shape();
    let Split {
        train,
        eval,
        description: eval_description,
    } = split(source, &config.data, config.train.seed, &mut notes)?;
    if train.classes().len() < 2 {
        bail!(
            "{}: the training split has {} class(es); triplet training needs at least 2",
            path.display(),
            train.classes().len()
        );
    }

    let transform = Transform::for_config(config, native)?;
    let (channels, size) = (transform.channels, transform.size);
    let eval_transform = transform.clone().for_evaluation();

    // P×K: K from the class sizes, P to fill a batch of about 128.
    let mut sizes = vec![0usize; train.classes().len()];
    for &l in train.labels() {
        sizes[l] += 1;
    }
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    let mut k = config.sampler.k.unwrap_or_else(|| median.clamp(2, 16));
    let p = config.sampler.p.unwrap_or_else(|| {
        let fit = (train.len() / k).max(2);
        train.classes().len().min((128 / k).max(2)).min(fit)
    });
    if config.sampler.k.is_none() && p * k > train.len() {
        // Small data: fewer images per class so that one batch fits.
        k = (train.len() / p).max(2);
    }
    let labels: Vec<i64> = train.labels().iter().map(|&l| l as i64).collect();
    let sampler = PkSampler::new(&labels, p, k, config.train.seed).with_context(|| {
        format!(
            "cannot build P×K batches from {} ({} images, {} classes); set [sampler] p and k",
            path.display(),
            train.len(),
            train.classes().len()
        )
    })?;

    notes.push(format!(
        "data {}: training on {} images of {} classes{}",
        path.display(),
        train.len(),
        train.classes().len(),
        match &eval {
            Some(e) => format!(
                ", evaluating on {} images of {} classes ({eval_description})",
                e.len(),
                e.classes().len()
            ),
            None => ", no evaluation split".into(),
        }
    ));
    notes.push(format!(
        "input {channels}×{}×{}; model {} → {}-d; loss {} mining, {} distance, margin {}{}",
        size[0],
        size[1],
        toml_name(&config.model.backbone),
        config.model.dim,
        toml_name(&config.loss.mining),
        toml_name(&config.loss.distance),
        config.loss.margin,
        match config.loss.memory_size {
            0 => String::new(),
            n => format!(", against a cross-batch memory of {n}"),
        }
    ));
    notes.push(format!(
        "batches of P={p} classes × K={k} = {}, {} per epoch, {} epoch(s); optimizer {} lr {}",
        p * k,
        sampler.batches_per_epoch(),
        config.train.epochs,
        toml_name(&config.optimizer.name),
        config.optimizer.lr
    ));
    Ok(Plan {
        train: Arc::new(train),
        eval: eval.map(Arc::new),
        eval_description,
        transform: Arc::new(transform),
        eval_transform: Arc::new(eval_transform),
        sampler,
        notes,
    })
}

/// Fresh weights drawn from `seed` on the host CPU backend, so that every backend starts a run
/// from the same weights ([`crate::device::host`]: flex, else ndarray), with the torchvision
/// weights of `pretrained` loaded into the backbone. The training device casts them to its
/// precision when it loads the record.
pub fn initial_weights(
    config: &EmbeddingModelConfig,
    seed: u64,
    pretrained: Option<&Path>,
) -> Result<(ModuleRecord, Option<ImportReport>)> {
    let device = crate::device::host();
    device.seed(seed);
    let mut model = config.init(&device);
    let report = match pretrained {
        Some(path) => Some(model.load_torchvision(path)?),
        None => None,
    };
    Ok((model.into_record(), report))
}

/// The model (on `device`), its optimiser and the run's state at the first step: fresh
/// weights drawn from the seed, with the pretrained backbone if any, or the checkpoint's
/// weights, optimiser and position. A resumed run points `checkpoints/best` again if a kill
/// left it behind, and restarts early stopping's patience when `extends_epochs`. The backbone
/// is frozen as `[model]` says.
pub fn start(
    config: &ExperimentConfig,
    data: &Plan,
    device: &Device,
    resumed: Option<&Checkpoint>,
    run: &RunDir,
    extends_epochs: bool,
) -> Result<(EmbeddingModel, ModuleOptimizer, RunState)> {
    let model_config = config.model(data.transform.channels);
    let mut model = model_config.init(device);
    let mut optim = optimizer(&config.optimizer);
    let mut state = RunState::new(config.train.seed);
    match resumed {
        Some(ckpt) => {
            model = weights::load(model, ckpt.model.clone())
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("loading the model of {}", ckpt.dir.display()))?;
            optim = optim
                .from_bytes(Bytes::from_bytes_vec(ckpt.optimizer.clone()))
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("loading the optimiser of {}", ckpt.dir.display()))?;
            state = ckpt.state.clone();
            say(&format!(
                "resuming from {} (epoch {}, step {})",
                ckpt.dir.display(),
                state.sampler.epoch + 1,
                state.step
            ));
            // A kill between a checkpoint and its `best` pointer: point it again.
            if let Some(best) = state.best {
                run.repair_best(best.step)?;
            }
            if extends_epochs && state.validations_since_best > 0 {
                say("--epochs extends the run: early-stopping patience starts again");
                state.validations_since_best = 0;
            }
        }
        None => {
            let (record, report) = initial_weights(
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
    Ok((model, optim, state))
}
