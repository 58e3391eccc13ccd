//! The GPU code path: the same loss, stats and gradients on Burn's wgpu backend as on flex,
//! and the device miners (the CubeCL kernels behind semi-hard and batch-all on cubecl devices)
//! against the host miner and the brute-force oracle on every awkward batch kind.
//!
//! Without a GPU this runs on Mesa's software Vulkan driver (Debian: `mesa-vulkan-drivers`),
//! which compiles each new kernel on first use (seconds each), so the suite keeps to a few
//! shapes in one test. Set `XDG_RUNTIME_DIR` to a private directory to silence Mesa's warnings.

mod common;

use burn::prelude::*;
use burn::tensor::DeviceKind;
use common::*;
use triplet_loss::{Distance, Mining, Reduction, TripletLossConfig, mine};

fn run(
    device: &Device,
    setup: Setup,
    batch: &Batch,
) -> (Vec<f32>, triplet_loss::MiningStats, Vec<Vec<f64>>) {
    let device = device.clone().autodiff();
    let x = batch.embeddings(&device).require_grad();
    let out = config(setup)
        .init()
        .forward_with_stats(x.clone(), batch.labels(&device));
    let grad = to_matrix(x.grad(&out.loss.backward()).unwrap());
    (to_vec(out.loss), out.stats, grad)
}

#[test]
fn wgpu_matches_flex() {
    let gpu = Device::wgpu(DeviceKind::DefaultDevice);
    let cpu = Device::flex();
    let batch = batch(Kind::Singletons, 7);
    let cases = [
        (
            Distance::Euclidean,
            Mining::SemiHard,
            Reduction::Mean,
            false,
        ),
        (Distance::Euclidean, Mining::Hard, Reduction::Mean, false),
        (
            Distance::Euclidean,
            Mining::All,
            Reduction::MeanActive,
            false,
        ),
        (
            Distance::SquaredEuclidean,
            Mining::All,
            Reduction::Sum,
            true,
        ),
        (
            Distance::Cosine,
            Mining::SemiHard,
            Reduction::MeanActive,
            false,
        ),
        (Distance::Cosine, Mining::Hard, Reduction::Sum, true),
    ];
    for (distance, mining, reduction, soft) in cases {
        let setup = Setup {
            distance,
            mining,
            reduction,
            margin: 0.2,
            soft,
        };
        let (loss_gpu, stats_gpu, grad_gpu) = run(&gpu, setup, &batch);
        let (loss_cpu, stats_cpu, grad_cpu) = run(&cpu, setup, &batch);
        assert!(
            close(loss_gpu[0] as f64, loss_cpu[0] as f64, 1e-4, 1e-5),
            "{setup:?}: {loss_gpu:?} vs {loss_cpu:?}"
        );
        assert_eq!(stats_gpu.triplets, stats_cpu.triplets, "{setup:?}");
        assert_eq!(stats_gpu.active, stats_cpu.active, "{setup:?}");
        for (g, c) in grad_gpu.iter().flatten().zip(grad_cpu.iter().flatten()) {
            assert!(close(*g, *c, 1e-3, 1e-5), "{setup:?}: gradient {g} vs {c}");
        }
    }
    // The miner alone, on the device.
    let x = batch.embeddings(&gpu);
    let triplets = mine(
        Distance::Euclidean.pairwise(x.clone(), x),
        batch.labels(&gpu),
        Mining::SemiHard,
    );
    let d = device_distances(Distance::Euclidean, &batch, &cpu);
    assert_eq!(
        triplets.len(),
        common::mine(Mining::SemiHard, &d, &batch.y).len()
    );
    // The anchor swap on the device's batch-hard path (flex takes the host miner): the same
    // loss, statistics and gradient.
    let swap = |device: &Device| {
        let device = device.clone().autodiff();
        let x = batch.embeddings(&device).require_grad();
        let out = TripletLossConfig::new()
            .with_mining(Mining::Hard)
            .with_margin(0.5)
            .with_swap(true)
            .init()
            .forward_with_stats(x.clone(), batch.labels(&device));
        let grad = to_matrix(x.grad(&out.loss.backward()).unwrap());
        (to_vec(out.loss)[0] as f64, out.stats, grad)
    };
    let ((gpu_loss, gpu_stats, gpu_grad), (cpu_loss, cpu_stats, cpu_grad)) =
        (swap(&gpu), swap(&cpu));
    assert!(
        close(gpu_loss, cpu_loss, 1e-4, 1e-5),
        "swap: {gpu_loss} vs {cpu_loss}"
    );
    assert_eq!(
        (gpu_stats.triplets, gpu_stats.active),
        (cpu_stats.triplets, cpu_stats.active)
    );
    assert!(close(gpu_stats.mean_d_an, cpu_stats.mean_d_an, 1e-4, 1e-5));
    for (g, c) in gpu_grad.iter().flatten().zip(cpu_grad.iter().flatten()) {
        assert!(close(*g, *c, 1e-3, 1e-5), "swap: gradient {g} vs {c}");
    }
    // And the plain (non-autodiff) device.
    let loss = TripletLossConfig::new()
        .init()
        .forward(batch.embeddings(&gpu), batch.labels(&gpu));
    let want = TripletLossConfig::new()
        .init()
        .forward(batch.embeddings(&cpu), batch.labels(&cpu));
    assert!(close(
        to_vec(loss)[0] as f64,
        to_vec(want)[0] as f64,
        1e-4,
        1e-5
    ));
}

fn gpu() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

/// A Euclidean setup.
fn setup(mining: Mining, reduction: Reduction, margin: f64, soft: bool) -> Setup {
    Setup {
        distance: Distance::Euclidean,
        mining,
        reduction,
        margin,
        soft,
    }
}

/// Semi-hard mined by the device kernel (`mine` on wgpu) and by the host miner (`mine` on flex,
/// given the very same distance values), and the oracle's loops over those values: the same
/// triplets, ties included, on every batch kind and distance.
fn check_semi_hard_mining(batch: &Batch, distance: Distance, ctx: &str) -> usize {
    let (gpu, cpu) = (gpu(), Device::flex());
    let x = batch.embeddings(&gpu);
    let dist = distance.pairwise(x.clone(), x);
    let values = dist.to_data();
    let on_device = tuples(mine(dist, batch.labels(&gpu), Mining::SemiHard));
    let on_host = tuples(mine(
        Tensor::<2>::from_data(values.clone(), &cpu),
        batch.labels(&cpu),
        Mining::SemiHard,
    ));
    assert_eq!(on_device, on_host, "{ctx}: device against host miner");
    let b = batch.len();
    let flat: Vec<f32> = values.try_into_vec_as().unwrap();
    let d: Vec<Vec<f64>> = flat
        .chunks(b)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect();
    assert_eq!(
        on_device,
        common::mine(Mining::SemiHard, &d, &batch.y),
        "{ctx}: device miner against the oracle"
    );
    on_device.len()
}

#[test]
#[cfg_attr(
    not(feature = "wgpu"),
    ignore = "the device miners need the crate's `wgpu` feature (the workspace turns it on)"
)]
fn device_semi_hard_mining_matches_host_miner_and_oracle() {
    let mut checked = 0;
    // Every kind with three seeds. The miner sees only distance values, so one distance does
    // (Grid's small-integer coordinates give exactly tied Euclidean distances too); each new
    // kernel costs seconds of compilation on Mesa.
    for kind in KINDS {
        for seed in 0..3 {
            checked += check_semi_hard_mining(
                &batch(kind, seed),
                Distance::Euclidean,
                &format!("{kind:?} seed {seed}"),
            );
        }
    }
    assert!(checked > 60, "only {checked} triplets checked");
}

/// A batch larger than one cube's 256 columns (each row spans two cubes), with many exact ties
/// (small-integer coordinates) and classes of 1 to 13.
fn large_batch() -> Batch {
    let mut rng = Rng::new(77);
    let b = 300;
    let y: Vec<i64> = (0..b).map(|i| ((i * 7919) % b) as i64 / 7 - 20).collect();
    let x = (0..b)
        .map(|_| (0..4).map(|_| rng.below(4) as f32 - 1.5).collect())
        .collect();
    Batch { x, y }
}

#[test]
#[cfg_attr(
    not(feature = "wgpu"),
    ignore = "the device miners need the crate's `wgpu` feature (the workspace turns it on)"
)]
fn device_mining_of_a_batch_spanning_several_cubes() {
    let batch = large_batch();
    let checked = check_semi_hard_mining(&batch, Distance::Euclidean, "B = 300");
    assert!(checked > 1000, "{checked}");
    // Batch-all's weights meet the distances in the gradient: the device against flex.
    for (mining, soft) in [
        (Mining::All, false),
        (Mining::All, true),
        (Mining::SemiHard, false),
    ] {
        let setup = Setup {
            distance: Distance::Euclidean,
            mining,
            reduction: Reduction::MeanActive,
            margin: 1.0,
            soft,
        };
        agree_with_flex(setup, false, &batch, "B = 300");
    }
}

/// Loss, statistics and gradient of `setup` (with the anchor swap if `swap`) on wgpu against
/// flex (the host miner there).
fn agree_with_flex(setup: Setup, swap: bool, batch: &Batch, ctx: &str) {
    let run = |device: &Device| {
        let device = device.clone().autodiff();
        let x = batch.embeddings(&device).require_grad();
        let out = config(setup)
            .with_swap(swap)
            .init()
            .forward_with_stats(x.clone(), batch.labels(&device));
        let grad = to_matrix(x.grad(&out.loss.backward()).unwrap());
        (to_vec(out.loss)[0] as f64, out.stats, grad)
    };
    let ((loss, stats, grad), (want, want_stats, want_grad)) = (run(&gpu()), run(&Device::flex()));
    let ctx = format!("{ctx} {setup:?} swap {swap}");
    // Duplicated rows: the device reads Euclidean d(a, p) off the B×B matrix, sqrt of rounding
    // noise (~3e-4) where flex's gathered rows give 0.
    assert!(close(loss, want, 1e-4, 2e-3), "{ctx}: {loss} vs {want}");
    assert_eq!(stats.triplets, want_stats.triplets, "{ctx}");
    assert_eq!(
        stats.anchors_with_triplet, want_stats.anchors_with_triplet,
        "{ctx}"
    );
    assert!(
        stats.active.abs_diff(want_stats.active) <= stats.triplets / 1000,
        "{ctx}: {} active vs {}",
        stats.active,
        want_stats.active
    );
    assert!(
        close(stats.mean_d_ap, want_stats.mean_d_ap, 1e-4, 2e-3),
        "{ctx}"
    );
    assert!(
        close(stats.mean_d_an, want_stats.mean_d_an, 1e-4, 2e-3),
        "{ctx}"
    );
    assert_eq!(stats.non_finite, 0, "{ctx}");
    for (g, c) in grad.iter().flatten().zip(want_grad.iter().flatten()) {
        assert!(close(*g, *c, 1e-3, 1e-4), "{ctx}: gradient {g} vs {c}");
    }
}

/// Semi-hard and batch-all mined on the device against the oracle's loss and statistics, and
/// against flex's gradient, on every batch kind: four setups covering both rules, the three
/// reductions and both margins, one per kind. The device paths differ from
/// the host's only after the distance matrix, so one distance does (Mesa's software Vulkan
/// compiles every new kernel, seconds each).
#[test]
#[cfg_attr(
    not(feature = "wgpu"),
    ignore = "the device miners need the crate's `wgpu` feature (the workspace turns it on)"
)]
fn device_mined_losses_match_the_oracle_and_flex() {
    let gpu = gpu();
    let setups = [
        setup(Mining::SemiHard, Reduction::Mean, 0.2, false),
        setup(Mining::All, Reduction::MeanActive, 0.5, false),
        setup(Mining::SemiHard, Reduction::MeanActive, 0.2, true),
        setup(Mining::All, Reduction::Sum, 0.2, true),
    ];
    // One setup per kind (the four cycle through the six kinds): a second setup on the same
    // kind proved nothing the first had not, and cost a minute of Mesa's kernel compilation.
    for (k, kind) in KINDS.into_iter().enumerate() {
        let batch = batch(kind, 2000);
        let setup = setups[k % setups.len()];
        let d = device_distances(setup.distance, &batch, &gpu);
        let oracle = loss(setup, &batch.x, &batch.y, &d);
        let out = config(setup)
            .init()
            .forward_with_stats(batch.embeddings(&gpu), batch.labels(&gpu));
        let ctx = format!("{kind:?} {setup:?}");
        // Duplicated rows: every device distance comes off the B×B matrix (~3e-4 for 0).
        let abs = if kind == Kind::Duplicates { 2e-3 } else { 2e-5 };
        assert_matches_oracle(&out, &oracle, setup, abs, &ctx);
        // The gradient against flex's, and the swap (semi-hard on the device gathers d(p, n)
        // off the matrix) on the P×K batch.
        agree_with_flex(setup, false, &batch, &format!("{kind:?}"));
        if kind == Kind::Pk {
            agree_with_flex(setup, true, &batch, &format!("{kind:?}"));
        }
    }
}

/// PML's band (`Mining::PmlSemiHard`) and batch-all with the swap, mined on the device by the
/// weights kernel, against flex's host miners on every batch kind: loss, statistics and
/// gradient, over the three reductions and both margins, with and without the swap (two
/// setups per kind: each new kernel costs Mesa seconds of compilation).
#[test]
#[cfg_attr(
    not(feature = "wgpu"),
    ignore = "the device miners need the crate's `wgpu` feature (the workspace turns it on)"
)]
fn device_band_and_swap_match_flex() {
    let setups = [
        (
            setup(Mining::PmlSemiHard, Reduction::Mean, 0.5, false),
            false,
        ),
        (setup(Mining::All, Reduction::MeanActive, 0.5, false), true),
        (
            setup(Mining::PmlSemiHard, Reduction::MeanActive, 0.3, true),
            true,
        ),
        (setup(Mining::All, Reduction::Mean, 0.2, true), true),
        (setup(Mining::PmlSemiHard, Reduction::Sum, 1.0, false), true),
    ];
    for (k, kind) in KINDS.into_iter().enumerate() {
        let batch = batch(kind, 3000 + k as u64);
        for (setup, swap) in [setups[k % 5], setups[(k + 2) % 5]] {
            agree_with_flex(setup, swap, &batch, &format!("{kind:?}"));
        }
    }
    // Cosine on a batch spanning two cubes, where the band is narrower than the distances'
    // range; continuous embeddings: with exact ties (`large_batch`), `0 < d_an − d_ap` is
    // decided by each device's rounding of equal distances (the kernel unit tests give both
    // miners the same values, ties included).
    let mut rng = Rng::new(78);
    let batch = Batch {
        x: (0..300)
            .map(|_| (0..6).map(|_| rng.normal() as f32).collect())
            .collect(),
        y: large_batch().y,
    };
    let cosine = Setup {
        distance: Distance::Cosine,
        ..setup(Mining::PmlSemiHard, Reduction::Mean, 0.1, false)
    };
    agree_with_flex(cosine, false, &batch, "B = 300");
    agree_with_flex(cosine, true, &batch, "B = 300");
}

/// Every rule against references and through a cross-batch memory, mined on the device
/// (semi-hard, batch-all and PML's band by the kernels over the `B×M` matrix, batch-hard by
/// `argmax`/`argmin`, the anchors' own copies in the memory left out), against flex's host
/// miners: loss, statistics, and the gradient to the batch and to the references.
#[test]
#[cfg_attr(
    not(feature = "wgpu"),
    ignore = "the device miners need the crate's `wgpu` feature (the workspace turns it on)"
)]
fn device_mining_against_references_and_memory_matches_flex() {
    use triplet_loss::{CrossBatchMemoryConfig, References, TripletOutput};
    let minings = [
        Mining::SemiHard,
        Mining::All,
        Mining::PmlSemiHard,
        Mining::Hard,
    ];
    let reductions = [Reduction::Mean, Reduction::MeanActive, Reduction::Sum];
    let queries = batch(Kind::Singletons, 41);
    let refs = batch(Kind::Pk, 42);
    // Reference labels shared with the queries' (and some that are not).
    let mut refs_y = refs.y.clone();
    for (i, y) in refs_y.iter_mut().enumerate().step_by(3) {
        *y = queries.y[i % queries.len()];
    }
    let refs = Batch {
        x: refs
            .x
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.resize(queries.dim(), 0.5);
                r
            })
            .collect(),
        y: refs_y,
    };
    let compare = |(got, got_grads): (TripletOutput, Vec<Vec<Vec<f64>>>),
                   (want, want_grads): (TripletOutput, Vec<Vec<Vec<f64>>>),
                   ctx: &str| {
        let (l, w) = (to_vec(got.loss)[0] as f64, to_vec(want.loss)[0] as f64);
        assert!(close(l, w, 1e-4, 1e-5), "{ctx}: {l} vs {w}");
        let (s, t) = (got.stats, want.stats);
        assert_eq!(
            (s.triplets, s.active, s.anchors_with_triplet, s.non_finite),
            (t.triplets, t.active, t.anchors_with_triplet, t.non_finite),
            "{ctx}"
        );
        assert!(close(s.mean_d_ap, t.mean_d_ap, 1e-4, 1e-5), "{ctx}");
        assert!(close(s.mean_d_an, t.mean_d_an, 1e-4, 1e-5), "{ctx}");
        for (g, c) in got_grads
            .iter()
            .flatten()
            .flatten()
            .zip(want_grads.iter().flatten().flatten())
        {
            assert!(close(*g, *c, 1e-3, 1e-4), "{ctx}: gradient {g} vs {c}");
        }
    };
    for (i, mining) in minings.into_iter().enumerate() {
        for (j, soft) in [false, true].into_iter().enumerate() {
            let loss = TripletLossConfig::new()
                .with_mining(mining)
                .with_reduction(reductions[(i + j) % 3])
                .with_margin(0.5)
                .with_soft(soft)
                .init();
            let ctx = format!("{mining:?} soft {soft}");
            // References attached to the graph: their gradient too.
            let against = |device: &Device| {
                let device = device.clone().autodiff();
                let x = queries.embeddings(&device).require_grad();
                let r = refs.embeddings(&device).require_grad();
                let out = loss.forward_refs_with_stats(
                    x.clone(),
                    queries.labels(&device),
                    References::new(r.clone(), refs.labels(&device)),
                );
                let grads = out.loss.backward();
                let g = vec![
                    to_matrix(x.grad(&grads).unwrap()),
                    to_matrix(r.grad(&grads).unwrap()),
                ];
                (out, g)
            };
            compare(
                against(&gpu()),
                against(&Device::flex()),
                &format!("refs {ctx}"),
            );
            // Three batches through a memory of 24 (it wraps), step by step.
            let memory = |device: &Device| {
                let device = device.clone().autodiff();
                let mut memory = CrossBatchMemoryConfig::new().with_memory_size(24).init();
                [&refs, &queries, &refs]
                    .into_iter()
                    .map(|b| {
                        let x = b.embeddings(&device).require_grad();
                        let out = memory.forward_with_stats(&loss, x.clone(), b.labels(&device));
                        let g = vec![to_matrix(x.grad(&out.loss.backward()).unwrap())];
                        (out, g)
                    })
                    .collect::<Vec<_>>()
            };
            for (step, (got, want)) in memory(&gpu())
                .into_iter()
                .zip(memory(&Device::flex()))
                .enumerate()
            {
                compare(got, want, &format!("memory step {step} {ctx}"));
            }
        }
    }
}

/// `forward_deferred` on the device leaves every rule's statistics there (nothing read back,
/// for the batch and through a cross-batch memory), and one `read_with_loss` gives what
/// `forward_with_stats` and reading the loss give; on flex, whose miners run on the host, they
/// are ready at once.
#[test]
fn deferred_statistics_stay_on_the_device_until_read() {
    use triplet_loss::CrossBatchMemoryConfig;
    let batch = batch(Kind::Pk, 7);
    for mining in [
        Mining::SemiHard,
        Mining::All,
        Mining::PmlSemiHard,
        Mining::Hard,
    ] {
        let loss = TripletLossConfig::new()
            .with_mining(mining)
            .with_margin(0.5)
            .init();
        for device in [gpu(), Device::flex()] {
            let on_gpu = device != Device::flex();
            let (x, y) = (batch.embeddings(&device), batch.labels(&device));
            let deferred = loss.forward_deferred(x.clone(), y.clone());
            let mut memory = CrossBatchMemoryConfig::new().with_memory_size(64).init();
            let from_memory = memory.forward_deferred(&loss, x.clone(), y.clone());
            // Batch-hard mines on the host on flex, on the device on a GPU, as the others.
            assert_eq!(
                deferred.stats.is_ready(),
                !on_gpu,
                "{mining:?} on {device:?}"
            );
            assert_eq!(from_memory.stats.is_ready(), !on_gpu, "{mining:?} memory");
            let (value, stats) = deferred.stats.read_with_loss(deferred.loss);
            let want = loss.forward_with_stats(x, y);
            assert_eq!(stats, want.stats, "{mining:?} on {device:?}");
            assert_eq!(value, to_vec(want.loss)[0], "{mining:?} on {device:?}");
            assert!(from_memory.read().stats.triplets > 0, "{mining:?} memory");
        }
    }
}
