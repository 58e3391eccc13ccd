//! Decoding one image file: PNG, JPEG, BMP, WebP, GIF (its first frame), TIFF, Netpbm or TGA
//! ([`IMAGE_EXTENSIONS`](super::listing::IMAGE_EXTENSIONS)); grey, grey+alpha, RGB, RGBA, 8- or
//! 16-bit or float; converted to 1 or 3 channels, at its own size ([`decode_native`]) or
//! resized ([`decode`]). Values are in `[0, 1]`, channels first. Cropping, resizing to the model's
//! input, augmentation and normalisation come after ([`crate::data::augment`]), on the
//! full-resolution image.
//!
//! A file that cannot be read or decoded (corrupt, truncated, not an image) is an error that
//! names it, never a panic: the loader reports it once and skips it.

use std::path::{Path, PathBuf};

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

/// Reads `path` at its own size as `channels × height × width` floats in `[0, 1]` (channels
/// first), with its `[height, width]`.
///
/// `channels` is 1 (luma, Rec. 709 weights as the `image` crate) or 3 (RGB; grey is repeated,
/// alpha is dropped).
///
/// # Panics
/// If `channels` is not 1 or 3 (a caller bug: configs are validated first).
pub fn decode_native(path: &Path, channels: usize) -> Result<(Vec<f32>, [usize; 2]), DecodeError> {
    assert!(
        channels == 1 || channels == 3,
        "channels must be 1 or 3, got {channels}"
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
    Ok(to_chw(image, channels))
}

/// `image` as `channels × height × width` floats in `[0, 1]`, with its `[height, width]`.
fn to_chw(image: image::DynamicImage, channels: usize) -> (Vec<f32>, [usize; 2]) {
    let size = [image.height() as usize, image.width() as usize];
    let plane = size[0] * size[1];
    if channels == 1 {
        (image.to_luma32f().into_raw(), size)
    } else {
        // From 8 bits directly: `to_rgb32f` would allocate and convert a second full image.
        let mut chw = vec![0.0f32; 3 * plane];
        let (r, rest) = chw.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        match image {
            image::DynamicImage::ImageRgb8(rgb) => {
                for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
                    r[i] = f32::from(px[0]) / 255.0;
                    g[i] = f32::from(px[1]) / 255.0;
                    b[i] = f32::from(px[2]) / 255.0;
                }
            }
            other => {
                for (i, px) in other.to_rgb32f().into_raw().chunks_exact(3).enumerate() {
                    r[i] = px[0];
                    g[i] = px[1];
                    b[i] = px[2];
                }
            }
        }
        (chw, size)
    }
}

/// An image sent as bytes (a request body) that cannot be used: the message says why, for the
/// sender.
#[derive(Debug, thiserror::Error)]
pub enum BytesError {
    /// No bytes.
    #[error("the body is empty: send the image's bytes")]
    Empty,
    /// Not a format this build decodes.
    #[error("the body is not an image (PNG, JPEG, BMP, WebP, GIF, TIFF or PNM)")]
    NotAnImage,
    /// More pixels than allowed.
    #[error("the image is {width}×{height} pixels, over the limit of {limit} pixels")]
    TooLarge {
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// Most pixels allowed.
        limit: u64,
    },
    /// A known format that does not decode (truncated, corrupt).
    #[error("the image does not decode: {0}")]
    Corrupt(image::ImageError),
}

/// Decodes an image held in memory, as [`decode_native`] does a file, refusing one of more
/// than `max_pixels` pixels before decoding it.
///
/// # Panics
/// If `channels` is not 1 or 3.
pub fn decode_bytes(
    bytes: &[u8],
    channels: usize,
    max_pixels: u64,
) -> Result<(Vec<f32>, [usize; 2]), BytesError> {
    assert!(
        channels == 1 || channels == 3,
        "channels must be 1 or 3, got {channels}"
    );
    if bytes.is_empty() {
        return Err(BytesError::Empty);
    }
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .expect("reading from memory does not fail")
    };
    if reader().format().is_none() {
        return Err(BytesError::NotAnImage);
    }
    let (width, height) = reader().into_dimensions().map_err(BytesError::Corrupt)?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(BytesError::TooLarge {
            width,
            height,
            limit: max_pixels,
        });
    }
    let mut r = reader();
    let mut limits = image::Limits::default();
    // Room for the decoded image at 16 bits per channel with alpha, and the decoder's own.
    limits.max_alloc = Some(max_pixels.saturating_mul(16).max(1 << 26));
    r.limits(limits);
    let image = r.decode().map_err(BytesError::Corrupt)?;
    Ok(to_chw(image, channels))
}

/// Reads `path` as `channels × height × width` floats in `[0, 1]` (channels first), resized
/// to `height × width` with a triangle (bilinear) filter, antialiased when shrinking.
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
        height > 0 && width > 0,
        "image size must be positive, got {height}×{width}"
    );
    let (chw, [h0, w0]) = decode_native(path, channels)?;
    Ok(if [h0, w0] == [height, width] {
        chw
    } else {
        resample(
            &chw,
            channels,
            [h0, w0],
            [0.0, 0.0, h0 as f64, w0 as f64],
            [height, width],
        )
    })
}

/// One output coordinate's source pixels: the first index and the weights.
fn filter_taps(out: usize, start: f64, len: f64, source: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = len / out as f64;
    // PIL's bilinear filter: a triangle of radius 1 output pixel, so shrinking averages.
    let support = scale.max(1.0);
    (0..out)
        .map(|x| {
            let center = start + (x as f64 + 0.5) * scale;
            let lo = (center - support).floor().max(0.0) as usize;
            let hi = ((center + support).ceil().max(0.0) as usize).min(source);
            let weights: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - (j as f64 + 0.5 - center).abs() / support).max(0.0))
                .collect();
            let sum: f64 = weights.iter().sum();
            if sum > 0.0 {
                (lo, weights.iter().map(|w| (w / sum) as f32).collect())
            } else {
                let nearest = (center.floor().max(0.0) as usize).min(source - 1);
                (nearest, vec![1.0])
            }
        })
        .collect()
}

/// Resamples the rectangle `[top, left, height, width]` (source pixels, fractional) of the
/// `channels × h0 × w0` image `chw` to `channels × size`: separable triangle filter, pixel
/// centres as `align_corners = false`, weights renormalised at the borders. A full rectangle at
/// the same size is the identity.
pub fn resample(
    chw: &[f32],
    channels: usize,
    [h0, w0]: [usize; 2],
    [top, left, height, width]: [f64; 4],
    [h, w]: [usize; 2],
) -> Vec<f32> {
    let xs = filter_taps(w, left, width, w0);
    let ys = filter_taps(h, top, height, h0);
    let row_lo = ys.iter().map(|(lo, _)| *lo).min().unwrap_or(0);
    let row_hi = ys
        .iter()
        .map(|(lo, taps)| lo + taps.len())
        .max()
        .unwrap_or(0);
    let rows = row_hi - row_lo;
    let mut out = vec![0.0f32; channels * h * w];
    let mut tmp = vec![0.0f32; rows * w];
    for c in 0..channels {
        let plane = &chw[c * h0 * w0..(c + 1) * h0 * w0];
        for (r, row) in tmp.chunks_exact_mut(w).enumerate() {
            let src = &plane[(row_lo + r) * w0..(row_lo + r + 1) * w0];
            for (v, (lo, taps)) in row.iter_mut().zip(&xs) {
                *v = taps.iter().zip(&src[*lo..]).map(|(t, p)| t * p).sum();
            }
        }
        let dst = &mut out[c * h * w..(c + 1) * h * w];
        for (y, (lo, taps)) in ys.iter().enumerate() {
            let line = &mut dst[y * w..(y + 1) * w];
            for (k, t) in taps.iter().enumerate() {
                let src = &tmp[(lo + k - row_lo) * w..(lo + k - row_lo + 1) * w];
                for (v, p) in line.iter_mut().zip(src) {
                    *v += t * p;
                }
            }
        }
    }
    out
}
