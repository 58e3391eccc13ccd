//! What can go wrong with an index, each error naming the file or the value.

use std::path::PathBuf;

/// An index error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A file of the index could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The folder does not exist.
    #[error("{} does not exist; `triplet index build` makes an index", path.display())]
    Missing {
        /// The folder.
        path: PathBuf,
    },
    /// The folder is not an index (no `index.json`).
    #[error(
        "{} is not a Triplet index (no index.json); `triplet index build` makes one",
        path.display()
    )]
    NotAnIndex {
        /// The folder.
        path: PathBuf,
    },
    /// A file of the index is damaged.
    #[error("{} is damaged: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The folder already holds something.
    #[error(
        "{} already exists; add to an index with `triplet index add`, or give a new folder",
        path.display()
    )]
    Exists {
        /// The folder.
        path: PathBuf,
    },
    /// Another process has the index open for writing.
    #[error(
        "{} is open for writing by another process (a `triplet serve` or `triplet index` \
         command); stop it or add through it",
        path.display()
    )]
    Locked {
        /// The index folder.
        path: PathBuf,
    },
    /// The index was opened read-only.
    #[error("the index is open read-only")]
    ReadOnly,
    /// A vector of the wrong length.
    #[error("a vector has {got} values, but the index holds {expected}-d vectors")]
    Dimension {
        /// The index's dimension.
        expected: usize,
        /// The vector's.
        got: usize,
    },
    /// A vector with a NaN or an infinity.
    #[error("a vector holds a non-finite value ({value})")]
    NotFinite {
        /// The first such value.
        value: f32,
    },
    /// An id the index does not hold.
    #[error("no item has id {0}")]
    UnknownId(u64),
    /// A bad argument (k = 0, a zero dimension, an empty label...).
    #[error("{0}")]
    Invalid(String),
    /// The approximate-search library failed.
    #[error("the HNSW index (usearch): {0}")]
    Ann(String),
}

/// A result with an [`IndexError`].
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// Adds the path to an I/O error.
pub(crate) trait IoContext<T> {
    /// The error as [`IndexError::Io`] for `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| IndexError::Io {
            path: path.into(),
            source,
        })
    }
}
