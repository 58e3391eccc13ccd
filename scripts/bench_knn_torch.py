#!/usr/bin/env python3
"""PyTorch baseline for `triplet eval`'s nearest neighbours on a GPU: exact k-NN with
`torch.cdist` + `torch.topk`, blocked over the queries (faiss-free, what a PyTorch user writes).

Same data as `scripts/bench_knn_faiss.py` (imported from it: 10,000 queries against 60,000
references, 64-d, L2-normalised, 10 classes), so the Rust benchmark
`cargo bench --workspace --bench knn --profile dev -- --data DIR --backend cuda` runs on exactly
the same arrays (`--write DIR` saves them).

For k = 1, 8 and 6000 (the largest class, which MAP@R needs): one untimed warm-up, then
--repeats (k < 1000) or --repeats-large searches, each ending with `torch.cuda.synchronize()`
and the indices copied to the host (as Triplet's search hands them to the host). Queries go in
blocks of --block rows, so a block's distances take block x 60,000 floats. Prints one JSON line
per k (median and min seconds, and P@1 from the first neighbour).

Usage: python scripts/bench_knn_torch.py --device cuda [--write DIR] [--repeats 5]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_knn_faiss import make_data, write_npy  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--repeats-large", type=int, default=3)
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--ks", default="1,8,6000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", metavar="DIR")
    args = ap.parse_args()
    queries, references, query_labels, reference_labels = make_data(
        args.seed, 10, 6000, 1000, 64, 0.5, 1.0)
    if args.write:
        os.makedirs(args.write, exist_ok=True)
        for name, a in [("queries", queries), ("references", references),
                        ("query_labels", query_labels), ("reference_labels", reference_labels)]:
            write_npy(os.path.join(args.write, name + ".npy"), a)
    device = torch.device(args.device)
    q = torch.from_numpy(queries).to(device)
    r = torch.from_numpy(references).to(device)
    ql = torch.from_numpy(query_labels)
    rl = torch.from_numpy(reference_labels)

    def search(k):
        out = []
        for start in range(0, len(q), args.block):
            d = torch.cdist(q[start:start + args.block], r)
            out.append(torch.topk(d, k, dim=1, largest=False).indices.cpu())
        if device.type == "cuda":
            torch.cuda.synchronize()
        return torch.cat(out)

    for k in [int(s) for s in args.ks.split(",")]:
        search(k)  # warm-up: kernels, allocator
        times = []
        for _ in range(args.repeats_large if k >= 1000 else args.repeats):
            t = time.perf_counter()
            idx = search(k)
            times.append(time.perf_counter() - t)
        p1 = float((rl[idx[:, 0]] == ql).double().mean())
        print(json.dumps({
            "impl": "torch-cdist-topk", "op": "search", "k": k, "device": args.device,
            "torch": torch.__version__, "n_queries": len(q), "n_references": len(r), "dim": 64,
            "median_s": statistics.median(times), "min_s": min(times), "repeats": len(times),
            "precision_at_1": p1}), flush=True)


if __name__ == "__main__":
    main()
