//! The GPU code path: the same loss, stats and gradients on Burn's wgpu backend as on flex.
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
