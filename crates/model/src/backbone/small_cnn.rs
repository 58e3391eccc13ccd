//! The reference CNN of the benchmark protocols (`docs/PROTOCOLS.md`), for MNIST/CIFAR-scale images on CPU.
//!
//! conv3×3(→32)+BN+ReLU, conv3×3(32→32)+BN+ReLU, maxpool 2, conv3×3(32→64)+BN+ReLU,
//! conv3×3(64→64)+BN+ReLU, maxpool 2, conv3×3(64→128)+BN+ReLU. Padding keeps the size, so a
//! `[B, C, H, W]` input gives `[B, 128, H/4, W/4]` (floor), for any `C` and any `H, W ≥ 4`.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use triplet_kernels::{batch_norm_relu, conv2d, max_pool2d};

/// Configuration of [`SmallCnn`].
#[derive(Config, Debug)]
pub struct SmallCnnConfig {
    /// Input channels: 1 for grey images, 3 for RGB. Default: `1`.
    #[config(default = 1)]
    pub in_channels: usize,
}

impl SmallCnnConfig {
    /// Builds the network with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> SmallCnn {
        let block = |i, o| ConvBlock::new(i, o, device);
        SmallCnn {
            block1: block(self.in_channels, 32),
            block2: block(32, 32),
            block3: block(32, 64),
            block4: block(64, 64),
            block5: block(64, SmallCnn::OUT_CHANNELS),
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }
}

/// conv3×3 + BatchNorm + ReLU, size-preserving.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBlock {
    fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([in_channels, out_channels], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            bn: BatchNormConfig::new(out_channels).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm_relu(&self.bn, conv2d(&self.conv, x))
    }
}

/// The reference CNN. Should be created with [`SmallCnnConfig`].
#[derive(Module, Debug)]
pub struct SmallCnn {
    block1: ConvBlock,
    block2: ConvBlock,
    block3: ConvBlock,
    block4: ConvBlock,
    block5: ConvBlock,
    pool: MaxPool2d,
}

impl SmallCnn {
    /// Channels of the feature map it returns.
    pub const OUT_CHANNELS: usize = 128;

    /// # Shapes
    /// - `images`: `[batch, in_channels, height, width]`
    /// - output: `[batch, 128, height / 4, width / 4]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let x = self.block2.forward(self.block1.forward(images)); // [B, 32, H, W]
        let x = max_pool2d(&self.pool, x); // [B, 32, H/2, W/2]
        let x = self.block4.forward(self.block3.forward(x)); // [B, 64, H/2, W/2]
        let x = max_pool2d(&self.pool, x); // [B, 64, H/4, W/4]
        self.block5.forward(x) // [B, 128, H/4, W/4]
    }

    /// Every BatchNorm of the network.
    pub(crate) fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        vec![
            &mut self.block1.bn,
            &mut self.block2.bn,
            &mut self.block3.bn,
            &mut self.block4.bn,
            &mut self.block5.bn,
        ]
    }
}
