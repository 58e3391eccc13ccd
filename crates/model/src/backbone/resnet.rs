//! ResNet-18/34/50/101/152 (He et al. 2016), laid out as torchvision's `torchvision.models.resnet`
//! ("ResNet v1.5": a bottleneck block strides in its 3×3 convolution), without the average pool
//! and the classifier: the embedding head pools.
//!
//! Parameter names follow torchvision's state dict: `conv1`, `bn1`, `layer1.0.conv1`,
//! `layer1.0.bn1`, …, `layer2.0.downsample.{0,1}`. Burn names a BatchNorm's affine parameters
//! `gamma`/`beta` where PyTorch says `weight`/`bias`, the downsample pair is a struct
//! (`downsample.conv`, `downsample.bn`) where torchvision has a `Sequential`, and blocks are an
//! enum whose variant Burn's paths include; [`crate::torchvision`] maps all three when it imports
//! a torchvision state dict.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use triplet_kernels::{batch_norm, batch_norm_relu, conv2d, max_pool2d};

/// Configuration of a [`ResNet`]. Build with [`ResNetConfig::new`] from the depth.
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// 18, 34, 50, 101 or 152.
    pub depth: usize,
    /// Input channels. Default: `3` (torchvision's weights are for RGB).
    #[config(default = 3)]
    pub in_channels: usize,
}

/// Depths [`ResNetConfig`] knows.
pub const RESNET_DEPTHS: [usize; 5] = [18, 34, 50, 101, 152];

impl ResNetConfig {
    /// Blocks per stage and whether they are bottlenecks (torchvision's table).
    ///
    /// # Panics
    /// If the depth is not one of [`RESNET_DEPTHS`].
    fn layout(&self) -> ([usize; 4], bool) {
        match self.depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            101 => ([3, 4, 23, 3], true),
            152 => ([3, 8, 36, 3], true),
            d => panic!("ResNet depth must be one of {RESNET_DEPTHS:?}, got {d}"),
        }
    }

    /// Channels of the feature map: 512 for ResNet-18/34, 2048 for the bottleneck ones.
    pub fn out_channels(&self) -> usize {
        if self.layout().1 { 2048 } else { 512 }
    }

    /// Builds the network with fresh weights on `device`, initialised as torchvision does
    /// (Kaiming normal, fan-out, for convolutions; BatchNorm weight 1, bias 0).
    ///
    /// # Panics
    /// If the depth is not one of [`RESNET_DEPTHS`].
    pub fn init(&self, device: &Device) -> ResNet {
        let (blocks, bottleneck) = self.layout();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut in_planes = 64;
        let mut stage = |planes: usize, count: usize, stride: usize| -> Vec<ResidualBlock> {
            (0..count)
                .map(|i| {
                    let stride = if i == 0 { stride } else { 1 };
                    let downsample = (stride != 1 || in_planes != planes * expansion)
                        .then(|| Downsample::new(in_planes, planes * expansion, stride, device));
                    let block = if bottleneck {
                        ResidualBlock::Bottleneck(Bottleneck::new(
                            in_planes, planes, stride, downsample, device,
                        ))
                    } else {
                        ResidualBlock::Basic(BasicBlock::new(
                            in_planes, planes, stride, downsample, device,
                        ))
                    };
                    in_planes = planes * expansion;
                    block
                })
                .collect()
        };
        let layer1 = stage(64, blocks[0], 1);
        let layer2 = stage(128, blocks[1], 2);
        let layer3 = stage(256, blocks[2], 2);
        let layer4 = stage(512, blocks[3], 2);
        ResNet {
            depth: self.depth,
            conv1: conv(self.in_channels, 64, 7, 2, 3, device),
            bn1: BatchNormConfig::new(64).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }
}

/// A convolution without bias, torchvision's initialisation (`kaiming_normal_`, fan-out, ReLU).
fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// The shortcut of a block that changes the shape: 1×1 convolution (strided) and BatchNorm.
/// torchvision: `downsample.0` and `downsample.1`.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Downsample {
    fn new(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: conv(in_channels, out_channels, 1, stride, 0, device),
            bn: BatchNormConfig::new(out_channels).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm(&self.bn, conv2d(&self.conv, x))
    }
}

/// A block's shortcut: `x`, or its downsampled copy when the block changes the shape.
fn shortcut(downsample: &Option<Downsample>, x: &Tensor<4>) -> Tensor<4> {
    match downsample {
        Some(d) => d.forward(x.clone()),
        None => x.clone(),
    }
}

/// Two 3×3 convolutions (ResNet-18/34).
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(
        in_planes: usize,
        planes: usize,
        stride: usize,
        downsample: Option<Downsample>,
        device: &Device,
    ) -> Self {
        Self {
            conv1: conv(in_planes, planes, 3, stride, 1, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv(planes, planes, 3, 1, 1, device),
            bn2: BatchNormConfig::new(planes).init(device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, &x);
        let out = batch_norm_relu(&self.bn1, conv2d(&self.conv1, x));
        let out = batch_norm(&self.bn2, conv2d(&self.conv2, out));
        relu(out + identity)
    }
}

/// 1×1, 3×3 (strided), 1×1 ×4 convolutions (ResNet-50/101/152).
#[derive(Module, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    downsample: Option<Downsample>,
}

impl Bottleneck {
    fn new(
        in_planes: usize,
        planes: usize,
        stride: usize,
        downsample: Option<Downsample>,
        device: &Device,
    ) -> Self {
        Self {
            conv1: conv(in_planes, planes, 1, 1, 0, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv(planes, planes, 3, stride, 1, device),
            bn2: BatchNormConfig::new(planes).init(device),
            conv3: conv(planes, planes * 4, 1, 1, 0, device),
            bn3: BatchNormConfig::new(planes * 4).init(device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, &x);
        let out = batch_norm_relu(&self.bn1, conv2d(&self.conv1, x));
        let out = batch_norm_relu(&self.bn2, conv2d(&self.conv2, out));
        let out = batch_norm(&self.bn3, conv2d(&self.conv3, out));
        relu(out + identity)
    }
}

/// One residual block of either kind.
// Built once per network and never moved in a hot loop; Burn's `Module` derive does not
// support boxed fields.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ResidualBlock {
    /// ResNet-18/34.
    Basic(BasicBlock),
    /// ResNet-50 and deeper.
    Bottleneck(Bottleneck),
}

impl ResidualBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            ResidualBlock::Basic(b) => b.forward(x),
            ResidualBlock::Bottleneck(b) => b.forward(x),
        }
    }

    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let (mut norms, downsample) = match self {
            ResidualBlock::Basic(b) => (vec![&mut b.bn1, &mut b.bn2], &mut b.downsample),
            ResidualBlock::Bottleneck(b) => {
                (vec![&mut b.bn1, &mut b.bn2, &mut b.bn3], &mut b.downsample)
            }
        };
        if let Some(d) = downsample {
            norms.push(&mut d.bn);
        }
        norms
    }
}

/// A ResNet up to its last stage. Should be created with [`ResNetConfig`].
#[derive(Module, Debug)]
pub struct ResNet {
    depth: usize,
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: MaxPool2d,
    layer1: Vec<ResidualBlock>,
    layer2: Vec<ResidualBlock>,
    layer3: Vec<ResidualBlock>,
    layer4: Vec<ResidualBlock>,
}

impl ResNet {
    /// 18, 34, 50, 101 or 152.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// # Shapes
    /// - `images`: `[batch, in_channels, height, width]`
    /// - output: `[batch, 512 or 2048, ⌈height / 32⌉, ⌈width / 32⌉]` (torchvision's
    ///   arithmetic; any size from 1×1 works)
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let x = batch_norm_relu(&self.bn1, conv2d(&self.conv1, images));
        let mut x = max_pool2d(&self.maxpool, x);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        x
    }

    /// A network of the same shape with fresh weights, on the same device.
    pub(crate) fn fresh(&self) -> ResNet {
        let [_, in_channels, _, _] = self.conv1.weight.shape().dims();
        let device = self.conv1.weight.device();
        ResNetConfig::new(self.depth)
            .with_in_channels(in_channels)
            .init(&device)
    }

    /// Every BatchNorm of the network, stem first.
    pub(crate) fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut norms = vec![&mut self.bn1];
        for block in self
            .layer1
            .iter_mut()
            .chain(&mut self.layer2)
            .chain(&mut self.layer3)
            .chain(&mut self.layer4)
        {
            norms.extend(block.batch_norms_mut());
        }
        norms
    }
}
