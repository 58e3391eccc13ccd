//! The index layer: a persistent gallery ([`triplet_index`]) of a trained model's embeddings,
//! as `triplet index` ([`command`]) writes it and `triplet search --index` and `triplet serve`
//! read it.
//!
//! The index records the model that made it ([`model_of`]); vectors from any other model are
//! refused, never mixed in.

pub mod command;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde_json::json;
use triplet_index::{Index, Meta, Metric, Model};

use crate::console::say;
use crate::data::listing::is_image;
use crate::data::source::ImageSet;
use crate::embed::files::{is_embed_dir, read_embed_dir};
use crate::embed::{embed_set, image_files, open_images};
use crate::files::same_file;
use crate::run::trained::{Trained, load};

/// The index's record of a trained model: its identity key and what `index info` shows.
pub fn model_of(trained: &Trained) -> Result<Model> {
    let weights = trained
        .weights
        .canonicalize()
        .unwrap_or_else(|_| trained.weights.clone());
    Ok(Model {
        key: trained.identity_key()?,
        info: json!({
            "checkpoint": weights,
            "which": trained.which,
            "dim": trained.config.model.dim,
            "distance": crate::config::toml_name(&trained.config.loss.distance),
            "backbone": crate::config::toml_name(&trained.config.model.backbone),
        }),
    })
}

/// The metric a trained model's embeddings are compared with.
pub fn metric_of(trained: &Trained) -> Metric {
    crate::config::toml_name(&trained.config.loss.distance)
        .parse()
        .expect("every configured distance is an index metric")
}

/// Refuses a model other than the index's.
pub fn check_model(index: &Index, trained: &Trained) -> Result<()> {
    let key = trained.identity_key()?;
    let model = &index.spec().model;
    if model.key != key {
        bail!(
            "{} holds embeddings of another model ({}, {}), not of {} ({key}): distances between \
             two models' embeddings mean nothing; build an index with this model",
            index.dir().display(),
            model.info["checkpoint"].as_str().unwrap_or("?"),
            model.key,
            trained.weights.display()
        );
    }
    Ok(())
}

/// Loads the model of `index`: `checkpoint` if given (which must be that model), else the
/// checkpoint the index recorded.
pub fn load_model_for(
    index: &Index,
    checkpoint: Option<&Path>,
    device: &Device,
) -> Result<Trained> {
    let recorded = index.spec().model.info["checkpoint"]
        .as_str()
        .map(PathBuf::from);
    let path = match (checkpoint, &recorded) {
        (Some(p), _) => p.to_owned(),
        (None, Some(p)) => p.clone(),
        (None, None) => bail!(
            "{} does not record its model's checkpoint; give --checkpoint",
            index.dir().display()
        ),
    };
    let trained = load(&path, device, || None).with_context(|| {
        if checkpoint.is_none() {
            format!(
                "loading the model {} was built with (give --checkpoint if it moved)",
                index.dir().display()
            )
        } else {
            format!("loading {}", path.display())
        }
    })?;
    check_model(index, &trained)?;
    Ok(trained)
}

/// Items to add: vectors with their metadata.
pub type Entries = Vec<(Vec<f32>, Meta)>;

/// A set's embedded images as entries: path, class (unless `label` overrides it; none for
/// unlabelled images), and a CSV list's other columns.
fn entries_of_set(trained: &Trained, set: ImageSet, label: Option<&str>) -> Result<Entries> {
    let (set, e) = embed_set(trained, set)?;
    let extra_columns: Vec<(String, Vec<String>)> = set
        .column_names()
        .iter()
        .filter(|c| *c != "path" && *c != "label")
        .map(|c| {
            let values = set
                .column(c)
                .expect("a listed column")
                .into_iter()
                .map(str::to_owned);
            (c.clone(), values.collect())
        })
        .collect();
    let unlabelled = set.classes() == ["-"];
    Ok(e.rows
        .rows()
        .iter()
        .zip(e.indices.iter().zip(&e.labels))
        .map(|(row, (&i, &l))| {
            let meta = Meta {
                path: Some(set.describe(i)),
                label: match label {
                    Some(l) => Some(l.to_owned()),
                    None if unlabelled => None,
                    None => Some(set.classes()[l].clone()),
                },
                extra: extra_columns
                    .iter()
                    .map(|(c, values)| (c.clone(), values[i].clone()))
                    .collect(),
            };
            (row.to_vec(), meta)
        })
        .collect())
}

/// What `--data` holds, embedded by `trained`: a `triplet embed` folder (checked to come from
/// this model), an image file, or images as `eval` reads them.
pub fn entries_from(trained: &Trained, data: &Path, label: Option<&str>) -> Result<Entries> {
    if is_embed_dir(data) {
        let folder = read_embed_dir(data)?;
        let Some(info) = &folder.info else {
            bail!(
                "{} has no readable embed.json, so which model made its embeddings is unknown; \
                 re-run `triplet embed`, or index the images",
                data.display()
            );
        };
        let same = match &info.model {
            Some(key) => *key == trained.identity_key()?,
            None => same_file(&info.checkpoint, &trained.weights),
        };
        if !same {
            bail!(
                "{} was embedded by {}, not by {}: distances between two models' embeddings mean \
                 nothing",
                data.display(),
                info.checkpoint.display(),
                trained.weights.display()
            );
        }
        say(&format!(
            "{} embeddings ({}-d) from {}",
            folder.rows.len(),
            folder.rows.dim(),
            data.display()
        ));
        return Ok(folder
            .rows
            .rows()
            .iter()
            .zip(folder.labels)
            .map(|(row, r)| {
                let meta = Meta {
                    path: Some(r.path),
                    label: Some(label.map_or(r.label, str::to_owned)),
                    extra: Default::default(),
                };
                (row.to_vec(), meta)
            })
            .collect());
    }
    let set = if data.is_file() && is_image(data) {
        say(&format!("data: {}", data.display()));
        image_files(&[data.to_owned()], trained.transform.channels)?
    } else {
        let (set, text) = open_images(data)?;
        say(&format!("data: {text}"));
        set
    };
    entries_of_set(trained, set, label)
}
