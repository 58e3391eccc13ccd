//! Embedding networks for Triplet: a backbone (an image to a feature map) and an embedding
//! head (the feature map to an L2-normalised vector).
//!
//! - [`BackboneConfig`] chooses the backbone: the reference CNN of the benchmark protocols (`docs/PROTOCOLS.md`)
//!   ([`SmallCnnConfig`], `small-cnn`) for small images, or torchvision's ResNet-18/34/50/101/152
//!   ([`ResNetConfig`]) for photos, with torchvision's parameter names.
//! - [`torchvision`] imports a torchvision state dict (`.pth` or safetensors) into a ResNet
//!   ([`EmbeddingModel::load_torchvision`]); [`EmbeddingModel::freeze_backbone`] and
//!   [`EmbeddingModel::freeze_backbone_batch_norm`] fine-tune part of it.
//! - [`EmbeddingHeadConfig`]: global average pool, linear to `dim`, optional BatchNorm,
//!   optional L2 normalisation.
//! - [`EmbeddingModelConfig`] puts them together; the model saves and loads through Burn's
//!   records (`Module::save_file` / `load_file`, burnpack files).
//!
//! # Example
//! ```
//! use burn::prelude::*;
//! use triplet_model::{EmbeddingModelConfig, EmbeddingHeadConfig};
//!
//! let device = Device::flex();
//! let model = EmbeddingModelConfig::new()
//!     .with_head(EmbeddingHeadConfig::new().with_dim(32))
//!     .init(&device);
//! let images = Tensor::<4>::zeros([2, 1, 28, 28], &device);
//! let embeddings = model.forward(images);
//! assert_eq!(embeddings.dims(), [2, 32]);
//! ```
#![deny(missing_docs)]

mod backbone;
mod head;
mod model;
pub mod torchvision;

pub use crate::{
    backbone::{
        Backbone, BackboneConfig, BasicBlock, Bottleneck, ConvBlock, Downsample, RESNET_DEPTHS,
        ResNet, ResNetConfig, ResidualBlock, SmallCnn, SmallCnnConfig,
    },
    head::{EmbeddingHead, EmbeddingHeadConfig},
    model::{EmbeddingModel, EmbeddingModelConfig},
};
