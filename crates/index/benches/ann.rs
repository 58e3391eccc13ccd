//! The index's HNSW graph on a large gallery, beside faiss (`scripts/ann_benchmark.py` on the
//! same `.npy` files): build time, peak memory, disk size, load time, queries/s on 1 and 2
//! threads, and recall@10 against exact search. docs/BENCHMARKS.md has the command and the
//! table.
//!
//! ```text
//! cargo bench -p triplet-index --bench ann -- --base B.npy --queries Q.npy --truth T.npy \
//!     [--m 16] [--ef-construction 128] [--ef-search 64] [--out DIR [--keep]]
//! ```
//!
//! `T.npy` holds the exact 10 nearest base rows of each query (int64, as faiss writes them).
//! Prints one JSON line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use triplet_index::{AnnParams, Index, IndexSpec, Meta, Metric, Model, SearchMode};

/// A little-endian `.npy` of `<f4` or `<i8`: its values as f64-free raw bytes and its shape.
fn read_npy(path: &Path) -> (Vec<u8>, Vec<usize>, String) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let (len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    let descr = header.split("'descr':").nth(1).unwrap();
    let descr = descr.split('\'').nth(1).unwrap().to_owned();
    let shape = header.split("'shape':").nth(1).unwrap();
    let shape = &shape[shape.find('(').unwrap() + 1..shape.find(')').unwrap()];
    let shape: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    (bytes[start + len..].to_vec(), shape, descr)
}

fn f32s(path: &Path) -> (Vec<f32>, usize) {
    let (raw, shape, descr) = read_npy(path);
    assert_eq!(descr, "<f4", "{}: float32 expected", path.display());
    let v = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (v, shape[1])
}

fn i64s(path: &Path) -> (Vec<i64>, usize) {
    let (raw, shape, descr) = read_npy(path);
    assert_eq!(descr, "<i8", "{}: int64 expected", path.display());
    let v = raw
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (v, shape[1])
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let Some(base) = arg("--base") else {
        eprintln!(
            "usage: cargo bench -p triplet-index --bench ann -- --base B.npy --queries Q.npy \
             --truth T.npy [--m 16] [--ef-construction 128] [--ef-search 64] [--out DIR]"
        );
        return;
    };
    let queries = arg("--queries").expect("--queries");
    let truth = arg("--truth").expect("--truth");
    let num = |name: &str, default: usize| arg(name).map_or(default, |v| v.parse().unwrap());
    let (m, efc, efs) = (
        num("--m", 16),
        num("--ef-construction", 128),
        num("--ef-search", 64),
    );
    let out = arg("--out").map_or_else(
        || std::env::temp_dir().join(format!("ann-bench-{}", std::process::id())),
        PathBuf::from,
    );
    // --keep: leave the index for the next run, which then only searches it.
    let keep = args.iter().any(|a| a == "--keep");
    let reuse = keep && out.join("index.json").is_file();
    if !reuse {
        let _ = std::fs::remove_dir_all(&out);
    }

    let (base, dim) = f32s(Path::new(&base));
    let (queries, qdim) = f32s(Path::new(&queries));
    assert_eq!(dim, qdim, "base and queries differ in dimension");
    let (truth, tk) = i64s(Path::new(&truth));
    let n = base.len() / dim;
    let spec = IndexSpec {
        dim,
        metric: Metric::Euclidean,
        model: Model {
            key: "benchmark".into(),
            info: serde_json::Value::Null,
        },
        ann: AnnParams {
            connectivity: m,
            expansion_add: efc,
            expansion_search: efs,
            exact_below: 0,
        },
    };
    let rss_before = peak_rss_mb();
    let started = Instant::now();
    let index = if reuse {
        Index::open(&out).unwrap()
    } else {
        Index::build(&out, spec, &base, vec![Meta::default(); n]).unwrap()
    };
    let build_s = if reuse {
        f64::NAN
    } else {
        started.elapsed().as_secs_f64()
    };
    let graph_mb = index.graph_memory() as f64 / 1e6;
    drop(index);
    drop(base);
    let started = Instant::now();
    let mut index = Index::open(&out).unwrap();
    let load_s = started.elapsed().as_secs_f64();
    index.set_expansion_search(efs);
    let nq = queries.len() / dim;
    let k = 10;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            // Warm-up: a tenth of the queries.
            index
                .search_many(
                    &queries[..(nq / 10).max(1) * dim],
                    k,
                    SearchMode::Approximate,
                )
                .unwrap();
            let started = Instant::now();
            let hits = index
                .search_many(&queries, k, SearchMode::Approximate)
                .unwrap();
            (nq as f64 / started.elapsed().as_secs_f64(), hits)
        })
    };
    let (qps1, hits) = run(1);
    let (qps2, _) = run(2);
    // usearch alone on the saved graph, one thread: what the index adds around it.
    let graph = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("graph.usearch"))
        .find(|p| p.is_file())
        .unwrap();
    let raw = usearch::Index::restore(graph.to_str().unwrap()).unwrap();
    raw.change_expansion_search(efs);
    let started = Instant::now();
    for q in queries.chunks_exact(dim) {
        std::hint::black_box(raw.search(q, k).unwrap());
    }
    let raw_qps = nq as f64 / started.elapsed().as_secs_f64();
    let simd = raw.hardware_acceleration();
    drop(raw);
    let mut found = 0usize;
    for (q, h) in hits.iter().enumerate() {
        let want = &truth[q * tk..q * tk + k.min(tk)];
        found += h.iter().filter(|h| want.contains(&(h.id as i64))).count();
    }
    let recall = found as f64 / (nq * k.min(tk)) as f64;
    println!(
        "{}",
        serde_json::json!({
            "library": "triplet-index (usearch)",
            "n": n, "dim": dim, "m": m, "ef_construction": efc, "ef_search": efs,
            "build_s": build_s,
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_build_mb": rss_before,
            "graph_mb": graph_mb,
            "disk_mb": dir_size(&out) as f64 / 1e6,
            "load_s": load_s,
            "qps_1thread": qps1,
            "qps_2threads": qps2,
            "usearch_alone_qps_1thread": raw_qps,
            "usearch_simd": simd,
            "recall_at_10": recall,
        })
    );
    if !keep {
        let _ = std::fs::remove_dir_all(&out);
    }
}
