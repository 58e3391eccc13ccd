//! Embedding an image set with a trained model (no augmentation), in batches through the
//! streaming loader, on the model's device.

use std::sync::Arc;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use triplet_model::EmbeddingModel;

use crate::config::ExperimentConfig;
use crate::data::augment::Transform;
use crate::data::loader::{BadImages, Loader, LoaderOptions};
use crate::data::source::ImageSet;

/// Embeddings of the readable images of a set, in set order.
#[derive(Debug, Clone, Default)]
pub struct Embedded {
    /// `indices.len() × dim` values, row-major.
    pub embeddings: Vec<f32>,
    /// Embedding size.
    pub dim: usize,
    /// Index in the set of each row.
    pub indices: Vec<usize>,
    /// Class of each row (into the set's classes).
    pub labels: Vec<usize>,
    /// Images left out because they cannot be decoded.
    pub skipped: usize,
}

/// How to read the set.
#[derive(Debug, Clone, Copy)]
pub struct EmbedOptions {
    /// Images per forward pass.
    pub batch: usize,
    /// Decoding threads.
    pub workers: usize,
    /// Batches decoded ahead.
    pub prefetch: usize,
}

impl EmbedOptions {
    /// As a run's config says: `train.eval_batch` images per pass, `[data]`'s workers and
    /// prefetch.
    pub fn of(config: &ExperimentConfig) -> Self {
        Self {
            batch: config.train.eval_batch,
            workers: config.data.workers,
            prefetch: config.data.prefetch,
        }
    }
}

/// Embeds every readable image of `set` with `model` (in inference mode), reporting each
/// unreadable image once through `warn`.
pub fn embed(
    model: &EmbeddingModel,
    set: &Arc<ImageSet>,
    transform: &Arc<Transform>,
    options: EmbedOptions,
    warn: &dyn Fn(&str),
) -> Result<Embedded> {
    let device = model_device(model);
    let indices: Vec<usize> = (0..set.len()).collect();
    let chunks: Vec<Vec<usize>> = indices
        .chunks(options.batch.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let mut loader = Loader::spawn(
        Arc::clone(set),
        Arc::clone(transform),
        chunks,
        Arc::new(BadImages::default()),
        LoaderOptions {
            workers: options.workers,
            prefetch: options.prefetch,
            seed: 0,
            epoch: 0,
            first_batch: 0,
        },
    );
    let [c, h, w] = [transform.channels, transform.size[0], transform.size[1]];
    let mut out = Embedded::default();
    while let Some(batch) = loader.next_batch() {
        for message in &batch.new_errors {
            warn(&format!("warning: {message}"));
        }
        out.skipped += batch.skipped;
        if batch.count == 0 {
            continue;
        }
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.images, [batch.count, c, h, w]),
            &device,
        );
        let e: Vec<f32> = model
            .forward(x)
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| anyhow::anyhow!("reading embeddings back from the device: {e:?}"))?;
        out.dim = e.len() / batch.count;
        if let Some(bad) = e.iter().position(|v| !v.is_finite()) {
            bail!(
                "the model produced a non-finite embedding ({}) for image {}; the weights or \
                 the input normalisation are broken",
                e[bad],
                set.describe(batch.indices[bad / out.dim.max(1)])
            );
        }
        out.embeddings.extend(e);
        out.indices.extend(&batch.indices);
        out.labels.extend(
            batch
                .labels
                .iter()
                .map(|&l| usize::try_from(l).unwrap_or(0)),
        );
    }
    Ok(out)
}

/// The device holding the model's parameters.
pub fn model_device(model: &EmbeddingModel) -> Device {
    model
        .devices()
        .into_iter()
        .next()
        .expect("the model has parameters")
}
