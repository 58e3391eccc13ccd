//! Stage 1 of `triplet eval`: everything checked before anything is embedded.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::Device;

use super::reid::{ReidColumns, ReidNames, has_columns, read_columns};
use super::verification::{PairList, PairsSource, read_pairs, why_no_pairs};
use super::{DEFAULT_GALLERY_COLUMN, DEFAULT_QUERY_COLUMN, EvalOptions, Group};
use crate::console::say;
use crate::embed::{Opened, Part, open_part, say_model};
use crate::files::same_file;
use crate::run::trained::{Trained, load};

/// What an evaluation will do, with its inputs opened and checked.
pub struct EvalPlan {
    /// The options it was made from.
    pub options: EvalOptions,
    /// The device embedding and ranking run on.
    pub device: Device,
    /// The model.
    pub trained: Trained,
    /// Where `metrics.json` and the plots go.
    pub out: PathBuf,
    /// The metric groups that run, sorted.
    pub groups: Vec<Group>,
    /// The queries.
    pub queries: Opened,
    /// The references, unless each query is ranked against the others (leave-one-out).
    pub references: Option<Opened>,
    /// The pairs file's pairs, when verification reads one.
    pub pairs: Option<PairList>,
    /// The queries' re-identification split, when re-identification runs.
    pub reid: Option<ReidColumns>,
}

impl EvalPlan {
    /// Whether `group` runs.
    pub fn runs(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }
}

/// The metric groups to run: those asked for, else the defaults (retrieval, clustering,
/// verification, and reid when the data is a CSV list with the two columns, or a column is
/// named).
fn groups(o: &EvalOptions, queries: &Opened) -> Vec<Group> {
    let mut groups = match &o.metrics {
        Some(list) => list.clone(),
        None => {
            let mut g = vec![Group::Retrieval, Group::Clustering, Group::Verification];
            // Naming a column asks for re-identification.
            if o.group_column.is_some()
                || o.query_column != DEFAULT_QUERY_COLUMN
                || o.gallery_column != DEFAULT_GALLERY_COLUMN
                || has_columns(&queries.set, reid_names(o))
            {
                g.push(Group::Reid);
            }
            g
        }
    };
    groups.sort_unstable();
    groups.dedup();
    groups
}

fn reid_names(o: &EvalOptions) -> ReidNames<'_> {
    ReidNames {
        query: &o.query_column,
        gallery: &o.gallery_column,
        group: o.group_column.as_deref(),
    }
}

/// Makes the plan: opens the data and the model, decides the groups, reads a pairs file and the
/// re-identification columns. The first problem is the error, before anything is embedded.
pub fn plan(o: &EvalOptions) -> Result<EvalPlan> {
    let device = o.backend.device().map_err(anyhow::Error::msg)?;
    let classes = o.classes.as_deref();
    let queries = open_part(&o.data, Part::TestIfAny, classes)?;
    let trained = load(&o.checkpoint, &device, || queries.set.native_shape())?;
    let out = o
        .out
        .clone()
        .or_else(|| trained.run.as_ref().map(|r| r.path().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut references = match &o.reference {
        Some(path) => Some(open_part(path, Part::Train, classes)?),
        None => None,
    };
    let mut groups = groups(o, &queries);
    let pairs = match (&o.pairs, groups.contains(&Group::Verification)) {
        (PairsSource::File(path), true) => Some(read_pairs(path)?),
        _ => None,
    };
    if groups.contains(&Group::Verification)
        && pairs.is_none()
        && let Some(why) = why_no_pairs(queries.set.labels())
    {
        if o.metrics.is_some() {
            bail!("{why}; give a pairs file with --pairs FILE");
        }
        say(&format!("note: {why}: verification left out"));
        groups.retain(|g| *g != Group::Verification);
    }
    let reid = if groups.contains(&Group::Reid) {
        Some(read_columns(&queries.set, &o.data, reid_names(o))?)
    } else {
        None
    };
    // The same images on both sides would make every query its own nearest neighbour.
    if let Some(reference) = &o.reference
        && queries.is_train
        && same_file(reference, &o.data)
    {
        say(&format!(
            "note: --reference {} holds the same images as --data, so every query would find \
             itself; ranking each query against the others instead (leave-one-out)",
            reference.display()
        ));
        references = None;
    }
    say_model(&trained, o.backend);
    say(&format!("queries: {}", queries.description));
    if let Some(r) = &references {
        say(&format!("references: {}", r.description));
    }
    Ok(EvalPlan {
        options: o.clone(),
        device,
        trained,
        out,
        groups,
        queries,
        references,
        pairs,
        reid,
    })
}
