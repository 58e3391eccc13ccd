//! The embedding head: global average pool, linear to `dim`, optional BatchNorm, optional L2
//! normalisation.

use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;

/// Below this squared norm an embedding is left unscaled instead of divided by ~0.
const NORM_EPS: f64 = 1e-12;

/// Configuration of an [`EmbeddingHead`].
#[derive(Config, Debug)]
pub struct EmbeddingHeadConfig {
    /// Embedding dimension. Default: `64` (`docs/PROTOCOLS.md`).
    #[config(default = 64)]
    pub dim: usize,
    /// BatchNorm after the linear layer (BNNeck-style). Default: `false`.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Divide each embedding by its L2 norm (FaceNet). Default: `true`.
    #[config(default = true)]
    pub normalize: bool,
}

impl EmbeddingHeadConfig {
    /// Builds the head for a backbone with `in_channels` output channels.
    pub fn init(&self, in_channels: usize, device: &Device) -> EmbeddingHead {
        EmbeddingHead {
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            linear: LinearConfig::new(in_channels, self.dim).init(device),
            bn: self
                .batch_norm
                .then(|| BatchNormConfig::new(self.dim).init(device)),
            normalize: self.normalize,
        }
    }
}

/// Feature map to embedding. Should be created with [`EmbeddingHeadConfig`].
#[derive(Module, Debug)]
pub struct EmbeddingHead {
    pool: AdaptiveAvgPool2d,
    linear: Linear,
    bn: Option<BatchNorm>,
    normalize: bool,
}

impl EmbeddingHead {
    /// # Shapes
    /// - `features`: `[batch, channels, h, w]`
    /// - output: `[batch, dim]`, unit L2 norm when `normalize`
    ///
    /// Mixed precision: half `features` (from a backbone run in half on f32 weights) are cast
    /// to the head's float type first, so pooling, the projection, its BatchNorm, the
    /// normalisation and the loss on the embeddings run in f32 (as PyTorch AMP runs reductions).
    pub fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        let features = features.cast(self.linear.weight.val().dtype());
        let x: Tensor<2> = self.pool.forward(features).flatten(1, 3); // [B, C]
        let mut x = self.linear.forward(x); // [B, dim]
        if let Some(bn) = &self.bn {
            x = bn.forward(x);
        }
        if self.normalize {
            let sq = x.clone().square().sum_dim(1); // [B, 1]
            let tiny = sq.clone().lower_equal_elem(NORM_EPS);
            x = x / sq.mask_fill(tiny, 1.0).sqrt();
        }
        x
    }
}
