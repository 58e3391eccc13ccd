//! Fast CPU kernels for flex (f32, NCHW activations): 2-D convolution (OIHW weights,
//! groups = 1, dilation = 1: forward, input gradient and weight/bias gradient), BatchNorm
//! (training and inference, optionally with the ReLU after it fused) and max pooling.
//!
//! In a Burn model, call [`conv2d`], [`batch_norm`] (or [`batch_norm_relu`] where a ReLU
//! follows) and [`max_pool2d`] where `conv.forward(x)`, `bn.forward(x)` (`relu(…)`) and
//! `pool.forward(x)` would be: on flex devices (feature `flex`) they run through these kernels
//! with hand-written backward passes, everywhere else through Burn's own ops.
//! [`fast_calls_by_op`] counts the calls that took the kernels. The slice-level functions
//! below are usable on their own.
//!
//! - BatchNorm: per channel plane, one pass for the statistics and one for the normalisation
//!   (with the ReLU applied in it), and in the backward one pass for the γ and β gradients and
//!   one for the input gradient, the ReLU's mask read from its saved output in both (no
//!   channels-first copies, no separate ReLU pass). Inference normalises with the running
//!   statistics in one pass.
//! - Max pooling: see [`max_pool2d_forward`].
//!
//! Each convolution pass picks its engine once, from the geometry and the CPU:
//!
//! - **Direct** (x86-64 with AVX2 + FMA and no AVX-512; stride 1, padding ≥ 0, Cout a multiple
//!   of 8, Cin·KH·KW ≥ 64: every 3×3 layer of the reference CNN but the first, the ResNets'
//!   stride-1 3×3 layers): no im2col. A group of images is copied once into zero-padded
//!   planes and register tiles of 6 output pixels × 16 output channels accumulate every
//!   (input channel, tap) product — the forward, the stride-1 input gradient (as the forward of
//!   dy with the flipped kernel) and the weight gradient (tiles of 6 (channel, tap) pairs × 16
//!   output channels, reduced over pixels in the registers). See `direct.rs`.
//! - **im2col + GEMM** (everything else, and everywhere with `TRIPLET_CONV_ALGO=im2col`, the
//!   portable path; `TRIPLET_CONV_ALGO=direct` takes the direct kernels also on AVX-512 CPUs,
//!   where the automatic choice keeps gemm's 512-bit kernels until measured there), below.
//!
//! im2col + GEMM (`gemm` 0.19, which picks AVX-512 / AVX2 / scalar kernels at run time) works
//! over chunks of output pixels: one image, a band of output rows of one image,
//! or several small images, sized so the per-thread im2col scratch stays within ~1 MiB (large
//! `Cin*KH*KW` is additionally split into input-channel blocks that accumulate). Chunks run in
//! parallel on rayon's current pool (so `RAYON_NUM_THREADS` / `ThreadPool::install` apply),
//! each GEMM single-threaded; only when a layer has fewer chunks than threads (batch 1 at tiny
//! sizes) do the chunks run in turn with a multi-threaded GEMM.
//!
//! - Forward: GEMM m = pixels, n = Cout, k = Cin*KH*KW, written straight into NCHW when the
//!   chunk is one whole image; 1x1 stride-1 convolutions read `x` in place (no im2col).
//!   Stride-1 "same" rows are copied as one shifted run per im2col row; strided kernels wider
//!   than the stride split each input row into its phases once, so every copy is contiguous.
//! - Input gradient: stride 1 with many input channels runs as the forward convolution of dy
//!   with the flipped, channel-swapped kernel (padding K-1-P); otherwise `cols = dy * W` per
//!   chunk and col2im, parallel over (images, input-channel blocks) that own disjoint dx.
//! - Weight gradient: per (input-channel block, group of chunks) a partial accumulated over its
//!   chunks in order, then summed in a fixed order (result independent of scheduling for a
//!   given thread count); the bias gradient comes from the same pass.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod burn_conv;
mod burn_norm;
mod burn_pool;
mod conv;
mod conv_backward;
#[allow(unsafe_code)]
mod direct;
mod im2col;
#[allow(unsafe_code)]
pub mod matmul;
mod pool;
#[cfg(test)]
mod tests;

pub use burn_conv::{
    FastCalls, FastConvBackend, conv2d, fast_calls, fast_calls_by_op, fast_path_compiled,
};
pub use burn_norm::{FastNormBackend, batch_norm, batch_norm_relu};
pub use burn_pool::{FastPoolBackend, max_pool2d};
use im2col::Geom;
pub use pool::{PoolShape, max_pool2d_backward, max_pool2d_forward};

/// Shape of a 2-D convolution (groups = 1, dilation = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Number of images N.
    pub batch: usize,
    /// Input channels Cin.
    pub in_channels: usize,
    /// Output channels Cout.
    pub out_channels: usize,
    /// Input height H.
    pub height: usize,
    /// Input width W.
    pub width: usize,
    /// Kernel size `[KH, KW]`.
    pub kernel: [usize; 2],
    /// Stride `[SH, SW]` (each >= 1).
    pub stride: [usize; 2],
    /// Zero padding `[PH, PW]` on each side.
    pub padding: [usize; 2],
}

impl Conv2dShape {
    /// Output `[OH, OW]`: `(H + 2P - K) / S + 1`, or 0 where the kernel exceeds the padded input.
    pub fn out_size(&self) -> [usize; 2] {
        assert!(
            self.stride[0] >= 1 && self.stride[1] >= 1,
            "Conv2dShape: stride must be >= 1, got {:?}",
            self.stride
        );
        let f = |x: usize, k: usize, s: usize, p: usize| {
            let padded = p
                .checked_mul(2)
                .and_then(|p2| x.checked_add(p2))
                .expect("Conv2dShape: padded size overflows usize");
            if padded < k { 0 } else { (padded - k) / s + 1 }
        };
        [
            f(self.height, self.kernel[0], self.stride[0], self.padding[0]),
            f(self.width, self.kernel[1], self.stride[1], self.padding[1]),
        ]
    }
    /// Elements of the input `[N, Cin, H, W]`.
    pub fn input_len(&self) -> usize {
        product(&[self.batch, self.in_channels, self.height, self.width])
    }
    /// Elements of the weight `[Cout, Cin, KH, KW]`.
    pub fn weight_len(&self) -> usize {
        product(&[
            self.out_channels,
            self.in_channels,
            self.kernel[0],
            self.kernel[1],
        ])
    }
    /// Elements of the output `[N, Cout, OH, OW]`.
    pub fn output_len(&self) -> usize {
        let [oh, ow] = self.out_size();
        product(&[self.batch, self.out_channels, oh, ow])
    }
    /// Floating-point operations of one op (forward, dX or dW): `2*N*Cout*OH*OW*Cin*KH*KW`.
    pub fn flops(&self) -> f64 {
        let [oh, ow] = self.out_size();
        2.0 * (self.batch * self.out_channels * oh * ow) as f64
            * (self.in_channels * self.kernel[0] * self.kernel[1]) as f64
    }

    fn geom(&self, op: &str) -> Geom {
        assert!(
            self.kernel[0] >= 1 && self.kernel[1] >= 1,
            "{op}: kernel must be >= 1 in each dimension, got {:?}",
            self.kernel
        );
        assert!(
            self.stride[0] >= 1 && self.stride[1] >= 1,
            "{op}: stride must be >= 1 in each dimension, got {:?}",
            self.stride
        );
        let [oh, ow] = self.out_size();
        Geom {
            n: self.batch,
            cin: self.in_channels,
            cout: self.out_channels,
            h: self.height,
            w: self.width,
            kh: self.kernel[0],
            kw: self.kernel[1],
            sh: self.stride[0],
            sw: self.stride[1],
            ph: self.padding[0] as isize,
            pw: self.padding[1] as isize,
            oh,
            ow,
        }
    }
}

fn product(xs: &[usize]) -> usize {
    xs.iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .expect("Conv2dShape: tensor size overflows usize")
}

fn check_len(op: &str, what: &str, got: usize, want: usize, shape: &Conv2dShape) {
    assert!(
        got == want,
        "{op}: `{what}` has {got} elements but {shape:?} needs {want}"
    );
}

/// Forward convolution: `out[n, co, oh, ow] = bias[co] + sum_{ci,kh,kw} x[n, ci, ih, iw] * w[co, ci, kh, kw]`
/// with `ih = oh*SH + kh - PH`, `iw = ow*SW + kw - PW` (zero outside the input). `out` is overwritten.
///
/// Panics if a slice length does not match `shape`.
pub fn conv2d_forward(
    shape: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    const OP: &str = "conv2d_forward";
    let g = shape.geom(OP);
    check_len(OP, "x", x.len(), shape.input_len(), shape);
    check_len(OP, "w", w.len(), shape.weight_len(), shape);
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), shape.out_channels, shape);
    }
    check_len(OP, "out", out.len(), shape.output_len(), shape);
    conv::forward(&g, x, w, bias, out);
}

/// Input gradient: `dx` = gradient of the forward output w.r.t. `x`, given `dy` (shaped like
/// the output). `dx` is overwritten.
///
/// Stride 1 runs as a forward convolution of `dy` with the flipped, channel-swapped kernel;
/// other strides as `Wᵀ·dy` per chunk plus col2im.
///
/// Panics if a slice length does not match `shape`.
pub fn conv2d_backward_input(shape: &Conv2dShape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    const OP: &str = "conv2d_backward_input";
    let g = shape.geom(OP);
    check_len(OP, "dy", dy.len(), shape.output_len(), shape);
    check_len(OP, "w", w.len(), shape.weight_len(), shape);
    check_len(OP, "dx", dx.len(), shape.input_len(), shape);
    conv_backward::backward_input(&g, dy, w, dx);
}

/// Weight gradient `dw[co, ci, kh, kw] = sum_{n,oh,ow} dy[n, co, oh, ow] * x[n, ci, ih, iw]`, and
/// when `db` is given the bias gradient `db[co] = sum_{n,oh,ow} dy[n, co, oh, ow]` (both
/// overwritten). The summation order is fixed for a given thread count.
///
/// Panics if a slice length does not match `shape`.
pub fn conv2d_backward_weight(
    shape: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    const OP: &str = "conv2d_backward_weight";
    let g = shape.geom(OP);
    check_len(OP, "x", x.len(), shape.input_len(), shape);
    check_len(OP, "dy", dy.len(), shape.output_len(), shape);
    check_len(OP, "dw", dw.len(), shape.weight_len(), shape);
    if let Some(b) = db.as_deref() {
        check_len(OP, "db", b.len(), shape.out_channels, shape);
    }
    conv_backward::backward_weight(&g, x, dy, dw, db);
}
