//! `triplet embed`: a set's embeddings written as an embed folder ([`super::files`]).

use std::path::PathBuf;

#[cfg(feature = "parquet")]
use anyhow::Context;
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
    /// `--format`.
    pub format: EmbedFormat,
}

/// What `triplet embed` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EmbedFormat {
    /// embeddings.npy, labels.csv, vectors.tsv, metadata.tsv and embed.json.
    #[default]
    Npy,
    /// embeddings.parquet (id, path, label, a CSV list's other columns, and a fixed-size-list
    /// `vector` column) and embed.json: what LanceDB, Milvus bulk import, DuckDB and pandas
    /// read (cargo feature `parquet`).
    Parquet,
}

/// Runs `triplet embed`: `embeddings.npy`, `labels.csv`, `vectors.tsv`, `metadata.tsv`, and
/// `embed.json` (the checkpoint, dimension and distance). Returns the number of embeddings.
pub fn embed_command(o: &EmbedCommand) -> Result<usize> {
    if o.format == EmbedFormat::Parquet && !cfg!(feature = "parquet") {
        anyhow::bail!(
            "--format parquet: this build of triplet has no Parquet writer; build it with \
             `--features parquet` (cargo install --path crates/train --features parquet)"
        );
    }
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
    #[cfg(feature = "parquet")]
    if o.format == EmbedFormat::Parquet {
        let extra: Vec<(String, Vec<String>)> = set
            .column_names()
            .iter()
            .filter(|c| *c != "path" && *c != "label")
            .map(|c| {
                let all = set.column(c).expect("a listed column");
                (
                    c.clone(),
                    e.indices.iter().map(|&i| all[i].to_owned()).collect(),
                )
            })
            .collect();
        std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
        super::parquet::write_parquet(
            &o.out.join(super::parquet::PARQUET),
            e.rows.rows(),
            &rows,
            &extra,
        )?;
        super::files::write_info(&o.out, &info)?;
        say(&format!(
            "wrote {} embeddings ({}-d) to {}: embeddings.parquet, embed.json",
            rows.len(),
            e.rows.dim(),
            o.out.display()
        ));
        return Ok(rows.len());
    }
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
