//! The streaming loader: worker threads decode, augment and normalise whole batches ahead of
//! training, and hand them over in order.
//!
//! At most `prefetch + workers` batches are decoded or waiting at any time, so memory stays
//! bounded however large the dataset. Batches come out in sampler order whatever worker made
//! them, and each image's augmentation is keyed by its position (see
//! [`crate::data::augment::image_key`]), so the data of a run do not depend on
//! thread timing. An image that cannot be decoded is reported once (its path in the batch's
//! `new_errors`) and left out of every batch after that.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::augment::{Transform, image_key};
use super::source::ImageSet;

/// One batch, ready to become tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Position of this batch among those the loader was given.
    pub position: usize,
    /// `count × channels × height × width` values.
    pub images: Vec<f32>,
    /// Class of each image.
    pub labels: Vec<i64>,
    /// Index in the image set of each image.
    pub indices: Vec<usize>,
    /// Images in the batch (requested minus skipped).
    pub count: usize,
    /// Images of this batch left out because they cannot be decoded.
    pub skipped: usize,
    /// One message per image found unreadable for the first time.
    pub new_errors: Vec<String>,
    /// Indices of the images of this batch left out as unreadable (found now or before).
    pub unreadable: Vec<usize>,
}

/// Images that failed to decode, shared by all loaders of a run.
#[derive(Debug, Default)]
pub struct BadImages(Mutex<HashSet<usize>>);

impl BadImages {
    /// Number of distinct images found unreadable so far.
    pub fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    /// True when every image read so far decoded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A set that starts with `indices` known unreadable (restored from a checkpoint): they are
    /// skipped, and counted, without being read or reported again.
    pub fn with_known(indices: &[usize]) -> Self {
        Self(Mutex::new(indices.iter().copied().collect()))
    }

    fn contains(&self, i: usize) -> bool {
        self.0.lock().expect("not poisoned").contains(&i)
    }

    /// Records `i`; true if it was not known.
    fn insert(&self, i: usize) -> bool {
        self.0.lock().expect("not poisoned").insert(i)
    }
}

/// What the workers need, shared.
struct Job {
    set: Arc<ImageSet>,
    transform: Arc<Transform>,
    batches: Vec<Vec<usize>>,
    /// `(seed, epoch, index of batches[0] in the epoch)` for augmentation keys.
    key: (u64, u64, usize),
    bad: Arc<BadImages>,
}

impl Job {
    fn build(&self, position: usize) -> Batch {
        let members = &self.batches[position];
        let mut images = Vec::with_capacity(members.len() * self.transform.image_len());
        let mut labels = Vec::with_capacity(members.len());
        let mut indices = Vec::with_capacity(members.len());
        let mut new_errors = Vec::new();
        let mut unreadable = Vec::new();
        let mut skipped = 0;
        let (seed, epoch, first) = self.key;
        for (slot, &i) in members.iter().enumerate() {
            if self.bad.contains(i) {
                skipped += 1;
                unreadable.push(i);
                continue;
            }
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.set
                    .load_native(i, self.transform.channels)
                    .map(|(chw, native)| {
                        let key = image_key(seed, epoch, first + position, slot);
                        self.transform.prepare(chw, native, key)
                    })
            }));
            match loaded {
                Ok(Ok(chw)) => {
                    images.extend_from_slice(&chw);
                    labels.push(self.set.labels()[i] as i64);
                    indices.push(i);
                }
                failure => {
                    skipped += 1;
                    unreadable.push(i);
                    if self.bad.insert(i) {
                        let reason = match failure {
                            // The decoder's message once (its own sources repeat it).
                            Ok(Err(e)) => match std::error::Error::source(&e) {
                                Some(cause) => format!("{e}: {cause}"),
                                None => e.to_string(),
                            },
                            _ => format!(
                                "cannot decode image {} (the decoder crashed)",
                                self.set.describe(i)
                            ),
                        };
                        new_errors.push(format!("{reason}; skipped"));
                    }
                }
            }
        }
        Batch {
            position,
            count: labels.len(),
            images,
            labels,
            indices,
            skipped,
            new_errors,
            unreadable,
        }
    }
}

/// Decodes batches in worker threads; [`next_batch`](Self::next_batch) returns them in order.
pub struct Loader {
    results: Option<Receiver<Batch>>,
    tokens: Option<SyncSender<()>>,
    pending: BTreeMap<usize, Batch>,
    next: usize,
    total: usize,
    workers: Vec<JoinHandle<()>>,
    waited: Duration,
}

/// Options of a [`Loader`].
#[derive(Debug, Clone, Copy)]
pub struct LoaderOptions {
    /// Worker threads (at least 1 is used).
    pub workers: usize,
    /// Batches decoded ahead, beyond one per worker.
    pub prefetch: usize,
    /// Seed for augmentation keys.
    pub seed: u64,
    /// Epoch, for augmentation keys.
    pub epoch: u64,
    /// Index in the epoch of the first batch given, for augmentation keys.
    pub first_batch: usize,
}

impl Loader {
    /// Starts decoding `batches` (lists of indices into `set`).
    pub fn spawn(
        set: Arc<ImageSet>,
        transform: Arc<Transform>,
        batches: Vec<Vec<usize>>,
        bad: Arc<BadImages>,
        options: LoaderOptions,
    ) -> Self {
        let total = batches.len();
        let workers = options.workers.max(1);
        let window = options.prefetch + workers;
        let job = Arc::new(Job {
            set,
            transform,
            batches,
            key: (options.seed, options.epoch, options.first_batch),
            bad,
        });
        let (token_tx, token_rx) = sync_channel::<()>(window);
        for _ in 0..window {
            token_tx
                .send(())
                .expect("the channel has room for the window");
        }
        let token_rx = Arc::new(Mutex::new(token_rx));
        let (result_tx, result_rx) = channel();
        let counter = Arc::new(AtomicUsize::new(0));
        let handles = (0..workers)
            .map(|w| {
                let (job, tokens, results, counter) = (
                    Arc::clone(&job),
                    Arc::clone(&token_rx),
                    result_tx.clone(),
                    Arc::clone(&counter),
                );
                std::thread::Builder::new()
                    .name(format!("triplet-data-{w}"))
                    .spawn(move || {
                        loop {
                            if tokens.lock().expect("not poisoned").recv().is_err() {
                                return;
                            }
                            let position = counter.fetch_add(1, Ordering::Relaxed);
                            if position >= job.batches.len() {
                                return;
                            }
                            if results.send(job.build(position)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning a data thread")
            })
            .collect();
        Self {
            results: Some(result_rx),
            tokens: Some(token_tx),
            pending: BTreeMap::new(),
            next: 0,
            total,
            workers: handles,
            waited: Duration::ZERO,
        }
    }

    /// The next batch in order; `None` after the last one.
    ///
    /// # Panics
    /// If a worker thread died (a bug: decoding failures are reported in the batch).
    pub fn next_batch(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let start = Instant::now();
        let batch = loop {
            if let Some(batch) = self.pending.remove(&self.next) {
                break batch;
            }
            let received = self
                .results
                .as_ref()
                .expect("present until drop")
                .recv()
                .expect("a data worker thread stopped unexpectedly");
            self.pending.insert(received.position, received);
        };
        self.waited += start.elapsed();
        self.next += 1;
        if let Some(tokens) = &self.tokens {
            // Fails only when every worker has finished, which is fine.
            let _ = tokens.try_send(());
        }
        Some(batch)
    }

    /// Total time [`next_batch`](Self::next_batch) spent waiting for workers.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing both channels makes every worker return at its next send or token.
        self.tokens.take();
        self.results.take();
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}
