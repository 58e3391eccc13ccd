//! One training step as `triplet train` runs it: the batch's forward, loss and backward on
//! one or several replicas, their gradients summed on the first device, and the BatchNorm
//! running statistics settled. `benches/train_step.rs` times this same function.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use triplet_loss::{CrossBatchMemory, MiningStats, PendingStats, TripletLoss};
use triplet_model::EmbeddingModel;

use super::amp::Autocast;

/// A batch as the loader hands it to a step: images (NCHW, f32) and labels on the host.
#[derive(Debug, Clone, Copy)]
pub struct HostBatch<'a> {
    /// The images, `shape` each, one after another.
    pub images: &'a [f32],
    /// One label per image.
    pub labels: &'a [i64],
    /// `[channels, height, width]` of an image.
    pub shape: [usize; 3],
}

/// One training step's loss, mining statistics and gradients (on the first device), with the
/// batch split by class over `replicas`: each replica mines inside its own P×K part (P/n
/// classes of K images), and the gradients of the parts' losses (each weighted 1/n) are summed
/// on the first device, as Burn's `MultiDevice` strategy does. With several replicas each runs
/// in its own thread, as in `MultiDevice`: the devices work at the same time, and Burn's
/// BatchNorm running statistics, which merge the updates of different threads, take one
/// averaged step instead of one per replica.
///
/// With a cross-batch `memory` (one replica only), the batch's anchors are mined against the
/// memory, which takes the batch in first.
///
/// `autocast` sets the float type of the forward and backward (the batch is cast to it; the
/// weights, their gradients, the embeddings and the loss stay f32: [`super::amp`]) and the
/// factor the loss is scaled by before the backward. The loss returned is unscaled; the
/// gradients are not (`amp::unscale` divides them).
///
/// The loss value and statistics are read back at once (one transfer per replica on a GPU);
/// [`step_deferred`] leaves them on the devices.
///
/// # Panics
/// If a `memory` is given with several replicas (`train` refuses that combination).
pub fn step_on_replicas(
    model: &EmbeddingModel,
    loss: &TripletLoss,
    memory: Option<&mut CrossBatchMemory>,
    replicas: &[Device],
    batch: HostBatch<'_>,
    autocast: Autocast,
) -> (f64, MiningStats, GradientsParams) {
    let (pending, grads) = step_deferred(model, loss, memory, replicas, batch, autocast);
    let (value, stats) = pending.read();
    (value, stats, grads)
}

/// A step's loss values and mining statistics, per replica, not read back yet.
#[derive(Debug)]
pub struct PendingStep {
    /// Each replica's weighted loss (`[1]`, detached) and statistics.
    parts: Vec<(Tensor<1>, PendingStats)>,
}

impl PendingStep {
    /// The step's loss (the replicas' weighted losses summed) and the batch's statistics,
    /// read back: one transfer per replica where its values are on a GPU, none on flex (its
    /// statistics are on the host already, and the loss value is a copy).
    pub fn read(self) -> (f64, MiningStats) {
        let single = self.parts.len() == 1;
        let mut value = 0.0;
        let mut stats = MiningStats::default();
        let (mut sum_d_ap, mut sum_d_an) = (0.0, 0.0);
        for (part_loss, pending) in self.parts {
            let (v, s) = pending.read_with_loss(part_loss);
            value += f64::from(v);
            stats.triplets += s.triplets;
            stats.active += s.active;
            stats.anchors_with_triplet += s.anchors_with_triplet;
            stats.non_finite += s.non_finite;
            if single {
                // One replica: its means as they are (m·t/t need not round back to m).
                stats.mean_d_ap = s.mean_d_ap;
                stats.mean_d_an = s.mean_d_an;
            }
            // The batch's means over all its triplets: each part's mean weighted by its count.
            sum_d_ap += s.mean_d_ap * s.triplets as f64;
            sum_d_an += s.mean_d_an * s.triplets as f64;
        }
        if !single && stats.triplets > 0 {
            stats.mean_d_ap = sum_d_ap / stats.triplets as f64;
            stats.mean_d_an = sum_d_an / stats.triplets as f64;
        }
        (value, stats)
    }
}

/// [`step_on_replicas`] without reading anything back: the gradients, and the loss values and
/// statistics left on the devices for [`PendingStep::read`]. `triplet train` reads them once
/// the optimiser step is queued, so on a GPU a step waits for the device once (f32, bf16; f16
/// also reads whether its gradients are finite before the optimiser step, as PyTorch's
/// `GradScaler` does).
///
/// # Panics
/// As [`step_on_replicas`].
pub fn step_deferred(
    model: &EmbeddingModel,
    loss: &TripletLoss,
    mut memory: Option<&mut CrossBatchMemory>,
    replicas: &[Device],
    batch: HostBatch<'_>,
    autocast: Autocast,
) -> (PendingStep, GradientsParams) {
    let HostBatch {
        images,
        labels,
        shape: [c, h, w],
    } = batch;
    let main = &replicas[0];
    let image_len = c * h * w;
    let parts = shard_by_class(labels, replicas.len());
    let weight = 1.0 / parts.len() as f64;
    assert!(
        memory.is_none() || replicas.len() == 1,
        "a cross-batch memory trains on one replica"
    );
    let part =
        |index: usize, device: &Device, rows: &[usize], memory: Option<&mut CrossBatchMemory>| {
            // Every replica but the first gets parameters of its own (`fork`, same ids, shared
            // BatchNorm running states), even on the first's device (`--devices 0,0`): two threads
            // building graphs on the same autodiff leaves deadlock in Burn 0.22.1 (one merges the
            // graphs while the other's backward cleans them up, each holding the lock the other
            // waits for).
            let replica = if index == 0 {
                model.clone()
            } else {
                model.clone().fork(device)
            };
            let mut x = Vec::with_capacity(rows.len() * image_len);
            for &r in rows {
                x.extend_from_slice(&images[r * image_len..(r + 1) * image_len]);
            }
            let y: Vec<i64> = rows.iter().map(|&r| labels[r]).collect();
            let n = rows.len();
            let x = Tensor::<4>::from_data(TensorData::new(x, [n, c, h, w]), device);
            let x = match autocast.dtype {
                Some(dtype) => x.cast(dtype),
                None => x,
            };
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [n]), device);
            let embeddings = replica.forward(x);
            let output = match memory {
                Some(memory) => memory.forward_deferred(loss, embeddings, y),
                None => loss.forward_deferred(embeddings, y),
            };
            let part_loss = if parts.len() == 1 {
                output.loss
            } else {
                output.loss.mul_scalar(weight)
            };
            let value = part_loss.clone().detach();
            let part_loss = if autocast.loss_scale == 1.0 {
                part_loss
            } else {
                part_loss.mul_scalar(autocast.loss_scale)
            };
            let grads = GradientsParams::from_grads(part_loss.backward(), &replica);
            let grads = if device == main {
                grads
            } else {
                grads.to_device(main, &replica)
            };
            (value, output.stats, grads)
        };
    let results: Vec<(Tensor<1>, PendingStats, GradientsParams)> = if parts.len() == 1 {
        vec![part(0, main, &parts[0], memory.take())]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = replicas
                .iter()
                .zip(&parts)
                .enumerate()
                .map(|(i, (device, rows))| scope.spawn(move || part(i, device, rows, None)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    settle_running_stats(model);
    let mut accumulator = GradientsAccumulator::new();
    let mut pending = Vec::with_capacity(results.len());
    for (value, stats, grads) in results {
        accumulator.accumulate(model, grads);
        pending.push((value, stats));
    }
    (PendingStep { parts: pending }, accumulator.grads())
}

/// The batch's rows split into `parts` groups of whole classes (class `j` in order of first
/// appearance goes to group `j mod parts`), so each group is itself a P×K batch.
fn shard_by_class(labels: &[i64], parts: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<i64> = Vec::new();
    for &l in labels {
        if !order.contains(&l) {
            order.push(l);
        }
    }
    let mut groups = vec![Vec::new(); parts.min(order.len()).max(1)];
    let count = groups.len();
    for (row, l) in labels.iter().enumerate() {
        let class = order.iter().position(|o| o == l).unwrap_or(0);
        groups[class % count].push(row);
    }
    groups
}

/// Folds every BatchNorm's pending running-statistics update into its value.
///
/// Burn's `RunningState` keeps the update of a forward pass pending, keyed by the thread that
/// made it, until the next training forward on that thread (or `valid()`) merges the pending
/// updates of all threads into their mean. Records read the merged value only, so
/// without this a checkpoint taken after step N held the statistics of step N − 1 (a resumed
/// run lost one update per interruption), and replicas, each a new thread every step, were
/// never merged until the epoch's validation averaged all of the epoch's updates at once.
/// Called after every training step, so between steps nothing is pending: one replica's update
/// is taken as it is (x / 1 is exact, as Burn's own merge at the next forward would have taken
/// it), several replicas' updates are averaged once per step.
pub(crate) fn settle_running_stats(model: &EmbeddingModel) {
    // `valid()` merges each running state in place (the states are shared by the clones of
    // `model`); the inference copy it returns is not needed.
    drop(model.valid());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::model_device;
    use burn::module::{ModuleVisitor, Param};
    use triplet_loss::{Mining, TripletLossConfig, TripletOutput};
    use triplet_model::{EmbeddingHeadConfig, EmbeddingModelConfig, SmallCnnConfig};

    /// The reference CNN on 1×8×8 images with 8-d embeddings, on `device`'s current seed.
    fn small_model(device: &Device) -> EmbeddingModel {
        EmbeddingModelConfig::new()
            .with_backbone(SmallCnnConfig::new().with_in_channels(1).into())
            .with_head(EmbeddingHeadConfig::new().with_dim(8))
            .init(device)
    }

    /// The loss and statistics of the batch rows `rows` (1×8×8 images) on their own, as one
    /// replica computes them.
    fn part_output(
        model: &EmbeddingModel,
        loss: &TripletLoss,
        images: &[f32],
        labels: &[i64],
        rows: &[usize],
    ) -> TripletOutput {
        let device = model_device(model);
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|&r| images[r * 64..(r + 1) * 64].to_vec())
            .collect();
        let y: Vec<i64> = rows.iter().map(|&r| labels[r]).collect();
        let n = rows.len();
        let x = Tensor::<4>::from_data(TensorData::new(x, [n, 1, 8, 8]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [n]), &device);
        loss.forward_with_stats(model.forward(x), y)
    }

    /// Every gradient of `model`'s parameters in `grads`, flattened in visiting order.
    fn flat(model: &EmbeddingModel, grads: &GradientsParams) -> Vec<f32> {
        struct Collect<'a>(&'a GradientsParams, Vec<f32>);
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                // Parameters without a gradient (none reached them) add nothing.
                if let Some(g) = self.0.get::<D>(param.id) {
                    self.1
                        .extend(g.into_data().try_into_vec_as::<f32>().unwrap());
                }
            }
        }
        let mut c = Collect(grads, Vec::new());
        model.visit(&mut c);
        c.1
    }

    /// Every float tensor of `model`, parameters and BatchNorm running statistics, flattened
    /// in visiting order (records and `valid()` read these values).
    fn state_of(model: &EmbeddingModel) -> Vec<f32> {
        struct Collect(Vec<f32>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0
                    .extend(param.val().into_data().try_into_vec_as::<f32>().unwrap());
            }
        }
        let mut c = Collect(Vec::new());
        model.visit(&mut c);
        c.0
    }

    /// After each step the running statistics are those of one BatchNorm update per step, the
    /// mean of the replicas' updates, and nothing is left pending: a checkpoint taken between
    /// steps holds them. (Burn leaves a step's update pending per thread; replicas run in a new
    /// thread each step, so without settling they were never merged within an epoch, and a
    /// single device's checkpoint lagged one update behind.)
    #[test]
    fn each_step_settles_one_averaged_batch_norm_update() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let config = EmbeddingModelConfig::new()
            .with_backbone(SmallCnnConfig::new().with_in_channels(1).into())
            .with_head(EmbeddingHeadConfig::new().with_dim(8));
        let model = config.init(&device);
        let loss = TripletLossConfig::new().with_mining(Mining::All).init();
        let labels = [0i64, 0, 1, 1, 2, 2, 3, 3];
        let images: Vec<f32> = (0..8 * 64)
            .map(|i| ((i * 53 + i / 64 * 17) % 31) as f32 / 15.0 - 1.0)
            .collect();
        // An independent copy (its own running statistics) of `model` as it stands.
        let copy = |m: &EmbeddingModel| config.init(&device).load_record(m.clone().into_record());
        for replicas in [1usize, 2] {
            let model = copy(&model);
            for _step in 0..3 {
                // Expected: each part's update made on its own copy, then their mean.
                let parts = shard_by_class(&labels, replicas);
                let mut want = vec![0f32; state_of(&model).len()];
                for rows in &parts {
                    let part = copy(&model);
                    let x: Vec<f32> = rows
                        .iter()
                        .flat_map(|&r| images[r * 64..(r + 1) * 64].to_vec())
                        .collect();
                    let n = rows.len();
                    let x = Tensor::<4>::from_data(TensorData::new(x, [n, 1, 8, 8]), &device);
                    drop(part.forward(x));
                    settle_running_stats(&part);
                    for (w, v) in want.iter_mut().zip(state_of(&part)) {
                        *w += v;
                    }
                }
                for w in &mut want {
                    *w /= parts.len() as f32;
                }
                let before = state_of(&model);
                step_on_replicas(
                    &model,
                    &loss,
                    None,
                    &vec![device.clone(); replicas],
                    HostBatch {
                        images: &images,
                        labels: &labels,
                        shape: [1, 8, 8],
                    },
                    Autocast::F32,
                );
                let got = state_of(&model);
                assert_ne!(got, before, "the running statistics moved");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "{replicas} replica(s), value {i}: {g} vs {w}"
                    );
                }
                // What a checkpoint records is the same.
                assert_eq!(state_of(&copy(&model)), got);
            }
        }
    }

    #[test]
    fn whole_classes_go_to_each_part() {
        let parts = shard_by_class(&[7, 7, 3, 3, 9, 9, 1, 1, 5, 5], 2);
        assert_eq!(parts, [vec![0, 1, 4, 5, 8, 9], vec![2, 3, 6, 7]]);
        assert_eq!(shard_by_class(&[1, 1, 2, 2], 1), [vec![0, 1, 2, 3]]);
    }

    /// Two replicas (here on one device) give the mean of their parts' losses and gradients,
    /// each part mined on its own.
    #[test]
    fn replicas_average_their_parts() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = small_model(&device);
        let loss = TripletLossConfig::new()
            .with_mining(Mining::All)
            .with_margin(1.0)
            .init();
        let labels = [0i64, 0, 1, 1, 2, 2, 3, 3];
        let images: Vec<f32> = (0..8 * 64)
            .map(|i| ((i * 37 + i / 64 * 11) % 29) as f32 / 14.0 - 1.0)
            .collect();
        let (value, stats, grads) = step_on_replicas(
            &model,
            &loss,
            None,
            &[device.clone(), device.clone()],
            HostBatch {
                images: &images,
                labels: &labels,
                shape: [1, 8, 8],
            },
            Autocast::F32,
        );
        let mut want_value = 0.0;
        let mut want_grads: Vec<f32> = Vec::new();
        let mut triplets = 0;
        for rows in [[0usize, 1, 4, 5], [2, 3, 6, 7]] {
            let out = part_output(&model, &loss, &images, &labels, &rows);
            want_value += 0.5 * f64::from(out.loss.clone().into_scalar::<f32>());
            triplets += out.stats.triplets;
            let g = flat(
                &model,
                &GradientsParams::from_grads(out.loss.backward(), &model),
            );
            if want_grads.is_empty() {
                want_grads = g.iter().map(|v| 0.5 * v).collect();
            } else {
                for (w, v) in want_grads.iter_mut().zip(g) {
                    *w += 0.5 * v;
                }
            }
        }
        assert!((value - want_value).abs() < 1e-6, "{value} vs {want_value}");
        assert!(value > 0.0, "the margin makes the loss positive");
        assert_eq!(stats.triplets, triplets);
        let got = flat(&model, &grads);
        assert_eq!(got.len(), want_grads.len());
        // NaN-aware: `m.max(NaN)` would drop a NaN gradient from the scale.
        let scale = want_grads.iter().fold(0f32, |m, v| {
            if m.is_nan() || v.is_nan() {
                f32::NAN
            } else {
                m.max(v.abs())
            }
        });
        assert!(scale > 0.0);
        for (g, w) in got.iter().zip(&want_grads) {
            assert!((g - w).abs() <= 1e-5 * scale, "{g} vs {w}");
        }
    }

    /// With `--devices`, the logged mean distances are those of all the batch's triplets: each
    /// part's mean weighs by its number of triplets (here 32 and 8), not 1/n.
    #[test]
    fn replica_means_weigh_parts_by_their_triplets() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let model = small_model(&device);
        let loss = TripletLossConfig::new().with_mining(Mining::All).init();
        let labels = [0i64, 0, 0, 0, 1, 1, 2, 2, 3, 3];
        let images: Vec<f32> = (0..10 * 64)
            .map(|i| ((i * 41 + i / 64 * 13) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let (_, stats, _) = step_on_replicas(
            &model,
            &loss,
            None,
            &[device.clone(), device.clone()],
            HostBatch {
                images: &images,
                labels: &labels,
                shape: [1, 8, 8],
            },
            Autocast::F32,
        );
        let parts = shard_by_class(&labels, 2);
        let (mut triplets, mut d_ap, mut d_an) = (0u64, 0.0, 0.0);
        let mut counts = Vec::new();
        for rows in &parts {
            let s = part_output(&model, &loss, &images, &labels, rows).stats;
            counts.push(s.triplets);
            triplets += s.triplets;
            d_ap += s.mean_d_ap * s.triplets as f64;
            d_an += s.mean_d_an * s.triplets as f64;
        }
        assert_eq!(counts, [32, 8]);
        assert_eq!(stats.triplets, triplets);
        let (want_ap, want_an) = (d_ap / triplets as f64, d_an / triplets as f64);
        assert!(
            (stats.mean_d_ap - want_ap).abs() < 1e-6,
            "{} vs {want_ap}",
            stats.mean_d_ap
        );
        assert!(
            (stats.mean_d_an - want_an).abs() < 1e-6,
            "{} vs {want_an}",
            stats.mean_d_an
        );
    }
}
