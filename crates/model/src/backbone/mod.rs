//! Backbones: networks from images to a feature map. One enum of configs, so that more
//! backbones (ResNet) slot in beside `small-cnn`.

mod small_cnn;

use burn::prelude::*;

pub use small_cnn::{ConvBlock, SmallCnn, SmallCnnConfig};

/// Which backbone, with its settings. Default: [`BackboneConfig::SmallCnn`] for grey images.
#[derive(Config, Debug)]
#[non_exhaustive]
pub enum BackboneConfig {
    /// The reference CNN of `PROTOCOLS.md` (`small-cnn`).
    SmallCnn(SmallCnnConfig),
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

impl BackboneConfig {
    /// Channels of the feature map the backbone returns.
    pub fn out_channels(&self) -> usize {
        match self {
            BackboneConfig::SmallCnn(_) => SmallCnn::OUT_CHANNELS,
        }
    }

    /// Input channels the backbone expects.
    pub fn in_channels(&self) -> usize {
        match self {
            BackboneConfig::SmallCnn(c) => c.in_channels,
        }
    }

    /// Builds the backbone with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Backbone {
        match self {
            BackboneConfig::SmallCnn(c) => Backbone::SmallCnn(c.init(device)),
        }
    }
}

/// A backbone network. Should be created with [`BackboneConfig`].
#[derive(Module, Debug)]
#[non_exhaustive]
pub enum Backbone {
    /// The reference CNN.
    SmallCnn(SmallCnn),
}

impl Backbone {
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, out_channels, h, w]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            Backbone::SmallCnn(m) => m.forward(images),
        }
    }
}
