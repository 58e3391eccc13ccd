//! Convolution benchmark: `nice cargo run --release --example bench [reps] [filter] [threads]`.
//!
//! Prints ms and GFLOP/s of forward, dX, dW (+db) for 1 and 2 threads, best of `reps` (5)
//! after a warm-up (more runs for ops under 10 ms), plus gemm's 1024^3 as the practical ceiling. Set `BENCH_WAIT_IDLE=60` to
//! wait (up to 60 s) for an idle machine before each row.

use std::time::Instant;
use triplet_kernels::matmul::{MatMut, MatRef, matmul};
use triplet_kernels::*;

fn fill(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

/// CPU time of all threads of this process (ns), from /proc (0 where unavailable).
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| {
        let p = e.ok()?.path().join("schedstat");
        std::fs::read_to_string(p)
            .ok()?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    })
    .sum()
}

/// Best wall time of at least `reps` runs after a warm-up (more for short ops, until the runs
/// add up to 50 ms: scheduler noise dominates sub-millisecond timings), and this process's
/// mean CPU time per run.
fn best<F: FnMut()>(reps: usize, mut f: F) -> (f64, f64) {
    let t = Instant::now();
    f();
    let warm = t.elapsed().as_secs_f64();
    let reps = reps.max((0.05 / warm.max(1e-6)).ceil() as usize).min(1000);
    let mut wall = f64::MAX;
    let c = cpu_ns();
    for _ in 0..reps {
        let t = Instant::now();
        f();
        wall = wall.min(t.elapsed().as_secs_f64());
    }
    (wall, (cpu_ns() - c) as f64 * 1e-9 / reps as f64)
}

/// (idle, total) jiffies of the whole machine, from /proc/stat.
fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    (
        v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0),
        v.iter().sum(),
    )
}

/// With `BENCH_WAIT_IDLE=<seconds>`: waits up to that long for a second in which the machine
/// is at least 85% idle (another build may share the cores), so rows measure this code alone.
fn wait_idle() {
    let Some(limit) = std::env::var("BENCH_WAIT_IDLE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    else {
        return;
    };
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < limit {
        let (i0, t0) = machine_jiffies();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let (i1, t1) = machine_jiffies();
        if (i1 - i0) as f64 >= 0.85 * (t1 - t0).max(1) as f64 {
            return;
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn conv(n: usize, ci: usize, co: usize, h: usize, k: usize, s: usize, p: usize) -> Conv2dShape {
    Conv2dShape {
        batch: n,
        in_channels: ci,
        out_channels: co,
        height: h,
        width: h,
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let filter = args.get(2).cloned().unwrap_or_default();
    // optional third argument: thread counts, e.g. "1" or "1,2" (default)
    let threads: Vec<usize> = args.get(3).map_or(vec![1, 2], |s| {
        s.split(',').filter_map(|t| t.parse().ok()).collect()
    });
    let pools: Vec<_> = threads
        .iter()
        .map(|&t| {
            (
                t,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap(),
            )
        })
        .collect();

    println!("load average at start: {}", loadavg());
    let n = 1024;
    let (a, b) = (fill(n * n, 11), fill(n * n, 12));
    let mut c = vec![0f32; n * n];
    for (t, pool) in &pools {
        wait_idle();
        let (secs, cpu) = pool.install(|| {
            best(reps, || {
                let lhs = MatRef {
                    data: &a,
                    rows: n,
                    cols: n,
                    row_stride: 1,
                    col_stride: n,
                };
                let rhs = MatRef {
                    data: &b,
                    rows: n,
                    cols: n,
                    row_stride: 1,
                    col_stride: n,
                };
                matmul(
                    MatMut {
                        data: &mut c,
                        rows: n,
                        cols: n,
                        row_stride: 1,
                        col_stride: n,
                    },
                    lhs,
                    rhs,
                    false,
                    *t,
                );
            })
        });
        let fl = 2.0 * (n * n * n) as f64;
        println!(
            "gemm 1024^3, {t} thread(s): {:7.2} ms {:6.1} GFLOP/s ({:6.1} GFLOP per CPU-second)",
            secs * 1e3,
            fl / secs / 1e9,
            fl / cpu / 1e9
        );
    }

    let layers: Vec<(&str, Conv2dShape)> = vec![
        ("CNN 1->32 @28", conv(128, 1, 32, 28, 3, 1, 1)),
        ("CNN 32->32 @28", conv(128, 32, 32, 28, 3, 1, 1)),
        ("CNN 32->64 @14", conv(128, 32, 64, 14, 3, 1, 1)),
        ("CNN 64->64 @14", conv(128, 64, 64, 14, 3, 1, 1)),
        ("CNN 64->128 @7", conv(128, 64, 128, 7, 3, 1, 1)),
        ("R18 7x7s2 3->64 @112", conv(32, 3, 64, 112, 7, 2, 3)),
        ("R18 3x3 64->64 @28", conv(32, 64, 64, 28, 3, 1, 1)),
        ("R18 3x3s2 64->128 @28", conv(32, 64, 128, 28, 3, 2, 1)),
        ("R18 1x1s2 64->128 @28", conv(32, 64, 128, 28, 1, 2, 0)),
        ("R18 3x3 128->128 @14", conv(32, 128, 128, 14, 3, 1, 1)),
        ("R18 3x3s2 128->256 @14", conv(32, 128, 256, 14, 3, 2, 1)),
        ("R18 3x3 256->256 @7", conv(32, 256, 256, 7, 3, 1, 1)),
        ("R18 3x3s2 256->512 @7", conv(32, 256, 512, 7, 3, 2, 1)),
        ("R18 3x3 512->512 @4", conv(32, 512, 512, 4, 3, 1, 1)),
        // batch 1 at 224x224 (inference-style shapes; parallel over pixel rows / channel blocks)
        ("b1 7x7s2 3->64 @224", conv(1, 3, 64, 224, 7, 2, 3)),
        ("b1 3x3 64->64 @56", conv(1, 64, 64, 56, 3, 1, 1)),
        ("b1 3x3s2 128->256 @28", conv(1, 128, 256, 28, 3, 2, 1)),
        ("b1 1x1s2 128->256 @28", conv(1, 128, 256, 28, 1, 2, 0)),
        ("b1 3x3 512->512 @7", conv(1, 512, 512, 7, 3, 1, 1)),
    ];
    println!(
        "ms, GFLOP/s (wall, best of >= {reps} runs, >= 50 ms of runs) and GFLOP per CPU-second of this process; 'busy' = share of"
    );
    println!("the machine's 2 cores used by other processes (or idle-spinning) while the row ran");
    println!(
        "{:24} {:>3} | {:>23} | {:>23} | {:>23} | {:>4}",
        "layer", "thr", "forward", "dX", "dW+db", "busy"
    );
    let mut totals = vec![[0.0f64; 3]; pools.len()];
    for (name, s) in &layers {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let x = fill(s.input_len(), 1);
        let w = fill(s.weight_len(), 2);
        let bias = fill(s.out_channels, 3);
        let dy = fill(s.output_len(), 4);
        let mut y = vec![0.0; s.output_len()];
        let mut dx = vec![0.0; s.input_len()];
        let mut dw = vec![0.0; s.weight_len()];
        let mut db = vec![0.0; s.out_channels];
        let f = s.flops();
        for (pi, (t, pool)) in pools.iter().enumerate() {
            wait_idle();
            let (i0, t0) = machine_jiffies();
            let c0 = cpu_ns();
            let tf = pool.install(|| best(reps, || conv2d_forward(s, &x, &w, Some(&bias), &mut y)));
            let tx = pool.install(|| best(reps, || conv2d_backward_input(s, &dy, &w, &mut dx)));
            let tw = pool.install(|| {
                best(reps, || {
                    conv2d_backward_weight(s, &x, &dy, &mut dw, Some(&mut db))
                })
            });
            let cell = |(secs, cpu): (f64, f64)| {
                format!(
                    "{:7.2} {:6.1} {:6.1}",
                    secs * 1e3,
                    f / secs / 1e9,
                    f / cpu / 1e9
                )
            };
            let (i1, t1) = machine_jiffies();
            let ours = (cpu_ns() - c0) as f64 * 1e-9 * 100.0; // jiffies are 1/100 s
            let total = (t1 - t0).max(1) as f64;
            let others = (total - (i1 - i0) as f64 - ours).max(0.0) / total;
            println!(
                "{name:24} {t:>3} | {} | {} | {} | {:3.0}%",
                cell(tf),
                cell(tx),
                cell(tw),
                others * 100.0
            );
            let cnn = name.starts_with("CNN");
            for (j, (v, _)) in [tf, tx, tw].into_iter().enumerate() {
                if cnn {
                    totals[pi][j] += v;
                }
            }
        }
    }
    for (pi, (t, _)) in pools.iter().enumerate() {
        let [a, b, c] = totals[pi];
        println!(
            "reference CNN total, {t} thread(s): fwd {:.1} ms, dX {:.1} ms, dW {:.1} ms",
            a * 1e3,
            b * 1e3,
            c * 1e3
        );
    }
    println!("load average at end: {}", loadavg());
}
