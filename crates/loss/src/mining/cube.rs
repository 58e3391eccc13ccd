//! Semi-hard, batch-all and PML's band mined on the device, for Burn's CubeCL backends (wgpu,
//! CUDA and the other cubecl runtimes): nothing is read back, so a GPU step never waits on a
//! `B×M` transfer, and memory stays `O(B·M)` (a few `B×M` tables, no `B×M×M` intermediate).
//! `M = B` in the batch; against references and the cross-batch memory `M` is their number,
//! and each anchor's own copy among them (`own`) is never its positive.
//!
//! Both kernels give **exactly the host miners' triplets and tie rule**
//! ([`host::semi_hard`](super::host::semi_hard), [`host::all_weights`](super::host::all_weights),
//! [`host::pml_semi_hard`](super::host::pml_semi_hard)): one thread per distance-matrix entry
//! `(a, j)`, a loop over the anchor's row in ascending column order, strict comparisons (so the
//! lowest index wins a tie) and "beyond the positive" strict (`d_an > d_ap`). Only sums differ:
//! the device adds in `f32` where the host adds in `f64`, and a hinge triplet within `f32`
//! rounding of the margin (`|d_an − d_ap − α|` below about `1e-7·d`) may count as active on one
//! and not the other (its loss is below that either way); PML's upper bound `d_an − d_ap ≤ α`
//! is likewise tested in `f32`.
//!
//! Work is `O(B·M·K)` for semi-hard (`K` = largest class: only positive pairs loop) and
//! `O(B·M²)` simple steps for batch-all and the band (every negative entry loops over the row
//! to find its anchor's positives; all threads of a cube share the anchor, so those loads are
//! broadcasts). With the swap (in-batch), a negative entry `(p, n)` also loops over the rows of
//! `p`'s class for the triplets `(q, p, n)` whose `d(p, n)` is below `d(q, n)`: `O(B³)` again.
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

use kernels::{CUBE, semi_hard_kernel, weights_kernel};

/// The CubeCL kernels (their own module: cubecl's prelude names `Tensor`, `Float` and `Int` too).
///
/// Both take a `[B, M]` distance matrix of `B` anchors (rows, labelled `labels`) against `M`
/// references (columns, labelled `ref_labels`; the batch itself in-batch, `M = B`) and, per
/// anchor, the reference that is the anchor itself (`own`, `-1` for none), never its positive.
mod kernels {
    use cubecl::prelude::*;

    /// Threads per cube; a cube covers `CUBE` consecutive columns of one anchor's row.
    pub(super) const CUBE: u32 = 256;

    /// For every positive pair `(a, p)` (`p` not the anchor's own reference, same label) of an
    /// anchor with a negative, the semi-hard negative: the nearest negative with `d_an > d_ap`,
    /// else the farthest one; the lowest index among equal distances. `-1` for every other
    /// entry.
    #[cube(launch)]
    pub(super) fn semi_hard_kernel<F: Float, I: Int>(
        dist: &Tensor<F>,
        labels: &Tensor<I>,
        ref_labels: &Tensor<I>,
        own: &Tensor<I>,
        negatives: &mut Tensor<I>,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let m = ref_labels.len();
        let a = CUBE_POS_Y as usize;
        let p = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        if p >= m {
            terminate!();
        }
        let row = a * m;
        let class = labels[a];
        let mut chosen = I::new(-1);
        if own[a] != I::cast_from(p) && ref_labels[p] == class {
            let d_ap = dist[row + p];
            let mut beyond = false;
            let mut nearest = F::new(0.0);
            let mut nearest_n = 0usize;
            let mut any = false;
            let mut farthest = F::new(0.0);
            let mut farthest_n = 0usize;
            for n in 0..m {
                if ref_labels[n] != class {
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

    /// Batch-all (or, with `banded`, PML's band `0 < d_an − d_ap ≤ band`) reduced per
    /// distance-matrix entry `(a, j)`:
    /// - `weights`: `∂(Σ losses)/∂D[a, j]`: the active triplets a positive `j` takes part in,
    ///   minus those a negative `j` takes part in (sigmoid sums for the soft margin); with the
    ///   swap also minus those where `j` is the negative of positive `a` and `d(a, j)` is the
    ///   smaller of `d_an` and `d_pn` (strictly: a tie keeps `d_an`, as `min_pair`);
    /// - per positive pair `(a, j)`, 0 elsewhere: `losses` the summed loss of its triplets,
    ///   `an_sums` the sum of their (swapped) `d_an`, `mined` their number, `active` how many
    ///   have a loss `> 0` (all of them with the soft margin, as the host miner counts in
    ///   `f64`).
    ///
    /// `swap` needs the square in-batch matrix (`d(p, n)` is entry `[p, n]`, and every anchor
    /// `q` is its own reference `q`).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn weights_kernel<F: Float, I: Int>(
        dist: &Tensor<F>,
        labels: &Tensor<I>,
        ref_labels: &Tensor<I>,
        own: &Tensor<I>,
        weights: &mut Tensor<F>,
        losses: &mut Tensor<F>,
        an_sums: &mut Tensor<F>,
        mined: &mut Tensor<I>,
        active: &mut Tensor<I>,
        margin: f32,
        band: f32,
        #[comptime] soft: bool,
        #[comptime] banded: bool,
        #[comptime] swap: bool,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let m = ref_labels.len();
        let a = CUBE_POS_Y as usize;
        let j = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        if j >= m {
            terminate!();
        }
        let row = a * m;
        let class = labels[a];
        let me = own[a];
        // Sums and counts in f32 whatever the distances' type: in f16 or bf16 integers stop
        // being exact above 2048 or 256, and the host miner sums in f64.
        let zero = f32::new(0.0);
        let one = f32::new(1.0);
        let mut w = zero;
        let mut loss = zero;
        let mut an_sum = zero;
        let mut count = 0u32;
        let mut hits = 0u32;
        let d = f32::cast_from(dist[row + j]);
        if ref_labels[j] == class {
            if me != I::cast_from(j) {
                // A positive: every negative n of the anchor (in the band).
                for n in 0..m {
                    if ref_labels[n] != class {
                        let d_an = f32::cast_from(dist[row + n]);
                        if !banded || (d_an > d && d_an - d <= band) {
                            let mut e = d_an;
                            if swap {
                                let d_pn = f32::cast_from(dist[j * m + n]);
                                if d_pn < d_an {
                                    e = d_pn;
                                }
                            }
                            count += 1;
                            an_sum += e;
                            let diff = d - e;
                            if soft {
                                // Every soft triplet counts as active (its loss is > 0 in
                                // exact arithmetic; f32 flushes e^-88 and below to 0).
                                loss += softplus::<f32>(diff);
                                w += sigmoid::<f32>(diff);
                                hits += 1;
                            } else {
                                let l = diff + margin;
                                if l > zero {
                                    loss += l;
                                    w += one;
                                    hits += 1;
                                }
                            }
                        }
                    }
                }
            }
        } else {
            // A negative: every positive p of the anchor (whose band holds j).
            for p in 0..m {
                if ref_labels[p] == class && me != I::cast_from(p) {
                    let d_ap = f32::cast_from(dist[row + p]);
                    if !banded || (d > d_ap && d - d_ap <= band) {
                        let mut takes = true;
                        if swap && f32::cast_from(dist[p * m + j]) < d {
                            // The swap takes d(p, j) for this triplet (`min_pair`'s rule).
                            takes = false;
                        }
                        if takes {
                            w -= hinge_slope(d_ap - d, margin, soft);
                        }
                    }
                }
            }
            if swap {
                // j as the negative of positive a, for every anchor q of a's class: the
                // triplet (q, a, j), whose d_an is d(a, j) where that is below d(q, j).
                for q in 0..m {
                    if labels[q] == class && q != a {
                        let d_qa = f32::cast_from(dist[q * m + a]);
                        let d_qj = f32::cast_from(dist[q * m + j]);
                        if (!banded || (d_qj > d_qa && d_qj - d_qa <= band)) && d < d_qj {
                            w -= hinge_slope(d_qa - d, margin, soft);
                        }
                    }
                }
            }
        }
        weights[row + j] = F::cast_from(w);
        losses[row + j] = F::cast_from(loss);
        an_sums[row + j] = F::cast_from(an_sum);
        mined[row + j] = I::cast_from(count);
        active[row + j] = I::cast_from(hits);
    }

    /// The slope of one triplet's loss in `d_ap − d_an`: 1 if the hinge is active, else 0;
    /// `sigmoid` for the soft margin.
    #[cube]
    fn hinge_slope(diff: f32, margin: f32, #[comptime] soft: bool) -> f32 {
        let mut slope = f32::new(0.0);
        if soft {
            slope = sigmoid::<f32>(diff);
        } else if diff + margin > f32::new(0.0) {
            slope = f32::new(1.0);
        }
        slope
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

/// What [`weights_kernel`] mines and how it scores (see the kernel).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WeightRule {
    /// The hinge's margin (unused with `soft`).
    pub margin: f32,
    /// `Some(band)`: PML's band `0 < d_an − d_ap ≤ band`; `None`: every triplet.
    pub band: Option<f32>,
    /// The soft margin.
    pub soft: bool,
    /// The anchor swap (square in-batch matrices only).
    pub swap: bool,
}

#[allow(clippy::type_complexity)]
fn weights_meta(
    dist: &TensorSpec,
    labels: &TensorSpec,
    _ref_labels: &TensorSpec,
    _own: &TensorSpec,
    _margin: &f32,
    _band: &f32,
    _flags: &u32,
) -> (TensorSpec, TensorSpec, TensorSpec, TensorSpec, TensorSpec) {
    let counts = TensorSpec::new(dist.shape.clone(), labels.dtype);
    (
        dist.clone(),
        dist.clone(),
        dist.clone(),
        counts.clone(),
        counts,
    )
}

fn semi_hard_meta(
    dist: &TensorSpec,
    labels: &TensorSpec,
    _ref_labels: &TensorSpec,
    _own: &TensorSpec,
) -> TensorSpec {
    TensorSpec::new(dist.shape.clone(), labels.dtype)
}

/// The device miners as a Burn backend extension (see the module docs).
#[backend_extension(Cube, Fusion)]
pub trait CubeMining: Backend {
    /// `dist` `[B, M]` (detached), `labels` `[B]`, `ref_labels` `[M]`, `own` `[B]` → the
    /// semi-hard negative per entry, `[B, M]`, `-1` where `(a, j)` is not a positive pair of
    /// an anchor with a negative.
    #[fusion(meta = semi_hard_meta)]
    fn semi_hard_negatives(
        dist: FloatTensor<Self>,
        labels: IntTensor<Self>,
        ref_labels: IntTensor<Self>,
        own: IntTensor<Self>,
    ) -> IntTensor<Self>;

    /// `dist` `[B, M]` (detached), labels as for `semi_hard_negatives` → `(weights, losses,
    /// an_sums, mined, active)`, each `[B, M]` (see `weights_kernel`); `flags` bit 0 the soft
    /// margin, bit 1 the band, bit 2 the swap.
    #[fusion(meta = weights_meta)]
    #[allow(clippy::type_complexity)]
    fn triplet_weights(
        dist: FloatTensor<Self>,
        labels: IntTensor<Self>,
        ref_labels: IntTensor<Self>,
        own: IntTensor<Self>,
        margin: f32,
        band: f32,
        flags: u32,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        IntTensor<Self>,
        IntTensor<Self>,
    );
}

/// The launch grid: one cube per `CUBE` columns of each row.
fn grid(b: usize, m: usize) -> (CubeCount, CubeDim) {
    // Vulkan guarantees 65535 cubes per grid dimension; rows are the second one.
    assert!(
        b <= 65_535,
        "device mining takes batches of at most 65535 embeddings, got {b} (its B×M matrices \
         would need {} GiB)",
        (b * m * 4) >> 30
    );
    let cubes = m.div_ceil(CUBE as usize) as u32;
    (CubeCount::Static(cubes, b as u32, 1), CubeDim::new_1d(CUBE))
}

/// The kernels' inputs, contiguous, with `B` and `M`.
fn inputs(
    dist: CubeTensor,
    labels: CubeTensor,
    ref_labels: CubeTensor,
    own: CubeTensor,
) -> ([CubeTensor; 4], usize, usize) {
    let [rows, cols] = dist.shape().dims::<2>();
    let [n] = labels.shape().dims::<1>();
    let [r] = ref_labels.shape().dims::<1>();
    let [o] = own.shape().dims::<1>();
    assert!(
        n == rows && r == cols && o == rows,
        "device mining wants a [B, M] distance matrix, B labels, M reference labels and B own \
         indices, got [{rows}, {cols}], {n}, {r} and {o}"
    );
    let contiguous = [dist, labels, ref_labels, own].map(into_contiguous);
    (contiguous, rows, cols)
}

impl CubeMining for CubeBackend {
    fn semi_hard_negatives(
        dist: CubeTensor,
        labels: CubeTensor,
        ref_labels: CubeTensor,
        own: CubeTensor,
    ) -> CubeTensor {
        let ([dist, labels, ref_labels, own], b, m) = inputs(dist, labels, ref_labels, own);
        let out = empty_device_dtype(
            dist.client.clone(),
            dist.device.clone(),
            [b, m].into(),
            labels.dtype,
        );
        if b == 0 || m == 0 {
            return out;
        }
        let (count, dim) = grid(b, m);
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
            ref_labels.into_tensor_arg(),
            own.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            dtypes,
        );
        out
    }

    fn triplet_weights(
        dist: CubeTensor,
        labels: CubeTensor,
        ref_labels: CubeTensor,
        own: CubeTensor,
        margin: f32,
        band: f32,
        flags: u32,
    ) -> (CubeTensor, CubeTensor, CubeTensor, CubeTensor, CubeTensor) {
        let ([dist, labels, ref_labels, own], b, m) = inputs(dist, labels, ref_labels, own);
        let (soft, banded, swap) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
        assert!(
            !swap || b == m,
            "the swap on the device needs the square in-batch matrix, got [{b}, {m}]"
        );
        let empty = |dtype| {
            empty_device_dtype(
                dist.client.clone(),
                dist.device.clone(),
                [b, m].into(),
                dtype,
            )
        };
        let out = (
            empty(dist.dtype),
            empty(dist.dtype),
            empty(dist.dtype),
            empty(labels.dtype),
            empty(labels.dtype),
        );
        if b == 0 || m == 0 {
            return out;
        }
        let (count, dim) = grid(b, m);
        let dtypes = [
            dtype_to_storage_type(dist.dtype),
            dtype_to_storage_type(labels.dtype),
        ];
        let client = dist.client.clone();
        weights_kernel::launch(
            &client,
            count,
            dim,
            dist.into_tensor_arg(),
            labels.into_tensor_arg(),
            ref_labels.into_tensor_arg(),
            own.into_tensor_arg(),
            out.0.clone().into_tensor_arg(),
            out.1.clone().into_tensor_arg(),
            out.2.clone().into_tensor_arg(),
            out.3.clone().into_tensor_arg(),
            out.4.clone().into_tensor_arg(),
            margin,
            band,
            soft,
            banded,
            swap,
            dtypes,
        );
        out
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

/// The labels of a device mining call: the anchors', the references' and, per anchor, the
/// reference that is the anchor itself (`-1` for none), in one signed integer type (the
/// kernels' integer outputs take it, and hold `-1` and counts up to `M`, which unsigned or
/// narrow types cannot).
#[derive(Debug, Clone)]
pub(crate) struct DeviceLabels {
    labels: Tensor<1, Int>,
    ref_labels: Tensor<1, Int>,
    own: Tensor<1, Int>,
}

impl DeviceLabels {
    /// In-batch: the batch is its own reference set, and anchor `a` is reference `a`.
    pub fn in_batch(labels: Tensor<1, Int>) -> Self {
        let [b] = labels.dims();
        let own = Tensor::<1, Int>::arange(0..b as i64, &labels.device());
        Self::against(labels.clone(), labels, own)
    }

    /// Anchors labelled `labels` against references labelled `ref_labels`; `own[a]` is the
    /// reference that holds anchor `a` itself, `-1` for none.
    pub fn against(
        labels: Tensor<1, Int>,
        ref_labels: Tensor<1, Int>,
        own: Tensor<1, Int>,
    ) -> Self {
        use burn::tensor::{DType, IntDType};
        let dtype = match labels.dtype() {
            DType::I64 => IntDType::I64,
            _ => IntDType::I32,
        };
        // `cast` returns a tensor already of `dtype` as it is.
        let to = |t: Tensor<1, Int>| t.cast(dtype);
        Self {
            labels: to(labels),
            ref_labels: to(ref_labels),
            own: to(own),
        }
    }
}

/// [`CubeMining::semi_hard_negatives`] on a detached `[B, M]` distance matrix of a cube
/// device: negative indices, `-1` where there is no triplet.
pub(crate) fn semi_hard_negatives(dist: Tensor<2>, labels: &DeviceLabels) -> Tensor<2, Int> {
    let dist = dist.detach().inner();
    let l = labels.clone();
    Tensor::from_dispatch(<Dispatch as CubeMining>::semi_hard_negatives(
        dist.into_dispatch(),
        l.labels.inner().into_dispatch(),
        l.ref_labels.inner().into_dispatch(),
        l.own.inner().into_dispatch(),
    ))
}

/// The triplets of a `[B, M]` table of semi-hard negatives (row-major, `-1` = none), by anchor,
/// then positive: the host miner's order.
pub(crate) fn table_triplets(table: &[i64], m: usize) -> host::IndexTriplets {
    let mut out = host::IndexTriplets::default();
    for (i, &negative) in table.iter().enumerate() {
        if negative >= 0 {
            out.anchor.push((i / m) as i64);
            out.positive.push((i % m) as i64);
            out.negative.push(negative);
        }
    }
    out
}

/// Batch-all or PML's band per entry on a cube device (see [`CubeMining::triplet_weights`]).
pub(crate) struct DeviceWeights {
    /// `[B, M]` `∂(Σ losses)/∂D`.
    pub weights: Tensor<2>,
    /// `[B, M]` summed loss of each positive pair's triplets.
    pub losses: Tensor<2>,
    /// `[B, M]` summed (swapped) `d_an` of each positive pair's triplets.
    pub an_sums: Tensor<2>,
    /// `[B, M]` mined triplets of each positive pair.
    pub mined: Tensor<2, Int>,
    /// `[B, M]` active triplets of each positive pair.
    pub active: Tensor<2, Int>,
}

/// [`CubeMining::triplet_weights`] on a detached distance matrix of a cube device.
pub(crate) fn triplet_weights(
    dist: Tensor<2>,
    labels: &DeviceLabels,
    rule: WeightRule,
) -> DeviceWeights {
    let dist = dist.detach().inner();
    let l = labels.clone();
    let flags = rule.soft as u32 | (rule.band.is_some() as u32) << 1 | (rule.swap as u32) << 2;
    let (weights, losses, an_sums, mined, active) = <Dispatch as CubeMining>::triplet_weights(
        dist.into_dispatch(),
        l.labels.inner().into_dispatch(),
        l.ref_labels.inner().into_dispatch(),
        l.own.inner().into_dispatch(),
        rule.margin,
        rule.band.unwrap_or(0.0),
        flags,
    );
    DeviceWeights {
        weights: Tensor::from_dispatch(weights),
        losses: Tensor::from_dispatch(losses),
        an_sums: Tensor::from_dispatch(an_sums),
        mined: Tensor::from_dispatch(mined),
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

    /// A `[b, m]` matrix of quarters against references with labels of up to 4 classes (and
    /// label 7 only among the anchors), every other anchor holding its own reference.
    fn fixture_against(b: usize, m: usize, seed: u64) -> (Vec<f32>, Vec<i64>, Vec<i64>, Vec<i64>) {
        let (d, _) = fixture(b.max(m), seed);
        let d: Vec<f32> = (0..b * m)
            .map(|i| d[(i / m) * b.max(m) + i % m] + 0.25)
            .collect();
        let refs: Vec<i64> = (0..m as i64).map(|j| (j * 5 + seed as i64) % 4).collect();
        let own: Vec<i64> = (0..b as i64)
            .map(|a| if a % 2 == 0 { (a * 7) % m as i64 } else { -1 })
            .collect();
        let y = (0..b)
            .map(|a| match own[a] {
                -1 if a % 3 == 0 => 7,
                -1 => (a as i64) % 4,
                r => refs[r as usize],
            })
            .collect();
        (d, y, refs, own)
    }

    fn ints(v: &[i64], device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
    }

    /// `(d, labels, ref_labels, own)` on wgpu.
    fn against(d: &[f32], y: &[i64], refs: &[i64], own: &[i64]) -> (Tensor<2>, DeviceLabels) {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let (b, m) = (y.len(), refs.len());
        let labels =
            DeviceLabels::against(ints(y, &device), ints(refs, &device), ints(own, &device));
        (
            Tensor::from_data(TensorData::new(d.to_vec(), [b, m]), &device),
            labels,
        )
    }

    fn host_classes(y: &[i64], refs: &[i64], own: &[i64]) -> host::Classes {
        let own = own.iter().map(|&o| (o >= 0).then_some(o as u32)).collect();
        host::Classes::against(y, refs, own)
    }

    /// Per-entry weights, loss sum, active count and Σ d_an of explicit triplets over a
    /// `[b, m]` matrix, one triplet at a time in f64, with the swap's `d(p, n)` from entry
    /// `[p, n]` (a tie keeps `d_an`, as `min_pair`).
    fn brute_weights(
        d: &[f32],
        m: usize,
        t: &host::IndexTriplets,
        rule: WeightRule,
    ) -> (Vec<f64>, f64, u64, f64) {
        let mut w = vec![0.0; d.len()];
        let (mut loss, mut active, mut an) = (0.0, 0, 0.0);
        for (a, p, n) in t.iter() {
            let d_ap = f64::from(d[a * m + p]);
            let (mut e, mut at) = (f64::from(d[a * m + n]), a * m + n);
            if rule.swap && d[p * m + n] < d[a * m + n] {
                (e, at) = (f64::from(d[p * m + n]), p * m + n);
            }
            an += e;
            let diff = d_ap - e;
            let (l, slope) = if rule.soft {
                let s = 1.0 / (1.0 + (-diff).exp());
                ((1.0 + diff.exp()).ln(), s)
            } else if diff + f64::from(rule.margin) > 0.0 {
                (diff + f64::from(rule.margin), 1.0)
            } else {
                (0.0, 0.0)
            };
            if rule.soft || l > 0.0 {
                active += 1;
            }
            loss += l;
            w[a * m + p] += slope;
            w[at] -= slope;
        }
        (w, loss, active, an)
    }

    /// The kernel's tables against [`brute_weights`] of `triplets`.
    fn check_weights(
        got: DeviceWeights,
        d: &[f32],
        m: usize,
        triplets: &host::IndexTriplets,
        rule: WeightRule,
        ctx: &str,
    ) {
        let (weights, loss, active, an) = brute_weights(d, m, triplets, rule);
        let got_w: Vec<f32> = got.weights.into_data().try_into_vec_as().unwrap();
        for (i, (g, w)) in got_w.iter().zip(&weights).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{ctx}: weight {i}: {g} vs {w}"
            );
        }
        let sum = |t: Tensor<2>| -> f64 { t.into_data().iter::<f64>().sum() };
        let count = |t: Tensor<2, Int>| -> i64 { t.into_data().iter::<i64>().sum() };
        let (got_loss, got_an) = (sum(got.losses), sum(got.an_sums));
        assert!(
            (got_loss - loss).abs() <= 1e-5 * loss.max(1.0),
            "{ctx}: loss {got_loss} vs {loss}"
        );
        assert!(
            (got_an - an).abs() <= 1e-5 * an.max(1.0),
            "{ctx}: Σ d_an {got_an} vs {an}"
        );
        assert_eq!(count(got.mined) as usize, triplets.len(), "{ctx}: triplets");
        assert_eq!(count(got.active) as u64, active, "{ctx}: active");
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
            let table: Vec<i64> = semi_hard_negatives(dist, &DeviceLabels::in_batch(labels))
                .into_data()
                .try_into_vec_as()
                .unwrap();
            let want = host::semi_hard(&d, &host::Classes::new(&y));
            assert_eq!(table_triplets(&table, b), want, "B = {b}");
        }
        // Against references, some anchors holding their own (never their positive).
        for (b, m, seed) in [(1, 3, 8), (6, 1, 9), (13, 40, 10), (40, 300, 11)] {
            let (d, y, refs, own) = fixture_against(b, m, seed);
            let (dist, labels) = against(&d, &y, &refs, &own);
            let table: Vec<i64> = semi_hard_negatives(dist, &labels)
                .into_data()
                .try_into_vec_as()
                .unwrap();
            let want = host::semi_hard(&d, &host_classes(&y, &refs, &own));
            assert!(
                b < 13 || want.len() > 20,
                "{b}×{m}: {} triplets",
                want.len()
            );
            assert_eq!(table_triplets(&table, m), want, "{b}×{m}");
        }
    }

    #[test]
    fn weight_tables_are_the_host_miners_triplets() {
        let rules = |swap| {
            [(0.25f64, false), (0.6, false), (0.0, true)].map(|(margin, soft)| (margin, soft, swap))
        };
        // In-batch: batch-all and PML's band, with and without the swap.
        for (b, seed) in [(1, 0), (7, 5), (40, 6), (300, 7)] {
            let (d, y) = fixture(b, seed);
            let classes = host::Classes::new(&y);
            for (margin, soft, swap) in rules(false).into_iter().chain(rules(true)) {
                for band in [None, Some(margin.max(0.5) as f32)] {
                    let rule = WeightRule {
                        margin: margin as f32,
                        band,
                        soft,
                        swap,
                    };
                    let ctx = format!("B = {b} {rule:?}");
                    let (dist, labels) = tensors(&d, &y);
                    let got = triplet_weights(dist, &DeviceLabels::in_batch(labels), rule);
                    let triplets = match band {
                        None => host::all(&classes),
                        Some(band) => host::pml_semi_hard(&d, &classes, f64::from(band)),
                    };
                    if b == 300 && !swap && band.is_none() {
                        // The bucketed host miner's weights too.
                        let want = host::all_weights(&d, &classes, margin, soft);
                        let (w, ..) = brute_weights(&d, b, &triplets, rule);
                        for (x, y) in w.iter().zip(&want.weights) {
                            assert!((x - f64::from(*y)).abs() <= 1e-4 * x.abs().max(1.0));
                        }
                    }
                    check_weights(got, &d, b, &triplets, rule, &ctx);
                }
            }
        }
        // Against references (no swap there), some anchors holding their own.
        for (b, m, seed) in [(1, 3, 8), (6, 1, 9), (13, 40, 10), (40, 300, 11)] {
            let (d, y, refs, own) = fixture_against(b, m, seed);
            let classes = host_classes(&y, &refs, &own);
            for (margin, soft, _) in rules(false) {
                for band in [None, Some(0.5f32)] {
                    let rule = WeightRule {
                        margin: margin as f32,
                        band,
                        soft,
                        swap: false,
                    };
                    let (dist, labels) = against(&d, &y, &refs, &own);
                    let got = triplet_weights(dist, &labels, rule);
                    let triplets = match band {
                        None => host::all(&classes),
                        Some(band) => host::pml_semi_hard(&d, &classes, f64::from(band)),
                    };
                    check_weights(got, &d, m, &triplets, rule, &format!("{b}×{m} {rule:?}"));
                }
            }
        }
    }
}
