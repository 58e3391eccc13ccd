#!/usr/bin/env python3
"""faiss-cpu baseline for Triplet's `eval` speed benchmark: exact k-nearest-neighbour search.

Problem size is Fashion-MNIST test vs train: 10,000 queries against 60,000 references, dim 64,
float32, on the CPU, exact (brute-force) Euclidean search with `faiss.IndexFlatL2`.

Data (deterministic, from --seed; numpy PCG64): 10 classes with centres
`centre_scale * N(0, I_64)`; every point is its class centre + `noise * N(0, I_64)`, then
L2-normalised, float32. References: 6000 per class, queries: 1000 per class, each set shuffled.
Labels are int64. With `--write DIR` the four arrays are saved as plain .npy (format v1.0,
little-endian, C order) -- `queries.npy` (10000x64 <f4), `references.npy` (60000x64 <f4),
`query_labels.npy` (10000 <i8), `reference_labels.npy` (60000 <i8) -- so the Rust benchmark
reads exactly the same data.

Timings (wall clock, time.perf_counter), after `faiss.omp_set_num_threads(--threads)`:
  * `index.add(references)` on a fresh IndexFlatL2, --repeats times;
  * `index.search(queries, k)` for k = 1, 8 (--repeats times) and k = 6000 = the largest class,
    which is what PML's AccuracyCalculator(k="max_bin_count") searches for MAP@R
    (--repeats-large times); one untimed k=1 search warms up first;
  * PML's whole `AccuracyCalculator.get_accuracy(query, query_labels, reference,
    reference_labels)` with precision_at_1, r_precision, mean_average_precision_at_r,
    k="max_bin_count" and the default knn_func (FaissKNN, i.e. faiss IndexFlatL2 on the CPU:
    the script checks that PML's knn really is faiss), --pml-repeats times. That is what a PML
    user runs; it includes the index build, the k=6000 search and the metric computation in torch.
Each measurement prints one JSON line with median_s and min_s (PML lines add the metric values).
Run on an idle machine: a concurrent compile on a 2-core box inflates these numbers a lot.

Usage:
  python scripts/bench_knn_faiss.py --threads 2 --write /tmp/knn-bench
Pairs with (same data, same machine, same session):
  cargo bench -p triplet-train --bench knn --profile dev -- --data /tmp/knn-bench

Flags: --threads (default 2), --repeats (5), --repeats-large (3, for k >= 1000), --pml-repeats (2,
0 skips PML), --ks (default 1,8,6000), --seed (0), --write DIR, --centre-scale (0.5), --noise (1.0),
--dim (64), --classes (10), --ref-per-class (6000), --query-per-class (1000).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np


def make_data(seed, classes, ref_per_class, query_per_class, dim, centre_scale, noise):
    rng = np.random.Generator(np.random.PCG64(seed))
    centres = centre_scale * rng.standard_normal((classes, dim))

    def draw(per_class):
        labels = np.repeat(np.arange(classes, dtype=np.int64), per_class)
        labels = labels[rng.permutation(len(labels))]
        x = centres[labels] + noise * rng.standard_normal((len(labels), dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return np.ascontiguousarray(x, dtype="<f4"), np.ascontiguousarray(labels, dtype="<i8")

    references, reference_labels = draw(ref_per_class)
    queries, query_labels = draw(query_per_class)
    return queries, references, query_labels, reference_labels


def write_npy(path, a):
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(a), version=(1, 0), allow_pickle=False)


def timed(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--repeats-large", type=int, default=3, help="repeats for k >= 1000")
    ap.add_argument("--pml-repeats", type=int, default=2, help="0 skips PML")
    ap.add_argument("--ks", default="1,8,6000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", metavar="DIR")
    ap.add_argument("--centre-scale", type=float, default=0.5)
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--ref-per-class", type=int, default=6000)
    ap.add_argument("--query-per-class", type=int, default=1000)
    args = ap.parse_args()

    queries, references, query_labels, reference_labels = make_data(
        args.seed, args.classes, args.ref_per_class, args.query_per_class, args.dim,
        args.centre_scale, args.noise)
    if args.write:
        os.makedirs(args.write, exist_ok=True)
        for name, a in [("queries", queries), ("references", references),
                        ("query_labels", query_labels), ("reference_labels", reference_labels)]:
            write_npy(os.path.join(args.write, name + ".npy"), a)

    import faiss  # here, so that bench_knn_torch.py can import the data generator alone

    faiss.omp_set_num_threads(args.threads)
    common = {"faiss": faiss.__version__, "threads": args.threads, "n_queries": len(queries),
              "n_references": len(references), "dim": args.dim, "seed": args.seed}

    def report(impl, op, k, times, **extra):
        print(json.dumps({"impl": impl, "op": op, **common, "k": k,
                          "median_s": statistics.median(times), "min_s": min(times),
                          "repeats": len(times), **extra,
                          "loadavg_1m": round(os.getloadavg()[0], 2)}), flush=True)

    def build():
        index = faiss.IndexFlatL2(args.dim)
        index.add(references)
        return index

    times, index = timed(build, args.repeats)
    report("faiss-cpu", "add", None, times)

    index.search(queries, 1)  # warm-up (thread pool, page faults); not timed
    for k in [int(s) for s in args.ks.split(",")]:
        repeats = args.repeats_large if k >= 1000 else args.repeats
        times, (_, idx) = timed(lambda: index.search(queries, k), repeats)
        p1 = float(np.mean(reference_labels[idx[:, 0]] == query_labels))
        report("faiss-cpu", "search", k, times, precision_at_1=p1)
        del idx

    if args.pml_repeats > 0:
        import torch
        from pytorch_metric_learning import __version__ as pml_version
        from pytorch_metric_learning.utils import inference
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        torch.set_num_threads(args.threads)
        calc = AccuracyCalculator(
            include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
            k="max_bin_count")
        # PML's default knn must be faiss (FaissKNN -> IndexFlatL2), not the torch fallback.
        assert isinstance(calc.knn_func, inference.FaissKNN), type(calc.knn_func)
        assert getattr(inference, "faiss", None) is faiss, "PML did not import faiss"
        assert calc.knn_func.index_init_fn is faiss.IndexFlatL2
        q, r = torch.from_numpy(queries), torch.from_numpy(references)
        ql, rl = torch.from_numpy(query_labels), torch.from_numpy(reference_labels)
        times, acc = timed(lambda: calc.get_accuracy(q, ql, r, rl), args.pml_repeats)
        report("pml-accuracy-calculator", "get_accuracy", "max_bin_count", times,
               k_searched=int(np.bincount(reference_labels).max()), pml=pml_version,
               torch=torch.__version__, knn_func="FaissKNN(IndexFlatL2)",
               **{m: float(v) for m, v in acc.items()})


if __name__ == "__main__":
    main()
