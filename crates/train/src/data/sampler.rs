//! The P×K batch sampler: every batch holds P classes × K samples, so every anchor has positives.
//!
//! The order of an epoch is a pure function of `(seed, epoch)`: classes are visited in a
//! shuffled cycle, and each class hands out its samples from a shuffled queue that is refilled
//! (reshuffled) when it runs dry, so every sample is seen about equally often. A class with fewer
//! than K samples repeats some of them within a batch (pytorch-metric-learning's
//! `MPerClassSampler` does the same). Resuming needs only [`SamplerState`]: the epoch and how
//! many of its batches were consumed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rng::SplitMix64;

/// Why a P×K sampler cannot be built for a dataset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// K must be at least 2, else no anchor has a positive.
    #[error("sampler: K (samples per class) must be at least 2, got {0}")]
    KTooSmall(usize),
    /// P must be at least 2, else no anchor has a negative.
    #[error("sampler: P (classes per batch) must be at least 2, got {0}")]
    PTooSmall(usize),
    /// More classes per batch than the data has.
    #[error("sampler: P = {p} classes per batch, but the data has only {classes} classes")]
    NotEnoughClasses {
        /// Requested classes per batch.
        p: usize,
        /// Classes in the data.
        classes: usize,
    },
    /// Fewer samples than one batch.
    #[error("sampler: one batch needs P × K = {batch} samples, but the data has only {samples}")]
    NotEnoughSamples {
        /// P × K.
        batch: usize,
        /// Samples in the data.
        samples: usize,
    },
}

/// Where a sampler stands: saved in checkpoints, restored on `--resume`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// The current epoch, from 0.
    pub epoch: u64,
    /// Batches of that epoch already handed out.
    pub batch: usize,
}

/// P classes × K samples per batch over a labelled dataset.
#[derive(Debug, Clone)]
pub struct PkSampler {
    p: usize,
    k: usize,
    seed: u64,
    /// Sample indices of each class, in dataset order.
    classes: Vec<Vec<usize>>,
    batches_per_epoch: usize,
}

impl PkSampler {
    /// A sampler over `labels` (one per sample, any values).
    ///
    /// An epoch has `⌊N / (P·K)⌋` batches, N the number of samples.
    pub fn new(labels: &[i64], p: usize, k: usize, seed: u64) -> Result<Self, SamplerError> {
        if k < 2 {
            return Err(SamplerError::KTooSmall(k));
        }
        if p < 2 {
            return Err(SamplerError::PTooSmall(p));
        }
        let mut by_label: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, &label) in labels.iter().enumerate() {
            by_label.entry(label).or_default().push(i);
        }
        if p > by_label.len() {
            return Err(SamplerError::NotEnoughClasses {
                p,
                classes: by_label.len(),
            });
        }
        if p * k > labels.len() {
            return Err(SamplerError::NotEnoughSamples {
                batch: p * k,
                samples: labels.len(),
            });
        }
        Ok(Self {
            p,
            k,
            seed,
            classes: by_label.into_values().collect(),
            batches_per_epoch: labels.len() / (p * k),
        })
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    /// P, the classes of a batch.
    pub fn classes_per_batch(&self) -> usize {
        self.p
    }

    /// P × K.
    pub fn batch_size(&self) -> usize {
        self.p * self.k
    }

    /// Every batch of `epoch`, each `P·K` sample indices grouped by class (K in a row).
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = SplitMix64::new(self.seed ^ epoch.wrapping_mul(0xA076_1D64_78BD_642F));
        let mut queues: Vec<Vec<usize>> = vec![Vec::new(); self.classes.len()];
        let mut class_cycle: Vec<usize> = Vec::new();
        let mut batches = Vec::with_capacity(self.batches_per_epoch);
        for _ in 0..self.batches_per_epoch {
            let mut batch = Vec::with_capacity(self.batch_size());
            let mut chosen: Vec<usize> = Vec::with_capacity(self.p);
            while chosen.len() < self.p {
                if class_cycle.is_empty() {
                    class_cycle = (0..self.classes.len()).collect();
                    rng.shuffle(&mut class_cycle);
                }
                let class = class_cycle.pop().expect("refilled above");
                if chosen.contains(&class) {
                    // The cycle wrapped inside this batch: put it back for a later batch.
                    class_cycle.insert(0, class);
                    continue;
                }
                chosen.push(class);
                for _ in 0..self.k {
                    let queue = &mut queues[class];
                    if queue.is_empty() {
                        *queue = self.classes[class].clone();
                        rng.shuffle(queue);
                    }
                    batch.push(queue.pop().expect("refilled above"));
                }
            }
            batches.push(batch);
        }
        batches
    }

    /// The batches still to come from `state` on, in the current epoch.
    pub fn remaining(&self, state: SamplerState) -> Vec<Vec<usize>> {
        let mut batches = self.epoch(state.epoch);
        batches.drain(..state.batch.min(batches.len()));
        batches
    }
}
