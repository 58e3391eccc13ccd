//! Backbone + head: images to embeddings.

use burn::prelude::*;

use crate::backbone::{Backbone, BackboneConfig};
use crate::head::{EmbeddingHead, EmbeddingHeadConfig};

/// Configuration of an [`EmbeddingModel`].
#[derive(Config, Debug)]
pub struct EmbeddingModelConfig {
    /// The backbone. Default: `small-cnn` for 1-channel images.
    #[config(default = "BackboneConfig::default()")]
    pub backbone: BackboneConfig,
    /// The head. Default: 64-d, no BatchNorm, L2-normalised.
    #[config(default = "EmbeddingHeadConfig::new()")]
    pub head: EmbeddingHeadConfig,
}

impl EmbeddingModelConfig {
    /// Builds the model with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> EmbeddingModel {
        EmbeddingModel {
            backbone: self.backbone.init(device),
            head: self.head.init(self.backbone.out_channels(), device),
        }
    }
}

/// An embedding network. Should be created with [`EmbeddingModelConfig`].
#[derive(Module, Debug)]
pub struct EmbeddingModel {
    backbone: Backbone,
    head: EmbeddingHead,
}

impl EmbeddingModel {
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, dim]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.backbone.forward(images))
    }
}
