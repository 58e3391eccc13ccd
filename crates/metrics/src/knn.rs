//! Exact k-nearest neighbours on any Burn device, never holding the `queries × references`
//! matrix.
//!
//! The references are uploaded once and their squared norms summed on the host. Two searches:
//! - [`for_each_row`] (the metrics): each block of query rows gets its dot products with
//!   every reference from one matrix product on the device (at most [`BLOCK_ELEMENTS`] values,
//!   or one row when a row is longer). The block is read back and each row, in parallel on the
//!   host, becomes ranking keys (`max(‖q‖² + ‖r‖² − 2 q·r, 0)` for Euclidean, which ranks like
//!   the distance; `1 − q̂·r̂` for cosine) that a visitor sees whole: [`QueryKeys::nearest_into`]
//!   selects the `k` nearest (one pass with a short sorted list for small `k`,
//!   `select_nth_unstable` and a sort of the `k` otherwise), [`ranks`](crate::ranks) places
//!   every relevant reference. [`for_each_ranked`] is the top-k visitor.
//! - [`nearest`] (a search of a gallery): blocks of up to [`NEAREST_QUERY_BLOCK`] queries against
//!   chunks of the references, with a running top-k per query, so a large gallery is read once
//!   per block of queries; the distances it returns are recomputed exactly.
//!
//! Ranking rule: by key, then by reference index, so exact ties are deterministic. In
//! leave-one-out mode the query itself is excluded by index; an identical duplicate stays a
//! neighbour like any other.

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use triplet_loss::Distance;

use crate::rows::Rows;

/// Most dot products computed at once: 16 MiB of `f32`. Measured on 2 cores (10k × 60k, 64-d): 16 MiB
/// blocks take 0.54 s for the products, 64 MiB blocks 2.5 s (blocks of 32 MiB and more are
/// fresh `mmap`s from the allocator each time, and the page faults dominate).
pub const BLOCK_ELEMENTS: usize = 1 << 22;

/// Up to this `k`, a row keeps its best `k` in one pass (insertion into a short sorted list);
/// above it, all candidates are partitioned with `select_nth_unstable`.
const SMALL_K: usize = 32;

/// Errors of the search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KnnError {
    /// Queries and references of different dimensions.
    #[error("the queries are {queries}-d but the references {references}-d")]
    Dimensions {
        /// The queries' dimension.
        queries: usize,
        /// The references' dimension.
        references: usize,
    },
    /// Not one label (or flag) per row.
    #[error("{what}: {rows} rows but {labels} labels")]
    Labels {
        /// Which input.
        what: &'static str,
        /// Its rows.
        rows: usize,
        /// Its labels.
        labels: usize,
    },
    /// An embedding holds NaN or an infinity.
    #[error("{what} row {row} is not finite (NaN or infinite values)")]
    NotFinite {
        /// Which input.
        what: &'static str,
        /// The row.
        row: usize,
    },
    /// More references than 32-bit indices can name.
    #[error("{0} references are more than this search supports (2^32 - 1)")]
    TooMany(usize),
    /// The device could not hand the distances back.
    #[error("reading distances back from the device: {0}")]
    Device(String),
}

/// One query's row of the search: the ranking key of every reference.
///
/// Keys rank like the distance: the squared Euclidean distance (`max(‖q‖² + ‖r‖² − 2 q·r, 0)`)
/// or the cosine distance `1 − q̂·r̂`. Neighbours are ranked by key, then by reference index
/// ([`by_key_then_index`]).
#[derive(Debug, Clone, Copy)]
pub struct QueryKeys<'a> {
    /// The query's index.
    pub query: usize,
    /// One key per reference.
    pub keys: &'a [f32],
    /// In leave-one-out mode, the query's own index among the references (to be skipped).
    pub own: Option<usize>,
}

impl<'a> QueryKeys<'a> {
    /// A row of keys as [`for_each_row`] makes them (for tests and other searches).
    pub fn new(query: usize, keys: &'a [f32], own: Option<usize>) -> Self {
        Self { query, keys, own }
    }

    /// The `k` nearest references (the query itself left out), nearest first, as `(key,
    /// index)`, in `candidates` (cleared first; reused to avoid allocations).
    pub fn nearest_into(&self, k: usize, candidates: &mut Vec<(f32, u32)>) {
        let own = self.own.unwrap_or(usize::MAX);
        let nr = self.keys.len();
        let k = k.min(nr - usize::from(self.own.is_some() && nr > 0));
        candidates.clear();
        if k == 0 {
        } else if k <= SMALL_K {
            // One pass keeping the k best, sorted. References come in index order, so an
            // equal key never displaces an earlier index.
            for (j, &d) in self.keys.iter().enumerate() {
                if j == own {
                    continue;
                }
                if candidates.len() == k {
                    if d.total_cmp(&candidates[k - 1].0).is_lt() {
                        candidates.pop();
                    } else {
                        continue;
                    }
                }
                let at = candidates.partition_point(|c| c.0.total_cmp(&d).is_le());
                candidates.insert(at, (d, j as u32));
            }
        } else {
            candidates.extend(
                self.keys
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != own)
                    .map(|(j, &d)| (d, j as u32)),
            );
            let order = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if k < candidates.len() {
                candidates.select_nth_unstable_by(k - 1, order);
                candidates.truncate(k);
            }
            candidates.sort_unstable_by(order);
        }
    }
}

/// Checks the inputs' dimensions and values; returns the numbers of queries and references.
fn check(queries: Rows<'_>, references: Option<Rows<'_>>) -> Result<(usize, usize), KnnError> {
    let references = references.unwrap_or(queries);
    if queries.dim() != references.dim() && !queries.is_empty() && !references.is_empty() {
        return Err(KnnError::Dimensions {
            queries: queries.dim(),
            references: references.dim(),
        });
    }
    let nr = references.len();
    if u32::try_from(nr).is_err() {
        return Err(KnnError::TooMany(nr));
    }
    for (what, rows) in [("queries", queries), ("references", references)] {
        if let Some(row) = rows.first_non_finite() {
            return Err(KnnError::NotFinite { what, row });
        }
    }
    Ok((queries.len(), nr))
}

/// Rows on the device, L2-normalised for the cosine distance.
fn prepare(rows: Rows<'_>, cosine: bool, device: &Device) -> Tensor<2> {
    let x = Tensor::<2>::from_data(
        TensorData::new(rows.values().to_vec(), [rows.len(), rows.dim()]),
        device,
    );
    if cosine {
        let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        x / norm
    } else {
        x
    }
}

/// Rows on the device ([`prepare`]) and, for the Euclidean expansion, their squared norms.
fn side(rows: Rows<'_>, cosine: bool, device: &Device) -> (Tensor<2>, Vec<f32>) {
    let norms = if cosine { Vec::new() } else { sq_norms(rows) };
    (prepare(rows, cosine, device), norms)
}

/// Squared norms of the rows, summed in f32 on the host (no device temporaries of the data's
/// size; the same values whichever device searches).
fn sq_norms(rows: Rows<'_>) -> Vec<f32> {
    rows.values()
        .par_chunks(rows.dim().max(1))
        .map(|row| row.iter().map(|v| v * v).sum())
        .collect()
}

/// Calls `visit(keys, scratch)` for every query with its [`QueryKeys`] against every
/// reference; returns the results in query order. `scratch` is a buffer reused across the rows
/// of one thread (for [`QueryKeys::nearest_into`]).
///
/// `references = None` searches `queries` against themselves ([`QueryKeys::own`] is then set).
pub fn for_each_row<T, F>(
    queries: Rows<'_>,
    references: Option<Rows<'_>>,
    distance: Distance,
    device: &Device,
    visit: F,
) -> Result<Vec<T>, KnnError>
where
    T: Send,
    F: Fn(&QueryKeys<'_>, &mut Vec<(f32, u32)>) -> T + Sync,
{
    let (nq, nr) = check(queries, references)?;
    let leave_one_out = references.is_none();
    let references = references.unwrap_or(queries);
    let cosine = matches!(distance, Distance::Cosine);
    let mut out = Vec::with_capacity(nq);
    if nq == 0 || nr == 0 {
        let mut scratch = Vec::new();
        out.extend((0..nq).map(|q| {
            let row = QueryKeys {
                query: q,
                keys: &[],
                own: None,
            };
            visit(&row, &mut scratch)
        }));
        return Ok(out);
    }
    let dim = queries.dim();
    let (refs, ref_sq) = side(references, cosine, device);
    let refs_t = refs.transpose();
    // The block's query rows count too when the dimension exceeds the references.
    let block = (BLOCK_ELEMENTS / nr.max(dim)).clamp(1, nq);
    for start in (0..nq).step_by(block) {
        let b = block.min(nq - start);
        let (q, q_sq) = side(queries.slice(start, start + b), cosine, device);
        // The device does the matrix product; the host turns each row of dot products into
        // keys in place and visits it, so the block is read once.
        let mut dots: Vec<f32> = q
            .matmul(refs_t.clone())
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| KnnError::Device(format!("{e:?}")))?;
        let visited: Vec<T> = dots
            .par_chunks_mut(nr)
            .enumerate()
            .map_init(Vec::new, |scratch, (row, keys)| {
                // Zipped (no bounds checks), so the loops vectorise.
                if cosine {
                    keys.iter_mut().for_each(|key| *key = 1.0 - *key);
                } else {
                    let q = q_sq[row];
                    for (key, &r) in keys.iter_mut().zip(&ref_sq) {
                        *key = (q + r - 2.0 * *key).max(0.0);
                    }
                }
                let query = start + row;
                let row = QueryKeys {
                    query,
                    keys,
                    own: leave_one_out.then_some(query),
                };
                visit(&row, scratch)
            })
            .collect();
        out.extend(visited);
    }
    Ok(out)
}

/// Ranks, for every query row, its `k` nearest references and calls `visit(query, ranked)`
/// with the reference indices nearest first; returns the results in query order.
///
/// `references = None` searches `queries` against themselves, leaving each query out.
/// `ranked` is shorter than `k` when there are fewer candidates.
pub fn for_each_ranked<T, F>(
    queries: Rows<'_>,
    references: Option<Rows<'_>>,
    k: usize,
    distance: Distance,
    device: &Device,
    visit: F,
) -> Result<Vec<T>, KnnError>
where
    T: Send,
    F: Fn(usize, &[u32]) -> T + Sync,
{
    for_each_row(queries, references, distance, device, |row, scratch| {
        row.nearest_into(k, scratch);
        let indices: Vec<u32> = scratch.iter().map(|c| c.1).collect();
        visit(row.query, &indices)
    })
}

/// Query rows per block of [`nearest`]: the references are read once per block.
pub const NEAREST_QUERY_BLOCK: usize = 256;

/// The `k` nearest references of every query as `(reference index, distance)`, nearest first
/// (ties by index), for a search with small `k` and possibly many references (a gallery). The
/// `k` are chosen by the f32 ranking key and then ordered by their exact f64 distance.
///
/// Blocks of up to [`NEAREST_QUERY_BLOCK`] queries go against chunks of the references (at most
/// [`BLOCK_ELEMENTS`] dot products at a time), keeping each query's best `k` across chunks, so
/// the references are read once per block of queries rather than once per few rows. The
/// distances (Euclidean or cosine) are recomputed from the two vectors in f64, so an identical
/// image is at distance 0 (the ranking's `‖q‖² + ‖r‖² − 2 q·r` in f32 is not exact).
pub fn nearest(
    queries: Rows<'_>,
    references: Rows<'_>,
    k: usize,
    distance: Distance,
    device: &Device,
) -> Result<Vec<Vec<(usize, f64)>>, KnnError> {
    let (nq, nr) = check(queries, Some(references))?;
    let k = k.min(nr);
    if nq == 0 || nr == 0 || k == 0 {
        return Ok(vec![Vec::new(); nq]);
    }
    let dim = queries.dim();
    let cosine = matches!(distance, Distance::Cosine);
    let (refs, ref_sq) = side(references, cosine, device);
    let qb = NEAREST_QUERY_BLOCK.min(nq);
    let chunk = (BLOCK_ELEMENTS / qb).clamp(1, nr);
    let mut out = Vec::with_capacity(nq);
    for start in (0..nq).step_by(qb) {
        let b = qb.min(nq - start);
        let (q, q_sq) = side(queries.slice(start, start + b), cosine, device);
        let mut best: Vec<Vec<(f32, u32)>> = vec![Vec::with_capacity(k + 1); b];
        for c0 in (0..nr).step_by(chunk) {
            let c1 = (c0 + chunk).min(nr);
            let dots: Vec<f32> = q
                .clone()
                .matmul(refs.clone().slice([c0..c1, 0..dim]).transpose())
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| KnnError::Device(format!("{e:?}")))?;
            let width = c1 - c0;
            best.par_iter_mut()
                .zip(dots.par_chunks(width))
                .enumerate()
                .for_each(|(row, (kept, dots))| {
                    for (j, &dot) in dots.iter().enumerate() {
                        let key = if cosine {
                            1.0 - dot
                        } else {
                            (q_sq[row] + ref_sq[c0 + j] - 2.0 * dot).max(0.0)
                        };
                        // References come in index order: an equal key never displaces an
                        // earlier index once the list is full.
                        if kept.len() >= k && kept[k - 1].0.total_cmp(&key).is_le() {
                            continue;
                        }
                        let at = kept.partition_point(|c| c.0.total_cmp(&key).is_le());
                        kept.insert(at, (key, (c0 + j) as u32));
                        kept.truncate(k);
                    }
                });
        }
        out.extend(best.into_iter().enumerate().map(|(row, kept)| {
            let qv = queries.row(start + row);
            // The exact distances, in their order (the f32 keys may invert near-ties).
            let mut exact: Vec<(f64, usize)> = kept
                .iter()
                .map(|&(_, j)| {
                    let j = j as usize;
                    (exact_distance(qv, references.row(j), distance), j)
                })
                .collect();
            exact.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            exact.into_iter().map(|(d, j)| (j, d)).collect::<Vec<_>>()
        }));
    }
    Ok(out)
}

/// The distance of two vectors in f64, as the model's loss measures it: Euclidean, squared
/// Euclidean, or cosine (1 − cosine similarity; a zero vector is at 1 from everything).
pub fn exact_distance(a: &[f32], b: &[f32], distance: Distance) -> f64 {
    if matches!(distance, Distance::Cosine) {
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x), f64::from(y));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        1.0 - ab / (aa.sqrt().max(1e-12) * bb.sqrt().max(1e-12))
    } else {
        let squared = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>();
        if matches!(distance, Distance::SquaredEuclidean) {
            squared
        } else {
            squared.sqrt()
        }
    }
}

/// The ranking order of the searches: by key, then by index.
pub fn by_key_then_index(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_device as host;

    fn ranked(
        queries: &[f32],
        references: Option<&[f32]>,
        dim: usize,
        k: usize,
        distance: Distance,
    ) -> Vec<Vec<u32>> {
        for_each_ranked(
            Rows::new(queries, dim),
            references.map(|r| Rows::new(r, dim)),
            k,
            distance,
            &host(),
            |_, r| r.to_vec(),
        )
        .unwrap()
    }

    #[test]
    fn leave_one_out_excludes_self_by_index_and_breaks_ties_by_index() {
        // 0 and 1 are the same point: each is the other's nearest (distance 0), self excluded.
        let x = [0.0f32, 0.0, 1.0, 3.0, 2.0];
        let r = ranked(&x, None, 1, 4, Distance::Euclidean);
        assert_eq!(r[0], [1, 2, 4, 3]);
        assert_eq!(r[1], [0, 2, 4, 3]);
        // Query 2 (x=1): 0 and 1 at 1, 4 at 1 too: index order.
        assert_eq!(r[2], [0, 1, 4, 3]);
        assert_eq!(r[4], [2, 3, 0, 1]);
    }

    #[test]
    fn query_reference_keeps_every_reference_and_truncates_to_k() {
        let refs = [5.0f32, 1.0, 2.0, 1.0];
        let r = ranked(&[1.0, 4.0], Some(&refs), 1, 2, Distance::Euclidean);
        assert_eq!(r, [vec![1, 3], vec![0, 2]]);
        let all = ranked(&[1.0], Some(&refs), 1, 99, Distance::Euclidean);
        assert_eq!(all, [vec![1, 3, 2, 0]]);
    }

    #[test]
    fn cosine_ignores_length() {
        let refs = [10.0f32, 0.0, 1.0, 1.0, 0.0, 0.1];
        let r = ranked(&[1.0, 0.2], Some(&refs), 2, 3, Distance::Cosine);
        assert_eq!(r, [vec![0, 1, 2]]);
        let e = ranked(&[1.0, 0.2], Some(&refs), 2, 3, Distance::Euclidean);
        assert_eq!(e, [vec![1, 2, 0]]);
    }

    /// More queries than fit one block still come back in order and match brute force.
    #[test]
    fn blocks_agree_with_brute_force() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let (dim, nr, nq) = (3, 2000, 9000);
        let refs: Vec<f32> = (0..nr * dim).map(|_| next()).collect();
        let queries: Vec<f32> = (0..nq * dim).map(|_| next()).collect();
        assert!(
            BLOCK_ELEMENTS / nr < nq,
            "the test must span several blocks"
        );
        let got = ranked(&queries, Some(&refs), dim, 3, Distance::Euclidean);
        for q in (0..nq).step_by(997) {
            let mut all: Vec<(f64, u32)> = (0..nr)
                .map(|j| {
                    let d: f64 = (0..dim)
                        .map(|c| f64::from(queries[q * dim + c] - refs[j * dim + c]).powi(2))
                        .sum();
                    (d, j as u32)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<u32> = all[..3].iter().map(|a| a.1).collect();
            assert_eq!(got[q], want, "query {q}");
        }
    }

    /// The one-pass list (small k) and the partition (large k) rank exact ties alike.
    #[test]
    fn small_and_large_k_agree_on_ties() {
        // Points on a 4×4 integer grid, many repeated: distances tie everywhere.
        let x: Vec<f32> = (0..120u32)
            .flat_map(|i| [(i * 7 % 4) as f32, (i * 5 % 4) as f32])
            .collect();
        let small = ranked(&x, None, 2, SMALL_K, Distance::Euclidean);
        let large = ranked(&x, None, 2, SMALL_K + 40, Distance::Euclidean);
        for (s, l) in small.iter().zip(&large) {
            assert_eq!(s[..], l[..SMALL_K]);
        }
        let small = ranked(&x, None, 2, 5, Distance::Cosine);
        let large = ranked(&x, None, 2, 100, Distance::Cosine);
        for (s, l) in small.iter().zip(&large) {
            assert_eq!(s[..], l[..5]);
        }
    }

    #[test]
    fn non_finite_rows_are_an_error() {
        let e = for_each_ranked(
            Rows::new(&[1.0, 2.0, f32::NAN, 0.0], 2),
            None,
            1,
            Distance::Euclidean,
            &host(),
            |_, _| (),
        );
        assert!(matches!(e, Err(KnnError::NotFinite { row: 1, .. })));
    }

    #[test]
    fn queries_and_references_of_other_dimensions_are_an_error() {
        let e = nearest(
            Rows::new(&[1.0, 2.0], 2),
            Rows::new(&[1.0, 2.0, 3.0], 3),
            1,
            Distance::Euclidean,
            &host(),
        );
        assert!(matches!(
            e,
            Err(KnnError::Dimensions {
                queries: 2,
                references: 3
            })
        ));
    }

    /// `nearest` (query blocks against reference chunks) ranks exactly as the row search, ties
    /// included, across several chunks, and reports exact distances in their order.
    #[test]
    fn nearest_over_chunks_matches_the_row_search() {
        let (nq, nr, dim) = (300, 20_000, 2);
        assert!(BLOCK_ELEMENTS / NEAREST_QUERY_BLOCK < nr, "several chunks");
        // An integer grid: many exact ties, and Euclidean keys exact in f32.
        let grid = |i: usize| [(i * 7 % 13) as f32, (i * 5 % 11) as f32];
        let refs: Vec<f32> = (0..nr).flat_map(grid).collect();
        let queries: Vec<f32> = (0..nq).flat_map(|i| grid(i * 3 + 1)).collect();
        let device = host();
        let want = ranked(&queries, Some(&refs), dim, 12, Distance::Euclidean);
        let got = nearest(
            Rows::new(&queries, dim),
            Rows::new(&refs, dim),
            12,
            Distance::Euclidean,
            &device,
        )
        .unwrap();
        for (q, (w, g)) in want.iter().zip(&got).enumerate() {
            let g_idx: Vec<u32> = g.iter().map(|h| h.0 as u32).collect();
            assert_eq!(&g_idx, w, "query {q}");
        }
        // Cosine on distinct random vectors, against a brute-force sort by the exact distance.
        let mut state = 5u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let (dim, nr) = (8, 20_000);
        let refs: Vec<f32> = (0..nr * dim).map(|_| next()).collect();
        let queries: Vec<f32> = (0..40 * dim).map(|_| next()).collect();
        let got = nearest(
            Rows::new(&queries, dim),
            Rows::new(&refs, dim),
            5,
            Distance::Cosine,
            &device,
        )
        .unwrap();
        for (q, g) in got.iter().enumerate() {
            let qv = &queries[q * dim..(q + 1) * dim];
            let mut all: Vec<(f64, usize)> = (0..nr)
                .map(|j| {
                    let d = exact_distance(qv, &refs[j * dim..(j + 1) * dim], Distance::Cosine);
                    (d, j)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<(usize, f64)> = all[..5].iter().map(|&(d, j)| (j, d)).collect();
            assert_eq!(g, &want, "query {q}");
        }
        // k beyond the references: all of them.
        let all = nearest(
            Rows::new(&[0.0, 0.0], 2),
            Rows::new(&refs[..6], 2),
            99,
            Distance::Euclidean,
            &host(),
        )
        .unwrap();
        assert_eq!(all[0].len(), 3);
    }
}
