//! The loss and the miners against a brute-force oracle (plain loops over `(a, p, n)` written
//! from the crate docs' definitions, `tests/common`), over many random seeds and every awkward batch:
//! exact ties, singleton classes, one-class batches, all-distinct labels, duplicated embeddings
//! and label values such as -300 or i32::MIN.

mod common;

use burn::prelude::*;
use common::*;
use triplet_loss::{Distance, Mining, Reduction, TripletLossConfig, Triplets, mine};

fn ints(t: Tensor<1, Int>) -> Vec<usize> {
    t.into_data()
        .try_into_vec_as::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

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
                    let got: Vec<(usize, usize, usize)> = ints(got.anchor)
                        .into_iter()
                        .zip(ints(got.positive))
                        .zip(ints(got.negative))
                        .map(|((a, p), n)| (a, p, n))
                        .collect();
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
                let got = to_vec(out.loss)[0] as f64;
                let ctx = format!("{kind:?} seed {seed} {setup:?}");
                assert_eq!(out.stats.triplets, oracle.triplets as u64, "{ctx}");
                assert_eq!(
                    out.stats.anchors_with_triplet, oracle.anchors as u64,
                    "{ctx}"
                );
                assert!(
                    close(out.stats.mean_d_ap, oracle.mean_d_ap, 1e-5, 1e-6),
                    "{ctx}: mean d_ap {} vs {}",
                    out.stats.mean_d_ap,
                    oracle.mean_d_ap
                );
                assert!(
                    close(out.stats.mean_d_an, oracle.mean_d_an, 1e-5, 1e-6),
                    "{ctx}: mean d_an {} vs {}",
                    out.stats.mean_d_an,
                    oracle.mean_d_an
                );
                let active = out.stats.active as usize;
                assert!(
                    (oracle.active..=oracle.active + oracle.near_kink).contains(&active),
                    "{ctx}: {active} active, oracle {oracle:?}"
                );
                let want = oracle.value(setup.reduction, active);
                // Batch-all reads distances off the B×B matrix, whose Euclidean entries for
                // duplicated rows are sqrt(rounding noise) ~ 3e-4 rather than 0 (as torch.cdist).
                let abs = if kind == Kind::Duplicates && setup.mining == Mining::All {
                    2e-3
                } else {
                    2e-5
                };
                assert!(
                    close(got, want, 1e-4, abs),
                    "{ctx}: got {got}, oracle {want}"
                );
                assert!(got.is_finite());
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
