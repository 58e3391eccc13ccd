//! The two backward convolution engines on a [`Geom`], input gradient and weight (and bias)
//! gradient (safe code; GEMMs via [`crate::matmul`]); the forward engine is in [`crate::conv`].

use crate::conv::{forward, min_chunks};
use crate::direct::{self, ConvAlgo};
use crate::im2col::{
    Chunk, Geom, channel_pieces, choose_tile, col2im, im2col, plan_pixels, split_even, with_scratch,
};
use crate::matmul::{MatMut, MatRef, matmul};
use rayon::prelude::*;

/// `dst[c * rows + r] = src[r * cols + c]` for a row-major `[rows, cols]` `src`, in 16x16 tiles.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 16;
    assert!(src.len() == rows * cols && dst.len() == rows * cols);
    for r0 in (0..rows).step_by(T) {
        let nr = T.min(rows - r0);
        for c0 in (0..cols).step_by(T) {
            let nc = T.min(cols - c0);
            let mut tile = [[0.0f32; T]; T];
            for (i, t) in tile[..nr].iter_mut().enumerate() {
                let s = &src[(r0 + i) * cols + c0..][..nc];
                match <&[f32; T]>::try_from(s) {
                    Ok(full) => *t = *full, // fixed-size copy: inlined vector moves, no memcpy call
                    Err(_) => t[..nc].copy_from_slice(s),
                }
            }
            for j in 0..nc {
                let d = &mut dst[(c0 + j) * rows + r0..][..nr];
                for (i, v) in d.iter_mut().enumerate() {
                    *v = tile[i][j];
                }
            }
        }
    }
}

/// `d[i] = s[len - 1 - i]`, with fixed-size fast paths for the common kernel sizes (the
/// generic loop costs more than the copy for 9-element runs).
#[inline]
fn reverse_into(d: &mut [f32], s: &[f32]) {
    fn fixed<const K: usize>(d: &mut [f32], s: &[f32]) {
        let mut r: [f32; K] = s.try_into().unwrap();
        r.reverse();
        d.copy_from_slice(&r);
    }
    match s.len() {
        1 => d[0] = s[0],
        4 => fixed::<4>(d, s),
        9 => fixed::<9>(d, s),
        25 => fixed::<25>(d, s),
        49 => fixed::<49>(d, s),
        _ => d.iter_mut().zip(s.iter().rev()).for_each(|(d, s)| *d = *s),
    }
}

/// Sum with 16 independent lanes (vectorisable, no bounds checks in the loop).
pub(crate) fn sum_f32(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut it = v.chunks_exact(16);
    for c in &mut it {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += *x;
        }
    }
    acc.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
}

/// Copies dy of a multi-image chunk into `dst` as `[Cout, P]` (pixels contiguous).
fn gather_dy(g: &Geom, dy: &[f32], ch: Chunk, dst: &mut [f32]) {
    let (ohw, p) = (g.ohw(), ch.cols(g.ow));
    let nr = ch.r1 - ch.r0;
    for co in 0..g.cout {
        for (i, img) in (ch.n0..ch.n1).enumerate() {
            let src = &dy[(img * g.cout + co) * ohw + ch.r0 * g.ow..][..nr * g.ow];
            dst[co * p + i * nr * g.ow..][..nr * g.ow].copy_from_slice(src);
        }
    }
}

/// dy of chunk `ch` as the matrix `[P, Cout]` (straight from dy when the chunk is one image,
/// else gathered into `buf`).
fn dy_view<'a>(g: &Geom, dy: &'a [f32], ch: Chunk, buf: &'a mut [f32]) -> MatRef<'a> {
    let p = ch.cols(g.ow);
    if ch.images() == 1 {
        let off = ch.n0 * g.cout * g.ohw() + ch.r0 * g.ow;
        MatRef {
            data: &dy[off..],
            rows: p,
            cols: g.cout,
            row_stride: 1,
            col_stride: g.ohw(),
        }
    } else {
        let b = &mut buf[..g.cout * p];
        gather_dy(g, dy, ch, b);
        MatRef {
            data: b,
            rows: p,
            cols: g.cout,
            row_stride: 1,
            col_stride: p,
        }
    }
}

/// Input gradient: `dx` (`[N, Cin, H, W]`, overwritten) from `dy` (`[N, Cout, OH, OW]`).
pub(crate) fn backward_input(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    if dx.is_empty() {
        return;
    }
    if dy.is_empty() {
        dx.fill(0.0);
        return;
    }
    let kk = g.kk();
    // Stride 1: the flipped forward convolution copies the weights (Cin*Cout*KH*KW) and builds
    // an im2col of dy (Cout*KH*KW rows), with a GEMM of n = Cin; the col2im route reads W in
    // place, the GEMM (n = Cin*KH*KW) writes Cin*KH*KW rows and col2im adds them into dx.
    // Estimated memory traffic decides (col2im wins for Cout >= 2*Cin, and for few pixels
    // with many channels, e.g. batch 1 at 7x7); few input channels also favour col2im (the
    // flipped GEMM would have n < 6: measured 4x slower for Cin = 1). col2im parallelises
    // over images and channel blocks only, so it also needs enough of those.
    let threads = rayon::current_num_threads();
    let pixels = (g.n * g.ohw()) as f64;
    let (cin, cout, kkf) = (g.cin as f64, g.cout as f64, kk as f64);
    let flip_traffic = 2.0 * cin * cout * kkf + 2.0 * cout * kkf * pixels;
    let col2im_traffic = 4.0 * cin * kkf * pixels;
    let col2im_better = g.cin < 6 || col2im_traffic < flip_traffic;
    let col2im_parallel = g.n >= threads || g.cin >= threads;
    let gf = Geom {
        n: g.n,
        cin: g.cout,
        cout: g.cin,
        h: g.oh,
        w: g.ow,
        kh: g.kh,
        kw: g.kw,
        sh: 1,
        sw: 1,
        ph: g.kh as isize - 1 - g.ph,
        pw: g.kw as isize - 1 - g.pw,
        oh: g.h,
        ow: g.w,
    };
    // The direct kernels read dy in place (no im2col): always better than col2im.
    let flip_direct = g.sh == 1 && g.sw == 1 && ConvAlgo::choose(&gf) == ConvAlgo::Direct;
    if flip_direct || (g.sh == 1 && g.sw == 1 && !(col2im_better && col2im_parallel)) {
        // dx = conv(dy, W') with W'[ci, co, kh, kw] = W[co, ci, KH-1-kh, KW-1-kw], stride 1,
        // padding K-1-p (negative padding crops): no scatter-add.
        let mut wf = vec![0f32; w.len()];
        wf.par_chunks_mut(g.cout * kk)
            .with_min_len(16)
            .enumerate()
            .for_each(|(ci, dst)| {
                for (co, d) in dst.chunks_exact_mut(kk).enumerate() {
                    reverse_into(d, &w[(co * g.cin + ci) * kk..][..kk]);
                }
            });
        forward(&gf, dy, &wf, None, dx);
        return;
    }
    backward_input_col2im(g, dy, w, dx);
}

/// Input gradient by col2im (any stride): per chunk `cols = dy_chunk * W_block` (GEMM m = pixels,
/// n = block*KH*KW, k = Cout), then col2im into dx. A task owns (image group, channel block),
/// whose dx region no other task touches; its pixel tiles run in order.
fn backward_input_col2im(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (kk, kdim, hw) = (g.kk(), g.kdim(), g.hw());
    let threads = rayon::current_num_threads();
    let (target, cb) = choose_tile(g.cin, kk, g.cout, g.ohw());
    let tiles = plan_pixels(g.n, g.oh, g.ow, target, 1);
    // groups of tiles: all row tiles of one image, or one multi-image tile
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, t) in tiles.iter().enumerate() {
        match groups.last_mut() {
            Some((_, e))
                if t.images() == 1 && tiles[i - 1].images() == 1 && tiles[i - 1].n0 == t.n0 =>
            {
                *e = i + 1
            }
            _ => groups.push((i, i + 1)),
        }
    }
    let mut nblocks = g.cin.div_ceil(cb);
    let want = min_chunks(threads);
    if groups.len() * nblocks < want {
        nblocks = nblocks.max(want.div_ceil(groups.len())).min(g.cin);
    }
    let blocks = split_even(g.cin, nblocks);
    // dx regions: per (image group, channel block)
    let image_groups: Vec<(usize, usize)> = groups
        .iter()
        .map(|&(t0, t1)| (tiles[t0].n0, tiles[t1 - 1].n1))
        .collect();
    let regions = channel_pieces(dx, g.cin * hw, hw, &image_groups, &blocks);
    let tasks: Vec<_> = groups
        .iter()
        .flat_map(|&(t0, t1)| {
            let tl = &tiles[t0..t1];
            blocks.iter().map(move |&(c0, c1)| (tl, c0, c1))
        })
        .zip(regions)
        .map(|((tl, c0, c1), pieces)| (tl, c0, c1, pieces))
        .collect();
    tasks
        .into_par_iter()
        .with_max_len(1)
        .for_each(|(tl, c0, c1, mut pieces)| {
            for p in pieces.iter_mut() {
                p.fill(0.0);
            }
            let mb = (c1 - c0) * kk;
            let pmax = tl.iter().map(|t| t.cols(g.ow)).max().unwrap_or(0);
            let need_b = if tl[0].images() > 1 { g.cout * pmax } else { 0 };
            with_scratch(mb * pmax, need_b, |sa, sb| {
                for &t in tl {
                    let p = t.cols(g.ow);
                    let lhs = dy_view(g, dy, t, sb);
                    let rhs = MatRef {
                        data: &w[c0 * kk..],
                        rows: g.cout,
                        cols: mb,
                        row_stride: kdim,
                        col_stride: 1,
                    };
                    let cols = &mut sa[..mb * p];
                    matmul(
                        MatMut {
                            data: cols,
                            rows: p,
                            cols: mb,
                            row_stride: 1,
                            col_stride: p,
                        },
                        lhs,
                        rhs,
                        false,
                        1,
                    );
                    col2im(g, cols, t, c0, c1, &mut pieces);
                }
            });
        });
}

/// Weight (and bias) gradient. Work = (input-channel block) x (group of pixel chunks); each
/// task accumulates its chunks in order into its own partial `[block*KH*KW, Cout]`; the
/// partials are then summed in a fixed order, so the result does not depend on scheduling.
pub(crate) fn backward_weight(
    g: &Geom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (kk, kdim, hw, ohw) = (g.kk(), g.kdim(), g.hw(), g.ohw());
    if g.n * ohw == 0 || g.cout == 0 {
        dw.fill(0.0);
        if let Some(db) = db {
            db.fill(0.0);
        }
        return;
    }
    if kdim == 0 {
        if let Some(db) = db {
            for (co, d) in db.iter_mut().enumerate() {
                *d = (0..g.n)
                    .map(|n| {
                        dy[(n * g.cout + co) * ohw..][..ohw]
                            .iter()
                            .map(|&v| v as f64)
                            .sum::<f64>()
                    })
                    .sum::<f64>() as f32;
            }
        }
        return;
    }
    if ConvAlgo::choose(g) == ConvAlgo::Direct {
        direct::backward_weight(g, x, dy, dw, db);
        return;
    }
    let threads = rayon::current_num_threads();
    let (target, cb) = choose_tile(g.cin, kk, g.cout, g.ohw());
    let mut nblocks = g.cin.div_ceil(cb);
    if nblocks > 1 {
        nblocks = nblocks.div_ceil(threads).saturating_mul(threads).min(g.cin);
    }
    let blocks = split_even(g.cin, nblocks);
    let nblocks = blocks.len();
    // Aim for ~4 tasks per thread so rayon can balance a busy core, as long as the extra
    // partials stay small (<= 16 MiB in all); with one thread a single group suffices.
    let ngroups_want = if threads == 1 || nblocks >= 4 * threads {
        1
    } else {
        let budget = (4 << 20) / (kdim * g.cout).max(1);
        (4 * threads)
            .div_ceil(nblocks)
            .min(budget)
            .max(threads.div_ceil(nblocks))
    };
    let chunks = plan_pixels(
        g.n,
        g.oh,
        g.ow,
        target,
        if ngroups_want > 1 {
            2 * ngroups_want
        } else {
            1
        },
    );
    let groups = split_even(chunks.len(), ngroups_want);
    let ng = groups.len();
    let want_db = db.is_some();
    let mut partials: Vec<Vec<f32>> = (0..nblocks * ng)
        .map(|t| vec![0f32; (blocks[t / ng].1 - blocks[t / ng].0) * kk * g.cout])
        .collect();
    let mut db_parts: Vec<Vec<f64>> = (0..if want_db { ng } else { 0 })
        .map(|_| vec![0.0; g.cout])
        .collect();
    let mut db_iter = db_parts.iter_mut();
    let tasks: Vec<_> = partials
        .iter_mut()
        .enumerate()
        .map(|(t, part)| {
            let (b, gi) = (t / ng, t % ng);
            let dbp = if b == 0 { db_iter.next() } else { None };
            (blocks[b], groups[gi], part, dbp)
        })
        .collect();
    tasks
        .into_par_iter()
        .with_max_len(1)
        .for_each(|((c0, c1), (g0, g1), part, mut dbp)| {
            let mb = (c1 - c0) * kk;
            let transposed = mb >= g.cout;
            let chs = &chunks[g0..g1];
            let pmax = chs.iter().map(|c| c.cols(g.ow)).max().unwrap_or(0);
            let need_a = if g.is_direct() && chs.iter().all(|c| c.images() == 1) {
                0
            } else {
                mb * pmax
            };
            let need_b = if chs.iter().any(|c| c.images() > 1) {
                g.cout * pmax
            } else {
                0
            };
            with_scratch(need_a, need_b, |sa, sb| {
                for (idx, &ch) in chs.iter().enumerate() {
                    let p = ch.cols(g.ow);
                    // cols: the chunk's im2col [mb, P] (row stride in row_stride, pixels contiguous)
                    let cols = if g.is_direct() && ch.images() == 1 {
                        let off = (ch.n0 * g.cin + c0) * hw + ch.r0 * g.w;
                        MatRef {
                            data: &x[off..],
                            rows: c1 - c0,
                            cols: p,
                            row_stride: hw,
                            col_stride: 1,
                        }
                    } else {
                        let a = &mut sa[..mb * p];
                        im2col(g, x, ch, c0, c1, a);
                        MatRef {
                            data: a,
                            rows: mb,
                            cols: p,
                            row_stride: p,
                            col_stride: 1,
                        }
                    };
                    let dyv = dy_view(g, dy, ch, sb);
                    if let Some(dbp) = dbp.as_deref_mut() {
                        for (co, acc) in dbp.iter_mut().enumerate() {
                            *acc += sum_f32(&dyv.data[co * dyv.col_stride..][..p]) as f64;
                        }
                    }
                    if transposed {
                        // partial[mb, Cout] (+)= cols[mb, P] · dy[Cout, P]ᵀ with m = Cout: gemm
                        // packs the small dy tile instead of transposing the whole im2col.
                        let lhs_dy = MatRef {
                            data: dyv.data,
                            rows: g.cout,
                            cols: p,
                            row_stride: dyv.col_stride,
                            col_stride: 1,
                        };
                        let rhs_cols = MatRef {
                            data: cols.data,
                            rows: p,
                            cols: mb,
                            row_stride: cols.col_stride,
                            col_stride: cols.row_stride,
                        };
                        let dst = MatMut {
                            data: part,
                            rows: g.cout,
                            cols: mb,
                            row_stride: 1,
                            col_stride: g.cout,
                        };
                        matmul(dst, lhs_dy, rhs_cols, idx > 0, 1);
                    } else {
                        // few im2col rows (mb < Cout): m = mb, straight into the [Cout, mb] layout
                        let dst = MatMut {
                            data: part,
                            rows: mb,
                            cols: g.cout,
                            row_stride: 1,
                            col_stride: mb,
                        };
                        matmul(dst, cols, dyv, idx > 0, 1);
                    }
                }
            });
            if transposed {
                // to [Cout, mb] while the partial is still hot in this core's cache
                let mut t = vec![0f32; part.len()];
                transpose(part, mb, g.cout, &mut t);
                std::mem::swap(part, &mut t);
            }
        });
    // reduce the [Cout, mb] partials in fixed (block, group) order into W's own
    // [Cout, Cin*KH*KW] layout
    dw.par_chunks_mut(kdim).enumerate().for_each(|(co, row)| {
        for (b, &(c0, c1)) in blocks.iter().enumerate() {
            let mb = (c1 - c0) * kk;
            let d = &mut row[c0 * kk..c1 * kk];
            d.copy_from_slice(&partials[b * ng][co * mb..][..mb]);
            for gi in 1..ng {
                for (d, s) in d.iter_mut().zip(&partials[b * ng + gi][co * mb..][..mb]) {
                    *d += *s;
                }
            }
        }
    });
    if let Some(db) = db {
        for (co, d) in db.iter_mut().enumerate() {
            *d = db_parts.iter().map(|v| v[co]).sum::<f64>() as f32;
        }
    }
}
