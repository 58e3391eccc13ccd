//! Semi-hard and batch-all mined on the device, for Burn's CubeCL backends (wgpu, CUDA and
//! the other cubecl runtimes): nothing is read back, so a GPU step never waits on a `B×B`
//! transfer, and memory stays `O(B²)` (a few `B×B` tables, no `B×B×B` intermediate).
//!
//! Both kernels give **exactly the host miners' triplets and tie rule**
//! ([`host::semi_hard`](super::host::semi_hard), [`host::all_weights`](super::host::all_weights)):
//! one thread per distance-matrix entry `(a, j)`, a loop over the anchor's row in ascending
//! column order, strict comparisons (so the lowest index wins a tie) and "beyond the positive"
//! strict (`d_an > d_ap`). Only sums differ: the device adds in `f32` where the host adds in
//! `f64`, and a hinge triplet within `f32` rounding of the margin (`|d_an − d_ap − α|` below
//! about `1e-7·d`) may count as active on one and not the other (its loss is below that either
//! way).
//!
//! Work is `O(B²·K)` for semi-hard (`K` = largest class: only positive pairs loop) and `O(B³)`
//! simple steps for batch-all (every negative entry loops over the row to find its anchor's
//! positives; all threads of a cube share the anchor, so those loads are broadcasts).
//!
//! The ops are a Burn backend extension (`#[backend_extension]`) implemented for
//! `CubeBackend` and, through Burn's generated lazy operation, for `Fusion<CubeBackend>`.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::{CubeCount, CubeDim};

use super::host;

use kernels::{CUBE, all_weights_kernel, semi_hard_kernel};

/// The CubeCL kernels (their own module: cubecl's prelude names `Tensor`, `Float` and `Int` too).
mod kernels {
    use cubecl::prelude::*;

    /// Threads per cube; a cube covers `CUBE` consecutive columns of one anchor's row.
    pub(super) const CUBE: u32 = 256;

    /// For every positive pair `(a, p)` (`p ≠ a`, same label) of an anchor with a negative, the
    /// semi-hard negative: the nearest negative with `d_an > d_ap`, else the farthest one; the
    /// lowest index among equal distances. `-1` for every other entry.
    #[cube(launch)]
    pub(super) fn semi_hard_kernel<F: Float, I: Int>(
        dist: &Tensor<F>,
        labels: &Tensor<I>,
        negatives: &mut Tensor<I>,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let b = labels.len();
        let a = CUBE_POS_Y as usize;
        let p = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        if p >= b {
            terminate!();
        }
        let row = a * b;
        let class = labels[a];
        let mut chosen = I::new(-1);
        if p != a && labels[p] == class {
            let d_ap = dist[row + p];
            let mut beyond = false;
            let mut nearest = F::new(0.0);
            let mut nearest_n = 0usize;
            let mut any = false;
            let mut farthest = F::new(0.0);
            let mut farthest_n = 0usize;
            for n in 0..b {
                if labels[n] != class {
                    let d = dist[row + n];
                    if !any {
                        any = true;
                        farthest = d;
                        farthest_n = n;
                    } else if d > farthest {
                        farthest = d;
                        farthest_n = n;
                    }
                    if d > d_ap {
                        if !beyond {
                            beyond = true;
                            nearest = d;
                            nearest_n = n;
                        } else if d < nearest {
                            nearest = d;
                            nearest_n = n;
                        }
                    }
                }
            }
            if beyond {
                chosen = I::cast_from(nearest_n);
            } else if any {
                chosen = I::cast_from(farthest_n);
            }
        }
        negatives[row + p] = chosen;
    }

    /// Batch-all reduced per distance-matrix entry `(a, j)`: `weights` is `∂(Σ losses)/∂D[a, j]`
    /// (the active triplets a positive `j` takes part in, minus those a negative `j` takes part
    /// in; sigmoid sums for the soft margin), `losses` the summed loss of the triplets of the
    /// positive pair `(a, j)` (0 for other entries) and `active` their number with a loss `> 0`
    /// (all of them with the soft margin, as the host miner counts in `f64`).
    #[cube(launch)]
    pub(super) fn all_weights_kernel<F: Float, I: Int>(
        dist: &Tensor<F>,
        labels: &Tensor<I>,
        weights: &mut Tensor<F>,
        losses: &mut Tensor<F>,
        active: &mut Tensor<I>,
        margin: f32,
        #[comptime] soft: bool,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let b = labels.len();
        let a = CUBE_POS_Y as usize;
        let j = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        if j >= b {
            terminate!();
        }
        let row = a * b;
        let class = labels[a];
        // Sums and counts in f32 whatever the distances' type: in f16 or bf16 integers stop
        // being exact above 2048 or 256, and the host miner sums in f64.
        let zero = f32::new(0.0);
        let one = f32::new(1.0);
        let mut w = zero;
        let mut loss = zero;
        let mut count = 0u32;
        if j != a {
            let d = f32::cast_from(dist[row + j]);
            if labels[j] == class {
                // A positive: every negative n of the anchor.
                for n in 0..b {
                    if labels[n] != class {
                        let diff = d - f32::cast_from(dist[row + n]);
                        if soft {
                            // Every soft triplet counts as active (its loss is > 0 in
                            // exact arithmetic; f32 flushes e^-88 and below to 0).
                            loss += softplus::<f32>(diff);
                            w += sigmoid::<f32>(diff);
                            count += 1;
                        } else {
                            let l = diff + margin;
                            if l > zero {
                                loss += l;
                                w += one;
                                count += 1;
                            }
                        }
                    }
                }
            } else {
                // A negative: every positive p of the anchor.
                for p in 0..b {
                    if p != a && labels[p] == class {
                        let diff = f32::cast_from(dist[row + p]) - d;
                        if soft {
                            w -= sigmoid::<f32>(diff);
                        } else if diff + margin > zero {
                            w -= one;
                        }
                    }
                }
            }
        }
        weights[row + j] = F::cast_from(w);
        losses[row + j] = F::cast_from(loss);
        active[row + j] = I::cast_from(count);
    }

    /// `log(1 + eˣ)` without overflow.
    #[cube]
    fn softplus<F: Float>(x: F) -> F {
        let zero = F::new(0.0);
        let positive = if x > zero { x } else { zero };
        let magnitude = if x > zero { x } else { -x };
        positive + F::log1p(F::exp(-magnitude))
    }

    /// `1 / (1 + e⁻ˣ)` without overflow.
    #[cube]
    fn sigmoid<F: Float>(x: F) -> F {
        let one = F::new(1.0);
        if x >= F::new(0.0) {
            one / (one + F::exp(-x))
        } else {
            let e = F::exp(x);
            e / (one + e)
        }
    }
}

fn all_weights_meta(
    dist: &TensorSpec,
    labels: &TensorSpec,
    _margin: &f32,
    _soft: &bool,
) -> (TensorSpec, TensorSpec, TensorSpec) {
    let counts = TensorSpec::new(dist.shape.clone(), labels.dtype);
    (dist.clone(), dist.clone(), counts)
}

/// The device miners as a Burn backend extension (see the module docs).
#[backend_extension(Cube, Fusion)]
pub trait CubeMining: Backend {
    /// `dist` `[B, B]` (detached), `labels` `[B]` → semi-hard negative per entry, `[B, B]`,
    /// `-1` where `(a, j)` is not a positive pair of an anchor with a negative.
    #[fusion(dtype = labels, shape = dist)]
    fn semi_hard_negatives(dist: FloatTensor<Self>, labels: IntTensor<Self>) -> IntTensor<Self>;

    /// `dist` `[B, B]` (detached), `labels` `[B]` → batch-all's `(weights, losses, active)`,
    /// each `[B, B]` (see `all_weights_kernel`).
    #[fusion(meta = all_weights_meta)]
    fn all_weights(
        dist: FloatTensor<Self>,
        labels: IntTensor<Self>,
        margin: f32,
        soft: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, IntTensor<Self>);
}

/// The launch grid: one cube per `CUBE` columns of each row.
fn grid(b: usize) -> (CubeCount, CubeDim) {
    // Vulkan guarantees 65535 cubes per grid dimension; rows are the second one.
    assert!(
        b <= 65_535,
        "device mining takes batches of at most 65535 embeddings, got {b} (its B×B matrices \
         would need {} GiB)",
        (b * b * 4) >> 30
    );
    let cubes = b.div_ceil(CUBE as usize) as u32;
    (CubeCount::Static(cubes, b as u32, 1), CubeDim::new_1d(CUBE))
}

fn inputs(dist: CubeTensor, labels: CubeTensor) -> (CubeTensor, CubeTensor, usize) {
    let [rows, cols] = dist.shape().dims::<2>();
    let [n] = labels.shape().dims::<1>();
    assert!(
        rows == cols && n == rows,
        "device mining wants a square [B, B] distance matrix and B labels, got [{rows}, {cols}] and {n}"
    );
    (into_contiguous(dist), into_contiguous(labels), n)
}

impl CubeMining for CubeBackend {
    fn semi_hard_negatives(dist: CubeTensor, labels: CubeTensor) -> CubeTensor {
        let (dist, labels, b) = inputs(dist, labels);
        let out = empty_device_dtype(
            dist.client.clone(),
            dist.device.clone(),
            [b, b].into(),
            labels.dtype,
        );
        if b == 0 {
            return out;
        }
        let (count, dim) = grid(b);
        let dtypes = [
            dtype_to_storage_type(dist.dtype),
            dtype_to_storage_type(labels.dtype),
        ];
        let client = dist.client.clone();
        semi_hard_kernel::launch(
            &client,
            count,
            dim,
            dist.into_tensor_arg(),
            labels.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            dtypes,
        );
        out
    }

    fn all_weights(
        dist: CubeTensor,
        labels: CubeTensor,
        margin: f32,
        soft: bool,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let (dist, labels, b) = inputs(dist, labels);
        let empty = |dtype| {
            empty_device_dtype(
                dist.client.clone(),
                dist.device.clone(),
                [b, b].into(),
                dtype,
            )
        };
        let (weights, losses, active) = (empty(dist.dtype), empty(dist.dtype), empty(labels.dtype));
        if b == 0 {
            return (weights, losses, active);
        }
        let (count, dim) = grid(b);
        let dtypes = [
            dtype_to_storage_type(dist.dtype),
            dtype_to_storage_type(labels.dtype),
        ];
        let client = dist.client.clone();
        all_weights_kernel::launch(
            &client,
            count,
            dim,
            dist.into_tensor_arg(),
            labels.into_tensor_arg(),
            weights.clone().into_tensor_arg(),
            losses.clone().into_tensor_arg(),
            active.clone().into_tensor_arg(),
            margin,
            soft,
            dtypes,
        );
        (weights, losses, active)
    }
}

/// Whether `device` runs on a CubeCL runtime (so the kernels above apply).
pub(crate) fn is_cube(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Cube(_)
    )
}

/// [`CubeMining::semi_hard_negatives`] on a detached distance matrix of a cube device: `[B, B]`
/// negative indices, `-1` where there is no triplet.
pub(crate) fn semi_hard_negatives(dist: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<2, Int> {
    let dist = dist.detach().inner();
    let labels = signed(labels.inner());
    Tensor::from_dispatch(<Dispatch as CubeMining>::semi_hard_negatives(
        dist.into_dispatch(),
        labels.into_dispatch(),
    ))
}

/// The triplets of a `[B, B]` table of semi-hard negatives (row-major, `-1` = none), by anchor,
/// then positive: the host miner's order.
pub(crate) fn table_triplets(table: &[i64], b: usize) -> host::IndexTriplets {
    let mut out = host::IndexTriplets::default();
    for (i, &negative) in table.iter().enumerate() {
        if negative >= 0 {
            out.anchor.push((i / b) as i64);
            out.positive.push((i % b) as i64);
            out.negative.push(negative);
        }
    }
    out
}

/// Labels as `i32` or `i64`: the kernels' integer outputs take the labels' type, and hold `-1`
/// and counts up to `B`, which unsigned or narrow types cannot.
fn signed(labels: Tensor<1, Int>) -> Tensor<1, Int> {
    match labels.dtype() {
        burn::tensor::DType::I32 | burn::tensor::DType::I64 => labels,
        _ => labels.cast(burn::tensor::IntDType::I32),
    }
}

/// Batch-all per entry on a cube device (see [`CubeMining::all_weights`]).
pub(crate) struct DeviceAllWeights {
    /// `[B, B]` `∂(Σ losses)/∂D`.
    pub weights: Tensor<2>,
    /// `[B, B]` summed loss of each positive pair's triplets.
    pub losses: Tensor<2>,
    /// `[B, B]` active triplets of each positive pair.
    pub active: Tensor<2, Int>,
}

/// [`CubeMining::all_weights`] on a detached distance matrix of a cube device.
pub(crate) fn all_weights(
    dist: Tensor<2>,
    labels: Tensor<1, Int>,
    margin: f64,
    soft: bool,
) -> DeviceAllWeights {
    let dist = dist.detach().inner();
    let labels = signed(labels.inner());
    let (weights, losses, active) = <Dispatch as CubeMining>::all_weights(
        dist.into_dispatch(),
        labels.into_dispatch(),
        margin as f32,
        soft,
    );
    DeviceAllWeights {
        weights: Tensor::from_dispatch(weights),
        losses: Tensor::from_dispatch(losses),
        active: Tensor::from_dispatch(active),
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    //! The kernels' tables against the host miners on the same distance values (wgpu; without
    //! a GPU, Mesa's software Vulkan). `tests/wgpu.rs` checks the losses built on them.
    use super::*;
    use burn::tensor::DeviceKind;

    /// Distances with many exact ties (quarters) and zeros, symmetric, and labels with classes
    /// of 1 to 5, one label (7) taken by a single sample.
    fn fixture(b: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut d = vec![0.0f32; b * b];
        for i in 0..b {
            for j in i + 1..b {
                let v = (next() % 9) as f32 * 0.25;
                d[i * b + j] = v;
                d[j * b + i] = v;
            }
        }
        let y = (0..b)
            .map(|i| {
                if i == 3 {
                    7
                } else {
                    (next() % (b as u64 / 3 + 1)) as i64 + 10
                }
            })
            .collect();
        (d, y)
    }

    fn tensors(d: &[f32], y: &[i64]) -> (Tensor<2>, Tensor<1, Int>) {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let b = y.len();
        (
            Tensor::from_data(TensorData::new(d.to_vec(), [b, b]), &device),
            Tensor::from_data(TensorData::new(y.to_vec(), [b]), &device),
        )
    }

    #[test]
    fn semi_hard_table_is_the_host_miners_triplets() {
        for (b, seed) in [(1, 0), (2, 1), (9, 2), (40, 3), (300, 4)] {
            let (d, y) = fixture(b, seed);
            let (dist, labels) = tensors(&d, &y);
            let table: Vec<i64> = semi_hard_negatives(dist, labels)
                .into_data()
                .try_into_vec_as()
                .unwrap();
            let want = host::semi_hard(&d, &host::Classes::new(&y));
            assert_eq!(table_triplets(&table, b), want, "B = {b}");
        }
    }

    #[test]
    fn batch_all_tables_are_the_host_weights() {
        for (b, seed) in [(1, 0), (7, 5), (40, 6), (300, 7)] {
            let (d, y) = fixture(b, seed);
            for (margin, soft) in [(0.25, false), (0.6, false), (0.0, true)] {
                let (dist, labels) = tensors(&d, &y);
                let got = all_weights(dist, labels, margin, soft);
                let want = host::all_weights(&d, &host::Classes::new(&y), margin, soft);
                let weights: Vec<f32> = got.weights.into_data().try_into_vec_as().unwrap();
                for (i, (g, w)) in weights.iter().zip(&want.weights).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "B = {b} margin {margin} soft {soft}: weight {i}: {g} vs {w}"
                    );
                }
                let loss: f64 = got.losses.into_data().iter::<f64>().sum();
                assert!(
                    (loss - want.loss_sum).abs() <= 1e-5 * want.loss_sum.max(1.0),
                    "B = {b}: loss {loss} vs {}",
                    want.loss_sum
                );
                let active: i64 = got.active.into_data().iter::<i64>().sum();
                assert_eq!(active as u64, want.stats.active, "B = {b} margin {margin}");
            }
        }
    }
}
