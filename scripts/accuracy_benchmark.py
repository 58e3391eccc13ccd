#!/usr/bin/env python3
"""Accuracy protocols of docs/PROTOCOLS.md on full Fashion-MNIST: Triplet (its CLI) against PyTorch +
pytorch-metric-learning (PML), same model, epochs, batch composition and seeds.

Protocols (both implementations): the reference CNN -> 64-d L2-normalised (`Net` of
scripts/bench_train.py on the PyTorch side), Adam lr 1e-3 (no weight decay, constant lr),
Euclidean distance, semi-hard mining, margin 0.2, mean reduction, no augmentation, input
(x/255 - 0.2860)/0.3530, 28x28 grey; one epoch = floor(N_train / (P*K)) batches.

- closed: train on the 60k train images, P=8 x K=16. Evaluate (a) the 10k test images
  leave-one-out (P@1, R-Precision, MAP@R, Recall@1/2/4/8) and (b) the test images as queries
  against the 60k train images as references (the same metrics).
- open: train on the train images of classes 0-5, P=6 x K=16. Evaluate the test images of classes
  6-9 leave-one-out.

Triplet: writes a config per (protocol, seed) into the work folder (configs/fashion-mnist.toml
with the protocol's changes), runs `triplet train`, then `triplet eval` (with `--classes 6,7,8,9`
for open; with `--reference DATA` for closed (b)) and reads EVALDIR/metrics.json. The commands run
with RAYON_NUM_THREADS=--threads; their output goes to *.log files in the work folder.

PyTorch: torch.manual_seed(seed) (and numpy/random, which MPerClassSampler uses),
torch.set_num_threads(--threads), MPerClassSampler(m=16, batch_size=P*16) + DataLoader
(num_workers=0), TripletMarginMiner("semihard") + TripletMarginLoss(margin=0.2), metrics with
PML's AccuracyCalculator(k="max_bin_count") plus Recall@K computed from the same neighbours.
Neighbours (--knn): AccuracyCalculator's default FaissKNN (exact faiss.IndexFlatL2, with
--threads OpenMP threads) when faiss imports, else PML's exact CustomKNN(LpDistance) in query
blocks of --knn-batch.

Times: train wall = whole `triplet train` command / for PyTorch: reading the train IDX, building
the model and all epochs including batch loading. Eval wall = whole `triplet eval` command / for
PyTorch: reading the IDX files, embedding queries (and references), neighbours and metrics.

Prints the machine, the versions, one Markdown row per (protocol, impl, seed) and a summary table
per protocol; writes all results to --json (rewritten after every run, so partial results
survive a failure).

Usage:
  python scripts/accuracy_benchmark.py --epochs 5 --seeds 0 1 2
  python scripts/accuracy_benchmark.py --impl pytorch --epochs 1 --max-batches 5   # smoke test
"""
import argparse
import gzip
import importlib.metadata
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BASE_CONFIG = REPO / "configs" / "fashion-mnist.toml"
MEAN, STD = 0.2860, 0.3530
K = 16
MARGIN = 0.2
LR = 1e-3
EMBED_BATCH = 256
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
PROTOCOLS = {
    # train_classes None = all; evals: (name, query part, query classes, reference part or None)
    "closed": {"p": 8, "train_classes": None,
               "evals": [("loo", "test", None, None), ("vs_train", "test", None, "train")]},
    "open": {"p": 6, "train_classes": [0, 1, 2, 3, 4, 5],
             "evals": [("loo", "test", [6, 7, 8, 9], None)]},
}
EVAL_TITLES = {"loo": "test leave-one-out", "vs_train": "test vs 60k train"}
METRICS = ["precision_at_1", "r_precision", "mean_average_precision_at_r",
           "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"]
SHORT = {"precision_at_1": "P@1", "r_precision": "R-Prec", "mean_average_precision_at_r": "MAP@R",
         "recall_at_1": "R@1", "recall_at_2": "R@2", "recall_at_4": "R@4", "recall_at_8": "R@8"}
KNN_TITLES = {"faiss": "PML's default FaissKNN, faiss IndexFlatL2",
              "exact": "PML's CustomKNN over LpDistance"}
IMPL_TITLES = {"triplet": "Triplet", "pytorch": "PyTorch+PML"}


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------------------------------- data

def idx_path(folder, name):
    for cand in (folder / (name + ".gz"), folder / name):
        if cand.is_file():
            return cand
    return None


def check_data(folder):
    if not folder.is_dir():
        fail(f"data folder {folder} does not exist. It must hold the four Fashion-MNIST IDX files "
             "(train-images-idx3-ubyte.gz, ...); on Debian `apt-get install dataset-fashion-mnist` "
             "puts them in /usr/share/datasets/fashion-mnist/.")
    missing = [n for pair in IDX_FILES.values() for n in pair if idx_path(folder, n) is None]
    if missing:
        fail(f"data folder {folder} lacks {', '.join(m + '[.gz]' for m in missing)}")


def read_idx(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        fail(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != math.prod(dims):
        fail(f"{path}: {len(raw) - offset} bytes of data, header says {dims}")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=offset).reshape(dims)  # writable


def load_part(folder, part, classes=None):
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the train or test part."""
    images = read_idx(idx_path(folder, IDX_FILES[part][0]))
    labels = read_idx(idx_path(folder, IDX_FILES[part][1])).astype(np.int64)
    if len(images) != len(labels):
        fail(f"{folder}: {len(images)} {part} images but {len(labels)} labels")
    if classes is not None:
        keep = np.isin(labels, classes)
        images, labels = images[keep], labels[keep]
    return images, labels


def batches_per_epoch(folder, protocol):
    spec = PROTOCOLS[protocol]
    labels = read_idx(idx_path(folder, IDX_FILES["train"][1]))
    n = len(labels) if spec["train_classes"] is None else int(np.isin(labels, spec["train_classes"]).sum())
    return n, n // (spec["p"] * K)


# ------------------------------------------------------------------------------------- pytorch

def resolve_knn(choice):
    """'faiss' (PML's default knn_func, FaissKNN = exact faiss.IndexFlatL2) or 'exact' (PML's
    CustomKNN over LpDistance, in torch); 'auto' = faiss when it imports."""
    if choice in ("auto", "faiss"):
        try:
            import faiss  # noqa: F401
            return "faiss"
        except ImportError:
            if choice == "faiss":
                fail("--knn faiss: faiss does not import (pip install faiss-cpu, see "
                     "scripts/requirements.txt)")
    return "exact"


def make_calculator(knn, knn_batch, threads):
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    class Calculator(AccuracyCalculator):
        """PML's metrics plus Recall@K (some neighbour of the query's class among the K nearest),
        over the same neighbours, non-lone queries only (as PML's precision_at_1)."""

        def _recall(self, k, knn_labels, query_labels, not_lone_query_mask, **kwargs):
            if not torch.any(not_lone_query_mask):
                return 0.0
            knn = knn_labels[not_lone_query_mask][:, :k]
            q = query_labels[not_lone_query_mask]
            return (knn == q[:, None]).any(dim=1).double().mean().item()  # float64, as PML

        def calculate_recall_at_1(self, **kw):
            return self._recall(1, **kw)

        def calculate_recall_at_2(self, **kw):
            return self._recall(2, **kw)

        def calculate_recall_at_4(self, **kw):
            return self._recall(4, **kw)

        def calculate_recall_at_8(self, **kw):
            return self._recall(8, **kw)

        def requires_knn(self):
            return super().requires_knn() + ["recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"]

    if knn == "faiss":
        import faiss
        from pytorch_metric_learning.utils.inference import FaissKNN
        faiss.omp_set_num_threads(threads)
        knn_func = FaissKNN()  # AccuracyCalculator's default
    else:
        knn_func = CustomKNN(LpDistance(p=2, power=1, normalize_embeddings=False),
                             batch_size=knn_batch or None)
    return Calculator(include=tuple(METRICS), k="max_bin_count", device=torch.device("cpu"),
                      knn_func=knn_func)


def embed(model, images):
    import torch
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(images), EMBED_BATCH):
            x = torch.from_numpy(images[s:s + EMBED_BATCH]).unsqueeze(1).float()
            out.append(model((x / 255.0 - MEAN) / STD))
    return torch.cat(out)


def run_pytorch(protocol, seed, args, work):
    import torch
    from pytorch_metric_learning import losses, miners, samplers
    from torch.utils.data import DataLoader, TensorDataset

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import Net

    spec = PROTOCOLS[protocol]
    p = spec["p"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    np.random.seed(seed)  # MPerClassSampler draws with numpy's global generator
    random.seed(seed)

    t0 = time.perf_counter()
    images, labels = load_part(args.data, "train", spec["train_classes"])
    full_batches = len(labels) // (p * K)
    batches = full_batches if args.max_batches is None else min(full_batches, args.max_batches)
    sampler = samplers.MPerClassSampler(labels, m=K, batch_size=p * K,
                                        length_before_new_iter=batches * p * K)
    dataset = TensorDataset(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels))
    loader = DataLoader(dataset, batch_size=p * K, sampler=sampler, num_workers=0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard")
    loss_fn = losses.TripletMarginLoss(margin=MARGIN)
    epochs = []
    for epoch in range(args.epochs):
        te = time.perf_counter()
        model.train()
        total, n, triplets = 0.0, 0, 0
        for x, y in loader:
            x = (x.float() / 255.0 - MEAN) / STD
            emb = model(x)
            mined = miner(emb, y)
            loss = loss_fn(emb, y, mined)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            triplets += len(mined[0])
            n += 1
        sec = time.perf_counter() - te
        epochs.append({"epoch": epoch + 1, "loss": total / max(n, 1), "batches": n,
                       "mean_triplets": triplets / max(n, 1), "seconds": sec})
        print(f"  [pytorch {protocol} seed {seed}] epoch {epoch + 1}/{args.epochs}: "
              f"loss {total / max(n, 1):.4f}, {n} batches, {sec:.1f} s", flush=True)
    train_s = time.perf_counter() - t0
    del images, labels, dataset, loader

    calc = make_calculator(args.knn, args.knn_batch, args.threads)
    evals = {}
    for name, qpart, qclasses, rpart in spec["evals"]:
        te = time.perf_counter()
        q_img, q_lab = load_part(args.data, qpart, qclasses)
        t_embed = time.perf_counter()
        q_emb = embed(model, q_img)
        n_ref = len(q_lab)
        if rpart is not None:
            r_img, r_lab = load_part(args.data, rpart)
            r_emb = embed(model, r_img)
            n_ref = len(r_lab)
        embed_s = time.perf_counter() - t_embed
        tm = time.perf_counter()
        if rpart is None:
            res = calc.get_accuracy(q_emb, torch.from_numpy(q_lab))
        else:
            res = calc.get_accuracy(q_emb, torch.from_numpy(q_lab), r_emb, torch.from_numpy(r_lab),
                                    ref_includes_query=False)
        metrics_s = time.perf_counter() - tm
        wall = time.perf_counter() - te
        evals[name] = {"queries": len(q_lab), "references": n_ref,
                       **{m: float(res[m]) for m in METRICS},
                       "wall_s": wall, "embed_s": embed_s, "metrics_s": metrics_s}
        print(f"  [pytorch {protocol} seed {seed}] eval {name}: P@1 {res['precision_at_1']:.4f} "
              f"MAP@R {res['mean_average_precision_at_r']:.4f}; {wall:.1f} s (embedding {embed_s:.1f} s, "
              f"neighbours + metrics {metrics_s:.1f} s)", flush=True)
    return {"protocol": protocol, "impl": "pytorch", "seed": seed, "epochs": args.epochs, "p": p,
            "k": K, "batches_per_epoch": batches, "full_batches_per_epoch": full_batches,
            "final_loss": epochs[-1]["loss"] if epochs else None,
            "train_wall_s": train_s, "train_epochs_s": sum(e["seconds"] for e in epochs),
            "epoch_log": epochs, "evals": evals}


# ------------------------------------------------------------------------------------- triplet

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def write_toml(cfg, path, comment=""):
    lines = [f"# {line}" for line in comment.splitlines()] + ([""] if comment else [])
    for section, table in cfg.items():
        if not isinstance(table, dict):
            raise TypeError(f"top-level key {section} is not a table")
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))


def triplet_config(protocol, seed, args):
    with open(BASE_CONFIG, "rb") as f:
        cfg = tomllib.load(f)
    data = cfg.setdefault("data", {})
    data["path"] = str(args.data)
    data["mean"] = [MEAN]
    data["std"] = [STD]
    data.pop("held_out_fraction", None)
    if protocol == "open":
        data["split"] = "by-class"
        data["held_out_classes"] = ["6", "7", "8", "9"]
    else:
        data["split"] = "none"
        data.pop("held_out_classes", None)
    cfg.setdefault("sampler", {}).update({"p": PROTOCOLS[protocol]["p"], "k": K})
    cfg.setdefault("augment", {}).update({"random_resized_crop": False, "horizontal_flip": False})
    cfg.setdefault("train", {}).update({"epochs": args.epochs, "seed": seed,
                                        "validate_every_epochs": 0})
    return cfg


def run_logged(cmd, log, env):
    """Runs cmd with stdout+stderr to log; returns the wall seconds; fails with the log tail."""
    t = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        f.flush()
        rc = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env,
                            cwd=REPO).returncode
    wall = time.perf_counter() - t
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print(f"\n`{' '.join(str(c) for c in cmd)}` exited with {rc} after {wall:.1f} s; "
              f"last lines of {log}:", file=sys.stderr)
        print("\n".join("  | " + line for line in tail), file=sys.stderr)
        raise RuntimeError(f"command failed (exit {rc}), see {log}")
    return wall


def read_train_log(run):
    """Epoch losses/seconds (and an end-of-training eval, if any) from RUN/metrics.jsonl."""
    path = run / "metrics.jsonl"
    epochs, evals = [], []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") == "epoch":
                epochs.append(rec)
            elif rec.get("kind") == "eval":
                evals.append(rec)
    return epochs, evals


def run_triplet(protocol, seed, args, work):
    spec = PROTOCOLS[protocol]
    folder = work / "triplet" / f"{protocol}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "config.toml"
    write_toml(triplet_config(protocol, seed, args), cfg_path,
               f"Written by scripts/accuracy_benchmark.py from configs/fashion-mnist.toml:\n"
               f"the {protocol} protocol of docs/PROTOCOLS.md, seed {seed}.")
    run = folder / "run"
    if run.exists():
        shutil.rmtree(run)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    print(f"  [triplet {protocol} seed {seed}] train (log {folder / 'train.log'})", flush=True)
    train_s = run_logged([args.triplet, "train", "--config", cfg_path, "--out", run],
                         folder / "train.log", env)
    epochs, train_evals = read_train_log(run)
    print(f"  [triplet {protocol} seed {seed}] trained in {train_s:.1f} s, final loss "
          f"{epochs[-1].get('loss') if epochs else 'n/a'}", flush=True)

    evals = {}
    for name, qpart, qclasses, rpart in spec["evals"]:
        out = folder / f"eval-{name}"
        if out.exists():
            shutil.rmtree(out)
        cmd = [args.triplet, "eval", "--checkpoint", run, "--data", args.data]
        if qclasses is not None:
            cmd += ["--classes", ",".join(str(c) for c in qclasses)]
        if rpart is not None:
            cmd += ["--reference", args.data]
        wall = run_logged(cmd + ["--out", out], folder / f"eval-{name}.log", env)
        mpath = out / "metrics.json"
        if not mpath.is_file():
            raise RuntimeError(f"{mpath} was not written (see {folder / f'eval-{name}.log'})")
        m = json.loads(mpath.read_text())
        missing = [k for k in METRICS if k not in m]
        if missing:
            print(f"  warning: {mpath} lacks {', '.join(missing)}", file=sys.stderr)
        evals[name] = {**{k: (float(m[k]) if m.get(k) is not None else None) for k in METRICS},
                       "wall_s": wall, "seconds": m.get("seconds"), "metrics_json": m}
        p1 = evals[name]["precision_at_1"]
        print(f"  [triplet {protocol} seed {seed}] eval {name}: P@1 {p1}; {wall:.1f} s", flush=True)
    full_n, full_batches = batches_per_epoch(args.data, protocol)
    return {"protocol": protocol, "impl": "triplet", "seed": seed, "epochs": args.epochs,
            "p": spec["p"], "k": K, "batches_per_epoch": full_batches,
            "full_batches_per_epoch": full_batches,
            "final_loss": epochs[-1].get("loss") if epochs else None,
            "train_wall_s": train_s,
            "train_epochs_s": sum(e.get("seconds") or 0.0 for e in epochs) if epochs else None,
            "epoch_log": epochs, "train_internal_evals": train_evals, "evals": evals,
            "config": str(cfg_path), "run": str(run)}


# -------------------------------------------------------------------------------------- report

def machine_info():
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": usable, "mem_gib": mem_gib,
            "os": platform.platform(), "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def versions(args, impls):
    v = {}
    for pkg in ("torch", "pytorch-metric-learning", "numpy", "faiss-cpu"):
        try:
            v[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            v[pkg] = None
    if "triplet" in impls:
        r = subprocess.run([str(args.triplet), "--version"], capture_output=True, text=True)
        v["triplet"] = (r.stdout or r.stderr).strip() if r.returncode == 0 else f"error {r.returncode}"
        v["triplet_binary"] = str(args.triplet)
        try:
            v["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                             capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    return v


def fmt(x, digits=4):
    return "—" if x is None else f"{x:.{digits}f}"


def fmt_s(x):
    return "—" if x is None else (f"{x:,.0f} s" if x >= 100 else f"{x:.1f} s")


def mean_std(values, digits=4, seconds=False):
    values = [v for v in values if v is not None]
    if not values:
        return "—", None
    m = statistics.fmean(values)
    if seconds:
        sd = statistics.stdev(values) if len(values) > 1 else None
        text = fmt_s(m) + ("" if sd is None else f" ± {sd:.0f}" if m >= 100 else f" ± {sd:.1f}")
    else:
        text = fmt(m, digits) + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")
    return text, m


def run_rows(results):
    out = ["| protocol | impl | seed | batches/epoch | final loss | LOO P@1 | LOO R-Prec | LOO MAP@R "
           "| vs-train P@1 | vs-train MAP@R | train wall | eval wall |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        loo, vt = r["evals"].get("loo", {}), r["evals"].get("vs_train", {})
        eval_wall = sum(e.get("wall_s") or 0.0 for e in r["evals"].values())
        out.append(f"| {r['protocol']} | {IMPL_TITLES[r['impl']]} | {r['seed']} | {r['batches_per_epoch']} "
                   f"| {fmt(r['final_loss'])} | {fmt(loo.get('precision_at_1'))} "
                   f"| {fmt(loo.get('r_precision'))} | {fmt(loo.get('mean_average_precision_at_r'))} "
                   f"| {fmt(vt.get('precision_at_1'))} | {fmt(vt.get('mean_average_precision_at_r'))} "
                   f"| {fmt_s(r['train_wall_s'])} | {fmt_s(eval_wall)} |")
    return "\n".join(out)


def summary(results, protocol, impls):
    rows = [r for r in results if r["protocol"] == protocol]
    if not rows:
        return "", {}
    by = {i: [r for r in rows if r["impl"] == i] for i in impls}
    impls = [i for i in impls if by[i]]
    seeds = sorted({r["seed"] for r in rows})
    head = (f"#### {protocol}: P={PROTOCOLS[protocol]['p']} × K={K}, {rows[0]['epochs']} epoch(s), "
            f"seed(s) {', '.join(map(str, seeds))}" + (" (mean ± std)" if len(seeds) > 1 else ""))
    two = len(impls) == 2
    cols = [IMPL_TITLES[i] for i in impls] + (["PyTorch / Triplet"] if two else [])
    out = [head, "", "| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    data = {}

    def line(label, key, getter, seconds=False, ratio=False):
        cells, means = [], []
        for i in impls:
            text, m = mean_std([getter(r) for r in by[i]], seconds=seconds)
            cells.append(text)
            means.append(m)
        data[key] = dict(zip(impls, means))
        if two:
            if ratio and None not in means and means[0] > 0:
                r = means[1] / means[0] if impls == ["triplet", "pytorch"] else means[0] / means[1]
                cells.append(f"{r:.2f}×")
                data[key]["ratio_pytorch_over_triplet"] = r
            else:
                cells.append("")
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    for name, *_ in PROTOCOLS[protocol]["evals"]:
        for m in METRICS:
            line(f"{EVAL_TITLES[name]}: {SHORT[m]}", f"{name}.{m}",
                 lambda r, name=name, m=m: r["evals"].get(name, {}).get(m))
    line("final-epoch mean loss", "final_loss", lambda r: r["final_loss"])
    line("train wall time", "train_wall_s", lambda r: r["train_wall_s"], seconds=True, ratio=True)
    line("train: sum of epoch times", "train_epochs_s", lambda r: r["train_epochs_s"], seconds=True,
         ratio=True)
    for name, *_ in PROTOCOLS[protocol]["evals"]:
        line(f"eval wall time ({EVAL_TITLES[name]})", f"{name}.wall_s",
             lambda r, name=name: r["evals"].get(name, {}).get("wall_s"), seconds=True, ratio=True)
    return "\n".join(out), data


def report(meta, results, impls, protocols):
    lines = ["### Accuracy protocols (docs/PROTOCOLS.md), full Fashion-MNIST", ""]
    m, v = meta["machine"], meta["versions"]
    lines.append(f"Machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs, "
                 f"{m['mem_gib']} GiB, {m['os']}; {meta['args']['threads']} threads each.")
    vs = [f"torch {v.get('torch')}", f"pytorch-metric-learning {v.get('pytorch-metric-learning')}"]
    if "triplet" in v:
        vs.insert(0, f"`{v['triplet']}`" + (f" (commit {v['git_commit']})" if v.get("git_commit") else ""))
    if meta["args"].get("knn") == "faiss":
        vs.append(f"faiss-cpu {v.get('faiss-cpu')}")
    lines.append("Versions: " + ", ".join(vs) + ".")
    if meta["args"].get("max_batches") is not None:
        lines.append(f"**Smoke run**: PyTorch limited to {meta['args']['max_batches']} batches per epoch "
                     "(--max-batches); Triplet always trains full epochs. Not a benchmark.")
    lines += ["", run_rows(results), ""]
    sums = {}
    for p in protocols:
        text, data = summary(results, p, impls)
        if text:
            lines += [text, ""]
            sums[p] = data
    lines.append("PyTorch / Triplet > 1 means Triplet is faster. Train wall: the whole `triplet train` "
                 "command / PyTorch from reading the IDX files to the last step. Eval wall: the whole "
                 "`triplet eval` command / PyTorch reading, embedding (batch 256), exact k-NN "
                 f"({KNN_TITLES.get(meta['args'].get('knn'), '—')}, k = max bin count) and "
                 "AccuracyCalculator's metrics.")
    return "\n".join(lines), sums


# ---------------------------------------------------------------------------------------- main

def resolve_triplet(arg):
    if arg is not None:
        return Path(arg)
    default = REPO / "target" / "debug" / "triplet"
    if default.exists():
        return default
    ctd = os.environ.get("CARGO_TARGET_DIR")
    if ctd and (Path(ctd) / "debug" / "triplet").exists():
        return Path(ctd) / "debug" / "triplet"
    return default


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    ap.add_argument("--impl", nargs="+", choices=["triplet", "pytorch"], default=["triplet", "pytorch"])
    ap.add_argument("--threads", type=int, default=2,
                    help="torch.set_num_threads / RAYON_NUM_THREADS (default 2)")
    ap.add_argument("--triplet", default=None,
                    help="the triplet binary (default target/debug/triplet, else "
                         "$CARGO_TARGET_DIR/debug/triplet if that exists)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/accuracy-benchmark"),
                    help="work folder: configs, runs, logs (default /tmp/accuracy-benchmark)")
    ap.add_argument("--json", type=Path, default=None, help="results file (default WORK/results.json)")
    ap.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                    help="folder with the four Fashion-MNIST IDX files (.gz or not)")
    ap.add_argument("--knn", choices=["auto", "faiss", "exact"], default="auto",
                    help="PyTorch eval neighbours: faiss = PML's default FaissKNN (IndexFlatL2), "
                         "exact = PML's CustomKNN(LpDistance) in torch; auto (default) = faiss if "
                         "it imports")
    ap.add_argument("--knn-batch", type=int, default=1000,
                    help="--knn exact: queries per distance block (default 1000; 0: one "
                         "10k x 60k matrix, faster but about 4.5 GB peak)")
    ap.add_argument("--max-batches", type=int, default=None,
                    help="DEBUG/smoke only: at most N batches per epoch on the PyTorch side. "
                         "Not supported by Triplet, which always trains full epochs.")
    args = ap.parse_args()
    impls = [i for i in ("triplet", "pytorch") if i in args.impl]
    protocols = [p for p in PROTOCOLS if p in args.protocols]
    if args.epochs < 1:
        fail("--epochs must be at least 1")
    if args.max_batches is not None and args.max_batches < 1:
        fail("--max-batches must be at least 1")
    args.data = args.data.resolve()
    check_data(args.data)
    args.work = args.work.resolve()
    args.json = (args.json or args.work / "results.json").resolve()
    if "triplet" in impls:
        args.triplet = resolve_triplet(args.triplet).resolve()
        if not (args.triplet.is_file() and os.access(args.triplet, os.X_OK)):
            fail(f"no triplet binary at {args.triplet} (build it with `cargo build -p triplet-train`, "
                 "or pass --triplet PATH)")
        if args.max_batches is not None:
            print("warning: --max-batches only limits the PyTorch side; Triplet has no such option "
                  "and trains full epochs, so the two are not comparable in this run.",
                  file=sys.stderr)
    if "pytorch" in impls:
        args.knn = resolve_knn(args.knn)
    args.work.mkdir(parents=True, exist_ok=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)

    meta = {"machine": machine_info(), "versions": versions(args, impls),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "settings": {"mean": MEAN, "std": STD, "k": K, "margin": MARGIN, "lr": LR,
                         "embed_batch": EMBED_BATCH, "mining": "semi-hard", "distance": "euclidean",
                         "reduction": "mean", "protocols": PROTOCOLS},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    m, v = meta["machine"], meta["versions"]
    print(f"machine: {m['cpu']}, {m['usable_cpus']}/{m['logical_cpus']} CPUs, {m['mem_gib']} GiB, "
          f"load {m['loadavg_at_start']}")
    print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), flush=True)

    results = []

    def save(status):
        meta["status"] = status
        meta["peak_rss_mib_python"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        table, sums = report(meta, results, impls, protocols)
        args.json.write_text(json.dumps({**meta, "runs": results, "summary": sums,
                                         "markdown": table}, indent=2, default=str) + "\n")
        return table

    runners = {"triplet": run_triplet, "pytorch": run_pytorch}
    try:
        # Interleaved (seed, protocol, impl) so that machine noise hits both implementations alike.
        for seed in args.seeds:
            for protocol in protocols:
                for impl in impls:
                    print(f"== {protocol} / {impl} / seed {seed}", flush=True)
                    results.append(runners[impl](protocol, seed, args, args.work))
                    save("running")
    except (RuntimeError, KeyboardInterrupt) as e:
        save(f"failed: {e}")
        print(f"\nfailed: {e}; partial results in {args.json}", file=sys.stderr)
        sys.exit(1)
    table = save("done")
    print("\n" + table)
    print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
