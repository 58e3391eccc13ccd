//! Training throughput of the reference CNN: whole steps (forward, loss, backward, Adam) at
//! batch 128 (P 8 × K 16) of 28×28 grey images, semi-hard or batch-hard loss, as
//! `scripts/bench_train.py` does in PyTorch. Prints the median images/s of the timed steps.
//!
//! Run: `cargo bench -p triplet-train --bench train_step --profile dev -- [--steps N]
//! [--warmup N] [--mining semi_hard|hard] [--backend flex|ndarray|wgpu]`

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use triplet_loss::{Mining, TripletLossConfig};
use triplet_model::EmbeddingModelConfig;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = arg(&args, "--steps", "20").parse().expect("--steps N");
    let warmup: usize = arg(&args, "--warmup", "3").parse().expect("--warmup N");
    let mining = match arg(&args, "--mining", "semi_hard").as_str() {
        "hard" => Mining::Hard,
        _ => Mining::SemiHard,
    };
    let backend: triplet_train::device::Backend = arg(&args, "--backend", "flex")
        .parse()
        .expect("a backend name");
    let device = backend.device().expect("a compiled backend").autodiff();
    let mut model = EmbeddingModelConfig::new().init(&device);
    let mut optim = AdamConfig::new().init();
    let loss = TripletLossConfig::new().with_mining(mining).init();
    let labels: Vec<i64> = (0..128).map(|i| i / 16).collect();
    let mut rates = Vec::new();
    for step in 0..warmup + steps {
        let x = Tensor::<4>::random([128, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [128]), &device);
        let start = Instant::now();
        let out = loss.forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(out.backward(), &model);
        model = optim.step(1e-3, model, grads);
        // Backends are asynchronous: wait for the step to finish.
        device.sync().expect("the device finishes its work");
        let dt = start.elapsed().as_secs_f64();
        if step >= warmup {
            rates.push(128.0 / dt);
        }
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{{\"impl\": \"triplet\", \"backend\": \"{backend}\", \"mining\": \"{mining:?}\", \
         \"median_images_per_s\": {:.1}, \"min\": {:.1}, \"max\": {:.1}, \"steps\": {steps}}}",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}
