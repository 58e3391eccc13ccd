//! The experiment config: commented TOML with a section per concern (`[data]`, `[model]`,
//! `[loss]`, `[optimizer]`, `[schedule]`, `[sampler]`, `[augment]`, `[train]`).
//!
//! Every field has a default, so an empty file (or no file) is a valid experiment; a file only
//! lists what it changes. Unknown fields are errors, so a typo never silently keeps a default.
//! [`ExperimentConfig::validate`] checks the values once, before anything runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use triplet_loss::{Distance, Mining, Reduction, TripletLossConfig};
use triplet_model::{EmbeddingHeadConfig, EmbeddingModelConfig, ResNetConfig, SmallCnnConfig};

/// A config that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown field or a value of the wrong type.
    #[error("invalid config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line, column, field).
        message: String,
    },
    /// A field has a value out of range.
    #[error("invalid config{}: {field} {problem}", source_of(.path))]
    Value {
        /// The file, when the config came from one.
        path: Option<PathBuf>,
        /// `section.field`.
        field: &'static str,
        /// What is wrong, with the value.
        problem: String,
    },
}

fn source_of(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// A config enum as written in the TOML (`semi-hard`, not `SemiHard`).
pub(crate) fn toml_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The whole experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Where the images come from and how they are split and shaped.
    pub data: DataConfig,
    /// The embedding network.
    pub model: ModelConfig,
    /// The triplet loss.
    pub loss: LossConfig,
    /// The optimiser.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// P×K batches.
    pub sampler: SamplerConfig,
    /// Training-time augmentation (never applied at evaluation).
    pub augment: AugmentConfig,
    /// Epochs, seed, checkpoints and logging.
    pub train: TrainConfig,
}

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

/// Backbones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    /// The reference CNN of `PROTOCOLS.md` (five conv-BN-ReLU blocks), for small images.
    SmallCnn,
    /// torchvision's ResNet-18.
    Resnet18,
    /// torchvision's ResNet-34.
    Resnet34,
    /// torchvision's ResNet-50.
    Resnet50,
    /// torchvision's ResNet-101.
    Resnet101,
    /// torchvision's ResNet-152.
    Resnet152,
}

impl BackboneKind {
    /// The ResNet depth, for the ResNets.
    pub fn resnet_depth(self) -> Option<usize> {
        match self {
            BackboneKind::SmallCnn => None,
            BackboneKind::Resnet18 => Some(18),
            BackboneKind::Resnet34 => Some(34),
            BackboneKind::Resnet50 => Some(50),
            BackboneKind::Resnet101 => Some(101),
            BackboneKind::Resnet152 => Some(152),
        }
    }
}

/// ImageNet's per-channel mean, the default normalisation for the ResNets.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The backbone. Default: `small-cnn`.
    pub backbone: BackboneKind,
    /// Embedding size. Default: 64.
    pub dim: usize,
    /// BatchNorm after the embedding layer. Default: false.
    pub batch_norm: bool,
    /// L2-normalise the embeddings. Default: true.
    pub normalize: bool,
    /// torchvision weights for a ResNet backbone (`.pth`/`.pt` or `.safetensors`), loaded at
    /// the start of a fresh run (`--pretrained` overrides). Relative paths are relative to the
    /// working directory. Default: none.
    pub pretrained: Option<PathBuf>,
    /// Train only the head: the backbone's weights and BatchNorm statistics stay as they are.
    /// Default: false.
    pub freeze_backbone: bool,
    /// Keep the backbone's BatchNorm layers on their running statistics (their affine weights
    /// still train), as is usual when fine-tuning on small P×K batches. Default: false.
    pub freeze_batch_norm: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::SmallCnn,
            dim: 64,
            batch_norm: false,
            normalize: true,
            pretrained: None,
            freeze_backbone: false,
            freeze_batch_norm: false,
        }
    }
}

/// Distances, as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DistanceKind {
    /// `‖a − b‖`.
    Euclidean,
    /// `‖a − b‖²`.
    SquaredEuclidean,
    /// `1 − cos(a, b)`.
    Cosine,
}

/// Mining strategies, as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MiningKind {
    /// Every valid triplet.
    All,
    /// Hardest positive and negative per anchor.
    Hard,
    /// FaceNet's semi-hard negatives.
    SemiHard,
}

/// Reductions, as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReductionKind {
    /// Mean over mined triplets.
    Mean,
    /// Mean over triplets with a positive loss.
    MeanActive,
    /// Sum.
    Sum,
}

/// `[loss]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Margin α. Default: 0.2.
    pub margin: f64,
    /// Default: `euclidean`.
    pub distance: DistanceKind,
    /// Default: `semi-hard`.
    pub mining: MiningKind,
    /// Default: `mean`.
    pub reduction: ReductionKind,
    /// Soft margin (softplus) instead of the hinge. Default: false.
    pub soft: bool,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            margin: 0.2,
            distance: DistanceKind::Euclidean,
            mining: MiningKind::SemiHard,
            reduction: ReductionKind::Mean,
            soft: false,
        }
    }
}

/// Optimisers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (L2 weight decay added to the gradient).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with momentum.
    Sgd,
}

/// `[optimizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Default: `adam`.
    pub name: OptimizerKind,
    /// Peak learning rate. Default: 1e-3.
    pub lr: f64,
    /// Weight decay. Default: 0 for `adam` and `sgd`, 0.01 for `adamw` (PyTorch's defaults).
    pub weight_decay: Option<f64>,
    /// SGD momentum (0 for none). Default: 0.9.
    pub momentum: f64,
    /// Clip the gradient's global norm to this value. Default: none.
    pub grad_clip_norm: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            name: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: None,
            momentum: 0.9,
            grad_clip_norm: None,
        }
    }
}

/// Learning-rate schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The peak rate throughout.
    Constant,
    /// Cosine decay from the peak to `min_lr` over the run.
    Cosine,
    /// Multiply by `gamma` every `step_epochs` epochs.
    Step,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Default: `constant`.
    pub name: ScheduleKind,
    /// Linear warm-up from 0 over this many steps. Default: 0.
    pub warmup_steps: u64,
    /// Final rate of `cosine`. Default: 0.
    pub min_lr: f64,
    /// Period of `step`, in epochs. Default: 10.
    pub step_epochs: u64,
    /// Factor of `step`. Default: 0.1.
    pub gamma: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            name: ScheduleKind::Constant,
            warmup_steps: 0,
            min_lr: 0.0,
            step_epochs: 10,
            gamma: 0.1,
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

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs. Default: 10.
    pub epochs: u64,
    /// Seed of the initial weights, the sampler and the augmentation. Default: 0.
    pub seed: u64,
    /// Also checkpoint every N steps (0: only at the end of each epoch). Default: 0.
    pub checkpoint_every_steps: u64,
    /// Checkpoints kept (the newest ones). Default: 2.
    pub keep_checkpoints: usize,
    /// A progress line every N steps when the output is not a terminal. Default: 20.
    pub log_every_steps: u64,
    /// Images per forward pass when embedding the evaluation split. Default: 256.
    pub eval_batch: usize,
    /// Validate on the evaluation split every N epochs, and after the last: P@1, Recall@K,
    /// R-Precision and MAP@R (leave-one-out); the checkpoint with the best MAP@R is kept as
    /// `checkpoints/best`. 0: evaluate only at the end. Default: 1.
    pub validate_every_epochs: u64,
    /// Stop after N validations without a better MAP@R (0: never). Default: 0.
    pub early_stopping_patience: u64,
    /// Write `curves.png` and `embeddings_pca.png` into the run folder at the end. Default:
    /// true.
    pub plots: bool,
    /// Float type of the training device: `f32`, or `f16` / `bf16` where the device supports
    /// them (weights, activations and gradients all in that type: Burn 0.22.1 has no
    /// autocast). Default: `f32`.
    pub precision: Precision,
}

/// Float types a run can train in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "f16" | "fp16" | "half" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!(
                "unknown precision `{other}`; expected f32, f16 or bf16"
            )),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            seed: 0,
            checkpoint_every_steps: 0,
            keep_checkpoints: 2,
            log_every_steps: 20,
            eval_batch: 256,
            validate_every_epochs: 1,
            early_stopping_patience: 0,
            plots: true,
            precision: Precision::F32,
        }
    }
}

impl ExperimentConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// Parses TOML text (not validated). The error is one line: where (line, column, section
    /// and the line's text) and what.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().replace('\n', " ");
            let Some(span) = e.span() else {
                return message;
            };
            let start = span.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_no = text[..start].matches('\n').count() + 1;
            let column = text[line_start..start].chars().count() + 1;
            let line = text[line_start..].lines().next().unwrap_or("").trim();
            let section = text[..line_start]
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .map(|l| format!(" in {}", l.split('#').next().unwrap_or(l).trim()))
                .unwrap_or_default();
            format!("line {line_no}, column {column}{section} (`{line}`): {message}")
        })
    }

    /// The config as TOML, as saved in a run folder.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config types serialise to TOML")
    }

    /// Checks every value; the first problem is returned with its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, problem: String| {
            Err(ConfigError::Value {
                path: None,
                field,
                problem,
            })
        };
        let d = &self.data;
        if let Some(c) = d.channels
            && c != 1
            && c != 3
        {
            return bad("data.channels", format!("must be 1 or 3, got {c}"));
        }
        if let Some([h, w]) = d.size
            && (h < 4 || w < 4 || h > 4096 || w > 4096)
        {
            return bad(
                "data.size",
                format!("must be within 4..=4096, got [{h}, {w}]"),
            );
        }
        for (field, values) in [("data.mean", &d.mean), ("data.std", &d.std)] {
            if let Some(v) = values {
                if v.len() != 1 && v.len() != 3 {
                    return bad(field, format!("needs 1 or 3 values, got {}", v.len()));
                }
                if v.iter().any(|x| !x.is_finite()) {
                    return bad(field, format!("must be finite, got {v:?}"));
                }
            }
        }
        if let Some(s) = &d.std
            && s.iter().any(|&x| x <= 0.0)
        {
            return bad("data.std", format!("must be > 0, got {s:?}"));
        }
        if !(d.held_out_fraction > 0.0 && d.held_out_fraction < 1.0) {
            return bad(
                "data.held_out_fraction",
                format!("must be in (0, 1), got {}", d.held_out_fraction),
            );
        }
        if !(d.crop_fraction > 0.0 && d.crop_fraction <= 1.0) {
            return bad(
                "data.crop_fraction",
                format!("must be in (0, 1], got {}", d.crop_fraction),
            );
        }
        if d.workers > 64 {
            return bad(
                "data.workers",
                format!("must be at most 64, got {}", d.workers),
            );
        }
        if self.model.pretrained.is_some() && self.model.backbone.resnet_depth().is_none() {
            return bad(
                "model.pretrained",
                format!(
                    "torchvision weights need a ResNet backbone (resnet18, resnet34, resnet50, \
                     resnet101, resnet152), got `{}`",
                    toml_name(&self.model.backbone)
                ),
            );
        }
        if self.model.dim == 0 || self.model.dim > 65536 {
            return bad(
                "model.dim",
                format!("must be within 1..=65536, got {}", self.model.dim),
            );
        }
        let l = &self.loss;
        if !(l.margin.is_finite() && l.margin >= 0.0) {
            return bad(
                "loss.margin",
                format!("must be finite and >= 0, got {}", l.margin),
            );
        }
        let o = &self.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return bad("optimizer.lr", format!("must be > 0, got {}", o.lr));
        }
        if let Some(wd) = o.weight_decay
            && !(wd.is_finite() && wd >= 0.0)
        {
            return bad("optimizer.weight_decay", format!("must be >= 0, got {wd}"));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return bad(
                "optimizer.momentum",
                format!("must be in [0, 1), got {}", o.momentum),
            );
        }
        if let Some(c) = o.grad_clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad("optimizer.grad_clip_norm", format!("must be > 0, got {c}"));
        }
        let s = &self.schedule;
        if !(s.min_lr.is_finite() && s.min_lr >= 0.0 && s.min_lr <= o.lr) {
            return bad(
                "schedule.min_lr",
                format!("must be in [0, optimizer.lr], got {}", s.min_lr),
            );
        }
        if s.step_epochs == 0 {
            return bad("schedule.step_epochs", "must be at least 1, got 0".into());
        }
        if !(s.gamma.is_finite() && s.gamma > 0.0 && s.gamma <= 1.0) {
            return bad(
                "schedule.gamma",
                format!("must be in (0, 1], got {}", s.gamma),
            );
        }
        if let Some(k) = self.sampler.k
            && k < 2
        {
            return bad(
                "sampler.k",
                format!("must be at least 2 (each anchor needs a positive), got {k}"),
            );
        }
        if let Some(p) = self.sampler.p
            && p < 2
        {
            return bad(
                "sampler.p",
                format!("must be at least 2 (each anchor needs a negative), got {p}"),
            );
        }
        let a = &self.augment;
        let [s0, s1] = a.crop_scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return bad(
                "augment.crop_scale",
                format!("must satisfy 0 < min <= max <= 1, got [{s0}, {s1}]"),
            );
        }
        let [r0, r1] = a.crop_ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return bad(
                "augment.crop_ratio",
                format!("must satisfy 0 < min <= max, got [{r0}, {r1}]"),
            );
        }
        let t = &self.train;
        if t.epochs == 0 {
            return bad("train.epochs", "must be at least 1, got 0".into());
        }
        if t.keep_checkpoints == 0 {
            return bad("train.keep_checkpoints", "must be at least 1, got 0".into());
        }
        if t.eval_batch == 0 {
            return bad("train.eval_batch", "must be at least 1, got 0".into());
        }
        if t.early_stopping_patience > 0 && t.validate_every_epochs == 0 {
            return bad(
                "train.early_stopping_patience",
                "needs validation: set train.validate_every_epochs to at least 1".into(),
            );
        }
        Ok(())
    }

    /// The loss this config describes.
    pub fn loss(&self) -> TripletLossConfig {
        let l = &self.loss;
        TripletLossConfig::new()
            .with_margin(l.margin)
            .with_soft(l.soft)
            .with_distance(match l.distance {
                DistanceKind::Euclidean => Distance::Euclidean,
                DistanceKind::SquaredEuclidean => Distance::SquaredEuclidean,
                DistanceKind::Cosine => Distance::Cosine,
            })
            .with_mining(match l.mining {
                MiningKind::All => Mining::All,
                MiningKind::Hard => Mining::Hard,
                MiningKind::SemiHard => Mining::SemiHard,
            })
            .with_reduction(match l.reduction {
                ReductionKind::Mean => Reduction::Mean,
                ReductionKind::MeanActive => Reduction::MeanActive,
                ReductionKind::Sum => Reduction::Sum,
            })
    }

    /// The model this config describes, for `channels` input channels.
    pub fn model(&self, channels: usize) -> EmbeddingModelConfig {
        let m = &self.model;
        let backbone = match m.backbone.resnet_depth() {
            None => SmallCnnConfig::new().with_in_channels(channels).into(),
            Some(depth) => ResNetConfig::new(depth).with_in_channels(channels).into(),
        };
        EmbeddingModelConfig::new()
            .with_backbone(backbone)
            .with_head(
                EmbeddingHeadConfig::new()
                    .with_dim(m.dim)
                    .with_batch_norm(m.batch_norm)
                    .with_normalize(m.normalize),
            )
    }
}

impl ConfigError {
    fn in_file(self, file: &Path) -> Self {
        match self {
            ConfigError::Value { field, problem, .. } => ConfigError::Value {
                path: Some(file.to_owned()),
                field,
                problem,
            },
            other => other,
        }
    }
}
