//! Shared test support: a deterministic RNG, batch generators covering the awkward cases, and a
//! brute-force oracle of the loss written from the crate docs' definitions (`triplet_loss`, "Definitions") with plain loops in `f64`.
#![allow(dead_code)]
// The oracle spells out the definitions with indices, as the formulas do.
#![allow(clippy::needless_range_loop)]

use burn::prelude::*;
use triplet_loss::{Distance, Mining, Reduction};

/// SplitMix64: small, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// A batch on the host: `f32` embeddings (what the device sees) and labels.
#[derive(Debug, Clone)]
pub struct Batch {
    pub x: Vec<Vec<f32>>,
    pub y: Vec<i64>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.x.len()
    }
    pub fn dim(&self) -> usize {
        self.x[0].len()
    }
    pub fn embeddings(&self, device: &Device) -> Tensor<2> {
        let flat: Vec<f32> = self.x.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [self.len(), self.dim()]), device)
    }
    pub fn labels(&self, device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(self.y.clone(), [self.len()]), device)
    }
}

/// Label values that are not 0..C: negative, sparse, the extremes of `i32` (flex's default
/// integer type; a device configured for `i64` takes any `i64`).
const LABEL_VALUES: [i64; 10] = [
    -7,
    0,
    i32::MAX as i64,
    1000,
    -1,
    42,
    i32::MIN as i64,
    5,
    -300,
    17,
];

/// The batch kinds the oracle tests sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// P classes × K samples, shuffled, continuous embeddings.
    Pk,
    /// Classes of random sizes including singletons.
    Singletons,
    /// One class only: no negatives anywhere.
    OneClass,
    /// Every label distinct: no positives anywhere.
    AllDistinct,
    /// P×K with duplicated rows, within and across classes.
    Duplicates,
    /// Small-integer coordinates: many exactly tied distances.
    Grid,
}

pub const KINDS: [Kind; 6] = [
    Kind::Pk,
    Kind::Singletons,
    Kind::OneClass,
    Kind::AllDistinct,
    Kind::Duplicates,
    Kind::Grid,
];

pub fn batch(kind: Kind, seed: u64) -> Batch {
    let mut rng = Rng::new(seed * 31 + kind as u64);
    let dim = 2 + rng.below(5);
    let mut values = LABEL_VALUES;
    rng.shuffle(&mut values);
    let mut y: Vec<i64> = match kind {
        Kind::Pk | Kind::Duplicates | Kind::Grid => {
            let (p, k) = (2 + rng.below(4), 2 + rng.below(3));
            (0..p * k).map(|i| values[i / k]).collect()
        }
        Kind::Singletons => {
            let mut y = Vec::new();
            for &v in values.iter().take(3 + rng.below(5)) {
                y.extend(std::iter::repeat_n(v, 1 + rng.below(3)));
            }
            y
        }
        Kind::OneClass => vec![values[0]; 3 + rng.below(6)],
        Kind::AllDistinct => values[..3 + rng.below(6)].to_vec(),
    };
    rng.shuffle(&mut y);
    let mut x: Vec<Vec<f32>> = (0..y.len())
        .map(|_| {
            (0..dim)
                .map(|_| match kind {
                    Kind::Grid => rng.below(5) as f32 - 2.0,
                    _ => rng.normal() as f32,
                })
                .collect()
        })
        .collect();
    if kind == Kind::Duplicates {
        for _ in 0..1 + y.len() / 3 {
            let (from, to) = (rng.below(y.len()), rng.below(y.len()));
            x[to] = x[from].clone();
        }
    }
    Batch { x, y }
}

/// Plain-loop distance in `f64`.
pub fn distance(kind: Distance, a: &[f32], b: &[f32]) -> f64 {
    let (a, b): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|&v| v as f64).collect(),
        b.iter().map(|&v| v as f64).collect(),
    );
    match kind {
        Distance::Euclidean => sq(&a, &b).sqrt(),
        Distance::SquaredEuclidean => sq(&a, &b),
        Distance::Cosine => {
            let norm = |v: &[f64]| {
                let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                if n * n <= 1e-12 { 1.0 } else { n }
            };
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            1.0 - dot / (norm(&a) * norm(&b))
        }
        _ => unreachable!(),
    }
}

fn sq(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

pub fn distance_matrix(kind: Distance, x: &[Vec<f32>]) -> Vec<Vec<f64>> {
    x.iter()
        .map(|a| x.iter().map(|b| distance(kind, a, b)).collect())
        .collect()
}

/// Triplets by the crate docs' definitions, O(B³), lowest index on ties.
pub fn mine(mining: Mining, d: &[Vec<f64>], y: &[i64]) -> Vec<(usize, usize, usize)> {
    let b = y.len();
    let pos = |a: usize| (0..b).filter(move |&p| p != a && y[p] == y[a]);
    let neg = |a: usize| (0..b).filter(move |&n| y[n] != y[a]);
    let mut out = Vec::new();
    for a in 0..b {
        match mining {
            Mining::All => {
                for p in pos(a) {
                    for n in neg(a) {
                        out.push((a, p, n));
                    }
                }
            }
            Mining::Hard => {
                let mut hp: Option<usize> = None;
                for p in pos(a) {
                    if hp.is_none_or(|q| d[a][p] > d[a][q]) {
                        hp = Some(p);
                    }
                }
                let mut hn: Option<usize> = None;
                for n in neg(a) {
                    if hn.is_none_or(|q| d[a][n] < d[a][q]) {
                        hn = Some(n);
                    }
                }
                if let (Some(p), Some(n)) = (hp, hn) {
                    out.push((a, p, n));
                }
            }
            Mining::SemiHard => {
                if neg(a).next().is_none() {
                    continue;
                }
                for p in pos(a) {
                    let mut semi: Option<usize> = None;
                    let mut far: Option<usize> = None;
                    for n in neg(a) {
                        if d[a][n] > d[a][p] && semi.is_none_or(|q| d[a][n] < d[a][q]) {
                            semi = Some(n);
                        }
                        if far.is_none_or(|q| d[a][n] > d[a][q]) {
                            far = Some(n);
                        }
                    }
                    out.push((a, p, semi.or(far).unwrap()));
                }
            }
            _ => unreachable!(),
        }
    }
    out
}

/// The oracle's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub distance: Distance,
    pub mining: Mining,
    pub reduction: Reduction,
    pub margin: f64,
    pub soft: bool,
}

/// What the oracle found for one batch.
#[derive(Debug, Clone, Copy)]
pub struct OracleLoss {
    /// Sum of the per-triplet losses.
    pub sum: f64,
    pub triplets: usize,
    /// Triplets with loss > 0 in `f64`.
    pub active: usize,
    /// Triplets within 1e-6 of the hinge's kink: whether they count as active depends on
    /// rounding (exactly tied grid distances, say), so `active ..= active + near_kink` is right.
    pub near_kink: usize,
    /// Mean mined `d(a,p)` and `d(a,n)` on the mining matrix (0 without triplets).
    pub mean_d_ap: f64,
    pub mean_d_an: f64,
    /// Anchors with at least one triplet.
    pub anchors: usize,
}

impl OracleLoss {
    /// The reduced loss, given how many triplets the implementation counted as active.
    pub fn value(&self, reduction: Reduction, active: usize) -> f64 {
        match reduction {
            Reduction::Mean if self.triplets > 0 => self.sum / self.triplets as f64,
            Reduction::MeanActive if active > 0 => self.sum / active as f64,
            Reduction::Sum => self.sum,
            _ => 0.0,
        }
    }
}

/// The oracle's loss. Triplets are mined on `d_mine` (pass the device's own distance matrix so
/// that exactly tied or rounding-level distances decide alike); losses use distances
/// recomputed in `f64`.
pub fn loss(setup: Setup, x: &[Vec<f32>], y: &[i64], d_mine: &[Vec<f64>]) -> OracleLoss {
    let triplets = mine(setup.mining, d_mine, y);
    let diffs: Vec<f64> = triplets
        .iter()
        .map(|&(a, p, n)| {
            distance(setup.distance, &x[a], &x[p]) - distance(setup.distance, &x[a], &x[n])
        })
        .collect();
    let losses: Vec<f64> = diffs
        .iter()
        .map(|&diff| {
            if setup.soft {
                diff.max(0.0) + (-diff.abs()).exp().ln_1p()
            } else {
                (diff + setup.margin).max(0.0)
            }
        })
        .collect();
    let near_kink = if setup.soft {
        0
    } else {
        diffs
            .iter()
            .filter(|&&diff| (diff + setup.margin).abs() <= 1e-6)
            .count()
    };
    let mean = |f: &dyn Fn(&(usize, usize, usize)) -> f64| {
        if triplets.is_empty() {
            0.0
        } else {
            triplets.iter().map(f).sum::<f64>() / triplets.len() as f64
        }
    };
    let mut anchors: Vec<usize> = triplets.iter().map(|t| t.0).collect();
    anchors.dedup();
    OracleLoss {
        mean_d_ap: mean(&|&(a, p, _)| d_mine[a][p]),
        mean_d_an: mean(&|&(a, _, n)| d_mine[a][n]),
        anchors: anchors.len(),
        sum: losses.iter().sum(),
        triplets: triplets.len(),
        active: losses
            .iter()
            .filter(|&&l| l > 1e-6 || (setup.soft && l > 0.0))
            .count(),
        near_kink,
    }
}

/// Central finite differences of the oracle loss in `f64`.
pub fn oracle_gradient(setup: Setup, batch: &Batch, d_mine: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let h = 1e-6f64;
    let mut grad = vec![vec![0.0; batch.dim()]; batch.len()];
    // Perturb in f64 by evaluating the oracle on f64 copies (f32 storage would swamp h).
    for i in 0..batch.len() {
        for j in 0..batch.dim() {
            let eval = |delta: f64| {
                let x64: Vec<Vec<f64>> = batch
                    .x
                    .iter()
                    .enumerate()
                    .map(|(r, row)| {
                        row.iter()
                            .enumerate()
                            .map(|(c, &v)| v as f64 + if (r, c) == (i, j) { delta } else { 0.0 })
                            .collect()
                    })
                    .collect();
                loss_f64(setup, &x64, &batch.y, &batch.x, d_mine)
            };
            grad[i][j] = (eval(h) - eval(-h)) / (2.0 * h);
        }
    }
    grad
}

/// The oracle loss on `f64` embeddings, with the triplets mined on the unperturbed batch
/// (finite differences must not cross a mining decision).
fn loss_f64(setup: Setup, x: &[Vec<f64>], y: &[i64], x0: &[Vec<f32>], d_mine: &[Vec<f64>]) -> f64 {
    let triplets = mine(setup.mining, d_mine, y);
    let dist = |a: &[f64], b: &[f64]| -> f64 {
        match setup.distance {
            Distance::Euclidean => sq(a, b).sqrt(),
            Distance::SquaredEuclidean => sq(a, b),
            Distance::Cosine => {
                let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
                1.0 - a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / (n(a) * n(b))
            }
            _ => unreachable!(),
        }
    };
    let unperturbed: Vec<f64> = triplets
        .iter()
        .map(|&(a, p, n)| {
            let x0 = |i: usize| x0[i].iter().map(|&v| v as f64).collect::<Vec<_>>();
            dist(&x0(a), &x0(p)) - dist(&x0(a), &x0(n))
        })
        .collect();
    let active = unperturbed
        .iter()
        .filter(|&&diff| setup.soft || diff + setup.margin > 0.0)
        .count();
    let sum: f64 = triplets
        .iter()
        .map(|&(a, p, n)| {
            let diff = dist(&x[a], &x[p]) - dist(&x[a], &x[n]);
            if setup.soft {
                diff.max(0.0) + (-diff.abs()).exp().ln_1p()
            } else {
                (diff + setup.margin).max(0.0)
            }
        })
        .sum();
    match setup.reduction {
        Reduction::Mean if !triplets.is_empty() => sum / triplets.len() as f64,
        Reduction::MeanActive if active > 0 => sum / active as f64,
        Reduction::Sum => sum,
        _ => 0.0,
    }
}

pub const DISTANCES: [Distance; 3] = [
    Distance::Euclidean,
    Distance::SquaredEuclidean,
    Distance::Cosine,
];
pub const MININGS: [Mining; 3] = [Mining::All, Mining::Hard, Mining::SemiHard];
pub const REDUCTIONS: [Reduction; 3] = [Reduction::Mean, Reduction::MeanActive, Reduction::Sum];

pub fn to_vec(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

pub fn to_matrix(t: Tensor<2>) -> Vec<Vec<f64>> {
    let [_, cols] = t.dims();
    let flat: Vec<f32> = t.into_data().try_into_vec_as::<f32>().unwrap();
    flat.chunks(cols)
        .map(|c| c.iter().map(|&v| v as f64).collect())
        .collect()
}

/// The distance matrix the loss mines on, read back from `device`.
pub fn device_distances(distance: Distance, batch: &Batch, device: &Device) -> Vec<Vec<f64>> {
    let x = batch.embeddings(device);
    to_matrix(distance.pairwise(x.clone(), x))
}

pub fn config(setup: Setup) -> triplet_loss::TripletLossConfig {
    triplet_loss::TripletLossConfig::new()
        .with_margin(setup.margin)
        .with_distance(setup.distance)
        .with_mining(setup.mining)
        .with_reduction(setup.reduction)
        .with_soft(setup.soft)
}

/// Every configuration the sweeps cover, with margins cycling through a few values.
pub fn setups() -> Vec<Setup> {
    let mut out = Vec::new();
    let margins = [0.2, 0.5, 1.0, 0.05];
    for (i, &distance) in DISTANCES.iter().enumerate() {
        for (j, &mining) in MININGS.iter().enumerate() {
            for (k, &reduction) in REDUCTIONS.iter().enumerate() {
                for soft in [false, true] {
                    let margin = margins[(i + j + k) % margins.len()];
                    out.push(Setup {
                        distance,
                        mining,
                        reduction,
                        margin,
                        soft,
                    });
                }
            }
        }
    }
    out
}

/// The larger of two, NaN when either is: `f64::max` drops a NaN (`m.max(NaN) == m`), so a
/// scale or worst error folded with it would pass a NaN by.
pub fn nan_max(m: f64, v: f64) -> f64 {
    if m.is_nan() || v.is_nan() {
        f64::NAN
    } else {
        m.max(v)
    }
}

pub fn close(got: f64, want: f64, rel: f64, abs: f64) -> bool {
    (got - want).abs() <= abs + rel * want.abs()
}

/// The loss's output against the oracle's: counts, mean distances, the active count within
/// the oracle's tolerance at the kink, and the reduced value (`abs`: the absolute tolerance,
/// looser where distances come off the `B×B` matrix for duplicated rows).
pub fn assert_matches_oracle(
    out: &triplet_loss::TripletOutput,
    oracle: &OracleLoss,
    setup: Setup,
    abs: f64,
    ctx: &str,
) {
    let got = to_vec(out.loss.clone())[0] as f64;
    assert_eq!(out.stats.triplets, oracle.triplets as u64, "{ctx}");
    assert_eq!(
        out.stats.anchors_with_triplet, oracle.anchors as u64,
        "{ctx}"
    );
    for (name, got, want) in [
        ("mean d_ap", out.stats.mean_d_ap, oracle.mean_d_ap),
        ("mean d_an", out.stats.mean_d_an, oracle.mean_d_an),
    ] {
        assert!(
            close(got, want, 1e-5, 1e-6),
            "{ctx}: {name} {got} vs {want}"
        );
    }
    let active = out.stats.active as usize;
    assert!(
        (oracle.active..=oracle.active + oracle.near_kink).contains(&active),
        "{ctx}: {active} active, oracle {oracle:?}"
    );
    let want = oracle.value(setup.reduction, active);
    assert!(
        close(got, want, 1e-4, abs),
        "{ctx}: got {got}, oracle {want}"
    );
    assert!(got.is_finite(), "{ctx}");
}

/// Mined triplets as `(anchor, positive, negative)` tuples.
pub fn tuples(t: triplet_loss::Triplets) -> Vec<(usize, usize, usize)> {
    let ints = |t: Tensor<1, Int>| -> Vec<usize> {
        t.into_data()
            .try_into_vec_as::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as usize)
            .collect()
    };
    let (a, p, n) = (ints(t.anchor), ints(t.positive), ints(t.negative));
    (0..a.len()).map(|i| (a[i], p[i], n[i])).collect()
}
