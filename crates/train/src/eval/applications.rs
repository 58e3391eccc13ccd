//! `triplet eval`'s metric groups beyond retrieval, on embedded image sets: which groups run,
//! the re-identification split read from the data's CSV columns, verification pairs (a pairs
//! file or drawn from labels), and the queries shown in `retrievals.png`.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use triplet_loss::Distance;

use super::embed::Embedded;
use super::knn::exact_distance;
use super::pairs::{PairList, parse_flag};
use super::plot::Thumb;
use super::verification::{MAX_ALL_PAIRS, all_pairs, sample_pairs};
use crate::data::listing::read_columns;
use crate::data::rng::SplitMix64;
use crate::data::source::ImageSet;

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

/// Where the verification pairs come from (`--pairs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairsSource {
    /// A pairs file.
    File(std::path::PathBuf),
    /// All pairs of the queries.
    All,
    /// This many pairs drawn from the queries' labels.
    Sample(usize),
}

impl PairsSource {
    /// `all`, a number, or else a file path.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        let path = Path::new(t);
        match t.parse::<usize>() {
            Ok(n) if !path.exists() => {
                if !(2..=MAX_ALL_PAIRS).contains(&n) {
                    bail!("--pairs {n}: draw 2 to {MAX_ALL_PAIRS} pairs");
                }
                Ok(Self::Sample(n))
            }
            _ => Ok(Self::File(path.to_path_buf())),
        }
    }
}

/// The re-identification split of embedded rows: flags and groups per row.
#[derive(Debug, Clone, PartialEq)]
pub struct ReidColumns {
    /// Per row: a query.
    pub is_query: Vec<bool>,
    /// Per row: in the gallery.
    pub is_gallery: Vec<bool>,
    /// Per row: its group id, when a group column is given.
    pub groups: Option<Vec<usize>>,
}

/// Whether `data` names a CSV list (a file that is not an IDX file).
pub fn is_csv_list(data: &Path) -> bool {
    data.is_file()
        && !data
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("idx3-ubyte"))
}

/// Whether `data` is a CSV list that has these columns (so re-identification runs by default).
pub fn has_columns(data: &Path, names: &[&str]) -> bool {
    is_csv_list(data) && read_columns(data, names).is_ok()
}

/// The re-identification columns of a CSV list, read once, before anything is embedded.
#[derive(Debug, Clone)]
pub struct ReidTable {
    data: std::path::PathBuf,
    /// The query, gallery and (when given) group column names.
    names: Vec<String>,
    /// Their values by image path.
    columns: HashMap<std::path::PathBuf, Vec<String>>,
}

/// Reads the query, gallery and group columns of the CSV list `data`. Data that is not a CSV
/// list, or an unknown column, is an error naming the file.
pub fn read_reid_table(
    data: &Path,
    query_column: &str,
    gallery_column: &str,
    group_column: Option<&str>,
) -> Result<ReidTable> {
    if !is_csv_list(data) {
        bail!(
            "re-identification needs --data to be a CSV list with `{query_column}` and \
             `{gallery_column}` columns; {} is not a CSV list",
            data.display()
        );
    }
    let mut names = vec![query_column, gallery_column];
    names.extend(group_column);
    let columns = read_columns(data, &names)?;
    Ok(ReidTable {
        data: data.to_path_buf(),
        names: names.into_iter().map(str::to_owned).collect(),
        columns,
    })
}

/// The split of the embedded rows of `set` (the images of `table`'s CSV list): a value that is
/// not yes/no, or no query or no gallery image, is an error naming the file.
pub fn reid_columns(table: &ReidTable, set: &ImageSet, embedded: &Embedded) -> Result<ReidColumns> {
    let (data, names, columns) = (&table.data, &table.names, &table.columns);
    let (query_column, gallery_column) = (&names[0], &names[1]);
    let mut out = ReidColumns {
        is_query: Vec::with_capacity(embedded.indices.len()),
        is_gallery: Vec::with_capacity(embedded.indices.len()),
        groups: (names.len() > 2).then(|| Vec::with_capacity(embedded.indices.len())),
    };
    let mut group_ids = HashMap::<String, usize>::new();
    for &i in &embedded.indices {
        let path = set.path(i).expect("a CSV list holds files");
        let values = columns
            .get(path)
            .with_context(|| format!("{}: no row for {}", data.display(), path.display()))?;
        let flag = |k: usize| {
            parse_flag(&values[k]).with_context(|| {
                format!(
                    "{}: `{}` of {} is `{}`; expected 1 or 0 (true/false, yes/no)",
                    data.display(),
                    names[k],
                    path.display(),
                    values[k]
                )
            })
        };
        out.is_query.push(flag(0)?);
        out.is_gallery.push(flag(1)?);
        if let Some(groups) = &mut out.groups {
            let n = group_ids.len();
            groups.push(*group_ids.entry(values[2].clone()).or_insert(n));
        }
    }
    if !out.is_query.contains(&true) || !out.is_gallery.contains(&true) {
        bail!(
            "{}: re-identification needs queries and gallery images; `{query_column}` marks {} \
             and `{gallery_column}` {} of the {} images",
            data.display(),
            out.is_query.iter().filter(|&&q| q).count(),
            out.is_gallery.iter().filter(|&&g| g).count(),
            out.is_query.len()
        );
    }
    Ok(out)
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

/// Distances of pairs `(i, j, same)` of the rows of `embeddings` (`dim` values each).
pub fn score_pairs(
    embeddings: &[f32],
    dim: usize,
    pairs: &[(usize, usize, bool)],
    distance: Distance,
) -> ScoredPairs {
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    ScoredPairs {
        distances: pairs
            .iter()
            .map(|&(a, b, _)| exact_distance(row(a), row(b), distance))
            .collect(),
        same: pairs.iter().map(|p| p.2).collect(),
        skipped: 0,
    }
}

/// Pairs drawn from (or all pairs of) the labelled rows.
pub fn pairs_from_labels(
    labels: &[usize],
    source: &PairsSource,
    seed: u64,
) -> Result<Vec<(usize, usize, bool)>> {
    match source {
        PairsSource::All => all_pairs(labels, seed).map_err(anyhow::Error::msg),
        PairsSource::Sample(n) => Ok(sample_pairs(labels, *n, seed)),
        PairsSource::File(_) => unreachable!("a pairs file is read, not drawn"),
    }
}

/// The pairs of a pairs file over its embedded images: pairs with an unreadable image are
/// skipped and counted.
pub fn pairs_of_file(list: &PairList, embedded: &Embedded, distance: Distance) -> ScoredPairs {
    let mut row_of = vec![None; list.images.len()];
    for (row, &i) in embedded.indices.iter().enumerate() {
        row_of[i] = Some(row);
    }
    let mut kept = Vec::with_capacity(list.pairs.len());
    let mut skipped = 0;
    for &(a, b, same) in &list.pairs {
        match (row_of[a], row_of[b]) {
            (Some(a), Some(b)) => kept.push((a, b, same)),
            _ => skipped += 1,
        }
    }
    let mut scored = score_pairs(&embedded.embeddings, embedded.dim, &kept, distance);
    scored.skipped = skipped;
    scored
}

/// The queries to show: the worst and the best by average precision (lowest index on ties),
/// then others drawn with `seed`, `n` in all (fewer when fewer have a relevant reference),
/// with a note for each.
pub fn choose_shown(ap: &[Option<f64>], n: usize, seed: u64) -> Vec<(usize, &'static str)> {
    let counted: Vec<(usize, f64)> = ap
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.map(|a| (i, a)))
        .collect();
    if n == 0 || counted.is_empty() {
        return Vec::new();
    }
    let worst = counted
        .iter()
        .copied()
        .reduce(|w, c| if c.1 < w.1 { c } else { w })
        .expect("not empty")
        .0;
    let best = counted
        .iter()
        .copied()
        .reduce(|b, c| if c.1 > b.1 { c } else { b })
        .expect("not empty")
        .0;
    let mut chosen = vec![(worst, "worst")];
    if n > 1 && best != worst {
        chosen.push((best, "best"));
    }
    let mut others: Vec<usize> = counted
        .iter()
        .map(|c| c.0)
        .filter(|&i| i != worst && i != best)
        .collect();
    SplitMix64::new(seed).shuffle(&mut others);
    let take = n.saturating_sub(chosen.len()).min(others.len());
    let mut drawn: Vec<usize> = others[..take].to_vec();
    drawn.sort_unstable();
    // Worst first, the drawn ones in index order, the best last.
    let mut out = vec![chosen[0]];
    out.extend(drawn.into_iter().map(|i| (i, "")));
    out.extend(chosen.get(1).copied());
    out
}

/// An image of a set as a thumbnail (a grey square when it cannot be read again).
pub fn thumb(set: &ImageSet, i: usize, channels: usize) -> Thumb {
    match set.load_native(i, channels) {
        Ok((pixels, size)) => Thumb {
            pixels,
            channels,
            size,
        },
        Err(_) => Thumb {
            pixels: vec![0.5; channels * 8 * 8],
            channels,
            size: [8, 8],
        },
    }
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
    fn groups_parse_and_unknown_ones_are_named() {
        assert_eq!("ReID".parse::<Group>(), Ok(Group::Reid));
        let e = "speed".parse::<Group>().unwrap_err();
        assert!(e.contains("`speed`"), "{e}");
    }

    #[test]
    fn shown_queries_are_worst_drawn_and_best() {
        let ap = [Some(0.5), None, Some(0.1), Some(0.9), Some(0.3), Some(0.7)];
        let shown = choose_shown(&ap, 4, 0);
        assert_eq!(shown.len(), 4);
        assert_eq!(shown[0], (2, "worst"));
        assert_eq!(shown[3], (3, "best"));
        assert!(
            shown[1..3]
                .iter()
                .all(|&(i, note)| note.is_empty() && i != 1)
        );
        assert_eq!(shown, choose_shown(&ap, 4, 0));
        assert_eq!(choose_shown(&ap, 1, 0), [(2, "worst")]);
        assert_eq!(choose_shown(&ap, 99, 0).len(), 5);
    }
}
