//! Forward + backward of the triplet loss alone, per mining strategy and batch size, with the
//! median time and the peak host memory allocated during one step.
//!
//! Run: `cargo bench -p triplet-loss --bench loss` (all sizes, flex), or pick:
//! `cargo bench -p triplet-loss --bench loss -- --sizes 128,1024 --strategies semi_hard,all
//!  --repeats 7 --device flex|wgpu|cuda` (`cuda` in a build with `--features triplet-train/cuda`;
//! both GPU backends mine every strategy on the device; `pml_semi_hard` is PML's band miner,
//! `all_swap` batch-all with the anchor swap, neither in the default list). With
//! `--features fused,flex`, batch-all takes the hand-written backward on flex, and
//! `TRIPLET_LOSS_FUSED=0` turns it back off in the same binary.
//!
//! Protocol (docs/PROTOCOLS.md, "loss"): D = 128, random L2-normalised embeddings, P×K labels with K = 8,
//! Euclidean distance, margin 0.2, `Mean` reduction for semi-hard and batch-hard, `MeanActive`
//! for batch-all (pytorch-metric-learning's defaults for the twin, `scripts/bench_pml.py`).
//! Each run reads the loss and the gradient back, so asynchronous devices are timed in full.
#![allow(unsafe_code)] // the counting global allocator below
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::{DeviceKind, Distribution};
use triplet_loss::{Mining, Reduction, TripletLossConfig};

/// Counts live heap bytes and their peak.
struct PeakAlloc;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn step(loss: &triplet_loss::TripletLoss, x: &Tensor<2>, y: &Tensor<1, Int>) -> f32 {
    let x = x.clone().require_grad();
    let value = loss.forward(x.clone(), y.clone());
    let grads = value.backward();
    let g = x.grad(&grads).expect("gradient");
    let checksum: f32 = g.abs().sum().into_scalar();
    checksum + value.into_scalar::<f32>()
}

/// Runs the benchmark with the flags in the module docs (`benches/gpu.rs` calls it too).
pub fn main() {
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "128,512,1024,4096,8192".into())
        .split(',')
        .map(|s| s.trim().parse().expect("--sizes: comma-separated integers"))
        .collect();
    let strategies: Vec<String> = arg("--strategies")
        .unwrap_or_else(|| "semi_hard,all,hard".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let repeats: usize = arg("--repeats").map_or(5, |r| r.parse().expect("--repeats: integer"));
    let base = match arg("--device").as_deref().unwrap_or("flex") {
        "flex" => Device::flex(),
        "wgpu" => Device::wgpu(DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(0),
        other => panic!("--device: flex, wgpu or (built with cuda) cuda, got {other}"),
    };
    let device = base.autodiff();
    println!("| strategy | B | median ms | min ms | runs | peak host MiB |");
    println!("|---|---|---|---|---|---|");
    for name in &strategies {
        let (mining, reduction, swap) = match name.as_str() {
            "semi_hard" => (Mining::SemiHard, Reduction::Mean, false),
            "all" => (Mining::All, Reduction::MeanActive, false),
            "hard" => (Mining::Hard, Reduction::Mean, false),
            "pml_semi_hard" => (Mining::PmlSemiHard, Reduction::MeanActive, false),
            "all_swap" => (Mining::All, Reduction::MeanActive, true),
            other => {
                panic!("unknown strategy {other}: semi_hard, all, hard, pml_semi_hard or all_swap")
            }
        };
        let loss = TripletLossConfig::new()
            .with_mining(mining)
            .with_reduction(reduction)
            .with_swap(swap)
            .init();
        for &b in &sizes {
            let x = Tensor::<2>::random([b, 128], Distribution::Normal(0.0, 1.0), &device);
            let x = (x.clone() / x.square().sum_dim(1).sqrt()).detach();
            let labels: Vec<i64> = (0..b as i64).map(|i| i / 8).collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), &device);
            step(&loss, &x, &y); // warm-up: kernels, allocator pools
            let mut times = Vec::new();
            let mut peak = 0usize;
            let budget = Instant::now();
            for _ in 0..repeats {
                let base = LIVE.load(Ordering::Relaxed);
                PEAK.store(base, Ordering::Relaxed);
                let t = Instant::now();
                std::hint::black_box(step(&loss, &x, &y));
                times.push(t.elapsed().as_secs_f64() * 1e3);
                peak = peak.max(PEAK.load(Ordering::Relaxed) - base);
                if budget.elapsed().as_secs() > 60 {
                    break;
                }
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {name} | {b} | {:.1} | {:.1} | {} | {:.0} |",
                times[times.len() / 2],
                times[0],
                times.len(),
                peak as f64 / (1 << 20) as f64
            );
        }
    }
}
