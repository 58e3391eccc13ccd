//! Max pooling as a Burn operation: [`max_pool2d`] runs a `burn::nn::pool::MaxPool2d` through
//! this crate's pooling kernel on flex devices in f32 (forward, and a backward that recomputes
//! each window's winner instead of keeping Burn's i64 index tensor), and through Burn's own
//! `MaxPool2d::forward` everywhere else. Same values and gradients as Burn's, ties included.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::{DType, IntDType};

/// The pooling as a backend operation; the default bodies are Burn's own max pooling.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait FastPoolBackend: Backend {
    /// Max pooling of `x` `[N, C, H, W]`, dilation 1, floor output size.
    fn fast_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::max_pool2d(x, kernel, stride, padding, [1, 1], false)
    }

    /// The gradient with respect to `x` of [`Self::fast_max_pool2d`].
    fn fast_max_pool2d_backward(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let indices = Self::max_pool2d_with_indices(
            x.clone(),
            kernel,
            stride,
            padding,
            [1, 1],
            false,
            IntDType::I64,
        )
        .indices;
        Self::max_pool2d_with_indices_backward(
            x,
            kernel,
            stride,
            padding,
            [1, 1],
            false,
            output_grad,
            indices,
        )
        .x_grad
    }
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;
    use burn::backend::Flex;
    use burn_flex::FlexTensor;

    use crate::burn_conv::flex::values;
    use crate::pool::{PoolShape, max_pool2d_backward, max_pool2d_forward};

    /// `(N, C)` and the plane geometry of `x`.
    fn geometry(
        x: &FlexTensor,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> ([usize; 2], PoolShape) {
        let s = x.layout().shape();
        let shape = PoolShape {
            size: [s[2], s[3]],
            kernel,
            stride,
            padding,
        };
        ([s[0], s[1]], shape)
    }

    impl FastPoolBackend for Flex {
        fn fast_max_pool2d(
            x: FloatTensor<Self>,
            kernel: [usize; 2],
            stride: [usize; 2],
            padding: [usize; 2],
        ) -> FloatTensor<Self> {
            crate::burn_conv::count(|c| c.max_pools += 1);
            let ([n, c], shape) = geometry(&x, kernel, stride, padding);
            let [oh, ow] = shape.out_size();
            let out = max_pool2d_forward(&values(&x), &shape);
            FlexTensor::from_data(TensorData::new(out, vec![n, c, oh, ow]))
        }

        fn fast_max_pool2d_backward(
            x: FloatTensor<Self>,
            kernel: [usize; 2],
            stride: [usize; 2],
            padding: [usize; 2],
            output_grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let (_, shape) = geometry(&x, kernel, stride, padding);
            let dx = max_pool2d_backward(&values(&x), &values(&output_grad), &shape);
            FlexTensor::from_data(TensorData::new(dx, x.layout().shape().to_vec()))
        }
    }
}

impl<B: Backend + FastPoolBackend, C: CheckpointStrategy> FastPoolBackend for Autodiff<B, C> {
    fn fast_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Pool {
            kernel: [usize; 2],
            stride: [usize; 2],
            padding: [usize; 2],
        }

        impl<B: Backend + FastPoolBackend> Backward<B, 1> for Pool {
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_x] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                if let Some(node) = node_x {
                    let dx = B::fast_max_pool2d_backward(
                        ops.state,
                        self.kernel,
                        self.stride,
                        self.padding,
                        dy,
                    );
                    grads.register::<B>(node.id, dx);
                }
            }
        }

        let op = Pool {
            kernel,
            stride,
            padding,
        };
        match op.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let out = B::fast_max_pool2d(x.clone(), kernel, stride, padding);
                prep.finish(x, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fast_max_pool2d(
                x.into_primitive(),
                kernel,
                stride,
                padding,
            )),
        }
    }
}

/// `pool.forward(x)`, through this crate's kernel where it applies (flex, f32, dilation 1,
/// floor output size, symmetric padding, a non-empty output), else through Burn's own max
/// pooling. Training and inference alike.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let (top, left, bottom, right) = match pool.padding {
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
        // "Same" may be asymmetric; Burn's path computes it.
        PaddingConfig2d::Same => return pool.forward(x),
    };
    let padding = [top, left];
    let shape = crate::pool::PoolShape {
        size: [h, w],
        kernel: pool.kernel_size,
        stride: pool.stride,
        padding,
    };
    let fits = top == bottom
        && left == right
        && (0..2).all(|i| padding[i] < pool.kernel_size[i] && pool.stride[i] >= 1)
        && shape.out_size().iter().all(|&s| s > 0);
    if !super::burn_conv::on_flex(&x.device())
        || super::burn_conv::turned_off()
        || x.dtype() != DType::F32
        || pool.dilation != [1, 1]
        || pool.ceil_mode
        || !fits
    {
        return pool.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as FastPoolBackend>::fast_max_pool2d(
        x.into_dispatch(),
        pool.kernel_size,
        pool.stride,
        padding,
    ))
}
