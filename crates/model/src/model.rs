//! Backbone + head: images to embeddings.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;

use crate::backbone::{Backbone, BackboneConfig};
use crate::head::{EmbeddingHead, EmbeddingHeadConfig};
use crate::torchvision::{ImportReport, TorchvisionError};

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

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// Stops training the backbone: its parameters get no gradients (the optimiser leaves them
    /// alone) and its BatchNorm layers keep their running statistics. Only the head trains.
    pub fn freeze_backbone(mut self) -> Self {
        self.backbone = self.backbone.freeze();
        self
    }

    /// Keeps the backbone's BatchNorm layers on their running statistics during training
    /// ([`Backbone::freeze_batch_norm_statistics`]); all weights still train.
    pub fn freeze_backbone_batch_norm(mut self) -> Self {
        self.backbone = self.backbone.freeze_batch_norm_statistics();
        self
    }

    /// Loads a torchvision ResNet state dict (`.pth`/`.pt` or `.safetensors`) into the
    /// backbone; the head keeps its weights. See [`crate::torchvision`].
    ///
    /// # Errors
    /// If the backbone is not a ResNet, or the file cannot be read or does not fit it (the
    /// error names the tensors). The model is unchanged then.
    pub fn load_torchvision(&mut self, path: &Path) -> Result<ImportReport, TorchvisionError> {
        match &mut self.backbone {
            Backbone::ResNet(resnet) => {
                let arch = format!("resnet{}", resnet.depth());
                crate::torchvision::load_resnet(resnet, path, &arch)
            }
            Backbone::SmallCnn(_) => Err(TorchvisionError::NotResNet {
                path: path.to_owned(),
                backbone: "small-cnn".into(),
            }),
        }
    }
}
