//! Datasets as lists of `(path, label)`: from a folder with one sub-folder per class, or from a
//! CSV list (`path,label`, paths relative to the CSV). Only paths and labels are held; images
//! are decoded later, in the loader's workers.
//!
//! Splits: by class (train on some classes, evaluate on unseen ones: the open-set protocol of
//! metric learning) or within classes (a seeded fraction of each class).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::sampler::SplitMix64;

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

/// A dataset that cannot be listed, naming the file or folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A folder or file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CSV list is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Fewer than two classes with images: nothing to contrast.
    #[error("{} has {classes} usable class(es); triplet training needs at least 2 classes with images", path.display())]
    TooFewClasses {
        /// The folder or list.
        path: PathBuf,
        /// Classes with at least one image.
        classes: usize,
    },
}

/// One sample: an image file and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// Index into [`DatasetIndex::classes`].
    pub label: usize,
}

/// The samples of a dataset and its class names, plus what was skipped while listing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetIndex {
    /// Every sample, grouped by class in class order, files sorted by path.
    pub samples: Vec<Sample>,
    /// Class names (folder names or CSV labels), sorted.
    pub classes: Vec<String>,
    /// Files that are not images by their extension, skipped.
    pub skipped_files: Vec<PathBuf>,
    /// Class folders without any image, skipped.
    pub empty_classes: Vec<String>,
}

impl DatasetIndex {
    /// Lists `root/<class>/**/<image>`: each sub-folder of `root` is a class, images are found
    /// at any depth below it. Files directly in `root` are ignored.
    pub fn from_folder(root: &Path) -> Result<Self, IndexError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| IndexError::Io { path, source }
        };
        let mut class_dirs = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io(root))? {
            let entry = entry.map_err(io(root))?;
            if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
                class_dirs.push(entry.path());
            }
        }
        class_dirs.sort();
        let mut index = DatasetIndex::default();
        for dir in class_dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut files = Vec::new();
            walk(&dir, &mut files)?;
            files.sort();
            let (images, others): (Vec<PathBuf>, Vec<PathBuf>) =
                files.into_iter().partition(|p| is_image(p));
            index.skipped_files.extend(others);
            if images.is_empty() {
                index.empty_classes.push(name);
                continue;
            }
            let label = index.classes.len();
            index.classes.push(name);
            index
                .samples
                .extend(images.into_iter().map(|path| Sample { path, label }));
        }
        index.require_two_classes(root)
    }

    /// Reads a CSV list with the header `path,label`; relative paths are taken from the CSV's
    /// folder. Labels are class names (any text); classes are sorted by name.
    pub fn from_csv(csv_path: &Path) -> Result<Self, IndexError> {
        let csv_err = |line: usize, reason: String| IndexError::Csv {
            path: csv_path.to_owned(),
            line,
            reason,
        };
        let text = std::fs::read_to_string(csv_path).map_err(|source| IndexError::Io {
            path: csv_path.to_owned(),
            source,
        })?;
        let base = csv_path.parent().unwrap_or(Path::new("."));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| csv_err(1, e.to_string()))?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h.trim() == name);
        let (Some(path_col), Some(label_col)) = (column("path"), column("label")) else {
            return Err(csv_err(
                1,
                format!(
                    "expected the header `path,label`, found `{}`",
                    headers.iter().collect::<Vec<_>>().join(",")
                ),
            ));
        };
        let mut rows: Vec<(PathBuf, String)> = Vec::new();
        let mut skipped = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.map_err(|e| csv_err(line, e.to_string()))?;
            let (Some(path), Some(label)) = (record.get(path_col), record.get(label_col)) else {
                return Err(csv_err(line, "missing the path or the label".into()));
            };
            let (path, label) = (path.trim(), label.trim());
            if path.is_empty() || label.is_empty() {
                return Err(csv_err(line, "empty path or label".into()));
            }
            let path = base.join(path);
            if is_image(&path) {
                rows.push((path, label.to_owned()));
            } else {
                skipped.push(path);
            }
        }
        let mut by_class: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (path, label) in rows {
            by_class.entry(label).or_default().push(path);
        }
        let mut index = DatasetIndex {
            skipped_files: skipped,
            ..DatasetIndex::default()
        };
        for (label, mut paths) in by_class {
            paths.sort();
            let id = index.classes.len();
            index.classes.push(label);
            index
                .samples
                .extend(paths.into_iter().map(|path| Sample { path, label: id }));
        }
        index.require_two_classes(csv_path)
    }

    fn require_two_classes(self, path: &Path) -> Result<Self, IndexError> {
        if self.classes.len() < 2 {
            return Err(IndexError::TooFewClasses {
                path: path.to_owned(),
                classes: self.classes.len(),
            });
        }
        Ok(self)
    }

    /// Splits by class: classes whose index is in `held_out` go to the second index (unseen
    /// classes for evaluation), the rest to the first. Labels are renumbered within each part.
    pub fn split_by_class(&self, held_out: &[usize]) -> (DatasetIndex, DatasetIndex) {
        let keep = |held: bool| {
            let mut part = DatasetIndex::default();
            let mut map = vec![None; self.classes.len()];
            for (c, name) in self.classes.iter().enumerate() {
                if held_out.contains(&c) == held {
                    map[c] = Some(part.classes.len());
                    part.classes.push(name.clone());
                }
            }
            part.samples = self
                .samples
                .iter()
                .filter_map(|s| {
                    map[s.label].map(|label| Sample {
                        path: s.path.clone(),
                        label,
                    })
                })
                .collect();
            part
        };
        (keep(false), keep(true))
    }

    /// Splits within classes: about `fraction` of each class's samples (chosen by `seed`, at
    /// least one when the class has two or more) go to the second index, the rest to the first.
    /// Both keep every class and its label.
    pub fn split_within_classes(&self, fraction: f64, seed: u64) -> (DatasetIndex, DatasetIndex) {
        let labels: Vec<usize> = self.samples.iter().map(|s| s.label).collect();
        let (kept, held) = within_class_partition(&labels, fraction, seed);
        let part = |indices: Vec<usize>| DatasetIndex {
            classes: self.classes.clone(),
            samples: indices
                .into_iter()
                .map(|i| self.samples[i].clone())
                .collect(),
            ..DatasetIndex::default()
        };
        (part(kept), part(held))
    }
}

/// Splits sample indices within classes: about `fraction` of each class (chosen by `seed`, at
/// least one when the class has two or more, never all) go to the second list. Both lists are
/// in ascending index order.
pub(crate) fn within_class_partition(
    labels: &[usize],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i);
    }
    let mut rng = SplitMix64::new(seed ^ 0x5851_F42D_4C95_7F2D);
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    for mut members in by_class.into_values() {
        rng.shuffle(&mut members);
        let take = if members.len() >= 2 {
            ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len() - 1)
        } else {
            0
        };
        held.extend_from_slice(&members[..take]);
        kept.extend_from_slice(&members[take..]);
    }
    kept.sort_unstable();
    held.sort_unstable();
    (kept, held)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Every file below `dir`, recursively (hidden entries skipped).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IndexError> {
    let io = |source| IndexError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
