//! Direct stride-1 convolution on x86-64 with AVX2 + FMA: no im2col, no GEMM packing.
//!
//! A group of images is copied once into zero-padded planes (`Cin` planes of [`Plan::ps`]
//! floats per image), so every tap of every output pixel is a plain read at
//! `pixel + tap offset`. The micro-kernels hold a 6-pixel × 16-output-channel tile (12 AVX2
//! accumulators) and take, per input channel and tap, two vector loads of packed weights and
//! six broadcasts of input values (the shape of gemm's own AVX2 kernel, without its packing):
//!
//! - forward: `out[co, p] = b[co] + Σ_{ci,t} w[co, ci, t] · xp[ci, p + off_t]`, the reduction
//!   over `(ci, t)` in the registers, the tile scattered into NCHW;
//! - weight gradient: `dw[co, ci, t] = Σ_p dy[co, p] · xp[ci, p + off_t]`, the tile over 6
//!   `(ci, t)` pairs × 16 output channels, the reduction over pixels in the registers, `dy`
//!   transposed per image to `[pixel, Cout]`;
//! - input gradient (stride 1): the forward on `dy` with the flipped, channel-swapped kernel
//!   ([`crate::conv_backward`]).
//!
//! Pixels are listed explicitly (padded-plane offset, output position), so the padding
//! columns of the padded grid cost nothing and small images are grouped so that a weight block
//! serves enough tiles. The only `unsafe` is in the four `#[target_feature]` micro-kernels and
//! their calls; the invariant is written beside each call.

use crate::conv_backward::{sum_f32, transpose};
use crate::im2col::{Geom, channel_pieces, split_even};
use rayon::prelude::*;

/// Which engine computes a convolution pass: chosen once per call from the geometry and the
/// CPU ([`ConvAlgo::choose`]), not inside the engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvAlgo {
    /// im2col (or the input itself for 1×1) + `gemm`: every geometry, every CPU.
    Im2colGemm,
    /// This module's AVX2 + FMA kernels: stride 1, padding ≥ 0, Cout a multiple of 8,
    /// Cin·KH·KW ≥ 64.
    Direct,
}

/// What `TRIPLET_CONV_ALGO` asks for: `im2col` forces the portable path everywhere,
/// `direct` takes the direct kernels wherever they apply (also on AVX-512 CPUs, where the
/// automatic choice keeps gemm's 512-bit kernels), anything else (or unset) is automatic.
fn forced() -> Option<ConvAlgo> {
    static F: std::sync::OnceLock<Option<ConvAlgo>> = std::sync::OnceLock::new();
    *F.get_or_init(|| match std::env::var("TRIPLET_CONV_ALGO").as_deref() {
        Ok("im2col") => Some(ConvAlgo::Im2colGemm),
        Ok("direct") => Some(ConvAlgo::Direct),
        _ => None,
    })
}

#[cfg(test)]
thread_local! {
    /// Tests pick the engine per thread (the environment variable is process-wide).
    pub(crate) static TEST_ALGO: std::cell::Cell<Option<ConvAlgo>> = const { std::cell::Cell::new(None) };
}

/// (AVX2 + FMA present, AVX-512 present).
#[cfg(target_arch = "x86_64")]
fn cpu() -> (bool, bool) {
    static C: std::sync::OnceLock<(bool, bool)> = std::sync::OnceLock::new();
    *C.get_or_init(|| {
        (
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            is_x86_feature_detected!("avx512f"),
        )
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu() -> (bool, bool) {
    (false, false)
}

impl ConvAlgo {
    /// The engine for the forward pass (and the stride-1 input gradient, which is a forward
    /// pass) or the weight gradient of `g`.
    pub(crate) fn choose(g: &Geom) -> Self {
        let (avx2, avx512) = cpu();
        if !avx2 || !applies(g) {
            return ConvAlgo::Im2colGemm;
        }
        #[cfg(test)]
        if let Some(a) = TEST_ALGO.get() {
            return a;
        }
        match forced() {
            Some(a) => a,
            // Measured on AVX2 (Zen 3); on AVX-512 CPUs gemm's 512-bit kernels stay the
            // default until the direct kernels are measured there.
            None if avx512 => ConvAlgo::Im2colGemm,
            None => ConvAlgo::Direct,
        }
    }
}

/// Geometries the direct kernels take. Fewer than 64 products per output (e.g. Cin = 1)
/// leave the tile store the bottleneck, where im2col + GEMM is faster.
fn applies(g: &Geom) -> bool {
    g.sh == 1
        && g.sw == 1
        && g.ph >= 0
        && g.pw >= 0
        && g.cout.is_multiple_of(8)
        && g.kdim() >= 64
        && g.n * g.ohw() > 0
}

/// The padded-plane layout of a geometry the direct kernels take.
struct Plan {
    /// Padded width.
    wp: usize,
    /// Floats per padded plane, `Hp * Wp`.
    ps: usize,
    /// Offset of each tap `(kh, kw)` in the padded plane, row-major.
    offs: Vec<usize>,
    /// Images per group.
    group: usize,
}

impl Plan {
    fn new(g: &Geom) -> Self {
        let (ph, pw) = (g.ph as usize, g.pw as usize);
        let (hp, wp) = (g.h + 2 * ph, g.w + 2 * pw);
        let offs = (0..g.kh)
            .flat_map(|a| (0..g.kw).map(move |b| a * wp + b))
            .collect();
        // Output pixel (r, c) reads the padded plane at r*wp + c + off, at most
        // (oh-1)*wp + ow-1 + (kh-1)*wp + kw-1 = (hp-1)*wp + wp-1 < hp*wp.
        debug_assert!(g.oh + g.kh - 1 <= hp && g.ow + g.kw - 1 <= wp);
        // Group small images so a weight block serves >= ~256 pixels, but keep >= 2 groups
        // per thread where the batch allows.
        let threads = rayon::current_num_threads();
        let group = 256usize
            .div_ceil(g.ohw())
            .min((g.n / (2 * threads)).max(1))
            .clamp(1, g.n);
        Plan {
            wp,
            ps: hp * wp,
            offs,
            group,
        }
    }

    /// Floats of one padded image.
    fn image(&self, g: &Geom) -> usize {
        g.cin * self.ps
    }

    /// Copies images `imgs` of `x` into the interiors of the padded images of `dst`. Only
    /// interiors are ever written, so a buffer that came zeroed from `resize` and serves only
    /// this plan keeps zero padding: no fill per group.
    fn pad(&self, g: &Geom, x: &[f32], imgs: std::ops::Range<usize>, dst: &mut [f32]) {
        let (hw, ph, pw) = (g.hw(), g.ph as usize, g.pw as usize);
        for (img, pimg) in imgs.zip(dst.chunks_exact_mut(self.image(g))) {
            for (ci, plane) in pimg.chunks_exact_mut(self.ps).enumerate() {
                let src = &x[(img * g.cin + ci) * hw..][..hw];
                for (ih, row) in src.chunks_exact(g.w).enumerate() {
                    plane[(ih + ph) * self.wp + pw..][..g.w].copy_from_slice(row);
                }
            }
        }
    }

    /// The pixels of `m` images: offset in the padded group (image, then `r * Wp + c`), and
    /// (image in the group, output pixel `r * OW + c`).
    fn pixels(&self, g: &Geom, m: usize) -> (Vec<usize>, Vec<(usize, usize)>) {
        let per = self.image(g);
        let mut xq = Vec::with_capacity(m * g.ohw());
        let mut oq = Vec::with_capacity(m * g.ohw());
        for il in 0..m {
            for r in 0..g.oh {
                for c in 0..g.ow {
                    xq.push(il * per + r * self.wp + c);
                    oq.push((il, r * g.ow + c));
                }
            }
        }
        (xq, oq)
    }

    /// Checks the bound every kernel read relies on: pixel offset + channel plane + tap
    /// offset stays inside the padded group of `m` images.
    fn check(&self, g: &Geom, xq: &[usize], m: usize, len: usize) {
        let max_q = xq.iter().copied().max().unwrap_or(0);
        let max_off = (g.cin - 1) * self.ps + self.offs.iter().copied().max().unwrap_or(0);
        assert!(
            max_q + max_off < m * self.image(g) && m * self.image(g) <= len,
            "direct convolution: padded reads out of bounds"
        );
    }
}

/// Output-channel blocks: 16 wide, a last block of 8 (Cout is a multiple of 8).
fn co_blocks(cout: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..cout)
        .step_by(16)
        .map(move |c0| (c0, if cout - c0 >= 16 { 16 } else { 8 }))
}

/// `w` (`[Cout, Cin*KK]`) packed per output-channel block as `[ci][tap][nb]`.
fn pack_weights(g: &Geom, w: &[f32]) -> Vec<f32> {
    let kk = g.kk();
    let mut out = Vec::with_capacity(g.cout * g.kdim());
    for (c0, nb) in co_blocks(g.cout) {
        for ci in 0..g.cin {
            for t in 0..kk {
                for j in 0..nb {
                    out.push(w[(c0 + j) * g.kdim() + ci * kk + t]);
                }
            }
        }
    }
    out
}

/// `out = bias + conv(x, w)` (`out` overwritten). `g` must satisfy [`applies`] on a CPU with
/// AVX2 + FMA ([`ConvAlgo::choose`] returned `Direct`).
pub(crate) fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    assert!(cpu().0 && applies(g), "direct forward on {g:?}");
    let plan = Plan::new(g);
    let wpk = pack_weights(g, w);
    let ohw = g.ohw();
    let per_in = g.cin * g.hw();
    let per_out = g.cout * ohw;
    assert!(x.len() == g.n * per_in && out.len() == g.n * per_out);
    let (xq_all, oq_all) = plan.pixels(g, plan.group);
    // Tasks: (image group, output-channel range); the channels split too when the groups
    // alone cannot keep the threads busy (small batches).
    let groups = split_even(g.n, g.n.div_ceil(plan.group));
    let threads = rayon::current_num_threads();
    let want = if threads > 1 { 2 * threads } else { 1 };
    let blocks: Vec<(usize, usize)> = co_blocks(g.cout).collect();
    let co_parts = if groups.len() >= want {
        1
    } else {
        want.div_ceil(groups.len()).min(blocks.len())
    };
    // Channel ranges made of whole blocks.
    let co_ranges: Vec<(usize, usize)> = split_even(blocks.len(), co_parts)
        .into_iter()
        .map(|(a, b)| (blocks[a].0, blocks[b - 1].0 + blocks[b - 1].1))
        .collect();
    let pieces = channel_pieces(out, per_out, ohw, &groups, &co_ranges);
    let tasks: Vec<_> = groups
        .iter()
        .flat_map(|&(n0, n1)| co_ranges.iter().map(move |&r| (n0, n1, r)))
        .zip(pieces)
        .map(|((n0, n1, r), dst)| (n0, n1, r, dst))
        .collect();
    let (wpk, plan) = (&wpk, &plan);
    let (xq_all, oq_all) = (&xq_all, &oq_all);
    tasks.into_par_iter().with_max_len(1).for_each_init(
        Vec::new,
        |xp: &mut Vec<f32>, (n0, n1, (c0, c1), mut dst)| {
            let m = n1 - n0;
            xp.resize(m * plan.image(g), 0.0);
            plan.pad(g, x, n0..n1, xp);
            let (xq, oq) = (&xq_all[..m * ohw], &oq_all[..m * ohw]);
            plan.check(g, xq, m, xp.len());
            let mut wofs = 0;
            for (cb0, nb) in co_blocks(g.cout) {
                let wlen = g.kdim() * nb;
                if cb0 >= c0 && cb0 < c1 {
                    let wblk = &wpk[wofs..][..wlen];
                    let mut b = [0f32; 16];
                    if let Some(bias) = bias {
                        b[..nb].copy_from_slice(&bias[cb0..cb0 + nb]);
                    }
                    for (xs, os) in xq.chunks(6).zip(oq.chunks(6)) {
                        let mut q6 = [xs[0]; 6];
                        q6[..xs.len()].copy_from_slice(xs);
                        let mut tile = [[0f32; 16]; 6];
                        let base = xp.as_ptr();
                        // SAFETY: AVX2 and FMA are present (asserted above). The kernel reads
                        // `base + q + ci*ps + off` for q in q6, ci < Cin, off in offs, all
                        // < m*Cin*ps <= xp.len() (`plan.check`), and `cin*kk*nb` floats of
                        // `wblk`, which has exactly that many.
                        unsafe {
                            let p = q6.map(|q| base.add(q));
                            if nb == 16 {
                                fwd16x6(
                                    p,
                                    plan.ps,
                                    &plan.offs,
                                    g.cin,
                                    wblk.as_ptr(),
                                    &b,
                                    &mut tile,
                                );
                            } else {
                                fwd8x6(p, plan.ps, &plan.offs, g.cin, wblk.as_ptr(), &b, &mut tile);
                            }
                        }
                        for (t, &(il, pix)) in tile.iter().zip(os) {
                            let d = &mut dst[il];
                            for (j, &v) in t[..nb].iter().enumerate() {
                                d[(cb0 - c0 + j) * ohw + pix] = v;
                            }
                        }
                    }
                }
                wofs += wlen;
            }
        },
    );
}

/// Weight gradient `dw` (`[Cout, Cin*KK]`) and optional bias gradient, overwritten. Images are
/// split into parts (fixed by the thread count), each summed in order into its own partial;
/// the partials are added in part order, so the result does not depend on scheduling.
pub(crate) fn backward_weight(
    g: &Geom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    assert!(cpu().0 && applies(g), "direct weight gradient on {g:?}");
    let plan = Plan::new(g);
    let (ohw, kdim) = (g.ohw(), g.kdim());
    let per_in = g.cin * g.hw();
    let per_out = g.cout * ohw;
    assert!(x.len() == g.n * per_in && dy.len() == g.n * per_out && dw.len() == g.cout * kdim);
    let threads = rayon::current_num_threads();
    // Up to 4 parts per thread (balance on a busy core) while the partials stay <= 16 MiB.
    let budget = ((4 << 20) / (kdim * g.cout)).max(1);
    let nparts = (4 * threads).min(budget).max(threads).min(g.n).max(1);
    let parts = split_even(g.n, nparts);
    // (ci, tap) pairs as offsets from a padded image's start
    let combos: Vec<usize> = (0..g.cin)
        .flat_map(|ci| plan.offs.iter().map(move |&o| ci * plan.ps + o))
        .collect();
    let (xq_all, _) = plan.pixels(g, plan.group);
    let (plan, combos, xq_all) = (&plan, &combos, &xq_all);
    let partials: Vec<Vec<f32>> = parts
        .par_iter()
        .with_max_len(1)
        .map(|&(p0, p1)| {
            // [combo][Cout]
            let mut acc = vec![0f32; kdim * g.cout];
            let mut xp = Vec::new();
            let mut dyt = Vec::new();
            let mut n0 = p0;
            while n0 < p1 {
                let n1 = (n0 + plan.group).min(p1);
                let m = n1 - n0;
                xp.resize(m * plan.image(g), 0.0);
                plan.pad(g, x, n0..n1, &mut xp);
                let xq = &xq_all[..m * ohw];
                plan.check(g, xq, m, xp.len());
                dyt.resize(m * ohw * g.cout, 0.0);
                for (il, img) in (n0..n1).enumerate() {
                    transpose(
                        &dy[img * per_out..][..per_out],
                        g.cout,
                        ohw,
                        &mut dyt[il * ohw * g.cout..][..ohw * g.cout],
                    );
                }
                weight_group(g, &xp, xq, &dyt, combos, &mut acc);
                n0 = n1;
            }
            acc
        })
        .collect();
    dw.par_chunks_mut(kdim).enumerate().for_each(|(co, row)| {
        for (c, d) in row.iter_mut().enumerate() {
            let mut s = 0f32;
            for p in &partials {
                s += p[c * g.cout + co];
            }
            *d = s;
        }
    });
    if let Some(db) = db {
        db.par_iter_mut().enumerate().for_each(|(co, d)| {
            *d = (0..g.n)
                .map(|n| sum_f32(&dy[(n * g.cout + co) * ohw..][..ohw]) as f64)
                .sum::<f64>() as f32;
        });
    }
}

/// Pixels per block of the weight-gradient loop (`[block, 16]` of dy stays in L1).
const DW_BLOCK: usize = 256;

/// Adds one padded group's contribution into `acc` (`[combo][Cout]`).
fn weight_group(
    g: &Geom,
    xp: &[f32],
    xq: &[usize],
    dyt: &[f32],
    combos: &[usize],
    acc: &mut [f32],
) {
    let cout = g.cout;
    assert!(dyt.len() == xq.len() * cout && acc.len() == combos.len() * cout);
    for (c0, nb) in co_blocks(cout) {
        for (bi, qs) in xq.chunks(DW_BLOCK).enumerate() {
            let drow = &dyt[bi * DW_BLOCK * cout..][..qs.len() * cout];
            for (k0, cs) in combos.chunks(6).enumerate() {
                let mut c6 = [cs[0]; 6];
                c6[..cs.len()].copy_from_slice(cs);
                let mut tile = [[0f32; 16]; 6];
                for (k, t) in tile[..cs.len()].iter_mut().enumerate() {
                    t[..nb].copy_from_slice(&acc[(k0 * 6 + k) * cout + c0..][..nb]);
                }
                let base = xp.as_ptr();
                // SAFETY: AVX2 and FMA are present (asserted by the caller). x reads are at
                // `base + c + q` for c in c6 (a combo: ci*ps + off) and q in qs, < xp.len()
                // (`Plan::check`); dy reads are `nb` floats at `i*cout + c0` for i < qs.len(),
                // inside `drow` (c0 + nb <= cout).
                unsafe {
                    let p = c6.map(|c| base.add(c));
                    let d = drow.as_ptr().add(c0);
                    if nb == 16 {
                        dw16x6(p, qs, d, cout, &mut tile);
                    } else {
                        dw8x6(p, qs, d, cout, &mut tile);
                    }
                }
                for (k, t) in tile[..cs.len()].iter().enumerate() {
                    acc[(k0 * 6 + k) * cout + c0..][..nb].copy_from_slice(&t[..nb]);
                }
            }
        }
    }
}

/// Forward tile, 6 pixels × 16 channels. Caller guarantees AVX2 + FMA and that
/// `p[k] + ci*ps + o` is readable for every k < 6, ci < cin, o in offs, and `w` holds
/// `cin * offs.len() * 16` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fwd16x6(
    mut p: [*const f32; 6],
    ps: usize,
    offs: &[usize],
    cin: usize,
    mut w: *const f32,
    bias: &[f32; 16],
    tile: &mut [[f32; 16]; 6],
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): reads as the caller guarantees; `tile` and `bias` are references.
    unsafe {
        let b0 = _mm256_loadu_ps(bias.as_ptr());
        let b1 = _mm256_loadu_ps(bias.as_ptr().add(8));
        let (mut a00, mut a01, mut a10, mut a11, mut a20, mut a21) = (b0, b1, b0, b1, b0, b1);
        let (mut a30, mut a31, mut a40, mut a41, mut a50, mut a51) = (b0, b1, b0, b1, b0, b1);
        for _ in 0..cin {
            for &o in offs {
                let w0 = _mm256_loadu_ps(w);
                let w1 = _mm256_loadu_ps(w.add(8));
                w = w.add(16);
                let x0 = _mm256_broadcast_ss(&*p[0].add(o));
                a00 = _mm256_fmadd_ps(x0, w0, a00);
                a01 = _mm256_fmadd_ps(x0, w1, a01);
                let x1 = _mm256_broadcast_ss(&*p[1].add(o));
                a10 = _mm256_fmadd_ps(x1, w0, a10);
                a11 = _mm256_fmadd_ps(x1, w1, a11);
                let x2 = _mm256_broadcast_ss(&*p[2].add(o));
                a20 = _mm256_fmadd_ps(x2, w0, a20);
                a21 = _mm256_fmadd_ps(x2, w1, a21);
                let x3 = _mm256_broadcast_ss(&*p[3].add(o));
                a30 = _mm256_fmadd_ps(x3, w0, a30);
                a31 = _mm256_fmadd_ps(x3, w1, a31);
                let x4 = _mm256_broadcast_ss(&*p[4].add(o));
                a40 = _mm256_fmadd_ps(x4, w0, a40);
                a41 = _mm256_fmadd_ps(x4, w1, a41);
                let x5 = _mm256_broadcast_ss(&*p[5].add(o));
                a50 = _mm256_fmadd_ps(x5, w0, a50);
                a51 = _mm256_fmadd_ps(x5, w1, a51);
            }
            for q in p.iter_mut() {
                *q = q.add(ps);
            }
        }
        let t = tile.as_mut_ptr() as *mut f32;
        let all = [a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51];
        for (i, v) in all.into_iter().enumerate() {
            _mm256_storeu_ps(t.add(8 * i), v);
        }
    }
}

/// Forward tile, 6 pixels × 8 channels (contract of [`fwd16x6`] with 8-wide weights).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fwd8x6(
    mut p: [*const f32; 6],
    ps: usize,
    offs: &[usize],
    cin: usize,
    mut w: *const f32,
    bias: &[f32; 16],
    tile: &mut [[f32; 16]; 6],
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): as in `fwd16x6`.
    unsafe {
        let mut a = [_mm256_loadu_ps(bias.as_ptr()); 6];
        for _ in 0..cin {
            for &o in offs {
                let w0 = _mm256_loadu_ps(w);
                w = w.add(8);
                for (acc, pk) in a.iter_mut().zip(&p) {
                    *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*pk.add(o)), w0, *acc);
                }
            }
            for q in p.iter_mut() {
                *q = q.add(ps);
            }
        }
        for (t, v) in tile.iter_mut().zip(a) {
            _mm256_storeu_ps(t.as_mut_ptr(), v);
        }
    }
}

/// Weight-gradient tile, 6 (ci, tap) pairs × 16 channels, accumulated into `tile`. Caller
/// guarantees AVX2 + FMA, `p[k] + q` readable for every k < 6 and q in qs, and 16 floats
/// readable at `dy + i*cout` for every i < qs.len().
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw16x6(
    p: [*const f32; 6],
    qs: &[usize],
    mut dy: *const f32,
    cout: usize,
    tile: &mut [[f32; 16]; 6],
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): reads as the caller guarantees; `tile` is a reference.
    unsafe {
        let t = tile.as_mut_ptr() as *mut f32;
        let mut a = [_mm256_setzero_ps(); 12];
        for (i, v) in a.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(t.add(8 * i));
        }
        for &q in qs {
            let d0 = _mm256_loadu_ps(dy);
            let d1 = _mm256_loadu_ps(dy.add(8));
            dy = dy.add(cout);
            for k in 0..6 {
                let b = _mm256_broadcast_ss(&*p[k].add(q));
                a[2 * k] = _mm256_fmadd_ps(b, d0, a[2 * k]);
                a[2 * k + 1] = _mm256_fmadd_ps(b, d1, a[2 * k + 1]);
            }
        }
        for (i, v) in a.into_iter().enumerate() {
            _mm256_storeu_ps(t.add(8 * i), v);
        }
    }
}

/// Weight-gradient tile, 6 pairs × 8 channels (contract of [`dw16x6`] with 8 floats of dy).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw8x6(
    p: [*const f32; 6],
    qs: &[usize],
    mut dy: *const f32,
    cout: usize,
    tile: &mut [[f32; 16]; 6],
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): as in `dw16x6`.
    unsafe {
        let mut a = [_mm256_setzero_ps(); 6];
        for (v, t) in a.iter_mut().zip(tile.iter()) {
            *v = _mm256_loadu_ps(t.as_ptr());
        }
        for &q in qs {
            let d0 = _mm256_loadu_ps(dy);
            dy = dy.add(cout);
            for (acc, pk) in a.iter_mut().zip(&p) {
                *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*pk.add(q)), d0, *acc);
            }
        }
        for (t, v) in tile.iter_mut().zip(a) {
            _mm256_storeu_ps(t.as_mut_ptr(), v);
        }
    }
}

/// Without x86-64 the direct kernels never run (`cpu()` reports no AVX2); these keep the
/// callers compiling.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn fwd16x6(
    _: [*const f32; 6],
    _: usize,
    _: &[usize],
    _: usize,
    _: *const f32,
    _: &[f32; 16],
    _: &mut [[f32; 16]; 6],
) {
    unreachable!("direct convolution without x86-64")
}
#[cfg(not(target_arch = "x86_64"))]
use fwd16x6 as fwd8x6;
#[cfg(not(target_arch = "x86_64"))]
unsafe fn dw16x6(_: [*const f32; 6], _: &[usize], _: *const f32, _: usize, _: &mut [[f32; 16]; 6]) {
    unreachable!("direct convolution without x86-64")
}
#[cfg(not(target_arch = "x86_64"))]
use dw16x6 as dw8x6;
