//! What a run tells its user: an indicatif bar (loss, active triplets, images/s, ETA) on a
//! terminal, plain lines otherwise; `<out>/metrics.jsonl` with one JSON object per step, epoch
//! and evaluation; and a one-time warning when the embedding collapses.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::checkpoint::CollapseState;

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
    /// Opens `<out>/metrics.jsonl` for appending. When resuming, the records the interrupted
    /// process wrote after its checkpoint (steps, validations, the epoch's summary, the final
    /// evaluation, a half-written line) are dropped first, so every record appears once and in
    /// the order of an uninterrupted run.
    pub fn open(out: &Path, resume: Option<Resume>) -> Result<Self> {
        let path = out.join("metrics.jsonl");
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
                super::checkpoint::write_atomic(&path, text.as_bytes())?;
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
    pub fn write(&mut self, record: &Value) -> Result<()> {
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

/// Progress display: a bar on a terminal, a line every `every` steps otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    every: u64,
}

impl Progress {
    /// A display that prints a plain line every `every` steps when stdout is not a terminal.
    pub fn new(every: u64) -> Self {
        Self {
            bar: None,
            every: every.max(1),
        }
    }

    /// Starts an epoch.
    pub fn start_epoch(&mut self, epoch: u64, epochs: u64, batches: u64, done: u64) {
        if std::io::stdout().is_terminal() {
            let bar = ProgressBar::new(batches);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
            bar.set_position(done);
            bar.reset_eta();
            self.bar = Some(bar);
        }
    }

    /// Reports a step.
    pub fn step(&self, epoch: u64, batch: u64, batches: u64, step: u64, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(batch);
                bar.set_message(line.to_owned());
            }
            None if step.is_multiple_of(self.every) || batch == batches => {
                say(&format!(
                    "epoch {} step {step} [{batch}/{batches}] {line}",
                    epoch + 1
                ));
            }
            None => {}
        }
    }

    /// Prints a message without breaking the bar.
    pub fn println(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => say(message),
        }
    }

    /// Ends the epoch's bar.
    pub fn finish_epoch(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Watches for a collapsed embedding: every distance near 0, or a loss stuck at the margin with
/// every triplet active (anchor, positive and negative all at the same place).
#[derive(Debug)]
pub struct CollapseWatch {
    margin: f64,
    streak: u64,
    warned: bool,
}

/// Consecutive suspicious steps before the warning.
const COLLAPSE_STEPS: u64 = 50;

impl CollapseWatch {
    /// A watch for a loss with this margin.
    pub fn new(margin: f64) -> Self {
        Self::restore(margin, CollapseState::default())
    }

    /// A watch that goes on from `state` (saved in a checkpoint).
    pub fn restore(margin: f64, state: CollapseState) -> Self {
        Self {
            margin,
            streak: state.streak,
            warned: state.warned,
        }
    }

    /// What a checkpoint saves.
    pub fn state(&self) -> CollapseState {
        CollapseState {
            streak: self.streak,
            warned: self.warned,
        }
    }

    /// Feeds one step; returns the warning the first time collapse has lasted long enough.
    pub fn observe(
        &mut self,
        loss: f64,
        active_fraction: f64,
        d_ap: f64,
        d_an: f64,
    ) -> Option<String> {
        let tiny = d_ap < 1e-3 && d_an < 1e-3;
        let at_margin = self.margin > 0.0
            && (loss - self.margin).abs() < 0.02 * self.margin
            && active_fraction > 0.999
            && (d_an - d_ap).abs() < 0.02 * self.margin.max(d_an);
        self.streak = if tiny || at_margin {
            self.streak + 1
        } else {
            0
        };
        if self.streak >= COLLAPSE_STEPS && !self.warned {
            self.warned = true;
            return Some(format!(
                "warning: the embedding looks collapsed (for {COLLAPSE_STEPS} steps: loss {loss:.4} \
                 ~ margin {}, {:.0}% of triplets active, d_ap {d_ap:.4} ~ d_an {d_an:.4}). All images \
                 map to nearly the same point. Try a lower learning rate, semi-hard instead of hard \
                 mining, a few warm-up steps ([schedule] warmup_steps), and check that labels \
                 match the images.",
                self.margin,
                active_fraction * 100.0
            ));
        }
        None
    }
}

/// Prints a line on stdout, ignoring a closed pipe (`triplet train … | head` must not stop
/// or crash the training: its record is `metrics.jsonl`).
pub fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A JSON number, or null for NaN and infinities.
pub fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_is_warned_once_after_a_streak() {
        let mut watch = CollapseWatch::new(0.2);
        for _ in 0..COLLAPSE_STEPS - 1 {
            assert!(watch.observe(0.2, 1.0, 0.0, 0.0).is_none());
        }
        // A healthy step resets the streak.
        assert!(watch.observe(0.1, 0.4, 0.5, 0.9).is_none());
        let warnings: Vec<_> = (0..3 * COLLAPSE_STEPS)
            .filter_map(|_| watch.observe(0.2001, 1.0, 0.7, 0.7001))
            .collect();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("collapsed"));
    }

    #[test]
    fn healthy_training_is_not_flagged() {
        let mut watch = CollapseWatch::new(0.2);
        for i in 0..500 {
            let t = f64::from(i) / 500.0;
            assert!(
                watch
                    .observe(0.15 - 0.1 * t, 0.6 - 0.3 * t, 0.5, 0.8)
                    .is_none()
            );
        }
    }

    #[test]
    fn resuming_drops_lines_after_the_checkpoint() {
        let out = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(out.path(), None).unwrap();
        for step in 1..=5 {
            log.write(&json!({ "kind": "step", "step": step })).unwrap();
        }
        drop(log);
        let resume = Resume {
            step: 3,
            records: None,
        };
        let mut log = MetricsLog::open(out.path(), Some(resume)).unwrap();
        log.write(&json!({ "kind": "step", "step": 4 })).unwrap();
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
        let mut log = MetricsLog::open(out.path(), None).unwrap();
        for step in 1..=2 {
            log.write(&json!({ "kind": "step", "step": step })).unwrap();
        }
        log.write(&json!({ "kind": "epoch", "step": 2 })).unwrap();
        let counted = log.sync().unwrap();
        assert_eq!(counted, 3);
        log.write(&json!({ "kind": "eval", "step": 2 })).unwrap();
        drop(log);
        let path = out.path().join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\": \"ev");
        std::fs::write(&path, text).unwrap();
        let resume = Resume {
            step: 2,
            records: Some(counted),
        };
        let mut log = MetricsLog::open(out.path(), Some(resume)).unwrap();
        log.write(&json!({ "kind": "eval", "step": 2 })).unwrap();
        assert_eq!(log.sync().unwrap(), 4);
        let kinds: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, ["\"step\"", "\"step\"", "\"epoch\"", "\"eval\""]);
    }
}
