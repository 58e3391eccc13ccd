//! From decoded pixels to the model's input: training augmentation (random resized crop,
//! horizontal flip) then per-channel normalisation. Evaluation only normalises.
//!
//! The randomness of each image is a pure function of `(seed, epoch, batch, slot)`, not of a
//! shared generator, so results do not depend on which worker decodes what, and a resumed run
//! sees exactly the augmentations an uninterrupted one would.

use crate::config::AugmentConfig;
use crate::data::sampler::SplitMix64;

/// How one image becomes a model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    /// 1 or 3.
    pub channels: usize,
    /// `[height, width]` of the model input.
    pub size: [usize; 2],
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
    /// Augmentation; `None` at evaluation.
    pub augment: Option<AugmentConfig>,
}

impl Transform {
    /// Number of floats per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.size[0] * self.size[1]
    }

    /// Augments (if configured) and normalises `chw` (`channels × height × width`, values in
    /// `[0, 1]`) in place. `key` seeds this image's randomness.
    ///
    /// # Panics
    /// If `chw` does not have [`image_len`](Self::image_len) values.
    pub fn apply(&self, chw: &mut Vec<f32>, key: u64) {
        assert_eq!(chw.len(), self.image_len(), "image has the wrong size");
        if let Some(aug) = &self.augment {
            let mut rng = SplitMix64::new(key);
            if aug.random_resized_crop {
                *chw = self.random_resized_crop(chw, aug, &mut rng);
            }
            if aug.horizontal_flip && rng.unit() < 0.5 {
                let [h, w] = self.size;
                for row in chw.chunks_exact_mut(w).take(self.channels * h) {
                    row.reverse();
                }
            }
        }
        let plane = self.size[0] * self.size[1];
        for (c, values) in chw.chunks_exact_mut(plane).enumerate() {
            let mean = self.mean[c % self.mean.len()];
            let inv_std = 1.0 / self.std[c % self.std.len()];
            for v in values {
                *v = (*v - mean) * inv_std;
            }
        }
    }

    /// torchvision's `RandomResizedCrop`: a crop of random area (a fraction of the image in
    /// `crop_scale`) and aspect ratio (log-uniform in `crop_ratio`), resized back to the full
    /// size bilinearly. After 10 failed draws it falls back to the whole image.
    fn random_resized_crop(
        &self,
        chw: &[f32],
        aug: &AugmentConfig,
        rng: &mut SplitMix64,
    ) -> Vec<f32> {
        let [h, w] = self.size;
        let area = (h * w) as f64;
        let (log_r0, log_r1) = (aug.crop_ratio[0].ln(), aug.crop_ratio[1].ln());
        let mut crop = (0.0, 0.0, h as f64, w as f64);
        for _ in 0..10 {
            let target =
                area * (aug.crop_scale[0] + rng.unit() * (aug.crop_scale[1] - aug.crop_scale[0]));
            let ratio = (log_r0 + rng.unit() * (log_r1 - log_r0)).exp();
            let cw = (target * ratio).sqrt();
            let ch = (target / ratio).sqrt();
            if cw <= w as f64 && ch <= h as f64 {
                let top = rng.unit() * (h as f64 - ch);
                let left = rng.unit() * (w as f64 - cw);
                crop = (top, left, ch, cw);
                break;
            }
        }
        let (top, left, ch, cw) = crop;
        let plane = h * w;
        let mut out = vec![0.0f32; chw.len()];
        let (sy, sx) = (ch / h as f64, cw / w as f64);
        for y in 0..h {
            // Pixel centres, as `align_corners = false`.
            let fy = (top + (y as f64 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f64);
            let y0 = fy.floor() as usize;
            let y1 = (y0 + 1).min(h - 1);
            let wy = (fy - y0 as f64) as f32;
            for x in 0..w {
                let fx = (left + (x as f64 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f64);
                let x0 = fx.floor() as usize;
                let x1 = (x0 + 1).min(w - 1);
                let wx = (fx - x0 as f64) as f32;
                for c in 0..self.channels {
                    let p = &chw[c * plane..(c + 1) * plane];
                    let top_row = p[y0 * w + x0] * (1.0 - wx) + p[y0 * w + x1] * wx;
                    let bottom_row = p[y1 * w + x0] * (1.0 - wx) + p[y1 * w + x1] * wx;
                    out[c * plane + y * w + x] = top_row * (1.0 - wy) + bottom_row * wy;
                }
            }
        }
        out
    }
}

/// The randomness key of slot `slot` of batch `batch` in `epoch`.
pub fn image_key(seed: u64, epoch: u64, batch: usize, slot: usize) -> u64 {
    let mut rng = SplitMix64::new(seed ^ 0xD1B5_4A32_D192_ED03);
    let a = rng.next_u64() ^ epoch;
    let mut rng = SplitMix64::new(a);
    let b = rng.next_u64() ^ batch as u64;
    let mut rng = SplitMix64::new(b);
    rng.next_u64() ^ slot as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transform(augment: Option<AugmentConfig>) -> Transform {
        Transform {
            channels: 1,
            size: [4, 4],
            mean: vec![0.5],
            std: vec![0.25],
            augment,
        }
    }

    #[test]
    fn evaluation_only_normalises() {
        let mut img: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
        transform(None).apply(&mut img, 7);
        for (i, v) in img.iter().enumerate() {
            assert!((v - (i as f32 / 16.0 - 0.5) / 0.25).abs() < 1e-6);
        }
    }

    #[test]
    fn full_crop_without_flip_is_the_identity() {
        let aug = AugmentConfig {
            random_resized_crop: true,
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            horizontal_flip: false,
        };
        let mut img: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
        let mut plain = img.clone();
        transform(Some(aug)).apply(&mut img, 3);
        transform(None).apply(&mut plain, 3);
        for (a, b) in img.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn flip_mirrors_rows_and_is_seeded() {
        let aug = AugmentConfig {
            random_resized_crop: false,
            horizontal_flip: true,
            ..AugmentConfig::default()
        };
        let t = transform(Some(aug));
        let base: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
        let mut flipped = 0;
        for key in 0..200 {
            let mut img = base.clone();
            t.apply(&mut img, key);
            let mut again = base.clone();
            t.apply(&mut again, key);
            assert_eq!(img, again, "same key, same result");
            let mut plain = base.clone();
            transform(None).apply(&mut plain, key);
            if img != plain {
                flipped += 1;
                for r in 0..4 {
                    let row: Vec<f32> = plain[r * 4..r * 4 + 4].iter().rev().copied().collect();
                    assert_eq!(&img[r * 4..r * 4 + 4], row.as_slice());
                }
            }
        }
        assert!(
            (70..130).contains(&flipped),
            "about half flipped: {flipped}"
        );
    }

    #[test]
    fn crops_stay_within_the_pixel_range() {
        let t = Transform {
            mean: vec![0.0],
            std: vec![1.0],
            ..transform(Some(AugmentConfig::default()))
        };
        for key in 0..100 {
            let mut img: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
            t.apply(&mut img, key);
            assert!(img.iter().all(|v| (0.0..=1.0).contains(v)), "{img:?}");
        }
    }

    #[test]
    fn keys_differ_by_every_coordinate() {
        let k = image_key(1, 2, 3, 4);
        assert_ne!(k, image_key(0, 2, 3, 4));
        assert_ne!(k, image_key(1, 1, 3, 4));
        assert_ne!(k, image_key(1, 2, 2, 4));
        assert_ne!(k, image_key(1, 2, 3, 5));
        assert_eq!(k, image_key(1, 2, 3, 4));
    }
}
