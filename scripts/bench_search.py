#!/usr/bin/env python3
"""`triplet search` over a 1M-image gallery: peak memory and time per query batch, with a PyTorch
baseline (torch.cdist + torch.topk in blocks, what a PyTorch user writes; PML's InferenceModel
needs faiss) on the same embeddings in the same session.

Steps (all under --work):
1. trains the quickstart model for one epoch (unless --run names a run folder);
2. `triplet embed`s the 2,000 test images of the shipped Fashion-MNIST subset;
3. writes a gallery folder as `triplet embed` does (embeddings.npy, labels.csv) of --gallery rows:
   the 2,000 real embeddings repeated (so every row is a real model output);
4. runs `triplet search --gallery GALLERY --query ...` for each query batch size (the shipped
   applications fixture's 120 PNGs, cut to 1, 10 and 120 queries) under /usr/bin/time -v, and
   reads its own "searched N queries ... in S s" line and the process's peak RSS;
5. the PyTorch baseline: the same queries' embeddings (from `triplet embed`) against the same
   gallery, k nearest by torch.cdist + topk over blocks of the gallery, the same thread count.

Prints one JSON line per measurement. Needs numpy and torch (scripts/requirements.txt) for the
baseline only; --no-torch skips it.

Usage: RAYON_NUM_THREADS=2 python scripts/bench_search.py --triplet target/debug/triplet \
           --work /tmp/search-bench [--gallery 1000000] [--k 10] [--threads 2]
"""
import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def read_npy(path):
    import numpy as np
    return np.load(path)


def write_gallery(src, dst, rows):
    """embeddings.npy + labels.csv of `rows` rows, the source's rows repeated."""
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "embeddings.npy"), "rb") as f:
        magic = f.read(10)
        hlen = int.from_bytes(magic[8:10], "little")
        header = f.read(hlen).decode()
        data = f.read()
    shape = re.search(r"'shape': \((\d+), (\d+)\)", header)
    n, dim = int(shape.group(1)), int(shape.group(2))
    row_bytes = dim * 4
    new_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, dim)
    pad = (64 - (10 + len(new_header) + 1) % 64) % 64
    new_header += " " * pad + "\n"
    with open(os.path.join(src, "labels.csv")) as f:
        labels = list(csv.reader(f))[1:]
    with open(os.path.join(dst, "embeddings.npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(new_header).to_bytes(2, "little") + new_header.encode())
        full, rest = divmod(rows, n)
        for _ in range(full):
            f.write(data)
        f.write(data[: rest * row_bytes])
    with open(os.path.join(dst, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i in range(rows):
            p, l = labels[i % n]
            w.writerow([f"{p}@{i // n}", l])
    return dim


def triplet_search(exe, run, gallery, queries, k):
    out = subprocess.run(
        ["/usr/bin/time", "-v", exe, "search", "--checkpoint", run, "--gallery", gallery,
         "--k", str(k), "--query", *queries],
        check=True, capture_output=True, text=True)
    searched = re.search(r"searched (\d+) queries against (\d+) gallery embeddings in ([\d.]+) s",
                         out.stdout)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", out.stderr)
    parts = [float(x) for x in wall.group(1).split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {
        "queries": int(searched.group(1)),
        "gallery": int(searched.group(2)),
        "search_seconds": float(searched.group(3)),
        "process_seconds": seconds,
        "peak_rss_mib": int(rss.group(1)) / 1024,
    }


def torch_search(gallery_npy, query_npy, k, threads, block=65536):
    import numpy as np
    import resource
    import torch
    torch.set_num_threads(threads)
    g = torch.from_numpy(np.load(gallery_npy))
    q = torch.from_numpy(np.load(query_npy))
    start = time.perf_counter()
    best_d = torch.full((q.shape[0], k), float("inf"))
    best_i = torch.zeros((q.shape[0], k), dtype=torch.long)
    for s in range(0, g.shape[0], block):
        chunk = g[s:s + block]
        cand_d = torch.cat([best_d, torch.cdist(q, chunk)], 1)
        cand_i = torch.cat(
            [best_i, torch.arange(s, s + chunk.shape[0]).expand(q.shape[0], -1)], 1)
        best_d, pos = torch.topk(cand_d, k, dim=1, largest=False)
        best_i = torch.gather(cand_i, 1, pos)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"queries": q.shape[0], "gallery": g.shape[0], "search_seconds": seconds,
            "peak_rss_mib": peak, "first": best_i[:, 0].tolist()[:3]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--triplet", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--run")
    ap.add_argument("--gallery", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    exe = os.path.abspath(args.triplet)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    run = args.run or os.path.join(work, "run")
    if not args.run and not os.path.exists(os.path.join(run, "model.bpk")):
        shutil.rmtree(run, ignore_errors=True)
        sh([exe, "train", "--config", "configs/quickstart.toml", "--epochs", "1", "--out", run],
           cwd=ROOT)
    test = os.path.join(work, "test-emb")
    sh([exe, "embed", "--checkpoint", run, "--data",
        os.path.join(ROOT, "datasets/fashion-mnist-small"), "--out", test])
    gallery = os.path.join(work, "gallery")
    dim = write_gallery(test, gallery, args.gallery)
    images = os.path.join(ROOT, "datasets/fashion-mnist-small/applications/images")
    all_queries = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(images) for f in fs if f.endswith(".png"))
    print(json.dumps({"gallery": args.gallery, "dim": dim, "k": args.k,
                      "threads": args.threads}), flush=True)
    for n in (1, 10, 120):
        queries = all_queries[:n]
        runs = [triplet_search(exe, run, gallery, queries, args.k) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["search_seconds"])
        best["peak_rss_mib_max"] = max(r["peak_rss_mib"] for r in runs)
        print(json.dumps({"tool": "triplet search", **best}), flush=True)
        if args.no_torch:
            continue
        if n < 2:
            continue  # an embed folder needs two classes: the baseline starts at 10 queries
        qdir = os.path.join(work, f"q{n}")
        shutil.rmtree(qdir, ignore_errors=True)
        for i, p in enumerate(queries):
            d = os.path.join(qdir, "ab"[i % 2])
            os.makedirs(d, exist_ok=True)
            shutil.copy(p, os.path.join(d, f"{i:04d}.png"))
        qemb = os.path.join(work, f"q{n}-emb")
        sh([exe, "embed", "--checkpoint", run, "--data", qdir, "--out", qemb])
        code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r});"
                f"import bench_search as b, json;"
                f"r=[b.torch_search({os.path.join(gallery, 'embeddings.npy')!r}, "
                f"{os.path.join(qemb, 'embeddings.npy')!r}, {args.k}, {args.threads}) "
                f"for _ in range({args.repeats})];"
                f"print(json.dumps({{'tool': 'pytorch cdist+topk', **min(r, key=lambda x: x['search_seconds'])}}))")
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True)
        print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
