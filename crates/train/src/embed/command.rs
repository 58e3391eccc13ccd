//! `triplet embed`: a set's embeddings written as an embed folder ([`super::files`]).

use std::path::PathBuf;

use anyhow::Result;

use super::files::{EmbedInfo, Row, write_all};
use super::{Part, embed_set, open_part, say_model};
use crate::config::toml_name;
use crate::console::say;
use crate::device::Backend;
use crate::run::trained::{load, native_shape};

/// What `triplet embed` was asked to do.
#[derive(Debug, Clone)]
pub struct EmbedCommand {
    /// `--checkpoint`.
    pub checkpoint: PathBuf,
    /// `--data`.
    pub data: PathBuf,
    /// `--out`.
    pub out: PathBuf,
    /// `--backend`.
    pub backend: Backend,
    /// `--classes`.
    pub classes: Option<Vec<String>>,
}

/// Runs `triplet embed`: `embeddings.npy`, `labels.csv`, `vectors.tsv`, `metadata.tsv`, and
/// `embed.json` (the checkpoint, dimension and distance). Returns the number of embeddings.
pub fn embed_command(o: &EmbedCommand) -> Result<usize> {
    let device = o.backend.device().map_err(anyhow::Error::msg)?;
    let trained = load(&o.checkpoint, &device, || native_shape(&o.data))?;
    let opened = open_part(&o.data, Part::TestIfAny, o.classes.as_deref())?;
    say_model(&trained, o.backend);
    say(&format!("data: {}", opened.description));
    let (set, e) = embed_set(&trained, opened.set)?;
    let rows: Vec<Row> = e
        .indices
        .iter()
        .zip(&e.labels)
        .map(|(&i, &l)| Row {
            path: set.describe(i),
            label: set.classes()[l].clone(),
        })
        .collect();
    // Which model made them, for `triplet search --gallery` to check.
    let info = EmbedInfo {
        checkpoint: trained.weights.clone(),
        dim: e.rows.dim(),
        distance: toml_name(&trained.config.loss.distance),
        images: rows.len(),
        model: Some(trained.identity_key()?),
    };
    write_all(&o.out, e.rows.rows(), &rows, &info)?;
    say(&format!(
        "wrote {} embeddings ({}-d) to {}: embeddings.npy, labels.csv, vectors.tsv, metadata.tsv, \
         embed.json",
        rows.len(),
        e.rows.dim(),
        o.out.display()
    ));
    Ok(rows.len())
}
