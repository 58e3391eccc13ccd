//! Batch-all's gradient as a hand-written backward (cargo feature `fused`), kept so that the
//! composed path's choice stays measurable: `cargo bench -p triplet-loss --bench loss
//! --features fused,flex -- --fused`. See the crate docs for the numbers.
//!
//! The op returns a zero `[1]` whose gradient with respect to `x` is that of
//! `Σᵢⱼ W[i,j]·‖xᵢ − xⱼ‖²`, namely `2·(diag(S·1) − S)·X` with `S = W + Wᵀ`: one `B×B` sum and
//! one `B×B·D` product, computed only in the backward pass. The loss's value is added as a
//! constant computed on the host. Euclidean distances enter through `W/(2D)`.
//!
//! Burn routes a backend extension only to the backends listed in its attribute, evaluated in
//! this crate; [`supported`] keeps every other device on the composed path instead of letting
//! the call panic.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Scalar, backend_extension};
use burn::prelude::*;

/// The backend operation behind [`pair_weight_grad`].
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait PairGradBackend: Backend {
    /// Forward on a concrete backend: a zero `[1]` that depends on `x`.
    fn pair_weight_grad(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let _ = w;
        Self::float_mul_scalar(Self::float_sum(x), Scalar::from(0.0f32))
    }
}

#[cfg(feature = "flex")]
impl PairGradBackend for burn::backend::Flex {}

impl<B: Backend + PairGradBackend, C: CheckpointStrategy> PairGradBackend for Autodiff<B, C> {
    fn pair_weight_grad(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PairGrad;

        impl<B: Backend> Backward<B, 1> for PairGrad {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_x] = ops.parents;
                let upstream = grads.consume::<B>(&ops.node); // [1]
                let (x, w) = ops.state;
                if let Some(node) = node_x {
                    let s = B::float_add(w.clone(), B::float_transpose(w));
                    let s = B::float_mul(s, B::float_reshape(upstream, [1, 1].into()));
                    let row_sum = B::float_sum_dim(s.clone(), 1); // [B, 1]
                    let grad =
                        B::float_sub(B::float_mul(row_sum, x.clone()), B::float_matmul(s, x));
                    grads.register::<B>(node.id, B::float_mul_scalar(grad, Scalar::from(2.0f32)));
                }
            }
        }

        let w = w.into_primitive(); // mined constant, not a graph input
        match PairGrad.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let out = B::pair_weight_grad(x.clone(), w.clone());
                prep.finish((x, w), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::pair_weight_grad(x.into_primitive(), w)),
        }
    }
}

/// Whether `TRIPLET_LOSS_FUSED=0` turned the fused path off, so that one benchmark binary
/// measures both: read once per process, not on every forward.
pub(crate) fn switched_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("TRIPLET_LOSS_FUSED").is_some_and(|v| v == "0"))
}

/// Whether `device`'s backend is one the extension was compiled for, unless
/// `TRIPLET_LOSS_FUSED=0` ([`switched_off`]).
pub(crate) fn supported(device: &Device) -> bool {
    if switched_off() {
        return false;
    }
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        _ => false,
    }
}

/// A zero `[1]` whose gradient with respect to `x` is that of `Σ W ⊙ ‖xᵢ − xⱼ‖²`.
pub(crate) fn pair_weight_grad(x: Tensor<2>, w: Tensor<2>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as PairGradBackend>::pair_weight_grad(
        x.into_dispatch(),
        w.into_dispatch(),
    ))
}
