//! The distance threshold under which two embeddings are the same class or person: a number,
//! or the one `triplet eval` found by verification (`metrics.json`). `triplet search` and
//! `triplet serve` read it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::console::say;
use crate::files::same_file;
use crate::run::trained::Trained;

/// The verification threshold in a metrics.json written by `triplet eval`.
fn threshold_of(metrics: &Path, distance: &str, trained: &Trained) -> Result<f64> {
    let text = std::fs::read_to_string(metrics).with_context(|| {
        format!(
            "cannot read {}; run `triplet eval` (verification is on by default) to find a \
             threshold",
            metrics.display()
        )
    })?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", metrics.display()))?;
    if let Some(made_by) = value["checkpoint"].as_str()
        && !same_file(Path::new(made_by), &trained.weights)
    {
        say(&format!(
            "warning: the threshold in {} was found for {made_by}, not for {}",
            metrics.display(),
            trained.weights.display()
        ));
    }
    let v = &value["verification"];
    let Some(threshold) = v["threshold"].as_f64() else {
        bail!(
            "{} has no verification threshold; run `triplet eval` with verification on",
            metrics.display()
        );
    };
    if let Some(d) = v["distance"].as_str()
        && d != distance
    {
        bail!(
            "{}'s threshold is for the {d} distance, but this model uses {distance}",
            metrics.display()
        );
    }
    Ok(threshold)
}

/// `--threshold`: a number, `run`, or a metrics.json file.
pub fn resolve_threshold(text: &str, trained: &Trained, distance: &str) -> Result<(f64, String)> {
    let t = text.trim();
    if let Ok(v) = t.parse::<f64>() {
        if !v.is_finite() || v < 0.0 {
            bail!("--threshold {t}: a distance threshold is a finite number, 0 or more");
        }
        return Ok((v, "given".into()));
    }
    let file = if t.eq_ignore_ascii_case("run") {
        let Some(run) = &trained.run else {
            bail!(
                "--threshold run: {} is not part of a run folder; give the number, or the \
                 metrics.json `triplet eval` wrote",
                trained.weights.display()
            );
        };
        run.path().join("metrics.json")
    } else {
        let p = PathBuf::from(t);
        if !p.is_file() {
            bail!(
                "--threshold `{t}` is not a number, `run` (the run folder's threshold) or a \
                 metrics.json file"
            );
        }
        p
    };
    let v = threshold_of(&file, distance, trained)?;
    Ok((v, format!("from {}", file.display())))
}
