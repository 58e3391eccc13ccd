//! Input pipeline throughput (docs/PROTOCOLS.md, "data"): images per second the loader delivers
//! (decode, random resized crop, flip, normalise, batch) per worker count, with nothing else
//! running.
//!
//! - Default: a folder of small PNG files (`--size`, 28 px). Training at batch 128 consumes
//!   ~270 img/s on 2 cores (`train_step` bench), so the loader must stay well above that.
//! - `--photos`: photo-sized JPEGs (500×375, like CUB-200's) to 224 px RGB with ImageNet
//!   normalisation, both the training transform and the evaluation one (resize 256, centre
//!   crop 224).
//!
//! Run: `cargo bench -p triplet-train --bench data --profile dev -- [--photos] [--images N]
//! [--size S] [--workers 1,2,4] [--repeat 3]`; `-- --images N --write-photos DIR` only writes
//! the photo folder.

use std::f32::consts::TAU;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use triplet_train::config::{AugmentConfig, IMAGENET_MEAN, IMAGENET_STD, ResizeKind};
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

/// Photo-like JPEGs (quality 90): smooth colour fields, edges and sensor-like noise, so that the
/// files (~60–90 KB at 500×375) cost what a camera image of that size costs to decode.
fn write_photos(root: &Path, images: usize, [w, h]: [u32; 2]) {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in 0..images {
        let class = i % 20;
        let dir = root.join(format!("class{class:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (fx, fy, phase) = (
            (next() % 7 + 1) as f32,
            (next() % 5 + 1) as f32,
            (next() % 628) as f32 / 100.0,
        );
        let mut noise = next();
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            let base = 0.5 + 0.3 * (fx * u * TAU + phase).sin() * (fy * v * TAU).cos();
            let edge = if (u - 0.5) * (u - 0.5) + (v - 0.6) * (v - 0.6) < 0.04 {
                0.25
            } else {
                0.0
            };
            noise = noise
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let n = ((noise >> 58) as f32 - 32.0) / 255.0;
            let c = |k: f32| ((base + edge * k + n) * 255.0).clamp(0.0, 255.0) as u8;
            image::Rgb([c(1.0), c(0.5 + class as f32 / 40.0), c(-0.5)])
        });
        let file = std::fs::File::create(dir.join(format!("{i:06}.jpg"))).unwrap();
        let mut enc =
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90);
        enc.encode_image(&img).unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let images: usize = arg(&args, "--images", "3840").parse().expect("--images N");
    let workers: Vec<usize> = arg(&args, "--workers", "1,2")
        .split(',')
        .map(|w| w.parse().expect("--workers 1,2"))
        .collect();
    let repeat: usize = arg(&args, "--repeat", "1").parse().expect("--repeat N");
    let photos = args.iter().any(|a| a == "--photos");
    if let Some(i) = args.iter().position(|a| a == "--write-photos") {
        // Only write the photo folder (for a training run elsewhere) and stop.
        let root = Path::new(&args[i + 1]);
        write_photos(root, images, [500, 375]);
        println!("wrote {images} photos of 20 classes to {}", root.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // (label, input size, channels, normalisation, augmentation, resize)
    let mut cases = Vec::new();
    let size: u32;
    if photos {
        let [w, h] = [500, 375];
        write_photos(dir.path(), images, [w, h]);
        size = 224;
        for (augment, what) in [
            (Some(AugmentConfig::default()), "random-resized-crop+flip"),
            (None, "resize 256 + centre crop"),
        ] {
            cases.push((
                format!("jpeg {w}x{h} -> 224 {what}"),
                3,
                IMAGENET_MEAN.to_vec(),
                IMAGENET_STD.to_vec(),
                augment,
                ResizeKind::CenterCrop,
            ));
        }
    } else {
        size = arg(&args, "--size", "28").parse().expect("--size S");
        write_folder(dir.path(), images, size);
        for channels in [1, 3] {
            cases.push((
                format!("png {size}x{size} rgb"),
                channels,
                vec![0.5],
                vec![0.5],
                Some(AugmentConfig::default()),
                ResizeKind::Stretch,
            ));
        }
    }
    let set = Arc::new(source::open(dir.path()).unwrap().train);
    let labels: Vec<i64> = set.labels().iter().map(|&l| l as i64).collect();
    let sampler = PkSampler::new(&labels, 8, 16, 0).unwrap();
    for (label, channels, mean, std, augment, resize) in cases {
        let transform = Arc::new(Transform {
            channels,
            size: [size as usize, size as usize],
            mean,
            std,
            augment,
            resize,
            crop_fraction: 0.875,
        });
        for &w in &workers {
            let mut rates = Vec::new();
            let mut n = 0;
            for _ in 0..repeat {
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
                n = 0;
                while let Some(batch) = loader.next_batch() {
                    n += batch.count;
                }
                rates.push(n as f64 / start.elapsed().as_secs_f64());
            }
            println!(
                "{{\"bench\": \"data\", \"input\": \"{label}\", \"channels\": {channels}, \
                 \"workers\": {w}, \"images\": {n}, \"repeats\": {repeat}, \
                 \"images_per_s_median\": {:.0}}}",
                median(rates)
            );
        }
    }
}
