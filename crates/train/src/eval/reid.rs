//! The re-identification group of `triplet eval`: which images are queries and which gallery,
//! and their groups (cameras), from the columns of the CSV list `--data` (read with the list,
//! once). Every value is checked when the plan is made, before anything is embedded. The scores
//! are [`triplet_metrics::reid`]'s.

use std::collections::HashMap;

use anyhow::{Result, bail};

use crate::data::csv::parse_flag;
use crate::data::source::ImageSet;

/// The re-identification split of an image set: flags and groups per image.
#[derive(Debug, Clone, PartialEq)]
pub struct ReidColumns {
    /// Per image: a query.
    pub is_query: Vec<bool>,
    /// Per image: in the gallery.
    pub is_gallery: Vec<bool>,
    /// Per image: its group id, when a group column is given.
    pub groups: Option<Vec<usize>>,
}

/// The column names re-identification reads.
#[derive(Debug, Clone, Copy)]
pub struct ReidNames<'a> {
    /// The query flags' column.
    pub query: &'a str,
    /// The gallery flags' column.
    pub gallery: &'a str,
    /// The groups' column, if any.
    pub group: Option<&'a str>,
}

/// Whether the set comes from a CSV list with both flag columns (so that re-identification
/// runs by default).
pub fn has_columns(set: &ImageSet, names: ReidNames<'_>) -> bool {
    set.column(names.query).is_some() && set.column(names.gallery).is_some()
}

/// Reads the split from the set's CSV columns. A set that is not from a CSV list, a missing
/// column, a flag that is not yes/no, or no query or no gallery image, is an error naming the
/// file (and the image).
pub fn read_columns(
    set: &ImageSet,
    data: &std::path::Path,
    names: ReidNames<'_>,
) -> Result<ReidColumns> {
    let Some(file) = set.list_file() else {
        bail!(
            "re-identification needs --data to be a CSV list with `{}` and `{}` columns; {} is \
             not a CSV list",
            names.query,
            names.gallery,
            data.display()
        );
    };
    let column = |name: &str| {
        set.column(name).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no column `{name}` (its columns: {})",
                file.display(),
                set.column_names().join(", ")
            )
        })
    };
    let flags = |name: &str| -> Result<Vec<bool>> {
        column(name)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                parse_flag(v).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: `{name}` of {} is `{v}`; expected 1 or 0 (true/false, yes/no)",
                        file.display(),
                        set.describe(i)
                    )
                })
            })
            .collect()
    };
    let is_query = flags(names.query)?;
    let is_gallery = flags(names.gallery)?;
    let groups = match names.group {
        Some(name) => {
            let mut ids = HashMap::<&str, usize>::new();
            Some(
                column(name)?
                    .into_iter()
                    .map(|v| {
                        let n = ids.len();
                        *ids.entry(v).or_insert(n)
                    })
                    .collect(),
            )
        }
        None => None,
    };
    if !is_query.contains(&true) || !is_gallery.contains(&true) {
        bail!(
            "{}: re-identification needs queries and gallery images; `{}` marks {} and `{}` {} \
             of the {} images",
            file.display(),
            names.query,
            is_query.iter().filter(|&&q| q).count(),
            names.gallery,
            is_gallery.iter().filter(|&&g| g).count(),
            is_query.len()
        );
    }
    Ok(ReidColumns {
        is_query,
        is_gallery,
        groups,
    })
}

impl ReidColumns {
    /// The split of the embedded images (`indices` into the set), in their order.
    pub fn of_rows(&self, indices: &[usize]) -> ReidColumns {
        ReidColumns {
            is_query: indices.iter().map(|&i| self.is_query[i]).collect(),
            is_gallery: indices.iter().map(|&i| self.is_gallery[i]).collect(),
            groups: self
                .groups
                .as_ref()
                .map(|g| indices.iter().map(|&i| g[i]).collect()),
        }
    }

    /// As [`triplet_metrics::reid`] takes it.
    pub fn split(&self) -> triplet_metrics::Split<'_> {
        triplet_metrics::Split {
            is_query: &self.is_query,
            is_gallery: &self.is_gallery,
            groups: self.groups.as_deref(),
        }
    }
}
