//! `triplet eval`, `triplet embed` and `triplet export`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde_json::json;

use super::embed::{EmbedOptions, Embedded, embed};
use super::export::{Row, write_all};
use super::metrics::{RECALL_AT, Retrieval, retrieval};
use super::plot;
use crate::config::toml_name;
use crate::console::say;
use crate::data::source::{self, ImageSet};
use crate::device::Backend;
use crate::files::write_atomic;
use crate::run::trained::{Trained, load, native_shape};

/// Which part of a data path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The test images of an IDX folder if it has them (queries, embeddings).
    TestIfAny,
    /// The training images (references).
    Train,
}

/// Opens `path` and picks its part; returns the set, a description, and whether that is the
/// training part (the whole source when it has no test part).
fn open_part(
    path: &Path,
    part: Part,
    classes: Option<&[String]>,
) -> Result<(ImageSet, String, bool)> {
    let source = source::open(path)?;
    if !source.skipped_files.is_empty() {
        say(&format!(
            "warning: skipped {} file(s) of {} that are not images by their extension",
            source.skipped_files.len(),
            path.display()
        ));
    }
    let (set, what, is_train) = match (part, source.test) {
        (Part::TestIfAny, Some(test)) => (test, "its t10k test images", false),
        (Part::Train, Some(_)) => (source.train, "its training images", true),
        (_, None) => (source.train, "all images", true),
    };
    let set = match classes {
        Some(names) => {
            let unknown: Vec<&String> = names
                .iter()
                .filter(|n| !set.classes().contains(n))
                .collect();
            if !unknown.is_empty() {
                bail!(
                    "--classes names {} that {} does not have (classes: {})",
                    unknown
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    path.display(),
                    set.classes().join(", ")
                );
            }
            set.with_classes(names)
        }
        None => set,
    };
    if set.is_empty() {
        bail!("{} has no images to use", path.display());
    }
    let description = format!(
        "{} ({what}{}: {} images, {} classes)",
        path.display(),
        if classes.is_some() {
            ", selected classes"
        } else {
            ""
        },
        set.len(),
        set.classes().len()
    );
    Ok((set, description, is_train))
}

fn say_model(trained: &Trained, backend: Backend) {
    say(&format!(
        "model: {} ({}), backend {backend}",
        trained.which,
        trained.weights.display()
    ));
}

fn embed_set(trained: &Trained, set: ImageSet) -> Result<(Arc<ImageSet>, Embedded)> {
    let set = Arc::new(set);
    let embedded = embed(
        &trained.model,
        &set,
        &trained.transform,
        EmbedOptions::of(&trained.config),
        &|line| say(line),
    )?;
    if embedded.skipped > 0 {
        say(&format!(
            "warning: {} unreadable image(s) left out",
            embedded.skipped
        ));
    }
    Ok((set, embedded))
}

/// What `triplet eval` was asked to do.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// `--checkpoint`.
    pub checkpoint: PathBuf,
    /// `--data`: the queries.
    pub data: PathBuf,
    /// `--reference`.
    pub reference: Option<PathBuf>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--backend`.
    pub backend: Backend,
    /// `--plot`.
    pub plot: bool,
    /// `--classes`.
    pub classes: Option<Vec<String>>,
}

/// Runs `triplet eval`: prints a table and writes `metrics.json`.
pub fn eval(o: &EvalOptions) -> Result<Retrieval> {
    let device = o.backend.device().map_err(anyhow::Error::msg)?;
    let trained = load(&o.checkpoint, &device, || native_shape(&o.data))?;
    let out = o
        .out
        .clone()
        .or_else(|| trained.run.as_ref().map(|r| r.path().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("."));
    let classes = o.classes.as_deref();
    let (queries, query_text, queries_are_train) = open_part(&o.data, Part::TestIfAny, classes)?;
    let mut references = match &o.reference {
        Some(path) => Some(open_part(path, Part::Train, classes)?),
        None => None,
    };
    // The same images on both sides would make every query its own nearest neighbour.
    let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(reference) = &o.reference
        && queries_are_train
        && same_file(reference, &o.data)
    {
        say(&format!(
            "note: --reference {} holds the same images as --data, so every query would find \
             itself; ranking each query against the others instead (leave-one-out)",
            reference.display()
        ));
        references = None;
    }
    say_model(&trained, o.backend);
    say(&format!("queries: {query_text}"));
    if let Some((_, text, _)) = &references {
        say(&format!("references: {text}"));
    }

    let started = Instant::now();
    let (query_set, q) = embed_set(&trained, queries)?;
    let refs = match references {
        Some((set, _, _)) => Some(embed_set(&trained, set)?),
        None => None,
    };
    // Classes are matched by name between the two sets.
    let mut ids = HashMap::<String, usize>::new();
    let mut label_ids = |set: &ImageSet, labels: &[usize]| -> Vec<usize> {
        labels
            .iter()
            .map(|&l| {
                let n = ids.len();
                *ids.entry(set.classes()[l].clone()).or_insert(n)
            })
            .collect()
    };
    let q_labels = label_ids(&query_set, &q.labels);
    let r_labels = refs.as_ref().map(|(set, e)| label_ids(set, &e.labels));
    let distance = trained.config.loss().distance;
    let r = retrieval(
        &q.embeddings,
        &q_labels,
        refs.as_ref()
            .zip(r_labels.as_deref())
            .map(|((_, e), l)| (e.embeddings.as_slice(), l)),
        q.dim,
        distance,
        &device,
    )?;
    let seconds = started.elapsed().as_secs_f64();

    let mode = if refs.is_some() {
        "query-reference"
    } else {
        "leave-one-out"
    };
    say(&format!(
        "{mode}: {} queries counted of {}, {}-d, {} distance, {seconds:.1} s",
        r.queries,
        r.total_queries,
        q.dim,
        toml_name(&trained.config.loss.distance)
    ));
    say("  metric        value");
    say(&format!("  P@1           {:.4}", r.precision_at_1));
    for (k, v) in RECALL_AT.iter().zip(r.recall_at) {
        say(&format!("  Recall@{k:<6} {v:.4}"));
    }
    say(&format!("  R-Precision   {:.4}", r.r_precision));
    say(&format!("  MAP@R         {:.4}", r.map_at_r));
    if r.queries < r.total_queries {
        say(&format!(
            "note: {} queries have no relevant reference (their class has no other image) and \
             are not counted",
            r.total_queries - r.queries
        ));
    }

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut metrics = r.to_json();
    metrics["mode"] = json!(mode);
    metrics["checkpoint"] = json!(trained.weights.display().to_string());
    metrics["data"] = json!(o.data.display().to_string());
    metrics["reference"] = json!(
        refs.as_ref()
            .and(o.reference.as_ref())
            .map(|p| p.display().to_string())
    );
    metrics["classes"] = json!(o.classes);
    metrics["distance"] = json!(trained.config.loss.distance);
    metrics["dim"] = json!(q.dim);
    metrics["backend"] = json!(o.backend.to_string());
    metrics["seconds"] = json!(seconds);
    metrics["skipped_images"] = json!(q.skipped + refs.as_ref().map_or(0, |r| r.1.skipped));
    let path = out.join("metrics.json");
    let text = serde_json::to_string_pretty(&metrics).expect("JSON values serialise");
    write_atomic(&path, format!("{text}\n").as_bytes())?;
    say(&format!("metrics written to {}", path.display()));

    if o.plot {
        let png = plot::pca_png(
            &q.embeddings,
            q.dim,
            &q.labels,
            query_set.classes(),
            &format!("PCA of {} query embeddings", q.indices.len()),
            10_000,
        )?;
        write_atomic(&out.join("embeddings_pca.png"), &png)?;
        let mut written = vec!["embeddings_pca.png"];
        if let Some(run) = &trained.run
            && plot::write_curves(run, &out)?
        {
            written.push("curves.png");
        }
        say(&format!(
            "plots: {} in {}",
            written.join(", "),
            out.display()
        ));
    }
    Ok(r)
}

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

/// Runs `triplet embed`: `embeddings.npy`, `labels.csv`, `vectors.tsv`, `metadata.tsv`.
pub fn embed_command(o: &EmbedCommand) -> Result<usize> {
    let device = o.backend.device().map_err(anyhow::Error::msg)?;
    let trained = load(&o.checkpoint, &device, || native_shape(&o.data))?;
    let (set, text, _) = open_part(&o.data, Part::TestIfAny, o.classes.as_deref())?;
    say_model(&trained, o.backend);
    say(&format!("data: {text}"));
    let (set, e) = embed_set(&trained, set)?;
    let rows: Vec<Row> = e
        .indices
        .iter()
        .zip(&e.labels)
        .map(|(&i, &l)| Row {
            path: set.describe(i),
            label: set.classes()[l].clone(),
        })
        .collect();
    write_all(&o.out, &e.embeddings, e.dim, &rows)?;
    say(&format!(
        "wrote {} embeddings ({}-d) to {}: embeddings.npy, labels.csv, vectors.tsv, metadata.tsv",
        rows.len(),
        e.dim,
        o.out.display()
    ));
    Ok(rows.len())
}

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
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
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
