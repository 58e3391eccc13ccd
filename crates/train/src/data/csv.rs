//! CSV files with a header row: the one reader of CSV lists (with their extra columns), pairs
//! files and `embed`'s `labels.csv`, and the yes/no values of their columns. Errors name the
//! file and line.

use std::path::{Path, PathBuf};

/// A CSV file that cannot be read, naming the file (and line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A yes/no value: `1`/`0`, `true`/`false`, `yes`/`no` (any case); `None` for anything else.
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// A CSV file with a header row, read whole; errors name the file and line.
pub(crate) struct CsvTable {
    path: PathBuf,
    text: String,
    headers: ::csv::StringRecord,
}

impl CsvTable {
    /// Reads `path` and its header row.
    pub(crate) fn read(path: &Path) -> Result<Self, CsvError> {
        let text = std::fs::read_to_string(path).map_err(|source| CsvError::Io {
            path: path.to_owned(),
            source,
        })?;
        let headers = ::csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes())
            .headers()
            .map_err(|e| CsvError::Csv {
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

    /// The header's column names.
    pub(crate) fn headers(&self) -> &::csv::StringRecord {
        &self.headers
    }

    /// The folder relative paths start from.
    pub(crate) fn base(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// An error at `line` of the file.
    pub(crate) fn error(&self, line: usize, reason: String) -> CsvError {
        CsvError::Csv {
            path: self.path.clone(),
            line,
            reason,
        }
    }

    /// The position of the column `name`; else an error naming it, with `hint` (what the
    /// header should be, or nothing) and the columns the file has.
    pub(crate) fn column(&self, name: &str, hint: &str) -> Result<usize, CsvError> {
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
    ) -> impl Iterator<Item = (usize, Result<::csv::StringRecord, CsvError>)> + '_ {
        ::csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(self.text.as_bytes())
            .into_records()
            .enumerate()
            .map(|(i, r)| (i + 2, r.map_err(|e| self.error(i + 2, e.to_string()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(parse_flag(" TRUE "), Some(true));
        assert_eq!(parse_flag("0"), Some(false));
        assert_eq!(parse_flag("2"), None);
    }
}
