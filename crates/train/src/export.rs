//! `triplet export`: a trained model's weights as one safetensors file.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::console::say;
use crate::files::{folder_of, write_atomic};
use crate::run::trained::load;

/// Runs `triplet export`: the model weights as safetensors (tensor names are the module paths,
/// e.g. `backbone.blocks.0.conv.weight`), with the run's config in the file's metadata.
pub fn export(checkpoint: &Path, out: &Path) -> Result<()> {
    let device = crate::device::host();
    let trained = load(checkpoint, &device, || None)?;
    if out.is_dir() {
        bail!(
            "--out {} is a folder; give a file name such as model.safetensors",
            out.display()
        );
    }
    let mut store = SafetensorsStore::from_bytes(None)
        .metadata("triplet_config", trained.config.to_toml())
        .metadata("triplet_source", trained.weights.display().to_string());
    trained
        .model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("collecting the model's tensors")?;
    let bytes = store
        .get_bytes()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("encoding safetensors")?;
    let dir = folder_of(out);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(out, &bytes)?;
    say(&format!(
        "exported {} ({}) to {} ({} bytes, safetensors)",
        trained.which,
        trained.weights.display(),
        out.display(),
        bytes.len()
    ));
    Ok(())
}
