//! The folder `triplet embed` writes and `triplet search --gallery` reads: `embeddings.npy`
//! (numpy float32 `[N, dim]`), `labels.csv` (`path,label`, same order), the TensorBoard Embedding
//! Projector's `vectors.tsv` + `metadata.tsv`, and `embed.json` (the model that made them).
//! Each file is written atomically.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use triplet_metrics::{Rows, RowsBuf};

use crate::data::csv::CsvTable;
use crate::files::write_atomic;

/// The embeddings.
pub const EMBEDDINGS: &str = "embeddings.npy";
/// Their images and classes.
pub const LABELS: &str = "labels.csv";
/// The model that made them.
pub const EMBED_INFO: &str = "embed.json";

/// A `rows × dim` little-endian float32 matrix in numpy's `.npy` format (version 1.0).
pub fn npy_f32(rows: Rows<'_>) -> Vec<u8> {
    let (n, dim) = (rows.len(), rows.dim());
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dim}), }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + rows.values().len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in rows.values() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a `rows × cols` little-endian float32 `.npy` (as `triplet embed` writes), straight
/// into floats (no second copy of the bytes).
pub fn read_npy_f32(path: &Path) -> Result<RowsBuf> {
    let bad = |why: &str| anyhow::anyhow!("{} is not a float32 matrix .npy: {why}", path.display());
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; 10];
    reader.read_exact(&mut head).map_err(|_| bad("too short"))?;
    if &head[..6] != b"\x93NUMPY" {
        return Err(bad("no .npy magic"));
    }
    let len = usize::from(u16::from_le_bytes([head[8], head[9]]));
    if head[6] != 1 {
        return Err(bad("only version 1 is read"));
    }
    let mut header = vec![0u8; len];
    reader
        .read_exact(&mut header)
        .map_err(|_| bad("header cut short"))?;
    let header = String::from_utf8_lossy(&header);
    if !header.contains("'descr': '<f4'") || header.contains("'fortran_order': True") {
        return Err(bad(&format!(
            "needs '<f4' in C order, header {}",
            header.trim()
        )));
    }
    let dims: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(|s| s.split(',').filter_map(|d| d.trim().parse().ok()).collect())
        .unwrap_or_default();
    let [rows, cols] = dims[..] else {
        return Err(bad("not two-dimensional"));
    };
    let count = rows
        .checked_mul(cols)
        .ok_or_else(|| bad("shape overflows"))?;
    // The announced shape must fit the file before anything that size is allocated.
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let needed = (10 + len as u64).saturating_add((count as u64).saturating_mul(4));
    if size < needed {
        return Err(bad(&format!(
            "{rows} × {cols} values announced, fewer present ({size} bytes, {needed} needed)"
        )));
    }
    let mut values = Vec::with_capacity(count);
    let mut chunk = vec![0u8; 1 << 20];
    while values.len() < count {
        let want = ((count - values.len()) * 4).min(chunk.len());
        reader
            .read_exact(&mut chunk[..want])
            .map_err(|_| bad(&format!("{rows} × {cols} values announced, fewer present")))?;
        values.extend(
            chunk[..want]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    RowsBuf::try_new(values, cols).map_err(|e| bad(&e.to_string()))
}

/// One row per embedding: where the image came from and its class name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Path of the image (`file#row` for IDX data).
    pub path: String,
    /// Class name.
    pub label: String,
}

/// Which model made an embed folder (`embed.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedInfo {
    /// The weights file that embedded.
    pub checkpoint: PathBuf,
    /// The embedding size.
    pub dim: usize,
    /// The model's distance, as its config names it.
    pub distance: String,
    /// Images embedded.
    pub images: usize,
    /// The model's identity ([`Trained::identity_key`](crate::run::trained::Trained::identity_key)),
    /// which `triplet index build` checks (absent in folders written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Writes `embeddings.npy`, `labels.csv`, `vectors.tsv`, `metadata.tsv` and `embed.json` into
/// `dir` (created if needed).
///
/// # Panics
/// If `rows` and `labels` differ in length.
pub fn write_all(dir: &Path, rows: Rows<'_>, labels: &[Row], info: &EmbedInfo) -> Result<()> {
    assert_eq!(rows.len(), labels.len(), "one label row per embedding");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join(EMBEDDINGS), &npy_f32(rows))?;

    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["path", "label"])?;
    for row in labels {
        csv.write_record([&row.path, &row.label])?;
    }
    let csv = csv.into_inner().context("formatting labels.csv")?;
    write_atomic(&dir.join(LABELS), &csv)?;

    let mut vectors = String::with_capacity(rows.values().len() * 12);
    for row in rows.iter() {
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
    for row in labels {
        let _ = writeln!(metadata, "{}\t{}", clean(&row.label), clean(&row.path));
    }
    write_atomic(&dir.join("metadata.tsv"), metadata.as_bytes())?;

    write_info(dir, info)
}

/// Writes `embed.json` into `dir`.
pub fn write_info(dir: &Path, info: &EmbedInfo) -> Result<()> {
    let text = serde_json::to_string_pretty(info).expect("JSON values serialise");
    write_atomic(&dir.join(EMBED_INFO), format!("{text}\n").as_bytes())
}

/// An embed folder read back.
#[derive(Debug, Clone)]
pub struct EmbedFolder {
    /// The embeddings.
    pub rows: RowsBuf,
    /// Each row's image and class.
    pub labels: Vec<Row>,
    /// Which model made them, when `embed.json` is there and readable.
    pub info: Option<EmbedInfo>,
}

/// Whether `dir` is a `triplet embed` output folder.
pub fn is_embed_dir(dir: &Path) -> bool {
    dir.join(EMBEDDINGS).is_file() && dir.join(LABELS).is_file()
}

/// Reads an embed folder: the embeddings and the labels must agree in number, every value must
/// be finite; errors name the file.
pub fn read_embed_dir(dir: &Path) -> Result<EmbedFolder> {
    let npy = dir.join(EMBEDDINGS);
    let rows = read_npy_f32(&npy)?;
    let labels_path = dir.join(LABELS);
    let table = CsvTable::read(&labels_path)?;
    let hint = "`triplet embed` writes `path,label`";
    let (path_col, label_col) = (table.column("path", hint)?, table.column("label", hint)?);
    let mut labels = Vec::with_capacity(rows.len());
    for (line, record) in table.rows() {
        let record = record?;
        let (Some(path), Some(label)) = (record.get(path_col), record.get(label_col)) else {
            bail!(
                "{}:{line}: missing the path or the label",
                labels_path.display()
            );
        };
        labels.push(Row {
            path: path.to_owned(),
            label: label.to_owned(),
        });
    }
    if labels.len() != rows.len() {
        bail!(
            "{} lists {} images but {} holds {} embeddings; re-run `triplet embed`",
            labels_path.display(),
            labels.len(),
            npy.display(),
            rows.len()
        );
    }
    if let Some(i) = rows.rows().first_non_finite() {
        bail!("{}: embedding {i} is not finite", npy.display());
    }
    let info = std::fs::read_to_string(dir.join(EMBED_INFO))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    Ok(EmbedFolder { rows, labels, info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_data_follow() {
        let bytes = npy_f32(Rows::new(&[1.0, -2.5, 3.0, 0.0, 5.0, 6.0], 3));
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

    #[test]
    fn npy_round_trips_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        let values: Vec<f32> = (0..300_000).map(|i| i as f32 * 0.5).collect();
        std::fs::write(&path, npy_f32(Rows::new(&values, 3))).unwrap();
        let back = read_npy_f32(&path).unwrap();
        assert_eq!((back.len(), back.dim()), (100_000, 3));
        assert_eq!(back.values(), values);
        let bytes = npy_f32(Rows::new(&values[..6], 3));
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let e = read_npy_f32(&path).unwrap_err().to_string();
        assert!(e.contains("e.npy") && e.contains("fewer present"), "{e}");
        std::fs::write(&path, b"hello").unwrap();
        assert!(
            read_npy_f32(&path)
                .unwrap_err()
                .to_string()
                .contains("e.npy")
        );
    }
}
