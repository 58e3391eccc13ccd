//! 2-D max pooling over NCHW planes (f32, dilation 1, floor output size, symmetric zero-free
//! padding: padded positions never win), forward and input gradient, in safe code.
//!
//! Tie rule, as Burn's flex and PyTorch's CPU kernels: in each window, scanned row by row, the
//! first maximum wins, and a NaN always wins (so NaN propagates, with the index of the window's
//! last NaN). The backward recomputes each window's winner from the input instead of storing
//! an index tensor (Burn keeps an i64 index per output: twice the output's size).

use rayon::prelude::*;

/// A pooling's geometry on one plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// Input height and width.
    pub size: [usize; 2],
    /// Window `[KH, KW]` (each ≥ 1).
    pub kernel: [usize; 2],
    /// Stride `[SH, SW]` (each ≥ 1).
    pub stride: [usize; 2],
    /// Padding on each side `[PH, PW]` (each < the window, as Burn requires).
    pub padding: [usize; 2],
}

impl PoolShape {
    /// Output height and width: `⌊(H + 2P − K) / S⌋ + 1`, or 0 where the window does not fit.
    pub fn out_size(&self) -> [usize; 2] {
        core::array::from_fn(|i| {
            let span = self.size[i] + 2 * self.padding[i];
            if span < self.kernel[i] {
                0
            } else {
                (span - self.kernel[i]) / self.stride[i] + 1
            }
        })
    }

    /// The input rows (or columns, `axis` 1) that window `o` covers, clipped to the input.
    fn span(&self, axis: usize, o: usize) -> (usize, usize) {
        let start = (o * self.stride[axis]) as isize - self.padding[axis] as isize;
        let end = start + self.kernel[axis] as isize;
        (
            start.max(0) as usize,
            (end.max(0) as usize).min(self.size[axis]),
        )
    }
}

/// `true` if `v` replaces `best` as the window's winner (first maximum, NaN wins).
#[inline(always)]
fn wins(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

/// The flat index (within the plane) of each window's winner, in output order, via `visit`.
#[inline(always)]
fn winners(shape: &PoolShape, plane: &[f32], mut visit: impl FnMut(usize, usize, f32)) {
    let [oh, ow] = shape.out_size();
    let w = shape.size[1];
    // Each output column's clipped input columns, the same for every row.
    let cols: Vec<(usize, usize)> = (0..ow).map(|c| shape.span(1, c)).collect();
    for r in 0..oh {
        let (r0, r1) = shape.span(0, r);
        let rows = &plane[r0 * w..r1 * w];
        for (c, &(c0, c1)) in cols.iter().enumerate() {
            let mut at = r0 * w + c0;
            let mut best = plane[at];
            for (i, row) in rows.chunks_exact(w).enumerate() {
                for (j, &v) in row[c0..c1].iter().enumerate() {
                    if wins(v, best) {
                        (at, best) = ((r0 + i) * w + c0 + j, v);
                    }
                }
            }
            visit(r * ow + c, at, best);
        }
    }
}

fn check(shape: &PoolShape, x_len: usize) -> (usize, usize) {
    let [h, w] = shape.size;
    for i in 0..2 {
        assert!(shape.kernel[i] >= 1 && shape.stride[i] >= 1, "{shape:?}");
        assert!(
            shape.padding[i] < shape.kernel[i],
            "padding ≥ window: {shape:?}"
        );
    }
    let hw = h * w;
    assert!(
        hw > 0 && x_len.is_multiple_of(hw),
        "{x_len} values for {shape:?}"
    );
    let [oh, ow] = shape.out_size();
    (x_len / hw, oh * ow)
}

/// Max pooling of every `[H, W]` plane of `x` (planes in order), parallel over planes.
/// Returns the `[OH, OW]` planes, in the same order.
pub fn max_pool2d_forward(x: &[f32], shape: &PoolShape) -> Vec<f32> {
    let (planes, ohw) = check(shape, x.len());
    let hw = shape.size[0] * shape.size[1];
    let mut out = vec![0f32; planes * ohw];
    if ohw == 0 {
        return out;
    }
    if is_2x2(shape) {
        let [_, w] = shape.size;
        let ow = shape.out_size()[1];
        out.par_chunks_mut(ohw)
            .zip(x.par_chunks(hw))
            .for_each(|(o, plane)| {
                for (r, row) in o.chunks_exact_mut(ow).enumerate() {
                    let top = &plane[2 * r * w..][..2 * ow];
                    let bottom = &plane[(2 * r + 1) * w..][..2 * ow];
                    for ((o, t), b) in row
                        .iter_mut()
                        .zip(top.chunks_exact(2))
                        .zip(bottom.chunks_exact(2))
                    {
                        *o = pick(pick(pick(t[0], t[1]), b[0]), b[1]);
                    }
                }
            });
        return out;
    }
    out.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .for_each(|(o, plane)| winners(shape, plane, |k, _, v| o[k] = v));
    out
}

/// The backbones' 2×2 pooling with stride 2 and no padding.
fn is_2x2(shape: &PoolShape) -> bool {
    shape.kernel == [2, 2] && shape.stride == [2, 2] && shape.padding == [0, 0]
}

/// The winner of `best` (earlier in the window) and `v` by [`wins`].
#[inline(always)]
fn pick(best: f32, v: f32) -> f32 {
    if wins(v, best) { v } else { best }
}

/// The input gradient of [`max_pool2d_forward`]: each output's gradient goes to its window's
/// winner (summed where windows overlap, in output order). `dy` holds the output planes.
pub fn max_pool2d_backward(x: &[f32], dy: &[f32], shape: &PoolShape) -> Vec<f32> {
    let (planes, ohw) = check(shape, x.len());
    assert_eq!(dy.len(), planes * ohw, "output gradient for {shape:?}");
    let hw = shape.size[0] * shape.size[1];
    let mut dx = vec![0f32; x.len()];
    if ohw == 0 {
        return dx;
    }
    if is_2x2(shape) {
        // Windows do not overlap: each covered input gets its window's gradient or 0, written
        // once (rows and columns past the last window stay 0).
        let [_, w] = shape.size;
        let ow = shape.out_size()[1];
        dx.par_chunks_mut(hw)
            .zip(x.par_chunks(hw).zip(dy.par_chunks(ohw)))
            .for_each(|(d, (plane, g))| {
                for (r, g) in g.chunks_exact(ow).enumerate() {
                    let t = &plane[2 * r * w..][..2 * ow];
                    let b = &plane[(2 * r + 1) * w..][..2 * ow];
                    let (dt, db) = d[2 * r * w..].split_at_mut(w);
                    let (dt, db) = (&mut dt[..2 * ow], &mut db[..2 * ow]);
                    let windows = t.chunks_exact(2).zip(b.chunks_exact(2));
                    let grads = dt.chunks_exact_mut(2).zip(db.chunks_exact_mut(2));
                    for (((t, b), (dt, db)), &gc) in windows.zip(grads).zip(g) {
                        let (mut at, mut best) = (0u8, t[0]);
                        if wins(t[1], best) {
                            (at, best) = (1, t[1]);
                        }
                        if wins(b[0], best) {
                            (at, best) = (2, b[0]);
                        }
                        if wins(b[1], best) {
                            at = 3;
                        }
                        dt[0] = if at == 0 { gc } else { 0.0 };
                        dt[1] = if at == 1 { gc } else { 0.0 };
                        db[0] = if at == 2 { gc } else { 0.0 };
                        db[1] = if at == 3 { gc } else { 0.0 };
                    }
                }
            });
        return dx;
    }
    dx.par_chunks_mut(hw)
        .zip(x.par_chunks(hw).zip(dy.par_chunks(ohw)))
        .for_each(|(d, (plane, g))| winners(shape, plane, |k, at, _| d[at] += g[k]));
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, directly: every window position, padding skipped, scan order.
    fn brute(x: &[f32], dy: &[f32], s: &PoolShape) -> (Vec<f32>, Vec<f32>) {
        let [h, w] = s.size;
        let [oh, ow] = s.out_size();
        let planes = x.len() / (h * w);
        let (mut out, mut dx) = (Vec::new(), vec![0f32; x.len()]);
        for p in 0..planes {
            for r in 0..oh {
                for c in 0..ow {
                    let mut best: Option<(usize, f32)> = None;
                    for i in 0..s.kernel[0] {
                        for j in 0..s.kernel[1] {
                            let y = (r * s.stride[0] + i) as isize - s.padding[0] as isize;
                            let z = (c * s.stride[1] + j) as isize - s.padding[1] as isize;
                            if y < 0 || z < 0 || y as usize >= h || z as usize >= w {
                                continue;
                            }
                            let at = p * h * w + y as usize * w + z as usize;
                            let v = x[at];
                            if best.is_none_or(|(_, b)| v > b || v.is_nan()) {
                                best = Some((at, v));
                            }
                        }
                    }
                    let (at, v) = best.unwrap();
                    out.push(v);
                    dx[at] += dy[(p * oh + r) * ow + c];
                }
            }
        }
        (out, dx)
    }

    #[test]
    fn matches_the_definition_with_ties_and_nans() {
        let shapes = [
            ([28, 28], [2, 2], [2, 2], [0, 0]),
            ([7, 9], [2, 2], [2, 2], [0, 0]),
            ([1, 1], [1, 1], [1, 1], [0, 0]),
            ([2, 3], [2, 2], [2, 2], [0, 0]),
            ([9, 8], [3, 3], [2, 2], [1, 1]),
            ([1, 1], [3, 3], [2, 2], [1, 1]),
            ([5, 6], [3, 2], [1, 2], [1, 0]),
            ([4, 4], [3, 3], [1, 1], [1, 1]),
        ];
        for (case, (size, kernel, stride, padding)) in shapes.into_iter().enumerate() {
            let s = PoolShape {
                size,
                kernel,
                stride,
                padding,
            };
            let n = 3 * size[0] * size[1];
            // Few distinct values: many ties; a NaN in some cases; all negative in one plane.
            let mut x: Vec<f32> = (0..n)
                .map(|i| ((i * 7 + case) % 5) as f32 - if i < n / 3 { 9.0 } else { 0.0 })
                .collect();
            if case % 2 == 1 {
                x[n / 2] = f32::NAN;
            }
            let [oh, ow] = s.out_size();
            let dy: Vec<f32> = (0..3 * oh * ow).map(|i| i as f32 * 0.5 + 1.0).collect();
            let (want, want_dx) = brute(&x, &dy, &s);
            let got = max_pool2d_forward(&x, &s);
            assert_eq!(got.len(), want.len(), "{s:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g == w || (g.is_nan() && w.is_nan()), "{s:?}: {g} vs {w}");
            }
            assert_eq!(max_pool2d_backward(&x, &dy, &s), want_dx, "{s:?}");
        }
    }

    #[test]
    fn output_size_is_burns() {
        let s = |size, kernel, stride, padding| PoolShape {
            size,
            kernel,
            stride,
            padding,
        };
        assert_eq!(s([28, 28], [2, 2], [2, 2], [0, 0]).out_size(), [14, 14]);
        assert_eq!(s([7, 7], [2, 2], [2, 2], [0, 0]).out_size(), [3, 3]);
        assert_eq!(s([112, 112], [3, 3], [2, 2], [1, 1]).out_size(), [56, 56]);
        assert_eq!(s([1, 1], [2, 2], [2, 2], [0, 0]).out_size(), [0, 0]);
        assert_eq!(s([5, 1], [3, 3], [2, 1], [1, 1]).out_size(), [3, 1]);
    }
}
