//! Stage 5 of `triplet eval`: `metrics.json` (retrieval under pytorch-metric-learning's keys,
//! then one object per other group) and the ROC as `roc.csv`.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::Group;
use super::plan::EvalPlan;
use super::report::mode;
use super::score::{EvalEmbeddings, Scored};
use crate::console::say;
use crate::files::write_atomic;
use crate::run::metrics::Scores;

/// `metrics.json`'s content.
pub fn metrics_json(plan: &EvalPlan, e: &EvalEmbeddings, s: &Scored) -> Value {
    let o = &plan.options;
    let r = &s.report;
    let mut metrics = serde_json::to_value(Scores::from(&r.retrieval)).expect("scores serialise");
    metrics["mode"] = json!(mode(e));
    // Retrieval's keys are always there, so it is always listed.
    let mut listed = vec![Group::Retrieval];
    listed.extend(s.groups.iter().filter(|g| **g != Group::Retrieval));
    metrics["metrics"] = json!(listed.iter().map(|g| g.as_str()).collect::<Vec<_>>());
    metrics["checkpoint"] = json!(plan.trained.weights.display().to_string());
    metrics["data"] = json!(o.data.display().to_string());
    metrics["reference"] = json!(
        e.references
            .as_ref()
            .and(o.reference.as_ref())
            .map(|p| p.display().to_string())
    );
    metrics["classes"] = json!(o.classes);
    metrics["distance"] = json!(plan.trained.config.loss.distance);
    metrics["dim"] = json!(e.queries.embedded.rows.dim());
    metrics["backend"] = json!(o.backend.to_string());
    metrics["seed"] = json!(o.seed);
    metrics["seconds"] = json!(s.seconds);
    metrics["skipped_images"] =
        json!(e.queries.embedded.skipped + e.references.as_ref().map_or(0, |r| r.embedded.skipped));
    if let Some(c) = &r.clustering {
        metrics["NMI"] = json!(c.nmi);
        metrics["AMI"] = json!(c.ami);
        metrics["clustering"] = serde_json::to_value(c).expect("scores serialise");
    }
    if let (Some(v), Some((_, pairs))) = (&r.verification, &s.roc) {
        let mut value = serde_json::to_value(v).expect("scores serialise");
        value["pairs_source"] = json!(o.pairs.describe());
        value["skipped_pairs"] = json!(pairs.skipped);
        metrics["verification"] = value;
    }
    if let Some(re) = &r.reid {
        let mut value = serde_json::to_value(re).expect("scores serialise");
        value["query_column"] = json!(o.query_column);
        value["gallery_column"] = json!(o.gallery_column);
        value["group_column"] = json!(o.group_column);
        metrics["reid"] = value;
    }
    metrics
}

/// Writes `metrics.json` and, when verification ran, `roc.csv` into the plan's output folder.
pub fn write(plan: &EvalPlan, e: &EvalEmbeddings, s: &Scored) -> Result<()> {
    let out = &plan.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if let Some((roc, _)) = &s.roc {
        let mut csv = String::from("threshold,far,tar\n");
        for ((t, f), a) in roc.thresholds.iter().zip(&roc.far).zip(&roc.tar) {
            csv.push_str(&format!("{t},{f},{a}\n"));
        }
        write_atomic(&out.join("roc.csv"), csv.as_bytes())?;
    }
    let path = out.join("metrics.json");
    let text = serde_json::to_string_pretty(&metrics_json(plan, e, s)).expect("JSON serialises");
    write_atomic(&path, format!("{text}\n").as_bytes())?;
    say(&format!(
        "metrics written to {}{}",
        path.display(),
        if s.roc.is_some() {
            " (and the ROC to roc.csv)"
        } else {
            ""
        }
    ));
    Ok(())
}
