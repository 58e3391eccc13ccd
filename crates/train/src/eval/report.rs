//! Stage 4 of `triplet eval`: the console table.

use triplet_metrics::RECALL_AT;

use super::plan::EvalPlan;
use super::score::{EvalEmbeddings, Scored};
use crate::config::toml_name;

/// `query-reference` or `leave-one-out`.
pub(super) fn mode(e: &EvalEmbeddings) -> &'static str {
    if e.references.is_some() {
        "query-reference"
    } else {
        "leave-one-out"
    }
}

/// The table and its notes, a line each, as `triplet eval` prints them.
pub fn report(plan: &EvalPlan, e: &EvalEmbeddings, s: &Scored) -> Vec<String> {
    let r = &s.report.retrieval;
    let mut out = vec![
        format!(
            "{}: {} queries counted of {}, {}-d, {} distance, {:.1} s",
            mode(e),
            r.queries,
            r.total_queries,
            e.queries.embedded.rows.dim(),
            toml_name(&plan.trained.config.loss.distance),
            s.seconds,
        ),
        "  metric              value".into(),
        format!("  P@1                 {:.4}", r.precision_at_1),
    ];
    for (k, v) in RECALL_AT.iter().zip(r.recall_at) {
        out.push(format!("  Recall@{k:<12} {v:.4}"));
    }
    out.push(format!("  R-Precision         {:.4}", r.r_precision));
    out.push(format!("  MAP@R               {:.4}", r.map_at_r));
    out.push(format!("  MAP                 {:.4}", r.map));
    out.push(format!("  MRR                 {:.4}", r.mrr));
    if let Some(c) = &s.report.clustering {
        out.push(format!("  NMI                 {:.4}", c.nmi));
        out.push(format!("  AMI                 {:.4}", c.ami));
    }
    if let Some(v) = &s.report.verification {
        out.push(format!(
            "  verification        {} pairs ({} same-class)",
            v.pairs, v.positive_pairs
        ));
        out.push(format!("  ROC AUC             {:.4}", v.auc));
        out.push(format!("  TAR@FAR=1e-3        {:.4}", v.tar_at_far_1e3));
        out.push(format!("  TAR@FAR=1e-2        {:.4}", v.tar_at_far_1e2));
        out.push(format!(
            "  accuracy (10-fold)  {:.4} ± {:.4}",
            v.accuracy, v.accuracy_std
        ));
        out.push(format!(
            "  threshold           {:.4} (accuracy {:.4} on all pairs)",
            v.threshold, v.threshold_accuracy
        ));
        if v.negative_pairs < 1000 {
            out.push(format!(
                "note: {} different-class pairs resolve FAR only to {:.0e}; TAR@FAR=1e-3 needs \
                 1000 or more",
                v.negative_pairs,
                1.0 / v.negative_pairs as f64
            ));
        }
    }
    if let Some(re) = &s.report.reid {
        out.push(format!(
            "  re-identification   {} queries counted of {}, gallery {}{}",
            re.queries,
            re.total_queries,
            re.gallery,
            if re.groups {
                ", same-group matches left out"
            } else {
                ""
            }
        ));
        out.push(format!("  CMC rank-1          {:.4}", re.cmc_rank_1));
        out.push(format!("  CMC rank-5          {:.4}", re.cmc_rank_5));
        out.push(format!("  CMC rank-10         {:.4}", re.cmc_rank_10));
        out.push(format!("  mAP                 {:.4}", re.map));
    }
    if r.queries < r.total_queries {
        out.push(format!(
            "note: {} queries have no relevant reference (their class has no other image) and \
             are not counted",
            r.total_queries - r.queries
        ));
    }
    out
}
