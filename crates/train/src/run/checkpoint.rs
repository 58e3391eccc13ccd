//! Checkpoints of a run: model, optimiser state, the position of the run ([`RunState`]), the
//! config and, with `[loss] memory_size`, the cross-batch memory (`memory.bin`,
//! [`super::memory`]), in one folder per checkpoint under `<run>/checkpoints/`.
//!
//! Atomic: a checkpoint is written into a hidden temporary folder, each file flushed to disk,
//! then the folder is renamed into place and `<out>/checkpoints/latest` (written the same way)
//! is pointed at it. A kill at any moment leaves the previous checkpoint complete and `latest`
//! naming a complete checkpoint. The learning-rate schedule is a pure function of the step, so
//! the step is its whole state; augmentation is keyed by position, so the seed is the RNG's.
//!
//! Checked: `state.json` records the size and CRC-32 of every other file, so a checkpoint
//! damaged afterwards (truncated, altered) is recognised and named. `--resume` then continues
//! from the newest intact checkpoint and moves the damaged one aside; `eval` and `embed` of a
//! run folder fall back the same way.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::state::RunState;
use super::{CONFIG_FILE, MODEL_FILE, RunDir};
use crate::files::{sync_dir, write_atomic};

/// Size and CRC-32 of a checkpoint file, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum {
    bytes: u64,
    crc32: u32,
}

impl FileSum {
    fn of(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        }
    }
}

/// `state.json`: the run's state and the sums of the checkpoint's other files (absent in
/// checkpoints of older versions).
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    #[serde(flatten)]
    state: RunState,
    #[serde(default)]
    files: BTreeMap<String, FileSum>,
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
    /// The cross-batch memory (`memory.bin`, [`super::memory`]), in runs that have one.
    pub memory: Option<Vec<u8>>,
}

const MODEL: &str = MODEL_FILE;
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";
const MEMORY: &str = "memory.bin";
const CONFIG: &str = CONFIG_FILE;
const LATEST: &str = "latest";
const BEST: &str = "best";

impl RunDir {
    /// Saves a checkpoint named after `state.step` (with the cross-batch `memory`'s bytes
    /// where the run has one) and keeps the newest `keep`.
    pub fn save_checkpoint(
        &self,
        state: &RunState,
        config: &str,
        model: &[u8],
        optimizer: &[u8],
        memory: Option<&[u8]>,
        keep: usize,
    ) -> Result<PathBuf> {
        let root = self.checkpoints();
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let name = format!("step-{:09}", state.step);
        let tmp = root.join(format!(".tmp-{name}"));
        let dir = root.join(&name);
        let mut files = vec![
            (MODEL, model),
            (OPTIMIZER, optimizer),
            (CONFIG, config.as_bytes()),
        ];
        files.extend(memory.map(|bytes| (MEMORY, bytes)));
        let saved = Saved {
            state: state.clone(),
            files: files
                .iter()
                .map(|(file, bytes)| ((*file).to_owned(), FileSum::of(bytes)))
                .collect(),
        };
        let state_json = serde_json::to_vec_pretty(&saved).expect("the state serialises");
        let write = || -> std::io::Result<()> {
            if tmp.exists() {
                fs::remove_dir_all(&tmp)?;
            }
            fs::create_dir_all(&tmp)?;
            // `state.json` last: a folder without it is never taken for a checkpoint.
            for (file, bytes) in files.into_iter().chain([(STATE, state_json.as_slice())]) {
                let mut f = fs::File::create(tmp.join(file))?;
                f.write_all(bytes)?;
                f.sync_all()?;
                if file == MODEL {
                    crate::fault::point("checkpoint-files");
                }
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
        crate::fault::point("checkpoint-saved");
        Ok(dir)
    }
}

/// The step a checkpoint folder's name gives (`step-000000042`).
fn step_of(dir: &Path) -> Option<u64> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("step-")?
        .parse()
        .ok()
}

/// Complete checkpoints (folders `step-N` with a `state.json`), oldest first.
fn list(root: &Path) -> Result<Vec<PathBuf>> {
    Ok(step_folders(root)?
        .into_iter()
        .filter(|dir| dir.join(STATE).is_file())
        .collect())
}

/// Every `step-N` folder, complete or not, oldest first.
fn step_folders(root: &Path) -> Result<Vec<PathBuf>> {
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
        if step_of(&path).is_some() && path.is_dir() {
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

impl RunDir {
    /// Names checkpoint `dir` (a folder `save` returned) as the run's best; it is kept from then on
    /// whatever `keep` says, until another is named.
    pub fn mark_best(&self, dir: &Path) -> Result<()> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("a checkpoint folder has a name")?;
        let root = self.checkpoints();
        write_atomic(&root.join(BEST), name.as_bytes())
    }

    /// Points `checkpoints/best` at the checkpoint of step `step` when it exists and the pointer
    /// names another (a kill between saving a best checkpoint and naming it).
    pub fn repair_best(&self, step: u64) -> Result<()> {
        let root = self.checkpoints();
        let name = format!("step-{step:09}");
        let dir = root.join(&name);
        let current = fs::read_to_string(root.join(BEST)).unwrap_or_default();
        if current.trim() != name && dir.join(STATE).is_file() {
            self.mark_best(&dir)?;
        }
        Ok(())
    }

    /// The run's checkpoints in the order `eval` and `embed` try them, each with what it is for
    /// messages: the best (by validation MAP@R), the latest, then the others from the newest.
    pub fn for_inference(&self) -> Result<Vec<(PathBuf, &'static str)>> {
        let root = self.checkpoints();
        let mut order: Vec<(PathBuf, &'static str)> = Vec::new();
        let latest = match named(&root, LATEST)? {
            Some(dir) => Some(dir),
            None => list(&root)?.pop(),
        };
        // The best as the newest checkpoint's state knows it (the pointer may lag behind after a
        // kill between saving a best checkpoint and naming it), else as the pointer names it.
        let best = latest
            .as_deref()
            .and_then(|dir| fs::read(dir.join(STATE)).ok())
            .and_then(|bytes| serde_json::from_slice::<Saved>(&bytes).ok())
            .and_then(|saved| saved.state.best)
            .map(|b| root.join(format!("step-{:09}", b.step)))
            .filter(|dir| dir.join(STATE).is_file());
        let best = match best {
            Some(dir) => Some(dir),
            None => named(&root, BEST)?,
        };
        for (dir, kind) in [(best, "best"), (latest, "latest")] {
            if let Some(dir) = dir
                && !order.iter().any(|(d, _)| *d == dir)
            {
                order.push((dir, kind));
            }
        }
        for dir in list(&root)?.into_iter().rev() {
            if !order.iter().any(|(d, _)| *d == dir) {
                let kind = if order.is_empty() { "latest" } else { "older" };
                order.push((dir, kind));
            }
        }
        Ok(order)
    }

    /// True when the run holds at least one checkpoint.
    pub fn holds_checkpoint(&self) -> Result<bool> {
        Ok(!list(&self.checkpoints())?.is_empty())
    }

    /// Whether the run was started (its `config.toml` is there) but stopped before its first
    /// checkpoint: no checkpoint folder at all, complete or damaged. `--resume` starts such a
    /// run from step 0 with its saved config.
    pub fn started_without_checkpoint(&self) -> Result<bool> {
        let root = self.checkpoints();
        Ok(self.config_file().is_file() && step_folders(&root)?.is_empty())
    }
}

/// The checkpoint folder `checkpoints/<pointer>` names (`best` or `latest`), if complete.
fn named(root: &Path, pointer: &str) -> Result<Option<PathBuf>> {
    let dirs = list(root)?;
    Ok(fs::read_to_string(root.join(pointer))
        .ok()
        .map(|name| root.join(name.trim()))
        .filter(|dir| dirs.contains(dir)))
}

/// Why the checkpoint in `dir` cannot be used, in words; `Ok` when every file `state.json`
/// lists is there with the size and CRC-32 it was written with. Checkpoints of older versions
/// record no sums: only their `state.json` is checked.
pub fn verify(dir: &Path) -> Result<(), String> {
    read(dir).map(|_| ())
}

/// `state.json` of `dir` and the files in `wanted`, each checked against the recorded sums
/// (the size first, so that a truncated file is named as such).
fn read_checked(dir: &Path, wanted: &[&str]) -> Result<(Saved, Vec<Vec<u8>>), String> {
    let read = |file: &str| {
        fs::read(dir.join(file)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{file} is missing"),
            _ => format!("{file} cannot be read: {e}"),
        })
    };
    let saved: Saved = serde_json::from_slice(&read(STATE)?)
        .map_err(|e| format!("{STATE} is not a valid run state ({e})"))?;
    // Files the state does not list are still read when wanted (older checkpoints).
    for (file, sum) in saved
        .files
        .iter()
        .filter(|(f, _)| wanted.contains(&f.as_str()))
    {
        let len = match fs::metadata(dir.join(file)) {
            Ok(m) => m.len(),
            Err(_) => return Err(format!("{file} is missing")),
        };
        if len != sum.bytes {
            return Err(format!(
                "{file} is {len} bytes but {} were written ({})",
                sum.bytes,
                if len < sum.bytes {
                    "truncated"
                } else {
                    "it has grown"
                }
            ));
        }
    }
    let mut contents = Vec::new();
    for file in wanted {
        let bytes = read(file)?;
        if let Some(sum) = saved.files.get(*file)
            && FileSum::of(&bytes) != *sum
        {
            return Err(format!(
                "{file} does not match the checksum written with it (its bytes were altered)"
            ));
        }
        contents.push(bytes);
    }
    Ok((saved, contents))
}

/// Reads checkpoint `dir`, every file checked against the sums recorded with it.
pub fn read(dir: &Path) -> Result<Checkpoint, String> {
    let (saved, mut files) = read_checked(dir, &[CONFIG, MODEL, OPTIMIZER])?;
    let memory = match saved.files.contains_key(MEMORY) {
        true => read_checked(dir, &[MEMORY])?.1.pop(),
        false => None,
    };
    let optimizer = files.pop().unwrap_or_default();
    let model = files.pop().unwrap_or_default();
    let config = String::from_utf8(files.pop().unwrap_or_default())
        .map_err(|_| format!("{CONFIG} is not text"))?;
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state: saved.state,
        config,
        model,
        optimizer,
        memory,
    })
}

/// Why the model file `model` cannot be used, when it is the `model.bpk` of a checkpoint
/// folder and it or the checkpoint's config differs from the size and CRC-32 recorded with it
/// (the optimiser's state is not needed for inference); `Ok` otherwise.
pub fn verify_model_file(model: &Path) -> Result<(), String> {
    let dir = model.parent().unwrap_or(Path::new("."));
    if model.file_name().is_some_and(|n| n == MODEL) && dir.join(STATE).is_file() {
        read_checked(dir, &[CONFIG, MODEL]).map(|_| ())
    } else {
        Ok(())
    }
}

/// A checkpoint to resume from, and those newer than it that were found damaged.
pub struct Resumable {
    /// The newest intact checkpoint.
    pub checkpoint: Checkpoint,
    /// Each damaged checkpoint (newest first), what is wrong with it, and where it was moved.
    pub damaged: Vec<(PathBuf, String, PathBuf)>,
}

impl RunDir {
    /// The newest intact checkpoint of the run (the one `latest` names, else the highest
    /// step): files as written and `check` (which decodes them) passing. Damaged newer ones are
    /// moved aside to `checkpoints/damaged-step-N` (nothing is deleted) and `latest` is pointed at
    /// the one returned. An error names every damaged checkpoint when none is intact.
    pub fn load_resumable(
        &self,
        check: impl Fn(&Checkpoint) -> Result<(), String>,
    ) -> Result<Resumable> {
        let root = self.checkpoints();
        let mut order: Vec<PathBuf> = named(&root, LATEST)?.into_iter().collect();
        for dir in list(&root)?.into_iter().rev() {
            if !order.contains(&dir) {
                order.push(dir);
            }
        }
        // A `step-N` folder without `state.json` is never written (checkpoints are renamed into
        // place complete): it was damaged afterwards. Named and moved aside with the others.
        let incomplete: Vec<PathBuf> = step_folders(&root)?
            .into_iter()
            .filter(|dir| !dir.join(STATE).is_file())
            .collect();
        if order.is_empty() && incomplete.is_empty() {
            bail!(
                "nothing to resume in {}: it holds no checkpoint (start the run without --resume)",
                self.path().display()
            );
        }
        let mut damaged: Vec<(PathBuf, String)> = Vec::new();
        for dir in incomplete.into_iter().rev() {
            damaged.push((dir, format!("{STATE} is missing")));
        }
        for dir in order {
            match read(&dir).and_then(|c| check(&c).map(|()| c)) {
                Ok(checkpoint) => {
                    let mut moved = Vec::new();
                    for (bad, why) in damaged {
                        let aside = move_aside(&root, &bad)?;
                        moved.push((bad, why, aside));
                    }
                    if !moved.is_empty() {
                        let name = checkpoint.dir.file_name().unwrap_or_default();
                        write_atomic(&root.join(LATEST), name.as_encoded_bytes())?;
                    }
                    return Ok(Resumable {
                        checkpoint,
                        damaged: moved,
                    });
                }
                Err(why) => damaged.push((dir, why)),
            }
        }
        let list: Vec<String> = damaged
            .iter()
            .map(|(dir, why)| format!("{}: {why}", dir.display()))
            .collect();
        bail!(
            "nothing to resume in {}: every checkpoint is damaged ({})",
            self.path().display(),
            list.join("; ")
        )
    }

    /// Removes what a killed run left half written: temporary checkpoint folders
    /// (`checkpoints/.tmp-step-N`) and the temporary files of atomic writes (`.tmp-XXXXXX`, in the
    /// run folder and in `checkpoints/`).
    pub fn clean_partial(&self) -> Result<()> {
        let checkpoints = self.checkpoints();
        for root in [self.path(), checkpoints.as_path()] {
            let Ok(entries) = fs::read_dir(root) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(".tmp-")) else {
                    continue;
                };
                let path = entry.path();
                let removed =
                    if path.is_dir() && root == checkpoints && step_of(Path::new(rest)).is_some() {
                        fs::remove_dir_all(&path)
                    } else if path.is_file()
                        && rest.len() == 6
                        && rest.chars().all(|c| c.is_ascii_alphanumeric())
                    {
                        fs::remove_file(&path)
                    } else {
                        continue;
                    };
                removed.with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// Renames checkpoint `dir` to `damaged-<name>` (or `damaged-<name>-N` if taken).
fn move_aside(root: &Path, dir: &Path) -> Result<PathBuf> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let mut aside = root.join(format!("damaged-{name}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = root.join(format!("damaged-{name}-{n}"));
    }
    fs::rename(dir, &aside)
        .with_context(|| format!("moving damaged checkpoint {} aside", dir.display()))?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::sampler::SamplerState;
    use crate::run::state::Best;

    fn state(step: u64) -> RunState {
        RunState {
            sampler: SamplerState {
                epoch: 0,
                batch: step as usize,
            },
            step,
            ..RunState::new(1)
        }
    }

    fn latest(out: &Path) -> Result<Checkpoint> {
        RunDir::new(out)
            .load_resumable(|_| Ok(()))
            .map(|r| r.checkpoint)
    }

    fn first_for_inference(out: &Path) -> Option<(PathBuf, &'static str)> {
        RunDir::new(out).for_inference().unwrap().into_iter().next()
    }

    #[test]
    fn the_best_checkpoint_survives_pruning_and_is_found_first() {
        let out = tempfile::tempdir().unwrap();
        assert!(first_for_inference(out.path()).is_none());
        let first = RunDir::new(out.path())
            .save_checkpoint(&state(1), "cfg", &[1], &[1], None, 1)
            .unwrap();
        assert_eq!(
            first_for_inference(out.path()).unwrap(),
            (first.clone(), "latest")
        );
        RunDir::new(out.path()).mark_best(&first).unwrap();
        for step in 2..=4 {
            RunDir::new(out.path())
                .save_checkpoint(&state(step), "cfg", &[step as u8], &[9], None, 1)
                .unwrap();
        }
        // keep = 1 keeps the latest, and the best besides.
        let names: Vec<_> = list(&RunDir::new(out.path()).checkpoints()).unwrap();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&first));
        let order = RunDir::new(out.path()).for_inference().unwrap();
        let newest = RunDir::new(out.path()).checkpoints().join("step-000000004");
        assert_eq!(order, [(first, "best"), (newest.clone(), "latest")]);
        assert_eq!(latest(out.path()).unwrap().state.step, 4);
        // A kill after saving step 4 as the new best but before naming it: repaired on resume.
        RunDir::new(out.path()).repair_best(4).unwrap();
        assert_eq!(first_for_inference(out.path()).unwrap(), (newest, "best"));
    }

    /// Sums and the best MAP@R read back to the same bits (plain JSON numbers need not).
    #[test]
    fn floats_read_back_exactly() {
        let out = tempfile::tempdir().unwrap();
        let mut s = state(1);
        s.epoch_totals.d_ap = 0.016_247_767_280_826_032;
        s.epoch_totals.loss = 1.0 / 3.0;
        s.best = Some(Best {
            step: 1,
            epoch: 1,
            map_at_r: 0.1 + 0.2,
        });
        for x in [f64::MIN_POSITIVE, 1e300, -2.5e-7, 123_456.789_012_345_67] {
            s.epoch_totals.active = x;
            RunDir::new(out.path())
                .save_checkpoint(&s, "cfg", &[1], &[1], None, 2)
                .unwrap();
            assert_eq!(latest(out.path()).unwrap().state, s);
        }
        let old = r#"{"step": 1, "epoch": 1, "map_at_r": 0.5}"#;
        assert_eq!(serde_json::from_str::<Best>(old).unwrap().map_at_r, 0.5);
    }

    #[test]
    fn saves_loads_and_keeps_the_newest() {
        let out = tempfile::tempdir().unwrap();
        let none = latest(out.path()).err().unwrap().to_string();
        assert!(none.contains("holds no checkpoint"), "{none}");
        for step in 1..=4 {
            RunDir::new(out.path())
                .save_checkpoint(&state(step), "cfg", &[step as u8], &[9], None, 2)
                .unwrap();
        }
        let ckpt = latest(out.path()).unwrap();
        assert_eq!(ckpt.state, state(4));
        assert_eq!(
            (ckpt.model, ckpt.optimizer, ckpt.config),
            (vec![4], vec![9], "cfg".into())
        );
        assert_eq!(
            list(&RunDir::new(out.path()).checkpoints()).unwrap().len(),
            2
        );
    }

    #[test]
    fn a_half_written_checkpoint_is_ignored() {
        let out = tempfile::tempdir().unwrap();
        RunDir::new(out.path())
            .save_checkpoint(&state(3), "cfg", &[3], &[3], None, 2)
            .unwrap();
        // A kill between creating the temporary folder and renaming it.
        let partial = RunDir::new(out.path())
            .checkpoints()
            .join(".tmp-step-000000004");
        fs::create_dir_all(&partial).unwrap();
        fs::write(partial.join(MODEL), [0]).unwrap();
        // A kill in an atomic write of the run folder leaves its temporary file.
        let stray = out.path().join(".tmp-Ab12Cd");
        fs::write(&stray, b"half a model").unwrap();
        // Not one of ours: left alone.
        let users = out.path().join(".tmp-notes.txt");
        fs::write(&users, b"mine").unwrap();
        // A kill after the rename but before `latest` was updated: still complete, newer.
        let ckpt = latest(out.path()).unwrap();
        assert_eq!(ckpt.state.step, 3);
        RunDir::new(out.path()).clean_partial().unwrap();
        assert!(!partial.exists() && !stray.exists() && users.exists());
        // `latest` lost: the highest complete checkpoint is used.
        fs::remove_file(RunDir::new(out.path()).checkpoints().join(LATEST)).unwrap();
        assert_eq!(latest(out.path()).unwrap().state.step, 3);
    }

    /// A truncated or altered newest checkpoint is named with what is wrong, moved aside, and
    /// the run resumes from the one before; when none is intact, one error names them all.
    #[test]
    fn a_damaged_checkpoint_is_named_and_the_newest_intact_one_used() {
        let out = tempfile::tempdir().unwrap();
        for step in 1..=3 {
            RunDir::new(out.path())
                .save_checkpoint(&state(step), "cfg", &[step as u8; 2000], &[7; 500], None, 3)
                .unwrap();
        }
        let root = RunDir::new(out.path()).checkpoints();
        let newest = root.join("step-000000003");
        fs::write(newest.join(MODEL), [3u8; 1000]).unwrap(); // truncated
        assert_eq!(
            verify(&newest).unwrap_err(),
            "model.bpk is 1000 bytes but 2000 were written (truncated)"
        );
        let middle = root.join("step-000000002");
        let mut altered = vec![7u8; 500];
        altered[100] = 8;
        fs::write(middle.join(OPTIMIZER), &altered).unwrap();
        // Same size: only the checksum tells; eval needs no optimiser, so its check passes.
        assert!(verify(&middle).unwrap_err().contains("checksum"));
        assert!(verify_model_file(&middle.join(MODEL)).is_ok());
        // A folder that lost its state.json.
        let stateless = root.join("step-000000004");
        fs::create_dir_all(&stateless).unwrap();
        fs::write(stateless.join(MODEL), [4]).unwrap();
        let r = RunDir::new(out.path()).load_resumable(|_| Ok(())).unwrap();
        assert_eq!(r.checkpoint.state.step, 1);
        let damaged: Vec<_> = r
            .damaged
            .iter()
            .map(|(d, why, _)| (d, why.as_str()))
            .collect();
        assert_eq!(
            damaged,
            [
                (&stateless, "state.json is missing"),
                (
                    &newest,
                    "model.bpk is 1000 bytes but 2000 were written (truncated)"
                ),
                (
                    &middle,
                    "optimizer.bpk does not match the checksum written with it (its bytes were \
                     altered)"
                ),
            ]
        );
        // Moved aside, nothing deleted; `latest` names the checkpoint resumed from.
        assert!(root.join("damaged-step-000000003").join(MODEL).is_file());
        assert!(root.join("damaged-step-000000004").join(MODEL).is_file());
        assert!(!newest.exists());
        assert_eq!(
            fs::read_to_string(root.join(LATEST)).unwrap(),
            "step-000000001"
        );
        // A checkpoint the caller's decoding refuses counts as damaged too.
        let err = RunDir::new(out.path())
            .load_resumable(|_| Err("model.bpk does not decode".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("every checkpoint is damaged") && err.contains("does not decode"),
            "{err}"
        );
        // A state.json of the previous version (no sums, none of the newer fields): only what
        // decodes is judged.
        let old = r#"{"step": 1, "sampler": {"epoch": 0, "batch": 1}, "seed": 1,
            "skipped_images": 0, "best": {"step": 1, "epoch": 1, "map_at_r": 0.25},
            "validations_since_best": 0}"#;
        fs::write(root.join("step-000000001").join(STATE), old).unwrap();
        fs::write(root.join("step-000000001").join(MODEL), [0]).unwrap();
        let read = latest(out.path()).unwrap().state;
        assert_eq!((read.step, read.metrics_records), (1, None));
        assert_eq!(read.best.unwrap().map_at_r, 0.25);
        fs::write(root.join("step-000000001").join(STATE), b"{").unwrap();
        let err = latest(out.path()).err().unwrap().to_string();
        assert!(err.contains("state.json is not a valid run state"), "{err}");
    }
}
