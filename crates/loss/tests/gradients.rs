//! Gradients with respect to the embeddings against central finite differences of the
//! brute-force oracle in `f64`, for every distance × mining × reduction, hinge and soft margin;
//! and finiteness where distances are exactly 0 (duplicated images in a P×K batch).

mod common;

use burn::prelude::*;
use common::*;
use triplet_loss::{Distance, Reduction, TripletLossConfig};

fn autodiff_gradient(setup: Setup, batch: &Batch) -> (f32, Vec<Vec<f64>>) {
    let device = Device::flex().autodiff();
    let x = batch.embeddings(&device).require_grad();
    let loss = config(setup)
        .init()
        .forward(x.clone(), batch.labels(&device));
    let value = loss.clone().into_data().try_into_vec_as::<f32>().unwrap()[0];
    let grads = loss.backward();
    let grad = x.grad(&grads).expect("embeddings have a gradient");
    (value, to_matrix(grad))
}

#[test]
fn gradients_match_finite_differences() {
    let plain = Device::flex();
    let mut compared = 0;
    for setup in setups() {
        for (kind, seed) in [(Kind::Pk, 1), (Kind::Pk, 2), (Kind::Singletons, 3)] {
            let batch = batch(kind, 500 + seed);
            let d = device_distances(setup.distance, &batch, &plain);
            let want = oracle_gradient(setup, &batch, &d);
            let (_, got) = autodiff_gradient(setup, &batch);
            let scale = want
                .iter()
                .flatten()
                .fold(0.0f64, |m, v| nan_max(m, v.abs()))
                .max(1e-3);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                for (j, (g, w)) in g.iter().zip(w).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-3 * scale,
                        "{setup:?} {kind:?} seed {seed} grad[{i}][{j}]: autodiff {g}, finite diff {w}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 5_000);
}

#[test]
fn duplicated_embeddings_give_finite_gradients() {
    // Anchor, positive and one negative identical: d(a,p) = d(a,n) = 0 exactly.
    let rows = [
        [0.6f32, 0.8],
        [0.6, 0.8],
        [0.0, 1.0],
        [0.6, 0.8],
        [0.0, 0.0],
        [1.0, 0.0],
    ];
    let labels = [5i64, 5, 5, 9, 9, 9];
    for distance in DISTANCES {
        for mining in MININGS {
            for soft in [false, true] {
                let device = Device::flex().autodiff();
                let x = Tensor::<2>::from_data(rows, &device).require_grad();
                let y = Tensor::<1, Int>::from_data(labels, &device);
                let loss = TripletLossConfig::new()
                    .with_distance(distance)
                    .with_mining(mining)
                    .with_soft(soft)
                    .init()
                    .forward(x.clone(), y);
                let value = to_vec(loss.clone())[0];
                let grad = to_matrix(x.grad(&loss.backward()).unwrap());
                assert!(
                    value.is_finite(),
                    "{distance:?} {mining:?} soft={soft}: loss {value}"
                );
                assert!(
                    grad.iter().flatten().all(|g| g.is_finite()),
                    "{distance:?} {mining:?} soft={soft}: gradient {grad:?}"
                );
            }
        }
    }
}

#[test]
fn batch_without_triplets_is_zero_in_the_graph() {
    for labels in [[3i64, 3, 3, 3], [1, 2, 3, 4]] {
        for mining in MININGS {
            for reduction in REDUCTIONS {
                let device = Device::flex().autodiff();
                let x = Tensor::<2>::from_data(
                    [[0.0f32, 1.0], [1.0, 0.0], [0.5, 0.5], [0.0, 0.0]],
                    &device,
                )
                .require_grad();
                let y = Tensor::<1, Int>::from_data(labels, &device);
                let out = TripletLossConfig::new()
                    .with_mining(mining)
                    .with_reduction(reduction)
                    .init()
                    .forward_with_stats(x.clone(), y);
                assert_eq!(out.stats.triplets, 0);
                assert_eq!(out.loss.dims(), [1]);
                assert_eq!(
                    to_vec(out.loss.clone()),
                    [0.0],
                    "{labels:?} {mining:?} {reduction:?}"
                );
                let grad = x
                    .grad(&out.loss.backward())
                    .expect("still connected to the graph");
                assert!(to_matrix(grad).iter().flatten().all(|&g| g == 0.0));
            }
        }
    }
}

#[test]
fn mean_active_with_no_active_triplet_is_zero() {
    // Well separated classes: every triplet has d_an − d_ap > margin.
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_data([[0.0f32, 0.0], [0.0, 0.1], [5.0, 0.0], [5.0, 0.1]], &device)
        .require_grad();
    let y = Tensor::<1, Int>::from_data([0, 0, 1, 1], &device);
    for mining in MININGS {
        let out = TripletLossConfig::new()
            .with_mining(mining)
            .with_reduction(Reduction::MeanActive)
            .with_distance(Distance::Euclidean)
            .init()
            .forward_with_stats(x.clone(), y.clone());
        assert!(out.stats.triplets > 0);
        assert_eq!(out.stats.active, 0);
        assert_eq!(to_vec(out.loss.clone()), [0.0], "{mining:?}");
        let grad = to_matrix(x.grad(&out.loss.backward()).unwrap());
        assert!(
            grad.iter().flatten().all(|&g| g == 0.0),
            "{mining:?}: {grad:?}"
        );
    }
}

#[test]
fn gradient_at_the_hinge_kink_is_zero_for_every_strategy() {
    // The crate docs' worked example ("Definitions"): triplet (0,1,2) sits exactly at the kink (2 − 3 + 1 = 0) and must not
    // contribute (PyTorch's relu gives 0 there); (1,0,2) is active. Every strategy mines
    // exactly these two triplets, so every strategy has the same exact gradient.
    for mining in MININGS {
        let device = Device::flex().autodiff();
        let x =
            Tensor::<2>::from_data([[0.0f32, 0.0], [0.0, 2.0], [0.0, 3.0]], &device).require_grad();
        let y = Tensor::<1, Int>::from_data([0, 0, 1], &device);
        let loss = TripletLossConfig::new()
            .with_margin(1.0)
            .with_mining(mining)
            .with_distance(Distance::Euclidean)
            .init()
            .forward(x.clone(), y);
        assert_eq!(to_vec(loss.clone()), [1.0], "{mining:?}");
        let grad = to_matrix(x.grad(&loss.backward()).unwrap());
        assert_eq!(grad, [[0.0, -0.5], [0.0, 1.0], [0.0, -0.5]], "{mining:?}");
    }
}

#[test]
fn soft_margin_slope_at_a_tie_is_one_half_for_every_strategy() {
    // d(0,1) = d(0,2) = √5 exactly: triplet (0,1,2) has d_ap − d_an = 0, where softplus's
    // slope is sigmoid(0) = 0.5 (a clamp-based softplus gave 1 on the gathered paths while the
    // host's batch-all weights gave 0.5). Every strategy mines (0,1,2) and (1,0,2).
    let mut grads = Vec::new();
    for mining in MININGS {
        let device = Device::flex().autodiff();
        let x =
            Tensor::<2>::from_data([[0.0f32, 0.0], [1.0, 2.0], [2.0, 1.0]], &device).require_grad();
        let y = Tensor::<1, Int>::from_data([0, 0, 1], &device);
        let loss = TripletLossConfig::new()
            .with_soft(true)
            .with_mining(mining)
            .with_reduction(Reduction::Sum)
            .init()
            .forward(x.clone(), y);
        grads.push(to_matrix(x.grad(&loss.backward()).unwrap()));
    }
    for g in &grads[1..] {
        for (a, b) in g.iter().flatten().zip(grads[0].iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{grads:?}");
        }
    }
    // x0's gradient: 0.5·((x0−x1) − (x0−x2))/√5 from (0,1,2), plus w·(x0−x1)/√5 from (1,0,2),
    // where w = σ(d(1,0) − d(1,2)) = σ(√5 − √2).
    let s5 = 5f64.sqrt();
    let w = 1.0 / (1.0 + (-(s5 - 2f64.sqrt())).exp());
    let want = [(0.5 - w) / s5, (-0.5 - 2.0 * w) / s5];
    assert!(
        (grads[0][0][0] - want[0]).abs() < 1e-5 && (grads[0][0][1] - want[1]).abs() < 1e-5,
        "{:?} vs {want:?}",
        grads[0][0]
    );
}

#[test]
fn euclidean_distance_has_zero_gradient_at_zero_distance() {
    // The crate docs ("Definitions"): the Euclidean gradient is 0, never NaN, where the distance is 0.
    let device = Device::flex().autodiff();
    let a = Tensor::<2>::from_data([[0.3f32, -1.2, 2.0], [1.0, 1.0, 1.0]], &device).require_grad();
    let b = Tensor::<2>::from_data([[0.3f32, -1.2, 2.0], [1.0, 1.0, 1.0]], &device).require_grad();
    let d = Distance::Euclidean.paired(a.clone(), b.clone());
    assert_eq!(to_vec(d.clone()), [0.0, 0.0]);
    let grads = d.sum().backward();
    for g in [a.grad(&grads).unwrap(), b.grad(&grads).unwrap()] {
        assert!(to_matrix(g).iter().flatten().all(|&v| v == 0.0));
    }
    // The pairwise matrix, whose diagonal is 0: the gradient of its sum is finite.
    let x = Tensor::<2>::from_data([[0.3f32, -1.2, 2.0], [0.3, -1.2, 2.0]], &device).require_grad();
    let d = Distance::Euclidean.pairwise(x.clone(), x.clone());
    let grad = to_matrix(x.grad(&d.sum().backward()).unwrap());
    assert!(grad.iter().flatten().all(|&v| v == 0.0), "{grad:?}");
}
