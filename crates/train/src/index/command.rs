//! `triplet index build | add | remove | info`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::json;
use triplet_index::{AnnParams, Index, IndexSpec, Meta};

use super::{entries_from, load_model_for, metric_of, model_of};
use crate::console::say;
use crate::device::Backend;
use crate::embed::say_model;
use crate::run::trained::load;

/// `triplet index build`'s options.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--checkpoint`.
    pub checkpoint: PathBuf,
    /// `--data`.
    pub data: PathBuf,
    /// `--out`.
    pub out: PathBuf,
    /// `--label`.
    pub label: Option<String>,
    /// `--backend`.
    pub backend: Backend,
    /// The graph's parameters.
    pub ann: AnnParams,
}

/// Runs `triplet index build`: embeds `--data` and writes the index folder `--out`.
pub fn build(o: &BuildOptions) -> Result<usize> {
    if o.out.exists() && std::fs::read_dir(&o.out).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "--out {} already exists; `triplet index add` adds to an index, or give a new folder",
            o.out.display()
        );
    }
    let device = o.backend.device().map_err(anyhow::Error::msg)?;
    let trained = load(&o.checkpoint, &device, || None)?;
    say_model(&trained, o.backend);
    let entries = entries_from(&trained, &o.data, o.label.as_deref())?;
    if entries.is_empty() {
        bail!("{} has no readable images to index", o.data.display());
    }
    let spec = IndexSpec {
        dim: entries[0].0.len(),
        metric: metric_of(&trained),
        model: model_of(&trained)?,
        ann: o.ann,
    };
    let started = std::time::Instant::now();
    let (vectors, metas): (Vec<Vec<f32>>, Vec<Meta>) = entries.into_iter().unzip();
    let n = metas.len();
    let index = Index::build(&o.out, spec, &vectors.concat(), metas)?;
    say(&format!(
        "indexed {n} images ({}-d, {}) in {} in {:.2} s",
        index.spec().dim,
        index.spec().metric.name(),
        o.out.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(n)
}

/// `triplet index add`'s options.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// The index folder.
    pub index: PathBuf,
    /// `--data`.
    pub data: PathBuf,
    /// `--label`.
    pub label: Option<String>,
    /// `--checkpoint` (default: the index's).
    pub checkpoint: Option<PathBuf>,
    /// `--backend`.
    pub backend: Backend,
}

/// Runs `triplet index add`: embeds `--data` with the index's model and adds it, durably.
pub fn add(o: &AddOptions) -> Result<Vec<u64>> {
    let mut index = Index::open_writer(&o.index)?;
    let device = o.backend.device().map_err(anyhow::Error::msg)?;
    let trained = load_model_for(&index, o.checkpoint.as_deref(), &device)?;
    say_model(&trained, o.backend);
    let entries = entries_from(&trained, &o.data, o.label.as_deref())?;
    if entries.is_empty() {
        bail!("{} has no readable images to add", o.data.display());
    }
    let ids = index.add(entries)?;
    if index.needs_compaction() {
        index.compact()?;
    }
    say(&format!(
        "added {} items (ids {}–{}) to {}: {} items",
        ids.len(),
        ids[0],
        ids[ids.len() - 1],
        o.index.display(),
        index.len()
    ));
    Ok(ids)
}

/// Runs `triplet index remove`: all the ids or none.
pub fn remove(dir: &Path, ids: &[u64]) -> Result<()> {
    let mut index = Index::open_writer(dir)?;
    index.remove(ids)?;
    if index.needs_compaction() {
        index.compact()?;
    }
    say(&format!(
        "removed {} items from {}: {} items",
        ids.len(),
        dir.display(),
        index.len()
    ));
    Ok(())
}

/// What `triplet index info` prints, as JSON.
pub fn info_json(index: &Index) -> serde_json::Value {
    let spec = index.spec();
    let mut labels: Vec<&str> = index
        .items()
        .iter()
        .filter_map(|it| it.meta.label.as_deref())
        .collect();
    labels.sort_unstable();
    labels.dedup();
    json!({
        "index": index.dir(),
        "items": index.len(),
        "labels": labels.len(),
        "dim": spec.dim,
        "distance": spec.metric.name(),
        "model": spec.model.info,
        "model_key": spec.model.key,
        "hnsw": {
            "connectivity": spec.ann.connectivity,
            "expansion_add": spec.ann.expansion_add,
            "expansion_search": spec.ann.expansion_search,
            "exact_below": spec.ann.exact_below,
            "memory_bytes": index.graph_memory(),
        },
        "search": if index.uses_graph(triplet_index::SearchMode::Auto) { "hnsw" } else { "exact" },
        "generation": index.generation(),
        "log_records": index.log_records(),
        "next_id": index.next_id(),
    })
}

/// Runs `triplet index info`.
pub fn info(dir: &Path, as_json: bool) -> Result<serde_json::Value> {
    let index = Index::open(dir)?;
    let v = info_json(&index);
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("JSON values serialise")
        );
    } else {
        say(&format!("index {}", dir.display()));
        say(&format!(
            "  items {} ({} labels), {}-d, {} distance, searched {} by default",
            v["items"],
            v["labels"],
            v["dim"],
            v["distance"].as_str().unwrap_or("?"),
            v["search"].as_str().unwrap_or("?")
        ));
        say(&format!(
            "  model {} ({})",
            v["model"]["checkpoint"].as_str().unwrap_or("?"),
            v["model_key"].as_str().unwrap_or("?")
        ));
        say(&format!(
            "  HNSW: M {}, efConstruction {}, efSearch {}, exact below {} items, {:.1} MB",
            v["hnsw"]["connectivity"],
            v["hnsw"]["expansion_add"],
            v["hnsw"]["expansion_search"],
            v["hnsw"]["exact_below"],
            index.graph_memory() as f64 / 1e6
        ));
        say(&format!(
            "  generation {}, {} changes since, next id {}",
            v["generation"], v["log_records"], v["next_id"]
        ));
    }
    Ok(v)
}

/// Runs one `triplet index` command.
pub fn run(command: crate::cli::IndexCommand) -> Result<()> {
    use crate::cli::IndexCommand;
    match command {
        IndexCommand::Build(a) => {
            build(&BuildOptions {
                checkpoint: a.checkpoint,
                data: a.data,
                out: a.out,
                label: a.label,
                backend: a.device.backend,
                ann: AnnParams {
                    connectivity: a.hnsw_m as usize,
                    expansion_add: a.ef_construction as usize,
                    expansion_search: a.ef_search as usize,
                    exact_below: a.exact_below,
                },
            })?;
        }
        IndexCommand::Add(a) => {
            add(&AddOptions {
                index: a.index,
                data: a.data,
                label: a.label,
                checkpoint: a.checkpoint,
                backend: a.device.backend,
            })?;
        }
        IndexCommand::Remove(a) => remove(&a.index, &a.ids)?,
        IndexCommand::Info(a) => {
            info(&a.index, a.json)?;
        }
    }
    Ok(())
}
