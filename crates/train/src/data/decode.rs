//! Decoding one image file into the model's input: PNG, JPEG, BMP or WebP; grey, grey+alpha,
//! RGB, RGBA, 8- or 16-bit; converted to 1 or 3 channels and resized to `height × width`.
//! Values are in `[0, 1]`, channels first. Normalisation and augmentation come after.
//!
//! A file that cannot be read or decoded (corrupt, truncated, not an image) is an error that
//! names it, never a panic: the loader reports it once and skips it.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

/// An image file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The file could not be opened or decoded.
    #[error("cannot decode image {}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: image::ImageError,
    },
}

/// Reads `path` as `channels × height × width` floats in `[0, 1]` (channels first).
///
/// `channels` is 1 (luma, Rec. 709 weights as the `image` crate) or 3 (RGB; grey is repeated,
/// alpha is dropped). The image is resized with a triangle (bilinear) filter.
///
/// # Panics
/// If `channels` is not 1 or 3, or a size is 0 (a caller bug: configs are validated first).
pub fn decode(
    path: &Path,
    channels: usize,
    height: usize,
    width: usize,
) -> Result<Vec<f32>, DecodeError> {
    assert!(
        channels == 1 || channels == 3,
        "channels must be 1 or 3, got {channels}"
    );
    assert!(
        height > 0 && width > 0,
        "image size must be positive, got {height}×{width}"
    );
    let image = image::ImageReader::open(path)
        .map_err(|e| DecodeError::Image {
            path: path.to_owned(),
            source: image::ImageError::IoError(e),
        })?
        .with_guessed_format()
        .map_err(|e| DecodeError::Image {
            path: path.to_owned(),
            source: image::ImageError::IoError(e),
        })?
        .decode()
        .map_err(|source| DecodeError::Image {
            path: path.to_owned(),
            source,
        })?;
    let (w, h) = (width as u32, height as u32);
    let plane = height * width;
    Ok(if channels == 1 {
        let grey = image.to_luma32f();
        let grey = if grey.dimensions() == (w, h) {
            grey
        } else {
            image::imageops::resize(&grey, w, h, FilterType::Triangle)
        };
        grey.into_raw()
    } else {
        let rgb = image.to_rgb32f();
        let rgb = if rgb.dimensions() == (w, h) {
            rgb
        } else {
            image::imageops::resize(&rgb, w, h, FilterType::Triangle)
        };
        let mut chw = vec![0.0f32; 3 * plane];
        for (i, px) in rgb.into_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * plane + i] = px[c];
            }
        }
        chw
    })
}
