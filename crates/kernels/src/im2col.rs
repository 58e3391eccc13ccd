//! Geometry, work planning, im2col / col2im and scratch buffers (all safe code).

use std::cell::RefCell;

/// Scratch budget per thread, in f32 elements (1 MiB).
pub(crate) const SCRATCH: usize = 1 << 18;
/// Preferred pixels per GEMM (m for forward / dX, k for dW) when the reduction dim is large.
const PREF_COLS: usize = 256;
/// Smallest pixel chunk we split down to for parallelism.
const MIN_COLS: usize = 64;
/// Largest pixel chunk.
const MAX_COLS: usize = 4096;

/// A convolution's geometry with signed padding (negative padding crops), dilation 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: isize,
    pub pw: isize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    pub fn kk(&self) -> usize {
        self.kh * self.kw
    }
    pub fn kdim(&self) -> usize {
        self.cin * self.kk()
    }
    pub fn hw(&self) -> usize {
        self.h * self.w
    }
    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    /// 1x1, stride 1, no padding: x of one image already is the `[Cin, pixels]` im2col.
    pub fn is_direct(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

/// Images `n0..n1`, output rows `r0..r1` of each (full rows when it spans several images).
/// Its pixel columns are ordered image-major, then row, then column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub n0: usize,
    pub n1: usize,
    pub r0: usize,
    pub r1: usize,
}

impl Chunk {
    pub fn images(&self) -> usize {
        self.n1 - self.n0
    }
    pub fn cols(&self, ow: usize) -> usize {
        self.images() * (self.r1 - self.r0) * ow
    }
}

/// `parts` contiguous, nearly equal ranges covering `0..len` (at least 1, at most `len`).
pub(crate) fn split_even(len: usize, parts: usize) -> Vec<(usize, usize)> {
    let parts = parts.clamp(1, len.max(1));
    (0..parts)
        .map(|i| (i * len / parts, (i + 1) * len / parts))
        .collect()
}

/// Pixel-chunk size and input-channel block for an im2col of `cin * kk` rows whose GEMM
/// produces `cout` columns: the im2col block stays within [`SCRATCH`]. With a short reduction
/// (`cin * kk < 64`) the GEMM is memory-bound, so chunks stop at one image (`ohw` pixels):
/// GEMMs then read and write the NCHW tensors in place instead of through copies.
pub(crate) fn choose_tile(cin: usize, kk: usize, cout: usize, ohw: usize) -> (usize, usize) {
    let kdim = (cin * kk).max(1);
    let (cols, cb) = if kdim * PREF_COLS <= SCRATCH {
        ((SCRATCH / kdim).min(MAX_COLS), cin)
    } else {
        (
            PREF_COLS,
            (SCRATCH / (kk.max(1) * PREF_COLS)).clamp(1, cin.max(1)),
        )
    };
    let cols = cols.min((SCRATCH / cout.max(1)).max(MIN_COLS));
    if kdim < 64 {
        (cols.min(ohw.max(MIN_COLS)), cb)
    } else {
        (cols, cb)
    }
}

/// Splits `n` images of `oh x ow` output pixels into chunks of about `target` pixels, and into
/// at least `min_chunks` chunks when that keeps chunks at >= MIN_COLS pixels.
pub(crate) fn plan_pixels(
    n: usize,
    oh: usize,
    ow: usize,
    target: usize,
    min_chunks: usize,
) -> Vec<Chunk> {
    let ohw = oh * ow;
    let total = n * ohw;
    if total == 0 {
        return Vec::new();
    }
    let mut t = target.max(1);
    if total.div_ceil(t) < min_chunks {
        t = total.div_ceil(min_chunks).max(MIN_COLS).min(t);
    }
    let mut chunks = Vec::new();
    if t >= ohw {
        let nb = (t / ohw).clamp(1, n);
        let nb = n.div_ceil(n.div_ceil(nb));
        let mut n0 = 0;
        while n0 < n {
            let n1 = (n0 + nb).min(n);
            chunks.push(Chunk {
                n0,
                n1,
                r0: 0,
                r1: oh,
            });
            n0 = n1;
        }
    } else {
        let rows = (t / ow).max(1);
        let rows = oh.div_ceil(oh.div_ceil(rows));
        for img in 0..n {
            let mut r0 = 0;
            while r0 < oh {
                let r1 = (r0 + rows).min(oh);
                chunks.push(Chunk {
                    n0: img,
                    n1: img + 1,
                    r0,
                    r1,
                });
                r0 = r1;
            }
        }
    }
    chunks
}

/// For kernel column `k`: output columns `lo..hi` read input column `o * s + start`, which lies
/// inside `0..w`; the others read padding.
fn col_range(w: usize, ow: usize, s: usize, p: isize, k: usize) -> (usize, usize, isize) {
    let start = k as isize - p;
    let lo = if start >= 0 {
        0
    } else {
        (start.unsigned_abs()).div_ceil(s)
    };
    let last = w as isize - 1 - start;
    let hi = if last < 0 { 0 } else { last as usize / s + 1 };
    let lo = lo.min(ow);
    (lo, hi.clamp(lo, ow), start)
}

/// Input row read by output row `o` for kernel row `k`, if inside the image.
#[inline]
fn in_row(o: usize, s: usize, k: usize, p: isize, h: usize) -> Option<usize> {
    let i = (o * s) as isize + k as isize - p;
    (i >= 0 && (i as usize) < h).then_some(i as usize)
}

/// im2col of input channels `c0..c1` of chunk `ch`: `dst` is `[(c1-c0)*KH*KW, P]` row-major
/// (row = (ci, kh, kw), column = pixel of the chunk). Every element is written.
pub(crate) fn im2col(g: &Geom, x: &[f32], ch: Chunk, c0: usize, c1: usize, dst: &mut [f32]) {
    let p = ch.cols(g.ow);
    let nr = ch.r1 - ch.r0;
    let (ow, w, hw) = (g.ow, g.w, g.hw());
    assert_eq!(dst.len(), (c1 - c0) * g.kk() * p);
    if p == 0 {
        return;
    }
    let ranges: Vec<_> = (0..g.kw).map(|k| col_range(w, ow, g.sw, g.pw, k)).collect();
    if g.sw > 1 && g.kw > g.sw {
        im2col_phased(g, x, ch, c0, c1, dst, &ranges);
        return;
    }
    // Stride 1 with output width == input width: a chunk's rows are one shifted run of the
    // input plane; copy it at once and zero the (few) padding columns afterwards.
    let same_w = g.sw == 1 && g.sh == 1 && ow == w;
    let mut rows = dst.chunks_exact_mut(p);
    for ci in c0..c1 {
        for kh in 0..g.kh {
            for &(lo, hi, start) in &ranges {
                let row = rows.next().expect("im2col row");
                for (i, img) in (ch.n0..ch.n1).enumerate() {
                    let plane = &x[(img * g.cin + ci) * hw..][..hw];
                    let seg_all = &mut row[i * nr * ow..][..nr * ow];
                    if same_w {
                        // output rows r0..r1 -> input rows r0 + kh - ph ..; valid row span:
                        // 0 <= o + kh - ph < h  <=>  ph - kh <= o < h + ph - kh
                        let shift = kh as isize - g.ph;
                        let ra = ((-shift).max(0) as usize).max(ch.r0);
                        let rb = ((g.h as isize - shift).max(0) as usize).min(ch.r1);
                        if ra >= rb {
                            seg_all.fill(0.0);
                            continue;
                        }
                        let (top, rest) = seg_all.split_at_mut((ra - ch.r0) * ow);
                        top.fill(0.0);
                        let (mid, bot) = rest.split_at_mut((rb - ra) * ow);
                        bot.fill(0.0);
                        // mid[j] = plane[ih0*w + j + start] for the columns that are valid
                        let base = (in_row(ra, 1, kh, g.ph, g.h).unwrap() * w) as isize + start;
                        let a = (-base).max(0) as usize; // skip leading elements before the plane
                        let b = ((hw as isize - base).max(0) as usize).min(mid.len());
                        if a < b {
                            mid[a..b]
                                .copy_from_slice(&plane[(base + a as isize) as usize..][..b - a]);
                        }
                        let ml = mid.len();
                        mid[..a.min(ml)].fill(0.0);
                        mid[b.max(a).min(ml)..].fill(0.0);
                        if lo > 0 || hi < ow {
                            for r in mid.chunks_exact_mut(ow) {
                                zero_short(&mut r[..lo]);
                                zero_short(&mut r[hi..]);
                            }
                        }
                        continue;
                    }
                    for (oh, seg) in (ch.r0..ch.r1).zip(seg_all.chunks_exact_mut(ow)) {
                        let Some(ih) = in_row(oh, g.sh, kh, g.ph, g.h) else {
                            seg.fill(0.0);
                            continue;
                        };
                        let src = &plane[ih * w..][..w];
                        zero_short(&mut seg[..lo]);
                        zero_short(&mut seg[hi..]);
                        if lo < hi {
                            let first = (lo as isize * g.sw as isize + start) as usize;
                            if g.sw == 1 {
                                copy_run(&mut seg[lo..hi], &src[first..first + hi - lo]);
                            } else {
                                for (d, s) in seg[lo..hi]
                                    .iter_mut()
                                    .zip(src[first..].iter().step_by(g.sw))
                                {
                                    *d = *s;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `d.copy_from_slice(s)` for the short runs of im2col: up to 32 elements are copied with
/// fixed-size (possibly overlapping) moves the compiler inlines, instead of a `memcpy` call.
#[inline]
fn copy_run(d: &mut [f32], s: &[f32]) {
    let n = d.len();
    assert_eq!(n, s.len());
    fn c8(d: &mut [f32], s: &[f32]) {
        let (d, s): (&mut [f32; 8], &[f32; 8]) = (d.try_into().unwrap(), s.try_into().unwrap());
        *d = *s;
    }
    fn c4(d: &mut [f32], s: &[f32]) {
        let (d, s): (&mut [f32; 4], &[f32; 4]) = (d.try_into().unwrap(), s.try_into().unwrap());
        *d = *s;
    }
    match n {
        0 => {}
        1..=3 => {
            d[0] = s[0];
            d[n / 2] = s[n / 2];
            d[n - 1] = s[n - 1];
        }
        4..=8 => {
            c4(&mut d[..4], &s[..4]);
            c4(&mut d[n - 4..], &s[n - 4..]);
        }
        9..=32 => {
            let mut i = 0;
            while i + 8 <= n {
                c8(&mut d[i..i + 8], &s[i..i + 8]);
                i += 8;
            }
            if i < n {
                c8(&mut d[n - 8..], &s[n - 8..]);
            }
        }
        _ => d.copy_from_slice(s),
    }
}

/// Zeroes a slice that is usually a few elements long without a `memset` call for those.
#[inline]
fn zero_short(s: &mut [f32]) {
    match s.len() {
        0 => {}
        1 => s[0] = 0.0,
        2 => s.copy_from_slice(&[0.0; 2]),
        3 => s.copy_from_slice(&[0.0; 3]),
        4 => s.copy_from_slice(&[0.0; 4]),
        _ => s.fill(0.0),
    }
}

/// Input rows `lo..hi` read by chunk `ch` (clipped to the image).
fn input_rows(g: &Geom, ch: Chunk) -> (usize, usize) {
    let lo = ((ch.r0 * g.sh) as isize - g.ph).max(0) as usize;
    let hi = ((((ch.r1 - 1) * g.sh + g.kh - 1) as isize - g.ph + 1).max(0) as usize).min(g.h);
    (lo, hi.max(lo))
}

/// Start of phase q (< s) inside a row of `w` elements split into its `s` phases.
fn phase_offsets(w: usize, s: usize) -> Vec<usize> {
    (0..s)
        .map(|q| (0..q).map(|q2| w.saturating_sub(q2).div_ceil(s)).sum())
        .collect()
}

/// col2im for column stride `s > 1` with kernels wider than the stride: accumulate into
/// phase-split rows (contiguous adds), then interleave each row back into dx once.
fn col2im_phased(
    g: &Geom,
    cols: &[f32],
    ch: Chunk,
    c0: usize,
    c1: usize,
    dx: &mut [&mut [f32]],
    ranges: &[(usize, usize, isize)],
) {
    let (s, w, hw, ow) = (g.sw, g.w, g.hw(), g.ow);
    let p = ch.cols(ow);
    let nr = ch.r1 - ch.r0;
    let (lo_row, hi_row) = input_rows(g, ch);
    let nrows = hi_row - lo_row;
    let phase_off = phase_offsets(w, s);
    let per_img = nrows * w;
    let mut buf = PHASE_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if buf.len() < ch.images() * per_img {
        buf.resize(ch.images() * per_img, 0.0);
    }
    let buf_all = &mut buf[..ch.images() * per_img];
    let mut rows = cols.chunks_exact(p);
    for cl in 0..c1 - c0 {
        buf_all.fill(0.0);
        for kh in 0..g.kh {
            for &(lo, hi, start) in ranges {
                let row = rows.next().expect("col2im row");
                if lo >= hi {
                    continue;
                }
                let q = start.rem_euclid(s as isize) as usize;
                let j0 = (lo as isize * s as isize + start) as usize / s;
                for i in 0..ch.images() {
                    for (oh, seg) in
                        (ch.r0..ch.r1).zip(row[i * nr * ow..][..nr * ow].chunks_exact(ow))
                    {
                        let Some(ih) = in_row(oh, g.sh, kh, g.ph, g.h) else {
                            continue;
                        };
                        let split = &mut buf_all[i * per_img + (ih - lo_row) * w..][..w];
                        for (d, v) in split[phase_off[q] + j0..][..hi - lo]
                            .iter_mut()
                            .zip(&seg[lo..hi])
                        {
                            *d += *v;
                        }
                    }
                }
            }
        }
        for (i, img) in dx.iter_mut().enumerate() {
            let plane = &mut img[cl * hw..][..hw];
            for r in 0..nrows {
                let split = &buf_all[i * per_img + r * w..][..w];
                let d = &mut plane[(lo_row + r) * w..][..w];
                for q in 0..s.min(w) {
                    for (dv, sv) in d[q..].iter_mut().step_by(s).zip(&split[phase_off[q]..]) {
                        *dv += *sv;
                    }
                }
            }
        }
    }
    PHASE_BUF.with(|b| *b.borrow_mut() = buf);
}

/// Cuts an NCHW buffer (images of `per_image` floats, channel planes of `plane`) into the
/// disjoint pieces of (image range, channel range) tasks: for each of `image_groups` (outer)
/// and each of `channel_ranges` (inner; consecutive, from channel 0), that range's planes of
/// every image of the group, in image order.
pub(crate) fn channel_pieces<'a>(
    buf: &'a mut [f32],
    per_image: usize,
    plane: usize,
    image_groups: &[(usize, usize)],
    channel_ranges: &[(usize, usize)],
) -> Vec<Vec<&'a mut [f32]>> {
    let mut slots: Vec<Vec<Option<&mut [f32]>>> = buf
        .chunks_mut(per_image)
        .map(|img| {
            let mut rest = img;
            channel_ranges
                .iter()
                .map(|&(c0, c1)| {
                    let (a, b) = std::mem::take(&mut rest).split_at_mut((c1 - c0) * plane);
                    rest = b;
                    Some(a)
                })
                .collect()
        })
        .collect();
    let mut pieces = Vec::with_capacity(image_groups.len() * channel_ranges.len());
    for &(n0, n1) in image_groups {
        for (ri, _) in channel_ranges.iter().enumerate() {
            pieces.push(
                (n0..n1)
                    .map(|n| slots[n][ri].take().expect("each piece taken once"))
                    .collect(),
            );
        }
    }
    pieces
}

thread_local! {
    static PHASE_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// im2col for column stride `s > 1` with kernels wider than the stride: each input row the
/// chunk needs is split once into its `s` phases (`x[q], x[q+s], ...` for q < s), after which
/// every im2col segment is a contiguous copy instead of a strided gather.
fn im2col_phased(
    g: &Geom,
    x: &[f32],
    ch: Chunk,
    c0: usize,
    c1: usize,
    dst: &mut [f32],
    ranges: &[(usize, usize, isize)],
) {
    let (s, w, hw, ow) = (g.sw, g.w, g.hw(), g.ow);
    let p = ch.cols(ow);
    let nr = ch.r1 - ch.r0;
    let (lo_row, hi_row) = input_rows(g, ch);
    let nrows = hi_row - lo_row;
    let phase_off = phase_offsets(w, s);
    let per_img = nrows * w;
    let mut buf = PHASE_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if buf.len() < ch.images() * per_img {
        buf.resize(ch.images() * per_img, 0.0);
    }
    let mut rows = dst.chunks_exact_mut(p);
    for ci in c0..c1 {
        for (i, img) in (ch.n0..ch.n1).enumerate() {
            let plane = &x[(img * g.cin + ci) * hw..][..hw];
            for r in 0..nrows {
                let src = &plane[(lo_row + r) * w..][..w];
                let d = &mut buf[i * per_img + r * w..][..w];
                for q in 0..s.min(w) {
                    for (dv, sv) in d[phase_off[q]..].iter_mut().zip(src[q..].iter().step_by(s)) {
                        *dv = *sv;
                    }
                }
            }
        }
        for kh in 0..g.kh {
            for &(lo, hi, start) in ranges {
                let row = rows.next().expect("im2col row");
                let q = start.rem_euclid(s as isize) as usize;
                for i in 0..ch.images() {
                    for (oh, seg) in
                        (ch.r0..ch.r1).zip(row[i * nr * ow..][..nr * ow].chunks_exact_mut(ow))
                    {
                        let Some(ih) = in_row(oh, g.sh, kh, g.ph, g.h) else {
                            seg.fill(0.0);
                            continue;
                        };
                        zero_short(&mut seg[..lo]);
                        zero_short(&mut seg[hi..]);
                        if lo < hi {
                            let j0 = (lo as isize * s as isize + start) as usize / s;
                            let split = &buf[i * per_img + (ih - lo_row) * w..][..w];
                            copy_run(&mut seg[lo..hi], &split[phase_off[q] + j0..][..hi - lo]);
                        }
                    }
                }
            }
        }
    }
    PHASE_BUF.with(|b| *b.borrow_mut() = buf);
}

/// col2im (accumulate): adds the `[(c1-c0)*KH*KW, P]` columns of chunk `ch` into `dx`, where
/// `dx[i]` is image `ch.n0 + i`'s input channels `c0..c1` (`[(c1-c0), H, W]`).
pub(crate) fn col2im(
    g: &Geom,
    cols: &[f32],
    ch: Chunk,
    c0: usize,
    c1: usize,
    dx: &mut [&mut [f32]],
) {
    let p = ch.cols(g.ow);
    let nr = ch.r1 - ch.r0;
    let (ow, w, hw) = (g.ow, g.w, g.hw());
    assert_eq!(cols.len(), (c1 - c0) * g.kk() * p);
    assert_eq!(dx.len(), ch.images());
    if p == 0 {
        return;
    }
    let ranges: Vec<_> = (0..g.kw).map(|k| col_range(w, ow, g.sw, g.pw, k)).collect();
    if g.sw > 1 && g.kw > g.sw {
        col2im_phased(g, cols, ch, c0, c1, dx, &ranges);
        return;
    }
    let mut rows = cols.chunks_exact(p);
    for cl in 0..c1 - c0 {
        for kh in 0..g.kh {
            for &(lo, hi, start) in &ranges {
                let row = rows.next().expect("col2im row");
                if lo >= hi {
                    continue;
                }
                for (i, img) in dx.iter_mut().enumerate() {
                    let plane = &mut img[cl * hw..][..hw];
                    for (oh, seg) in
                        (ch.r0..ch.r1).zip(row[i * nr * ow..][..nr * ow].chunks_exact(ow))
                    {
                        let Some(ih) = in_row(oh, g.sh, kh, g.ph, g.h) else {
                            continue;
                        };
                        let dst = &mut plane[ih * w..][..w];
                        let first = (lo as isize * g.sw as isize + start) as usize;
                        if g.sw == 1 {
                            for (d, s) in dst[first..first + hi - lo].iter_mut().zip(&seg[lo..hi]) {
                                *d += *s;
                            }
                        } else {
                            for (d, s) in dst[first..].iter_mut().step_by(g.sw).zip(&seg[lo..hi]) {
                                *d += *s;
                            }
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    static SCRATCH_BUFS: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// Runs `f` with two per-thread scratch slices of lengths `a` and `b` (contents unspecified:
/// callers overwrite before reading). Buffers are kept per thread between calls.
pub(crate) fn with_scratch<R>(
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    let mut bufs = SCRATCH_BUFS.with(|s| std::mem::take(&mut *s.borrow_mut()));
    for (v, len) in bufs.iter_mut().zip([a, b]) {
        if v.len() < len {
            v.resize(len, 0.0);
        }
    }
    let [va, vb] = &mut bufs;
    let r = f(&mut va[..a], &mut vb[..b]);
    SCRATCH_BUFS.with(|s| *s.borrow_mut() = bufs);
    r
}
