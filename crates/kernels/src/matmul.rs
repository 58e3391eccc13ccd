//! Safe, bounds-checked wrapper around `gemm::gemm` (f32).
//!
//! One of the two modules of the crate with `unsafe` code (the other: `direct`, its AVX2 kernels).

use gemm::Parallelism;

/// A read-only strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// Backing storage; every element of the view must lie inside it.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance (in elements) between consecutive rows.
    pub row_stride: usize,
    /// Distance (in elements) between consecutive columns.
    pub col_stride: usize,
}

/// A mutable strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
/// Distinct elements must map to distinct indices (checked by [`matmul`]).
#[derive(Debug)]
pub struct MatMut<'a> {
    /// Backing storage; every element of the view must lie inside it.
    pub data: &'a mut [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance (in elements) between consecutive rows.
    pub row_stride: usize,
    /// Distance (in elements) between consecutive columns.
    pub col_stride: usize,
}

/// One past the largest index the view can touch (0 for an empty view); `None` on overflow
/// or when the extent does not fit in `isize`.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    let e = (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)?;
    (e <= isize::MAX as usize && rs <= isize::MAX as usize && cs <= isize::MAX as usize)
        .then_some(e)
}

/// Whether `(i, j) -> i * rs + j * cs` is injective on `[0, rows) x [0, cols)`.
///
/// Sufficient condition used: with `(s1, e1)` the smaller stride and its extent and `s2` the
/// larger stride, `s1 >= 1` and `s2 > s1 * (e1 - 1)`. Two different index pairs then either
/// differ only in the small index (offsets differ by a nonzero multiple of `s1`) or differ in
/// the large index (offsets differ by at least `s2`, more than any small-index difference).
fn injective(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows <= 1 && cols <= 1 {
        return true;
    }
    if rows <= 1 {
        return cs >= 1;
    }
    if cols <= 1 {
        return rs >= 1;
    }
    let ((s1, e1), s2) = if rs <= cs {
        ((rs, rows), cs)
    } else {
        ((cs, cols), rs)
    };
    s1 >= 1 && s1.checked_mul(e1 - 1).is_some_and(|span| s2 > span)
}

/// `dst = lhs * rhs` (or `dst += lhs * rhs` when `accumulate`), all f32.
///
/// `threads <= 1` runs single-threaded (use this inside a parallel iterator); larger values let
/// gemm split the product over that many rayon threads of the current pool.
///
/// Panics when the shapes disagree, when any element of a view lies outside its slice, or when
/// two elements of `dst` share an index.
pub fn matmul(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool, threads: usize) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert_eq!(
        lhs.rows, m,
        "matmul: lhs has {} rows, dst has {m}",
        lhs.rows
    );
    assert_eq!(
        rhs.cols, n,
        "matmul: rhs has {} cols, dst has {n}",
        rhs.cols
    );
    assert_eq!(
        rhs.rows, k,
        "matmul: rhs has {} rows, lhs has {k} cols",
        rhs.rows
    );
    let ext = |r, c, rs, cs, len: usize, what: &str| {
        let e = extent(r, c, rs, cs)
            .unwrap_or_else(|| panic!("matmul: {what} view {r}x{c} strides ({rs},{cs}) overflows"));
        assert!(
            e <= len,
            "matmul: {what} view {r}x{c} strides ({rs},{cs}) needs {e} elements, slice has {len}"
        );
    };
    ext(m, n, dst.row_stride, dst.col_stride, dst.data.len(), "dst");
    ext(m, k, lhs.row_stride, lhs.col_stride, lhs.data.len(), "lhs");
    ext(k, n, rhs.row_stride, rhs.col_stride, rhs.data.len(), "rhs");
    assert!(
        injective(m, n, dst.row_stride, dst.col_stride),
        "matmul: dst strides ({}, {}) make elements of a {m}x{n} view alias",
        dst.row_stride,
        dst.col_stride
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.row_stride + j * dst.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    let par = if threads <= 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    };
    // SAFETY / invariant: m, n, k >= 1. Asserted above: for every i < m, j < n, l < k the
    // offsets i*dst_rs + j*dst_cs < dst.len(), i*lhs_rs + l*lhs_cs < lhs.len() and
    // l*rhs_rs + j*rhs_cs < rhs.len(), and all of them (and the strides) fit in isize, so every
    // element gemm reads or writes lies inside its slice. dst is an exclusive borrow (no alias
    // with lhs/rhs, which are shared borrows nobody can write meanwhile), and its (i, j) -> offset
    // map is injective, so gemm's worker threads never write the same element. All values are
    // initialised f32. gemm reads dst only when `accumulate` (read_dst) is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.col_stride as isize,
            dst.row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i + j * m] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_and_accumulates() {
        let (m, n, k) = (37, 11, 70);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0)
            .collect();
        let want = naive(m, n, k, &a, &b);
        let mut c = vec![f32::NAN; m * n];
        let lhs = MatRef {
            data: &a,
            rows: m,
            cols: k,
            row_stride: k,
            col_stride: 1,
        };
        let rhs = MatRef {
            data: &b,
            rows: k,
            cols: n,
            row_stride: n,
            col_stride: 1,
        };
        matmul(
            MatMut {
                data: &mut c,
                rows: m,
                cols: n,
                row_stride: 1,
                col_stride: m,
            },
            lhs,
            rhs,
            false,
            1,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4);
        }
        matmul(
            MatMut {
                data: &mut c,
                rows: m,
                cols: n,
                row_stride: 1,
                col_stride: m,
            },
            lhs,
            rhs,
            true,
            2,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-4);
        }
    }

    #[test]
    #[should_panic(expected = "needs")]
    fn matmul_rejects_short_slice() {
        let a = vec![0.0; 12];
        let b = vec![0.0; 12];
        let mut c = vec![0.0; 8];
        let lhs = MatRef {
            data: &a,
            rows: 3,
            cols: 4,
            row_stride: 4,
            col_stride: 1,
        };
        let rhs = MatRef {
            data: &b,
            rows: 4,
            cols: 3,
            row_stride: 3,
            col_stride: 1,
        };
        matmul(
            MatMut {
                data: &mut c,
                rows: 3,
                cols: 3,
                row_stride: 1,
                col_stride: 3,
            },
            lhs,
            rhs,
            false,
            1,
        );
    }

    #[test]
    #[should_panic(expected = "alias")]
    fn matmul_rejects_aliasing_dst() {
        let a = vec![0.0; 12];
        let b = vec![0.0; 12];
        let mut c = vec![0.0; 9];
        let lhs = MatRef {
            data: &a,
            rows: 3,
            cols: 4,
            row_stride: 4,
            col_stride: 1,
        };
        let rhs = MatRef {
            data: &b,
            rows: 4,
            cols: 3,
            row_stride: 3,
            col_stride: 1,
        };
        matmul(
            MatMut {
                data: &mut c,
                rows: 3,
                cols: 3,
                row_stride: 1,
                col_stride: 2,
            },
            lhs,
            rhs,
            false,
            1,
        );
    }

    #[test]
    fn injectivity_rule() {
        assert!(injective(4, 3, 1, 4));
        assert!(injective(4, 3, 3, 1));
        assert!(!injective(4, 3, 1, 3));
        assert!(!injective(2, 2, 0, 1));
        assert!(injective(1, 5, 0, 1));
    }
}
