//! `triplet embed --format parquet` (cargo feature `parquet`): one Parquet file that vector
//! engines ingest as it is (LanceDB, Milvus bulk import, Qdrant's and Weaviate's importers via
//! pandas, DuckDB): columns `id` (int64, the row), `path`, `label`, a CSV list's other columns
//! (strings), and `vector`, a fixed-size list of float32 (Arrow's `FixedSizeList<Float32, D>`,
//! which LanceDB reads as its vector column). Snappy-compressed, written atomically.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use triplet_metrics::Rows;

use super::files::Row;
use crate::files::write_atomic;

/// The file `--format parquet` writes into `--out`.
pub const PARQUET: &str = "embeddings.parquet";

/// Writes `rows` with their paths, labels and `extra` columns (name, one value per row) to
/// `path`.
pub fn write_parquet(
    path: &Path,
    rows: Rows<'_>,
    labels: &[Row],
    extra: &[(String, Vec<String>)],
) -> Result<()> {
    let dim = i32::try_from(rows.dim()).context("the embedding is too long for Arrow")?;
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vectors = FixedSizeListArray::try_new(
        Arc::clone(&item),
        dim,
        Arc::new(Float32Array::from(rows.values().to_vec())),
        None,
    )
    .context("building the vector column")?;
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..labels.len() as i64)),
        Arc::new(StringArray::from_iter_values(
            labels.iter().map(|r| r.path.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            labels.iter().map(|r| r.label.as_str()),
        )),
    ];
    for (name, values) in extra {
        fields.push(Field::new(name, DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from_iter_values(values.iter())));
    }
    fields.push(Field::new(
        "vector",
        DataType::FixedSizeList(item, dim),
        false,
    ));
    columns.push(Arc::new(vectors));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).context("building the table")?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(props))
        .context("starting the Parquet writer")?;
    writer.write(&batch).context("writing Parquet")?;
    writer.close().context("finishing the Parquet file")?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn the_file_holds_every_row_and_a_fixed_size_vector_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PARQUET);
        let values = [1.0f32, 2.0, 3.0, -1.0, 0.5, 0.25];
        let labels = [
            Row {
                path: "a.png".into(),
                label: "x".into(),
            },
            Row {
                path: "b.png".into(),
                label: "y".into(),
            },
        ];
        let extra = [("camera".to_string(), vec!["1".to_string(), "2".to_string()])];
        write_parquet(&path, Rows::new(&values, 3), &labels, &extra).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
        let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "path", "label", "camera", "vector"]);
        let v = batch
            .column(4)
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .unwrap();
        assert_eq!(v.value_length(), 3);
        let second = v.value(1);
        let second = second.as_any().downcast_ref::<Float32Array>().unwrap();
        assert_eq!(second.values(), &[-1.0, 0.5, 0.25]);
    }
}
