//! Exact nearest-neighbour search and retrieval metrics: 10,000 queries against 60,000
//! references (64-d), the `eval` benchmark of docs/PROTOCOLS.md. Reads the arrays that
//! `scripts/bench_knn_faiss.py --write DIR` writes, so faiss-cpu and pytorch-metric-learning
//! are timed on the same data. Prints one JSON line per measurement (median and min seconds).
//!
//! - `search k=K`: the blocked device search ranking the K nearest of every query (what
//!   `faiss.IndexFlatL2.search(queries, K)` does), for K = 1, 8 and 6000 (the largest class,
//!   which MAP@R needs); K = 0 times the matrix products and their transfer alone;
//! - `retrieval`: the whole of `triplet eval`'s metric step (search with K = the largest class,
//!   then P@1, Recall@1/2/4/8, R-Precision and MAP@R), what PML's
//!   `AccuracyCalculator.get_accuracy` does.
//!
//! Run: `python scripts/bench_knn_faiss.py --threads 2 --write /tmp/knn-bench`, then
//! `RAYON_NUM_THREADS=2 cargo bench -p triplet-train --bench knn --profile dev -- --data
//! /tmp/knn-bench [--repeats 5] [--backend flex]`.

use std::path::Path;
use std::time::Instant;

use triplet_loss::Distance;
use triplet_metrics::knn::for_each_ranked;
use triplet_metrics::{Rows, retrieval};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// A `.npy` (v1.0, little-endian, C order) of `<f4` or `<i8`: its shape and values as f64.
fn npy(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let data = &bytes[10 + len..];
    let values = if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
            .collect()
    } else if header.contains("'<i8'") {
        data.chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect()
    } else {
        panic!("{}: unsupported dtype in {header}", path.display())
    };
    (shape, values)
}

fn timed(repeats: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

/// Runs the benchmark with the flags in the module docs (`benches/gpu.rs` calls it too).
pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = arg(&args, "--data", "/tmp/knn-bench");
    let dir = Path::new(&dir);
    let repeats: usize = arg(&args, "--repeats", "5").parse().expect("--repeats N");
    let large: usize = arg(&args, "--repeats-large", "3").parse().expect("a count");
    let backend: triplet_train::device::Backend = arg(&args, "--backend", "flex")
        .parse()
        .expect("a backend name");
    let device = backend.device().expect("a compiled backend");
    let (qs, q) = npy(&dir.join("queries.npy"));
    let (rs, r) = npy(&dir.join("references.npy"));
    let (_, ql) = npy(&dir.join("query_labels.npy"));
    let (_, rl) = npy(&dir.join("reference_labels.npy"));
    let dim = qs[1];
    assert_eq!(dim, rs[1]);
    let q: Vec<f32> = q.into_iter().map(|v| v as f32).collect();
    let r: Vec<f32> = r.into_iter().map(|v| v as f32).collect();
    let ql: Vec<usize> = ql.into_iter().map(|v| v as usize).collect();
    let rl: Vec<usize> = rl.into_iter().map(|v| v as usize).collect();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let common = format!(
        "\"impl\": \"triplet\", \"backend\": \"{backend}\", \"threads\": \"{threads}\", \
         \"n_queries\": {}, \"n_references\": {}, \"dim\": {dim}",
        qs[0], rs[0]
    );
    // Warm-up (kernel set-up, page faults).
    let (q, r) = (Rows::new(&q, dim), Rows::new(&r, dim));
    for_each_ranked(q, Some(r), 1, Distance::Euclidean, &device, |_, _| ()).unwrap();
    for k in [0usize, 1, 8, 6000] {
        let n = if k >= 1000 { large } else { repeats };
        let mut p1 = 0.0;
        let (median, min) = timed(n, || {
            let hits = for_each_ranked(q, Some(r), k, Distance::Euclidean, &device, |i, ranked| {
                u8::from(ranked.first().is_some_and(|&j| rl[j as usize] == ql[i]))
            })
            .unwrap();
            p1 = hits.iter().map(|&h| f64::from(h)).sum::<f64>() / hits.len() as f64;
        });
        println!(
            "{{{common}, \"op\": \"search\", \"k\": {k}, \"median_s\": {median:.4}, \
             \"min_s\": {min:.4}, \"repeats\": {n}, \"precision_at_1\": {p1}}}"
        );
    }
    let mut metrics = None;
    let (median, min) = timed(large, || {
        metrics = Some(retrieval(q, &ql, Some((r, &rl)), Distance::Euclidean, &device).unwrap());
    });
    let m = metrics.unwrap();
    println!(
        "{{{common}, \"op\": \"retrieval\", \"median_s\": {median:.4}, \"min_s\": {min:.4}, \
         \"repeats\": {large}, \"precision_at_1\": {}, \"r_precision\": {}, \
         \"mean_average_precision_at_r\": {}, \"recall_at_8\": {}}}",
        m.precision_at_1, m.r_precision, m.map_at_r, m.recall_at[3]
    );
}
