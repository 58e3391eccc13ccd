//! Embedding image sets with a trained model (no augmentation), in batches through the
//! streaming loader, on the model's device: what `triplet eval`, `embed`, `search` and training's
//! validation share. [`files`] reads and writes the folder `triplet embed` makes.

pub mod command;
pub mod files;
#[cfg(feature = "parquet")]
pub mod parquet;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use triplet_metrics::RowsBuf;
use triplet_model::EmbeddingModel;

use crate::config::ExperimentConfig;
use crate::console::say;
use crate::data::augment::Transform;
use crate::data::listing::{IMAGE_EXTENSIONS, images_in, is_image};
use crate::data::loader::{BadImages, Loader, LoaderOptions};
use crate::data::source::{self, ImageSet};
use crate::device::Backend;
use crate::run::trained::Trained;

/// Embeddings of the readable images of a set, in set order.
#[derive(Debug, Clone, Default)]
pub struct Embedded {
    /// One embedding per readable image.
    pub rows: RowsBuf,
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
        let dim = e.len() / batch.count;
        if let Some(bad) = e.iter().position(|v| !v.is_finite()) {
            bail!(
                "the model produced a non-finite embedding ({}) for image {}; the weights or \
                 the input normalisation are broken",
                e[bad],
                set.describe(batch.indices[bad / dim.max(1)])
            );
        }
        out.rows.extend_rows(&e, dim);
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

/// Which part of a data path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The test images of an IDX folder if it has them (queries, embeddings).
    TestIfAny,
    /// The training images (references, galleries).
    Train,
}

/// An image set opened from a data path, ready to embed.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The images.
    pub set: ImageSet,
    /// What was opened, for the console: the path, the part, the images and classes.
    pub description: String,
    /// Whether this is the source's training part (the whole source when it has no test part).
    pub is_train: bool,
}

/// Opens `path` and picks its part, keeping only `classes` (by name) when given: an unknown
/// class, or nothing left to use, is an error naming the path.
pub fn open_part(path: &Path, part: Part, classes: Option<&[String]>) -> Result<Opened> {
    let source = source::open(path)?;
    if !source.skipped_files.is_empty() {
        say(&format!(
            "warning: skipped {} file(s) of {} that are not images by their extension",
            source.skipped_files.len(),
            path.display()
        ));
    }
    let (set, what, is_train) = match (part, source.test) {
        (Part::TestIfAny, Some(test)) => (test, "its t10k test images", false),
        (Part::Train, Some(_)) => (source.train, "its training images", true),
        (_, None) => (source.train, "all images", true),
    };
    let set = match classes {
        Some(names) => {
            let unknown: Vec<String> = names
                .iter()
                .filter(|n| !set.classes().contains(n))
                .map(|n| format!("`{n}`"))
                .collect();
            if !unknown.is_empty() {
                bail!(
                    "--classes names {} that {} does not have (classes: {})",
                    unknown.join(", "),
                    path.display(),
                    set.classes().join(", ")
                );
            }
            set.with_classes(names)
        }
        None => set,
    };
    if set.is_empty() {
        bail!("{} has no images to use", path.display());
    }
    let description = format!(
        "{} ({what}{}: {} images, {} classes)",
        path.display(),
        if classes.is_some() {
            ", selected classes"
        } else {
            ""
        },
        set.len(),
        set.classes().len()
    );
    Ok(Opened {
        set,
        description,
        is_train,
    })
}

/// Prints which model embeds, from which file, on which backend.
pub fn say_model(trained: &Trained, backend: Backend) {
    say(&format!(
        "model: {} ({}), backend {backend}",
        trained.which,
        trained.weights.display()
    ));
}

/// Embeds `set` with the trained model as its run's config says (batch, workers), printing each
/// unreadable image once and their count.
pub fn embed_set(trained: &Trained, set: ImageSet) -> Result<(Arc<ImageSet>, Embedded)> {
    let set = Arc::new(set);
    let embedded = embed(
        &trained.model,
        &set,
        &trained.transform,
        EmbedOptions::of(&trained.config),
        &|line| say(line),
    )?;
    if embedded.skipped > 0 {
        say(&format!(
            "warning: {} unreadable image(s) left out",
            embedded.skipped
        ));
    }
    Ok((set, embedded))
}

/// Images to search among or to index: a data source as `eval` reads one (its training images
/// for an IDX folder), or else a folder of images without class folders (their class is `-`).
pub fn open_images(path: &Path) -> Result<(ImageSet, String)> {
    match open_part(path, Part::Train, None) {
        Ok(opened) => Ok((opened.set, opened.description)),
        Err(e) if path.is_dir() => {
            let images = images_in(path).with_context(|| format!("listing {}", path.display()))?;
            if images.is_empty() {
                return Err(e);
            }
            let text = format!("{} ({} images, no classes)", path.display(), images.len());
            Ok((ImageSet::unlabelled(images), text))
        }
        Err(e) => Err(e),
    }
}

/// Images named one by one (queries): files as given (each must be an image and decode),
/// folders' images in path order.
pub fn image_files(paths: &[PathBuf], channels: usize) -> Result<ImageSet> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = images_in(p).with_context(|| format!("listing {}", p.display()))?;
            if found.is_empty() {
                bail!("query folder {} holds no images", p.display());
            }
            files.extend(found);
        } else if !p.exists() {
            bail!("query {} does not exist", p.display());
        } else if !is_image(p) {
            bail!(
                "query {} is not an image (image files end in {})",
                p.display(),
                IMAGE_EXTENSIONS.join(", ")
            );
        } else {
            files.push(p.clone());
        }
    }
    let set = ImageSet::unlabelled(files);
    // A query that does not decode is an error, not a skipped image: the user named it.
    for i in 0..set.len() {
        if let Err(e) = set.load_native(i, channels) {
            bail!("query {} is not an image: {e}", set.describe(i));
        }
    }
    Ok(set)
}
