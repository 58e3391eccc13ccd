//! What the commands print: plain lines on stdout that a closed pipe cannot stop, and a
//! training progress bar (loss, active triplets, images/s, ETA) on a terminal, plain lines
//! otherwise.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

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

/// Prints a line on stdout, ignoring a closed pipe (`triplet train … | head` must not stop
/// or crash the training: its record is `metrics.jsonl`).
pub fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
