//! Embedding exports: `embeddings.npy` (numpy), `labels.csv`, and the TensorBoard Embedding
//! Projector's `vectors.tsv` + `metadata.tsv`. Each file is written atomically.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::files::write_atomic;

/// A `rows × cols` little-endian float32 matrix in numpy's `.npy` format (version 1.0).
pub fn npy_f32(values: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    assert_eq!(values.len(), rows * cols, "values must be rows × cols");
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// One row per embedding: where the image came from and its class name.
pub struct Row {
    /// Path of the image (`file#row` for IDX data).
    pub path: String,
    /// Class name.
    pub label: String,
}

/// Writes `embeddings.npy`, `labels.csv`, `vectors.tsv` and `metadata.tsv` into `dir`.
pub fn write_all(dir: &Path, embeddings: &[f32], dim: usize, rows: &[Row]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(
        &dir.join("embeddings.npy"),
        &npy_f32(embeddings, rows.len(), dim),
    )?;

    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["path", "label"])?;
    for row in rows {
        csv.write_record([&row.path, &row.label])?;
    }
    let csv = csv.into_inner().context("formatting labels.csv")?;
    write_atomic(&dir.join("labels.csv"), &csv)?;

    let mut vectors = String::with_capacity(embeddings.len() * 12);
    for row in embeddings.chunks_exact(dim.max(1)) {
        for (i, v) in row.iter().enumerate() {
            let sep = if i == 0 { "" } else { "\t" };
            let _ = write!(vectors, "{sep}{v}");
        }
        vectors.push('\n');
    }
    write_atomic(&dir.join("vectors.tsv"), vectors.as_bytes())?;

    // Two columns, so the projector expects a header row. Tabs and newlines would break the
    // format; they become spaces.
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let mut metadata = String::from("label\tpath\n");
    for row in rows {
        let _ = writeln!(metadata, "{}\t{}", clean(&row.label), clean(&row.path));
    }
    write_atomic(&dir.join("metadata.tsv"), metadata.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_data_follow() {
        let bytes = npy_f32(&[1.0, -2.5, 3.0, 0.0, 5.0, 6.0], 2, 3);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        let data: Vec<f32> = bytes[10 + len..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(data, [1.0, -2.5, 3.0, 0.0, 5.0, 6.0]);
    }
}
