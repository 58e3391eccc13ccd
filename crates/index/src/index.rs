//! The index folder and the index in memory.
//!
//! ```text
//! INDEX/
//!   index.json            what the index is (IndexSpec), written once
//!   CURRENT               the name of the current generation, replaced atomically
//!   gen-00000003/         a generation: every item at one moment, never changed once written
//!     state.json          items, the next id, each file's size and CRC-32
//!     vectors.f32         the vectors, row after row (little-endian float32)
//!     items.jsonl         one JSON object per row: id, path, label, extra columns
//!     graph.usearch       the HNSW graph over those items
//!   gen-00000003.log      every add and removal since (see the log module)
//!   lock                  held by the one process that writes
//! ```
//!
//! A change is acknowledged once its log record is on the disk. A generation is written
//! beside the current one and becomes current by replacing `CURRENT`, and only then is the old
//! one deleted; a kill at any moment leaves `CURRENT` naming a whole generation whose log holds
//! every acknowledged change since.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ann::Ann;
use crate::error::{IndexError, IoContext, Result};
use crate::exact::{distance, inv_norm, nearest_rows};
use crate::log::{self, Change};
use crate::spec::{IndexSpec, Item, Meta};

const FORMAT: &str = "triplet-index";
const VERSION: u32 = 1;
const SPEC: &str = "index.json";
const CURRENT: &str = "CURRENT";
const LOCK: &str = "lock";
const STATE: &str = "state.json";
const VECTORS: &str = "vectors.f32";
const ITEMS: &str = "items.jsonl";
const GRAPH: &str = "graph.usearch";

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Exact for galleries of at most [`AnnParams::exact_below`](crate::AnnParams) items, the
    /// HNSW graph above.
    #[default]
    Auto,
    /// Every item's distance: never misses.
    Exact,
    /// The HNSW graph, whatever the size.
    Approximate,
}

/// One neighbour found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The item's id.
    pub id: u64,
    /// Its distance to the query, in the index's metric (computed in f64).
    pub distance: f64,
}

#[derive(Serialize, Deserialize)]
struct SpecFile {
    format: String,
    version: u32,
    #[serde(flatten)]
    spec: IndexSpec,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct FileSum {
    bytes: u64,
    crc32: u32,
}

#[derive(Serialize, Deserialize)]
struct State {
    items: usize,
    next_id: u64,
    vectors: FileSum,
    items_file: FileSum,
    graph: FileSum,
}

/// The writing process's handles: the lock it holds, the log it appends to.
struct Writer {
    _lock: File,
    log: File,
    log_path: PathBuf,
    log_len: u64,
    /// Set when a failed append could not be undone: no more writes.
    poisoned: bool,
}

/// An embedding index: vectors with ids and metadata, searched exactly or through an HNSW
/// graph, kept in a folder that survives a kill at any moment.
///
/// Opened with [`open`](Self::open) it is read-only; [`open_writer`](Self::open_writer) (one
/// process at a time) can [`add`](Self::add) and [`remove`](Self::remove).
pub struct Index {
    dir: PathBuf,
    spec: IndexSpec,
    items: Vec<Item>,
    vectors: Vec<f32>,
    inv_norms: Vec<f32>,
    slot: HashMap<u64, usize>,
    next_id: u64,
    generation: u64,
    log_records: usize,
    ann: Ann,
    writer: Option<Writer>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .field("items", &self.items.len())
            .field("dim", &self.spec.dim)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

fn gen_name(generation: u64) -> String {
    format!("gen-{generation:08}")
}

fn parse_gen(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("gen-")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    fs::rename(&tmp, path).at(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Reads a whole file, checking its size and CRC-32 against `sum`.
fn read_checked(path: &Path, sum: FileSum) -> Result<Vec<u8>> {
    let bytes = fs::read(path).at(path)?;
    if bytes.len() as u64 != sum.bytes {
        return Err(IndexError::Corrupt {
            path: path.to_owned(),
            why: format!("{} bytes, {} expected", bytes.len(), sum.bytes),
        });
    }
    if crc32fast::hash(&bytes) != sum.crc32 {
        return Err(IndexError::Corrupt {
            path: path.to_owned(),
            why: "its CRC-32 does not match state.json".into(),
        });
    }
    Ok(bytes)
}

/// A file written in pieces, with its size and CRC-32 counted on the way.
struct SummedFile {
    out: BufWriter<File>,
    path: PathBuf,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl SummedFile {
    fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).at(&path)?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes).at(&self.path)
    }

    fn finish(self) -> Result<FileSum> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .at(&self.path)?;
        file.sync_all().at(&self.path)?;
        Ok(FileSum {
            bytes: self.bytes,
            crc32: self.hasher.finalize(),
        })
    }
}

/// Reads the size and CRC-32 of a file another library wrote, and makes it durable.
fn sum_of(path: &Path) -> Result<FileSum> {
    let bytes = fs::read(path).at(path)?;
    File::open(path).and_then(|f| f.sync_all()).at(path)?;
    Ok(FileSum {
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
    })
}

fn check_vector(spec: &IndexSpec, v: &[f32]) -> Result<()> {
    if v.len() != spec.dim {
        return Err(IndexError::Dimension {
            expected: spec.dim,
            got: v.len(),
        });
    }
    if let Some(&bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(IndexError::NotFinite { value: bad });
    }
    Ok(())
}

impl Index {
    /// Makes a new index in `dir` (which must not exist, or be an empty folder) holding
    /// `vectors` (`spec.dim` values per item, row after row) with `metas`, one per item, and
    /// opens it for writing. The folder appears whole or not at all: it is built beside and
    /// renamed into place.
    pub fn build(dir: &Path, spec: IndexSpec, vectors: &[f32], metas: Vec<Meta>) -> Result<Self> {
        spec.validate()?;
        if !vectors.len().is_multiple_of(spec.dim) || vectors.len() / spec.dim != metas.len() {
            return Err(IndexError::Invalid(format!(
                "{} values are not {} vectors of {} values",
                vectors.len(),
                metas.len(),
                spec.dim
            )));
        }
        for row in vectors.chunks_exact(spec.dim) {
            check_vector(&spec, row)?;
        }
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(IndexError::Exists {
                        path: dir.to_owned(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(dir),
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).at(&parent)?;
        let name = dir
            .file_name()
            .ok_or_else(|| IndexError::Invalid(format!("{} names no folder", dir.display())))?
            .to_string_lossy()
            .into_owned();
        let tmp = parent.join(format!(".{name}.building-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        fs::create_dir(&tmp).at(&tmp)?;
        let built = (|| -> Result<()> {
            let file = SpecFile {
                format: FORMAT.into(),
                version: VERSION,
                spec: spec.clone(),
            };
            let mut text = serde_json::to_string_pretty(&file).expect("the spec serialises");
            text.push('\n');
            write_atomic(&tmp.join(SPEC), text.as_bytes())?;
            let items: Vec<Item> = metas
                .into_iter()
                .enumerate()
                .map(|(i, meta)| Item { id: i as u64, meta })
                .collect();
            let next_id = items.len() as u64;
            let ann = Ann::new(&spec, items.len())?;
            items
                .par_iter()
                .zip(vectors.par_chunks_exact(spec.dim))
                .try_for_each(|(item, v)| ann.add(item.id, v))?;
            write_generation(&tmp, 1, &items, vectors, next_id, &ann)?;
            Ok(())
        })();
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if dir.exists() {
            // An empty folder, checked above: rename(2) replaces it.
            fs::remove_dir(dir).at(dir)?;
        }
        fs::rename(&tmp, dir).at(dir)?;
        sync_dir(&parent)?;
        Self::open_writer(dir)
    }

    /// Opens the index in `dir` read-only: search, list, read. A concurrent writer may add and
    /// remove meanwhile; this view is the index as it was when opened.
    pub fn open(dir: &Path) -> Result<Self> {
        // A writer may replace the generation between reading CURRENT and its files: read again.
        let mut tries = 0;
        loop {
            match Self::read(dir) {
                Err(IndexError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && tries < 3
                        && dir.join(SPEC).is_file() =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Opens the index in `dir` for writing, which one process at a time may do (else
    /// [`IndexError::Locked`]). A change torn by a kill is cut off the log, and what an
    /// interrupted generation left is deleted.
    pub fn open_writer(dir: &Path) -> Result<Self> {
        if !dir.join(SPEC).is_file() {
            return Self::read(dir); // the clear error
        }
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(IndexError::Locked {
                    path: dir.to_owned(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).at(&lock_path),
        }
        let mut index = Self::read(dir)?;
        let log_path = dir.join(format!("{}.log", gen_name(index.generation)));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .at(&log_path)?;
        let replay_len = log::read(&log_path)?.good_len;
        if log.metadata().at(&log_path)?.len() > replay_len {
            log.set_len(replay_len).at(&log_path)?;
            log.sync_all().at(&log_path)?;
        }
        index.writer = Some(Writer {
            _lock: lock,
            log,
            log_path,
            log_len: replay_len,
            poisoned: false,
        });
        index.remove_stale()?;
        Ok(index)
    }

    /// Deletes generations other than the current one and interrupted writes.
    fn remove_stale(&self) -> Result<()> {
        let current = gen_name(self.generation);
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let entry = entry.at(&self.dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".log").unwrap_or(&name);
            let stale_gen = name.starts_with("gen-") && stem != current;
            let tmp = name.ends_with(".tmp");
            if stale_gen || tmp {
                let path = entry.path();
                if path.is_dir() {
                    fs::remove_dir_all(&path).at(&path)?;
                } else {
                    fs::remove_file(&path).at(&path)?;
                }
            }
        }
        Ok(())
    }

    fn read(dir: &Path) -> Result<Self> {
        let spec_path = dir.join(SPEC);
        let text = match fs::read_to_string(&spec_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() => {
                return Err(IndexError::NotAnIndex {
                    path: dir.to_owned(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => {
                return Err(IndexError::Missing {
                    path: dir.to_owned(),
                });
            }
            Err(e) => return Err(e).at(dir),
        };
        let file: SpecFile = serde_json::from_str(&text).map_err(|e| IndexError::Corrupt {
            path: spec_path.clone(),
            why: e.to_string(),
        })?;
        if file.format != FORMAT || file.version != VERSION {
            return Err(IndexError::Corrupt {
                path: spec_path,
                why: format!(
                    "format {} version {}, this build reads {FORMAT} version {VERSION}",
                    file.format, file.version
                ),
            });
        }
        let spec = file.spec;
        spec.validate().map_err(|e| IndexError::Corrupt {
            path: spec_path.clone(),
            why: e.to_string(),
        })?;
        let current_path = dir.join(CURRENT);
        let current = fs::read_to_string(&current_path).at(&current_path)?;
        let generation = parse_gen(current.trim()).ok_or_else(|| IndexError::Corrupt {
            path: current_path.clone(),
            why: format!("`{}` names no generation", current.trim()),
        })?;
        let gen_dir = dir.join(gen_name(generation));
        let state_path = gen_dir.join(STATE);
        let state: State = serde_json::from_slice(&fs::read(&state_path).at(&state_path)?)
            .map_err(|e| IndexError::Corrupt {
                path: state_path.clone(),
                why: e.to_string(),
            })?;
        let vectors_path = gen_dir.join(VECTORS);
        let bytes = read_checked(&vectors_path, state.vectors)?;
        if bytes.len() != state.items * spec.dim * 4 {
            return Err(IndexError::Corrupt {
                path: vectors_path,
                why: format!("not {} vectors of {} values", state.items, spec.dim),
            });
        }
        let vectors: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        drop(bytes);
        let items_path = gen_dir.join(ITEMS);
        let bytes = read_checked(&items_path, state.items_file)?;
        let mut items = Vec::with_capacity(state.items);
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let item: Item = serde_json::from_slice(line).map_err(|e| IndexError::Corrupt {
                path: items_path.clone(),
                why: format!("line {}: {e}", n + 1),
            })?;
            items.push(item);
        }
        if items.len() != state.items {
            return Err(IndexError::Corrupt {
                path: items_path,
                why: format!("{} items, {} expected", items.len(), state.items),
            });
        }
        let graph_path = gen_dir.join(GRAPH);
        read_checked(&graph_path, state.graph)?;
        let ann = Ann::load(&spec, &graph_path)?;
        if ann.len() != items.len() {
            return Err(IndexError::Corrupt {
                path: graph_path,
                why: format!("{} nodes for {} items", ann.len(), items.len()),
            });
        }
        let slot = items.iter().enumerate().map(|(i, it)| (it.id, i)).collect();
        let inv_norms = vectors.par_chunks_exact(spec.dim).map(inv_norm).collect();
        let mut index = Self {
            dir: dir.to_owned(),
            spec,
            items,
            vectors,
            inv_norms,
            slot,
            next_id: state.next_id,
            generation,
            log_records: 0,
            ann,
            writer: None,
        };
        let replay = log::read(&dir.join(format!("{}.log", gen_name(generation))))?;
        for change in replay.changes {
            index.apply(change)?;
            index.log_records += 1;
        }
        Ok(index)
    }

    /// Applies a change (already durable) to the items, the vectors and the graph.
    fn apply(&mut self, change: Change) -> Result<()> {
        match change {
            Change::Add { id, vector, meta } => {
                check_vector(&self.spec, &vector)?;
                if self.slot.contains_key(&id) {
                    return Err(IndexError::Corrupt {
                        path: self.dir.clone(),
                        why: format!("id {id} added twice"),
                    });
                }
                self.ann.grow(1)?;
                self.ann.add(id, &vector)?;
                self.slot.insert(id, self.items.len());
                self.items.push(Item { id, meta });
                self.inv_norms.push(inv_norm(&vector));
                self.vectors.extend_from_slice(&vector);
                self.next_id = self.next_id.max(id + 1);
            }
            Change::Remove { ids } => {
                for id in ids {
                    let Some(at) = self.slot.remove(&id) else {
                        continue;
                    };
                    self.ann.remove(id)?;
                    let last = self.items.len() - 1;
                    let dim = self.spec.dim;
                    self.items.swap_remove(at);
                    self.inv_norms.swap_remove(at);
                    if at != last {
                        self.vectors
                            .copy_within(last * dim..(last + 1) * dim, at * dim);
                        self.slot.insert(self.items[at].id, at);
                    }
                    self.vectors.truncate(last * dim);
                }
            }
        }
        Ok(())
    }

    /// Appends changes to the log and waits for the disk. On failure the log is cut back, so
    /// a later append never follows a torn record.
    fn append(&mut self, changes: &[Change]) -> Result<()> {
        let w = self.writer.as_mut().ok_or(IndexError::ReadOnly)?;
        if w.poisoned {
            return Err(IndexError::Invalid(format!(
                "an earlier write to {} failed and could not be undone; reopen the index",
                w.log_path.display()
            )));
        }
        match log::append(&mut w.log, &w.log_path, changes) {
            Ok(()) => {
                w.log_len = w.log.metadata().at(&w.log_path)?.len();
                self.log_records += changes.len();
                Ok(())
            }
            Err(e) => {
                if w.log
                    .set_len(w.log_len)
                    .and_then(|()| w.log.sync_all())
                    .is_err()
                {
                    w.poisoned = true;
                }
                Err(e)
            }
        }
    }

    /// Adds items (vector and metadata each) and returns their new ids, once they are on the
    /// disk. Nothing is added if any vector is wrong (its length, a NaN).
    pub fn add(&mut self, entries: Vec<(Vec<f32>, Meta)>) -> Result<Vec<u64>> {
        for (v, _) in &entries {
            check_vector(&self.spec, v)?;
        }
        let first = self.next_id;
        let changes: Vec<Change> = entries
            .into_iter()
            .enumerate()
            .map(|(i, (vector, meta))| Change::Add {
                id: first + i as u64,
                vector,
                meta,
            })
            .collect();
        self.append(&changes)?;
        let ids = (first..first + changes.len() as u64).collect();
        self.ann.grow(changes.len())?;
        for change in changes {
            self.apply(change)?;
        }
        Ok(ids)
    }

    /// Removes items by id, once the removal is on the disk. An unknown id is an error, and
    /// then nothing is removed.
    pub fn remove(&mut self, ids: &[u64]) -> Result<()> {
        if let Some(&unknown) = ids.iter().find(|id| !self.slot.contains_key(id)) {
            return Err(IndexError::UnknownId(unknown));
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let change = Change::Remove { ids };
        self.append(std::slice::from_ref(&change))?;
        self.apply(change)
    }

    /// Whether the log has grown enough that [`compact`](Self::compact) should run: more
    /// changes than a quarter of the items, and at least 1,000.
    pub fn needs_compaction(&self) -> bool {
        self.log_records >= 1000.max(self.items.len() / 4)
    }

    /// Writes every item as a new generation and starts an empty log (opening is then a read,
    /// with no changes to replay). A kill at any moment leaves the old generation or the new.
    pub fn compact(&mut self) -> Result<()> {
        let w = self.writer.as_ref().ok_or(IndexError::ReadOnly)?;
        let _ = w;
        let next = self.generation + 1;
        write_generation(
            &self.dir,
            next,
            &self.items,
            &self.vectors,
            self.next_id,
            &self.ann,
        )?;
        let log_path = self.dir.join(format!("{}.log", gen_name(next)));
        let log = OpenOptions::new()
            .append(true)
            .open(&log_path)
            .at(&log_path)?;
        self.generation = next;
        self.log_records = 0;
        let w = self.writer.as_mut().expect("checked above");
        w.log = log;
        w.log_path = log_path;
        w.log_len = 0;
        self.remove_stale()
    }

    /// Searches keep `n` candidates from now on (faiss's `efSearch`; more: better recall,
    /// slower), for this handle only: the index folder keeps its own.
    pub fn set_expansion_search(&mut self, n: usize) {
        let n = n.max(1);
        self.spec.ann.expansion_search = n;
        self.ann.set_expansion_search(n);
    }

    /// What the index is.
    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, in storage order (which a removal changes).
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// An item and its vector.
    pub fn get(&self, id: u64) -> Option<(&Item, &[f32])> {
        let &at = self.slot.get(&id)?;
        let dim = self.spec.dim;
        Some((&self.items[at], &self.vectors[at * dim..(at + 1) * dim]))
    }

    /// The id the next added item will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The current generation's number (grows with each compaction).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Changes in the log since the current generation.
    pub fn log_records(&self) -> usize {
        self.log_records
    }

    /// Whether this handle may add and remove.
    pub fn is_writable(&self) -> bool {
        self.writer.is_some()
    }

    /// Bytes of memory the HNSW graph holds.
    pub fn graph_memory(&self) -> usize {
        self.ann.memory()
    }

    /// Whether a search in `mode` uses the graph.
    pub fn uses_graph(&self, mode: SearchMode) -> bool {
        match mode {
            SearchMode::Exact => false,
            SearchMode::Approximate => true,
            SearchMode::Auto => self.items.len() > self.spec.ann.exact_below,
        }
    }

    /// The `k` items nearest to `query` (fewer if the index holds fewer), nearest first,
    /// with their distances.
    pub fn search(&self, query: &[f32], k: usize, mode: SearchMode) -> Result<Vec<Hit>> {
        check_vector(&self.spec, query)?;
        if k == 0 {
            return Err(IndexError::Invalid("k must be 1 or more".into()));
        }
        let dim = self.spec.dim;
        let rows: Vec<usize> = if self.uses_graph(mode) {
            let mut rows = Vec::with_capacity(k);
            // Twice as many candidates as asked for (free while within efSearch), ranked
            // again exactly below.
            let wanted = k.max((2 * k).min(self.spec.ann.expansion_search));
            for id in self.ann.search(query, wanted)? {
                if let Some(&at) = self.slot.get(&id) {
                    rows.push(at);
                }
            }
            rows
        } else {
            nearest_rows(
                self.spec.metric,
                &self.vectors,
                &self.inv_norms,
                dim,
                query,
                k,
            )
        };
        let mut hits: Vec<(Hit, usize)> = rows
            .into_iter()
            .map(|at| {
                let row = &self.vectors[at * dim..(at + 1) * dim];
                let hit = Hit {
                    id: self.items[at].id,
                    distance: distance(self.spec.metric, query, row),
                };
                (hit, at)
            })
            .collect();
        hits.sort_by(|a, b| a.0.distance.total_cmp(&b.0.distance).then(a.1.cmp(&b.1)));
        hits.truncate(k);
        Ok(hits.into_iter().map(|(h, _)| h).collect())
    }

    /// [`search`](Self::search) for each of several queries (`dim` values each, row after
    /// row), in parallel.
    pub fn search_many(
        &self,
        queries: &[f32],
        k: usize,
        mode: SearchMode,
    ) -> Result<Vec<Vec<Hit>>> {
        if !queries.len().is_multiple_of(self.spec.dim) {
            return Err(IndexError::Dimension {
                expected: self.spec.dim,
                got: queries.len() % self.spec.dim,
            });
        }
        queries
            .par_chunks_exact(self.spec.dim)
            .map(|q| self.search(q, k, mode))
            .collect()
    }
}

/// Writes generation `generation` of the index in `dir`: its folder whole (written as
/// `gen-N.tmp` and renamed), an empty log, then `CURRENT` naming it.
fn write_generation(
    dir: &Path,
    generation: u64,
    items: &[Item],
    vectors: &[f32],
    next_id: u64,
    ann: &Ann,
) -> Result<()> {
    let name = gen_name(generation);
    let tmp = dir.join(format!("{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    fs::create_dir(&tmp).at(&tmp)?;
    let mut v = SummedFile::create(tmp.join(VECTORS))?;
    for chunk in vectors.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
        v.write(&bytes)?;
    }
    let vectors_sum = v.finish()?;
    let mut it = SummedFile::create(tmp.join(ITEMS))?;
    for item in items {
        let mut line = serde_json::to_vec(item).expect("items serialise");
        line.push(b'\n');
        it.write(&line)?;
    }
    let items_sum = it.finish()?;
    let graph_path = tmp.join(GRAPH);
    ann.save(&graph_path)?;
    let graph_sum = sum_of(&graph_path)?;
    let state = State {
        items: items.len(),
        next_id,
        vectors: vectors_sum,
        items_file: items_sum,
        graph: graph_sum,
    };
    let mut text = serde_json::to_string_pretty(&state).expect("the state serialises");
    text.push('\n');
    let state_path = tmp.join(STATE);
    let mut f = File::create(&state_path).at(&state_path)?;
    f.write_all(text.as_bytes()).at(&state_path)?;
    f.sync_all().at(&state_path)?;
    sync_dir(&tmp)?;
    let final_dir = dir.join(&name);
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).at(&final_dir)?;
    }
    fs::rename(&tmp, &final_dir).at(&final_dir)?;
    let log_path = dir.join(format!("{name}.log"));
    File::create(&log_path)
        .and_then(|f| f.sync_all())
        .at(&log_path)?;
    sync_dir(dir)?;
    write_atomic(&dir.join(CURRENT), format!("{name}\n").as_bytes())
}
