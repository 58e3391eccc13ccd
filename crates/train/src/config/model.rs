//! `[model]`: the backbone and the embedding head.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use triplet_model::{EmbeddingHeadConfig, EmbeddingModelConfig, ResNetConfig, SmallCnnConfig};

use super::{ConfigError, toml_name};

/// Backbones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    /// The reference CNN of the benchmark protocols (`docs/PROTOCOLS.md`) (five conv-BN-ReLU blocks), for small images.
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

impl ModelConfig {
    /// Checks `[model]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pretrained.is_some() && self.backbone.resnet_depth().is_none() {
            return Err(ConfigError::value(
                "model.pretrained",
                format!(
                    "torchvision weights need a ResNet backbone (resnet18, resnet34, resnet50, \
                     resnet101, resnet152), got `{}`",
                    toml_name(&self.backbone)
                ),
            ));
        }
        if self.dim == 0 || self.dim > 65536 {
            return Err(ConfigError::value(
                "model.dim",
                format!("must be within 1..=65536, got {}", self.dim),
            ));
        }
        Ok(())
    }

    /// The model this section describes, for `channels` input channels.
    pub fn embedding_model(&self, channels: usize) -> EmbeddingModelConfig {
        let backbone = match self.backbone.resnet_depth() {
            None => SmallCnnConfig::new().with_in_channels(channels).into(),
            Some(depth) => ResNetConfig::new(depth).with_in_channels(channels).into(),
        };
        EmbeddingModelConfig::new()
            .with_backbone(backbone)
            .with_head(
                EmbeddingHeadConfig::new()
                    .with_dim(self.dim)
                    .with_batch_norm(self.batch_norm)
                    .with_normalize(self.normalize),
            )
    }
}
