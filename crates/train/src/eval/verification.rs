//! The verification group of `triplet eval`: where its pairs come from (`--pairs`: a pairs file
//! `path_a,path_b,same` as LFW's, all pairs of the queries, or a number drawn from their
//! labels), reading and checking a pairs file before anything is embedded, and the pairs'
//! distances once embedded. The scores themselves are [`triplet_metrics::verification`]'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use triplet_loss::Distance;
use triplet_metrics::verification::{MAX_ALL_PAIRS, all_pairs, sample_pairs, score_pairs};
use triplet_metrics::{Rows, Verification};

use crate::data::csv::{CsvTable, parse_flag};
use crate::embed::Embedded;

/// Pairs drawn from the labels by default (LFW has 6,000).
pub const DEFAULT_PAIRS: usize = 6000;

/// Where the verification pairs come from (`--pairs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairsSource {
    /// A pairs file.
    File(PathBuf),
    /// All pairs of the queries.
    All,
    /// This many pairs drawn from the queries' labels.
    Sample(usize),
}

impl PairsSource {
    /// `all`, a number, or else a file path (`--pairs`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        let path = Path::new(t);
        match t.parse::<usize>() {
            Ok(n) if !path.exists() => {
                if !(2..=MAX_ALL_PAIRS).contains(&n) {
                    return Err(format!("--pairs {n}: draw 2 to {MAX_ALL_PAIRS} pairs"));
                }
                Ok(Self::Sample(n))
            }
            _ => Ok(Self::File(path.to_path_buf())),
        }
    }

    /// `--pairs` in words, for the console and `metrics.json`.
    pub fn describe(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::All => "all pairs of the queries".into(),
            Self::Sample(n) => format!("{n} drawn from the queries' labels"),
        }
    }
}

/// The pairs of a pairs list: its distinct images and the pairs as indices into them.
#[derive(Debug, Clone, PartialEq)]
pub struct PairList {
    /// The images, in order of first appearance.
    pub images: Vec<PathBuf>,
    /// `(a, b, same)`, indices into `images`, in the file's order.
    pub pairs: Vec<(usize, usize, bool)>,
}

/// Reads a pairs list: a CSV with the columns `path_a`, `path_b` and `same` (a yes/no value,
/// [`parse_flag`]); paths relative to the CSV's folder. A missing file, a missing column, an
/// image that does not exist or a `same` that is not yes/no is an error naming the file and
/// line.
pub fn read_pairs(csv_path: &Path) -> Result<PairList> {
    if !csv_path.exists() {
        bail!("pairs file {} does not exist", csv_path.display());
    }
    let table = CsvTable::read(csv_path)?;
    let base = table.base();
    let at = |line: usize| format!("{}:{line}", csv_path.display());
    let hint = "a pairs file has the header `path_a,path_b,same`";
    let (ca, cb, cs) = (
        table.column("path_a", hint)?,
        table.column("path_b", hint)?,
        table.column("same", hint)?,
    );
    let mut list = PairList {
        images: Vec::new(),
        pairs: Vec::new(),
    };
    let mut index = HashMap::<PathBuf, usize>::new();
    for (line, record) in table.rows() {
        let record = record?;
        let get = |c: usize, what: &str| {
            record
                .get(c)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .with_context(|| format!("{}: no {what}", at(line)))
        };
        let same = get(cs, "`same` value")?;
        let Some(same) = parse_flag(same) else {
            bail!(
                "{}: `same` is `{same}`; expected 1 or 0 (true/false, yes/no)",
                at(line)
            );
        };
        let mut ends = [0usize; 2];
        for (end, c) in ends.iter_mut().zip([ca, cb]) {
            let path = base.join(get(c, "path")?);
            if !path.is_file() {
                bail!("{}: image {} does not exist", at(line), path.display());
            }
            let next = list.images.len();
            *end = *index.entry(path.clone()).or_insert_with(|| {
                list.images.push(path);
                next
            });
        }
        list.pairs.push((ends[0], ends[1], same));
    }
    if list.pairs.is_empty() {
        bail!("pairs file {} lists no pairs", csv_path.display());
    }
    Ok(list)
}

/// Why verification cannot run on pairs drawn from these labels (one class, or one image per
/// class), or `None` when it can.
pub fn why_no_pairs(labels: &[usize]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let has_same = labels.iter().any(|l| !seen.insert(*l));
    let has_different = labels.iter().any(|l| *l != labels[0]);
    (!(has_same && has_different)).then(|| {
        format!(
            "verification needs same-class and different-class pairs, and the {} queries have {}",
            labels.len(),
            if has_same {
                "one class only"
            } else {
                "one image per class"
            }
        )
    })
}

/// Verification pairs as distances and truths.
#[derive(Debug, Clone, Default)]
pub struct ScoredPairs {
    /// Distance of each pair.
    pub distances: Vec<f64>,
    /// Whether each pair is the same class.
    pub same: Vec<bool>,
    /// Pairs left out because an image of theirs could not be read.
    pub skipped: usize,
}

/// Pairs drawn from (or all pairs of) the labelled rows, scored.
pub fn pairs_from_labels(
    rows: Rows<'_>,
    labels: &[usize],
    source: &PairsSource,
    seed: u64,
    distance: Distance,
) -> Result<ScoredPairs> {
    let pairs = match source {
        PairsSource::All => all_pairs(labels, seed).map_err(anyhow::Error::msg)?,
        PairsSource::Sample(n) => sample_pairs(labels, *n, seed),
        PairsSource::File(_) => unreachable!("a pairs file is read, not drawn"),
    };
    Ok(ScoredPairs {
        distances: score_pairs(rows, &pairs, distance),
        same: pairs.iter().map(|p| p.2).collect(),
        skipped: 0,
    })
}

/// The pairs of a pairs file over its embedded images, scored: pairs with an unreadable image
/// are left out and counted.
pub fn pairs_of_file(list: &PairList, embedded: &Embedded, distance: Distance) -> ScoredPairs {
    let mut row_of = vec![None; list.images.len()];
    for (row, &i) in embedded.indices.iter().enumerate() {
        row_of[i] = Some(row);
    }
    let mut kept = Vec::with_capacity(list.pairs.len());
    for &(a, b, same) in &list.pairs {
        if let (Some(a), Some(b)) = (row_of[a], row_of[b]) {
            kept.push((a, b, same));
        }
    }
    ScoredPairs {
        distances: score_pairs(embedded.rows.rows(), &kept, distance),
        same: kept.iter().map(|p| p.2).collect(),
        skipped: list.pairs.len() - kept.len(),
    }
}

/// The verification scores of scored pairs, with their ROC.
pub fn verify(
    scored: &ScoredPairs,
    distance_name: &str,
) -> Result<(Verification, triplet_metrics::Roc)> {
    triplet_metrics::verification::verification(&scored.distances, &scored.same, distance_name)
        .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_source_parses_counts_all_and_files() {
        assert_eq!(PairsSource::parse("all").unwrap(), PairsSource::All);
        assert_eq!(PairsSource::parse("600").unwrap(), PairsSource::Sample(600));
        assert_eq!(
            PairsSource::parse("my/pairs.csv").unwrap(),
            PairsSource::File("my/pairs.csv".into())
        );
        assert!(PairsSource::parse("1").is_err());
    }

    #[test]
    fn labels_without_both_kinds_of_pairs_are_named() {
        assert!(why_no_pairs(&[0, 0, 1]).is_none());
        assert!(why_no_pairs(&[0, 0]).unwrap().contains("one class only"));
        assert!(
            why_no_pairs(&[0, 1])
                .unwrap()
                .contains("one image per class")
        );
    }

    #[test]
    fn reads_pairs_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "b.png"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let csv = dir.path().join("pairs.csv");
        std::fs::write(
            &csv,
            "path_a,path_b,same\na.png,b.png,0\nb.png,b.png,True\n",
        )
        .unwrap();
        let list = read_pairs(&csv).unwrap();
        assert_eq!(list.images.len(), 2);
        assert_eq!(list.pairs, [(0, 1, false), (1, 1, true)]);

        std::fs::write(&csv, "path_a,path_b,same\na.png,c.png,1\n").unwrap();
        let e = format!("{:#}", read_pairs(&csv).unwrap_err());
        assert!(
            e.contains("pairs.csv:2") && e.contains("c.png does not exist"),
            "{e}"
        );
        std::fs::write(&csv, "path_a,path_b,same\na.png,b.png,maybe\n").unwrap();
        let e = format!("{:#}", read_pairs(&csv).unwrap_err());
        assert!(e.contains("pairs.csv:2") && e.contains("`maybe`"), "{e}");
        std::fs::write(&csv, "a,b,same\n").unwrap();
        let e = format!("{:#}", read_pairs(&csv).unwrap_err());
        assert!(e.contains("no column `path_a`"), "{e}");
        let e = format!(
            "{:#}",
            read_pairs(&dir.path().join("nope.csv")).unwrap_err()
        );
        assert!(e.contains("nope.csv does not exist"), "{e}");
    }
}
