//! Checks against a naive f64 convolution written from the definition.

use crate::*;

/// xorshift64* generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

struct Reference {
    y: Vec<f64>,
    dx: Vec<f64>,
    dw: Vec<f64>,
    db: Vec<f64>,
}

/// y = conv(x, w) + b, dx, dw, db for a given dy: plain loops over the definition.
#[allow(clippy::needless_range_loop)]
fn reference(s: &Conv2dShape, x: &[f32], w: &[f32], b: &[f32], dy: &[f32]) -> Reference {
    let [oh, ow] = s.out_size();
    let (n, ci, co, h, wd) = (s.batch, s.in_channels, s.out_channels, s.height, s.width);
    let ([kh, kw], [sh, sw], [ph, pw]) = (s.kernel, s.stride, s.padding);
    let mut r = Reference {
        y: vec![0.0; s.output_len()],
        dx: vec![0.0; s.input_len()],
        dw: vec![0.0; s.weight_len()],
        db: vec![0.0; co],
    };
    for n_ in 0..n {
        for o in 0..co {
            for y_ in 0..oh {
                for x_ in 0..ow {
                    let oi = ((n_ * co + o) * oh + y_) * ow + x_;
                    let g = dy[oi] as f64;
                    let mut acc = b[o] as f64;
                    for c in 0..ci {
                        for a in 0..kh {
                            for bb in 0..kw {
                                let iy = (y_ * sh + a) as isize - ph as isize;
                                let ix = (x_ * sw + bb) as isize - pw as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((n_ * ci + c) * h + iy as usize) * wd + ix as usize;
                                let wi = ((o * ci + c) * kh + a) * kw + bb;
                                acc += x[xi] as f64 * w[wi] as f64;
                                r.dx[xi] += g * w[wi] as f64;
                                r.dw[wi] += g * x[xi] as f64;
                            }
                        }
                    }
                    r.y[oi] = acc;
                    r.db[o] += g;
                }
            }
        }
    }
    r
}

/// The larger of two, NaN when either is (`f64::max` drops a NaN: `m.max(NaN) == m`).
fn nan_max(m: f64, v: f64) -> f64 {
    if m.is_nan() || v.is_nan() {
        f64::NAN
    } else {
        m.max(v)
    }
}

/// max |got - want| / max(max |want|, tiny); NaN when any value is NaN, so that no
/// `< tolerance` check passes it.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = nan_max(want.iter().fold(0.0f64, |m, v| nan_max(m, v.abs())), 1e-30);
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| nan_max(m, (*g as f64 - w).abs()))
        / scale
}

#[test]
fn a_nan_is_never_within_tolerance() {
    assert!(rel_err(&[1.0, f32::NAN], &[1.0, 2.0]).is_nan());
    assert!(rel_err(&[1.0, 2.0], &[f64::NAN, 2.0]).is_nan());
    assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
}

/// Runs the three ops on random data and returns the relative errors [y, dx, dw, db].
fn check(s: &Conv2dShape, seed: u64) -> [f64; 4] {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let x = rng.vec(s.input_len());
    let w = rng.vec(s.weight_len());
    let b = rng.vec(s.out_channels);
    let dy = rng.vec(s.output_len());
    let r = reference(s, &x, &w, &b, &dy);
    // outputs start as garbage: the ops must overwrite
    let mut y = vec![f32::NAN; s.output_len()];
    let mut dx = vec![f32::NAN; s.input_len()];
    let mut dw = vec![f32::NAN; s.weight_len()];
    let mut db = vec![f32::NAN; s.out_channels];
    conv2d_forward(s, &x, &w, Some(&b), &mut y);
    conv2d_backward_input(s, &dy, &w, &mut dx);
    conv2d_backward_weight(s, &x, &dy, &mut dw, Some(&mut db));
    let e = [
        rel_err(&y, &r.y),
        rel_err(&dx, &r.dx),
        rel_err(&dw, &r.dw),
        rel_err(&db, &r.db),
    ];
    // without bias: y - b must match too
    let mut y2 = vec![f32::NAN; s.output_len()];
    conv2d_forward(s, &x, &w, None, &mut y2);
    let [oh, ow] = s.out_size();
    let ohw = oh * ow;
    let want2: Vec<f64> =
        r.y.iter()
            .enumerate()
            .map(|(i, v)| v - b[(i / ohw.max(1)) % s.out_channels.max(1)] as f64)
            .collect();
    let e2 = rel_err(&y2, &want2);
    let mut dw2 = vec![f32::NAN; s.weight_len()];
    conv2d_backward_weight(s, &x, &dy, &mut dw2, None);
    assert_eq!(dw, dw2, "dW with and without db differ for {s:?}");
    [e[0].max(e2), e[1], e[2], e[3]]
}

#[allow(clippy::too_many_arguments)]
fn shape(
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
) -> Conv2dShape {
    Conv2dShape {
        batch: n,
        in_channels: ci,
        out_channels: co,
        height: h,
        width: w,
        kernel: k,
        stride: s,
        padding: p,
    }
}

const TOL: f64 = 1e-4;

fn assert_ok(s: &Conv2dShape, e: [f64; 4]) {
    assert!(
        e.iter().all(|&v| v <= TOL),
        "errors [y, dx, dw, db] = {e:?} for {s:?}"
    );
}

/// Covers the fast list and a few odd kernels across batch, channel and size combinations.
#[test]
fn random_shapes_match_reference() {
    let configs: [([usize; 2], [usize; 2], [usize; 2]); 12] = [
        ([3, 3], [1, 1], [1, 1]),
        ([3, 3], [2, 2], [1, 1]),
        ([1, 1], [1, 1], [0, 0]),
        ([1, 1], [2, 2], [0, 0]),
        ([7, 7], [2, 2], [3, 3]),
        ([5, 5], [1, 1], [2, 2]),
        ([3, 3], [1, 1], [0, 0]),
        ([2, 2], [2, 2], [0, 0]),
        ([3, 1], [1, 2], [1, 0]),
        ([2, 3], [3, 1], [3, 2]), // padding >= kernel: negative flipped padding in dX
        ([1, 3], [1, 1], [0, 1]),
        ([2, 2], [1, 1], [2, 3]), // stride 1, padding >= kernel
    ];
    let sizes = [(1, 1), (2, 3), (5, 7), (7, 7), (9, 8), (14, 14), (28, 28)];
    let batches = [1, 2, 3, 5];
    let cins = [1, 3, 8, 16];
    let couts = [1, 4, 16];
    let mut rng = Rng(42);
    let mut worst = [0.0f64; 4];
    let mut cases = 0;
    let mut i = 0usize;
    for &(k, st, p) in &configs {
        for &(h, w) in &sizes {
            i += 1;
            let s = shape(
                batches[i % 4],
                cins[(i / 4 + i) % 4],
                couts[i % 3],
                h,
                w,
                k,
                st,
                p,
            );
            let e = check(&s, rng.next());
            assert_ok(&s, e);
            for (m, v) in worst.iter_mut().zip(e) {
                *m = m.max(v);
            }
            cases += 1;
            // and one fully random combination
            let s = shape(
                rng.pick(&batches),
                rng.pick(&cins),
                rng.pick(&couts),
                h,
                w,
                k,
                st,
                p,
            );
            let e = check(&s, rng.next());
            assert_ok(&s, e);
            for (m, v) in worst.iter_mut().zip(e) {
                *m = m.max(v);
            }
            cases += 1;
        }
    }
    println!("random_shapes: {cases} cases, max rel error [y, dx, dw, db] = {worst:?}");
}

/// Several chunks and threads: exercises the chunked forward, the dW partial reduction and
/// determinism; also channel blocks (large Cin*K*K) and row-split single images.
#[test]
fn chunked_multithreaded_cases() {
    let cases = [
        shape(17, 32, 32, 28, 28, [3, 3], [1, 1], [1, 1]),
        shape(17, 32, 32, 28, 28, [3, 3], [2, 2], [1, 1]),
        shape(1, 16, 8, 64, 48, [3, 3], [1, 1], [1, 1]), // batch 1: row chunks
        shape(1, 3, 8, 57, 61, [7, 7], [2, 2], [3, 3]),  // batch 1, odd sizes
        shape(3, 130, 6, 6, 5, [3, 3], [1, 1], [1, 1]),  // Cin*9 > 1024: channel blocks
        shape(3, 130, 6, 7, 6, [3, 3], [2, 2], [1, 1]),
        shape(2, 24, 5, 12, 11, [7, 7], [2, 2], [3, 3]), // Cin*49 > 1024
        shape(5, 40, 12, 9, 9, [1, 1], [1, 1], [0, 0]),  // direct 1x1, multi-image chunks
        shape(1, 12, 40, 80, 70, [1, 1], [1, 1], [0, 0]), // direct 1x1, row chunks
        shape(3, 20, 16, 17, 15, [1, 1], [2, 2], [0, 0]),
        shape(2, 16, 8, 9, 8, [2, 2], [1, 1], [2, 3]), // flipped dX with negative padding
        shape(1, 128, 96, 7, 7, [3, 3], [1, 1], [1, 1]), // batch 1, few pixels: parallel GEMM, col2im dX
    ];
    for threads in [1usize, 2, 3, 5] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for (j, s) in cases.iter().enumerate() {
                let e = check(s, 1000 + j as u64);
                assert_ok(s, e);
                println!(
                    "{threads} threads {:?} k{:?} s{:?}: errors {e:?}",
                    [s.batch, s.in_channels, s.out_channels, s.height, s.width],
                    s.kernel,
                    s.stride
                );
            }
        });
    }
}

#[test]
fn weight_gradient_is_deterministic() {
    let s = shape(17, 32, 32, 28, 28, [3, 3], [1, 1], [1, 1]);
    let mut rng = Rng(7);
    let x = rng.vec(s.input_len());
    let dy = rng.vec(s.output_len());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let run = || {
        let mut dw = vec![0.0; s.weight_len()];
        let mut db = vec![0.0; s.out_channels];
        pool.install(|| conv2d_backward_weight(&s, &x, &dy, &mut dw, Some(&mut db)));
        (dw, db)
    };
    let first = run();
    for _ in 0..4 {
        assert_eq!(run(), first);
    }
}

#[test]
fn degenerate_shapes() {
    // kernel larger than the padded input: empty output, zero gradients
    let s = shape(2, 3, 4, 1, 1, [3, 3], [1, 1], [0, 0]);
    assert_eq!(s.out_size(), [0, 0]);
    let e = check(&s, 1);
    assert!(e.iter().all(|v| *v == 0.0));
    // batch 0
    let s = shape(0, 3, 4, 5, 5, [3, 3], [1, 1], [1, 1]);
    let e = check(&s, 2);
    assert!(e.iter().all(|v| *v == 0.0));
    // empty input plane but padding gives an output (bias only, zero gradients)
    let s = shape(2, 3, 4, 0, 2, [1, 1], [1, 1], [1, 1]);
    assert_eq!(s.out_size(), [2, 4]);
    let e = check(&s, 4);
    assert!(e[0] <= TOL && e[3] <= TOL, "{e:?}");
    // stride larger than the kernel (rows of the input never read)
    let s = shape(2, 3, 4, 11, 10, [2, 2], [3, 4], [0, 1]);
    assert_ok(&s, check(&s, 3));
}

#[test]
fn shape_helpers() {
    let s = shape(32, 3, 64, 112, 112, [7, 7], [2, 2], [3, 3]);
    assert_eq!(s.out_size(), [56, 56]);
    assert_eq!(s.input_len(), 32 * 3 * 112 * 112);
    assert_eq!(s.weight_len(), 64 * 3 * 49);
    assert_eq!(s.output_len(), 32 * 64 * 56 * 56);
    assert_eq!(s.flops(), 2.0 * (32 * 64 * 56 * 56) as f64 * 147.0);
    assert_eq!(
        shape(1, 1, 1, 9, 8, [3, 3], [2, 2], [1, 1]).out_size(),
        [5, 4]
    );
}

fn small() -> (Conv2dShape, Vec<f32>, Vec<f32>, Vec<f32>) {
    let s = shape(2, 3, 4, 5, 5, [3, 3], [1, 1], [1, 1]);
    (
        s,
        vec![0.0; s.input_len()],
        vec![0.0; s.weight_len()],
        vec![0.0; s.output_len()],
    )
}

#[test]
#[should_panic(expected = "`x` has")]
fn forward_rejects_bad_input_len() {
    let (s, x, w, mut y) = small();
    conv2d_forward(&s, &x[1..], &w, None, &mut y);
}

#[test]
#[should_panic(expected = "`out` has")]
fn forward_rejects_bad_output_len() {
    let (s, x, w, mut y) = small();
    y.push(0.0);
    conv2d_forward(&s, &x, &w, None, &mut y);
}

#[test]
#[should_panic(expected = "`bias` has")]
fn forward_rejects_bad_bias_len() {
    let (s, x, w, mut y) = small();
    conv2d_forward(&s, &x, &w, Some(&[0.0; 3]), &mut y);
}

#[test]
#[should_panic(expected = "`w` has")]
fn backward_input_rejects_bad_weight_len() {
    let (s, mut x, w, y) = small();
    conv2d_backward_input(&s, &y, &w[..10], &mut x);
}

#[test]
#[should_panic(expected = "`dx` has")]
fn backward_input_rejects_bad_dx_len() {
    let (s, mut x, w, y) = small();
    x.pop();
    conv2d_backward_input(&s, &y, &w, &mut x);
}

#[test]
#[should_panic(expected = "`dy` has")]
fn backward_weight_rejects_bad_dy_len() {
    let (s, x, mut w, y) = small();
    conv2d_backward_weight(&s, &x, &y[1..], &mut w, None);
}

#[test]
#[should_panic(expected = "`db` has")]
fn backward_weight_rejects_bad_db_len() {
    let (s, x, mut w, y) = small();
    let mut db = vec![0.0; 5];
    conv2d_backward_weight(&s, &x, &y, &mut w, Some(&mut db));
}

#[test]
#[should_panic(expected = "stride must be >= 1")]
fn zero_stride_panics() {
    let (mut s, x, w, mut y) = small();
    s.stride = [0, 1];
    conv2d_forward(&s, &x, &w, None, &mut y);
}

/// Many random shapes (kernels 1-7, strides 1-4, paddings 0-4, sizes 0-20, odd channel
/// counts) on 1-3 threads.
#[test]
fn fuzz_many_shapes() {
    let mut rng = Rng(2024);
    let mut worst = [0.0f64; 4];
    for threads in [1usize, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for _ in 0..300 {
            let k = [1 + rng.next() as usize % 7, 1 + rng.next() as usize % 7];
            let st = [1 + rng.next() as usize % 4, 1 + rng.next() as usize % 4];
            let p = [rng.next() as usize % 5, rng.next() as usize % 5];
            let s = shape(
                1 + rng.next() as usize % 4,
                1 + rng.next() as usize % 20,
                1 + rng.next() as usize % 20,
                rng.next() as usize % 21,
                rng.next() as usize % 21,
                k,
                st,
                p,
            );
            let e = pool.install(|| check(&s, rng.next()));
            assert_ok(&s, e);
            for (m, v) in worst.iter_mut().zip(e) {
                *m = m.max(v);
            }
        }
    }
    println!("fuzz: 900 cases, max rel error [y, dx, dw, db] = {worst:?}");
}

/// The direct kernels and im2col + GEMM, each forced, against the f64 reference on the shapes
/// the direct kernels take (Cout a multiple of 8, Cin·KH·KW >= 64, stride 1), with odd sizes,
/// batch 1 and batches that leave a short last image group, on 1-3 threads.
#[test]
fn direct_and_im2col_engines_match_reference() {
    use crate::direct::{ConvAlgo, TEST_ALGO};
    let cases = [
        shape(1, 8, 8, 1, 1, [3, 3], [1, 1], [1, 1]),
        shape(2, 8, 16, 4, 4, [3, 3], [1, 1], [1, 1]),
        shape(5, 13, 24, 7, 7, [3, 3], [1, 1], [1, 1]),
        shape(17, 32, 32, 7, 7, [3, 3], [1, 1], [1, 1]), // image groups of 3 + a short one
        shape(3, 16, 40, 9, 8, [3, 3], [1, 1], [0, 0]),
        shape(2, 3, 16, 11, 6, [5, 5], [1, 1], [2, 2]),
        shape(2, 24, 8, 6, 13, [1, 3], [1, 1], [0, 1]),
        shape(2, 16, 16, 9, 8, [2, 2], [1, 1], [2, 3]), // dX's flipped padding < 0: im2col
        shape(1, 32, 64, 28, 28, [3, 3], [1, 1], [1, 1]),
        shape(3, 64, 8, 14, 14, [3, 3], [1, 1], [1, 1]),
        shape(2, 72, 16, 5, 3, [1, 1], [1, 1], [0, 0]),
    ];
    for threads in [1usize, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for algo in [ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
            for (j, s) in cases.iter().enumerate() {
                let e = pool.install(|| {
                    TEST_ALGO.set(Some(algo));
                    let e = check(s, 500 + j as u64);
                    TEST_ALGO.set(None);
                    e
                });
                assert_ok(s, e);
            }
        }
    }
}

/// Where the CPU has AVX2 + FMA and no AVX-512 (and `TRIPLET_CONV_ALGO` is unset), every
/// 3×3 convolution of the reference CNN but its first (Cin = 1) takes the direct kernels, in
/// all three passes (the input gradient as the flipped forward).
#[test]
fn the_reference_cnn_takes_the_direct_kernels_where_the_cpu_has_them() {
    use crate::direct::ConvAlgo;
    let avx2 = cfg!(target_arch = "x86_64") && {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && !is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    };
    if !avx2 || std::env::var_os("TRIPLET_CONV_ALGO").is_some() {
        println!("no AVX2-only CPU or TRIPLET_CONV_ALGO set: nothing to check");
        return;
    }
    for (ci, co, hw) in [(32, 32, 28), (32, 64, 14), (64, 64, 14), (64, 128, 7)] {
        let s = shape(128, ci, co, hw, hw, [3, 3], [1, 1], [1, 1]);
        let g = s.geom("test");
        assert_eq!(ConvAlgo::choose(&g), ConvAlgo::Direct, "{s:?}");
        let flipped = shape(128, co, ci, hw, hw, [3, 3], [1, 1], [1, 1]).geom("test");
        assert_eq!(ConvAlgo::choose(&flipped), ConvAlgo::Direct, "{s:?} dX");
    }
    let first = shape(128, 1, 32, 28, 28, [3, 3], [1, 1], [1, 1]).geom("test");
    assert_eq!(ConvAlgo::choose(&first), ConvAlgo::Im2colGemm);
}

/// A NaN in the input reaches every output it touches through the direct kernels (FMA keeps
/// it; the padding is zeros, not the input's neighbours), and nothing else.
#[test]
fn direct_forward_keeps_a_nan_where_it_reads_it() {
    use crate::direct::{ConvAlgo, TEST_ALGO};
    let s = shape(2, 8, 16, 5, 6, [3, 3], [1, 1], [1, 1]);
    let mut rng = Rng(9);
    let mut x = rng.vec(s.input_len());
    let w = rng.vec(s.weight_len());
    // image 1, channel 3, pixel (2, 0)
    x[(8 + 3) * 30 + 2 * 6] = f32::NAN;
    let mut y = vec![0.0; s.output_len()];
    TEST_ALGO.set(Some(ConvAlgo::Direct));
    conv2d_forward(&s, &x, &w, None, &mut y);
    TEST_ALGO.set(None);
    for (i, v) in y.iter().enumerate() {
        let (img, pix) = (i / (16 * 30), i % 30);
        let (r, c) = (pix / 6, pix % 6);
        let touched = img == 1 && (1..=3).contains(&r) && c <= 1;
        assert_eq!(
            v.is_nan(),
            touched,
            "output {i} (image {img}, pixel ({r}, {c}))"
        );
    }
}
