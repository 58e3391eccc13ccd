//! Checkpoints of a run: model, optimiser state, the position of the run (epoch, step, sampler
//! state, seed) and the config, in one folder per checkpoint under `<out>/checkpoints/`.
//!
//! Atomic: a checkpoint is written into a hidden temporary folder, each file flushed to disk,
//! then the folder is renamed into place and `<out>/checkpoints/latest` (written the same way)
//! is pointed at it. A kill at any moment leaves the previous checkpoint complete and `latest`
//! naming a complete checkpoint. The learning-rate schedule is a pure function of the step, so
//! the step is its whole state; augmentation is keyed by position, so the seed is the RNG's.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::data::sampler::SamplerState;

/// The best validation so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Step of the checkpoint.
    pub step: u64,
    /// Epochs completed at that point.
    pub epoch: u64,
    /// Its validation MAP@R.
    pub map_at_r: f64,
}

/// Where a run stands, saved with each checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Optimiser steps taken.
    pub step: u64,
    /// The sampler's position: the epoch in progress and its batches consumed.
    pub sampler: SamplerState,
    /// The run's seed (weights, sampler, augmentation).
    pub seed: u64,
    /// Images found unreadable so far (counted again after a resume as they are met).
    pub skipped_images: u64,
    /// The best validation so far (its checkpoint is kept and named by `checkpoints/best`).
    #[serde(default)]
    pub best: Option<Best>,
    /// Validations since the best one, for early stopping.
    #[serde(default)]
    pub validations_since_best: u64,
}

/// A checkpoint read back.
pub struct Checkpoint {
    /// Its folder.
    pub dir: PathBuf,
    /// The run's position.
    pub state: RunState,
    /// The config it was trained with (TOML).
    pub config: String,
    /// The model record (burnpack bytes).
    pub model: Vec<u8>,
    /// The optimiser record (burnpack bytes).
    pub optimizer: Vec<u8>,
}

const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";
const CONFIG: &str = "config.toml";
const LATEST: &str = "latest";
const BEST: &str = "best";

/// The checkpoints folder of a run.
pub fn folder(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, flushed, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut file = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        sync_dir(dir)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Makes the rename durable; a folder opens read-only on Unix.
    fs::File::open(dir)?.sync_all()
}

/// Saves a checkpoint named after `state.step` and keeps the newest `keep`.
pub fn save(
    out: &Path,
    state: &RunState,
    config: &str,
    model: &[u8],
    optimizer: &[u8],
    keep: usize,
) -> Result<PathBuf> {
    let root = folder(out);
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let name = format!("step-{:09}", state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    let dir = root.join(&name);
    let write = || -> std::io::Result<()> {
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let state_json = serde_json::to_vec_pretty(state).expect("the state serialises");
        for (file, bytes) in [
            (MODEL, model),
            (OPTIMIZER, optimizer),
            (STATE, state_json.as_slice()),
            (CONFIG, config.as_bytes()),
        ] {
            let mut f = fs::File::create(tmp.join(file))?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        sync_dir(&tmp)?;
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::rename(&tmp, &dir)?;
        sync_dir(&root)
    };
    write().with_context(|| format!("writing checkpoint {}", dir.display()))?;
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    prune(&root, keep)?;
    Ok(dir)
}

/// Complete checkpoints, oldest first.
fn list(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dirs),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", root.display()))?
            .path();
        let is_checkpoint = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("step-"));
        if is_checkpoint && path.join(STATE).is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    let dirs = list(root)?;
    let latest = fs::read_to_string(root.join(LATEST)).unwrap_or_default();
    let best = fs::read_to_string(root.join(BEST)).unwrap_or_default();
    for old in &dirs[..dirs.len().saturating_sub(keep)] {
        let name = old.file_name().and_then(|n| n.to_str());
        if name != Some(latest.trim()) && name != Some(best.trim()) {
            fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    Ok(())
}

/// Names checkpoint `dir` (a folder `save` returned) as the run's best; it is kept from then on
/// whatever `keep` says, until another is named.
pub fn mark_best(out: &Path, dir: &Path) -> Result<()> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("a checkpoint folder has a name")?;
    let root = folder(out);
    write_atomic(&root.join(BEST), name.as_bytes())
}

/// Points `checkpoints/best` at the checkpoint of step `step` when it exists and the pointer
/// names another (a kill between saving a best checkpoint and naming it).
pub fn repair_best(out: &Path, step: u64) -> Result<()> {
    let root = folder(out);
    let name = format!("step-{step:09}");
    let dir = root.join(&name);
    let current = fs::read_to_string(root.join(BEST)).unwrap_or_default();
    if current.trim() != name && dir.join(STATE).is_file() {
        mark_best(out, &dir)?;
    }
    Ok(())
}

/// The checkpoint folder `checkpoints/<pointer>` names (`best` or `latest`), if complete.
fn named(root: &Path, pointer: &str) -> Result<Option<PathBuf>> {
    let dirs = list(root)?;
    Ok(fs::read_to_string(root.join(pointer))
        .ok()
        .map(|name| root.join(name.trim()))
        .filter(|dir| dirs.contains(dir)))
}

/// The run's best checkpoint folder (by validation MAP@R), else its latest, else `None`.
pub fn best_or_latest(out: &Path) -> Result<Option<(PathBuf, &'static str)>> {
    let root = folder(out);
    if let Some(dir) = named(&root, BEST)? {
        return Ok(Some((dir, "best")));
    }
    if let Some(dir) = named(&root, LATEST)? {
        return Ok(Some((dir, "latest")));
    }
    Ok(list(&root)?.pop().map(|dir| (dir, "latest")))
}

/// True when `out` holds at least one checkpoint.
pub fn exists(out: &Path) -> Result<bool> {
    Ok(!list(&folder(out))?.is_empty())
}

/// The newest checkpoint of the run in `out`: the one `latest` names, else the highest step.
pub fn load_latest(out: &Path) -> Result<Checkpoint> {
    let root = folder(out);
    let dirs = list(&root)?;
    let Some(dir) = named(&root, LATEST)?.or_else(|| dirs.last().cloned()) else {
        bail!(
            "nothing to resume in {}: it holds no checkpoint (start the run without --resume)",
            out.display()
        );
    };
    let read = |file: &str| {
        let path = dir.join(file);
        fs::read(&path).with_context(|| format!("reading checkpoint file {}", path.display()))
    };
    let state: RunState = serde_json::from_slice(&read(STATE)?)
        .with_context(|| format!("checkpoint {} has a malformed {STATE}", dir.display()))?;
    let config = String::from_utf8(read(CONFIG)?)
        .with_context(|| format!("checkpoint {} has a malformed {CONFIG}", dir.display()))?;
    Ok(Checkpoint {
        state,
        config,
        model: read(MODEL)?,
        optimizer: read(OPTIMIZER)?,
        dir,
    })
}

/// Removes temporary folders a killed run left behind.
pub fn clean_partial(out: &Path) -> Result<()> {
    let root = folder(out);
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(".tmp-")) {
            fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> RunState {
        RunState {
            step,
            sampler: SamplerState {
                epoch: 0,
                batch: step as usize,
            },
            seed: 1,
            skipped_images: 0,
            best: None,
            validations_since_best: 0,
        }
    }

    #[test]
    fn the_best_checkpoint_survives_pruning_and_is_found_first() {
        let out = tempfile::tempdir().unwrap();
        assert!(best_or_latest(out.path()).unwrap().is_none());
        let first = save(out.path(), &state(1), "cfg", &[1], &[1], 1).unwrap();
        assert_eq!(
            best_or_latest(out.path()).unwrap().unwrap(),
            (first.clone(), "latest")
        );
        mark_best(out.path(), &first).unwrap();
        for step in 2..=4 {
            save(out.path(), &state(step), "cfg", &[step as u8], &[9], 1).unwrap();
        }
        // keep = 1 keeps the latest, and the best besides.
        let names: Vec<_> = list(&folder(out.path())).unwrap();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&first));
        assert_eq!(
            best_or_latest(out.path()).unwrap().unwrap(),
            (first, "best")
        );
        assert_eq!(load_latest(out.path()).unwrap().state.step, 4);
        // A kill after saving step 4 as the new best but before naming it: repaired on resume.
        repair_best(out.path(), 4).unwrap();
        let latest = folder(out.path()).join("step-000000004");
        assert_eq!(
            best_or_latest(out.path()).unwrap().unwrap(),
            (latest, "best")
        );
    }

    #[test]
    fn saves_loads_and_keeps_the_newest() {
        let out = tempfile::tempdir().unwrap();
        assert!(load_latest(out.path()).is_err());
        for step in 1..=4 {
            save(out.path(), &state(step), "cfg", &[step as u8], &[9], 2).unwrap();
        }
        let ckpt = load_latest(out.path()).unwrap();
        assert_eq!(ckpt.state, state(4));
        assert_eq!(
            (ckpt.model, ckpt.optimizer, ckpt.config),
            (vec![4], vec![9], "cfg".into())
        );
        assert_eq!(list(&folder(out.path())).unwrap().len(), 2);
    }

    #[test]
    fn a_half_written_checkpoint_is_ignored() {
        let out = tempfile::tempdir().unwrap();
        save(out.path(), &state(3), "cfg", &[3], &[3], 2).unwrap();
        // A kill between creating the temporary folder and renaming it.
        let partial = folder(out.path()).join(".tmp-step-000000004");
        fs::create_dir_all(&partial).unwrap();
        fs::write(partial.join(MODEL), [0]).unwrap();
        // A kill after the rename but before `latest` was updated: still complete, newer.
        let ckpt = load_latest(out.path()).unwrap();
        assert_eq!(ckpt.state.step, 3);
        clean_partial(out.path()).unwrap();
        assert!(!partial.exists());
        // `latest` lost: the highest complete checkpoint is used.
        fs::remove_file(folder(out.path()).join(LATEST)).unwrap();
        assert_eq!(load_latest(out.path()).unwrap().state.step, 3);
    }
}
