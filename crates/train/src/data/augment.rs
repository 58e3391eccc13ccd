//! From decoded pixels to the model's input, on the full-resolution image: the geometry (a
//! training random resized crop, or for evaluation a resize of the whole image or
//! torchvision's resize-and-centre-crop), a horizontal flip, then per-channel normalisation.
//!
//! The randomness of each image is a pure function of `(seed, epoch, batch, slot)`, not of a
//! shared generator, so results do not depend on which worker decodes what, and a resumed run
//! sees exactly the augmentations an uninterrupted one would.

use anyhow::Result;

use crate::config::{AugmentConfig, ExperimentConfig, IMAGENET_MEAN, IMAGENET_STD, ResizeKind};
use crate::data::decode::resample;
use crate::data::rng::SplitMix64;

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
    /// How an image of another size is brought to `size` when it is not randomly cropped.
    pub resize: ResizeKind,
    /// The part of the scaled image [`ResizeKind::CenterCrop`] keeps.
    pub crop_fraction: f64,
}

impl Transform {
    /// The input transform of `[data]` and `[augment]`: channels and size from the config, else
    /// the data's own (`native`, for IDX files), else 3 and 32×32; mean and std 0.5 by default, one
    /// value or one per channel. Evaluation uses it without `augment`.
    pub fn for_config(
        config: &ExperimentConfig,
        native: Option<(usize, [usize; 2])>,
    ) -> Result<Self> {
        let d = &config.data;
        let resnet = config.model.backbone.resnet_depth().is_some();
        // The ResNets: RGB (grey images are repeated), 224 px for photos, ImageNet normalisation
        // and torchvision's evaluation resize, as their pretrained weights expect.
        let channels = d
            .channels
            .or(if resnet { Some(3) } else { None })
            .or(native.map(|n| n.0))
            .unwrap_or(3);
        let size =
            d.size
                .or(native.map(|n| n.1))
                .unwrap_or(if resnet { [224, 224] } else { [32, 32] });
        let per_channel = |values: &Option<Vec<f32>>, field: &str| -> Result<Vec<f32>> {
            let default = match (resnet, field) {
                (true, "mean") if channels == 3 => IMAGENET_MEAN.to_vec(),
                (true, "std") if channels == 3 => IMAGENET_STD.to_vec(),
                _ => vec![0.5],
            };
            let v = values.clone().unwrap_or(default);
            if v.len() != 1 && v.len() != channels {
                anyhow::bail!(
                    "data.{field} has {} values for {channels} channel(s)",
                    v.len()
                );
            }
            Ok(v)
        };
        let augment = &config.augment;
        Ok(Self {
            channels,
            size,
            mean: per_channel(&d.mean, "mean")?,
            std: per_channel(&d.std, "std")?,
            augment: (augment.random_resized_crop || augment.horizontal_flip)
                .then(|| augment.clone()),
            resize: d.resize.unwrap_or(if resnet {
                ResizeKind::CenterCrop
            } else {
                ResizeKind::Stretch
            }),
            crop_fraction: d.crop_fraction,
        })
    }

    /// The same transform without augmentation, as evaluation and embedding use it.
    pub fn for_evaluation(self) -> Self {
        Self {
            augment: None,
            ..self
        }
    }

    /// Number of floats per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.size[0] * self.size[1]
    }

    /// Augments (if configured) and normalises `chw` (`channels × height × width` at the input
    /// size, values in `[0, 1]`) in place. `key` seeds this image's randomness.
    ///
    /// # Panics
    /// If `chw` does not have [`image_len`](Self::image_len) values.
    pub fn apply(&self, chw: &mut Vec<f32>, key: u64) {
        *chw = self.prepare(std::mem::take(chw), self.size, key);
    }

    /// The model input from an image of any size: `chw` is `channels × native[0] × native[1]`
    /// with values in `[0, 1]`. `key` seeds this image's randomness.
    ///
    /// # Panics
    /// If `chw` does not have `channels × native` values.
    pub fn prepare(&self, chw: Vec<f32>, native: [usize; 2], key: u64) -> Vec<f32> {
        let [h0, w0] = native;
        assert_eq!(
            chw.len(),
            self.channels * h0 * w0,
            "image has the wrong size"
        );
        let mut rng = SplitMix64::new(key);
        let rect = match &self.augment {
            Some(aug) if aug.random_resized_crop => Some(random_crop(native, aug, &mut rng)),
            // Already the input size: nothing to do, unless a centre crop zooms in (torchvision's
            // Resize(256) + CenterCrop(224) zooms a 224×224 photo too).
            _ if native == self.size
                && (self.resize == ResizeKind::Stretch || self.crop_fraction >= 1.0) =>
            {
                None
            }
            _ => Some(self.fixed_crop(native)),
        };
        let mut out = match rect {
            None => chw,
            Some(rect) => resample(&chw, self.channels, native, rect, self.size),
        };
        if let Some(aug) = &self.augment
            && aug.horizontal_flip
            && rng.unit() < 0.5
        {
            let [h, w] = self.size;
            for row in out.chunks_exact_mut(w).take(self.channels * h) {
                row.reverse();
            }
        }
        let plane = self.size[0] * self.size[1];
        for (c, values) in out.chunks_exact_mut(plane).enumerate() {
            let mean = self.mean[c % self.mean.len()];
            let inv_std = 1.0 / self.std[c % self.std.len()];
            for v in values {
                *v = (*v - mean) * inv_std;
            }
        }
        out
    }

    /// The source rectangle `[top, left, height, width]` when not randomly cropping.
    fn fixed_crop(&self, [h0, w0]: [usize; 2]) -> [f64; 4] {
        let (h0, w0) = (h0 as f64, w0 as f64);
        match self.resize {
            ResizeKind::Stretch => [0.0, 0.0, h0, w0],
            ResizeKind::CenterCrop => {
                let [h, w] = [self.size[0] as f64, self.size[1] as f64];
                // Scale so that the input covers `crop_fraction` of the scaled image on the
                // tighter side (torchvision: Resize(224 / 0.875 = 256), then CenterCrop(224)).
                let scale = (h / h0).max(w / w0) / self.crop_fraction;
                let (ch, cw) = ((h / scale).min(h0), (w / scale).min(w0));
                [(h0 - ch) / 2.0, (w0 - cw) / 2.0, ch, cw]
            }
        }
    }
}

/// torchvision's `RandomResizedCrop` on an image of `[h0, w0]` pixels: a crop of random area (a
/// fraction of the image in `crop_scale`) and aspect ratio (log-uniform in `crop_ratio`). After
/// 10 failed draws it falls back, as torchvision does, to the largest centred crop whose aspect
/// ratio is within `crop_ratio`.
fn random_crop([h0, w0]: [usize; 2], aug: &AugmentConfig, rng: &mut SplitMix64) -> [f64; 4] {
    let (h, w) = (h0 as f64, w0 as f64);
    let area = h * w;
    let (log_r0, log_r1) = (aug.crop_ratio[0].ln(), aug.crop_ratio[1].ln());
    for _ in 0..10 {
        let target =
            area * (aug.crop_scale[0] + rng.unit() * (aug.crop_scale[1] - aug.crop_scale[0]));
        let ratio = (log_r0 + rng.unit() * (log_r1 - log_r0)).exp();
        let cw = (target * ratio).sqrt();
        let ch = (target / ratio).sqrt();
        if cw <= w && ch <= h {
            let top = rng.unit() * (h - ch);
            let left = rng.unit() * (w - cw);
            return [top, left, ch, cw];
        }
    }
    let (lo, hi) = (aug.crop_ratio[0], aug.crop_ratio[1]);
    let (ch, cw) = if w / h < lo {
        ((w / lo).round().min(h), w)
    } else if w / h > hi {
        (h, (h * hi).round().min(w))
    } else {
        (h, w)
    };
    [(h - ch) / 2.0, (w - cw) / 2.0, ch, cw]
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
            resize: ResizeKind::Stretch,
            crop_fraction: 0.875,
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

    /// An 8×16 ramp (value = column) through `transform` to 4×4, without normalising.
    fn ramp_to_4x4(
        resize: ResizeKind,
        crop_fraction: f64,
        augment: Option<AugmentConfig>,
    ) -> Vec<f32> {
        let t = Transform {
            mean: vec![0.0],
            std: vec![1.0],
            resize,
            crop_fraction,
            ..transform(augment)
        };
        let img: Vec<f32> = (0..8 * 16).map(|i| (i % 16) as f32).collect();
        t.prepare(img, [8, 16], 5)
    }

    #[test]
    fn centre_crop_keeps_the_middle_of_a_wide_image() {
        // Fraction 1: the middle 8×8 (columns 4..12) shrunk 2×; a symmetric filter keeps a
        // ramp's value at each output pixel's centre: 4.5, 6.5, 8.5, 10.5.
        let out = ramp_to_4x4(ResizeKind::CenterCrop, 1.0, None);
        for row in out.chunks(4) {
            for (v, want) in row.iter().zip([4.5, 6.5, 8.5, 10.5]) {
                assert!((v - want).abs() < 1e-5, "{row:?}");
            }
        }
        // 0.5: the middle 4×4 (columns 6..10) at its own scale.
        let out = ramp_to_4x4(ResizeKind::CenterCrop, 0.5, None);
        assert!(out.chunks(4).all(|r| r == [6.0, 7.0, 8.0, 9.0]), "{out:?}");
    }

    #[test]
    fn centre_crop_zooms_an_image_already_at_the_input_size() {
        // torchvision: Resize(size / fraction) then CenterCrop(size) zooms in even then.
        let img: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
        let t = |resize, crop_fraction| Transform {
            mean: vec![0.0],
            std: vec![1.0],
            resize,
            crop_fraction,
            ..transform(None)
        };
        assert_eq!(
            t(ResizeKind::Stretch, 0.5).prepare(img.clone(), [4, 4], 0),
            img
        );
        assert_eq!(
            t(ResizeKind::CenterCrop, 1.0).prepare(img.clone(), [4, 4], 0),
            img
        );
        // Fraction 0.5: the middle 2×2 (columns 1..3) fills the 4×4 input; output pixel
        // centres fall at 1.25, 1.75, 2.25, 2.75, where the ramp reads 0.75 … 2.25.
        let zoomed = t(ResizeKind::CenterCrop, 0.5).prepare(img, [4, 4], 0);
        for row in zoomed.chunks(4) {
            assert_eq!(row, [0.75, 1.25, 1.75, 2.25]);
        }
    }

    #[test]
    fn stretch_sees_the_whole_image_and_averages_when_shrinking() {
        let out = ramp_to_4x4(ResizeKind::Stretch, 0.875, None);
        for row in out.chunks(4) {
            assert!(row.windows(2).all(|w| w[1] - w[0] > 3.0), "{row:?}");
            assert!(row[0] < 2.5 && row[3] > 12.5, "{row:?}");
        }
    }

    #[test]
    fn random_crops_of_a_larger_image_have_the_input_size() {
        let aug = AugmentConfig {
            random_resized_crop: true,
            horizontal_flip: true,
            ..AugmentConfig::default()
        };
        let a = ramp_to_4x4(ResizeKind::CenterCrop, 0.875, Some(aug.clone()));
        assert_eq!(a.len(), 16);
        assert!(a.iter().all(|v| (0.0..=15.0).contains(v)), "{a:?}");
        assert_eq!(a, ramp_to_4x4(ResizeKind::CenterCrop, 0.875, Some(aug)));
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
