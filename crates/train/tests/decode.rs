//! Decoding real files written here in every supported format and pixel layout, and the named
//! errors for a corrupt file, a truncated PNG and a text file.

use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};
use triplet_train::data::decode::decode;

/// A 4×2 image whose left half is black and right half white (or pure red for colour).
fn save(img: DynamicImage, path: &Path, format: ImageFormat) {
    img.save_with_format(path, format).unwrap();
}

fn left_dark_right_bright(w: u32, h: u32) -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 0, 0])
        }
    })
}

#[test]
fn formats_and_layouts_decode_to_the_model_channels() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = DynamicImage::ImageRgb8(left_dark_right_bright(4, 2));
    let cases: Vec<(&str, DynamicImage, ImageFormat)> = vec![
        ("rgb.png", rgb.clone(), ImageFormat::Png),
        ("rgb.bmp", rgb.clone(), ImageFormat::Bmp),
        (
            "rgba.png",
            DynamicImage::ImageRgba8(ImageBuffer::from_fn(4, 2, |x, _| {
                if x < 2 {
                    Rgba([0, 0, 0, 9])
                } else {
                    Rgba([255, 0, 0, 255])
                }
            })),
            ImageFormat::Png,
        ),
        (
            "rgb16.png",
            DynamicImage::ImageRgb16(ImageBuffer::from_fn(4, 2, |x, _| {
                if x < 2 {
                    Rgb([0, 0, 0])
                } else {
                    Rgb([65535, 0, 0])
                }
            })),
            ImageFormat::Png,
        ),
        ("rgb.webp", rgb.clone(), ImageFormat::WebP),
        // Scanned archives and microscopy keep TIFF; GIF, PNM and TGA are read too.
        ("rgb.gif", rgb.clone(), ImageFormat::Gif),
        ("rgb.tif", rgb.clone(), ImageFormat::Tiff),
        ("rgb.tiff", rgb.clone(), ImageFormat::Tiff),
        ("rgb.ppm", rgb.clone(), ImageFormat::Pnm),
        ("rgb.tga", rgb.clone(), ImageFormat::Tga),
    ];
    for (name, img, format) in cases {
        let path = dir.path().join(name);
        save(img, &path, format);
        let chw = decode(&path, 3, 2, 4).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(chw.len(), 3 * 8);
        let (red, green) = (&chw[0..8], &chw[8..16]);
        assert_eq!(red[0], 0.0, "{name}");
        assert!((red[3] - 1.0).abs() < 1e-6, "{name}: {red:?}");
        assert!(green.iter().all(|&g| g == 0.0), "{name}");
        // Grey: luma of pure red is ~0.21 (Rec. 709).
        let grey = decode(&path, 1, 2, 4).unwrap();
        assert_eq!(grey.len(), 8);
        assert!((grey[3] - 0.2126).abs() < 0.01, "{name}: {grey:?}");
    }
    // Grey sources repeat into RGB; JPEG is lossy, so compare loosely; resizing changes the size.
    let grey = DynamicImage::ImageLuma8(ImageBuffer::from_fn(8, 8, |_, _| Luma([128u8])));
    let path = dir.path().join("grey.jpg");
    save(grey, &path, ImageFormat::Jpeg);
    let chw = decode(&path, 3, 4, 4).unwrap();
    assert_eq!(chw.len(), 48);
    assert!(
        chw.iter().all(|&v| (v - 128.0 / 255.0).abs() < 0.02),
        "{chw:?}"
    );
    let path = dir.path().join("grey-alpha.png");
    save(
        DynamicImage::ImageLumaA8(ImageBuffer::from_fn(2, 2, |_, _| LumaA([255u8, 0]))),
        &path,
        ImageFormat::Png,
    );
    assert!(decode(&path, 1, 2, 2).unwrap().iter().all(|&v| v == 1.0));
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    save(
        DynamicImage::ImageRgb8(left_dark_right_bright(16, 16)),
        &good,
        ImageFormat::Png,
    );
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 definitely not a jpeg body").unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "just some text").unwrap();
    let missing = dir.path().join("missing.png");
    for path in [truncated, corrupt, text, missing] {
        let err = decode(&path, 3, 8, 8).unwrap_err().to_string();
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(err.contains(&*name), "{err}");
    }
}
