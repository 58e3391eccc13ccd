//! Clustering quality of embeddings, as pytorch-metric-learning's `AccuracyCalculator` measures
//! it (keys `NMI`, `AMI`): k-means on the embeddings with k = the number of classes, then the
//! normalised and the adjusted mutual information between the classes and the clusters,
//! scikit-learn's `normalized_mutual_info_score` and `adjusted_mutual_info_score` (arithmetic
//! mean of the entropies, the default of both).
//!
//! k-means: k-means++ seeding (the greedy variant of scikit-learn: `2 + ⌊ln k⌋` candidates per
//! centre, the one lowering the potential most kept), Lloyd iterations until no assignment
//! changes (at most [`MAX_ITERATIONS`]), [`RESTARTS`] seeded restarts keeping the lowest inertia.
//! A cluster left empty takes the point farthest from its centre. Everything is a pure function of
//! the seed. PML's default is faiss's k-means (random seeding, 25 iterations, one run), whose
//! result depends on faiss's build; scikit-learn's `KMeans(n_init=10)` is the reference here
//! (`tests/applications_golden.rs`).

use rayon::prelude::*;
use serde::Serialize;

use crate::rng::SplitMix64;
use crate::rows::Rows;

/// Lloyd iterations at most per restart.
pub const MAX_ITERATIONS: usize = 100;
/// Seeded k-means restarts; the lowest inertia wins.
pub const RESTARTS: usize = 3;

/// A k-means clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// The cluster of every row, `0..k`.
    pub assignment: Vec<usize>,
    /// Sum of squared distances of the rows to their centres.
    pub inertia: f64,
}

fn sq(a: &[f64], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(c, &x)| {
            let d = c - f64::from(x);
            d * d
        })
        .sum()
}

/// Nearest centre of every row and its squared distance.
fn assign(x: &[f32], dim: usize, centres: &[f64]) -> Vec<(usize, f64)> {
    x.par_chunks(dim)
        .map(|row| {
            centres
                .chunks(dim)
                .enumerate()
                .map(|(c, centre)| (c, sq(centre, row)))
                .fold(
                    (0, f64::INFINITY),
                    |best, (c, d)| {
                        if d < best.1 { (c, d) } else { best }
                    },
                )
        })
        .collect()
}

/// Draws an index with probability proportional to `weights` (uniform when they are all 0).
fn draw(weights: &[f64], total: f64, rng: &mut SplitMix64) -> usize {
    if total <= 0.0 {
        return rng.below(weights.len());
    }
    let mut target = rng.unit() * total;
    for (i, &w) in weights.iter().enumerate() {
        if target < w {
            return i;
        }
        target -= w;
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// k-means++ seeding (greedy, as scikit-learn's `_kmeans_plusplus`).
fn seed_centres(x: &[f32], dim: usize, k: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let n = x.len() / dim;
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let mut centres: Vec<f64> = row(rng.below(n)).iter().map(|&v| f64::from(v)).collect();
    let mut closest: Vec<f64> = x.par_chunks(dim).map(|r| sq(&centres, r)).collect();
    let trials = 2 + (k as f64).ln().floor() as usize;
    for _ in 1..k {
        let total: f64 = closest.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let candidate = draw(&closest, total, rng);
            let c: Vec<f64> = row(candidate).iter().map(|&v| f64::from(v)).collect();
            let lowered: Vec<f64> = x
                .par_chunks(dim)
                .zip(&closest)
                .map(|(r, &d)| d.min(sq(&c, r)))
                .collect();
            let potential: f64 = lowered.iter().sum();
            if best.as_ref().is_none_or(|b| potential < b.0) {
                best = Some((potential, candidate, lowered));
            }
        }
        let (_, chosen, lowered) = best.expect("at least two trials");
        centres.extend(row(chosen).iter().map(|&v| f64::from(v)));
        closest = lowered;
    }
    centres
}

fn lloyd(x: &[f32], dim: usize, k: usize, mut centres: Vec<f64>) -> KMeans {
    let n = x.len() / dim;
    let mut previous: Option<Vec<usize>> = None;
    let mut nearest = assign(x, dim, &centres);
    for _ in 0..MAX_ITERATIONS {
        let assignment: Vec<usize> = nearest.iter().map(|a| a.0).collect();
        if previous.as_ref() == Some(&assignment) {
            break;
        }
        let mut sums = vec![0.0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &c) in assignment.iter().enumerate() {
            counts[c] += 1;
            for (s, &v) in sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&x[i * dim..(i + 1) * dim])
            {
                *s += f64::from(v);
            }
        }
        // An empty cluster takes the point farthest from its centre (not already taken).
        let mut taken = vec![false; n];
        for c in 0..k {
            if counts[c] > 0 {
                for s in &mut sums[c * dim..(c + 1) * dim] {
                    *s /= counts[c] as f64;
                }
                continue;
            }
            let far = (0..n)
                .filter(|&i| !taken[i])
                .max_by(|&a, &b| nearest[a].1.total_cmp(&nearest[b].1).then(b.cmp(&a)))
                .expect("k <= n");
            taken[far] = true;
            for (s, &v) in sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&x[far * dim..(far + 1) * dim])
            {
                *s = f64::from(v);
            }
        }
        centres = sums;
        previous = Some(assignment);
        nearest = assign(x, dim, &centres);
    }
    KMeans {
        assignment: nearest.iter().map(|a| a.0).collect(),
        inertia: nearest.iter().map(|a| a.1).sum(),
    }
}

/// k-means of the rows of `x` into `k` clusters (`k` is clamped to `1..=n`), deterministic
/// for `seed`.
pub fn kmeans(x: Rows<'_>, k: usize, seed: u64) -> KMeans {
    let (n, dim) = (x.len(), x.dim());
    let x = x.values();
    if n == 0 {
        return KMeans {
            assignment: Vec::new(),
            inertia: 0.0,
        };
    }
    let k = k.clamp(1, n);
    let mut rng = SplitMix64::new(seed);
    (0..RESTARTS)
        .map(|_| {
            let centres = seed_centres(x, dim, k, &mut rng);
            lloyd(x, dim, k, centres)
        })
        .reduce(|a, b| if b.inertia < a.inertia { b } else { a })
        .expect("at least one restart")
}

/// Renumbers labels to `0..m` (by first appearance) and returns them with `m`.
fn dense(labels: &[usize]) -> (Vec<usize>, usize) {
    let mut ids = std::collections::HashMap::new();
    let out = labels
        .iter()
        .map(|&l| {
            let n = ids.len();
            *ids.entry(l).or_insert(n)
        })
        .collect();
    (out, ids.len())
}

/// Class sizes, cluster sizes and the non-zero cells of the contingency table.
struct Contingency {
    n: usize,
    a: Vec<usize>,
    b: Vec<usize>,
    cells: Vec<(usize, usize, usize)>,
}

fn contingency(truth: &[usize], pred: &[usize]) -> Contingency {
    assert_eq!(truth.len(), pred.len(), "one cluster per label");
    let (t, rows) = dense(truth);
    let (p, cols) = dense(pred);
    let mut table = std::collections::HashMap::<(usize, usize), usize>::new();
    let (mut a, mut b) = (vec![0; rows], vec![0; cols]);
    for (&i, &j) in t.iter().zip(&p) {
        *table.entry((i, j)).or_default() += 1;
        a[i] += 1;
        b[j] += 1;
    }
    let mut cells: Vec<(usize, usize, usize)> =
        table.into_iter().map(|((i, j), c)| (i, j, c)).collect();
    cells.sort_unstable();
    Contingency {
        n: truth.len(),
        a,
        b,
        cells,
    }
}

fn entropy(sizes: &[usize], n: usize) -> f64 {
    let n = n as f64;
    -sizes
        .iter()
        .filter(|&&s| s > 0)
        .map(|&s| {
            let p = s as f64 / n;
            p * (s as f64).ln() - p * n.ln()
        })
        .sum::<f64>()
}

/// Mutual information (nats), as scikit-learn's `mutual_info_score` computes it.
fn mutual_information(c: &Contingency) -> f64 {
    // One class or one cluster: exactly 0, as scikit-learn returns it.
    if c.a.len() == 1 || c.b.len() == 1 {
        return 0.0;
    }
    let n = c.n as f64;
    let (sa, sb) = (
        c.a.iter().sum::<usize>() as f64,
        c.b.iter().sum::<usize>() as f64,
    );
    let mi: f64 = c
        .cells
        .iter()
        .map(|&(i, j, nij)| {
            let nij = nij as f64;
            let p = nij / n;
            let outer = c.a[i] as f64 * c.b[j] as f64;
            let term = p * (nij.ln() - n.ln()) + p * (-outer.ln() + sa.ln() + sb.ln());
            if term.abs() < f64::EPSILON { 0.0 } else { term }
        })
        .sum();
    mi.max(0.0)
}

/// Expected mutual information of two labellings with these sizes under the permutation model
/// (Vinh, Epps and Bailey 2010), as scikit-learn's `expected_mutual_information`.
fn expected_mutual_information(c: &Contingency) -> f64 {
    if c.a.len() == 1 || c.b.len() == 1 {
        return 0.0;
    }
    let n = c.n;
    // ln(m!) for m = 0..=n, the integer values of gammaln(m + 1).
    let mut ln_fact = vec![0.0f64; n + 2];
    for m in 1..=n + 1 {
        ln_fact[m] = ln_fact[m - 1] + (m as f64).ln();
    }
    let nf = n as f64;
    let mut emi = 0.0;
    for &ai in &c.a {
        for &bj in &c.b {
            let start = (ai + bj).saturating_sub(n).max(1);
            let end = ai.min(bj);
            let fixed = ln_fact[ai] + ln_fact[bj] + ln_fact[n - ai] + ln_fact[n - bj] - ln_fact[n];
            for nij in start..=end {
                let term1 = nij as f64 / nf;
                let term2 = (nf.ln() + (nij as f64).ln()) - (ai as f64).ln() - (bj as f64).ln();
                let gln = fixed
                    - ln_fact[nij]
                    - ln_fact[ai - nij]
                    - ln_fact[bj - nij]
                    - ln_fact[n + nij - ai - bj];
                emi += term1 * term2 * gln.exp();
            }
        }
    }
    emi
}

fn single_partition(c: &Contingency) -> bool {
    (c.a.len() == 1 && c.b.len() == 1) || (c.a.is_empty() && c.b.is_empty())
}

/// Normalised mutual information of two labellings (scikit-learn's
/// `normalized_mutual_info_score`, arithmetic mean): 1 for the same partition, 0 for
/// independent ones; 1 when both put everything in one group.
///
/// # Panics
/// If the labellings differ in length.
pub fn nmi(truth: &[usize], pred: &[usize]) -> f64 {
    let c = contingency(truth, pred);
    if single_partition(&c) {
        return 1.0;
    }
    let mi = mutual_information(&c);
    if mi == 0.0 {
        return 0.0;
    }
    let normaliser = (entropy(&c.a, c.n) + entropy(&c.b, c.n)) / 2.0;
    mi / normaliser
}

/// Adjusted mutual information (scikit-learn's `adjusted_mutual_info_score`, arithmetic mean):
/// mutual information corrected for chance, 0 in expectation for random labellings, 1 for the
/// same partition.
///
/// # Panics
/// If the labellings differ in length.
pub fn ami(truth: &[usize], pred: &[usize]) -> f64 {
    let c = contingency(truth, pred);
    if single_partition(&c) {
        return 1.0;
    }
    let mi = mutual_information(&c);
    let emi = expected_mutual_information(&c);
    let normaliser = (entropy(&c.a, c.n) + entropy(&c.b, c.n)) / 2.0;
    let mut denominator = normaliser - emi;
    denominator = if denominator < 0.0 {
        denominator.min(-f64::EPSILON)
    } else {
        denominator.max(f64::EPSILON)
    };
    (mi - emi) / denominator
}

/// NMI and AMI of k-means on labelled embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Clustering {
    /// Normalised mutual information (PML key `NMI`).
    #[serde(rename = "NMI")]
    pub nmi: f64,
    /// Adjusted mutual information (PML key `AMI`).
    #[serde(rename = "AMI")]
    pub ami: f64,
    /// Clusters (the number of classes).
    pub clusters: usize,
    /// The k-means inertia.
    pub inertia: f64,
}

/// k-means of the embeddings with k = the number of distinct labels, and the NMI and AMI of the
/// labels against the clusters.
///
/// # Panics
/// If there is not one label per row.
pub fn clustering(embeddings: Rows<'_>, labels: &[usize], seed: u64) -> Clustering {
    assert_eq!(embeddings.len(), labels.len(), "one label per row");
    let (_, classes) = dense(labels);
    let k = kmeans(embeddings, classes, seed);
    Clustering {
        nmi: nmi(labels, &k.assignment),
        ami: ami(labels, &k.assignment),
        clusters: classes,
        inertia: k.inertia,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_renamed_partitions_score_one() {
        let a = [0, 0, 1, 1, 2, 2, 2];
        let b = [5, 5, 3, 3, 9, 9, 9];
        assert!((nmi(&a, &b) - 1.0).abs() < 1e-12);
        assert!((ami(&a, &b) - 1.0).abs() < 1e-12);
        assert_eq!(nmi(&[1, 1, 1], &[4, 4, 4]), 1.0);
    }

    /// Hand-worked: truth [0 0 1 1], clusters [0 1 0 1] are independent: MI = 0.
    #[test]
    fn independent_partitions_score_zero() {
        assert_eq!(nmi(&[0, 0, 1, 1], &[0, 1, 0, 1]), 0.0);
        // AMI of independent labellings is below 0 here (MI 0 < its expectation).
        assert!(ami(&[0, 0, 1, 1], &[0, 1, 0, 1]) < 0.0);
    }

    /// Hand-worked: truth [0 0 0 1], clusters [0 0 1 1]. Cells (0,0)=2, (0,1)=1, (1,1)=1.
    /// MI = ½ln(2·4/(3·2)) + ¼ln(1·4/(3·2)) + ¼ln(1·4/(1·2));
    /// H(truth) = −¾ln¾ − ¼ln¼, H(clusters) = ln 2.
    #[test]
    fn nmi_matches_a_hand_computation() {
        let mi = 0.5 * (8.0f64 / 6.0).ln() + 0.25 * (4.0f64 / 6.0).ln() + 0.25 * 2.0f64.ln();
        let ht = -(0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        let want = mi / ((ht + 2.0f64.ln()) / 2.0);
        assert!((nmi(&[0, 0, 0, 1], &[0, 0, 1, 1]) - want).abs() < 1e-12);
    }

    #[test]
    fn kmeans_separates_blobs_and_is_deterministic() {
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for c in 0..4 {
            for i in 0..25 {
                let j = (i * 7 % 5) as f32 * 0.01;
                x.extend([c as f32 * 10.0 + j, (c % 2) as f32 * 10.0 - j]);
                labels.push(c);
            }
        }
        let a = kmeans(Rows::new(&x, 2), 4, 3);
        assert_eq!(a, kmeans(Rows::new(&x, 2), 4, 3));
        assert!((nmi(&labels, &a.assignment) - 1.0).abs() < 1e-12);
        let c = clustering(Rows::new(&x, 2), &labels, 0);
        assert_eq!(c.clusters, 4);
        assert!((c.ami - 1.0).abs() < 1e-12);
    }

    #[test]
    fn more_clusters_than_distinct_points_still_ends() {
        // 6 rows, only 2 distinct values, 3 clusters.
        let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let k = kmeans(Rows::new(&x, 1), 3, 0);
        assert!(k.assignment.iter().all(|&c| c < 3), "{:?}", k.assignment);
        assert_eq!(k.inertia, 0.0);
        assert_eq!(kmeans(Rows::new(&x, 1), 99, 0).assignment.len(), 6);
    }
}
