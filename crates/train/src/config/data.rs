//! `[data]`, `[sampler]` and `[augment]`: where the images come from, how they are split and
//! shaped, how batches are drawn and how training images are augmented.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How the data are split into training and evaluation parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitKind {
    /// Hold out whole classes: evaluate on classes never seen in training (open set).
    ByClass,
    /// Hold out a fraction of each class (closed set).
    WithinClass,
    /// Train on everything; no evaluation at the end.
    None,
}

/// How an image of another size than `data.size` becomes the model's input (when it is not
/// randomly cropped: evaluation, or training without `random_resized_crop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeKind {
    /// Resize the whole image to the size (the aspect ratio changes).
    Stretch,
    /// torchvision's evaluation transform: scale so that the size is `crop_fraction` of the
    /// image (`Resize(256)` for 224), then take the centre (`CenterCrop(224)`).
    CenterCrop,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// An image folder (one sub-folder per class), an IDX file or folder, or a CSV list
    /// (`path,label`). Relative paths are relative to the working directory. Default: none
    /// (`--data` must give it).
    pub path: Option<PathBuf>,
    /// Input channels: 1 (grey) or 3 (RGB). Default: 1 for IDX data, else 3.
    pub channels: Option<usize>,
    /// Input size `[height, width]`. Default: IDX data keep their size; image files are
    /// resized to `[32, 32]`.
    pub size: Option<[usize; 2]>,
    /// Per-channel mean subtracted after scaling to `[0, 1]`. Default: 0.5 per channel.
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation divided by. Default: 0.5 per channel.
    pub std: Option<Vec<f32>>,
    /// How the evaluation part is chosen. Default: `by-class`.
    pub split: SplitKind,
    /// With `by-class`: the fraction of classes held out (the last ones by name). With
    /// `within-class`: the fraction of each class held out. Default: 0.4.
    pub held_out_fraction: f64,
    /// With `by-class`: hold out exactly these class names instead. Default: empty.
    pub held_out_classes: Vec<String>,
    /// Decoding threads. Default: 2.
    pub workers: usize,
    /// Batches decoded ahead of training. Default: 4.
    pub prefetch: usize,
    /// How images of another size become `size` when not randomly cropped. Default:
    /// `center-crop` for the ResNets, `stretch` for `small-cnn`.
    pub resize: Option<ResizeKind>,
    /// With `resize = "center-crop"`: the part of the scaled image kept. Default: 0.875
    /// (224 of 256).
    pub crop_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: None,
            channels: None,
            size: None,
            mean: None,
            std: None,
            split: SplitKind::ByClass,
            held_out_fraction: 0.4,
            held_out_classes: Vec::new(),
            workers: 2,
            prefetch: 4,
            resize: None,
            crop_fraction: 0.875,
        }
    }
}

/// `[sampler]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Classes per batch. Default: from the data, `min(classes, 128 / K)`.
    pub p: Option<usize>,
    /// Images per class in a batch. Default: from the data, `min(16, median class size)`.
    pub k: Option<usize>,
}

/// `[augment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random resized crop (crop a random area and aspect, resize back). Default: true.
    pub random_resized_crop: bool,
    /// Crop area as a fraction of the image, `[min, max]`. Default: `[0.6, 1.0]`.
    pub crop_scale: [f64; 2],
    /// Crop aspect ratio (width / height), `[min, max]`. Default: `[0.75, 1.333]`.
    pub crop_ratio: [f64; 2],
    /// Mirror left-right with probability 0.5. Default: true.
    pub horizontal_flip: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            random_resized_crop: true,
            crop_scale: [0.6, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
            horizontal_flip: true,
        }
    }
}

impl DataConfig {
    /// Checks `[data]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::value(field, problem));
        if let Some(c) = self.channels
            && c != 1
            && c != 3
        {
            return bad("data.channels", format!("must be 1 or 3, got {c}"));
        }
        if let Some([h, w]) = self.size
            && (h < 4 || w < 4 || h > 4096 || w > 4096)
        {
            return bad(
                "data.size",
                format!("must be within 4..=4096, got [{h}, {w}]"),
            );
        }
        for (field, values) in [("data.mean", &self.mean), ("data.std", &self.std)] {
            if let Some(v) = values {
                if v.len() != 1 && v.len() != 3 {
                    return bad(field, format!("needs 1 or 3 values, got {}", v.len()));
                }
                if v.iter().any(|x| !x.is_finite()) {
                    return bad(field, format!("must be finite, got {v:?}"));
                }
            }
        }
        if let Some(s) = &self.std
            && s.iter().any(|&x| x <= 0.0)
        {
            return bad("data.std", format!("must be > 0, got {s:?}"));
        }
        if !(self.held_out_fraction > 0.0 && self.held_out_fraction < 1.0) {
            return bad(
                "data.held_out_fraction",
                format!("must be in (0, 1), got {}", self.held_out_fraction),
            );
        }
        if !(self.crop_fraction > 0.0 && self.crop_fraction <= 1.0) {
            return bad(
                "data.crop_fraction",
                format!("must be in (0, 1], got {}", self.crop_fraction),
            );
        }
        if self.workers > 64 {
            return bad(
                "data.workers",
                format!("must be at most 64, got {}", self.workers),
            );
        }
        Ok(())
    }
}

impl SamplerConfig {
    /// Checks `[sampler]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(k) = self.k
            && k < 2
        {
            return Err(ConfigError::value(
                "sampler.k",
                format!("must be at least 2 (each anchor needs a positive), got {k}"),
            ));
        }
        if let Some(p) = self.p
            && p < 2
        {
            return Err(ConfigError::value(
                "sampler.p",
                format!("must be at least 2 (each anchor needs a negative), got {p}"),
            ));
        }
        Ok(())
    }
}

impl AugmentConfig {
    /// Checks `[augment]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let [s0, s1] = self.crop_scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err(ConfigError::value(
                "augment.crop_scale",
                format!("must satisfy 0 < min <= max <= 1, got [{s0}, {s1}]"),
            ));
        }
        let [r0, r1] = self.crop_ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return Err(ConfigError::value(
                "augment.crop_ratio",
                format!("must satisfy 0 < min <= max, got [{r0}, {r1}]"),
            ));
        }
        Ok(())
    }
}
