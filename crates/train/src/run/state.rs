//! Where a run stands, saved with each of its checkpoints: the step, the sampler's position,
//! the seed, the epoch's running totals, the best validation and early stopping's patience,
//! the images found unreadable, the collapse watch and the length of the metrics log. Exact:
//! a run resumed from it goes on as if it had never stopped.

use serde::{Deserialize, Serialize};

use crate::data::sampler::SamplerState;
use crate::train::amp::LossScale;

/// The best validation so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Step of the checkpoint.
    pub step: u64,
    /// Epochs completed at that point.
    pub epoch: u64,
    /// Its validation MAP@R.
    #[serde(with = "exact_f64")]
    pub map_at_r: f64,
}

/// Running totals of the epoch in progress, so that its `epoch` record after a resume covers
/// the whole epoch, as in an uninterrupted run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochTotals {
    /// Sum of the steps' losses.
    #[serde(with = "exact_f64")]
    pub loss: f64,
    /// Sum of the steps' active-triplet fractions.
    #[serde(with = "exact_f64")]
    pub active: f64,
    /// Sum of the steps' mean anchor-positive distances.
    #[serde(with = "exact_f64")]
    pub d_ap: f64,
    /// Sum of the steps' mean anchor-negative distances.
    #[serde(with = "exact_f64")]
    pub d_an: f64,
    /// Optimiser steps taken in the epoch.
    pub steps: u64,
    /// Images trained on in the epoch.
    pub images: u64,
    /// Images of the epoch's batches left out as unreadable.
    pub skipped: u64,
    /// Seconds spent training in the epoch (by every process of the run).
    #[serde(with = "exact_f64")]
    pub seconds: f64,
    /// Of those, seconds spent waiting for data.
    #[serde(with = "exact_f64")]
    pub waited: f64,
}

/// An `f64` in `state.json` as the shortest decimal string that reads back to the same bits:
/// serde_json reads plain JSON numbers to within one unit in the last place, and the sums of a
/// resumed epoch, or the best MAP@R compared against, must go on exactly. Plain numbers (older
/// checkpoints) are still read.
mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&x.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(f64),
        }
        match Either::deserialize(d)? {
            Either::Number(x) => Ok(x),
            Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The collapse watch's state (`train/collapse.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollapseState {
    /// Consecutive suspicious steps.
    pub streak: u64,
    /// Whether the warning was given.
    pub warned: bool,
}

/// Where a run stands, saved with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Optimiser steps taken.
    pub step: u64,
    /// The sampler's position: the epoch in progress and its batches consumed.
    pub sampler: SamplerState,
    /// The run's seed (weights, sampler, augmentation).
    pub seed: u64,
    /// Distinct images found unreadable so far.
    pub skipped_images: u64,
    /// The best validation so far (its checkpoint is kept and named by `checkpoints/best`).
    #[serde(default)]
    pub best: Option<Best>,
    /// Validations since the best one, for early stopping.
    #[serde(default)]
    pub validations_since_best: u64,
    /// Totals of the epoch in progress (zero at an epoch's end).
    #[serde(default)]
    pub epoch_totals: EpochTotals,
    /// Indices of the images found unreadable so far, so that a resumed run skips (and
    /// counts) them as the uninterrupted run does.
    #[serde(default)]
    pub bad_images: Vec<usize>,
    /// The collapse watch.
    #[serde(default)]
    pub collapse: CollapseState,
    /// Records in `metrics.jsonl` when the checkpoint was taken: a resume keeps exactly those.
    /// `None` in checkpoints of older versions (then records up to `step` are kept).
    #[serde(default)]
    pub metrics_records: Option<u64>,
    /// `--devices` the run trains on (empty: the backend's default device); a resume without
    /// `--devices` goes on on these.
    #[serde(default)]
    pub devices: Vec<usize>,
    /// The dynamic loss scale of an f16 run (`None` otherwise, and in checkpoints of older
    /// versions).
    #[serde(default)]
    pub loss_scale: Option<LossScale>,
}

impl RunState {
    /// The state of a fresh run.
    pub fn new(seed: u64) -> Self {
        Self {
            step: 0,
            sampler: SamplerState::default(),
            seed,
            skipped_images: 0,
            best: None,
            validations_since_best: 0,
            epoch_totals: EpochTotals::default(),
            bad_images: Vec::new(),
            collapse: CollapseState::default(),
            metrics_records: None,
            devices: Vec::new(),
            loss_scale: None,
        }
    }
}

/// What a validation changed: whether it is the best so far, and whether early stopping's
/// patience is now spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    /// A better MAP@R than every validation before (the first one always is).
    pub improved: bool,
    /// `patience` validations in a row without a better one (never with `patience` 0).
    pub stop: bool,
}

impl RunState {
    /// Records a validation of MAP@R `map_at_r` after `epoch` epochs at the current step: the
    /// best so far (its checkpoint becomes `checkpoints/best`) or one more validation since the
    /// best, for early stopping after `patience` of them (0: never).
    pub fn record_validation(&mut self, map_at_r: f64, epoch: u64, patience: u64) -> Validated {
        let improved = self.best.is_none_or(|b| map_at_r > b.map_at_r);
        if improved {
            self.best = Some(Best {
                step: self.step,
                epoch,
                map_at_r,
            });
            self.validations_since_best = 0;
        } else {
            self.validations_since_best += 1;
        }
        Validated {
            improved,
            stop: self.patience_spent(patience),
        }
    }

    /// Whether `patience` validations (0: never) have passed without a better MAP@R.
    pub fn patience_spent(&self, patience: u64) -> bool {
        patience > 0 && self.validations_since_best >= patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validations_keep_the_best_and_count_patience() {
        let mut state = RunState::new(0);
        state.step = 10;
        let first = state.record_validation(0.5, 1, 2);
        assert_eq!(
            first,
            Validated {
                improved: true,
                stop: false
            }
        );
        state.step = 20;
        // Equal is not better.
        assert_eq!(
            state.record_validation(0.5, 2, 2),
            Validated {
                improved: false,
                stop: false
            }
        );
        state.step = 30;
        assert_eq!(
            state.record_validation(0.4, 3, 2),
            Validated {
                improved: false,
                stop: true
            }
        );
        assert_eq!(
            state.best,
            Some(Best {
                step: 10,
                epoch: 1,
                map_at_r: 0.5
            })
        );
        state.step = 40;
        let better = state.record_validation(0.6, 4, 2);
        assert_eq!(
            better,
            Validated {
                improved: true,
                stop: false
            }
        );
        assert_eq!(
            (state.validations_since_best, state.best.unwrap().step),
            (0, 40)
        );
        // Patience 0 never stops.
        for _ in 0..5 {
            assert!(!state.record_validation(0.1, 5, 0).stop);
        }
    }
}
