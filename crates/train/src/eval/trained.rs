//! Loading a trained model for `triplet eval`, `embed` and `export`: from a run folder (its
//! best checkpoint, else its latest), a checkpoint folder, or a model file with the run's
//! `config.toml` beside it or in its run folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use triplet_model::EmbeddingModel;

use crate::config::ExperimentConfig;
use crate::data::augment::Transform;
use crate::train::{checkpoint, input_transform};

/// A model ready for inference, with the config it was trained with.
pub struct Trained {
    /// The model, on the requested device, in inference mode.
    pub model: EmbeddingModel,
    /// The run's config.
    pub config: ExperimentConfig,
    /// The weights file loaded.
    pub weights: PathBuf,
    /// The run folder, when the weights belong to one.
    pub run: Option<PathBuf>,
    /// Which weights these are, for messages (`best checkpoint step-…`, `model file`).
    pub which: String,
    /// The evaluation input transform (normalisation only).
    pub transform: Arc<Transform>,
}

/// The input shape of the data at `path`, when known without decoding (IDX files).
pub fn native_shape(path: &Path) -> Option<(usize, [usize; 2])> {
    crate::data::source::open(path).ok()?.train.native_shape()
}

/// The weights file, its config file, the run folder and a description for `path`.
fn resolve(path: &Path) -> Result<(PathBuf, PathBuf, Option<PathBuf>, String)> {
    if !path.exists() {
        bail!("checkpoint {} does not exist", path.display());
    }
    let run_of = |dir: &Path| -> Option<PathBuf> {
        let parent = dir.parent()?;
        if parent.file_name().is_some_and(|n| n == "checkpoints") {
            parent.parent().map(Path::to_path_buf)
        } else {
            Some(dir.to_path_buf())
        }
    };
    if path.is_dir() {
        if path.join("checkpoints").is_dir()
            && let Some((dir, kind)) = checkpoint::best_or_latest(path)?
        {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            return Ok((
                dir.join("model.bpk"),
                dir.join("config.toml"),
                Some(path.to_path_buf()),
                format!("{kind} checkpoint {name}"),
            ));
        }
        if path.join("model.bpk").is_file() {
            return Ok((
                path.join("model.bpk"),
                path.join("config.toml"),
                run_of(path),
                format!("model of {}", path.display()),
            ));
        }
        bail!(
            "{} is neither a run folder nor a checkpoint: it has no checkpoints/ with a complete \
             checkpoint and no model.bpk",
            path.display()
        );
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = [dir.join("config.toml")]
        .into_iter()
        .chain(run_of(dir).map(|r| r.join("config.toml")))
        .find(|c| c.is_file())
        .unwrap_or_else(|| dir.join("config.toml"));
    Ok((
        path.to_path_buf(),
        config,
        run_of(dir),
        format!("model file {}", path.display()),
    ))
}

/// Loads the model named by `path` onto `device`. `native` gives the input shape (channels,
/// `[height, width]`) of some data when known; it is asked only for runs whose config does not
/// record its input (runs of older versions), after the run's own training data.
pub fn load(
    path: &Path,
    device: &Device,
    native: impl FnOnce() -> Option<(usize, [usize; 2])>,
) -> Result<Trained> {
    let (weights, config_path, run, which) = resolve(path)?;
    let text = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "cannot read {}, the config the model was trained with (it names the architecture); \
             keep the run's config.toml beside the weights",
            config_path.display()
        )
    })?;
    let config = ExperimentConfig::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", config_path.display()))?;
    let d = &config.data;
    let native = if d.channels.is_none() || d.size.is_none() {
        d.path.as_deref().and_then(native_shape).or_else(native)
    } else {
        None
    };
    let transform = Transform {
        augment: None,
        ..input_transform(&config, native)
            .with_context(|| format!("invalid config {}", config_path.display()))?
    };
    let channels = transform.channels;
    let bytes = std::fs::read(&weights)
        .with_context(|| format!("cannot read model weights {}", weights.display()))?;
    let model = config.model(channels).init(device);
    let model = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .and_then(|r| model.try_load_record(r.cast_to_module_dtype()))
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| {
            format!(
                "{} does not hold weights for the model of {} ({} input channels)",
                weights.display(),
                config_path.display(),
                channels
            )
        })?;
    Ok(Trained {
        model,
        config,
        weights,
        run,
        which,
        transform: Arc::new(transform),
    })
}
