//! The kernels as a Burn operation: [`conv2d`] runs a `burn::nn::conv::Conv2d` through them
//! on flex devices (forward, and a hand-written backward for the input, weight and bias
//! gradients), and through Burn's own `Conv2d::forward` everywhere else.
//!
//! The operation is a backend extension (`FastConvBackend`) whose default bodies call Burn's
//! convolution, so a backend it is not implemented for keeps Burn's path; flex overrides the
//! three bodies with this crate's kernels. Its `cfg` is decided in this crate (feature `flex`):
//! [`fast_path_compiled`] and [`fast_calls`] let a program check that it is really taken.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;

/// The convolution as a backend operation; the default bodies are Burn's own convolution.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait FastConvBackend: Backend {
    /// `conv2d(x, weight) + bias`, groups 1, dilation 1, symmetric padding.
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options(stride, padding))
    }

    /// The gradient with respect to `x`.
    fn fast_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options(stride, padding))
    }

    /// The gradient with respect to the weight.
    fn fast_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options(stride, padding))
    }
}

fn options(stride: [usize; 2], padding: [usize; 2]) -> ConvOptions<2> {
    ConvOptions::new(stride, padding, [1, 1], 1)
}

#[cfg(feature = "flex")]
pub(crate) mod flex {
    use super::*;
    use burn::backend::Flex;
    use burn_flex::FlexTensor;

    use crate::{Conv2dShape, conv2d_backward_input, conv2d_backward_weight, conv2d_forward};

    /// The shape of `x` convolved with `w`.
    fn shape_of(
        x: &FlexTensor,
        w: &FlexTensor,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Conv2dShape {
        let [n, cin, h, wd] = dims(x);
        let [cout, _, kh, kw] = dims(w);
        Conv2dShape {
            batch: n,
            in_channels: cin,
            out_channels: cout,
            height: h,
            width: wd,
            kernel: [kh, kw],
            stride,
            padding,
        }
    }

    fn dims<const D: usize>(t: &FlexTensor) -> [usize; D] {
        let shape = t.layout().shape();
        core::array::from_fn(|i| shape[i])
    }

    /// The tensor's f32 values in row-major order (borrowed when already contiguous). The
    /// kernels' callers only pass f32 tensors (their dtype is checked before the fast path).
    pub(crate) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
        match t.as_slice::<f32>() {
            Some(s) if t.is_contiguous() => std::borrow::Cow::Borrowed(s),
            _ => std::borrow::Cow::Owned(
                t.to_contiguous()
                    .as_slice::<f32>()
                    .map(<[f32]>::to_vec)
                    .expect("an f32 tensor"),
            ),
        }
    }

    fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(data, shape))
    }

    impl FastConvBackend for Flex {
        fn fast_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            stride: [usize; 2],
            padding: [usize; 2],
        ) -> FloatTensor<Self> {
            super::count(|c| c.convolutions += 1);
            let shape = shape_of(&x, &weight, stride, padding);
            let [oh, ow] = shape.out_size();
            let mut out = vec![0f32; shape.output_len()];
            conv2d_forward(
                &shape,
                &values(&x),
                &values(&weight),
                Some(&values(&bias)),
                &mut out,
            );
            tensor(out, vec![shape.batch, shape.out_channels, oh, ow])
        }

        fn fast_conv2d_x_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            output_grad: FloatTensor<Self>,
            stride: [usize; 2],
            padding: [usize; 2],
        ) -> FloatTensor<Self> {
            let shape = shape_of(&x, &weight, stride, padding);
            let mut dx = vec![0f32; shape.input_len()];
            conv2d_backward_input(&shape, &values(&output_grad), &values(&weight), &mut dx);
            tensor(
                dx,
                vec![shape.batch, shape.in_channels, shape.height, shape.width],
            )
        }

        fn fast_conv2d_weight_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            output_grad: FloatTensor<Self>,
            stride: [usize; 2],
            padding: [usize; 2],
        ) -> FloatTensor<Self> {
            let shape = shape_of(&x, &weight, stride, padding);
            let mut dw = vec![0f32; shape.weight_len()];
            conv2d_backward_weight(&shape, &values(&x), &values(&output_grad), &mut dw, None);
            tensor(
                dw,
                vec![
                    shape.out_channels,
                    shape.in_channels,
                    shape.kernel[0],
                    shape.kernel[1],
                ],
            )
        }
    }
}

impl<B: Backend + FastConvBackend, C: CheckpointStrategy> FastConvBackend for Autodiff<B, C> {
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FastConv {
            stride: [usize; 2],
            padding: [usize; 2],
        }

        impl<B: Backend + FastConvBackend> Backward<B, 3> for FastConv {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_x, node_w, node_b] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x, w) = ops.state;
                let (stride, padding) = (self.stride, self.padding);
                if let Some(node) = node_b {
                    // Σ over images and pixels: [N, C, H·W] → [C].
                    let [n, c, h, wd] = dims(&dy);
                    let flat = B::float_reshape(dy.clone(), [n, c, h * wd].into());
                    let db = B::float_sum_dim(B::float_sum_dim(flat, 2), 0);
                    grads.register::<B>(node.id, B::float_reshape(db, [c].into()));
                }
                if let Some(node) = node_w {
                    let dw = B::fast_conv2d_weight_backward(
                        x.clone(),
                        w.clone(),
                        dy.clone(),
                        stride,
                        padding,
                    );
                    grads.register::<B>(node.id, dw);
                }
                if let Some(node) = node_x {
                    grads.register::<B>(
                        node.id,
                        B::fast_conv2d_x_backward(x, w, dy, stride, padding),
                    );
                }
            }
        }

        let op = FastConv { stride, padding };
        match op
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, w, b) = (
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                );
                let out = B::fast_conv2d(x.clone(), w.clone(), b, stride, padding);
                prep.finish((x, w), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fast_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride,
                padding,
            )),
        }
    }
}

fn dims<T: TensorMetadata>(t: &T) -> [usize; 4] {
    let shape = t.shape();
    core::array::from_fn(|i| shape[i])
}

thread_local! {
    static FAST_CALLS: std::cell::Cell<FastCalls> = const { std::cell::Cell::new(FastCalls {
        convolutions: 0,
        batch_norms: 0,
        batch_norm_relus: 0,
        max_pools: 0,
    }) };
}

/// Forward passes this thread has run through the kernels so far, per operation (a program's
/// check that the fast path is taken: see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FastCalls {
    /// [`conv2d`] calls that ran this crate's convolution.
    pub convolutions: u64,
    /// [`crate::batch_norm`] and [`crate::batch_norm_relu`] calls that ran this crate's
    /// BatchNorm (training or inference).
    pub batch_norms: u64,
    /// Of those, [`crate::batch_norm_relu`] calls, whose ReLU was fused.
    pub batch_norm_relus: u64,
    /// [`crate::max_pool2d`] calls that ran this crate's max pooling.
    pub max_pools: u64,
}

/// Convolution forward passes this thread has run through these kernels so far (see
/// [`fast_calls_by_op`] for the other operations).
pub fn fast_calls() -> u64 {
    fast_calls_by_op().convolutions
}

/// The forward passes this thread has run through the kernels so far, per operation.
pub fn fast_calls_by_op() -> FastCalls {
    FAST_CALLS.with(std::cell::Cell::get)
}

/// Counts one fast forward pass of an operation on this thread.
pub(crate) fn count(op: impl FnOnce(&mut FastCalls)) {
    FAST_CALLS.with(|c| {
        let mut calls = c.get();
        op(&mut calls);
        c.set(calls);
    });
}

/// Whether the flex kernels are compiled in (the crate's `flex` feature).
pub const fn fast_path_compiled() -> bool {
    cfg!(feature = "flex")
}

/// Whether `device` (autodiff or not) is a flex device and the kernels are compiled for it.
pub(crate) fn on_flex(device: &Device) -> bool {
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        _ => false,
    }
}

/// `TRIPLET_FAST_CONV=0` sends every convolution, BatchNorm and max pooling through Burn's
/// path, so that one benchmark binary measures both.
pub(crate) fn turned_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("TRIPLET_FAST_CONV").is_some_and(|v| v == "0"))
}

/// The stride and symmetric padding with which `conv` on an `x` of size `[h, w]` can run
/// through the kernels on `device`, or `None` for Burn's path: another backend, another float
/// type than f32, dilation, groups, or asymmetric padding.
fn fast_geometry(conv: &Conv2d, x: &Tensor<4>) -> Option<([usize; 2], [usize; 2])> {
    if !fast_path_compiled() || conv.groups != 1 || conv.dilation != [1, 1] || turned_off() {
        return None;
    }
    if !on_flex(&x.device()) || x.dtype() != DType::F32 || conv.weight.val().dtype() != DType::F32 {
        return None;
    }
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
        // "Same" is symmetric for odd kernels at stride 1; Burn's path handles the rest.
        PaddingConfig2d::Same => {
            let [kh, kw] = conv.kernel_size;
            if conv.stride != [1, 1] || kh % 2 == 0 || kw % 2 == 0 {
                return None;
            }
            ((kh / 2, kh / 2), (kw / 2, kw / 2))
        }
    };
    (top == bottom && left == right).then_some((conv.stride, [top, left]))
}

/// `conv.forward(x)`, through this crate's kernels where they apply (flex, f32, groups 1,
/// dilation 1, symmetric padding), else through Burn's own convolution. Same values, same
/// gradients (checked against Burn's flex convolution in the tests).
///
/// Mixed precision: an `x` of another float type than the layer's weights (half activations,
/// f32 master weights) runs in `x`'s type, with the weight and bias cast to it inside the
/// graph, so their gradients come back in the weights' own type (autocast, as PyTorch AMP
/// runs a convolution).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let weight_dtype = conv.weight.val().dtype();
    if x.dtype() != weight_dtype {
        return conv2d_autocast(conv, x);
    }
    let Some((stride, padding)) = fast_geometry(conv, &x) else {
        return conv.forward(x);
    };
    let weight = conv.weight.val();
    let bias = match &conv.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([weight.dims()[0]], &x.device()),
    };
    Tensor::from_dispatch(<Dispatch as FastConvBackend>::fast_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    ))
}

/// `conv` on an `x` whose float type is not the weights': Burn's convolution in `x`'s type,
/// the weight and bias cast to it (differentiably: the cast's backward casts the gradient back).
/// The padding is Burn's own (`Conv2d::forward`): "same" split as it splits it.
fn conv2d_autocast(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    let [_, _, h, w] = x.dims();
    let same = |kernel: usize, stride: usize, size: usize| {
        let out = size.div_ceil(stride);
        let total = if out > 0 {
            ((out - 1) * stride + kernel).saturating_sub(size)
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => [
            same(conv.kernel_size[0], conv.stride[0], h),
            same(conv.kernel_size[1], conv.stride[1], w),
        ],
    };
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    burn::tensor::module::conv2d(
        x,
        conv.weight.val().cast(dtype),
        conv.bias.as_ref().map(|b| b.val().cast(dtype)),
        options,
    )
}
