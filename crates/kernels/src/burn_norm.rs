//! BatchNorm for NCHW on flex without layout copies: [`batch_norm`] runs a
//! `burn::nn::BatchNorm` in training mode through two passes per channel plane (statistics,
//! then normalisation) and a hand-written backward (two passes), where Burn's default
//! `batch_norm_train` makes a channels-first copy of the activation (`swap_dims`) in the
//! forward and two in the backward; in inference (a device without autodiff) one pass with
//! the running statistics. [`batch_norm_relu`] fuses the ReLU that follows: applied in the
//! normalisation's pass, its mask read from the saved output by both backward passes. Same
//! values as Burn's (biased variance for the normalisation, running statistics updated with
//! `momentum` as Burn does); a frozen BatchNorm on an autodiff device, other backends and
//! other float types take Burn's `BatchNorm::forward` (and `relu`).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::DType;

/// The operations; the default bodies are Burn's own batch norm.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait FastNormBackend: Backend {
    /// Per-channel mean and biased variance of `x` `[N, C, H, W]`, as `[2, C]`.
    fn fast_bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = x.shape();
        let c = shape[1];
        let m = shape.num_elements() / c;
        let flat = Self::float_reshape(Self::float_swap_dims(x, 0, 1), [c, m].into());
        let mean = Self::float_mean_dim(flat.clone(), 1); // [C, 1]
        let centred = Self::float_sub(flat, mean.clone());
        let var = Self::float_mean_dim(Self::float_mul(centred.clone(), centred), 1);
        Self::float_transpose(Self::float_cat(vec![mean, var], 1))
    }

    /// `(x − mean)·γ / √(var + ε) + β` with `stats` from [`Self::fast_bn_stats`] of the same `x`.
    fn fast_bn_apply(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let (mean, var) = split::<Self>(stats);
        Self::batch_norm(x, gamma, beta, mean, var, epsilon)
    }

    /// The input gradient of the training batch norm (statistics of `x` itself), given the
    /// γ and β gradients [`Self::fast_bn_backward_params`] returned for the same inputs (they
    /// are the per-channel sums the input gradient needs: `Σ dy·x̂` and `Σ dy`).
    fn fast_bn_backward_x(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        param_grads: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = param_grads;
        let (mean, var) = split::<Self>(stats);
        Self::batch_norm_train_backward(x, gamma, mean, var, epsilon, output_grad).x_grad
    }

    /// `max(0, fast_bn_apply(…))`: the BatchNorm and the ReLU after it, in one pass.
    fn fast_bn_relu_apply(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::relu(Self::fast_bn_apply(x, gamma, beta, stats, epsilon))
    }

    /// [`Self::fast_bn_backward_params`] through the ReLU whose output was `y`: the gradient
    /// passes where `y > 0` (ReLU's mask folded into the sums).
    fn fast_bn_relu_backward_params(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
        y: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let dy = Self::relu_backward(y, output_grad);
        Self::fast_bn_backward_params(x, gamma, stats, epsilon, dy)
    }

    /// [`Self::fast_bn_backward_x`] through the ReLU whose output was `y`, with the γ and β
    /// gradients [`Self::fast_bn_relu_backward_params`] returned.
    fn fast_bn_relu_backward_x(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        param_grads: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
        y: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let dy = Self::relu_backward(y, output_grad);
        Self::fast_bn_backward_x(x, gamma, stats, param_grads, epsilon, dy)
    }

    /// The gradients of γ and β, as `[2, C]`.
    fn fast_bn_backward_params(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let c = x.shape()[1];
        let (mean, var) = split::<Self>(stats);
        let g = Self::batch_norm_train_backward(x, gamma, mean, var, epsilon, output_grad);
        Self::float_cat(
            vec![
                Self::float_reshape(g.gamma_grad, [1, c].into()),
                Self::float_reshape(g.beta_grad, [1, c].into()),
            ],
            0,
        )
    }
}

/// Rows 0 and 1 of a `[2, C]`, each as `[C]`.
fn split<B: Backend>(stats: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    let c = stats.shape()[1];
    let row = |i: usize| {
        let slices = [
            burn::tensor::Slice::from(i..i + 1),
            burn::tensor::Slice::from(0..c),
        ];
        B::float_reshape(B::float_slice(stats.clone(), &slices), [c].into())
    };
    (row(0), row(1))
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;
    use burn::backend::Flex;
    use burn_flex::FlexTensor;
    use rayon::prelude::*;

    use crate::burn_conv::flex::values;

    fn dims(t: &FlexTensor) -> (usize, usize, usize) {
        let s = t.layout().shape();
        (s[0], s[1], s[2..].iter().product())
    }

    fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(data, shape))
    }

    /// Elements per block of whole images that one task sums (about 1 MiB of `a`).
    const SUM_BLOCK: usize = 1 << 18;

    /// Per channel: `(Σ a, Σ a·(b − centre))`, or with `b` absent the shifted moments
    /// `(Σ (a − centre), Σ (a − centre)²)`. Each plane is summed in f32 (16 lanes), planes in
    /// f64. The images are cut into blocks of whole images independent of the thread count,
    /// each summed by one task in memory order, and the blocks' partial sums are added in
    /// block order: the same result for any number of threads.
    ///
    /// With `mask` (a ReLU's output, with `b`), `a` counts only where `mask > 0`.
    fn channel_sums(
        a: &[f32],
        b: Option<&[f32]>,
        mask: Option<&[f32]>,
        centre: &[f32],
        (n, c, hw): (usize, usize, usize),
    ) -> Vec<(f64, f64)> {
        let image = c * hw;
        let per_block = (SUM_BLOCK / image.max(1)).max(1);
        let blocks: Vec<usize> = (0..n).step_by(per_block).collect();
        let partials: Vec<Vec<(f64, f64)>> = blocks
            .into_par_iter()
            .map(|n0| {
                let mut sums = vec![(0f64, 0f64); c];
                for img in n0..(n0 + per_block).min(n) {
                    for (ch, sum) in sums.iter_mut().enumerate() {
                        let at = img * image + ch * hw;
                        let plane = &a[at..at + hw];
                        let (p0, p1) = match (b, mask) {
                            (Some(b), Some(y)) => masked_plane_sums(
                                plane,
                                &b[at..at + hw],
                                &y[at..at + hw],
                                centre[ch],
                            ),
                            (Some(b), None) => plane_sums(plane, &b[at..at + hw], centre[ch]),
                            (None, _) => plane_moments(plane, centre[ch]),
                        };
                        sum.0 += f64::from(p0);
                        sum.1 += f64::from(p1);
                    }
                }
                sums
            })
            .collect();
        let mut total = vec![(0f64, 0f64); c];
        for part in partials {
            for (t, p) in total.iter_mut().zip(part) {
                t.0 += p.0;
                t.1 += p.1;
            }
        }
        total
    }

    /// Lanes of the plane sums (a serial float sum cannot be vectorised).
    const L: usize = 16;

    /// `(Σ a, Σ a·(b − m))` over one plane, in one pass.
    #[inline(always)]
    fn plane_sums(a: &[f32], b: &[f32], m: f32) -> (f32, f32) {
        let (mut s, mut sb) = ([0f32; L], [0f32; L]);
        let (ac, bc) = (a.chunks_exact(L), b.chunks_exact(L));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (x, y) in ac.zip(bc) {
            for i in 0..L {
                s[i] += x[i];
                sb[i] += x[i] * (y[i] - m);
            }
        }
        let (mut ts, mut tb) = (0f32, 0f32);
        for (x, y) in ar.iter().zip(br) {
            ts += x;
            tb += x * (y - m);
        }
        (s.iter().sum::<f32>() + ts, sb.iter().sum::<f32>() + tb)
    }

    /// `(Σ a', Σ a'·(b − m))` over one plane with `a' = 0` where `y ≤ 0`, else `a`: the
    /// BatchNorm sums of a gradient `a` through the ReLU whose output was `y` (Burn's
    /// `relu_backward` mask: a NaN `y` lets the gradient through).
    #[inline(always)]
    fn masked_plane_sums(a: &[f32], b: &[f32], y: &[f32], m: f32) -> (f32, f32) {
        let (mut s, mut sb) = ([0f32; L], [0f32; L]);
        let (ac, bc, yc) = (a.chunks_exact(L), b.chunks_exact(L), y.chunks_exact(L));
        let (ar, br, yr) = (ac.remainder(), bc.remainder(), yc.remainder());
        for ((x, z), y) in ac.zip(bc).zip(yc) {
            for i in 0..L {
                let g = unless_cut(x[i], y[i]);
                s[i] += g;
                sb[i] += g * (z[i] - m);
            }
        }
        let (mut ts, mut tb) = (0f32, 0f32);
        for ((x, z), y) in ar.iter().zip(br).zip(yr) {
            let g = unless_cut(*x, *y);
            ts += g;
            tb += g * (z - m);
        }
        (s.iter().sum::<f32>() + ts, sb.iter().sum::<f32>() + tb)
    }

    /// `x`, or 0 where `y ≤ 0`: Burn's ReLU mask (`relu(v)` is `unless_cut(v, v)`; a NaN `y`
    /// keeps `x`, so a NaN stays NaN, which `max` would turn into 0). Written with bits so
    /// that the loops around it vectorise (a compare and an `and`, no branch).
    #[inline(always)]
    fn unless_cut(x: f32, y: f32) -> f32 {
        let keep = u32::from(y <= 0.0).wrapping_sub(1);
        f32::from_bits(x.to_bits() & keep)
    }

    /// `o = x'·p + y·q + r` over one plane with `x' = 0` where `mask ≤ 0`, else `x` (the
    /// gradient through a ReLU; Burn's mask, so a NaN `mask` lets it through), in lanes of
    /// `L` so that the select vectorises.
    #[inline(always)]
    fn masked_affine(o: &mut [f32], x: &[f32], y: &[f32], mask: &[f32], [p, q, r]: [f32; 3]) {
        let n = o.len() - o.len() % L;
        for i in (0..n).step_by(L) {
            let (o, x, y, m) = (
                &mut o[i..i + L],
                &x[i..i + L],
                &y[i..i + L],
                &mask[i..i + L],
            );
            for j in 0..L {
                let g = unless_cut(x[j], m[j]);
                o[j] = g * p + y[j] * q + r;
            }
        }
        for i in n..o.len() {
            let g = unless_cut(x[i], mask[i]);
            o[i] = g * p + y[i] * q + r;
        }
    }

    /// `(Σ (a − k), Σ (a − k)²)` over one plane, in one pass.
    #[inline(always)]
    fn plane_moments(a: &[f32], k: f32) -> (f32, f32) {
        let (mut s, mut sq) = ([0f32; L], [0f32; L]);
        let ac = a.chunks_exact(L);
        let ar = ac.remainder();
        for x in ac {
            for i in 0..L {
                let d = x[i] - k;
                s[i] += d;
                sq[i] += d * d;
            }
        }
        let (mut ts, mut tq) = (0f32, 0f32);
        for x in ar {
            let d = x - k;
            ts += d;
            tq += d * d;
        }
        (s.iter().sum::<f32>() + ts, sq.iter().sum::<f32>() + tq)
    }

    /// What [`affine`] does besides the affine map.
    #[derive(Clone, Copy)]
    enum Fuse<'a> {
        /// Nothing.
        None,
        /// `max(0, out)`: the ReLU after a BatchNorm.
        Relu,
        /// `x` counts only where this (a ReLU's output) is `> 0`: the gradient through it.
        Mask(&'a [f32]),
    }

    /// `out = x·p[ch] + y·q[ch] + r[ch]` for every plane (`y` absent: no `q` term), in
    /// parallel, with `fuse`.
    fn affine(
        x: &[f32],
        y: Option<&[f32]>,
        (n, c, hw): (usize, usize, usize),
        p: &[f32],
        q: &[f32],
        r: &[f32],
        fuse: Fuse<'_>,
    ) -> Vec<f32> {
        let mut out = vec![0f32; n * c * hw];
        if hw == 0 {
            return out;
        }
        out.par_chunks_mut(hw).enumerate().for_each(|(plane, o)| {
            let ch = plane % c;
            let at = plane * hw;
            let xs = &x[at..at + hw];
            let (pc, rc) = (p[ch], r[ch]);
            match (y, fuse) {
                (Some(y), Fuse::Mask(mask)) => {
                    masked_affine(o, xs, &y[at..at + hw], &mask[at..at + hw], [pc, q[ch], rc]);
                }
                (Some(y), _) => {
                    let qc = q[ch];
                    for ((o, x), y) in o.iter_mut().zip(xs).zip(&y[at..at + hw]) {
                        *o = x * pc + y * qc + rc;
                    }
                }
                (None, Fuse::Relu) => {
                    for (o, x) in o.iter_mut().zip(xs) {
                        let v = x * pc + rc;
                        *o = unless_cut(v, v);
                    }
                }
                (None, _) => {
                    for (o, x) in o.iter_mut().zip(xs) {
                        *o = x * pc + rc;
                    }
                }
            }
        });
        out
    }

    /// mean, 1/√(var + ε) per channel.
    fn moments(stats: &FlexTensor, epsilon: f64) -> (Vec<f32>, Vec<f32>) {
        let s = values(stats);
        let c = s.len() / 2;
        let inv = s[c..]
            .iter()
            .map(|v| (1.0 / (f64::from(*v) + epsilon).sqrt()) as f32)
            .collect();
        (s[..c].to_vec(), inv)
    }

    /// The training BatchNorm's output, `fuse` a ReLU or not (see the trait).
    fn apply(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        epsilon: f64,
        fuse: Fuse<'_>,
    ) -> FlexTensor {
        crate::burn_conv::count(|c| c.batch_norms += 1);
        let (mean, inv) = moments(&stats, epsilon);
        let (g, b) = (values(&gamma), values(&beta));
        // y = x·(γ/σ) + (β − mean·γ/σ)
        let scale: Vec<f32> = g.iter().zip(&inv).map(|(g, i)| g * i).collect();
        let shift: Vec<f32> = b
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        let out = affine(&values(&x), None, dims(&x), &scale, &[], &shift, fuse);
        tensor(out, x.layout().shape().to_vec())
    }

    /// The input gradient (see the trait), through the ReLU whose output was `relu_out`.
    fn backward_x(
        x: FlexTensor,
        gamma: FlexTensor,
        stats: FlexTensor,
        param_grads: FlexTensor,
        epsilon: f64,
        output_grad: FlexTensor,
        relu_out: Option<&FlexTensor>,
    ) -> FlexTensor {
        let shape = dims(&x);
        let (mean, inv) = moments(&stats, epsilon);
        let g = values(&gamma);
        let (xs, dy) = (values(&x), values(&output_grad));
        // mean(dy·x̂) = dγ / m and mean(dy) = dβ / m: no second pass over dy.
        let m = (shape.0 * shape.2) as f32;
        let p = values(&param_grads);
        let (mdyx, mdy): (Vec<f32>, Vec<f32>) = (
            p[..shape.1].iter().map(|v| v / m).collect(),
            p[shape.1..].iter().map(|v| v / m).collect(),
        );
        // dx = k·(dy − mean(dy) − x̂·mean(dy·x̂)), k = γ/σ, x̂ = (x − mean)/σ
        //    = dy·k + x·(−k·σ⁻¹·mean(dy·x̂)) + k·(mean·σ⁻¹·mean(dy·x̂) − mean(dy))
        let k: Vec<f32> = g.iter().zip(&inv).map(|(g, i)| g * i).collect();
        let q: Vec<f32> = (0..k.len()).map(|c| -k[c] * inv[c] * mdyx[c]).collect();
        let r: Vec<f32> = (0..k.len())
            .map(|c| k[c] * (mean[c] * inv[c] * mdyx[c] - mdy[c]))
            .collect();
        let mask = relu_out.map(values);
        let fuse = mask.as_deref().map_or(Fuse::None, Fuse::Mask);
        let out = affine(&dy, Some(&xs), shape, &k, &q, &r, fuse);
        tensor(out, x.layout().shape().to_vec())
    }

    /// The γ and β gradients (see the trait), through the ReLU whose output was `relu_out`.
    fn backward_params(
        x: FlexTensor,
        stats: FlexTensor,
        epsilon: f64,
        output_grad: FlexTensor,
        relu_out: Option<&FlexTensor>,
    ) -> FlexTensor {
        let shape = dims(&x);
        let (mean, inv) = moments(&stats, epsilon);
        let (xs, dy) = (values(&x), values(&output_grad));
        let mask = relu_out.map(values);
        let sums = channel_sums(&dy, Some(&xs), mask.as_deref(), &mean, shape);
        let gamma: Vec<f32> = sums
            .iter()
            .zip(&inv)
            .map(|((_, s), i)| *s as f32 * i)
            .collect();
        let beta: Vec<f32> = sums.iter().map(|(s, _)| *s as f32).collect();
        tensor([gamma, beta].concat(), vec![2, shape.1])
    }

    impl FastNormBackend for Flex {
        fn fast_bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
            let shape = dims(&x);
            let (n, c, hw) = shape;
            let m = (n * hw) as f64;
            let xs = values(&x);
            // One pass over data shifted by a value of each channel (its first element), so
            // that the variance does not cancel: mean = k + E[x − k],
            // var = E[(x − k)²] − E[x − k]².
            let shift: Vec<f32> = (0..c)
                .map(|ch| xs.get(ch * hw).copied().unwrap_or(0.0))
                .collect();
            let sums = channel_sums(&xs, None, None, &shift, shape);
            let (means, vars): (Vec<f32>, Vec<f32>) = sums
                .iter()
                .zip(&shift)
                .map(|((s, sq), k)| {
                    let d = s / m;
                    ((f64::from(*k) + d) as f32, (sq / m - d * d).max(0.0) as f32)
                })
                .unzip();
            tensor([means, vars].concat(), vec![2, c])
        }

        fn fast_bn_apply(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            epsilon: f64,
        ) -> FloatTensor<Self> {
            apply(x, gamma, beta, stats, epsilon, Fuse::None)
        }

        fn fast_bn_relu_apply(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            epsilon: f64,
        ) -> FloatTensor<Self> {
            crate::burn_conv::count(|c| c.batch_norm_relus += 1);
            apply(x, gamma, beta, stats, epsilon, Fuse::Relu)
        }

        fn fast_bn_backward_x(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            param_grads: FloatTensor<Self>,
            epsilon: f64,
            output_grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            backward_x(x, gamma, stats, param_grads, epsilon, output_grad, None)
        }

        fn fast_bn_relu_backward_x(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            param_grads: FloatTensor<Self>,
            epsilon: f64,
            output_grad: FloatTensor<Self>,
            y: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            backward_x(x, gamma, stats, param_grads, epsilon, output_grad, Some(&y))
        }

        fn fast_bn_backward_params(
            x: FloatTensor<Self>,
            _gamma: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            epsilon: f64,
            output_grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            backward_params(x, stats, epsilon, output_grad, None)
        }

        fn fast_bn_relu_backward_params(
            x: FloatTensor<Self>,
            _gamma: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            epsilon: f64,
            output_grad: FloatTensor<Self>,
            y: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            backward_params(x, stats, epsilon, output_grad, Some(&y))
        }
    }
}

impl<B: Backend + FastNormBackend, C: CheckpointStrategy> FastNormBackend for Autodiff<B, C> {
    fn fast_bn_apply(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, gamma, beta, stats, epsilon, false)
    }

    fn fast_bn_relu_apply(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, gamma, beta, stats, epsilon, true)
    }
}

/// The training BatchNorm (and, with `relu`, the ReLU after it) on an autodiff device, with
/// its hand-written backward: the γ and β gradients, then the input gradient from them; with
/// `relu` both take the ReLU's mask from its saved output instead of a masked copy of `dy`.
fn tracked<B: Backend + FastNormBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    stats: FloatTensor<Autodiff<B, C>>,
    epsilon: f64,
    relu: bool,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct Norm {
        epsilon: f64,
    }

    impl<B: Backend + FastNormBackend> Backward<B, 3> for Norm {
        /// `x`, γ, the statistics, and the ReLU's output where it is fused.
        type State = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            Option<FloatTensor<B>>,
        );

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_x, node_gamma, node_beta] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            let (x, gamma, stats, relu_out) = ops.state;
            let eps = self.epsilon;
            // The γ and β gradients are also the sums the input gradient needs: one pass.
            let params = match &relu_out {
                Some(y) => B::fast_bn_relu_backward_params(
                    x.clone(),
                    gamma.clone(),
                    stats.clone(),
                    eps,
                    dy.clone(),
                    y.clone(),
                ),
                None => B::fast_bn_backward_params(
                    x.clone(),
                    gamma.clone(),
                    stats.clone(),
                    eps,
                    dy.clone(),
                ),
            };
            if node_gamma.is_some() || node_beta.is_some() {
                let (dgamma, dbeta) = split::<B>(params.clone());
                if let Some(node) = node_gamma {
                    grads.register::<B>(node.id, dgamma);
                }
                if let Some(node) = node_beta {
                    grads.register::<B>(node.id, dbeta);
                }
            }
            if let Some(node) = node_x {
                let dx = match relu_out {
                    Some(y) => B::fast_bn_relu_backward_x(x, gamma, stats, params, eps, dy, y),
                    None => B::fast_bn_backward_x(x, gamma, stats, params, eps, dy),
                };
                grads.register::<B>(node.id, dx);
            }
        }
    }

    let run = |x, g, b, stats| {
        if relu {
            B::fast_bn_relu_apply(x, g, b, stats, epsilon)
        } else {
            B::fast_bn_apply(x, g, b, stats, epsilon)
        }
    };
    let stats = stats.into_primitive();
    match (Norm { epsilon })
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x, g, b) = (
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
            );
            let out = run(x.clone(), g.clone(), b, stats.clone());
            let relu_out = relu.then(|| out.clone());
            prep.finish((x, g, stats, relu_out), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(run(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            stats,
        )),
    }
}

/// `bn.forward(x)` for an NCHW `x`. On flex in f32 through the copy-free kernels: in training
/// (an autodiff device and the layer's training flag on) with the batch's statistics and the
/// running statistics updated as Burn does, and in inference (a device without autodiff) with
/// the running statistics. Otherwise (other backends and float types, a frozen BatchNorm on an
/// autodiff device) Burn's own `BatchNorm::forward`.
///
/// Mixed precision: an `x` of another float type than the layer's (half activations, f32
/// parameters and running statistics) is normalised in the layer's type, its statistics
/// included, and the output cast back to `x`'s type (PyTorch AMP keeps BatchNorm in f32 too).
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    norm(bn, x, false)
}

/// `relu(bn.forward(x))` for an NCHW `x`, as [`batch_norm`] with the ReLU fused where the
/// kernels run: applied in the normalisation's pass, and in the backward its mask folded
/// into BatchNorm's two passes (no ReLU pass over the activation either way). A NaN stays
/// NaN, as Burn's ReLU keeps it.
pub fn batch_norm_relu(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    norm(bn, x, true)
}

/// [`batch_norm`], then the ReLU if `relu`.
fn norm(bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let layer_dtype = bn.gamma.val().dtype();
    if x.dtype() != layer_dtype {
        let dtype = x.dtype();
        return norm(bn, x.cast(layer_dtype), relu).cast(dtype);
    }
    let burns = |x: Tensor<4>| {
        let y = bn.forward(x);
        if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        }
    };
    let apply = |x: Tensor<4>, stats: Tensor<2>| {
        let op = if relu {
            <Dispatch as FastNormBackend>::fast_bn_relu_apply
        } else {
            <Dispatch as FastNormBackend>::fast_bn_apply
        };
        Tensor::<4>::from_dispatch(op(
            x.into_dispatch(),
            bn.gamma.val().into_dispatch(),
            bn.beta.val().into_dispatch(),
            stats.into_dispatch(),
            bn.epsilon,
        ))
    };
    let device = x.device();
    let on_flex = super::burn_conv::on_flex(&device);
    if !on_flex || x.dtype() != DType::F32 || super::burn_conv::turned_off() {
        return burns(x);
    }
    if !device.is_autodiff() {
        // Inference (no graph): one pass with the running statistics. On an autodiff device
        // with the training flag off (frozen BatchNorm) Burn's path keeps the gradients right.
        let stats = Tensor::cat(
            vec![
                bn.running_mean.value().to_device(&device).unsqueeze::<2>(),
                bn.running_var.value().to_device(&device).unsqueeze::<2>(),
            ],
            0,
        );
        return apply(x, stats);
    }
    if !bn.training.is_enabled() {
        return burns(x);
    }
    // A constant of the graph, computed off it: the statistics' own dependence on x is in the
    // backward of `fast_bn_apply`.
    let stats: Tensor<2> = Tensor::from_inner(Tensor::from_dispatch(
        <Dispatch as FastNormBackend>::fast_bn_stats(x.clone().inner().into_dispatch()),
    ));
    let out = apply(x, stats.clone());
    let c = stats.dims()[1];
    let mean = stats.clone().slice([0..1, 0..c]).reshape([c]).detach();
    let var = stats.slice([1..2, 0..c]).reshape([c]).detach();
    let m = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    bn.running_mean.update(
        running_mean
            .mul_scalar(1.0 - m)
            .add(mean.mul_scalar(m))
            .detach(),
    );
    bn.running_var.update(
        running_var
            .mul_scalar(1.0 - m)
            .add(var.mul_scalar(m))
            .detach(),
    );
    out
}
