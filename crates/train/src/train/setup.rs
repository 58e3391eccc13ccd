//! Assembling a run from its config: the train/evaluation split, the input transform, the P×K
//! sampler, the optimiser, the learning-rate schedule and the initial weights.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::store::ModuleRecord;
use triplet_model::EmbeddingModelConfig;
use triplet_model::torchvision::ImportReport;

use crate::config::{
    ExperimentConfig, IMAGENET_MEAN, IMAGENET_STD, OptimizerConfig, OptimizerKind, ResizeKind,
    ScheduleKind, SplitKind, toml_name,
};
use crate::data::augment::Transform;
use crate::data::sampler::PkSampler;
use crate::data::source::{DataSource, ImageSet};

/// Everything a run needs from its data.
pub struct Plan {
    /// Training images.
    pub train: Arc<ImageSet>,
    /// Evaluation images, if the split leaves some.
    pub eval: Option<Arc<ImageSet>>,
    /// How the evaluation part was chosen, for messages.
    pub eval_description: String,
    /// Training transform (with augmentation).
    pub transform: Arc<Transform>,
    /// Evaluation transform (normalisation only).
    pub eval_transform: Arc<Transform>,
    /// The P×K sampler over the training images.
    pub sampler: PkSampler,
    /// Lines describing the run, printed at start.
    pub notes: Vec<String>,
}

/// Splits the data, resolves shapes and builds the sampler.
pub fn plan(config: &ExperimentConfig, source: DataSource, path: &Path) -> Result<Plan> {
    let mut notes = Vec::new();
    if !source.skipped_files.is_empty() {
        let names: Vec<String> = source
            .skipped_files
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        notes.push(format!(
            "warning: skipped {} file(s) that are not images by their extension: {}{}",
            source.skipped_files.len(),
            names.join(", "),
            if source.skipped_files.len() > 5 {
                ", …"
            } else {
                ""
            }
        ));
    }
    for class in &source.empty_classes {
        notes.push(format!(
            "warning: class folder `{class}` has no images; skipped"
        ));
    }
    let native = source.train.native_shape();
    let (train, eval, eval_description) = split(config, source, &mut notes)?;
    if train.classes().len() < 2 {
        bail!(
            "{}: the training split has {} class(es); triplet training needs at least 2",
            path.display(),
            train.classes().len()
        );
    }

    let transform = input_transform(config, native)?;
    let (channels, size) = (transform.channels, transform.size);
    let eval_transform = Transform {
        augment: None,
        ..transform.clone()
    };

    // P×K: K from the class sizes, P to fill a batch of about 128.
    let mut sizes = vec![0usize; train.classes().len()];
    for &l in train.labels() {
        sizes[l] += 1;
    }
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    let mut k = config.sampler.k.unwrap_or_else(|| median.clamp(2, 16));
    let p = config.sampler.p.unwrap_or_else(|| {
        let fit = (train.len() / k).max(2);
        train.classes().len().min((128 / k).max(2)).min(fit)
    });
    if config.sampler.k.is_none() && p * k > train.len() {
        // Small data: fewer images per class so that one batch fits.
        k = (train.len() / p).max(2);
    }
    let labels: Vec<i64> = train.labels().iter().map(|&l| l as i64).collect();
    let sampler = PkSampler::new(&labels, p, k, config.train.seed).with_context(|| {
        format!(
            "cannot build P×K batches from {} ({} images, {} classes); set [sampler] p and k",
            path.display(),
            train.len(),
            train.classes().len()
        )
    })?;

    notes.push(format!(
        "data {}: training on {} images of {} classes{}",
        path.display(),
        train.len(),
        train.classes().len(),
        match &eval {
            Some(e) => format!(
                ", evaluating on {} images of {} classes ({eval_description})",
                e.len(),
                e.classes().len()
            ),
            None => ", no evaluation split".into(),
        }
    ));
    notes.push(format!(
        "input {channels}×{}×{}; model {} → {}-d; loss {} mining, {} distance, margin {}",
        size[0],
        size[1],
        toml_name(&config.model.backbone),
        config.model.dim,
        toml_name(&config.loss.mining),
        toml_name(&config.loss.distance),
        config.loss.margin
    ));
    notes.push(format!(
        "batches of P={p} classes × K={k} = {}, {} per epoch, {} epoch(s); optimizer {} lr {}",
        p * k,
        sampler.batches_per_epoch(),
        config.train.epochs,
        toml_name(&config.optimizer.name),
        config.optimizer.lr
    ));
    Ok(Plan {
        train: Arc::new(train),
        eval: eval.map(Arc::new),
        eval_description,
        transform: Arc::new(transform),
        eval_transform: Arc::new(eval_transform),
        sampler,
        notes,
    })
}

/// The input transform of `[data]` and `[augment]`: channels and size from the config, else
/// the data's own (`native`, for IDX files), else 3 and 32×32; mean and std 0.5 by default, one
/// value or one per channel. Evaluation uses it without `augment`.
pub fn input_transform(
    config: &ExperimentConfig,
    native: Option<(usize, [usize; 2])>,
) -> Result<Transform> {
    let d = &config.data;
    let resnet = config.model.backbone.resnet_depth().is_some();
    // The ResNets: RGB (grey images are repeated), 224 px for photos, ImageNet normalisation
    // and torchvision's evaluation resize, as their pretrained weights expect.
    let channels = d
        .channels
        .or(if resnet { Some(3) } else { None })
        .or(native.map(|n| n.0))
        .unwrap_or(3);
    let size = d
        .size
        .or(native.map(|n| n.1))
        .unwrap_or(if resnet { [224, 224] } else { [32, 32] });
    let per_channel = |values: &Option<Vec<f32>>, field: &str| -> Result<Vec<f32>> {
        let default = match (resnet, field) {
            (true, "mean") if channels == 3 => IMAGENET_MEAN.to_vec(),
            (true, "std") if channels == 3 => IMAGENET_STD.to_vec(),
            _ => vec![0.5],
        };
        let v = values.clone().unwrap_or(default);
        if v.len() != 1 && v.len() != channels {
            bail!(
                "data.{field} has {} values for {channels} channel(s)",
                v.len()
            );
        }
        Ok(v)
    };
    let augment = &config.augment;
    Ok(Transform {
        channels,
        size,
        mean: per_channel(&d.mean, "mean")?,
        std: per_channel(&d.std, "std")?,
        augment: (augment.random_resized_crop || augment.horizontal_flip).then(|| augment.clone()),
        resize: d.resize.unwrap_or(if resnet {
            ResizeKind::CenterCrop
        } else {
            ResizeKind::Stretch
        }),
        crop_fraction: d.crop_fraction,
    })
}

fn split(
    config: &ExperimentConfig,
    source: DataSource,
    notes: &mut Vec<String>,
) -> Result<(ImageSet, Option<ImageSet>, String)> {
    let d = &config.data;
    let classes = source.train.classes().to_vec();
    let mut kind = d.split;
    let held: Vec<String> = if kind == SplitKind::ByClass {
        if d.held_out_classes.is_empty() {
            let n = classes.len();
            let h = (n as f64 * d.held_out_fraction).round() as usize;
            let h = if n >= 4 { h.clamp(2, n - 2) } else { 0 };
            if h < 2 {
                notes.push(format!(
                    "note: {n} classes are too few to hold out whole classes (2 to train, 2 to \
                     evaluate); holding out {:.0}% of each class instead",
                    d.held_out_fraction * 100.0
                ));
                kind = SplitKind::WithinClass;
                Vec::new()
            } else {
                classes[n - h..].to_vec()
            }
        } else {
            for name in &d.held_out_classes {
                if !classes.contains(name) {
                    bail!(
                        "data.held_out_classes names class `{name}`, which the data do not have \
                         (classes: {})",
                        classes.join(", ")
                    );
                }
            }
            d.held_out_classes.clone()
        }
    } else {
        Vec::new()
    };
    let kept: Vec<String> = classes
        .iter()
        .filter(|c| !held.contains(c))
        .cloned()
        .collect();
    Ok(match (kind, source.test) {
        (SplitKind::None, _) => (source.train, None, String::new()),
        (SplitKind::ByClass, test) => {
            let eval_from = test.as_ref().unwrap_or(&source.train).with_classes(&held);
            let train = source.train.with_classes(&kept);
            let description = format!(
                "unseen classes {}{}",
                held.join(", "),
                if test.is_some() { ", test images" } else { "" }
            );
            (train, Some(eval_from), description)
        }
        (SplitKind::WithinClass, Some(test)) => (source.train, Some(test), "test images".into()),
        (SplitKind::WithinClass, None) => {
            let (train, eval) = source
                .train
                .split_within_classes(d.held_out_fraction, config.train.seed);
            let description = format!("{:.0}% of each class", d.held_out_fraction * 100.0);
            (train, Some(eval), description)
        }
    })
}

/// The optimiser of `[optimizer]`.
pub fn optimizer(c: &OptimizerConfig) -> ModuleOptimizer {
    let clip = c
        .grad_clip_norm
        .map(|n| GradientClippingConfig::Norm(n as f32));
    match c.name {
        OptimizerKind::Adam => AdamConfig::new()
            .with_weight_decay(
                c.weight_decay
                    .filter(|&wd| wd > 0.0)
                    .map(|wd| WeightDecayConfig::new(wd as f32)),
            )
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_weight_decay(c.weight_decay.unwrap_or(0.01) as f32)
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(
                c.weight_decay
                    .filter(|&wd| wd > 0.0)
                    .map(|wd| WeightDecayConfig::new(wd as f32)),
            )
            .with_momentum((c.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(c.momentum)
                    .with_dampening(0.0)
            }))
            .with_gradient_clipping(clip)
            .init(),
    }
}

/// The learning rate of step `step` (from 0) of a run of `total` steps, `per_epoch` per epoch:
/// linear warm-up, then constant, cosine or step decay.
pub fn learning_rate(config: &ExperimentConfig, step: u64, total: u64, per_epoch: u64) -> f64 {
    let s = &config.schedule;
    let peak = config.optimizer.lr;
    if step < s.warmup_steps {
        return peak * (step + 1) as f64 / s.warmup_steps as f64;
    }
    match s.name {
        ScheduleKind::Constant => peak,
        ScheduleKind::Cosine => {
            let span = total.saturating_sub(s.warmup_steps).max(1) as f64;
            let t = ((step - s.warmup_steps) as f64 / span).min(1.0);
            s.min_lr + (peak - s.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
        ScheduleKind::Step => {
            let epoch = step / per_epoch.max(1);
            peak * s.gamma.powi((epoch / s.step_epochs) as i32)
        }
    }
}

/// Fresh weights drawn from `seed` on the host CPU backend, so that every backend starts a run
/// from the same weights ([`crate::device::host`]: flex, else ndarray), with the torchvision
/// weights of `pretrained` loaded into the backbone. The training device casts them to its
/// precision when it loads the record.
pub fn initial_weights(
    config: &EmbeddingModelConfig,
    seed: u64,
    pretrained: Option<&Path>,
) -> Result<(ModuleRecord, Option<ImportReport>)> {
    let device = crate::device::host();
    device.seed(seed);
    let mut model = config.init(&device);
    let report = match pretrained {
        Some(path) => Some(model.load_torchvision(path)?),
        None => None,
    };
    Ok((model.into_record(), report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schedule: &str) -> ExperimentConfig {
        ExperimentConfig::from_toml(&format!("[optimizer]\nlr = 1.0\n[schedule]\n{schedule}"))
            .unwrap()
    }

    #[test]
    fn warm_up_then_cosine_reaches_the_minimum() {
        let c = config("name = \"cosine\"\nwarmup_steps = 10\nmin_lr = 0.1");
        assert!((learning_rate(&c, 0, 110, 11) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 9, 110, 11) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 10, 110, 11) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 60, 110, 11) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&c, 110, 110, 11) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn step_decay_by_epochs() {
        let c = config("name = \"step\"\nstep_epochs = 2\ngamma = 0.5");
        let lr: Vec<f64> = (0..6).map(|e| learning_rate(&c, e * 10, 60, 10)).collect();
        assert_eq!(lr, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
    }
}
