//! Backbones: networks from images to a feature map, chosen by one enum of configs:
//! `small-cnn` for small images, torchvision's ResNets for photos.

mod resnet;
mod small_cnn;

use burn::prelude::*;

pub use resnet::{
    BasicBlock, Bottleneck, Downsample, RESNET_DEPTHS, ResNet, ResNetConfig, ResidualBlock,
};
pub use small_cnn::{ConvBlock, SmallCnn, SmallCnnConfig};

/// Which backbone, with its settings. Default: [`BackboneConfig::SmallCnn`] for grey images.
#[derive(Config, Debug)]
#[non_exhaustive]
pub enum BackboneConfig {
    /// The reference CNN of the benchmark protocols (`docs/PROTOCOLS.md`) (`small-cnn`).
    SmallCnn(SmallCnnConfig),
    /// torchvision's ResNet-18/34/50/101/152 (`resnet18`, …).
    ResNet(ResNetConfig),
}

impl Default for BackboneConfig {
    fn default() -> Self {
        BackboneConfig::SmallCnn(SmallCnnConfig::new())
    }
}

impl From<SmallCnnConfig> for BackboneConfig {
    fn from(config: SmallCnnConfig) -> Self {
        BackboneConfig::SmallCnn(config)
    }
}

impl From<ResNetConfig> for BackboneConfig {
    fn from(config: ResNetConfig) -> Self {
        BackboneConfig::ResNet(config)
    }
}

impl BackboneConfig {
    /// Channels of the feature map the backbone returns.
    pub fn out_channels(&self) -> usize {
        match self {
            BackboneConfig::SmallCnn(_) => SmallCnn::OUT_CHANNELS,
            BackboneConfig::ResNet(c) => c.out_channels(),
        }
    }

    /// Input channels the backbone expects.
    pub fn in_channels(&self) -> usize {
        match self {
            BackboneConfig::SmallCnn(c) => c.in_channels,
            BackboneConfig::ResNet(c) => c.in_channels,
        }
    }

    /// Builds the backbone with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Backbone {
        match self {
            BackboneConfig::SmallCnn(c) => Backbone::SmallCnn(c.init(device)),
            BackboneConfig::ResNet(c) => Backbone::ResNet(c.init(device)),
        }
    }
}

/// A backbone network. Should be created with [`BackboneConfig`].
// Built once per run; Burn's `Module` derive does not support boxed fields.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
#[non_exhaustive]
pub enum Backbone {
    /// The reference CNN.
    SmallCnn(SmallCnn),
    /// A torchvision ResNet.
    ResNet(ResNet),
}

impl Backbone {
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, out_channels, h, w]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            Backbone::SmallCnn(m) => m.forward(images),
            Backbone::ResNet(m) => m.forward(images),
        }
    }

    /// Keeps every BatchNorm of the backbone on its running statistics during training (they
    /// are neither used nor updated from batches), while its affine weights still train: the
    /// usual way to fine-tune a pretrained network on small P×K batches.
    pub fn freeze_batch_norm_statistics(mut self) -> Self {
        let norms: Vec<&mut burn::nn::BatchNorm> = match &mut self {
            Backbone::SmallCnn(m) => m.batch_norms_mut(),
            Backbone::ResNet(m) => m.batch_norms_mut(),
        };
        for bn in norms {
            bn.training = bn.training.clone().with_value(false);
        }
        self
    }
}
