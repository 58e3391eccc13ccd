//! `triplet search`: the nearest gallery images of query images, with distances, and `match` /
//! `no match` under a distance threshold (PML's `InferenceModel.get_nearest_neighbors` and
//! `is_match`).
//!
//! A gallery is embedded once (or read from a `triplet embed` folder), then searched exactly
//! in blocks of queries ([`triplet_metrics::nearest`]): memory is the gallery's embeddings plus
//! one block of distances, whatever the gallery's size. An index (`--index`, `triplet index
//! build`) is opened instead: exact for small ones, its HNSW graph for large ones.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde::Serialize;
use triplet_index::{Index, SearchMode};
use triplet_metrics::{RowsBuf, nearest};

use crate::console::say;
use crate::data::source::ImageSet;
use crate::device::Backend;
use crate::embed::files::{EmbedFolder, EmbedInfo, is_embed_dir, read_embed_dir};
use crate::embed::{embed_set, image_files, open_images, say_model};
use crate::files::{folder_of, same_file, write_atomic};
use crate::index::load_model_for;
use crate::run::trained::{Trained, load};
use crate::threshold::resolve_threshold;

/// Most neighbours `--k` may ask for per query.
pub const MAX_K: usize = 1000;

/// What `triplet search` was asked to do.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// `--checkpoint` (with `--index`, default: the index's model).
    pub checkpoint: Option<PathBuf>,
    /// `--gallery`.
    pub gallery: Option<PathBuf>,
    /// `--index`.
    pub index: Option<PathBuf>,
    /// `--exact` (with `--index`).
    pub exact: bool,
    /// `--query`.
    pub query: Vec<PathBuf>,
    /// `--k`.
    pub k: usize,
    /// `--threshold`: a number, `run` or a metrics.json.
    pub threshold: Option<String>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--backend`.
    pub backend: Backend,
}

/// One neighbour of a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbour {
    /// 1 for the nearest.
    pub rank: usize,
    /// Its id, in an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The gallery image.
    pub path: String,
    /// Its class.
    pub label: String,
    /// Its distance to the query (exact, in f64).
    pub distance: f64,
    /// Whether `distance ≤ threshold`, when a threshold is given.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub is_match: Option<bool>,
}

/// The neighbours of one query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// The query image.
    pub query: String,
    /// Its neighbours, nearest first.
    pub neighbours: Vec<Neighbour>,
}

/// A gallery: its embeddings and, per row, a name and a class.
struct Gallery {
    rows: RowsBuf,
    paths: Vec<String>,
    labels: Vec<String>,
}

impl Gallery {
    /// An embed folder as a gallery.
    fn of_folder(folder: EmbedFolder) -> Self {
        let (paths, labels) = folder.labels.into_iter().map(|r| (r.path, r.label)).unzip();
        Self {
            rows: folder.rows,
            paths,
            labels,
        }
    }
}

/// Warns when an embed folder names another model than the one searching.
fn warn_other_model(dir: &Path, info: Option<&EmbedInfo>, trained: &Trained) {
    if let Some(info) = info
        && !same_file(&info.checkpoint, &trained.weights)
    {
        say(&format!(
            "warning: the gallery {} was embedded with {}, not with {}: distances between the \
             two models' embeddings mean nothing",
            dir.display(),
            info.checkpoint.display(),
            trained.weights.display()
        ));
    }
}

/// Runs `triplet search`: prints each query's nearest gallery images and writes `--out`.
pub fn search(o: &SearchOptions) -> Result<Vec<QueryResult>> {
    if o.k == 0 || o.k > MAX_K {
        bail!("--k {}: ask for 1 to {MAX_K} neighbours", o.k);
    }
    if let Some(out) = &o.out
        && out.is_dir()
    {
        bail!(
            "--out {} is a folder; give a file name such as results.csv",
            out.display()
        );
    }
    let device = o.backend.device().map_err(anyhow::Error::msg)?;
    let index = o.index.as_deref().map(Index::open).transpose()?;
    let trained = match (&index, &o.checkpoint) {
        (Some(ix), checkpoint) => load_model_for(ix, checkpoint.as_deref(), &device)?,
        (None, Some(checkpoint)) => load(checkpoint, &device, || None)?,
        (None, None) => bail!("give --checkpoint: the model that embeds the queries"),
    };
    let distance_name = crate::config::toml_name(&trained.config.loss.distance);
    let threshold = o
        .threshold
        .as_deref()
        .map(|t| resolve_threshold(t, &trained, &distance_name))
        .transpose()?;
    let queries = image_files(&o.query, trained.transform.channels)?;
    say_model(&trained, o.backend);
    let results = match (&index, &o.gallery) {
        (Some(ix), _) => search_index(o, ix, &trained, queries, threshold.as_ref())?,
        (None, Some(gallery)) => {
            search_gallery(o, gallery, &trained, &device, queries, threshold.as_ref())?
        }
        (None, None) => bail!("give --gallery (images or a `triplet embed` folder) or --index"),
    };
    for r in &results {
        say(&format!("query {}", r.query));
        say("  rank  distance  match     label       gallery image");
        for n in &r.neighbours {
            let verdict = match n.is_match {
                Some(true) => "match",
                Some(false) => "no match",
                None => "-",
            };
            say(&format!(
                "  {:<4}  {:<8.4}  {verdict:<8}  {:<10}  {}",
                n.rank, n.distance, n.label, n.path
            ));
        }
    }
    if let Some(out) = &o.out {
        let bytes = if out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            let mut text = serde_json::to_string_pretty(&results).expect("results serialise");
            text.push('\n');
            text.into_bytes()
        } else {
            let mut csv = csv::Writer::from_writer(Vec::new());
            csv.write_record(["query", "rank", "path", "label", "distance", "match"])?;
            for r in &results {
                for n in &r.neighbours {
                    csv.write_record([
                        r.query.as_str(),
                        &n.rank.to_string(),
                        &n.path,
                        &n.label,
                        &n.distance.to_string(),
                        match n.is_match {
                            Some(true) => "1",
                            Some(false) => "0",
                            None => "",
                        },
                    ])?;
                }
            }
            csv.into_inner().context("formatting the results")?
        };
        let dir = folder_of(out);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(out, &bytes)?;
        say(&format!(
            "{} queries' neighbours written to {}",
            results.len(),
            out.display()
        ));
    }
    Ok(results)
}

/// Searches an exact gallery: images embedded now, or a `triplet embed` folder.
fn search_gallery(
    o: &SearchOptions,
    source: &Path,
    trained: &Trained,
    device: &Device,
    queries: ImageSet,
    threshold: Option<&(f64, String)>,
) -> Result<Vec<QueryResult>> {
    let distance = trained.config.loss().distance;
    let distance_name = crate::config::toml_name(&trained.config.loss.distance);
    let gallery = if is_embed_dir(source) {
        let folder = read_embed_dir(source)?;
        warn_other_model(source, folder.info.as_ref(), trained);
        let g = Gallery::of_folder(folder);
        say(&format!(
            "gallery: {} embeddings ({}-d) from {}",
            g.paths.len(),
            g.rows.dim(),
            source.display()
        ));
        g
    } else {
        let (set, text) = open_images(source)?;
        say(&format!("gallery: {text}"));
        let (set, e) = embed_set(trained, set)?;
        Gallery {
            paths: e.indices.iter().map(|&i| set.describe(i)).collect(),
            labels: e.labels.iter().map(|&l| set.classes()[l].clone()).collect(),
            rows: e.rows,
        }
    };
    if gallery.paths.is_empty() {
        bail!("the gallery {} has no readable images", source.display());
    }
    let (queries, q) = embed_set(trained, queries)?;
    if q.rows.dim() != gallery.rows.dim() {
        bail!(
            "the gallery's embeddings are {}-d but this model embeds {}-d: {} was embedded by \
             another model",
            gallery.rows.dim(),
            q.rows.dim(),
            source.display()
        );
    }
    if let Some((t, from)) = threshold {
        say(&format!(
            "threshold: {distance_name} distance ≤ {t:.4} is a match ({from})"
        ));
    }
    let started = std::time::Instant::now();
    let found = nearest(q.rows.rows(), gallery.rows.rows(), o.k, distance, device)?;
    say(&format!(
        "searched {} queries against {} gallery embeddings in {:.3} s",
        q.indices.len(),
        gallery.paths.len(),
        started.elapsed().as_secs_f64()
    ));
    let found = found.into_iter().map(|hits| {
        hits.into_iter()
            .map(|(j, d)| (None, gallery.paths[j].clone(), gallery.labels[j].clone(), d))
            .collect()
    });
    Ok(results(&queries, &q.indices, found, threshold))
}

/// One query's hits: id (in an index), path, label, distance; nearest first.
type Hits = Vec<(Option<u64>, String, String, f64)>;

/// Each query's hits as results, ranked, with `match` under the threshold.
fn results(
    queries: &ImageSet,
    indices: &[usize],
    found: impl Iterator<Item = Hits>,
    threshold: Option<&(f64, String)>,
) -> Vec<QueryResult> {
    found
        .zip(indices)
        .map(|(hits, &i)| QueryResult {
            query: queries.describe(i),
            neighbours: hits
                .into_iter()
                .enumerate()
                .map(|(rank, (id, path, label, distance))| Neighbour {
                    rank: rank + 1,
                    id,
                    path,
                    label,
                    distance,
                    is_match: threshold.map(|(t, _)| distance <= *t),
                })
                .collect(),
        })
        .collect()
}

/// Searches an index folder: exactly for small ones, else through its HNSW graph.
fn search_index(
    o: &SearchOptions,
    index: &Index,
    trained: &Trained,
    queries: ImageSet,
    threshold: Option<&(f64, String)>,
) -> Result<Vec<QueryResult>> {
    let mode = if o.exact {
        SearchMode::Exact
    } else {
        SearchMode::Auto
    };
    say(&format!(
        "index: {} items ({}-d) in {}, searched {}",
        index.len(),
        index.spec().dim,
        index.dir().display(),
        if index.uses_graph(mode) {
            "through its HNSW graph"
        } else {
            "exactly"
        }
    ));
    if let Some((t, from)) = threshold {
        say(&format!(
            "threshold: {} distance ≤ {t:.4} is a match ({from})",
            index.spec().metric.name()
        ));
    }
    let (queries, q) = embed_set(trained, queries)?;
    let started = std::time::Instant::now();
    let found = index.search_many(q.rows.values(), o.k, mode)?;
    say(&format!(
        "searched {} queries against {} items in {:.3} s",
        q.indices.len(),
        index.len(),
        started.elapsed().as_secs_f64()
    ));
    let found = found.into_iter().map(|hits| {
        hits.into_iter()
            .map(|hit| {
                let (item, _) = index.get(hit.id).expect("a hit is an item");
                let path = item.meta.path.clone().unwrap_or_default();
                let label = item.meta.label.clone().unwrap_or_else(|| "-".into());
                (Some(hit.id), path, label, hit.distance)
            })
            .collect()
    });
    Ok(results(&queries, &q.indices, found, threshold))
}
