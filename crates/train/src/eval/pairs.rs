//! Verification pairs lists (`path_a,path_b,same`, as LFW's pairs) and the yes/no values of
//! CSV columns (`same`, `is_query`, `is_gallery`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::data::listing::CsvTable;

/// A yes/no value: `1`/`0`, `true`/`false`, `yes`/`no` (any case); `None` for anything else.
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn flags() {
        assert_eq!(parse_flag(" TRUE "), Some(true));
        assert_eq!(parse_flag("0"), Some(false));
        assert_eq!(parse_flag("2"), None);
    }
}
