//! Listing a dataset of image files as `(path, label)` pairs: from a folder with one sub-folder
//! per class, or from a CSV list (`path,label`, paths relative to the CSV, any other columns
//! kept with each sample: re-identification's query and gallery flags, a camera, an id). Only
//! paths, labels and those values are held; images are decoded later, in the loader's workers. (`idx.rs` reads the
//! other kind of source, MNIST's IDX files, whose pixels are in the file itself.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::csv::{CsvError, CsvTable};

/// File extensions read as images (case-insensitive): every format the `image` crate decodes
/// that photos and scans are kept in (PNG, JPEG, BMP, WebP, GIF's first frame, TIFF, the
/// Netpbm formats, TGA). HEIC, AVIF and camera RAW files are not read.
pub const IMAGE_EXTENSIONS: [&str; 13] = [
    "png", "jpg", "jpeg", "bmp", "webp", "gif", "tif", "tiff", "pbm", "pgm", "ppm", "pnm", "tga",
];

/// A dataset that cannot be listed, naming the file or folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListingError {
    /// A folder or file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CSV list cannot be read or is malformed (naming the file and line).
    #[error(transparent)]
    Csv(#[from] CsvError),
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
    /// Index into [`Listing::classes`].
    pub label: usize,
}

/// The samples of a dataset and its class names, plus what was skipped while listing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every sample, grouped by class in class order, files sorted by path.
    pub samples: Vec<Sample>,
    /// Class names (folder names or CSV labels), sorted.
    pub classes: Vec<String>,
    /// Files that are not images by their extension, skipped.
    pub skipped_files: Vec<PathBuf>,
    /// Class folders without any image, skipped.
    pub empty_classes: Vec<String>,
    /// A CSV list's columns (all of them, `path` and `label` included) and each sample's
    /// values, parallel to `samples`; `None` for a folder.
    pub columns: Option<ListColumns>,
}

/// The columns of a CSV list, read with it (the file is parsed once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListColumns {
    /// The CSV list.
    pub file: PathBuf,
    /// Its column names, in the file's order.
    pub names: Arc<Vec<String>>,
    /// Each sample's values (trimmed), one per name; parallel to [`Listing::samples`].
    pub values: Vec<Arc<Vec<String>>>,
}

impl Listing {
    /// Lists `root/<class>/**/<image>`: each sub-folder of `root` is a class, images are found
    /// at any depth below it. Files directly in `root` are ignored.
    pub fn from_folder(root: &Path) -> Result<Self, ListingError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ListingError::Io { path, source }
        };
        let mut class_dirs = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io(root))? {
            let entry = entry.map_err(io(root))?;
            if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
                class_dirs.push(entry.path());
            }
        }
        class_dirs.sort();
        let mut index = Listing::default();
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
    pub fn from_csv(csv_path: &Path) -> Result<Self, ListingError> {
        let table = CsvTable::read(csv_path)?;
        let csv_err = |line: usize, reason: String| ListingError::from(table.error(line, reason));
        let (headers, base) = (table.headers(), table.base());
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
        let names: Arc<Vec<String>> = Arc::new(headers.iter().map(|h| h.trim().into()).collect());
        // Per class: each image with its row's values.
        type Listed = Vec<(PathBuf, Arc<Vec<String>>)>;
        let mut by_class: BTreeMap<String, Listed> = BTreeMap::new();
        let mut skipped = Vec::new();
        for (line, record) in table.rows() {
            let record = record?;
            let (Some(path), Some(label)) = (record.get(path_col), record.get(label_col)) else {
                return Err(csv_err(line, "missing the path or the label".into()));
            };
            let (path, label) = (path.trim(), label.trim());
            if path.is_empty() || label.is_empty() {
                return Err(csv_err(line, "empty path or label".into()));
            }
            let path = base.join(path);
            if is_image(&path) {
                let values = Arc::new(record.iter().map(|v| v.trim().to_owned()).collect());
                by_class
                    .entry(label.to_owned())
                    .or_default()
                    .push((path, values));
            } else {
                skipped.push(path);
            }
        }
        let mut values = Vec::new();
        let mut index = Listing {
            skipped_files: skipped,
            ..Listing::default()
        };
        for (label, mut rows) in by_class {
            // By path; a path listed twice keeps its rows in the file's order.
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let id = index.classes.len();
            index.classes.push(label);
            for (path, row) in rows {
                index.samples.push(Sample { path, label: id });
                values.push(row);
            }
        }
        index.columns = Some(ListColumns {
            file: csv_path.to_owned(),
            names,
            values,
        });
        index.require_two_classes(csv_path)
    }

    fn require_two_classes(self, path: &Path) -> Result<Self, ListingError> {
        if self.classes.len() < 2 {
            return Err(ListingError::TooFewClasses {
                path: path.to_owned(),
                classes: self.classes.len(),
            });
        }
        Ok(self)
    }
}

/// Whether `path` has an image file's extension ([`IMAGE_EXTENSIONS`]).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The image files below `dir` at any depth (by extension, hidden entries skipped), sorted.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>, ListingError> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.retain(|p| is_image(p));
    files.sort();
    Ok(files)
}

/// Every file below `dir`, recursively (hidden entries skipped).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ListingError> {
    let io = |source| ListingError::Io {
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
