//! Rows of vectors: `len × dim` values, row-major. Every function of this crate takes its
//! embeddings as [`Rows`], so that the dimension travels with the values and cannot be swapped
//! with another count (`k`, a number of rows) at a call.

use std::fmt;

/// A slice is not a whole number of rows of a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowsError {
    /// How many values there are.
    pub values: usize,
    /// The dimension asked for.
    pub dim: usize,
}

impl fmt::Display for RowsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dim == 0 {
            write!(f, "{} values cannot be rows of dimension 0", self.values)
        } else {
            write!(
                f,
                "{} values are not a whole number of rows of dimension {}",
                self.values, self.dim
            )
        }
    }
}

impl std::error::Error for RowsError {}

/// Borrowed rows of `dim` values each (an embedding per row).
///
/// # Example
/// ```
/// use triplet_metrics::Rows;
/// let rows = Rows::new(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3);
/// assert_eq!((rows.len(), rows.dim()), (2, 3));
/// assert_eq!(rows.row(1), [4.0, 5.0, 6.0]);
/// assert!(Rows::try_new(&[1.0, 2.0], 3).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rows<'a> {
    values: &'a [f32],
    dim: usize,
}

impl<'a> Rows<'a> {
    /// `values` as rows of `dim`; an error unless they are a whole number of rows (no rows of
    /// dimension 0, except none at all).
    pub fn try_new(values: &'a [f32], dim: usize) -> Result<Self, RowsError> {
        let whole = if dim == 0 {
            values.is_empty()
        } else {
            values.len().is_multiple_of(dim)
        };
        if whole {
            Ok(Self { values, dim })
        } else {
            Err(RowsError {
                values: values.len(),
                dim,
            })
        }
    }

    /// `values` as rows of `dim`.
    ///
    /// # Panics
    /// If they are not a whole number of rows ([`Rows::try_new`] says why).
    pub fn new(values: &'a [f32], dim: usize) -> Self {
        Self::try_new(values, dim).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The values, row-major.
    pub fn values(&self) -> &'a [f32] {
        self.values
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [f32]> + 'a {
        let (values, dim) = (self.values, self.dim.max(1));
        values.chunks_exact(dim)
    }

    /// Rows `start..end`.
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn slice(&self, start: usize, end: usize) -> Rows<'a> {
        Rows {
            values: &self.values[start * self.dim..end * self.dim],
            dim: self.dim,
        }
    }

    /// The first row holding a NaN or an infinity.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.values
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| i / self.dim.max(1))
    }

    /// The chosen rows, in the order given, as owned rows.
    pub fn select(&self, indices: &[usize]) -> RowsBuf {
        let mut out = RowsBuf::with_dim(self.dim);
        for &i in indices {
            out.push(self.row(i));
        }
        out
    }

    /// An owned copy.
    pub fn to_owned(&self) -> RowsBuf {
        RowsBuf {
            values: self.values.to_vec(),
            dim: self.dim,
        }
    }
}

/// Owned rows of `dim` values each, the owned form of [`Rows`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowsBuf {
    values: Vec<f32>,
    dim: usize,
}

impl RowsBuf {
    /// No rows yet, of dimension `dim`.
    pub fn with_dim(dim: usize) -> Self {
        Self {
            values: Vec::new(),
            dim,
        }
    }

    /// `values` as rows of `dim`; an error unless they are a whole number of rows.
    pub fn try_new(values: Vec<f32>, dim: usize) -> Result<Self, RowsError> {
        Rows::try_new(&values, dim)?;
        Ok(Self { values, dim })
    }

    /// `values` as rows of `dim`.
    ///
    /// # Panics
    /// If they are not a whole number of rows.
    pub fn new(values: Vec<f32>, dim: usize) -> Self {
        Self::try_new(values, dim).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The borrowed view.
    pub fn rows(&self) -> Rows<'_> {
        Rows {
            values: &self.values,
            dim: self.dim,
        }
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows().len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// Appends one row. The first row of rows without a dimension sets it.
    ///
    /// # Panics
    /// If the row's length is not the dimension.
    pub fn push(&mut self, row: &[f32]) {
        self.extend_rows(row, row.len());
    }

    /// Appends whole rows of `dim` values (`values.len()` a multiple of `dim`). Empty rows
    /// without a dimension take `dim`.
    ///
    /// # Panics
    /// If `dim` differs from the rows' dimension, or `values` is not whole rows of it.
    pub fn extend_rows(&mut self, values: &[f32], dim: usize) {
        if self.values.is_empty() && self.dim == 0 {
            self.dim = dim;
        }
        assert_eq!(
            dim, self.dim,
            "rows of dimension {dim} appended to rows of dimension {}",
            self.dim
        );
        Rows::new(values, dim);
        self.values.extend_from_slice(values);
    }

    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values, giving up the rows.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }
}

impl<'a> From<&'a RowsBuf> for Rows<'a> {
    fn from(rows: &'a RowsBuf) -> Self {
        rows.rows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_rows_only() {
        assert_eq!(Rows::new(&[], 0).len(), 0);
        assert_eq!(Rows::new(&[], 4).len(), 0);
        assert_eq!(
            Rows::try_new(&[1.0], 0),
            Err(RowsError { values: 1, dim: 0 })
        );
        let e = Rows::try_new(&[1.0; 5], 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "5 values are not a whole number of rows of dimension 2"
        );
        let r = Rows::new(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 2);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
        );
        assert_eq!(r.slice(1, 3).values(), [2.0, 3.0, 4.0, 5.0]);
        assert_eq!(r.select(&[2, 0]).values(), [4.0, 5.0, 0.0, 1.0]);
    }

    #[test]
    fn non_finite_rows_are_found() {
        let r = Rows::new(&[0.0, 1.0, 2.0, f32::NAN, 4.0, f32::INFINITY], 2);
        assert_eq!(r.first_non_finite(), Some(1));
        assert_eq!(Rows::new(&[0.0, 1.0], 2).first_non_finite(), None);
    }

    #[test]
    fn owned_rows_grow_by_whole_rows() {
        let mut b = RowsBuf::default();
        b.push(&[1.0, 2.0]);
        b.extend_rows(&[3.0, 4.0, 5.0, 6.0], 2);
        assert_eq!((b.len(), b.dim()), (3, 2));
        assert_eq!(b.row(2), [5.0, 6.0]);
        assert!(std::panic::catch_unwind(move || b.push(&[1.0])).is_err());
    }
}
