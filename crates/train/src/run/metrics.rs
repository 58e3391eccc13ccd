//! `<run>/metrics.jsonl`: one JSON object per line, one [`Record`] per training step, epoch,
//! validation and final evaluation. The trainer writes these types and the plots read them
//! back, so the format is spelled once, here. Keys are PML's names where it has one
//! (`precision_at_1`, `mean_average_precision_at_r`, …); non-finite numbers are `null`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::RunDir;
use crate::files::write_atomic;

/// One line of `metrics.jsonl`, tagged by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// An optimiser step.
    Step(StepRecord),
    /// The end of an epoch: its means.
    Epoch(EpochRecord),
    /// A validation on the evaluation split.
    Validation(ValidationRecord),
    /// The evaluation at the end of the run.
    Eval(EvalRecord),
}

/// `kind = "step"`. The loss fields are absent for a batch with fewer than two readable
/// images, which trains nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepRecord {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Steps taken, this one included.
    pub step: u64,
    /// The learning rate of the step.
    #[serde(deserialize_with = "nullable")]
    pub lr: f64,
    /// The batch's loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Mined triplets with a positive loss, as a fraction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_fraction: Option<f64>,
    /// Mined triplets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triplets: Option<u64>,
    /// Mean anchor-positive distance of the mined triplets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_d_ap: Option<f64>,
    /// Mean anchor-negative distance of the mined triplets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_d_an: Option<f64>,
    /// Images trained on (the batch less its unreadable images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<usize>,
    /// The loss scale the step's backward ran with (f16 runs: `train.precision = "f16"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Whether the optimiser step was skipped because the scaled gradients overflowed (f16
    /// runs; the next step's scale is half this one's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<bool>,
    /// Wall time of the step, data wait included.
    #[serde(deserialize_with = "nullable")]
    pub seconds: f64,
    /// Of those, seconds spent waiting for the batch.
    #[serde(deserialize_with = "nullable")]
    pub data_wait_seconds: f64,
    /// Images of the batch per second of `seconds`.
    #[serde(deserialize_with = "nullable")]
    pub images_per_second: f64,
}

/// `kind = "epoch"`: means over the epoch's steps (a resumed epoch counts the steps before the
/// interruption too).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EpochRecord {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Steps taken at its end.
    pub step: u64,
    /// Mean loss.
    #[serde(deserialize_with = "nullable")]
    pub loss: f64,
    /// Mean active fraction.
    #[serde(deserialize_with = "nullable")]
    pub active_fraction: f64,
    /// Mean of the steps' mean anchor-positive distances.
    #[serde(deserialize_with = "nullable")]
    pub mean_d_ap: f64,
    /// Mean of the steps' mean anchor-negative distances.
    #[serde(deserialize_with = "nullable")]
    pub mean_d_an: f64,
    /// Training seconds of the epoch.
    #[serde(deserialize_with = "nullable")]
    pub seconds: f64,
    /// Images trained on per second.
    #[serde(deserialize_with = "nullable")]
    pub images_per_second: f64,
    /// The part of `seconds` spent waiting for data.
    #[serde(deserialize_with = "nullable")]
    pub data_wait_fraction: f64,
    /// Images of the epoch's batches left out as unreadable.
    pub skipped_images: u64,
}

/// Retrieval scores under pytorch-metric-learning's keys, in validation and evaluation records
/// and in `triplet eval`'s `metrics.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scores {
    /// P@1.
    #[serde(deserialize_with = "nullable")]
    pub precision_at_1: f64,
    /// R-Precision.
    #[serde(deserialize_with = "nullable")]
    pub r_precision: f64,
    /// MAP@R.
    #[serde(deserialize_with = "nullable")]
    pub mean_average_precision_at_r: f64,
    /// Recall@1.
    #[serde(deserialize_with = "nullable")]
    pub recall_at_1: f64,
    /// Recall@2.
    #[serde(deserialize_with = "nullable")]
    pub recall_at_2: f64,
    /// Recall@4.
    #[serde(deserialize_with = "nullable")]
    pub recall_at_4: f64,
    /// Recall@8.
    #[serde(deserialize_with = "nullable")]
    pub recall_at_8: f64,
    /// MAP over the whole ranking (PML's `mean_average_precision` with `k = None`); NaN in
    /// records of older versions.
    #[serde(deserialize_with = "nullable", default = "nan")]
    pub mean_average_precision: f64,
    /// Mean reciprocal rank of the first relevant reference; NaN in records of older versions.
    #[serde(deserialize_with = "nullable", default = "nan")]
    pub mean_reciprocal_rank: f64,
    /// Queries counted (those with a relevant reference).
    pub queries: usize,
    /// Queries not counted: their class has no other image.
    pub queries_without_relevant_reference: usize,
}

impl From<&triplet_metrics::Retrieval> for Scores {
    fn from(r: &triplet_metrics::Retrieval) -> Self {
        let [recall_at_1, recall_at_2, recall_at_4, recall_at_8] = r.recall_at;
        Scores {
            precision_at_1: r.precision_at_1,
            r_precision: r.r_precision,
            mean_average_precision_at_r: r.map_at_r,
            recall_at_1,
            recall_at_2,
            recall_at_4,
            recall_at_8,
            mean_average_precision: r.map,
            mean_reciprocal_rank: r.mrr,
            queries: r.queries,
            queries_without_relevant_reference: r.total_queries - r.queries,
        }
    }
}

/// `kind = "validation"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidationRecord {
    /// The scores.
    #[serde(flatten)]
    pub scores: Scores,
    /// Epochs completed.
    pub epoch: u64,
    /// Steps taken.
    pub step: u64,
    /// Images embedded.
    pub images: usize,
    /// Whether this is the best validation so far (its checkpoint is `checkpoints/best`).
    pub best: bool,
    /// Seconds the validation took.
    #[serde(deserialize_with = "nullable")]
    pub seconds: f64,
}

/// `kind = "eval"`: the evaluation split scored by the final model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalRecord {
    /// The scores.
    #[serde(flatten)]
    pub scores: Scores,
    /// Epochs completed.
    pub epoch: u64,
    /// Steps taken.
    pub step: u64,
    /// Images embedded.
    pub images: usize,
    /// Classes of the evaluation split.
    pub classes: usize,
}

fn nan() -> f64 {
    f64::NAN
}

/// A number written as `null` (not finite) reads back as NaN.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The records of a `metrics.jsonl` text, in order; lines that are not records (a line cut
/// short by a kill, a kind of a newer version) are skipped.
pub fn parse(text: &str) -> Vec<Record> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The metrics file of a run.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    records: u64,
}

/// Where a resumed run's metrics log is cut: after the records its checkpoint counted, or,
/// for checkpoints of older versions that count none, after the last record of its step.
#[derive(Debug, Clone, Copy)]
pub struct Resume {
    /// The checkpoint's step.
    pub step: u64,
    /// Records written when the checkpoint was taken.
    pub records: Option<u64>,
}

impl MetricsLog {
    /// Opens the run's `metrics.jsonl` for appending. When resuming, the records the interrupted
    /// process wrote after its checkpoint (steps, validations, the epoch's summary, the final
    /// evaluation, a half-written line) are dropped first, so every record appears once and in
    /// the order of an uninterrupted run.
    pub fn open(run: &RunDir, resume: Option<Resume>) -> Result<Self> {
        let path = run.metrics_file();
        let mut records = 0;
        match resume {
            Some(resume) if path.exists() => {
                let lines = BufReader::new(
                    File::open(&path).with_context(|| format!("reading {}", path.display()))?,
                )
                .lines()
                .map_while(std::result::Result::ok);
                let kept: Vec<String> = match resume.records {
                    Some(n) => lines.take(n as usize).collect(),
                    None => lines
                        .filter(|line| {
                            serde_json::from_str::<Value>(line)
                                .ok()
                                .and_then(|v| v.get("step").and_then(Value::as_u64))
                                .is_some_and(|s| s <= resume.step)
                        })
                        .collect(),
                };
                records = kept.len() as u64;
                let mut text = kept.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                write_atomic(&path, text.as_bytes())?;
            }
            Some(_) => {}
            None => {
                // A fresh run starts a fresh file.
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            path,
            file,
            records,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        // Through a `Value`: its keys come out sorted, as they always have in this file.
        let record = serde_json::to_value(record).expect("records serialise");
        writeln!(self.file, "{record}")
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.records += 1;
        Ok(())
    }

    /// Flushes the file to disk and returns the records written, for a checkpoint.
    pub fn sync(&self) -> Result<u64> {
        self.file
            .sync_data()
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `metrics.json` (eval) and `metrics.jsonl` (validation) name the retrieval scores alike:
    /// through `Scores` and through the metrics crate's own serialisation, the same object.
    #[test]
    fn retrieval_scores_serialise_as_the_metrics_crate_does() {
        let rows = [0.0, 0.0, 0.0, 1.0, 5.0, 5.0, 5.0, 6.0, 0.0, 0.5];
        let r = triplet_metrics::retrieval(
            triplet_metrics::Rows::new(&rows, 2),
            &[0, 0, 1, 1, 2],
            None,
            triplet_loss::Distance::Euclidean,
            &crate::device::host(),
        )
        .unwrap();
        assert_eq!((r.queries, r.total_queries), (4, 5));
        let ours = serde_json::to_value(Scores::from(&r)).unwrap();
        assert_eq!(ours, serde_json::to_value(r).unwrap());
        assert_eq!(ours["queries_without_relevant_reference"], 1);
    }

    fn step_record(step: u64) -> Record {
        Record::Step(StepRecord {
            step,
            ..StepRecord::default()
        })
    }

    fn eval(step: u64) -> Record {
        Record::Eval(EvalRecord {
            step,
            ..EvalRecord::default()
        })
    }

    #[test]
    fn resuming_drops_lines_after_the_checkpoint() {
        let out = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(&RunDir::new(out.path()), None).unwrap();
        for step in 1..=5 {
            log.write(&step_record(step)).unwrap();
        }
        drop(log);
        let resume = Resume {
            step: 3,
            records: None,
        };
        let mut log = MetricsLog::open(&RunDir::new(out.path()), Some(resume)).unwrap();
        log.write(&step_record(4)).unwrap();
        let text = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, [1, 2, 3, 4]);
    }

    /// A checkpoint that counted its records keeps exactly those: an epoch summary or a final
    /// evaluation written after it (same step) and a half-written line are dropped.
    #[test]
    fn resuming_keeps_the_records_the_checkpoint_counted() {
        let out = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(&RunDir::new(out.path()), None).unwrap();
        for step in 1..=2 {
            log.write(&step_record(step)).unwrap();
        }
        log.write(&Record::Epoch(EpochRecord {
            step: 2,
            ..EpochRecord::default()
        }))
        .unwrap();
        let counted = log.sync().unwrap();
        assert_eq!(counted, 3);
        log.write(&eval(2)).unwrap();
        drop(log);
        let path = out.path().join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\": \"ev");
        std::fs::write(&path, text).unwrap();
        let resume = Resume {
            step: 2,
            records: Some(counted),
        };
        let mut log = MetricsLog::open(&RunDir::new(out.path()), Some(resume)).unwrap();
        log.write(&eval(2)).unwrap();
        assert_eq!(log.sync().unwrap(), 4);
        let kinds: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, ["\"step\"", "\"step\"", "\"epoch\"", "\"eval\""]);
    }
}
