//! `triplet eval`, `triplet embed` and `triplet export`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde_json::json;

use triplet_loss::Distance;

use super::applications::{
    Group, PairsSource, choose_shown, has_columns, pairs_from_labels, pairs_of_file,
    read_reid_table, reid_columns, score_pairs, thumb,
};
use super::clustering::{Clustering, clustering};
use super::embed::{EmbedOptions, Embedded, embed};
use super::export::{Row, write_all};
use super::knn::nearest;
use super::metrics::{RECALL_AT, Retrieval, retrieval_per_query};
use super::pairs::read_pairs;
use super::plot::{self, Hit, RocCurve, ShownQuery, retrievals_png, roc_png};
use super::reid::{Reid, Split, reid};
use super::verification::{FAR_TARGETS, Verification, verification};
use crate::config::toml_name;
use crate::console::say;
use crate::data::source::{self, ImageSet};
use crate::device::Backend;
use crate::files::{same_file, write_atomic};
use crate::run::trained::{Trained, load, native_shape};

/// Which part of a data path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The test images of an IDX folder if it has them (queries, embeddings).
    TestIfAny,
    /// The training images (references).
    Train,
}

/// Opens `path` and picks its part; returns the set, a description, and whether that is the
/// training part (the whole source when it has no test part).
pub(crate) fn open_part(
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

pub(crate) fn say_model(trained: &Trained, backend: Backend) {
    say(&format!(
        "model: {} ({}), backend {backend}",
        trained.which,
        trained.weights.display()
    ));
}

pub(crate) fn embed_set(trained: &Trained, set: ImageSet) -> Result<(Arc<ImageSet>, Embedded)> {
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
    /// `--metrics`: `None` for the defaults.
    pub metrics: Option<Vec<Group>>,
    /// `--pairs`.
    pub pairs: PairsSource,
    /// `--query-column`.
    pub query_column: String,
    /// `--gallery-column`.
    pub gallery_column: String,
    /// `--group-column`.
    pub group_column: Option<String>,
    /// `--show`.
    pub show: Option<usize>,
    /// `--seed`.
    pub seed: u64,
}

/// Above this many multiply-adds per k-means iteration (embeddings × classes × dimension),
/// clustering runs only when `--metrics` asks for it: 5·10⁹ is about a second per iteration on
/// 2 cores, so SOP's 60,502 × 11,316 × 128 test set is left out, CUB's is not.
pub const KMEANS_BUDGET: f64 = 5e9;

/// The query column's default name (open-metric-learning's).
pub const DEFAULT_QUERY_COLUMN: &str = "is_query";
/// The gallery column's default name (open-metric-learning's).
pub const DEFAULT_GALLERY_COLUMN: &str = "is_gallery";

/// What `triplet eval` measured.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// Retrieval metrics (always computed: `--show` and the table need them).
    pub retrieval: Retrieval,
    /// NMI and AMI, when selected.
    pub clustering: Option<Clustering>,
    /// Verification, when selected.
    pub verification: Option<Verification>,
    /// Re-identification, when selected.
    pub reid: Option<Reid>,
}

/// The metric groups to run: those asked for, else the defaults (retrieval, clustering,
/// verification, and reid when the data is a CSV list with the two columns, or a column is
/// named).
fn groups(o: &EvalOptions) -> Vec<Group> {
    let mut groups = match &o.metrics {
        Some(list) => list.clone(),
        None => {
            let mut g = vec![Group::Retrieval, Group::Clustering, Group::Verification];
            // Naming a column asks for re-identification.
            if o.group_column.is_some()
                || o.query_column != DEFAULT_QUERY_COLUMN
                || o.gallery_column != DEFAULT_GALLERY_COLUMN
                || has_columns(&o.data, &[&o.query_column, &o.gallery_column])
            {
                g.push(Group::Reid);
            }
            g
        }
    };
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// Runs `triplet eval`: prints a table and writes `metrics.json` (and `roc.csv`, the plots).
pub fn eval(o: &EvalOptions) -> Result<EvalReport> {
    let mut groups = groups(o);
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
    // What can be checked before anything is embedded: a pairs file, whether pairs can be
    // drawn from the labels, the re-identification columns.
    let pair_list = match (&o.pairs, groups.contains(&Group::Verification)) {
        (PairsSource::File(path), true) => Some(read_pairs(path)?),
        _ => None,
    };
    if groups.contains(&Group::Verification) && pair_list.is_none() {
        let labels = queries.labels();
        let has_same = {
            let mut seen = std::collections::HashSet::new();
            labels.iter().any(|l| !seen.insert(*l))
        };
        let has_different = labels.iter().any(|l| *l != labels[0]);
        if !(has_same && has_different) {
            let why = format!(
                "verification needs same-class and different-class pairs, and the {} queries \
                 have {}",
                labels.len(),
                if has_same {
                    "one class only"
                } else {
                    "one image per class"
                }
            );
            if o.metrics.is_some() {
                bail!("{why}; give a pairs file with --pairs FILE");
            }
            say(&format!("note: {why}: verification left out"));
            groups.retain(|g| *g != Group::Verification);
        }
    }
    let reid_table = if groups.contains(&Group::Reid) {
        Some(read_reid_table(
            &o.data,
            &o.query_column,
            &o.gallery_column,
            o.group_column.as_deref(),
        )?)
    } else {
        None
    };
    // The same images on both sides would make every query its own nearest neighbour.
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
    let reid_split = match &reid_table {
        Some(table) => Some(reid_columns(table, &query_set, &q)?),
        None => None,
    };
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
    let distance_name = toml_name(&trained.config.loss.distance);
    let reference_rows = refs
        .as_ref()
        .zip(r_labels.as_deref())
        .map(|((_, e), l)| (e.embeddings.as_slice(), l));
    let (r, per_query_ap) = retrieval_per_query(
        &q.embeddings,
        &q_labels,
        reference_rows,
        q.dim,
        distance,
        &device,
    )?;
    // k-means costs about n·k·d per iteration: by default, not on sets where that is large.
    let classes_n = q_labels
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let kmeans_work = q.indices.len() as f64 * classes_n as f64 * q.dim as f64;
    if groups.contains(&Group::Clustering) && o.metrics.is_none() && kmeans_work > KMEANS_BUDGET {
        say(&format!(
            "note: clustering left out: k-means of {} embeddings into {classes_n} clusters is \
             slow ({kmeans_work:.1e} multiply-adds per iteration); --metrics clustering runs it",
            q.indices.len()
        ));
        groups.retain(|g| *g != Group::Clustering);
    }
    let clustering = groups
        .contains(&Group::Clustering)
        .then(|| clustering(&q.embeddings, q.dim, &q_labels, o.seed));
    let mut skipped_pairs = 0;
    let verification = if groups.contains(&Group::Verification) {
        let scored = match &pair_list {
            Some(list) => {
                let set = ImageSet::unlabelled(list.images.clone());
                say(&format!(
                    "pairs: {} ({} pairs of {} images)",
                    o.pairs_text(),
                    list.pairs.len(),
                    list.images.len()
                ));
                let (_, e) = embed_set(&trained, set)?;
                pairs_of_file(list, &e, distance)
            }
            None => {
                let pairs = pairs_from_labels(&q_labels, &o.pairs, o.seed)?;
                score_pairs(&q.embeddings, q.dim, &pairs, distance)
            }
        };
        skipped_pairs = scored.skipped;
        if scored.skipped > 0 {
            say(&format!(
                "warning: {} pair(s) left out: an image of theirs cannot be read",
                scored.skipped
            ));
        }
        Some(
            verification(&scored.distances, &scored.same, &distance_name)
                .map_err(anyhow::Error::msg)?,
        )
    } else {
        None
    };
    let reid = match &reid_split {
        Some(split) => Some(reid(
            &q.embeddings,
            &q_labels,
            Split {
                is_query: &split.is_query,
                is_gallery: &split.is_gallery,
                groups: split.groups.as_deref(),
            },
            q.dim,
            distance,
            &device,
        )?),
        None => None,
    };
    let seconds = started.elapsed().as_secs_f64();

    let mode = if refs.is_some() {
        "query-reference"
    } else {
        "leave-one-out"
    };
    say(&format!(
        "{mode}: {} queries counted of {}, {}-d, {distance_name} distance, {seconds:.1} s",
        r.queries, r.total_queries, q.dim,
    ));
    say("  metric              value");
    say(&format!("  P@1                 {:.4}", r.precision_at_1));
    for (k, v) in RECALL_AT.iter().zip(r.recall_at) {
        say(&format!("  Recall@{k:<12} {v:.4}"));
    }
    say(&format!("  R-Precision         {:.4}", r.r_precision));
    say(&format!("  MAP@R               {:.4}", r.map_at_r));
    say(&format!("  MAP                 {:.4}", r.map));
    say(&format!("  MRR                 {:.4}", r.mrr));
    if let Some(c) = &clustering {
        say(&format!("  NMI                 {:.4}", c.nmi));
        say(&format!("  AMI                 {:.4}", c.ami));
    }
    if let Some((v, _)) = &verification {
        say(&format!(
            "  verification        {} pairs ({} same-class)",
            v.pairs, v.positive_pairs
        ));
        say(&format!("  ROC AUC             {:.4}", v.auc));
        say(&format!("  TAR@FAR=1e-3        {:.4}", v.tar_at_far_1e3));
        say(&format!("  TAR@FAR=1e-2        {:.4}", v.tar_at_far_1e2));
        say(&format!(
            "  accuracy (10-fold)  {:.4} ± {:.4}",
            v.accuracy, v.accuracy_std
        ));
        say(&format!(
            "  threshold           {:.4} (accuracy {:.4} on all pairs)",
            v.threshold, v.threshold_accuracy
        ));
        if v.negative_pairs < 1000 {
            say(&format!(
                "note: {} different-class pairs resolve FAR only to {:.0e}; TAR@FAR=1e-3 needs \
                 1000 or more",
                v.negative_pairs,
                1.0 / v.negative_pairs as f64
            ));
        }
    }
    if let Some(re) = &reid {
        say(&format!(
            "  re-identification   {} queries counted of {}, gallery {}{}",
            re.queries,
            re.total_queries,
            re.gallery,
            if re.groups {
                ", same-group matches left out"
            } else {
                ""
            }
        ));
        say(&format!("  CMC rank-1          {:.4}", re.cmc_rank_1));
        say(&format!("  CMC rank-5          {:.4}", re.cmc_rank_5));
        say(&format!("  CMC rank-10         {:.4}", re.cmc_rank_10));
        say(&format!("  mAP                 {:.4}", re.map));
    }
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
    // Retrieval's keys are always there, so it is always listed.
    let mut listed = vec![Group::Retrieval];
    listed.extend(groups.iter().filter(|g| **g != Group::Retrieval));
    metrics["metrics"] = json!(listed.iter().map(|g| g.as_str()).collect::<Vec<_>>());
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
    metrics["seed"] = json!(o.seed);
    metrics["seconds"] = json!(seconds);
    metrics["skipped_images"] = json!(q.skipped + refs.as_ref().map_or(0, |r| r.1.skipped));
    if let Some(c) = &clustering {
        metrics["NMI"] = json!(c.nmi);
        metrics["AMI"] = json!(c.ami);
        metrics["clustering"] = serde_json::to_value(c).expect("scores serialise");
    }
    if let Some((v, roc)) = &verification {
        let mut value = serde_json::to_value(v).expect("scores serialise");
        value["pairs_source"] = json!(o.pairs_text());
        value["skipped_pairs"] = json!(skipped_pairs);
        metrics["verification"] = value;
        let mut csv = String::from("threshold,far,tar\n");
        for ((t, f), a) in roc.thresholds.iter().zip(&roc.far).zip(&roc.tar) {
            csv.push_str(&format!("{t},{f},{a}\n"));
        }
        write_atomic(&out.join("roc.csv"), csv.as_bytes())?;
    }
    if let Some(re) = &reid {
        let mut value = serde_json::to_value(re).expect("scores serialise");
        value["query_column"] = json!(o.query_column);
        value["gallery_column"] = json!(o.gallery_column);
        value["group_column"] = json!(o.group_column);
        metrics["reid"] = value;
    }
    let path = out.join("metrics.json");
    let text = serde_json::to_string_pretty(&metrics).expect("JSON values serialise");
    write_atomic(&path, format!("{text}\n").as_bytes())?;
    say(&format!(
        "metrics written to {}{}",
        path.display(),
        if verification.is_some() {
            " (and the ROC to roc.csv)"
        } else {
            ""
        }
    ));

    let mut written = Vec::new();
    if let Some(n) = o.show {
        let shown = choose_shown(&per_query_ap, n, o.seed);
        if shown.is_empty() {
            say("note: --show has no query with a relevant reference to show");
        } else {
            let (ref_set, ref_rows, ref_labels) = match &refs {
                Some((set, e)) => (set, e, r_labels.as_deref().expect("labelled")),
                None => (&query_set, &q, q_labels.as_slice()),
            };
            let png = show_retrievals(
                &shown,
                (&query_set, &q, &q_labels),
                (ref_set, ref_rows, ref_labels),
                refs.is_none(),
                distance,
                &device,
                trained.transform.channels,
                &per_query_ap,
            )?;
            write_atomic(&out.join("retrievals.png"), &png)?;
            written.push("retrievals.png");
        }
    }
    if (o.show.is_some() || o.plot)
        && let Some((v, roc)) = &verification
    {
        let marks: Vec<(f64, f64, String)> = FAR_TARGETS
            .iter()
            .map(|&far| {
                let (tar, _) = roc.tar_at_far(far);
                (far, tar, format!("TAR@FAR={far:.0e}: {tar:.3}"))
            })
            .collect();
        let png = roc_png(
            &RocCurve {
                far: &roc.far,
                tar: &roc.tar,
                auc: v.auc,
                pairs: (v.positive_pairs, v.negative_pairs),
            },
            &marks,
            &format!(
                "Verification ROC, {} ({} distance)",
                trained.which, distance_name
            ),
        )?;
        write_atomic(&out.join("roc.png"), &png)?;
        written.push("roc.png");
    }
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
        written.push("embeddings_pca.png");
        if let Some(run) = &trained.run
            && plot::write_curves(run, &out)?
        {
            written.push("curves.png");
        }
    }
    if !written.is_empty() {
        say(&format!(
            "plots: {} in {}",
            written.join(", "),
            out.display()
        ));
    }
    Ok(EvalReport {
        retrieval: r,
        clustering,
        verification: verification.map(|v| v.0),
        reid,
    })
}

/// Neighbours shown per query in `retrievals.png`.
pub const SHOWN_HITS: usize = 8;

/// Draws `retrievals.png` for the chosen queries: their nearest references, the query itself
/// left out in leave-one-out mode.
#[allow(clippy::too_many_arguments)]
fn show_retrievals(
    shown: &[(usize, &'static str)],
    (query_set, q, q_labels): (&ImageSet, &Embedded, &[usize]),
    (ref_set, refs, ref_labels): (&ImageSet, &Embedded, &[usize]),
    leave_one_out: bool,
    distance: Distance,
    device: &burn::tensor::Device,
    channels: usize,
    ap: &[Option<f64>],
) -> Result<Vec<u8>> {
    let dim = q.dim.max(1);
    let rows: Vec<f32> = shown
        .iter()
        .flat_map(|&(i, _)| q.embeddings[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let extra = usize::from(leave_one_out);
    let found = nearest(
        &rows,
        &refs.embeddings,
        dim,
        SHOWN_HITS + extra,
        distance,
        device,
    )?;
    let class = |set: &ImageSet, e: &Embedded, row: usize| set.classes()[e.labels[row]].clone();
    let figure: Vec<_> = shown
        .iter()
        .zip(found)
        .map(|(&(i, note), mut hits)| {
            if leave_one_out {
                // The query itself, else (a duplicate ranked before it) the last one.
                let own = hits.iter().position(|h| h.0 == i).unwrap_or(hits.len() - 1);
                hits.remove(own);
            }
            hits.truncate(SHOWN_HITS);
            let caption = format!(
                "query {i} · class {} · AP {:.2}{}",
                class(query_set, q, i),
                ap[i].unwrap_or(f64::NAN),
                if note.is_empty() {
                    String::new()
                } else {
                    format!(" ({note})")
                }
            );
            let hits = hits
                .into_iter()
                .map(|(j, d)| Hit {
                    image: thumb(ref_set, refs.indices[j], channels),
                    relevant: ref_labels[j] == q_labels[i],
                    distance: d as f32,
                    label: class(ref_set, refs, j),
                })
                .collect();
            ShownQuery {
                image: thumb(query_set, q.indices[i], channels),
                label: class(query_set, q, i),
                caption,
                hits,
            }
        })
        .collect();
    retrievals_png(
        &figure,
        &format!(
            "Nearest {} of {} queries ({})",
            SHOWN_HITS,
            shown.len(),
            if leave_one_out {
                "leave-one-out"
            } else {
                "against the references"
            }
        ),
    )
}

impl EvalOptions {
    /// `--pairs` as the user wrote it.
    fn pairs_text(&self) -> String {
        match &self.pairs {
            PairsSource::File(p) => p.display().to_string(),
            PairsSource::All => "all pairs of the queries".into(),
            PairsSource::Sample(n) => format!("{n} drawn from the queries' labels"),
        }
    }
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

/// The file of an `embed` folder naming the model that made it.
pub const EMBED_INFO: &str = "embed.json";

/// Runs `triplet embed`: `embeddings.npy`, `labels.csv`, `vectors.tsv`, `metadata.tsv`, and
/// `embed.json` (the checkpoint, dimension and distance).
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
    // Which model made them, for `triplet search --gallery` to check.
    let about = json!({
        "checkpoint": trained.weights.display().to_string(),
        "dim": e.dim,
        "distance": trained.config.loss.distance,
        "images": rows.len(),
    });
    let text = serde_json::to_string_pretty(&about).expect("JSON values serialise");
    write_atomic(&o.out.join(EMBED_INFO), format!("{text}\n").as_bytes())?;
    say(&format!(
        "wrote {} embeddings ({}-d) to {}: embeddings.npy, labels.csv, vectors.tsv, metadata.tsv, \
         embed.json",
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
