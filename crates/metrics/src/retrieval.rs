//! Retrieval metrics of Musgrave et al., "A Metric Learning Reality Check" (2020): P@1,
//! Recall@K (K = 1, 2, 4, 8), R-Precision and MAP@R, in leave-one-out mode (each item queries
//! all the others) or query-against-reference mode.
//!
//! For a query with R relevant references (same class; in leave-one-out, other members of its
//! class), ranked nearest first by distance and then by reference index:
//! - P@1: the nearest is relevant;
//! - Recall@K: some relevant item among the K nearest;
//! - R-Precision: (relevant among the R nearest) / R;
//! - MAP@R: (1/R) Σ_{i ≤ R} P(i)·rel(i), P(i) the precision of the i nearest;
//! - MAP (`mean_average_precision`, PML's with its default `k = None`): the average precision
//!   over the whole ranking, (1/R) Σ over relevant items of P(rank of the item);
//! - MRR (`mean_reciprocal_rank`): 1 / the rank of the first relevant item.
//!
//! A query with no relevant reference (R = 0) is left out of every average, as
//! pytorch-metric-learning's `AccuracyCalculator` does. Exact ties are ranked by reference index
//! (deterministic); pytorch-metric-learning takes `torch.topk`'s order there, which is not
//! specified (see `tests/retrieval_golden.rs`). The nearest neighbours come from
//! [`crate::knn`]: exact, in blocks of query rows on the given device.

use std::collections::HashMap;

use burn::tensor::Device;
use serde::ser::{Serialize, SerializeStruct, Serializer};
use triplet_loss::Distance;

use crate::knn::{KnnError, QueryKeys, for_each_row};
use crate::rows::Rows;

/// The K of Recall@K.
pub const RECALL_AT: [usize; 4] = [1, 2, 4, 8];

/// Retrieval quality of a labelled set of embeddings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Retrieval {
    /// Fraction of queries whose nearest neighbour has their class.
    pub precision_at_1: f64,
    /// Mean over queries of (relevant among the R nearest) / R.
    pub r_precision: f64,
    /// Mean over queries of (1/R) Σ_{i ≤ R} P(i)·rel(i).
    pub map_at_r: f64,
    /// Recall@1, 2, 4, 8 ([`RECALL_AT`]): fraction of queries with a relevant item among the K
    /// nearest.
    pub recall_at: [f64; 4],
    /// Mean over queries of the average precision over the whole ranking.
    pub map: f64,
    /// Mean over queries of 1 / the rank of the first relevant item.
    pub mrr: f64,
    /// Queries counted (those with at least one relevant reference).
    pub queries: usize,
    /// Queries given, counted or not.
    pub total_queries: usize,
}

/// Under pytorch-metric-learning's key names (`precision_at_1`, `r_precision`,
/// `mean_average_precision_at_r`, `recall_at_1`, …, `mean_average_precision`,
/// `mean_reciprocal_rank`), plus `queries` counted and `queries_without_relevant_reference`.
impl Serialize for Retrieval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Retrieval", 11)?;
        s.serialize_field("precision_at_1", &self.precision_at_1)?;
        s.serialize_field("r_precision", &self.r_precision)?;
        s.serialize_field("mean_average_precision_at_r", &self.map_at_r)?;
        for (key, value) in ["recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"]
            .into_iter()
            .zip(self.recall_at)
        {
            s.serialize_field(key, &value)?;
        }
        s.serialize_field("mean_average_precision", &self.map)?;
        s.serialize_field("mean_reciprocal_rank", &self.mrr)?;
        s.serialize_field("queries", &self.queries)?;
        s.serialize_field(
            "queries_without_relevant_reference",
            &(self.total_queries - self.queries),
        )?;
        s.end()
    }
}

/// Scores of one query.
#[derive(Debug, Clone, Copy, Default)]
struct QueryScore {
    p1: f64,
    rp: f64,
    map: f64,
    recall: [f64; 4],
    full_map: f64,
    mrr: f64,
}

/// Where the relevant items of one query rank among all references.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranks {
    /// Relevant items.
    pub relevant: usize,
    /// Rank of the first relevant item, from 0.
    pub first: usize,
    /// Average precision over the whole ranking: (1/R) Σ over relevant items of
    /// (relevant items up to it) / (its rank from 1).
    pub average_precision: f64,
}

/// The [`Ranks`] of one query's row: `relevant` lists the relevant references, `left_out` those
/// left out of the ranking (each list without repeats, the two disjoint); every other reference
/// is irrelevant. The query's own entry [`QueryKeys::own`] is left out wherever it is listed (it may
/// be in `relevant`, not in `left_out`). `None` when nothing is relevant.
///
/// Exact, and `O(n)` on average without sorting the row: a bucket sort over the range of the
/// relevant items' keys. Items before that range are only counted, items after it do not move
/// any relevant item's rank, and only the buckets holding a relevant item are sorted (by key,
/// then index, so equal keys rank by index as everywhere else).
pub fn ranks(row: &QueryKeys<'_>, relevant: &[u32], left_out: &[u32]) -> Option<Ranks> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<RankScratch> =
            std::cell::RefCell::new(RankScratch::default());
    }
    SCRATCH.with(|s| ranks_with(row, relevant, left_out, &mut s.borrow_mut()))
}

/// Buffers of [`ranks`], reused across the rows of a thread.
#[derive(Default)]
struct RankScratch {
    /// Per item: its bucket, [`BELOW`] or [`NOWHERE`].
    bucket: Vec<u32>,
    /// Per item: whether it is relevant (reset after each row).
    relevant: Vec<bool>,
    count: Vec<u32>,
    relevant_in: Vec<u32>,
    start: Vec<u32>,
    fill: Vec<u32>,
    items: Vec<u32>,
}

/// Not in any bucket: left out, or after the last relevant key.
const NOWHERE: u32 = u32::MAX;
/// Before the first relevant key.
const BELOW: u32 = u32::MAX - 1;

fn ranks_with(
    row: &QueryKeys<'_>,
    relevant: &[u32],
    left_out: &[u32],
    s: &mut RankScratch,
) -> Option<Ranks> {
    let keys = row.keys;
    let n = keys.len();
    let own = row.own.map(|o| o as u32);
    if s.relevant.len() < n {
        s.relevant.resize(n, false);
    }
    let (mut lo, mut hi, mut r) = (f32::INFINITY, f32::NEG_INFINITY, 0usize);
    for &j in relevant {
        if Some(j) != own {
            s.relevant[j as usize] = true;
            let key = keys[j as usize];
            lo = lo.min(key);
            hi = hi.max(key);
            r += 1;
        }
    }
    if r == 0 {
        return None;
    }
    // About 8 items per bucket, and at least 4 buckets per relevant item.
    let buckets = (4 * r).max(n / 8).clamp(1, n.max(1));
    let scale = if hi > lo {
        (buckets as f64 / (f64::from(hi) - f64::from(lo))) as f32
    } else {
        0.0
    };
    let last = (buckets - 1) as u32;
    s.count.clear();
    s.count.resize(buckets, 0);
    s.relevant_in.clear();
    s.relevant_in.resize(buckets, 0);
    s.bucket.clear();
    s.bucket.resize(n, NOWHERE);
    let mut below = 0usize;
    for (b, &key) in s.bucket.iter_mut().zip(keys) {
        if key < lo {
            *b = BELOW;
            below += 1;
        } else if key <= hi {
            // Monotone in the key, so equal keys share a bucket.
            let at = (((key - lo) * scale) as u32).min(last);
            *b = at;
            s.count[at as usize] += 1;
        }
    }
    for &j in left_out.iter().chain(own.as_ref()) {
        let b = &mut s.bucket[j as usize];
        match *b {
            NOWHERE => {}
            BELOW => below -= 1,
            at => s.count[at as usize] -= 1,
        }
        *b = NOWHERE;
    }
    for &j in relevant {
        if Some(j) != own {
            let b = s.bucket[j as usize];
            debug_assert!(b < BELOW, "a relevant item is listed as left out too");
            s.relevant_in[b as usize] += 1;
        }
    }
    // The items of the buckets with a relevant item, grouped by bucket.
    s.start.clear();
    s.start.resize(buckets + 1, 0);
    for b in 0..buckets {
        let len = if s.relevant_in[b] > 0 { s.count[b] } else { 0 };
        s.start[b + 1] = s.start[b] + len;
    }
    s.items.clear();
    s.items.resize(s.start[buckets] as usize, 0);
    s.fill.clear();
    s.fill.extend_from_slice(&s.start[..buckets]);
    for (j, &b) in s.bucket.iter().enumerate() {
        if b < BELOW && s.relevant_in[b as usize] > 0 {
            let at = &mut s.fill[b as usize];
            s.items[*at as usize] = j as u32;
            *at += 1;
        }
    }
    let (mut position, mut seen, mut first, mut sum) = (below, 0usize, None, 0.0f64);
    for b in 0..buckets {
        if s.relevant_in[b] == 0 {
            position += s.count[b] as usize;
            continue;
        }
        let bucket = &mut s.items[s.start[b] as usize..s.start[b + 1] as usize];
        if bucket.len() > 1 {
            bucket.sort_unstable_by(|&x, &y| {
                keys[x as usize]
                    .total_cmp(&keys[y as usize])
                    .then(x.cmp(&y))
            });
        }
        for &j in bucket.iter() {
            if s.relevant[j as usize] {
                first.get_or_insert(position);
                seen += 1;
                sum += seen as f64 / (position + 1) as f64;
            }
            position += 1;
        }
    }
    for &j in relevant {
        s.relevant[j as usize] = false;
    }
    Some(Ranks {
        relevant: r,
        first: first.expect("r > 0 relevant items were placed"),
        average_precision: sum / r as f64,
    })
}

/// The mean of `f` over the counted queries; 0 when none is counted.
pub(crate) fn mean_of<T>(counted: &[T], f: impl Fn(&T) -> f64) -> f64 {
    if counted.is_empty() {
        0.0
    } else {
        counted.iter().map(f).sum::<f64>() / counted.len() as f64
    }
}

/// Scores one query from the relevance of its ranked neighbours (nearest first, at least
/// `min(r, available)` of them) and its number `r ≥ 1` of relevant references.
fn score(relevant: impl Iterator<Item = bool>, r: usize) -> QueryScore {
    let mut s = QueryScore::default();
    let (mut hits, mut first_hit) = (0usize, None);
    let depth = r.max(RECALL_AT[RECALL_AT.len() - 1]);
    for (i, rel) in relevant.take(depth).enumerate() {
        if !rel {
            continue;
        }
        first_hit.get_or_insert(i);
        if i < r {
            hits += 1;
            s.map += hits as f64 / (i + 1) as f64;
        }
    }
    s.p1 = f64::from(u8::from(first_hit == Some(0)));
    for (slot, &k) in s.recall.iter_mut().zip(&RECALL_AT) {
        *slot = f64::from(u8::from(first_hit.is_some_and(|i| i < k)));
    }
    s.rp = hits as f64 / r as f64;
    s.map /= r as f64;
    s
}

/// Retrieval metrics of `queries` (labels `query_labels`) against `references` (with their
/// labels), or against themselves leaving each out when `references` is `None`. Labels are
/// compared by value. Neighbours are computed on `device`.
pub fn retrieval(
    queries: Rows<'_>,
    query_labels: &[usize],
    references: Option<(Rows<'_>, &[usize])>,
    distance: Distance,
    device: &Device,
) -> Result<Retrieval, KnnError> {
    retrieval_per_query(queries, query_labels, references, distance, device).map(|r| r.0)
}

/// [`retrieval`], and the average precision over the whole ranking of every query (`None` for
/// a query with no relevant reference).
pub fn retrieval_per_query(
    queries: Rows<'_>,
    query_labels: &[usize],
    references: Option<(Rows<'_>, &[usize])>,
    distance: Distance,
    device: &Device,
) -> Result<(Retrieval, Vec<Option<f64>>), KnnError> {
    let leave_one_out = references.is_none();
    let ref_labels = references.map_or(query_labels, |r| r.1);
    if queries.len() != query_labels.len() {
        return Err(KnnError::Labels {
            what: "queries",
            rows: queries.len(),
            labels: query_labels.len(),
        });
    }
    if let Some((r, l)) = references
        && r.len() != l.len()
    {
        return Err(KnnError::Labels {
            what: "references",
            rows: r.len(),
            labels: l.len(),
        });
    }
    let mut class_size = HashMap::<usize, usize>::new();
    let mut members = HashMap::<usize, Vec<u32>>::new();
    for (j, &l) in ref_labels.iter().enumerate() {
        *class_size.entry(l).or_default() += 1;
        members.entry(l).or_default().push(j as u32);
    }
    let relevant_count = |q: usize| {
        let n = class_size.get(&query_labels[q]).copied().unwrap_or(0);
        n - usize::from(leave_one_out && n > 0)
    };
    let k = (0..query_labels.len())
        .map(relevant_count)
        .max()
        .unwrap_or(0)
        .max(RECALL_AT[RECALL_AT.len() - 1]);
    let scores = for_each_row(
        queries,
        references.map(|r| r.0),
        distance,
        device,
        |row, scratch| {
            let q = row.query;
            let r = relevant_count(q);
            (r > 0).then(|| {
                let label = query_labels[q];
                row.nearest_into(k, scratch);
                let mut s = score(
                    scratch
                        .iter()
                        .map(|&(_, j)| ref_labels[j as usize] == label),
                    r,
                );
                let all = ranks(row, &members[&label], &[])
                    .expect("the query has r > 0 relevant references");
                s.full_map = all.average_precision;
                s.mrr = 1.0 / (all.first + 1) as f64;
                s
            })
        },
    )?;
    let per_query: Vec<Option<f64>> = scores.iter().map(|s| s.map(|s| s.full_map)).collect();
    let counted: Vec<QueryScore> = scores.into_iter().flatten().collect();
    let n = counted.len();
    let mean = |f: &dyn Fn(&QueryScore) -> f64| mean_of(&counted, f);
    let r = Retrieval {
        precision_at_1: mean(&|s| s.p1),
        r_precision: mean(&|s| s.rp),
        map_at_r: mean(&|s| s.map),
        recall_at: [0, 1, 2, 3].map(|i| mean(&|s| s.recall[i])),
        map: mean(&|s| s.full_map),
        mrr: mean(&|s| s.mrr),
        queries: n,
        total_queries: query_labels.len(),
    };
    Ok((r, per_query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leave_one_out(x: &[f32], dim: usize, labels: &[usize], distance: Distance) -> Retrieval {
        retrieval(
            Rows::new(x, dim),
            labels,
            None,
            distance,
            &crate::test_device(),
        )
        .unwrap()
    }

    fn query_reference(
        queries: &[f32],
        query_labels: &[usize],
        references: &[f32],
        reference_labels: &[usize],
        dim: usize,
        distance: Distance,
    ) -> Retrieval {
        retrieval(
            Rows::new(queries, dim),
            query_labels,
            Some((Rows::new(references, dim), reference_labels)),
            distance,
            &crate::test_device(),
        )
        .unwrap()
    }

    /// Hand-worked: points on a line, classes a a b a b.
    /// Query 0 (x=0, a): others by distance 1(a, 1), 2(b, 2), 3(a, 3), 4(b, 4); R = 2:
    ///   top-2 = [a, b] → P@1 1, R-prec 1/2, MAP@R (1/2)(1/1) = 0.5.
    /// Query 1 (x=1, a): 0(a, 1) and 2(b, 1) tie at 1 → index order 0 first; top-2 = [a, b]
    ///   → 1, 1/2, 0.5.
    /// Query 2 (x=2, b): 1(a,1), 3(a,1), 0(a,2), 4(b,2); R = 1: top-1 = [a] → 0, 0, 0.
    /// Query 3 (x=3, a): 2(b,1), 4(b,1), 1(a,2), 0(a,3); R = 2: [b, b] → 0, 0, 0.
    /// Query 4 (x=4, b): 3(a,1), 2(b,2); R = 1: [a] → 0, 0, 0.
    #[test]
    fn matches_a_hand_worked_example() {
        let x = [0.0f32, 1.0, 2.0, 3.0, 4.0];
        let labels = [0, 0, 1, 0, 1];
        let m = leave_one_out(&x, 1, &labels, Distance::Euclidean);
        assert_eq!(m.queries, 5);
        assert!((m.precision_at_1 - 2.0 / 5.0).abs() < 1e-12);
        assert!((m.r_precision - 1.0 / 5.0).abs() < 1e-12);
        assert!((m.map_at_r - 1.0 / 5.0).abs() < 1e-12);
        // Recall@2: q0 [a, b] yes, q1 [a, b] yes, q2 [a, a] no, q3 [b, b] no, q4 [a, b] yes.
        assert!((m.recall_at[1] - 3.0 / 5.0).abs() < 1e-12);
        // Recall@4: every query has a relevant item among all four others.
        assert_eq!(m.recall_at[2], 1.0);
    }

    #[test]
    fn query_reference_leaves_out_queries_without_relevant_references() {
        // References: class 0 at 0 and 10, class 1 at 1. Queries: 0.4 (class 0), 9 (class 0),
        // 5 (class 2, absent from the references: not counted).
        let refs = [0.0f32, 10.0, 1.0];
        let m = query_reference(
            &[0.4, 9.0, 5.0],
            &[0, 0, 2],
            &refs,
            &[0, 0, 1],
            1,
            Distance::Euclidean,
        );
        assert_eq!((m.queries, m.total_queries), (2, 3));
        // q 0.4: ranking 0(a), 1(b), 10(a); R = 2 → P@1 1, RP 1/2, MAP (1/2)(1) = 0.5.
        // q 9: ranking 10(a), 1(b), 0(a) → P@1 1, RP 1/2, MAP 0.5.
        assert_eq!(m.precision_at_1, 1.0);
        assert!((m.r_precision - 0.5).abs() < 1e-12);
        assert!((m.map_at_r - 0.5).abs() < 1e-12);
        assert_eq!(
            serde_json::to_value(m).unwrap()["queries_without_relevant_reference"],
            1
        );
    }

    #[test]
    fn perfect_clusters_score_one_and_singletons_are_left_out() {
        let x = [0.0f32, 0.0, 0.1, 0.0, 5.0, 5.0, 5.1, 5.0, 9.0, -9.0];
        let labels = [3, 3, 7, 7, 1];
        let m = leave_one_out(&x, 2, &labels, Distance::Euclidean);
        assert_eq!(m.queries, 4);
        assert_eq!(
            (m.precision_at_1, m.r_precision, m.map_at_r),
            (1.0, 1.0, 1.0)
        );
    }

    /// MAP@R rewards order inside the top R, R-Precision does not.
    #[test]
    fn map_at_r_weighs_the_rank_of_hits() {
        // Query 0 (class 0) has R = 2 relevant: indices 2 and 3; ranking 1(b), 2(a), 3(a).
        let x = [0.0f32, 1.0, 2.0, 3.0, 10.0];
        let labels = [0, 1, 0, 0, 1];
        let m = leave_one_out(&x, 1, &labels, Distance::Euclidean);
        // q0: top-2 = [1(b), 2(a)] → P@1 0, RP 1/2, MAP (1/2)(1/2) = 0.25
        // q1 (b, R=1): nearest 0 or 2 (tie at 1, index 0 first) → 0, 0, 0
        // q2 (a, R=2): 1(b,1), 3(a,1) tie → 1 first; top-2 = [b, a] → 0, 1/2, 0.25
        // q3 (a, R=2): 2(a,1), 1(b,2) → top-2 = [a, b] → 1, 1/2, 0.5
        // q4 (b, R=1): 3(a,7) → 0, 0, 0
        assert!((m.precision_at_1 - 1.0 / 5.0).abs() < 1e-12);
        assert!((m.r_precision - 1.5 / 5.0).abs() < 1e-12);
        assert!((m.map_at_r - 1.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn cosine_ranks_by_angle() {
        // Long and short vectors in the same direction are close in cosine, far in Euclidean.
        let x = [1.0f32, 0.0, 10.0, 0.1, 0.0, 1.0, 0.1, 10.0];
        let labels = [0, 0, 1, 1];
        assert_eq!(
            leave_one_out(&x, 2, &labels, Distance::Cosine).precision_at_1,
            1.0
        );
        assert!(leave_one_out(&x, 2, &labels, Distance::Euclidean).precision_at_1 < 1.0);
    }

    /// `ranks` (buckets, no sort of the row) against a full sort by (key, index), on keys with
    /// heavy ties, excluded entries and the query's own entry.
    #[test]
    fn ranks_match_a_full_sort() {
        let mut state = 11u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for case in 0..200 {
            let n = 1 + next(400) as usize;
            let levels = 1 + next(if case % 2 == 0 { 5 } else { 1000 });
            let keys: Vec<f32> = (0..n).map(|_| next(levels) as f32 * 0.25).collect();
            let class: Vec<Option<bool>> = (0..n)
                .map(|_| match next(10) {
                    0 => None,
                    1..=3 => Some(true),
                    _ => Some(false),
                })
                .collect();
            let own = (case % 3 == 0).then(|| next(n as u64) as usize);
            let row = QueryKeys::new(0, &keys, own);
            let listed = |c: Option<bool>| -> Vec<u32> {
                (0..n as u32)
                    .filter(|&j| Some(j as usize) != own && class[j as usize] == c)
                    .collect()
            };
            let got = ranks(&row, &listed(Some(true)), &listed(None));
            let mut order: Vec<usize> = (0..n)
                .filter(|&j| Some(j) != own && class[j].is_some())
                .collect();
            order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]).then(a.cmp(&b)));
            let hits: Vec<usize> = order
                .iter()
                .enumerate()
                .filter(|&(_, &j)| class[j] == Some(true))
                .map(|(rank, _)| rank)
                .collect();
            if hits.is_empty() {
                assert_eq!(got, None, "case {case}");
                continue;
            }
            let ap = hits
                .iter()
                .enumerate()
                .map(|(i, &rank)| (i + 1) as f64 / (rank + 1) as f64)
                .sum::<f64>()
                / hits.len() as f64;
            let got = got.expect("relevant items exist");
            assert_eq!(
                (got.relevant, got.first),
                (hits.len(), hits[0]),
                "case {case}"
            );
            assert!((got.average_precision - ap).abs() < 1e-12, "case {case}");
        }
    }
}
