//! Training throughput of the production step: `triplet_train::train::step::step_on_replicas`
//! (forward, loss, backward, BatchNorm statistics settled) and the optimiser step, exactly as
//! `triplet train` runs them, on random images, as `scripts/bench_train.py` does in PyTorch.
//! The model, loss and optimiser come from an experiment config, as in `triplet train`. Prints
//! the median images/s of the timed steps.
//!
//! - Default: the reference CNN at batch 128 (P 8 × K 16) of 28×28 grey images.
//! - `--backbone resnet50 --size 224 --batch 64 --k 4`: a torchvision ResNet on RGB photos'
//!   input size (the GPU benchmark of docs/BENCHMARKS.md).
//! - `--inference`: the embedding forward pass alone, as `triplet eval` embeds (the model's
//!   inference copy, no autodiff), against `scripts/bench_train.py --inference`.
//! - `--precision f16|bf16`: mixed precision as `triplet train` runs it: f32 weights and
//!   optimiser state, the batch cast to half, BatchNorm and the loss in f32, and for f16 the
//!   dynamic loss scale (`train::amp`).
//!
//! Run: `cargo bench --workspace --bench train_step --profile dev -- [--steps N]
//! [--warmup N] [--mining semi-hard|hard|all] [--backend flex|ndarray|wgpu|cuda]
//! [--backbone small-cnn|resnet18|resnet34|resnet50] [--size S] [--batch B] [--k K] [--dim D]
//! [--precision f32|f16|bf16] [--inference]` (`--workspace`: the same Burn features as the tests, so no
//! second build of Burn).

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use triplet_train::config::{ExperimentConfig, Precision};
use triplet_train::train::amp::{Autocast, LossScale};
use triplet_train::train::optimizer;
use triplet_train::train::resolve::configure_precision;
use triplet_train::train::step::{HostBatch, step_on_replicas};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// Random N(0, 1) images as host values, as the loader hands a step its batch.
fn host_images(device: &Device, shape: [usize; 4]) -> Vec<f32> {
    Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 images")
}

/// Stops the benchmark with `message` (a bad argument).
fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

/// Runs the benchmark with the flags in the module docs (`benches/gpu.rs` calls it too).
pub fn main() {
    // As the `triplet` binary does.
    triplet_train::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = arg(&args, "--steps", "20").parse().expect("--steps N");
    let warmup: usize = arg(&args, "--warmup", "3").parse().expect("--warmup N");
    let mining = arg(&args, "--mining", "semi-hard").replace('_', "-");
    let backend: triplet_train::device::Backend = arg(&args, "--backend", "flex")
        .parse()
        .expect("a backend name");
    let backbone = arg(&args, "--backbone", "small-cnn");
    let channels = if backbone.starts_with("resnet") { 3 } else { 1 };
    let default_size = if channels == 3 { "224" } else { "28" };
    let size: usize = arg(&args, "--size", default_size)
        .parse()
        .expect("--size S");
    let batch: usize = arg(&args, "--batch", "128").parse().expect("--batch B");
    let k: usize = arg(&args, "--k", "16").parse().expect("--k K");
    let dim: usize = arg(&args, "--dim", "64").parse().expect("--dim D");
    let precision = arg(&args, "--precision", "f32");
    let parsed: Precision = precision.parse().unwrap_or_else(|e| fail(e));
    // `--backbone` and `--mining` are checked as config values, with the config's names
    // (`semi-hard`, `hard`, `all`): a typo is an error, never a silent default.
    let config = ExperimentConfig::from_toml(&format!(
        "[model]\nbackbone = \"{backbone}\"\ndim = {dim}\n[loss]\nmining = \"{mining}\"\n"
    ))
    .unwrap_or_else(|e| fail(format!("--backbone {backbone} / --mining {mining}: {e}")));
    let base = backend.device().unwrap_or_else(|e| fail(e));
    // As `triplet train` checks `train.precision` and casts each batch to it.
    let half = configure_precision(std::slice::from_ref(&base), parsed, backend)
        .unwrap_or_else(|e| fail(e));
    let mut scale = (parsed == Precision::F16).then(|| LossScale::new(config.train.loss_scale));
    let device = base.clone().autodiff();
    device.seed(config.train.seed);
    let mut model = config.model(channels).init(&device);
    let mut optim = optimizer(&config.optimizer);
    let loss = config.loss().init();
    let lr = config.optimizer.lr;
    if args.iter().any(|a| a == "--inference") {
        // The embedding forward pass as `triplet eval` runs it: the inference copy of the model
        // (`valid()`: no autodiff, BatchNorm on its running statistics) on host images.
        let model = model.valid();
        let mut rates = Vec::new();
        for step in 0..warmup + steps {
            let images = host_images(&base, [batch, channels, size, size]);
            let start = Instant::now();
            let x = Tensor::<4>::from_data(
                TensorData::new(images, [batch, channels, size, size]),
                &base,
            );
            let x = match half {
                Some(dtype) => x.cast(dtype),
                None => x,
            };
            let e: Vec<f32> = model
                .forward(x)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 embeddings");
            assert_eq!(e.len(), batch * dim);
            if step >= warmup {
                rates.push(batch as f64 / start.elapsed().as_secs_f64());
            }
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "{{\"impl\": \"triplet\", \"inference\": true, \"backend\": \"{backend}\", \"backbone\": \"{backbone}\", \
             \"size\": {size}, \"batch\": {batch}, \"median_images_per_s\": {:.1}, \"min\": {:.1}, \"max\": {:.1}, \"steps\": {steps}}}",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
        return;
    }
    let labels: Vec<i64> = (0..batch as i64).map(|i| i / k as i64).collect();
    let replicas = [device.clone()];
    let mut rates = Vec::new();
    for step in 0..warmup + steps {
        // The loader hands the step host images, as here.
        let images = host_images(&base, [batch, channels, size, size]);
        device.sync().expect("the device finishes its work");
        let start = Instant::now();
        let (_value, _stats, mut grads) = step_on_replicas(
            &model,
            &loss,
            None,
            &replicas,
            HostBatch {
                images: &images,
                labels: &labels,
                shape: [channels, size, size],
            },
            Autocast::new(parsed, scale.as_ref()),
        );
        let take = scale
            .as_mut()
            .is_none_or(|s| s.unscale_and_update(&model, &mut grads));
        if take {
            model = optim.step(lr, model, grads);
        }
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
         \"size\": {size}, \"batch\": {batch}, \"precision\": \"{precision}\", \"mining\": \"{mining}\", \
         \"median_images_per_s\": {:.1}, \"min\": {:.1}, \"max\": {:.1}, \"steps\": {steps}}}",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}
