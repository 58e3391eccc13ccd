//! Exact mining on the host, over a distance matrix read back from the device: `B` queries
//! (anchors, rows) against `M` references (columns), `M = B` for the batch itself.
//!
//! Every routine is `O(B·M log K)` time (K = largest class among the references) and `O(B·M)`
//! memory, except soft-margin batch-all, which is `O(Σₐ |P(a)|·|N(a)|)` time because softplus
//! has no prefix-sum shortcut, and PML's band miner, whose triplets are kept. None ever builds
//! a `B×M×M` array.
//!
//! The trick shared by semi-hard and batch-all: per anchor, sort its few positives (K − 1 of
//! them in a P×K batch), then drop each negative into the bucket of sorted positives it falls
//! after (a binary search). Per-bucket minima give the semi-hard negative of every positive
//! (a suffix minimum); per-bucket counts and sums give the batch-all hinge of every positive
//! (a prefix sum), and the count of active triplets each negative takes part in.
//!
//! Ties: the hardest positive, the hardest negative and the semi-hard negative are the lowest
//! index among equal distances. "Beyond the positive" is strict (`d_an > d_ap`), and a triplet
//! is active when its loss is `> 0`, as in pytorch-metric-learning.

use std::collections::HashMap;

use burn::prelude::*;

use crate::triplets::Triplets;

mod weights;

pub(crate) use weights::{
    HostStats, all_weights, count_non_finite, positive_negative, triplet_weights,
};

/// Class structure of a batch mined against references: dense class ids of the queries (the
/// anchors, rows of the distance matrix) and of the references (positives and negatives, its
/// columns), and the references of each class. In-batch mining is the square case: the
/// references are the batch, and each query's own row is not its positive.
pub(crate) struct Classes {
    /// Dense class id of each query; a label no reference has gets an id with no members.
    query: Vec<u32>,
    /// Dense class id of each reference.
    pub id: Vec<u32>,
    /// Reference indices of each class, ascending.
    pub members: Vec<Vec<u32>>,
    /// The reference that is the query itself (never its positive), if any.
    own: Vec<Option<u32>>,
}

impl Classes {
    /// In-batch: the batch is its own reference set.
    pub fn new(labels: &[i64]) -> Self {
        let own = (0..labels.len()).map(|i| Some(i as u32)).collect();
        Self::against(labels, labels, own)
    }

    /// Queries labelled `labels` against references labelled `ref_labels`; `own[a]` is the
    /// reference row that holds query `a` itself (same label), excluded from its positives.
    pub fn against(labels: &[i64], ref_labels: &[i64], own: Vec<Option<u32>>) -> Self {
        debug_assert_eq!(own.len(), labels.len());
        let mut dense: HashMap<i64, u32> = HashMap::new();
        let mut members: Vec<Vec<u32>> = Vec::new();
        let mut class_of = |label: i64, members: &mut Vec<Vec<u32>>| {
            let next = members.len() as u32;
            let c = *dense.entry(label).or_insert(next);
            if c == next {
                members.push(Vec::new());
            }
            c
        };
        let id = ref_labels
            .iter()
            .enumerate()
            .map(|(i, &label)| {
                let c = class_of(label, &mut members);
                members[c as usize].push(i as u32);
                c
            })
            .collect();
        let query = labels
            .iter()
            .map(|&label| class_of(label, &mut members))
            .collect();
        Self {
            query,
            id,
            members,
            own,
        }
    }

    /// The number of queries (anchors, rows).
    pub fn queries(&self) -> usize {
        self.query.len()
    }

    /// The number of references (columns).
    pub fn refs(&self) -> usize {
        self.id.len()
    }

    /// The class of query `a`.
    fn class(&self, a: usize) -> u32 {
        self.query[a]
    }

    /// Positives of anchor `a`: the references of its class, without itself.
    fn positives(&self, a: usize) -> impl Iterator<Item = usize> + '_ {
        let own = self.own[a];
        self.members[self.query[a] as usize]
            .iter()
            .filter(move |&&p| Some(p) != own)
            .map(|&p| p as usize)
    }

    fn num_positives(&self, a: usize) -> usize {
        let class = &self.members[self.query[a] as usize];
        class.len() - self.own[a].is_some_and(|o| class.binary_search(&o).is_ok()) as usize
    }

    fn num_negatives(&self, a: usize) -> usize {
        self.refs() - self.members[self.query[a] as usize].len()
    }
}

/// Mined triplets as parallel index vectors, ordered by anchor, then positive index.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct IndexTriplets {
    pub anchor: Vec<i64>,
    pub positive: Vec<i64>,
    pub negative: Vec<i64>,
}

impl IndexTriplets {
    fn push(&mut self, a: usize, p: usize, n: usize) {
        self.anchor.push(a as i64);
        self.positive.push(p as i64);
        self.negative.push(n as i64);
    }

    fn append(&mut self, mut other: IndexTriplets) {
        self.anchor.append(&mut other.anchor);
        self.positive.append(&mut other.positive);
        self.negative.append(&mut other.negative);
    }

    pub fn len(&self) -> usize {
        self.anchor.len()
    }

    /// The triplets as index tensors on `device`.
    pub fn into_tensors(self, device: &Device) -> Triplets {
        let index = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        Triplets::new(
            index(self.anchor),
            index(self.positive),
            index(self.negative),
        )
    }

    /// `(anchor, positive, negative)` triplets in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (0..self.len()).map(|i| {
            (
                self.anchor[i] as usize,
                self.positive[i] as usize,
                self.negative[i] as usize,
            )
        })
    }
}

/// Runs `f` over contiguous ranges of anchors on all cores and concatenates the results in
/// anchor order. `f` also gets the matching rows of `rows` (`row_len` values per anchor).
pub(super) fn par_anchors<T: Send, R: Send>(
    num_anchors: usize,
    rows: &mut [R],
    row_len: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [R]) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Small batches are not worth a thread.
    let threads = threads.min(num_anchors / 128).max(1);
    let chunk = num_anchors.div_ceil(threads);
    if threads == 1 {
        return vec![f(0..num_anchors, rows)];
    }
    let f = &f;
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(threads);
        let mut rest = rows;
        for start in (0..num_anchors).step_by(chunk) {
            let end = (start + chunk).min(num_anchors);
            let take = if row_len == 0 {
                0
            } else {
                (end - start) * row_len
            };
            let (mine, tail) = rest.split_at_mut(take);
            rest = tail;
            handles.push(scope.spawn(move || f(start..end, mine)));
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("mining worker panicked"))
            .collect()
    })
}

/// Batch-hard (Hermans et al. 2017): per anchor with a positive and a negative, the farthest
/// positive and the nearest negative.
pub(crate) fn hard(dist: &[f32], classes: &Classes) -> IndexTriplets {
    let (b, m) = (classes.queries(), classes.refs());
    let parts = par_anchors(b, &mut [] as &mut [u8], 0, |anchors, _| {
        let mut out = IndexTriplets::default();
        for a in anchors {
            let row = &dist[a * m..(a + 1) * m];
            let mut pos: Option<(f32, usize)> = None;
            for p in classes.positives(a) {
                if pos.is_none_or(|(d, _)| row[p] > d) {
                    pos = Some((row[p], p));
                }
            }
            let own = classes.class(a);
            let mut neg: Option<(f32, usize)> = None;
            for (n, &d) in row.iter().enumerate() {
                if classes.id[n] != own && neg.is_none_or(|(best, _)| d < best) {
                    neg = Some((d, n));
                }
            }
            if let (Some((_, p)), Some((_, n))) = (pos, neg) {
                out.push(a, p, n);
            }
        }
        out
    });
    concat(parts)
}

/// Semi-hard (FaceNet; TensorFlow Addons' rule): for each positive pair `(a, p)` whose anchor
/// has a negative, the nearest negative with `d_an > d_ap`, else the farthest negative.
pub(crate) fn semi_hard(dist: &[f32], classes: &Classes) -> IndexTriplets {
    let (b, cols) = (classes.queries(), classes.refs());
    let parts = par_anchors(b, &mut [] as &mut [u8], 0, |anchors, _| {
        let mut out = IndexTriplets::default();
        let mut pos: Vec<(f32, usize)> = Vec::new();
        let mut bucket_min: Vec<Option<(f32, usize)>> = Vec::new();
        let mut chosen: Vec<(usize, usize)> = Vec::new();
        for a in anchors {
            if classes.num_negatives(a) == 0 {
                continue;
            }
            let row = &dist[a * cols..(a + 1) * cols];
            sorted_positives(row, classes, a, &mut pos);
            let m = pos.len();
            if m == 0 {
                continue;
            }
            // bucket j holds negatives beyond exactly the j nearest positives.
            bucket_min.clear();
            bucket_min.resize(m + 1, None);
            let mut farthest: Option<(f32, usize)> = None;
            let own = classes.class(a);
            for (n, &d) in row.iter().enumerate() {
                if classes.id[n] == own {
                    continue;
                }
                let j = pos.partition_point(|&(dp, _)| dp < d);
                if bucket_min[j].is_none_or(|(best, _)| d < best) {
                    bucket_min[j] = Some((d, n));
                }
                if farthest.is_none_or(|(best, _)| d > best) {
                    farthest = Some((d, n));
                }
            }
            let farthest = farthest.expect("anchor has a negative").1;
            // Suffix minimum: the semi-hard negative of sorted positive i lies in buckets > i.
            chosen.clear();
            let mut best: Option<(f32, usize)> = None;
            for i in (0..m).rev() {
                if let Some((d, n)) = bucket_min[i + 1]
                    && best.is_none_or(|(bd, bn)| d < bd || (d == bd && n < bn))
                {
                    best = Some((d, n));
                }
                chosen.push((pos[i].1, best.map_or(farthest, |(_, n)| n)));
            }
            chosen.sort_unstable();
            for &(p, n) in &chosen {
                out.push(a, p, n);
            }
        }
        out
    });
    concat(parts)
}

/// pytorch-metric-learning's "semihard" rule (`TripletMarginMiner(type_of_triplets=
/// "semihard")`): every valid triplet with `0 < d_an − d_ap ≤ margin`, ordered by anchor,
/// positive, negative. `O(Σₐ |P(a)|·|N(a)|)` time; memory proportional to the triplets kept.
pub(crate) fn pml_semi_hard(dist: &[f32], classes: &Classes, margin: f64) -> IndexTriplets {
    let (b, m) = (classes.queries(), classes.refs());
    let parts = par_anchors(b, &mut [] as &mut [u8], 0, |anchors, _| {
        let mut out = IndexTriplets::default();
        for a in anchors {
            let own = classes.class(a);
            let row = &dist[a * m..(a + 1) * m];
            for p in classes.positives(a) {
                let d_ap = f64::from(row[p]);
                for (n, &d) in row.iter().enumerate() {
                    let gap = f64::from(d) - d_ap;
                    if classes.id[n] != own && gap > 0.0 && gap <= margin {
                        out.push(a, p, n);
                    }
                }
            }
        }
        out
    });
    concat(parts)
}

/// Every valid triplet `(a, p, n)`, ordered by anchor, positive, negative. Memory is
/// proportional to their number: for inspection and small batches only.
pub(crate) fn all(classes: &Classes) -> IndexTriplets {
    let mut out = IndexTriplets::default();
    for a in 0..classes.queries() {
        let own = classes.class(a);
        for p in classes.positives(a) {
            for n in (0..classes.refs()).filter(|&n| classes.id[n] != own) {
                out.push(a, p, n);
            }
        }
    }
    out
}

/// Positives of `a` as `(d_ap, p)`, sorted by distance, then index.
fn sorted_positives(row: &[f32], classes: &Classes, a: usize, out: &mut Vec<(f32, usize)>) {
    out.clear();
    out.extend(classes.positives(a).map(|p| (row[p], p)));
    out.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
}

fn concat(parts: Vec<IndexTriplets>) -> IndexTriplets {
    let mut out = IndexTriplets::default();
    for part in parts {
        out.append(part);
    }
    out
}

#[cfg(test)]
mod tests {
    //! The threaded, bucketed miners against O(B³) loops on batches large enough to be split
    //! across threads (the public-API oracle tests in `tests/` use small batches).
    use super::*;

    fn lcg(state: &mut u64) -> f32 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 40) as f32) / (1u64 << 24) as f32
    }

    /// A random symmetric distance matrix with some exact ties, and labels with 7 per class.
    fn fixture(b: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
        let mut s = seed;
        let mut d = vec![0.0f32; b * b];
        for i in 0..b {
            for j in i + 1..b {
                let v = if lcg(&mut s) < 0.05 {
                    0.5
                } else {
                    lcg(&mut s) * 2.0
                };
                d[i * b + j] = v;
                d[j * b + i] = v;
            }
        }
        let labels = (0..b as i64)
            .map(|i| (i * 7919 % b as i64) / 7 - 20)
            .collect();
        (d, labels)
    }

    fn brute(dist: &[f32], y: &[i64], kind: &str) -> IndexTriplets {
        let b = y.len();
        let d = |i: usize, j: usize| dist[i * b + j];
        let mut out = IndexTriplets::default();
        for a in 0..b {
            let pos: Vec<usize> = (0..b).filter(|&p| p != a && y[p] == y[a]).collect();
            let neg: Vec<usize> = (0..b).filter(|&n| y[n] != y[a]).collect();
            if pos.is_empty() || neg.is_empty() {
                continue;
            }
            let argbest = |v: &[usize], better: &dyn Fn(f32, f32) -> bool| {
                v.iter().copied().fold(
                    v[0],
                    |best, i| if better(d(a, i), d(a, best)) { i } else { best },
                )
            };
            if kind == "hard" {
                out.push(
                    a,
                    argbest(&pos, &|x, y| x > y),
                    argbest(&neg, &|x, y| x < y),
                );
                continue;
            }
            for &p in &pos {
                let beyond: Vec<usize> =
                    neg.iter().copied().filter(|&n| d(a, n) > d(a, p)).collect();
                let n = if beyond.is_empty() {
                    argbest(&neg, &|x, y| x > y)
                } else {
                    argbest(&beyond, &|x, y| x < y)
                };
                out.push(a, p, n);
            }
        }
        out
    }

    #[test]
    fn threaded_miners_match_brute_force() {
        for seed in 0..3 {
            let (d, y) = fixture(300, seed);
            let classes = Classes::new(&y);
            assert_eq!(
                semi_hard(&d, &classes),
                brute(&d, &y, "semi"),
                "seed {seed}"
            );
            assert_eq!(hard(&d, &classes), brute(&d, &y, "hard"), "seed {seed}");
        }
    }

    #[test]
    fn threaded_batch_all_matches_brute_force() {
        let (d, y) = fixture(260, 11);
        let b = y.len();
        let classes = Classes::new(&y);
        for (margin, soft) in [(0.2, false), (0.5, false), (0.0, true)] {
            let got = all_weights(&d, &classes, margin, soft);
            // Per-triplet loops over every materialised triplet.
            let every = all(&classes);
            let (weights, loss) = triplet_weights(&d, [b, b], &every, margin, soft);
            let stats = HostStats::of_triplets(&d, b, &every, margin, soft, None);
            let (triplets, active) = (stats.triplets, stats.active);
            assert_eq!(got.stats.triplets, triplets);
            assert_eq!(got.stats.active, active);
            assert_eq!(got.stats.anchors_with_triplet, stats.anchors_with_triplet);
            for (g, w) in [
                (got.stats.sum_d_ap, stats.sum_d_ap),
                (got.stats.sum_d_an, stats.sum_d_an),
            ] {
                assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{g} vs {w}");
            }
            assert!(
                (got.loss_sum - loss).abs() <= 1e-9 * loss.max(1.0),
                "{} vs {loss}",
                got.loss_sum
            );
            for (g, w) in got.weights.iter().zip(&weights) {
                assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} vs {w}");
            }
        }
    }
}
