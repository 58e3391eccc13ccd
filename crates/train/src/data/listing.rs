//! Listing a dataset of image files as `(path, label)` pairs: from a folder with one sub-folder
//! per class, or from a CSV list (`path,label`, paths relative to the CSV). Only paths and
//! labels are held; images are decoded later, in the loader's workers. (`idx.rs` reads the
//! other kind of source, MNIST's IDX files, whose pixels are in the file itself.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

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
        let csv_err = |line: usize, reason: String| table.error(line, reason);
        let (headers, base) = (&table.headers, table.base());
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
                rows.push((path, label.to_owned()));
            } else {
                skipped.push(path);
            }
        }
        let mut by_class: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (path, label) in rows {
            by_class.entry(label).or_default().push(path);
        }
        let mut index = Listing {
            skipped_files: skipped,
            ..Listing::default()
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

/// Named columns of a CSV list, one row per file (paths resolved as [`Listing::from_csv`] does):
/// the values of `names`, in that order, for each path. An unknown column is an error naming the
/// file and the columns it has; a path listed twice with different values is an error.
pub fn read_columns(
    csv_path: &Path,
    names: &[&str],
) -> Result<std::collections::HashMap<PathBuf, Vec<String>>, ListingError> {
    let table = CsvTable::read(csv_path)?;
    let wanted = std::iter::once(&"path")
        .chain(names)
        .map(|name| table.column(name, ""))
        .collect::<Result<Vec<usize>, _>>()?;
    let mut out = std::collections::HashMap::new();
    for (line, record) in table.rows() {
        let record = record?;
        let values: Option<Vec<String>> = wanted
            .iter()
            .map(|&c| record.get(c).map(|v| v.trim().to_owned()))
            .collect();
        let Some(mut values) = values else {
            return Err(table.error(line, "missing values".into()));
        };
        let path = table.base().join(values.remove(0));
        match out.entry(path) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(values);
            }
            std::collections::hash_map::Entry::Occupied(e) if *e.get() != values => {
                return Err(table.error(
                    line,
                    format!(
                        "{} is listed again with other values ({} instead of {}); list each \
                         image once",
                        e.key().display(),
                        values.join(","),
                        e.get().join(",")
                    ),
                ));
            }
            std::collections::hash_map::Entry::Occupied(_) => {}
        }
    }
    Ok(out)
}

/// A CSV file with a header row, read whole; errors name the file and line. The one reader of
/// CSV lists, the re-identification columns, pairs files and `embed`'s `labels.csv`.
pub(crate) struct CsvTable {
    path: PathBuf,
    text: String,
    headers: csv::StringRecord,
}

impl CsvTable {
    /// Reads `path` and its header row.
    pub(crate) fn read(path: &Path) -> Result<Self, ListingError> {
        let text = std::fs::read_to_string(path).map_err(|source| ListingError::Io {
            path: path.to_owned(),
            source,
        })?;
        let headers = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes())
            .headers()
            .map_err(|e| ListingError::Csv {
                path: path.to_owned(),
                line: 1,
                reason: e.to_string(),
            })?
            .clone();
        Ok(Self {
            path: path.to_owned(),
            text,
            headers,
        })
    }

    /// The folder relative paths start from.
    pub(crate) fn base(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// An error at `line` of the file.
    pub(crate) fn error(&self, line: usize, reason: String) -> ListingError {
        ListingError::Csv {
            path: self.path.clone(),
            line,
            reason,
        }
    }

    /// The position of the column `name`; else an error naming it, with `hint` (what the
    /// header should be, or nothing) and the columns the file has.
    pub(crate) fn column(&self, name: &str, hint: &str) -> Result<usize, ListingError> {
        self.headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                let hint = if hint.is_empty() {
                    String::new()
                } else {
                    format!("; {hint}")
                };
                self.error(
                    1,
                    format!(
                        "no column `{name}`{hint} (its columns: {})",
                        self.headers.iter().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    }

    /// The records after the header, with their 1-based line numbers.
    pub(crate) fn rows(
        &self,
    ) -> impl Iterator<Item = (usize, Result<csv::StringRecord, ListingError>)> + '_ {
        csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(self.text.as_bytes())
            .into_records()
            .enumerate()
            .map(|(i, r)| (i + 2, r.map_err(|e| self.error(i + 2, e.to_string()))))
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
