//! The forward convolution engine on a [`Geom`] (safe code; GEMMs via [`crate::matmul`]); the
//! two backward engines are in [`crate::conv_backward`].

use crate::direct::{self, ConvAlgo};
use crate::im2col::{Chunk, Geom, choose_tile, im2col, plan_pixels, split_even, with_scratch};
use crate::matmul::{MatMut, MatRef, matmul};
use rayon::prelude::*;

/// Where a forward chunk's output goes.
enum OutTarget<'a> {
    /// One whole image `[Cout, OH*OW]`: the GEMM writes it directly.
    Image(&'a mut [f32]),
    /// Several whole images: GEMM into scratch, then copy.
    Images(&'a mut [f32]),
    /// Rows `r0..r1` of each output plane of one image (one slice per output channel).
    Rows(Vec<&'a mut [f32]>),
}

/// Cuts `out` (`[N, Cout, OH, OW]`) into the disjoint regions of `chunks` (ordered by image,
/// then row, as `plan_pixels` makes them).
fn out_targets<'a>(g: &Geom, chunks: &[Chunk], out: &'a mut [f32]) -> Vec<(Chunk, OutTarget<'a>)> {
    let ohw = g.ohw();
    let per_img = g.cout * ohw;
    let mut tasks = Vec::with_capacity(chunks.len());
    let mut rest = out;
    let mut i = 0;
    while i < chunks.len() {
        let ch = chunks[i];
        if ch.images() > 1 || (ch.r0 == 0 && ch.r1 == g.oh) {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(ch.images() * per_img);
            rest = tail;
            let t = if ch.images() == 1 {
                OutTarget::Image(head)
            } else {
                OutTarget::Images(head)
            };
            tasks.push((ch, t));
            i += 1;
        } else {
            let j = i + chunks[i..].iter().take_while(|c| c.n0 == ch.n0).count();
            let (img, tail) = std::mem::take(&mut rest).split_at_mut(per_img);
            rest = tail;
            let mut lists: Vec<Vec<&mut [f32]>> =
                (i..j).map(|_| Vec::with_capacity(g.cout)).collect();
            for plane in img.chunks_mut(ohw) {
                let mut p = plane;
                for (l, c) in lists.iter_mut().zip(&chunks[i..j]) {
                    let (a, b) = std::mem::take(&mut p).split_at_mut((c.r1 - c.r0) * g.ow);
                    p = b;
                    l.push(a);
                }
            }
            tasks.extend(
                chunks[i..j]
                    .iter()
                    .copied()
                    .zip(lists.into_iter().map(OutTarget::Rows)),
            );
            i = j;
        }
    }
    tasks
}

pub(crate) fn min_chunks(threads: usize) -> usize {
    if threads > 1 { 2 * threads } else { 1 }
}

/// `out = bias + conv(x, w)` for a geometry with signed padding. `w` is `[Cout, Cin*KH*KW]`.
pub(crate) fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    if g.kdim() == 0 {
        for (plane, co) in out.chunks_mut(g.ohw()).zip((0..g.cout).cycle()) {
            plane.fill(bias.map_or(0.0, |b| b[co]));
        }
        return;
    }
    if ConvAlgo::choose(g) == ConvAlgo::Direct {
        direct::forward(g, x, w, bias, out);
        return;
    }
    let threads = rayon::current_num_threads();
    let (target, cb) = choose_tile(g.cin, g.kk(), g.cout, g.ohw());
    let chunks = plan_pixels(g.n, g.oh, g.ow, target, min_chunks(threads));
    let blocks = split_even(g.cin, g.cin.div_ceil(cb));
    let tasks = out_targets(g, &chunks, out);
    if tasks.len() < threads && (g.n * g.ohw()) as f64 * (g.kdim() * g.cout) as f64 >= GEMM_PAR_WORK
    {
        // Too few pixels to split (e.g. batch 1 at 7x7): chunks in turn, each GEMM parallel
        // (no enclosing parallel iterator here).
        for (ch, t) in tasks {
            forward_chunk(g, x, w, bias, &blocks, ch, t, threads);
        }
    } else {
        tasks
            .into_par_iter()
            .with_max_len(1)
            .for_each(|(ch, t)| forward_chunk(g, x, w, bias, &blocks, ch, t, 1));
    }
}

/// Multiply-adds from which a lone GEMM is worth splitting over threads.
const GEMM_PAR_WORK: f64 = 4e6;

#[allow(clippy::too_many_arguments)]
fn forward_chunk(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    blocks: &[(usize, usize)],
    ch: Chunk,
    mut out: OutTarget<'_>,
    gemm_threads: usize,
) {
    let (kk, kdim, ohw, hw, cout) = (g.kk(), g.kdim(), g.ohw(), g.hw(), g.cout);
    let p = ch.cols(g.ow);
    let direct = g.is_direct() && ch.images() == 1;
    let max_mb = blocks.iter().map(|&(a, b)| (b - a) * kk).max().unwrap_or(0);
    let need_a = if direct { 0 } else { max_mb * p };
    let need_b = if matches!(out, OutTarget::Image(_)) {
        0
    } else {
        p * cout
    };
    with_scratch(need_a, need_b, |sa, sb| {
        if let (OutTarget::Image(img), Some(b)) = (&mut out, bias) {
            for (plane, &bv) in img.chunks_mut(ohw).zip(b) {
                plane.fill(bv);
            }
        }
        for (bi, &(c0, c1)) in blocks.iter().enumerate() {
            let mb = (c1 - c0) * kk;
            let lhs = if direct {
                let off = (ch.n0 * g.cin + c0) * hw + ch.r0 * g.w;
                MatRef {
                    data: &x[off..],
                    rows: p,
                    cols: c1 - c0,
                    row_stride: 1,
                    col_stride: hw,
                }
            } else {
                let a = &mut sa[..mb * p];
                im2col(g, x, ch, c0, c1, a);
                MatRef {
                    data: a,
                    rows: p,
                    cols: mb,
                    row_stride: 1,
                    col_stride: p,
                }
            };
            let rhs = MatRef {
                data: &w[c0 * kk..],
                rows: mb,
                cols: cout,
                row_stride: 1,
                col_stride: kdim,
            };
            match &mut out {
                OutTarget::Image(img) => {
                    let dst = MatMut {
                        data: img,
                        rows: p,
                        cols: cout,
                        row_stride: 1,
                        col_stride: ohw,
                    };
                    matmul(dst, lhs, rhs, bias.is_some() || bi > 0, gemm_threads);
                }
                _ => {
                    let dst = MatMut {
                        data: sb,
                        rows: p,
                        cols: cout,
                        row_stride: 1,
                        col_stride: p,
                    };
                    matmul(dst, lhs, rhs, bi > 0, gemm_threads);
                }
            }
        }
        let put = |d: &mut [f32], s: &[f32], co: usize| match bias {
            Some(b) => d.iter_mut().zip(s).for_each(|(d, s)| *d = s + b[co]),
            None => d.copy_from_slice(s),
        };
        match &mut out {
            OutTarget::Image(_) => {}
            OutTarget::Images(region) => {
                for (i, img) in region.chunks_mut(cout * ohw).enumerate() {
                    for (co, plane) in img.chunks_mut(ohw).enumerate() {
                        put(plane, &sb[co * p + i * ohw..][..ohw], co);
                    }
                }
            }
            OutTarget::Rows(list) => {
                for (co, d) in list.iter_mut().enumerate() {
                    put(d, &sb[co * p..][..p], co);
                }
            }
        }
    });
}
