//! `triplet eval`: the metrics of a trained model on an image set, in six stages that data flows
//! through one way, each callable on its own:
//!
//! 1. [`plan`]: the options checked against the data before anything is embedded: the model
//!    loaded, the queries and references opened (a CSV list read once, its columns with it), the
//!    metric groups decided, a pairs file and the re-identification columns read and checked;
//! 2. [`embed`](embed()): the queries, the references and a pairs file's images embedded;
//! 3. [`score`]: every selected group scored ([`triplet_metrics`]);
//! 4. [`report`]: the console table;
//! 5. [`write`](write()): `metrics.json` and `roc.csv`;
//! 6. [`plot`](plot()): `retrievals.png`, `roc.png`, `embeddings_pca.png` and `curves.png`.
//!
//! Each metric group beyond retrieval has its module here, with what it reads from the data:
//! [`clustering`], [`verification`] (its pairs), [`reid`] (its columns).

pub mod clustering;
mod figures;
mod plan;
pub mod reid;
mod report;
mod score;
pub mod verification;
mod write;

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;

pub use figures::{SHOWN_HITS, choose_shown, plot};
pub use plan::{EvalPlan, plan};
pub use report::report;
pub use score::{EvalEmbeddings, EvalReport, Scored, Side, embed, score};
pub use write::write;

use crate::device::Backend;
use verification::PairsSource;

/// A group of metrics `triplet eval --metrics` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// P@1, Recall@K, R-Precision, MAP@R, MAP, MRR.
    Retrieval,
    /// k-means NMI and AMI.
    Clustering,
    /// ROC, AUC, TAR@FAR, 10-fold accuracy, threshold.
    Verification,
    /// CMC rank-1/5/10 and mAP over a query/gallery split.
    Reid,
}

impl Group {
    /// The name `--metrics` and `metrics.json` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retrieval => "retrieval",
            Self::Clustering => "clustering",
            Self::Verification => "verification",
            Self::Reid => "reid",
        }
    }
}

impl FromStr for Group {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "retrieval" => Ok(Self::Retrieval),
            "clustering" | "nmi" | "ami" => Ok(Self::Clustering),
            "verification" | "roc" => Ok(Self::Verification),
            "reid" | "re-identification" | "cmc" => Ok(Self::Reid),
            other => Err(format!(
                "unknown metric group `{other}` in --metrics; the groups are retrieval, \
                 clustering, verification, reid"
            )),
        }
    }
}

/// The query column's default name (open-metric-learning's).
pub const DEFAULT_QUERY_COLUMN: &str = "is_query";
/// The gallery column's default name (open-metric-learning's).
pub const DEFAULT_GALLERY_COLUMN: &str = "is_gallery";

/// What `triplet eval` was asked to do.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// `--checkpoint`.
    pub checkpoint: PathBuf,
    /// `--data`: the queries.
    pub data: PathBuf,
    /// `--reference`.
    pub reference: Option<PathBuf>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--backend`.
    pub backend: Backend,
    /// `--plot`.
    pub plot: bool,
    /// `--classes`.
    pub classes: Option<Vec<String>>,
    /// `--metrics`: `None` for the defaults.
    pub metrics: Option<Vec<Group>>,
    /// `--pairs`.
    pub pairs: PairsSource,
    /// `--query-column`.
    pub query_column: String,
    /// `--gallery-column`.
    pub gallery_column: String,
    /// `--group-column`.
    pub group_column: Option<String>,
    /// `--show`.
    pub show: Option<usize>,
    /// `--seed`.
    pub seed: u64,
}

impl EvalOptions {
    /// The options of `triplet eval --checkpoint CHECKPOINT --data DATA` and nothing else.
    pub fn new(checkpoint: impl Into<PathBuf>, data: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            data: data.into(),
            reference: None,
            out: None,
            backend: Backend::Flex,
            plot: false,
            classes: None,
            metrics: None,
            pairs: PairsSource::Sample(verification::DEFAULT_PAIRS),
            query_column: DEFAULT_QUERY_COLUMN.into(),
            gallery_column: DEFAULT_GALLERY_COLUMN.into(),
            group_column: None,
            show: None,
            seed: 0,
        }
    }
}

/// Runs `triplet eval`: the six stages in order. Prints the table and writes `metrics.json`
/// (and `roc.csv`, the plots asked for).
pub fn eval(options: &EvalOptions) -> Result<EvalReport> {
    let plan = plan(options)?;
    let embedded = embed(&plan)?;
    let scored = score(&plan, &embedded)?;
    for line in report(&plan, &embedded, &scored) {
        crate::console::say(&line);
    }
    write(&plan, &embedded, &scored)?;
    plot(&plan, &embedded, &scored)?;
    Ok(scored.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_and_unknown_ones_are_named() {
        assert_eq!("ReID".parse::<Group>(), Ok(Group::Reid));
        let e = "speed".parse::<Group>().unwrap_err();
        assert!(e.contains("`speed`"), "{e}");
    }
}
