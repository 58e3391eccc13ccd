//! The approximate search: an HNSW graph from `usearch` (keys are the items' ids), saved with
//! each generation and brought up to date with the change log when opened.
//!
//! The graph holds bfloat16 copies of the vectors (AVX-512 BF16 kernels where the CPU has
//! them): half the memory traffic of float32, 1.3× the queries/s on a million 64-d vectors for
//! 0.002 less recall@10 (docs/BENCHMARKS.md). Its candidates are ranked again exactly, in f64,
//! from the index's own float32 vectors.
//!
//! usearch serves a call from one of a fixed number of thread contexts, reserved up front;
//! [`Ann`] lets at most that many calls in at once (a counting gate), so any number of caller
//! threads (a server's) is safe.

use std::path::Path;
use std::sync::{Condvar, Mutex};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{IndexError, Result};
use crate::spec::{IndexSpec, Metric};

/// The HNSW graph over an index's items.
pub struct Ann {
    graph: Index,
    /// Calls inside usearch now, at most `contexts`.
    busy: Mutex<usize>,
    freed: Condvar,
    contexts: usize,
}

fn ann_error(e: impl std::fmt::Display) -> IndexError {
    IndexError::Ann(e.to_string())
}

/// Thread contexts reserved in the graph: every core, several times over (a server's request
/// threads, a build's rayon workers).
fn contexts() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores.max(rayon::current_num_threads()) * 2).max(8)
}

fn options(spec: &IndexSpec) -> IndexOptions {
    IndexOptions {
        dimensions: spec.dim,
        metric: match spec.metric {
            // The same ranking; distances are recomputed exactly by the caller.
            Metric::Euclidean | Metric::SquaredEuclidean => MetricKind::L2sq,
            Metric::Cosine => MetricKind::Cos,
        },
        quantization: ScalarKind::BF16,
        connectivity: spec.ann.connectivity,
        expansion_add: spec.ann.expansion_add,
        expansion_search: spec.ann.expansion_search,
        multi: false,
    }
}

impl Ann {
    fn wrap(graph: Index) -> Self {
        Self {
            graph,
            busy: Mutex::new(0),
            freed: Condvar::new(),
            contexts: contexts(),
        }
    }

    /// An empty graph with room for `capacity` items.
    pub fn new(spec: &IndexSpec, capacity: usize) -> Result<Self> {
        let graph = Index::new(&options(spec)).map_err(ann_error)?;
        let ann = Self::wrap(graph);
        ann.reserve(capacity)?;
        Ok(ann)
    }

    /// A graph saved by [`save`](Self::save).
    pub fn load(spec: &IndexSpec, path: &Path) -> Result<Self> {
        let ann = Self::new(spec, 0)?;
        let text = path.to_str().ok_or_else(|| {
            IndexError::Invalid(format!("{} is not a UTF-8 path", path.display()))
        })?;
        ann.graph.load(text).map_err(|e| IndexError::Corrupt {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        if ann.graph.dimensions() != spec.dim {
            return Err(IndexError::Corrupt {
                path: path.to_owned(),
                why: format!(
                    "a {}-d graph in a {}-d index",
                    ann.graph.dimensions(),
                    spec.dim
                ),
            });
        }
        ann.graph.change_expansion_search(spec.ann.expansion_search);
        let size = ann.graph.size();
        ann.reserve(size)?;
        Ok(ann)
    }

    /// Writes the graph to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = path.to_str().ok_or_else(|| {
            IndexError::Invalid(format!("{} is not a UTF-8 path", path.display()))
        })?;
        self.gated(|g| g.save(text)).map_err(|e| IndexError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Room for `capacity` items (grown by half again, so adding one at a time stays cheap).
    fn reserve(&self, capacity: usize) -> Result<()> {
        if capacity <= self.graph.capacity() {
            return Ok(());
        }
        let room = capacity.max(self.graph.capacity() * 3 / 2).max(64);
        // Not gated: it needs no thread context, but no other call may run meanwhile; callers
        // hold the index mutably.
        self.graph
            .reserve_capacity_and_threads(room, self.contexts)
            .map_err(ann_error)
    }

    /// Runs `f` on the graph while holding one of its thread contexts.
    fn gated<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= self.contexts {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        drop(busy);
        let out = f(&self.graph);
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.freed.notify_one();
        out
    }

    /// Makes room for `more` items beyond those present.
    pub fn grow(&mut self, more: usize) -> Result<()> {
        self.reserve(self.graph.size() + more)
    }

    /// Adds one item (room made first with [`grow`](Self::grow)); safe from several threads.
    pub fn add(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.gated(|g| g.add(id, vector)).map_err(ann_error)
    }

    /// Removes an item.
    pub fn remove(&self, id: u64) -> Result<()> {
        self.gated(|g| g.remove(id)).map(|_| ()).map_err(ann_error)
    }

    /// Ids of about the `k` nearest items, nearest first (usearch keeps at least `k`
    /// candidates however small `expansion_search` is).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<u64>> {
        self.gated(|g| g.search(query, k))
            .map(|m| m.keys)
            .map_err(ann_error)
    }

    /// Candidates kept while searching from now on.
    pub fn set_expansion_search(&mut self, n: usize) {
        self.graph.change_expansion_search(n.max(1));
    }

    /// Items in the graph.
    pub fn len(&self) -> usize {
        self.graph.size()
    }

    /// Bytes of memory the graph holds (with its copy of the vectors).
    pub fn memory(&self) -> usize {
        self.graph.memory_usage()
    }
}
