"""The ANN benchmark's data and its faiss side (docs/BENCHMARKS.md, "Embedding index").

Two steps, the same files for Triplet's index and for faiss:

    # Clustered unit vectors (1,000 Gaussian centres, noise 0.3, L2-normalised, as a triplet
    # model's embeddings are), separate queries, and the exact 10 nearest of each query.
    python scripts/ann_benchmark.py data --n 1000000 --queries 10000 --dim 64 --out /tmp/ann64

    # faiss IndexHNSWFlat with the same graph parameters as `triplet index build`'s defaults.
    python scripts/ann_benchmark.py faiss --data /tmp/ann64 --m 16 --ef-construction 128 --ef-search 64

    # Triplet's index (usearch's HNSW) on the same files:
    cargo bench -p triplet-index --bench ann -- --base /tmp/ann64/base.npy \
        --queries /tmp/ann64/queries.npy --truth /tmp/ann64/truth.npy

Each prints one JSON line: build time (2 threads), peak RSS, size on disk, load time,
queries/s on 1 and 2 threads (all queries in one batch, after a warm-up), recall@10.
Needs numpy and faiss-cpu (pip install numpy faiss-cpu).
"""

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np


def make_data(args):
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((1000, args.dim), dtype=np.float32)

    def draw(n):
        out = np.empty((n, args.dim), dtype=np.float32)
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            c = centres[rng.integers(0, len(centres), m)]
            x = c + 0.3 * rng.standard_normal((m, args.dim), dtype=np.float32)
            out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    os.makedirs(args.out, exist_ok=True)
    base, queries = draw(args.n), draw(args.queries)
    np.save(os.path.join(args.out, "base.npy"), base)
    np.save(os.path.join(args.out, "queries.npy"), queries)
    import faiss

    exact = faiss.IndexFlatL2(args.dim)
    exact.add(base)
    _, truth = exact.search(queries, 10)
    np.save(os.path.join(args.out, "truth.npy"), truth.astype(np.int64))
    print(json.dumps({"n": args.n, "queries": args.queries, "dim": args.dim, "out": args.out}))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_faiss(args):
    import faiss

    base = np.load(os.path.join(args.data, "base.npy"))
    queries = np.load(os.path.join(args.data, "queries.npy"))
    truth = np.load(os.path.join(args.data, "truth.npy"))
    n, dim = base.shape
    rss_before = peak_rss_mb()
    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(dim, args.m)
    index.hnsw.efConstruction = args.ef_construction
    index.add(base)
    build_s = time.perf_counter() - started
    del base
    path = os.path.join(tempfile.mkdtemp(), "hnsw.faiss")
    faiss.write_index(index, path)
    disk_mb = os.path.getsize(path) / 1e6
    del index
    started = time.perf_counter()
    index = faiss.read_index(path)
    load_s = time.perf_counter() - started
    index.hnsw.efSearch = args.ef_search
    results = {}
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        index.search(queries[: len(queries) // 10], 10)  # warm-up
        started = time.perf_counter()
        _, found = index.search(queries, 10)
        results[threads] = (len(queries) / (time.perf_counter() - started), found)
    found = results[1][1]
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth[:, :10]))
    os.remove(path)
    print(
        json.dumps(
            {
                "library": f"faiss {faiss.__version__} IndexHNSWFlat",
                "n": n,
                "dim": dim,
                "m": args.m,
                "ef_construction": args.ef_construction,
                "ef_search": args.ef_search,
                "build_s": build_s,
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_build_mb": rss_before,
                "disk_mb": disk_mb,
                "load_s": load_s,
                "qps_1thread": results[1][0],
                "qps_2threads": results[2][0],
                "recall_at_10": hits / (len(queries) * 10),
            }
        )
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="write base.npy, queries.npy and truth.npy")
    d.add_argument("--n", type=int, default=1_000_000)
    d.add_argument("--queries", type=int, default=10_000)
    d.add_argument("--dim", type=int, default=64)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", required=True)
    f = sub.add_parser("faiss", help="faiss IndexHNSWFlat on a data folder")
    f.add_argument("--data", required=True)
    f.add_argument("--m", type=int, default=16)
    f.add_argument("--ef-construction", type=int, default=128)
    f.add_argument("--ef-search", type=int, default=64)
    f.add_argument("--threads", type=int, default=2, help="threads for building")
    args = p.parse_args()
    make_data(args) if args.command == "data" else run_faiss(args)


if __name__ == "__main__":
    main()
