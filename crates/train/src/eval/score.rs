//! Stages 2 and 3 of `triplet eval`: embedding what the plan opened, then scoring every group
//! it selected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use triplet_metrics::{Clustering, Reid, Retrieval, Roc, Verification, clustering, reid};

use super::plan::EvalPlan;
use super::verification::{ScoredPairs, pairs_from_labels, pairs_of_file, verify};
use super::{Group, clustering as cluster_group};
use crate::config::toml_name;
use crate::console::say;
use crate::data::source::ImageSet;
use crate::embed::{Embedded, embed_set};

/// One embedded side of the evaluation.
pub struct Side {
    /// The images.
    pub set: Arc<ImageSet>,
    /// Their embeddings (readable images only).
    pub embedded: Embedded,
    /// Each row's class, numbered by name across queries and references.
    pub labels: Vec<usize>,
}

/// Stage 2's output: the embedded queries, references and pairs-file images.
pub struct EvalEmbeddings {
    /// The queries.
    pub queries: Side,
    /// The references, when not leave-one-out.
    pub references: Option<Side>,
    /// A pairs file's images, when verification reads one.
    pub pair_images: Option<Embedded>,
    /// When embedding started (the evaluation's time counts from it).
    pub started: Instant,
}

impl EvalEmbeddings {
    /// What the queries are ranked against: the references, else the queries themselves.
    pub fn ranked_against(&self) -> &Side {
        self.references.as_ref().unwrap_or(&self.queries)
    }
}

/// Stage 2: embeds the queries, the references and a pairs file's images.
pub fn embed(plan: &EvalPlan) -> Result<EvalEmbeddings> {
    let started = Instant::now();
    let (set, q) = embed_set(&plan.trained, plan.queries.set.clone())?;
    let refs = match &plan.references {
        Some(r) => Some(embed_set(&plan.trained, r.set.clone())?),
        None => None,
    };
    let pair_images = match &plan.pairs {
        Some(list) => {
            say(&format!(
                "pairs: {} ({} pairs of {} images)",
                plan.options.pairs.describe(),
                list.pairs.len(),
                list.images.len()
            ));
            Some(embed_set(&plan.trained, ImageSet::unlabelled(list.images.clone()))?.1)
        }
        None => None,
    };
    // Classes are matched by name between the two sets.
    let mut ids = HashMap::<String, usize>::new();
    let mut side = |set: Arc<ImageSet>, embedded: Embedded| {
        let labels = embedded
            .labels
            .iter()
            .map(|&l| {
                let n = ids.len();
                *ids.entry(set.classes()[l].clone()).or_insert(n)
            })
            .collect();
        Side {
            set,
            embedded,
            labels,
        }
    };
    let queries = side(set, q);
    let references = refs.map(|(set, e)| side(set, e));
    Ok(EvalEmbeddings {
        queries,
        references,
        pair_images,
        started,
    })
}

/// What `triplet eval` measured.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// Retrieval metrics (always computed: `--show` and the table need them).
    pub retrieval: Retrieval,
    /// NMI and AMI, when selected.
    pub clustering: Option<Clustering>,
    /// Verification, when selected.
    pub verification: Option<Verification>,
    /// Re-identification, when selected.
    pub reid: Option<Reid>,
}

/// Stage 3's output: the report and what the later stages draw from.
pub struct Scored {
    /// The scores.
    pub report: EvalReport,
    /// The groups that ran (clustering may have been left out as too slow).
    pub groups: Vec<Group>,
    /// Each query's average precision over its whole ranking (`None`: nothing relevant).
    pub per_query_ap: Vec<Option<f64>>,
    /// The verification ROC, with the pairs it was scored on.
    pub roc: Option<(Roc, ScoredPairs)>,
    /// Seconds from the start of embedding to the end of scoring.
    pub seconds: f64,
}

/// Stage 3: scores every group the plan selected.
pub fn score(plan: &EvalPlan, e: &EvalEmbeddings) -> Result<Scored> {
    let o = &plan.options;
    let distance = plan.trained.config.loss().distance;
    let q = &e.queries;
    let rows = q.embedded.rows.rows();
    let (retrieval, per_query_ap) = triplet_metrics::retrieval_per_query(
        rows,
        &q.labels,
        e.references
            .as_ref()
            .map(|r| (r.embedded.rows.rows(), r.labels.as_slice())),
        distance,
        &plan.device,
    )?;
    let mut groups = plan.groups.clone();
    if groups.contains(&Group::Clustering)
        && o.metrics.is_none()
        && let Some(note) = cluster_group::too_slow(&q.labels, rows.dim())
    {
        say(&format!("note: {note}"));
        groups.retain(|g| *g != Group::Clustering);
    }
    let clustering = groups
        .contains(&Group::Clustering)
        .then(|| clustering(rows, &q.labels, o.seed));
    let roc = if groups.contains(&Group::Verification) {
        let scored = match (&plan.pairs, &e.pair_images) {
            (Some(list), Some(images)) => pairs_of_file(list, images, distance),
            _ => pairs_from_labels(rows, &q.labels, &o.pairs, o.seed, distance)?,
        };
        if scored.skipped > 0 {
            say(&format!(
                "warning: {} pair(s) left out: an image of theirs cannot be read",
                scored.skipped
            ));
        }
        let name = toml_name(&plan.trained.config.loss.distance);
        let (v, roc) = verify(&scored, &name)?;
        Some((v, roc, scored))
    } else {
        None
    };
    let reid = match &plan.reid {
        Some(columns) => {
            let split = columns.of_rows(&q.embedded.indices);
            Some(reid(
                rows,
                &q.labels,
                split.split(),
                distance,
                &plan.device,
            )?)
        }
        None => None,
    };
    let (verification, roc) = match roc {
        Some((v, roc, scored)) => (Some(v), Some((roc, scored))),
        None => (None, None),
    };
    Ok(Scored {
        report: EvalReport {
            retrieval,
            clustering,
            verification,
            reid,
        },
        groups,
        per_query_ap,
        roc,
        seconds: e.started.elapsed().as_secs_f64(),
    })
}
