//! Retrieval metrics of Musgrave et al., "A Metric Learning Reality Check" (2020), in
//! leave-one-out mode (each image queries all the others): P@1, R-Precision and MAP@R.
//!
//! Neighbours are ranked by distance, ties by index. A query whose class has no other member
//! has no relevant item and is left out of the averages (pytorch-metric-learning does the same).

use triplet_loss::Distance;

/// Leave-one-out retrieval quality of a labelled set of embeddings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Retrieval {
    /// Fraction of queries whose nearest neighbour has their class.
    pub precision_at_1: f64,
    /// Mean over queries of (relevant among the R nearest) / R, R = other members of the class.
    pub r_precision: f64,
    /// Mean over queries of (1/R) Σ_{i ≤ R} P(i)·rel(i).
    pub map_at_r: f64,
    /// Queries counted (those with at least one other member of their class).
    pub queries: usize,
}

/// Ranks, for every row of `embeddings` (`n × dim`, row-major), all other rows, and scores them.
///
/// # Panics
/// If `embeddings.len() != labels.len() * dim`.
pub fn leave_one_out(
    embeddings: &[f32],
    dim: usize,
    labels: &[usize],
    distance: Distance,
) -> Retrieval {
    let n = labels.len();
    assert_eq!(embeddings.len(), n * dim, "embeddings must be labels × dim");
    let rows: Vec<&[f32]> = embeddings.chunks_exact(dim.max(1)).collect();
    let norms: Vec<f64> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mut class_size = std::collections::HashMap::<usize, usize>::new();
    for &l in labels {
        *class_size.entry(l).or_default() += 1;
    }
    let (mut p1, mut rp, mut map, mut queries) = (0.0, 0.0, 0.0, 0usize);
    let mut order: Vec<(f64, usize)> = Vec::with_capacity(n);
    for q in 0..n {
        let r = class_size[&labels[q]] - 1;
        if r == 0 {
            continue;
        }
        order.clear();
        for j in (0..n).filter(|&j| j != q) {
            let dot: f64 = rows[q]
                .iter()
                .zip(rows[j])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let d = match distance {
                Distance::Cosine => {
                    let denom = norms[q] * norms[j];
                    if denom > 0.0 { 1.0 - dot / denom } else { 1.0 }
                }
                _ => norms[q] * norms[q] + norms[j] * norms[j] - 2.0 * dot,
            };
            order.push((d, j));
        }
        order.select_nth_unstable_by(r - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        order[..r].sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut hits, mut ap) = (0usize, 0.0);
        for (i, &(_, j)) in order[..r].iter().enumerate() {
            if labels[j] == labels[q] {
                hits += 1;
                ap += hits as f64 / (i + 1) as f64;
            }
        }
        p1 += f64::from(u8::from(labels[order[0].1] == labels[q]));
        rp += hits as f64 / r as f64;
        map += ap / r as f64;
        queries += 1;
    }
    let mean = |x: f64| {
        if queries == 0 {
            0.0
        } else {
            x / queries as f64
        }
    };
    Retrieval {
        precision_at_1: mean(p1),
        r_precision: mean(rp),
        map_at_r: mean(map),
        queries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
