//! Batch-hard mining on the device, with fixed shapes: nothing is read back, so the loss's
//! forward pass does not wait for the device (and a GPU never stalls on a host round trip).
//!
//! Every anchor gets a row: anchors without a positive or a negative are marked invalid and
//! contribute 0. Ties pick whichever index the backend's `argmax`/`argmin` kernel picks (the
//! loss value and statistics do not depend on it).

use burn::prelude::*;

/// The hardest positive and negative of every anchor.
pub(crate) struct HardRows {
    /// `[B]` index of the farthest positive (arbitrary where `valid` is false).
    pub positive: Tensor<1, Int>,
    /// `[B]` index of the nearest negative (arbitrary where `valid` is false).
    pub negative: Tensor<1, Int>,
    /// `[B]` whether the anchor has both a positive and a negative.
    pub valid: Tensor<1, Bool>,
    /// `[B]` mined `d(a, p)`, 0 where invalid.
    pub d_ap: Tensor<1>,
    /// `[B]` mined `d(a, n)`, 0 where invalid.
    pub d_an: Tensor<1>,
}

/// Batch-hard over a detached `[B, M]` distance matrix: the batch against itself (`against`
/// `None`, `M = B`), or against references with their labels `[M]` and each anchor's own
/// reference `[B]` (`-1` for none; never its positive).
pub(crate) fn hard(
    dist: Tensor<2>,
    labels: Tensor<1, Int>,
    against: Option<(Tensor<1, Int>, Tensor<1, Int>)>,
) -> HardRows {
    let [b, m] = dist.dims();
    let device = dist.device();
    let (ref_labels, not_self) = match against {
        None => (
            labels.clone(),
            Tensor::<2, Bool>::diag_mask([b, b], 0, &device),
        ),
        Some((ref_labels, own)) => {
            // A no-op where the types agree (`cast` returns the tensor as it is).
            let ref_labels = ref_labels.cast(burn::tensor::IntDType::from(labels.dtype()));
            let columns = Tensor::<1, Int>::arange(0..m as i64, &device)
                .cast(burn::tensor::IntDType::from(own.dtype()))
                .reshape([1, m])
                .expand([b, m]);
            let not_own = own.reshape([b, 1]).expand([b, m]).not_equal(columns);
            (ref_labels, not_own)
        }
    };
    let same = labels
        .reshape([b, 1])
        .expand([b, m])
        .equal(ref_labels.reshape([1, m]).expand([b, m]));
    let positive_mask = same.clone().bool_and(not_self);
    let negative_mask = same.bool_not();
    let valid = positive_mask
        .clone()
        .any_dim(1)
        .bool_and(negative_mask.clone().any_dim(1))
        .reshape([b]);
    let (d_ap, positive) = dist
        .clone()
        .mask_fill(positive_mask.bool_not(), f32::NEG_INFINITY)
        .max_dim_with_indices(1);
    let (d_an, negative) = dist
        .mask_fill(negative_mask.bool_not(), f32::INFINITY)
        .min_dim_with_indices(1);
    let invalid = valid.clone().bool_not();
    HardRows {
        positive: positive.reshape([b]),
        negative: negative.reshape([b]),
        d_ap: d_ap.reshape([b]).mask_fill(invalid.clone(), 0.0),
        d_an: d_an.reshape([b]).mask_fill(invalid, 0.0),
        valid,
    }
}

#[cfg(test)]
mod tests {
    //! The device path against the host miner, on flex (`tests/wgpu.rs` compares the whole
    //! loss, which takes this path there, with flex's host path).
    use super::*;
    use crate::mining::host;

    #[test]
    fn device_batch_hard_matches_the_host_miner() {
        let device = Device::flex();
        // The crate's `flex` feature names the backend (the workspace's builds switch it on).
        #[cfg(feature = "flex")]
        {
            assert!(crate::mining::mines_faster_on_host(&device));
            assert!(crate::mining::mines_faster_on_host(
                &device.clone().autodiff()
            ));
        }
        for seed in 0..20u64 {
            let b = 12 + (seed as usize % 7);
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            // Distinct distances (no ties), a singleton class, labels not 0..C.
            let mut dist = vec![0.0f32; b * b];
            for i in 0..b {
                for j in i + 1..b {
                    let v = next() as f32 + (i * b + j) as f32 * 1e-3;
                    dist[i * b + j] = v;
                    dist[j * b + i] = v;
                }
            }
            let labels: Vec<i64> = (0..b as i64)
                .map(|i| if i == 0 { 99 } else { (i % 4) * 10 - 7 })
                .collect();
            let want = host::hard(&dist, &host::Classes::new(&labels));
            let mined = hard(
                Tensor::<2>::from_data(TensorData::new(dist.clone(), [b, b]), &device),
                Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [b]), &device),
                None,
            );
            let read = |t: Tensor<1, Int>| -> Vec<i64> { t.into_data().try_into_vec_as().unwrap() };
            let valid: Vec<bool> = mined.valid.into_data().try_into_vec_as().unwrap();
            let (p, n) = (read(mined.positive), read(mined.negative));
            let got: Vec<(i64, i64, i64)> = (0..b)
                .filter(|&a| valid[a])
                .map(|a| (a as i64, p[a], n[a]))
                .collect();
            let want: Vec<(i64, i64, i64)> = (0..want.len())
                .map(|i| (want.anchor[i], want.positive[i], want.negative[i]))
                .collect();
            assert_eq!(got, want, "seed {seed}");
            let d_ap: Vec<f32> = mined.d_ap.into_data().try_into_vec_as().unwrap();
            assert_eq!(d_ap[0], 0.0, "the singleton anchor is invalid and zeroed");
        }
    }
}
