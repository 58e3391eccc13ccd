//! Training throughput: whole steps (forward, loss, backward, Adam) on random images, as
//! `scripts/bench_train.py` does in PyTorch. Prints the median images/s of the timed steps.
//!
//! - Default: the reference CNN at batch 128 (P 8 × K 16) of 28×28 grey images.
//! - `--backbone resnet50 --size 224 --batch 64 --k 4`: a torchvision ResNet on RGB photos'
//!   input size (the GPU benchmark of docs/BENCHMARKS.md).
//! - `--precision f16|bf16`: the device's default float type (`Device::configure`), so weights,
//!   activations and gradients are half precision (Burn 0.22.1 has no autocast).
//!
//! Run: `cargo bench -p triplet-train --bench train_step --profile dev -- [--steps N]
//! [--warmup N] [--mining semi_hard|hard] [--backend flex|ndarray|wgpu|cuda]
//! [--backbone small-cnn|resnet18|resnet34|resnet50] [--size S] [--batch B] [--k K] [--dim D]
//! [--precision f32|f16|bf16]`

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use triplet_loss::{Mining, TripletLossConfig};
use triplet_model::{EmbeddingHeadConfig, EmbeddingModelConfig, ResNetConfig, SmallCnnConfig};

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
    let backbone = arg(&args, "--backbone", "small-cnn");
    let resnet: Option<usize> = backbone
        .strip_prefix("resnet")
        .map(|d| d.parse().expect("--backbone resnetNN"));
    let (channels, default_size) = if resnet.is_some() {
        (3, "224")
    } else {
        (1, "28")
    };
    let size: usize = arg(&args, "--size", default_size)
        .parse()
        .expect("--size S");
    let batch: usize = arg(&args, "--batch", "128").parse().expect("--batch B");
    let k: usize = arg(&args, "--k", "16").parse().expect("--k K");
    let dim: usize = arg(&args, "--dim", "64").parse().expect("--dim D");
    let precision = arg(&args, "--precision", "f32");
    let mut base = backend.device().expect("a compiled backend");
    match precision.as_str() {
        "f32" => {}
        "f16" => base
            .configure(burn::tensor::FloatDType::F16)
            .expect("f16 on this device"),
        "bf16" => base
            .configure(burn::tensor::FloatDType::BF16)
            .expect("bf16 on this device"),
        other => panic!("--precision f32|f16|bf16, got {other}"),
    }
    let device = base.autodiff();
    let config = EmbeddingModelConfig::new()
        .with_backbone(match resnet {
            Some(depth) => ResNetConfig::new(depth).into(),
            None => SmallCnnConfig::new().into(),
        })
        .with_head(EmbeddingHeadConfig::new().with_dim(dim));
    let mut model = config.init(&device);
    let mut optim = AdamConfig::new().init();
    let loss = TripletLossConfig::new().with_mining(mining).init();
    let labels: Vec<i64> = (0..batch as i64).map(|i| i / k as i64).collect();
    let mut rates = Vec::new();
    for step in 0..warmup + steps {
        let x = Tensor::<4>::random(
            [batch, channels, size, size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch]), &device);
        device.sync().expect("the device finishes its work");
        let start = Instant::now();
        let out = loss.forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(out.backward(), &model);
        model = optim.step(1e-3, model, grads);
        // Backends are asynchronous: wait for the step to finish.
        device.sync().expect("the device finishes its work");
        let dt = start.elapsed().as_secs_f64();
        if step >= warmup {
            rates.push(batch as f64 / dt);
        }
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{{\"impl\": \"triplet\", \"backend\": \"{backend}\", \"backbone\": \"{backbone}\", \
         \"size\": {size}, \"batch\": {batch}, \"precision\": \"{precision}\", \"mining\": \"{mining:?}\", \
         \"median_images_per_s\": {:.1}, \"min\": {:.1}, \"max\": {:.1}, \"steps\": {steps}}}",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}
