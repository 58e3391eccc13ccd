//! The IDX reader on files written here, raw and gzipped, and on broken files: each error
//! names the file and what is wrong.

use std::io::Write;
use std::path::Path;

use triplet_train::data::idx::{IdxError, read_images, read_labels, read_split};

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

fn write(path: &Path, bytes: &[u8], gzip: bool) {
    let mut file = std::fs::File::create(path).unwrap();
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
    } else {
        file.write_all(bytes).unwrap();
    }
}

#[test]
fn reads_raw_and_gzipped_files() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 2 * 4).map(|v| v as u8 * 10).collect();
    for gzip in [false, true] {
        let (images, labels) = (
            dir.path().join(format!("i{gzip}")),
            dir.path().join(format!("l{gzip}")),
        );
        write(&images, &idx(&[3, 2, 4], &pixels), gzip);
        write(&labels, &idx(&[3], &[7, 0, 9]), gzip);
        let (imgs, lbls) = read_split(&images, &labels).unwrap();
        assert_eq!((imgs.count, imgs.rows, imgs.cols), (3, 2, 4));
        assert_eq!(imgs.image(1), &pixels[8..16]);
        assert_eq!(lbls, [7, 0, 9]);
    }
}

#[test]
fn broken_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken-idx3-ubyte");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"hello world".to_vec(),
            "does not start with an IDX magic number",
        ),
        (
            idx(&[2, 2, 2], &[0; 5]),
            "needs 8 bytes of data, the file has 5",
        ),
        (idx(&[2, 2], &[0; 4]), "2 dimensions, expected 3"),
        (vec![0, 0, 0x0d, 3, 0, 0, 0, 1], "element type 0x0d"),
        (vec![0, 0, 0x08, 3, 0, 0], "header is truncated"),
    ];
    for (bytes, reason) in cases {
        write(&path, &bytes, false);
        let err = read_images(&path).unwrap_err();
        assert!(matches!(err, IdxError::Format { .. }));
        let message = err.to_string();
        assert!(
            message.contains("broken-idx3-ubyte") && message.contains(reason),
            "{message}"
        );
    }
    // A corrupt gzip stream and a missing file are I/O errors naming the file.
    std::fs::write(&path, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    assert!(matches!(read_images(&path), Err(IdxError::Io { .. })));
    let missing = dir.path().join("nope-labels-idx1-ubyte.gz");
    let err = read_labels(&missing).unwrap_err();
    assert!(
        err.to_string().contains("nope-labels-idx1-ubyte.gz"),
        "{err}"
    );
}

#[test]
fn label_count_must_match_image_count() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = (dir.path().join("images"), dir.path().join("labels"));
    write(&images, &idx(&[2, 1, 1], &[1, 2]), false);
    write(&labels, &idx(&[3], &[1, 2, 3]), false);
    let err = read_split(&images, &labels).unwrap_err().to_string();
    assert!(err.contains("3 labels for the 2 images"), "{err}");
}
