//! Splitting a data source into its training and evaluation parts, as `[data] split` says:
//! by class (train on some classes, evaluate on unseen ones: the open-set protocol of metric
//! learning), within classes (a seeded fraction of each class: the closed set), or not at all.
//! An IDX folder's own test images are the evaluation part when it has them.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::rng::SplitMix64;
use super::source::{DataSource, ImageSet};
use crate::config::{DataConfig, SplitKind};

/// The two parts of a data source.
#[derive(Debug, Clone)]
pub struct Split {
    /// The training images.
    pub train: ImageSet,
    /// The evaluation images, unless `split = "none"`.
    pub eval: Option<ImageSet>,
    /// How the evaluation part was chosen, for messages (`unseen classes 6, 7`, `40% of each
    /// class`, `test images`).
    pub description: String,
}

impl ImageSet {
    /// Splits within classes: about `fraction` of each class (chosen by `seed`) goes to the
    /// second set. Both keep every class.
    pub fn split_within_classes(&self, fraction: f64, seed: u64) -> (ImageSet, ImageSet) {
        let (kept, held) = within_class_partition(self.labels(), fraction, seed);
        (self.subset(&kept), self.subset(&held))
    }
}

/// Splits `source` as `d` says (`seed` draws a within-class split); what was decided on the
/// way (too few classes to hold whole ones out) is added to `notes`.
pub fn split(
    source: DataSource,
    d: &DataConfig,
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<Split> {
    let classes = source.train.classes().to_vec();
    let mut kind = d.split;
    let held: Vec<String> = if kind == SplitKind::ByClass {
        if d.held_out_classes.is_empty() {
            let n = classes.len();
            let h = (n as f64 * d.held_out_fraction).round() as usize;
            let h = if n >= 4 { h.clamp(2, n - 2) } else { 0 };
            if h < 2 {
                notes.push(format!(
                    "note: {n} classes are too few to hold out whole classes (2 to train, 2 to \
                     evaluate); holding out {:.0}% of each class instead",
                    d.held_out_fraction * 100.0
                ));
                kind = SplitKind::WithinClass;
                Vec::new()
            } else {
                classes[n - h..].to_vec()
            }
        } else {
            for name in &d.held_out_classes {
                if !classes.contains(name) {
                    bail!(
                        "data.held_out_classes names class `{name}`, which the data do not have \
                         (classes: {})",
                        classes.join(", ")
                    );
                }
            }
            d.held_out_classes.clone()
        }
    } else {
        Vec::new()
    };
    let kept: Vec<String> = classes
        .iter()
        .filter(|c| !held.contains(c))
        .cloned()
        .collect();
    let (train, eval, description) = match (kind, source.test) {
        (SplitKind::None, _) => (source.train, None, String::new()),
        (SplitKind::ByClass, test) => {
            let eval_from = test.as_ref().unwrap_or(&source.train).with_classes(&held);
            let train = source.train.with_classes(&kept);
            let description = format!(
                "unseen classes {}{}",
                held.join(", "),
                if test.is_some() { ", test images" } else { "" }
            );
            (train, Some(eval_from), description)
        }
        (SplitKind::WithinClass, Some(test)) => (source.train, Some(test), "test images".into()),
        (SplitKind::WithinClass, None) => {
            let (train, eval) = source.train.split_within_classes(d.held_out_fraction, seed);
            let description = format!("{:.0}% of each class", d.held_out_fraction * 100.0);
            (train, Some(eval), description)
        }
    };
    Ok(Split {
        train,
        eval,
        description,
    })
}

/// Splits sample indices within classes: about `fraction` of each class (chosen by `seed`, at
/// least one when the class has two or more, never all) go to the second list. Both lists are
/// in ascending index order.
pub(crate) fn within_class_partition(
    labels: &[usize],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i);
    }
    let mut rng = SplitMix64::new(seed ^ 0x5851_F42D_4C95_7F2D);
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    for mut members in by_class.into_values() {
        rng.shuffle(&mut members);
        let take = if members.len() >= 2 {
            ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len() - 1)
        } else {
            0
        };
        held.extend_from_slice(&members[..take]);
        kept.extend_from_slice(&members[take..]);
    }
    kept.sort_unstable();
    held.sort_unstable();
    (kept, held)
}
