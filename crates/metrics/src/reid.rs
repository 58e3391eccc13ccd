//! Re-identification (Market-1501's protocol): queries are ranked against a gallery; CMC
//! rank-k (a same-identity gallery image among the k nearest) and mAP (average precision over
//! the whole ranking).
//!
//! Which images are queries and which form the gallery comes from two flags per image (as
//! open-metric-learning's `is_query` / `is_gallery` columns; an image may be both). For each
//! query, the gallery leaves out the query itself and, when groups are given (a camera id), the
//! gallery images of the same identity in the same group, as Market-1501's evaluation does
//! (those are too easy). A query with no same-identity image left is not counted. Ranking is by
//! distance, then by gallery order; exact, on the given device, without a queries × gallery
//! matrix ([`crate::knn::for_each_row`]).

use burn::tensor::Device;
use serde::Serialize;
use triplet_loss::Distance;

use crate::knn::{KnnError, for_each_row};
use crate::retrieval::{Ranks, mean_of, ranks};
use crate::rows::Rows;

/// The k of the CMC ranks reported.
pub const CMC_AT: [usize; 3] = [1, 5, 10];

/// Re-identification scores, as in `metrics.json`'s `reid`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reid {
    /// CMC at rank 1.
    pub cmc_rank_1: f64,
    /// CMC at rank 5.
    pub cmc_rank_5: f64,
    /// CMC at rank 10.
    pub cmc_rank_10: f64,
    /// Mean average precision.
    #[serde(rename = "mAP")]
    pub map: f64,
    /// Queries counted (with a same-identity gallery image left).
    pub queries: usize,
    /// Queries given.
    pub total_queries: usize,
    /// Gallery images.
    pub gallery: usize,
    /// Whether same-group matches were left out.
    pub groups: bool,
}

/// Which images are queries and gallery, and their groups.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    /// Per image: a query.
    pub is_query: &'a [bool],
    /// Per image: in the gallery.
    pub is_gallery: &'a [bool],
    /// Per image: its group (camera), when same-group matches are to be left out.
    pub groups: Option<&'a [usize]>,
}

/// Re-identification scores of labelled embeddings split into queries and gallery; neighbours
/// computed on `device`.
///
/// # Panics
/// If a flag or group slice is not one per label.
pub fn reid(
    embeddings: Rows<'_>,
    labels: &[usize],
    split: Split<'_>,
    distance: Distance,
    device: &Device,
) -> Result<Reid, KnnError> {
    let n = labels.len();
    assert!(split.is_query.len() == n && split.is_gallery.len() == n);
    if let Some(g) = split.groups {
        assert_eq!(g.len(), n, "one group per image");
    }
    if embeddings.len() != n {
        return Err(KnnError::Labels {
            what: "embeddings",
            rows: embeddings.len(),
            labels: n,
        });
    }
    let pick = |flags: &[bool]| {
        let idx: Vec<usize> = (0..n).filter(|&i| flags[i]).collect();
        let rows = embeddings.select(&idx);
        (idx, rows)
    };
    let (queries, q_rows) = pick(split.is_query);
    let (gallery, g_rows) = pick(split.is_gallery);
    // Gallery positions of each identity.
    let mut by_label = std::collections::HashMap::<usize, Vec<u32>>::new();
    for (j, &g) in gallery.iter().enumerate() {
        by_label.entry(labels[g]).or_default().push(j as u32);
    }
    let per_query = for_each_row(
        q_rows.rows(),
        Some(g_rows.rows()),
        distance,
        device,
        |row, _| {
            let q = queries[row.query];
            // Same identity: relevant, unless it is the query itself or in the query's group.
            let (mut relevant, mut left_out) = (Vec::new(), Vec::new());
            for &j in by_label.get(&labels[q]).map_or(&[][..], Vec::as_slice) {
                let g = gallery[j as usize];
                if g == q || split.groups.is_some_and(|gr| gr[g] == gr[q]) {
                    left_out.push(j);
                } else {
                    relevant.push(j);
                }
            }
            ranks(row, &relevant, &left_out)
        },
    )?;
    let counted: Vec<_> = per_query.into_iter().flatten().collect();
    let c = counted.len();
    let mean = |f: &dyn Fn(&Ranks) -> f64| mean_of(&counted, f);
    let cmc = |k: usize| mean(&|r| f64::from(u8::from(r.first < k)));
    Ok(Reid {
        cmc_rank_1: cmc(CMC_AT[0]),
        cmc_rank_5: cmc(CMC_AT[1]),
        cmc_rank_10: cmc(CMC_AT[2]),
        map: mean(&|r| r.average_precision),
        queries: c,
        total_queries: queries.len(),
        gallery: gallery.len(),
        groups: split.groups.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked, on a line. Images (x, identity, camera, role):
    /// 0 (0.0, A, c0, query), 1 (0.1, A, c0, gallery: same camera, left out),
    /// 2 (0.5, B, c1, gallery), 3 (1.0, A, c1, gallery), 4 (2.0, A, c2, gallery),
    /// 5 (9.0, C, c0, query: no same-identity gallery image, not counted).
    /// Query 0 ranks 2 (B), 3 (A), 4 (A): first hit at rank 2; AP = (1/2 + 2/3) / 2.
    #[test]
    fn matches_a_hand_worked_example() {
        let x = [0.0f32, 0.1, 0.5, 1.0, 2.0, 9.0];
        let labels = [0, 0, 1, 0, 0, 2];
        let groups = [0, 0, 1, 1, 2, 0];
        let is_query = [true, false, false, false, false, true];
        let is_gallery = [false, true, true, true, true, false];
        let split = Split {
            is_query: &is_query,
            is_gallery: &is_gallery,
            groups: Some(&groups),
        };
        let device = crate::test_device();
        let x = Rows::new(&x, 1);
        let r = reid(x, &labels, split, Distance::Euclidean, &device).unwrap();
        assert_eq!((r.queries, r.total_queries, r.gallery), (1, 2, 4));
        assert_eq!((r.cmc_rank_1, r.cmc_rank_5), (0.0, 1.0));
        assert!((r.map - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // Without groups image 1 counts: it is the nearest, so rank 1 and AP (1 + 2/3 + 3/4)/3.
        let r = reid(
            x,
            &labels,
            Split {
                groups: None,
                ..split
            },
            Distance::Euclidean,
            &device,
        )
        .unwrap();
        assert_eq!(r.cmc_rank_1, 1.0);
        assert!((r.map - (1.0 + 2.0 / 3.0 + 3.0 / 4.0) / 3.0).abs() < 1e-12);
    }

    /// An image that is both query and gallery is not its own match.
    #[test]
    fn a_query_in_the_gallery_does_not_find_itself() {
        let x = [0.0f32, 5.0, 0.2];
        let labels = [0, 0, 1];
        let both = [true, true, true];
        let split = Split {
            is_query: &both,
            is_gallery: &both,
            groups: None,
        };
        let r = reid(
            Rows::new(&x, 1),
            &labels,
            split,
            Distance::Euclidean,
            &crate::test_device(),
        )
        .unwrap();
        // Query 0: 2 (B) then 1 (A): rank 2. Query 1: 2 (B, 4.8) then 0 (A, 5): rank 2.
        // Query 2 has no other B: not counted.
        assert_eq!((r.queries, r.cmc_rank_1, r.cmc_rank_5), (2, 0.0, 1.0));
        assert!((r.map - 0.5).abs() < 1e-12);
    }
}
