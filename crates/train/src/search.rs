//! `triplet search`: the nearest gallery images of query images, with distances, and `match` /
//! `no match` under a distance threshold (PML's `InferenceModel.get_nearest_neighbors` and
//! `is_match`).
//!
//! The gallery is embedded once (or read from a `triplet embed` folder), then searched exactly
//! in blocks of queries ([`triplet_metrics::nearest`]): memory is the gallery's embeddings plus
//! one block of distances, whatever the gallery's size.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use triplet_metrics::{RowsBuf, nearest};

use crate::console::say;
use crate::data::listing::{IMAGE_EXTENSIONS, images_in, is_image};
use crate::data::source::ImageSet;
use crate::device::Backend;
use crate::embed::files::{EmbedFolder, EmbedInfo, is_embed_dir, read_embed_dir};
use crate::embed::{Part, embed_set, open_part, say_model};
use crate::files::{folder_of, same_file, write_atomic};
use crate::run::trained::{Trained, load};

/// Most neighbours `--k` may ask for per query.
pub const MAX_K: usize = 1000;

/// What `triplet search` was asked to do.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// `--checkpoint`.
    pub checkpoint: PathBuf,
    /// `--gallery`.
    pub gallery: PathBuf,
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

/// The gallery's images: a data source as `eval` reads one (its training images for an IDX
/// folder), or else a folder of images without class folders (their class is `-`).
fn open_gallery(path: &Path) -> Result<(ImageSet, String)> {
    match open_part(path, Part::Train, None) {
        Ok(opened) => Ok((opened.set, opened.description)),
        Err(e) if path.is_dir() => {
            let images = images_in(path).with_context(|| format!("listing {}", path.display()))?;
            if images.is_empty() {
                return Err(e);
            }
            let text = format!("{} ({} images, no classes)", path.display(), images.len());
            Ok((ImageSet::unlabelled(images), text))
        }
        Err(e) => Err(e),
    }
}

/// The query images: files as given (each must be an image), folders' images in path order.
fn query_images(paths: &[PathBuf], channels: usize) -> Result<ImageSet> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = images_in(p).with_context(|| format!("listing {}", p.display()))?;
            if found.is_empty() {
                bail!("query folder {} holds no images", p.display());
            }
            files.extend(found);
        } else if !p.exists() {
            bail!("query {} does not exist", p.display());
        } else if !is_image(p) {
            bail!(
                "query {} is not an image (image files end in {})",
                p.display(),
                IMAGE_EXTENSIONS.join(", ")
            );
        } else {
            files.push(p.clone());
        }
    }
    let set = ImageSet::unlabelled(files);
    // A query that does not decode is an error, not a skipped image: the user named it.
    for i in 0..set.len() {
        if let Err(e) = set.load_native(i, channels) {
            bail!("query {} is not an image: {e}", set.describe(i));
        }
    }
    Ok(set)
}

/// The verification threshold in a metrics.json written by `triplet eval`.
fn threshold_of(metrics: &Path, distance: &str, trained: &Trained) -> Result<f64> {
    let text = std::fs::read_to_string(metrics).with_context(|| {
        format!(
            "cannot read {}; run `triplet eval` (verification is on by default) to find a \
             threshold",
            metrics.display()
        )
    })?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", metrics.display()))?;
    if let Some(made_by) = value["checkpoint"].as_str()
        && !same_file(Path::new(made_by), &trained.weights)
    {
        say(&format!(
            "warning: the threshold in {} was found for {made_by}, not for {}",
            metrics.display(),
            trained.weights.display()
        ));
    }
    let v = &value["verification"];
    let Some(threshold) = v["threshold"].as_f64() else {
        bail!(
            "{} has no verification threshold; run `triplet eval` with verification on",
            metrics.display()
        );
    };
    if let Some(d) = v["distance"].as_str()
        && d != distance
    {
        bail!(
            "{}'s threshold is for the {d} distance, but this model uses {distance}",
            metrics.display()
        );
    }
    Ok(threshold)
}

/// `--threshold`: a number, `run`, or a metrics.json file.
fn resolve_threshold(text: &str, trained: &Trained, distance: &str) -> Result<(f64, String)> {
    let t = text.trim();
    if let Ok(v) = t.parse::<f64>() {
        if !v.is_finite() || v < 0.0 {
            bail!("--threshold {t}: a distance threshold is a finite number, 0 or more");
        }
        return Ok((v, "given".into()));
    }
    let file = if t.eq_ignore_ascii_case("run") {
        let Some(run) = &trained.run else {
            bail!(
                "--threshold run: {} is not part of a run folder; give the number, or the \
                 metrics.json `triplet eval` wrote",
                trained.weights.display()
            );
        };
        run.path().join("metrics.json")
    } else {
        let p = PathBuf::from(t);
        if !p.is_file() {
            bail!(
                "--threshold `{t}` is not a number, `run` (the run folder's threshold) or a \
                 metrics.json file"
            );
        }
        p
    };
    let v = threshold_of(&file, distance, trained)?;
    Ok((v, format!("from {}", file.display())))
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
    let trained = load(&o.checkpoint, &device, || None)?;
    let distance = trained.config.loss().distance;
    let distance_name = crate::config::toml_name(&trained.config.loss.distance);
    let threshold = o
        .threshold
        .as_deref()
        .map(|t| resolve_threshold(t, &trained, &distance_name))
        .transpose()?;
    let queries = query_images(&o.query, trained.transform.channels)?;
    say_model(&trained, o.backend);
    let gallery = if is_embed_dir(&o.gallery) {
        let folder = read_embed_dir(&o.gallery)?;
        warn_other_model(&o.gallery, folder.info.as_ref(), &trained);
        let g = Gallery::of_folder(folder);
        say(&format!(
            "gallery: {} embeddings ({}-d) from {}",
            g.paths.len(),
            g.rows.dim(),
            o.gallery.display()
        ));
        g
    } else {
        let (set, text) = open_gallery(&o.gallery)?;
        say(&format!("gallery: {text}"));
        let (set, e) = embed_set(&trained, set)?;
        Gallery {
            paths: e.indices.iter().map(|&i| set.describe(i)).collect(),
            labels: e.labels.iter().map(|&l| set.classes()[l].clone()).collect(),
            rows: e.rows,
        }
    };
    if gallery.paths.is_empty() {
        bail!("the gallery {} has no readable images", o.gallery.display());
    }
    let (queries, q) = embed_set(&trained, queries)?;
    if q.rows.dim() != gallery.rows.dim() {
        bail!(
            "the gallery's embeddings are {}-d but this model embeds {}-d: {} was embedded by \
             another model",
            gallery.rows.dim(),
            q.rows.dim(),
            o.gallery.display()
        );
    }
    if let Some((t, from)) = &threshold {
        say(&format!(
            "threshold: {distance_name} distance ≤ {t:.4} is a match ({from})"
        ));
    }
    let started = std::time::Instant::now();
    let found = nearest(q.rows.rows(), gallery.rows.rows(), o.k, distance, &device)?;
    say(&format!(
        "searched {} queries against {} gallery embeddings in {:.3} s",
        q.indices.len(),
        gallery.paths.len(),
        started.elapsed().as_secs_f64()
    ));
    let results: Vec<QueryResult> = found
        .into_iter()
        .zip(&q.indices)
        .map(|(hits, &i)| QueryResult {
            query: queries.describe(i),
            neighbours: hits
                .into_iter()
                .enumerate()
                .map(|(rank, (j, d))| Neighbour {
                    rank: rank + 1,
                    path: gallery.paths[j].clone(),
                    label: gallery.labels[j].clone(),
                    distance: d,
                    is_match: threshold.as_ref().map(|(t, _)| d <= *t),
                })
                .collect(),
        })
        .collect();
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
