//! The loss and the miners against a brute-force oracle (plain loops over `(a, p, n)` written
//! from the crate docs' definitions, `tests/common`), over many random seeds and every awkward batch:
//! exact ties, singleton classes, one-class batches, all-distinct labels, duplicated embeddings
//! and label values such as -300 or i32::MIN.

mod common;

use burn::prelude::*;
use common::*;
use triplet_loss::{
    Distance, Mining, PML_MINER_MARGIN, Reduction, References, TripletLossConfig, Triplets, mine,
    mine_refs,
};

#[test]
fn miners_match_brute_force_including_ties() {
    let device = Device::flex();
    let mut checked = 0;
    for kind in KINDS {
        for seed in 0..40 {
            let batch = batch(kind, seed);
            for distance in DISTANCES {
                let d = device_distances(distance, &batch, &device);
                for mining in MININGS {
                    let x = batch.embeddings(&device);
                    let got = mine(
                        distance.pairwise(x.clone(), x),
                        batch.labels(&device),
                        mining,
                    );
                    let got = tuples(got);
                    let want = common::mine(mining, &d, &batch.y);
                    assert_eq!(got, want, "{kind:?} seed {seed} {distance:?} {mining:?}");
                    checked += want.len();
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} triplets checked");
}

#[test]
fn loss_and_stats_match_brute_force() {
    let device = Device::flex();
    for kind in KINDS {
        for seed in 0..10 {
            let batch = batch(kind, 1000 + seed);
            for setup in setups() {
                let d = device_distances(setup.distance, &batch, &device);
                let oracle = loss(setup, &batch.x, &batch.y, &d);
                let out = config(setup)
                    .init()
                    .forward_with_stats(batch.embeddings(&device), batch.labels(&device));
                let ctx = format!("{kind:?} seed {seed} {setup:?}");
                // Batch-all reads distances off the B×B matrix, whose Euclidean entries for
                // duplicated rows are sqrt(rounding noise) ~ 3e-4 rather than 0 (as torch.cdist).
                let abs = if kind == Kind::Duplicates && setup.mining == Mining::All {
                    2e-3
                } else {
                    2e-5
                };
                assert_matches_oracle(&out, &oracle, setup, abs, &ctx);
            }
        }
    }
}

#[test]
fn pairwise_distances_match_direct_computation() {
    let device = Device::flex();
    for seed in 0..20 {
        let batch = batch(Kind::Pk, seed);
        for distance in DISTANCES {
            let got = device_distances(distance, &batch, &device);
            let want = distance_matrix(distance, &batch.x);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                for (j, (g, w)) in g.iter().zip(w).enumerate() {
                    // sqrt amplifies rounding on the diagonal; off it distances are O(1).
                    let tol = if i == j { 2e-3 } else { 2e-5 };
                    assert!(
                        close(*g, *w, 1e-5, tol),
                        "{distance:?} [{i},{j}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn worked_example_from_the_contract() {
    // The crate docs' worked example: x = [[0,0],[0,2],[0,3]], y = [0,0,1], margin 1, semi-hard, mean → 1.0 (TF Addons'
    // tfa.losses.triplet_semihard_loss gives the same); squared Euclidean → 2.0.
    let device = Device::flex();
    let x = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 2.0], [0.0, 3.0]], &device);
    let y = Tensor::<1, Int>::from_data([0, 0, 1], &device);
    let cfg = TripletLossConfig::new()
        .with_margin(1.0)
        .with_mining(Mining::SemiHard);
    let out = cfg.init().forward_with_stats(x.clone(), y.clone());
    assert_eq!(to_vec(out.loss), [1.0]);
    assert_eq!(
        (
            out.stats.triplets,
            out.stats.active,
            out.stats.anchors_with_triplet
        ),
        (2, 1, 2)
    );
    assert_eq!(out.stats.mean_d_ap, 2.0);
    assert_eq!(out.stats.mean_d_an, 2.0); // negatives at 3 (from 0) and 1 (from 1)
    let squared = cfg
        .with_distance(Distance::SquaredEuclidean)
        .init()
        .forward(x, y);
    assert_eq!(to_vec(squared), [2.0]);
}

#[test]
fn forward_triplets_sums_the_given_triplets() {
    let device = Device::flex();
    let x = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 2.0], [0.0, 3.0], [1.0, 0.0]], &device);
    let idx = |v: [i64; 3]| Tensor::<1, Int>::from_data(v, &device);
    let given = || Triplets::new(idx([0, 1, 0]), idx([1, 0, 1]), idx([2, 2, 3]));
    // (0,1,2): 2 − 3 + 1 = 0; (1,0,2): 2 − 1 + 1 = 2; (0,1,3): 2 − 1 + 1 = 2.
    let loss = TripletLossConfig::new()
        .with_margin(1.0)
        .with_reduction(Reduction::Sum)
        .init()
        .forward_triplets(x.clone(), given());
    assert_eq!(to_vec(loss), [4.0]);
    let mean_active = TripletLossConfig::new()
        .with_margin(1.0)
        .with_reduction(Reduction::MeanActive)
        .init();
    assert_eq!(
        to_vec(mean_active.forward_triplets(x.clone(), given())),
        [2.0]
    );
    // The same with statistics: 3 triplets, 2 active, anchors 0 and 1 (in order: 0, 1, 0
    // counts anchor runs), mean d_ap 2, mean d_an (3 + 1 + 1) / 3.
    let out = mean_active.forward_triplets_with_stats(x, given());
    assert_eq!(to_vec(out.loss), [2.0]);
    assert_eq!((out.stats.triplets, out.stats.active), (3, 2));
    assert_eq!(out.stats.anchors_with_triplet, 3);
    assert!((out.stats.mean_d_ap - 2.0).abs() < 1e-6);
    assert!((out.stats.mean_d_an - 5.0 / 3.0).abs() < 1e-6);
}

/// What `mine` returns is what `forward_triplets` takes: mining, then the loss of those
/// triplets, equals the mining loss itself.
#[test]
fn mined_triplets_feed_forward_triplets() {
    let device = Device::flex();
    for seed in 0..5 {
        let b = batch(Kind::Pk, seed);
        let (x, y) = (b.embeddings(&device), b.labels(&device));
        let loss = TripletLossConfig::new()
            .with_mining(Mining::SemiHard)
            .init();
        let dist = Distance::Euclidean.pairwise(x.clone(), x.clone());
        let triplets = mine(dist, y.clone(), Mining::SemiHard);
        let given = loss.forward_triplets_with_stats(x.clone(), triplets);
        let mined = loss.forward_with_stats(x, y);
        let (a, b) = (to_vec(given.loss)[0], to_vec(mined.loss)[0]);
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "seed {seed}: {a} vs {b}"
        );
        assert_eq!(given.stats.triplets, mined.stats.triplets);
        assert_eq!(given.stats.active, mined.stats.active);
    }
}

#[test]
#[should_panic(expected = "triplet 1 has negative index 7, outside the batch of 3 embeddings")]
fn out_of_range_triplet_indices_are_named() {
    let device = Device::flex();
    let x = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 2.0], [0.0, 3.0]], &device);
    let idx = |v: [i64; 2]| Tensor::<1, Int>::from_data(v, &device);
    let _ = TripletLossConfig::new()
        .init()
        .forward_triplets(x, Triplets::new(idx([0, 1]), idx([1, 0]), idx([2, 7])));
}

/// Triplets of queries against references by the definitions, O(B·M²), lowest index on ties:
/// `d` is `[B][M]`, and every reference with the query's label is a positive.
fn mine_against(
    mining: Mining,
    d: &[Vec<f64>],
    y: &[i64],
    ry: &[i64],
    margin: f64,
) -> Vec<(usize, usize, usize)> {
    let m = ry.len();
    let mut out = Vec::new();
    for a in 0..y.len() {
        let pos: Vec<usize> = (0..m).filter(|&p| ry[p] == y[a]).collect();
        let neg: Vec<usize> = (0..m).filter(|&n| ry[n] != y[a]).collect();
        if pos.is_empty() || neg.is_empty() {
            continue;
        }
        let first = |v: &[usize], better: &dyn Fn(usize, usize) -> bool| {
            v.iter()
                .copied()
                .fold(v[0], |b, i| if better(i, b) { i } else { b })
        };
        match mining {
            Mining::All => {
                for &p in &pos {
                    out.extend(neg.iter().map(|&n| (a, p, n)));
                }
            }
            Mining::Hard => out.push((
                a,
                first(&pos, &|i, b| d[a][i] > d[a][b]),
                first(&neg, &|i, b| d[a][i] < d[a][b]),
            )),
            Mining::SemiHard => {
                for &p in &pos {
                    let beyond: Vec<usize> =
                        neg.iter().copied().filter(|&n| d[a][n] > d[a][p]).collect();
                    let n = if beyond.is_empty() {
                        first(&neg, &|i, b| d[a][i] > d[a][b])
                    } else {
                        first(&beyond, &|i, b| d[a][i] < d[a][b])
                    };
                    out.push((a, p, n));
                }
            }
            _ => {
                for &p in &pos {
                    for &n in &neg {
                        let gap = d[a][n] - d[a][p];
                        if gap > 0.0 && gap <= margin {
                            out.push((a, p, n));
                        }
                    }
                }
            }
        }
    }
    out
}

/// [`mine_refs`] and [`TripletLoss::forward_refs`](triplet_loss::TripletLoss::forward_refs)
/// against the loops: the odd rows of every awkward batch as queries against the whole batch
/// as references (so each query's copy is one of its positives, at distance 0), every rule,
/// with and without the swap (whose `d(p, n)` is between two references).
#[test]
fn mining_against_references_matches_brute_force() {
    let device = Device::flex();
    let mut checked = 0;
    for kind in KINDS {
        for seed in 0..15 {
            let batch = batch(kind, 500 + seed);
            let rows: Vec<usize> = (0..batch.len()).filter(|i| i % 2 == 1).collect();
            let queries = Batch {
                x: rows.iter().map(|&i| batch.x[i].clone()).collect(),
                y: rows.iter().map(|&i| batch.y[i]).collect(),
            };
            for distance in DISTANCES {
                let (q, r) = (queries.embeddings(&device), batch.embeddings(&device));
                let d = to_matrix(distance.pairwise(q.clone(), r.clone()));
                for mining in [
                    Mining::All,
                    Mining::Hard,
                    Mining::SemiHard,
                    Mining::PmlSemiHard,
                ] {
                    let ctx = format!("{kind:?} seed {seed} {distance:?} {mining:?}");
                    let got = mine_refs(
                        d_tensor(&d, &device),
                        queries.labels(&device),
                        batch.labels(&device),
                        mining,
                    );
                    let got = tuples(got);
                    let want = mine_against(mining, &d, &queries.y, &batch.y, PML_MINER_MARGIN);
                    assert_eq!(got, want, "{ctx}");
                    checked += want.len();
                    // The loss of those triplets, summed, with the loss's own margin.
                    let margin = 0.5;
                    let mined = mine_against(mining, &d, &queries.y, &batch.y, margin);
                    for swap in [false, true] {
                        let loss = TripletLossConfig::new()
                            .with_distance(distance)
                            .with_mining(mining)
                            .with_reduction(Reduction::Sum)
                            .with_margin(margin)
                            .with_swap(swap)
                            .init();
                        let out = loss.forward_refs_with_stats(
                            q.clone(),
                            queries.labels(&device),
                            References::new(r.clone(), batch.labels(&device)),
                        );
                        let f = |i: &[f32], j: &[f32]| common::distance(distance, i, j);
                        let want: f64 = mined
                            .iter()
                            .map(|&(a, p, n)| {
                                let (xa, xp, xn) = (&queries.x[a], &batch.x[p], &batch.x[n]);
                                let mut d_an = f(xa, xn);
                                if swap {
                                    d_an = d_an.min(f(xp, xn));
                                }
                                (f(xa, xp) - d_an + margin).max(0.0)
                            })
                            .sum();
                        let got = to_vec(out.loss)[0] as f64;
                        assert!(
                            close(got, want, 1e-4, 1e-4),
                            "{ctx} swap={swap}: {got} vs {want}"
                        );
                        assert_eq!(
                            out.stats.triplets as usize,
                            mined.len(),
                            "{ctx} swap={swap}"
                        );
                    }
                }
            }
        }
    }
    assert!(checked > 5_000, "only {checked} triplets checked");
}

fn d_tensor(d: &[Vec<f64>], device: &Device) -> Tensor<2> {
    let flat: Vec<f32> = d.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(flat, [d.len(), d[0].len()]), device)
}
