//! Loading a trained model for `triplet eval`, `embed` and `export`: from a run folder (its
//! best checkpoint, else its latest), a checkpoint folder, or a model file with the run's
//! `config.toml` beside it or in its run folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use triplet_model::EmbeddingModel;

use super::weights::{self, WeightsError};
use super::{CONFIG_FILE, MODEL_FILE, RunDir, checkpoint};
use crate::config::ExperimentConfig;
use crate::console::say;
use crate::data::augment::Transform;

/// A model ready for inference, with the config it was trained with.
pub struct Trained {
    /// The model, on the requested device, in inference mode.
    pub model: EmbeddingModel,
    /// The run's config.
    pub config: ExperimentConfig,
    /// The weights file loaded.
    pub weights: PathBuf,
    /// The run folder, when the weights belong to one.
    pub run: Option<RunDir>,
    /// Which weights these are, for messages (`best checkpoint step-…`, `model file`).
    pub which: String,
    /// The evaluation input transform (normalisation only).
    pub transform: Arc<Transform>,
}

/// The input shape of the data at `path`, when known without decoding (IDX files).
pub fn native_shape(path: &Path) -> Option<(usize, [usize; 2])> {
    crate::data::source::open(path).ok()?.train.native_shape()
}

/// Weights to try for a `--checkpoint` path: the file, its config file, the run folder and a
/// description.
struct Candidate {
    weights: PathBuf,
    config: PathBuf,
    run: Option<RunDir>,
    which: String,
}

/// The weights `path` names, in the order to try them: for a run folder its best checkpoint,
/// then its latest, then the older ones (a damaged checkpoint is passed over with a warning).
fn resolve(path: &Path) -> Result<Vec<Candidate>> {
    if !path.exists() {
        bail!("checkpoint {} does not exist", path.display());
    }
    if path.is_dir() {
        if RunDir::is_run(path) {
            let run = RunDir::new(path);
            let found = run.for_inference()?;
            if !found.is_empty() {
                return Ok(found
                    .into_iter()
                    .map(|(dir, kind)| {
                        let name = dir.file_name().unwrap_or_default().to_string_lossy();
                        Candidate {
                            weights: dir.join(MODEL_FILE),
                            config: dir.join(CONFIG_FILE),
                            run: Some(run.clone()),
                            which: format!("{kind} checkpoint {name}"),
                        }
                    })
                    .collect());
            }
        }
        if path.join(MODEL_FILE).is_file() {
            return Ok(vec![Candidate {
                weights: path.join(MODEL_FILE),
                config: path.join(CONFIG_FILE),
                run: RunDir::of_folder(path),
                which: format!("model of {}", path.display()),
            }]);
        }
        bail!(
            "{} is neither a run folder nor a checkpoint: it has no checkpoints/ with a complete \
             checkpoint and no model.bpk",
            path.display()
        );
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = [dir.join(CONFIG_FILE)]
        .into_iter()
        .chain(RunDir::of_folder(dir).map(|r| r.config_file()))
        .find(|c| c.is_file())
        .unwrap_or_else(|| dir.join(CONFIG_FILE));
    Ok(vec![Candidate {
        weights: path.to_path_buf(),
        config,
        run: RunDir::of_folder(dir),
        which: format!("model file {}", path.display()),
    }])
}

/// Loads the model named by `path` onto `device`. `native` gives the input shape (channels,
/// `[height, width]`) of some data when known; it is asked only for runs whose config does not
/// record its input (runs of older versions), after the run's own training data.
pub fn load(
    path: &Path,
    device: &Device,
    native: impl FnOnce() -> Option<(usize, [usize; 2])>,
) -> Result<Trained> {
    let candidates = resolve(path)?;
    let mut native = Some(native);
    let mut damaged: Vec<String> = Vec::new();
    let count = candidates.len();
    for (i, candidate) in candidates.into_iter().enumerate() {
        // The weights of a checkpoint are checked against the sums written with them.
        let loaded = match checkpoint::verify_model_file(&candidate.weights) {
            Ok(()) => load_one(&candidate, device, &mut native),
            Err(why) => Err(Load::Damaged(why)),
        };
        match loaded {
            Ok(trained) => {
                for line in &damaged {
                    say(&format!(
                        "warning: {line}; using the {} instead",
                        trained.which
                    ));
                }
                return Ok(trained);
            }
            // Only a checkpoint of a run folder has a fallback.
            Err(Load::Damaged(why)) if i + 1 < count => {
                damaged.push(format!("{} is damaged: {why}", candidate.which));
            }
            Err(Load::Damaged(why)) => {
                damaged.push(format!("{} is damaged: {why}", candidate.which));
                bail!(
                    "no intact weights in {}: {}",
                    path.display(),
                    damaged.join("; ")
                );
            }
            Err(Load::Other(e)) => return Err(e),
        }
    }
    unreachable!("resolve returns at least one candidate")
}

/// Why one candidate did not load: damaged (try the next), or another error (stop).
enum Load {
    Damaged(String),
    Other(anyhow::Error),
}

fn load_one(
    candidate: &Candidate,
    device: &Device,
    native: &mut Option<impl FnOnce() -> Option<(usize, [usize; 2])>>,
) -> Result<Trained, Load> {
    let Candidate {
        weights,
        config: config_path,
        run,
        which,
        ..
    } = candidate;
    let text = std::fs::read_to_string(config_path)
        .with_context(|| {
            format!(
                "cannot read {}, the config the model was trained with (it names the \
                 architecture); keep the run's config.toml beside the weights",
                config_path.display()
            )
        })
        .map_err(Load::Other)?;
    let config = ExperimentConfig::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", config_path.display()))
        .map_err(Load::Other)?;
    let d = &config.data;
    let native = if d.channels.is_none() || d.size.is_none() {
        d.path
            .as_deref()
            .and_then(native_shape)
            .or_else(|| native.take().and_then(|f| f()))
    } else {
        None
    };
    let transform = Transform::for_config(&config, native)
        .with_context(|| format!("invalid config {}", config_path.display()))
        .map_err(Load::Other)?
        .for_evaluation();
    let channels = transform.channels;
    let bytes = std::fs::read(weights)
        .with_context(|| format!("cannot read model weights {}", weights.display()))
        .map_err(Load::Other)?;
    let model = weights::load(config.model(channels).init(device), bytes).map_err(|e| match e {
        WeightsError::Incomplete(_) => Load::Damaged(e.to_string()),
        WeightsError::Mismatch(e) => Load::Other(anyhow::anyhow!(
            "{} does not hold weights for the model of {} ({} input channels): {e}",
            weights.display(),
            config_path.display(),
            channels
        )),
    })?;
    Ok(Trained {
        model,
        config,
        weights: weights.clone(),
        run: run.clone(),
        which: which.clone(),
        transform: Arc::new(transform),
    })
}

impl Trained {
    /// What identifies the embeddings this model makes: its weights file's size and CRC-32,
    /// with the embedding's size and distance (`crc32:1a2b3c4d:bytes:5242880:dim:64:euclidean`).
    /// Two weights files with the same bytes embed alike, wherever they are.
    pub fn identity_key(&self) -> Result<String> {
        let bytes = std::fs::read(&self.weights)
            .with_context(|| format!("reading {}", self.weights.display()))?;
        Ok(format!(
            "crc32:{:08x}:bytes:{}:dim:{}:{}",
            crc32fast::hash(&bytes),
            bytes.len(),
            self.config.model.dim,
            crate::config::toml_name(&self.config.loss.distance)
        ))
    }
}
