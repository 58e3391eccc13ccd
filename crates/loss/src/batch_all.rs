//! Batch-all without listing its triplets: the host reduces every valid triplet to one weight
//! per distance-matrix entry (`W = ∂L/∂D`, [`host::all_weights`]) and sums the losses exactly
//! in `f64`; the loss is then `Σ W ⊙ D` plus that sum's remainder, differentiated through the
//! distance matrix (composed) or by the hand-written backward of feature `fused`.

use burn::prelude::*;

use super::{TripletLoss, zero_in_graph};
#[cfg(feature = "fused")]
use crate::distance::Distance;
use crate::mining::{host, read_batch};
use crate::output::{MiningStats, TripletOutput};
use crate::weighted::weighted_sum;

impl TripletLoss {
    /// Batch-all without materialising triplets: the host reduces every triplet to a weight
    /// per distance-matrix entry (`W = ∂L/∂D`) and sums the losses exactly.
    pub(super) fn batch_all(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> TripletOutput {
        let device = embeddings.device();
        let fused = self.use_fused(&device);
        // Attached to the graph on the composed path: the loss back-propagates through it.
        let dist_graph = if fused {
            self.mining_distances(&embeddings)
        } else {
            self.distance
                .pairwise(embeddings.clone(), embeddings.clone())
        };
        let (dist, classes) = read_batch(dist_graph.clone(), labels);
        if self.swap {
            // No weight form for the swap: every triplet, gathered row-wise.
            return self.gathered(embeddings, None, &dist, host::all(&classes));
        }
        let all = host::all_weights(&dist, &classes, self.margin, self.soft);
        let stats = MiningStats::from(all.stats.counting_non_finite(&dist));
        let scale = self.reduction.scale(stats.triplets, stats.active);
        if stats.triplets == 0 || scale == 0.0 {
            return TripletOutput {
                loss: zero_in_graph(embeddings, None),
                stats,
            };
        }
        #[cfg(feature = "fused")]
        if fused {
            let loss = self.batch_all_fused(embeddings, &all.weights, &dist, scale);
            return TripletOutput {
                loss: loss.add_scalar(scale * all.loss_sum),
                stats,
            };
        }
        let loss = weighted_loss(dist_graph, &dist, &all.weights, scale, all.loss_sum);
        TripletOutput { loss, stats }
    }

    /// Whether batch-all takes the hand-written backward (feature `fused`).
    fn use_fused(&self, device: &Device) -> bool {
        #[cfg(feature = "fused")]
        {
            self.distance != Distance::Cosine && crate::fused::supported(device)
        }
        #[cfg(not(feature = "fused"))]
        {
            let _ = device;
            false
        }
    }

    /// Zero-valued, with the exact gradient: `∂L/∂D = W` becomes `∂L/∂D² = W/(2D)` for the
    /// Euclidean distance (0 where `D = 0`, as `safe_sqrt`'s gradient).
    #[cfg(feature = "fused")]
    fn batch_all_fused(
        &self,
        embeddings: Tensor<2>,
        weights: &[f32],
        dist: &[f32],
        scale: f64,
    ) -> Tensor<1> {
        let [b, _] = embeddings.dims();
        let squared: Vec<f32> = weights
            .iter()
            .zip(dist)
            .map(|(&w, &d)| match self.distance {
                Distance::Euclidean if d > 0.0 => (w as f64 * scale / (2.0 * d as f64)) as f32,
                Distance::Euclidean => 0.0,
                _ => (w as f64 * scale) as f32,
            })
            .collect();
        let squared =
            Tensor::<2>::from_data(TensorData::new(squared, [b, b]), &embeddings.device());
        crate::fused::pair_weight_grad(embeddings, squared)
    }
}

/// `scale · Σ losses` with gradient `scale · W` through the distance matrix `dist_graph`
/// (whose values `dist` the host saw): `Σ W ⊙ D + c`, with `c` from the host's exact `f64`
/// sum. (`Σ W ⊙ (D − detach(D))` would make the value bit-exact but costs one more `B×B` pass,
/// 35 % of batch-all's time at B = 1024, for a gain below f32 rounding of the loss.)
pub(super) fn weighted_loss(
    dist_graph: Tensor<2>,
    dist: &[f32],
    weights: &[f32],
    scale: f64,
    loss_sum: f64,
) -> Tensor<1> {
    let [b, m] = dist_graph.dims();
    let linear: f64 = weights
        .iter()
        .zip(dist)
        .map(|(&w, &d)| w as f64 * d as f64)
        .sum();
    let scaled: Vec<f32> = weights.iter().map(|&w| (w as f64 * scale) as f32).collect();
    let scaled = Tensor::<2>::from_data(TensorData::new(scaled, [b, m]), &dist_graph.device());
    weighted_sum(dist_graph, scaled).add_scalar(scale * (loss_sum - linear))
}
