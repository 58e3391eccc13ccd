//! Exact search: every stored vector's distance to the query, the `k` nearest kept; and the
//! distances reported for any hit, recomputed in f64 so exact and approximate searches report
//! the same number for the same item.

use rayon::prelude::*;

use crate::spec::Metric;

/// Rows per parallel block of an exact search.
const BLOCK: usize = 4096;

/// `Σ aᵢbᵢ`, `Σ (aᵢ − bᵢ)²` in eight lanes (so the compiler can vectorise it).
#[inline]
fn lanes(a: &[f32], b: &[f32], square_diff: bool) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += if square_diff {
                (x[l] - y[l]) * (x[l] - y[l])
            } else {
                x[l] * y[l]
            };
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += if square_diff {
            (x - y) * (x - y)
        } else {
            x * y
        };
    }
    sum
}

/// A score that ranks as the metric does (smaller is nearer), in f32: the squared distance for
/// the Euclidean metrics, `−cos` for cosine. `inv_norm_q` is `1/‖q‖` (0 for a zero vector).
#[inline]
fn rank_score(metric: Metric, q: &[f32], row: &[f32], inv_norm_q: f32, inv_norm_row: f32) -> f32 {
    match metric {
        Metric::Euclidean | Metric::SquaredEuclidean => lanes(q, row, true),
        // A zero vector has cos 0: distance 1.
        Metric::Cosine => -lanes(q, row, false) * inv_norm_q * inv_norm_row,
    }
}

/// `1/‖v‖`, or 0 for a zero vector.
pub fn inv_norm(v: &[f32]) -> f32 {
    let n = lanes(v, v, false).sqrt();
    if n > 0.0 { 1.0 / n } else { 0.0 }
}

/// The metric's distance between `a` and `b`, in f64.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    match metric {
        Metric::Euclidean | Metric::SquaredEuclidean => {
            let s: f64 = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum();
            if metric == Metric::Euclidean {
                s.sqrt()
            } else {
                s
            }
        }
        Metric::Cosine => {
            let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
            for (&x, &y) in a.iter().zip(b) {
                let (x, y) = (f64::from(x), f64::from(y));
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            if aa == 0.0 || bb == 0.0 {
                1.0
            } else {
                1.0 - ab / (aa.sqrt() * bb.sqrt())
            }
        }
    }
}

/// The `k` smallest `(score, row)` pairs of `scored`, nearest first, ties by row.
fn smallest(mut scored: Vec<(f32, usize)>, k: usize) -> Vec<(f32, usize)> {
    let by = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if scored.len() > k {
        scored.select_nth_unstable_by(k - 1, by);
        scored.truncate(k);
    }
    scored.sort_unstable_by(by);
    scored
}

/// The rows of `vectors` (`dim` values each) nearest to `query`, at most `k`, nearest first:
/// row numbers. `inv_norms` holds `1/‖row‖` per row (used by cosine only).
pub fn nearest_rows(
    metric: Metric,
    vectors: &[f32],
    inv_norms: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
) -> Vec<usize> {
    let n = vectors.len() / dim;
    if n == 0 || k == 0 {
        return Vec::new();
    }
    let inv_q = inv_norm(query);
    let block = |start: usize| {
        let end = (start + BLOCK).min(n);
        let scored = (start..end)
            .map(|r| {
                let row = &vectors[r * dim..(r + 1) * dim];
                (rank_score(metric, query, row, inv_q, inv_norms[r]), r)
            })
            .collect();
        smallest(scored, k)
    };
    let best: Vec<(f32, usize)> = if n <= BLOCK {
        block(0)
    } else {
        (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| block(b * BLOCK))
            .flatten_iter()
            .collect()
    };
    smallest(best, k).into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn nearest_rows_are_the_brute_force_sort_for_every_metric() {
        let (n, dim) = (9000, 13);
        let mut seed = 1;
        let v: Vec<f32> = (0..n * dim).map(|_| lcg(&mut seed)).collect();
        let norms: Vec<f32> = v.chunks(dim).map(inv_norm).collect();
        for metric in [Metric::Euclidean, Metric::SquaredEuclidean, Metric::Cosine] {
            for q in 0..5 {
                let query: Vec<f32> = (0..dim).map(|_| lcg(&mut seed)).collect();
                let mut all: Vec<(f64, usize)> = (0..n)
                    .map(|r| (distance(metric, &query, &v[r * dim..(r + 1) * dim]), r))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let want: Vec<usize> = all[..10].iter().map(|p| p.1).collect();
                let got = nearest_rows(metric, &v, &norms, dim, &query, 10);
                assert_eq!(got, want, "{metric:?} query {q}");
            }
        }
    }

    #[test]
    fn distances_match_their_definitions() {
        let (a, b) = ([3.0f32, 0.0], [0.0f32, 4.0]);
        assert_eq!(distance(Metric::Euclidean, &a, &b), 5.0);
        assert_eq!(distance(Metric::SquaredEuclidean, &a, &b), 25.0);
        assert!((distance(Metric::Cosine, &a, &b) - 1.0).abs() < 1e-12);
        assert!(distance(Metric::Cosine, &a, &a).abs() < 1e-12);
        assert_eq!(distance(Metric::Cosine, &[0.0, 0.0], &b), 1.0);
        assert!(nearest_rows(Metric::Cosine, &[], &[], 2, &a, 3).is_empty());
    }
}
