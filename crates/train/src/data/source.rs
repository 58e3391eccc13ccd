//! One type for every data source (`--data`): an image folder, a CSV list, or MNIST IDX files.
//!
//! An [`ImageSet`] holds labels and either file paths (decoded on demand, in the loader's
//! workers) or the pixels of an IDX file (the IDX format is one compressed blob; Fashion-MNIST's
//! 60,000 images take 47 MB). [`open`] recognises the source from the path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::decode::{DecodeError, decode_native};
use super::idx::{IdxError, IdxImages, read_split};
use super::listing::{Listing, ListingError};

/// A data path that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The path does not exist.
    #[error("data path {} does not exist", .0.display())]
    Missing(PathBuf),
    /// An IDX images file without its labels file beside it.
    #[error("no labels file for {}: expected {}", images.display(), labels.display())]
    NoIdxLabels {
        /// The images file.
        images: PathBuf,
        /// Where the labels were looked for.
        labels: PathBuf,
    },
    /// An IDX file is unreadable or malformed.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// A folder or CSV list is unreadable or malformed.
    #[error(transparent)]
    Index(#[from] ListingError),
}

/// Where an image's pixels come from.
#[derive(Debug, Clone)]
enum Items {
    Files(Vec<PathBuf>),
    Idx {
        images: Arc<IdxImages>,
        rows: Vec<usize>,
        /// The images file, for names.
        file: Arc<PathBuf>,
    },
}

/// A labelled set of images.
#[derive(Debug, Clone)]
pub struct ImageSet {
    items: Items,
    labels: Vec<usize>,
    classes: Vec<String>,
    /// A CSV list's file and column names, when the set comes from one.
    list: Option<Arc<(PathBuf, Arc<Vec<String>>)>>,
    /// With `list`: each image's values, one per column name.
    values: Vec<Arc<Vec<String>>>,
}

/// What [`open`] found.
#[derive(Debug, Clone)]
pub struct DataSource {
    /// The training images (all images, for a folder or CSV list).
    pub train: ImageSet,
    /// The test images of an IDX folder (`t10k-*`), if present.
    pub test: Option<ImageSet>,
    /// Files skipped while listing because they are not images by their extension.
    pub skipped_files: Vec<PathBuf>,
    /// Class folders without images, skipped.
    pub empty_classes: Vec<String>,
}

impl ImageSet {
    fn from_index(index: Listing) -> Self {
        let (list, values) = match index.columns {
            Some(c) => (Some(Arc::new((c.file, c.names))), c.values),
            None => (None, Vec::new()),
        };
        Self {
            labels: index.samples.iter().map(|s| s.label).collect(),
            items: Items::Files(index.samples.into_iter().map(|s| s.path).collect()),
            classes: index.classes,
            list,
            values,
        }
    }

    fn from_idx(file: &Path, images: IdxImages, labels: Vec<u8>) -> Self {
        let (present, labels) = compact(&labels);
        Self {
            items: Items::Idx {
                rows: (0..images.count).collect(),
                images: Arc::new(images),
                file: Arc::new(file.to_owned()),
            },
            labels,
            classes: present.iter().map(u8::to_string).collect(),
            list: None,
            values: Vec::new(),
        }
    }

    /// Image files without classes (all in one class named `-`), in the order given: queries
    /// of `triplet search`, the images of a pairs list.
    pub fn unlabelled(paths: Vec<PathBuf>) -> Self {
        Self {
            labels: vec![0; paths.len()],
            items: Items::Files(paths),
            classes: vec!["-".into()],
            list: None,
            values: Vec::new(),
        }
    }

    /// The CSV list the set was read from, when it was.
    pub fn list_file(&self) -> Option<&Path> {
        self.list.as_deref().map(|(file, _)| file.as_path())
    }

    /// The column names of the CSV list the set was read from (none for other sources).
    pub fn column_names(&self) -> &[String] {
        self.list
            .as_deref()
            .map_or(&[], |(_, names)| names.as_slice())
    }

    /// Every image's value in the CSV list's column `name`, in set order; `None` when the set
    /// has no such column (or comes from no CSV list).
    pub fn column(&self, name: &str) -> Option<Vec<&str>> {
        let at = self.column_names().iter().position(|n| n == name)?;
        Some(self.values.iter().map(|v| v[at].as_str()).collect())
    }

    /// The file of image `i`, for image files (not IDX data).
    pub fn path(&self, i: usize) -> Option<&Path> {
        match &self.items {
            Items::Files(paths) => Some(&paths[i]),
            Items::Idx { .. } => None,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Class index of every image, into [`classes`](Self::classes).
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Class names.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The channels and `[height, width]` the images have natively, when known without decoding
    /// (IDX files).
    pub fn native_shape(&self) -> Option<(usize, [usize; 2])> {
        match &self.items {
            Items::Idx { images, .. } => Some((1, [images.rows, images.cols])),
            Items::Files(_) => None,
        }
    }

    /// A name for image `i`: its path, or `file#row` for IDX data (row from 0).
    pub fn describe(&self, i: usize) -> String {
        match &self.items {
            Items::Files(paths) => paths[i].display().to_string(),
            Items::Idx { rows, file, .. } => format!("{}#{}", file.display(), rows[i]),
        }
    }

    /// Image `i` at its own size, as `channels × height × width` floats in `[0, 1]`, with its
    /// `[height, width]`.
    ///
    /// # Panics
    /// If `i` is out of range or `channels` is not 1 or 3.
    pub fn load_native(
        &self,
        i: usize,
        channels: usize,
    ) -> Result<(Vec<f32>, [usize; 2]), DecodeError> {
        match &self.items {
            Items::Files(paths) => decode_native(&paths[i], channels),
            Items::Idx { images, rows, .. } => {
                assert!(channels == 1 || channels == 3, "channels must be 1 or 3");
                let grey: Vec<f32> = images
                    .image(rows[i])
                    .iter()
                    .map(|&p| f32::from(p) / 255.0)
                    .collect();
                let grey = if channels == 1 { grey } else { grey.repeat(3) };
                Ok((grey, [images.rows, images.cols]))
            }
        }
    }

    /// The images at `keep`, with classes renumbered to those still present.
    pub fn subset(&self, keep: &[usize]) -> ImageSet {
        let kept: Vec<usize> = keep.iter().map(|&i| self.labels[i]).collect();
        let (present, labels) = compact(&kept);
        ImageSet {
            items: match &self.items {
                Items::Files(paths) => {
                    Items::Files(keep.iter().map(|&i| paths[i].clone()).collect())
                }
                Items::Idx { images, rows, file } => Items::Idx {
                    images: Arc::clone(images),
                    rows: keep.iter().map(|&i| rows[i]).collect(),
                    file: Arc::clone(file),
                },
            },
            labels,
            classes: present.iter().map(|&c| self.classes[c].clone()).collect(),
            list: self.list.clone(),
            values: if self.values.is_empty() {
                Vec::new()
            } else {
                keep.iter().map(|&i| Arc::clone(&self.values[i])).collect()
            },
        }
    }

    /// Images of the classes named in `names` (others dropped).
    pub fn with_classes(&self, names: &[String]) -> ImageSet {
        let keep: Vec<usize> = (0..self.len())
            .filter(|&i| names.contains(&self.classes[self.labels[i]]))
            .collect();
        self.subset(&keep)
    }
}

/// The distinct values of `labels`, sorted, and each label's index among them.
fn compact<T: Ord + Copy>(labels: &[T]) -> (Vec<T>, Vec<usize>) {
    let mut present = labels.to_vec();
    present.sort_unstable();
    present.dedup();
    let index = labels
        .iter()
        .map(|l| present.binary_search(l).expect("collected above"))
        .collect();
    (present, index)
}

/// Opens a data path: a folder of IDX files, an IDX images file, a CSV list, or an image
/// folder with one sub-folder per class.
pub fn open(path: &Path) -> Result<DataSource, DataError> {
    if !path.exists() {
        return Err(DataError::Missing(path.to_owned()));
    }
    if path.is_dir() {
        if let Some(train) = find_idx(path, "train") {
            let test = find_idx(path, "t10k")
                .map(|images| open_idx(&images))
                .transpose()?;
            return Ok(DataSource {
                train: open_idx(&train)?,
                test,
                skipped_files: Vec::new(),
                empty_classes: Vec::new(),
            });
        }
        let index = Listing::from_folder(path)?;
        return Ok(from_index(index));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains("idx3-ubyte") {
        return Ok(DataSource {
            train: open_idx(path)?,
            test: None,
            skipped_files: Vec::new(),
            empty_classes: Vec::new(),
        });
    }
    Ok(from_index(Listing::from_csv(path)?))
}

fn from_index(mut index: Listing) -> DataSource {
    let skipped_files = std::mem::take(&mut index.skipped_files);
    let empty_classes = std::mem::take(&mut index.empty_classes);
    DataSource {
        train: ImageSet::from_index(index),
        test: None,
        skipped_files,
        empty_classes,
    }
}

/// `<dir>/<prefix>-images-idx3-ubyte[.gz]`.
fn find_idx(dir: &Path, prefix: &str) -> Option<PathBuf> {
    [".gz", ""]
        .iter()
        .map(|ext| dir.join(format!("{prefix}-images-idx3-ubyte{ext}")))
        .find(|p| p.is_file())
}

fn open_idx(images: &Path) -> Result<ImageSet, DataError> {
    let name = images
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let labels_name = name.replace("images-idx3", "labels-idx1");
    let dir = images.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join(&labels_name),
        dir.join(labels_name.trim_end_matches(".gz")),
        dir.join(format!("{}.gz", labels_name.trim_end_matches(".gz"))),
    ];
    let Some(labels) = candidates.iter().find(|p| p.is_file()) else {
        return Err(DataError::NoIdxLabels {
            images: images.to_owned(),
            labels: candidates[0].clone(),
        });
    };
    let (imgs, lbls) = read_split(images, labels)?;
    Ok(ImageSet::from_idx(images, imgs, lbls))
}
