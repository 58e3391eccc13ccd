//! Input pipeline throughput (PROTOCOLS.md "data"): images per second the loader delivers
//! (decode, random resized crop, flip, normalise, batch) from a folder of PNG files, per worker
//! count, with nothing else running. Training at batch 128 consumes ~270 img/s on 2 cores
//! (`train_step` bench), so the loader must stay well above that.
//!
//! Run: `cargo bench -p triplet-train --bench data --profile dev -- [--images N] [--size S]
//! [--workers 1,2]`

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use triplet_train::config::AugmentConfig;
use triplet_train::data::augment::Transform;
use triplet_train::data::loader::{BadImages, Loader, LoaderOptions};
use triplet_train::data::sampler::PkSampler;
use triplet_train::data::source;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn write_folder(root: &Path, images: usize, size: u32) {
    for i in 0..images {
        let class = i % 10;
        let dir = root.join(format!("class{class}"));
        std::fs::create_dir_all(&dir).unwrap();
        let img = image::RgbImage::from_fn(size, size, |x, y| {
            let v = ((x * 7 + y * 13 + i as u32 * 31 + class as u32 * 50) % 256) as u8;
            image::Rgb([v, v.wrapping_mul(3), v.wrapping_add(90)])
        });
        img.save(dir.join(format!("{i:06}.png"))).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let images: usize = arg(&args, "--images", "3840").parse().expect("--images N");
    let size: u32 = arg(&args, "--size", "28").parse().expect("--size S");
    let workers: Vec<usize> = arg(&args, "--workers", "1,2")
        .split(',')
        .map(|w| w.parse().expect("--workers 1,2"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), images, size);
    let set = Arc::new(source::open(dir.path()).unwrap().train);
    let labels: Vec<i64> = set.labels().iter().map(|&l| l as i64).collect();
    let sampler = PkSampler::new(&labels, 8, 16, 0).unwrap();
    for channels in [1, 3] {
        let transform = Arc::new(Transform {
            channels,
            size: [size as usize, size as usize],
            mean: vec![0.5],
            std: vec![0.5],
            augment: Some(AugmentConfig::default()),
        });
        for &w in &workers {
            let start = Instant::now();
            let mut loader = Loader::spawn(
                Arc::clone(&set),
                Arc::clone(&transform),
                sampler.epoch(0),
                Arc::new(BadImages::default()),
                LoaderOptions {
                    workers: w,
                    prefetch: 4,
                    seed: 0,
                    epoch: 0,
                    first_batch: 0,
                },
            );
            let mut n = 0;
            while let Some(batch) = loader.next_batch() {
                n += batch.count;
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{{\"bench\": \"data\", \"png\": \"{size}x{size} rgb\", \"channels\": {channels}, \
                 \"workers\": {w}, \"images\": {n}, \"images_per_s\": {:.0}}}",
                n as f64 / secs
            );
        }
    }
}
