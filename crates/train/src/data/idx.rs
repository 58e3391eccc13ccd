//! MNIST's IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`): the
//! format of MNIST and Fashion-MNIST, gzipped or raw.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, the element type, the number of
//! dimensions), one big-endian `u32` per dimension, then the elements in row-major order. Only
//! unsigned bytes (type `0x08`) occur in (Fashion-)MNIST and are read here.

use std::io::Read;
use std::path::{Path, PathBuf};

/// An IDX file that cannot be read, with the file named.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxError {
    /// The file could not be opened or read (or its gzip stream is corrupt).
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid IDX file of the expected kind.
    #[error("{} is not a valid IDX file: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Images of an IDX3 file: `count` images of `rows × cols` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// `count · rows · cols` bytes, image after image.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The pixels of image `i`.
    ///
    /// # Panics
    /// If `i >= count`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[i * size..(i + 1) * size]
    }
}

/// Reads an IDX file of unsigned bytes with `dims` dimensions: its shape and elements.
fn read_idx(path: &Path, dims: usize) -> Result<(Vec<usize>, Vec<u8>), IdxError> {
    let io = |source| IdxError::Io {
        path: path.to_owned(),
        source,
    };
    let format = |reason: String| IdxError::Format {
        path: path.to_owned(),
        reason,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(io)?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(format("it does not start with an IDX magic number".into()));
    }
    if bytes[2] != 0x08 {
        return Err(format(format!(
            "element type 0x{:02x}, expected unsigned bytes (0x08)",
            bytes[2]
        )));
    }
    if bytes[3] as usize != dims {
        return Err(format(format!("{} dimensions, expected {dims}", bytes[3])));
    }
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(format("the header is truncated".into()));
    }
    let shape: Vec<usize> = bytes[4..header]
        .chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = shape.iter().product::<usize>();
    let data = bytes[header..].to_vec();
    if data.len() != expected {
        return Err(format(format!(
            "shape {shape:?} needs {expected} bytes of data, the file has {}",
            data.len()
        )));
    }
    Ok((shape, data))
}

/// Reads an images file (`*-images-idx3-ubyte[.gz]`).
pub fn read_images(path: &Path) -> Result<IdxImages, IdxError> {
    let (shape, pixels) = read_idx(path, 3)?;
    Ok(IdxImages {
        count: shape[0],
        rows: shape[1],
        cols: shape[2],
        pixels,
    })
}

/// Reads a labels file (`*-labels-idx1-ubyte[.gz]`).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, IdxError> {
    Ok(read_idx(path, 1)?.1)
}

/// Images and labels of one split, checked to have one label per image.
pub fn read_split(images: &Path, labels: &Path) -> Result<(IdxImages, Vec<u8>), IdxError> {
    let imgs = read_images(images)?;
    let lbls = read_labels(labels)?;
    if imgs.count != lbls.len() {
        return Err(IdxError::Format {
            path: labels.to_owned(),
            reason: format!(
                "{} labels for the {} images of {}",
                lbls.len(),
                imgs.count,
                images.display()
            ),
        });
    }
    Ok((imgs, lbls))
}
