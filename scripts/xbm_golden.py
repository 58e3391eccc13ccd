#!/usr/bin/env python3
"""Golden values for the loss crate's reference embeddings and cross-batch memory, computed
with pytorch-metric-learning.

Writes crates/loss/tests/fixtures/xbm_golden.json (path overridable with --out):

- "refs" cases: `TripletMarginLoss(margin, distance, reducer)(x, y, indices_tuple, ref_emb=R,
  ref_labels=L)` with the miner given the same references (`miner(x, y, R, L)`): anchors from
  the batch, positives and negatives from R. The loss crate's `TripletLoss::forward_refs`.
- "xbm" cases: `CrossBatchMemory(TripletMarginLoss(...), embedding_size, memory_size, miner)`
  called on a fixed sequence of batches (the memory wraps around during the sequence); per step
  the loss (float64) and its gradient with respect to that step's batch. The loss crate's
  `CrossBatchMemory::forward`.

Mining: "all" = no miner (every triplet), "hard" = `BatchHardMiner`, "pml_semi_hard" =
`TripletMarginMiner(margin, type_of_triplets="semihard")`. Distances and reducers as in
scripts/pml_golden.py (LpDistance(normalize_embeddings=False), its power=2 form,
CosineSimilarity; AvgNonZeroReducer, MeanReducer, SumReducer).

Cross-checks: every step's loss against a brute-force loop over (a, p, n) (anchor from the
batch, p and n from the references, the anchor's own memory copy never its positive) to 1e-9;
for the refs cases with a miner, PML's mined set equals the loop's. The recorded triplet counts
are the loop's (PML's CrossBatchMemory does not expose its count). Batches are redrawn
from the seeded stream until no hinge argument lies within 1e-3 of 0, no semihard gap within
1e-3 of 0 or the margin, and (batch-hard) every hardest positive and negative beats its
runner-up by 1e-3, so a float32 consumer keeps the same triplets. Embeddings are float32 values
(stored exactly in JSON); PML computes in float64 from them.

Usage:  python scripts/xbm_golden.py [--out PATH]
"""

import argparse
import json
import math
import os

import numpy as np
import torch
import pytorch_metric_learning
from pytorch_metric_learning import losses, miners

from pml_golden import make_distance, make_reducer

SEED = 20261203
GAP = 1e-3
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "crates", "loss", "tests", "fixtures", "xbm_golden.json")


def cross_dist(x, r, name):
    out = np.zeros((len(x), len(r)))
    for i in range(len(x)):
        for j in range(len(r)):
            if name == "cosine":
                out[i, j] = 1.0 - x[i] @ r[j] / (np.linalg.norm(x[i]) * np.linalg.norm(r[j]))
            else:
                sq = float(((x[i] - r[j]) ** 2).sum())
                out[i, j] = sq if name == "squared_euclidean" else math.sqrt(sq)
    return out


def brute(x, y, r, ry, own, dist_name, mining, margin):
    """The triplets (a, p, n) over the references and whether any decision is within GAP."""
    d = cross_dist(x, r, dist_name)
    kept, close = [], False
    for a in range(len(y)):
        pos = [p for p in range(len(ry)) if ry[p] == y[a] and p != own[a]]
        neg = [n for n in range(len(ry)) if ry[n] != y[a]]
        if not pos or not neg:
            continue
        if mining == "hard":
            ps = sorted(pos, key=lambda p: -d[a, p])
            ns = sorted(neg, key=lambda n: d[a, n])
            if len(ps) > 1 and d[a, ps[0]] - d[a, ps[1]] < GAP:
                close = True
            if len(ns) > 1 and d[a, ns[1]] - d[a, ns[0]] < GAP:
                close = True
            cands = [(a, ps[0], ns[0])]
        else:
            cands = [(a, p, n) for p in pos for n in neg]
        for a_, p, n in cands:
            gap = d[a_, n] - d[a_, p]
            if mining == "pml_semi_hard":
                if abs(gap) < GAP or abs(gap - margin) < GAP:
                    close = True
                if not 0 < gap <= margin:
                    continue
            if abs(margin - gap) < GAP:
                close = True
            kept.append((a_, p, n))
    losses_ = np.array([max(d[a, p] - d[a, n] + margin, 0.0) for a, p, n in kept])
    return kept, losses_, close


def reduce(losses_, reduction):
    if len(losses_) == 0:
        return 0.0
    if reduction == "sum":
        return losses_.sum()
    if reduction == "mean":
        return losses_.mean()
    active = losses_[losses_ > 0]
    return active.mean() if len(active) else 0.0


def make_miner(mining, dist_name, margin):
    if mining == "all":
        return None
    if mining == "hard":
        return miners.BatchHardMiner(distance=make_distance(dist_name))
    return miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard",
                                     distance=make_distance(dist_name))


def draw(rng, labels, dim, accept):
    for _ in range(5000):
        x = rng.standard_normal((len(labels), dim)).astype(np.float32)
        if accept(x.astype(np.float64)):
            return x
    raise RuntimeError("no robust batch")


def refs_case(rng, dist_name, mining, reduction, margin):
    y = np.array([0, 0, 1, 1, 2, 2, 7], dtype=np.int64)  # 7: no reference has it
    ry = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3], dtype=np.int64)  # 3: only ever negative
    r = draw(rng, ry, 4, lambda _: True).astype(np.float64)
    own = [None] * len(y)

    def ok(x):
        kept, _, close = brute(x, y, r, ry, own, dist_name, mining, margin)
        return kept and not close

    x = draw(rng, y, 4, ok).astype(np.float64)
    kept, losses_, _ = brute(x, y, r, ry, own, dist_name, mining, margin)
    loss_fn = losses.TripletMarginLoss(margin=margin, distance=make_distance(dist_name),
                                       reducer=make_reducer(reduction))
    miner = make_miner(mining, dist_name, margin)
    xt = torch.tensor(x, requires_grad=True)
    rt = torch.tensor(r, requires_grad=True)
    yt, ryt = torch.tensor(y), torch.tensor(ry)
    mined = miner(xt, yt, rt, ryt) if miner else None
    if mined is not None:
        assert sorted(zip(*(t.tolist() for t in mined))) == sorted(kept), "mined set"
    value = loss_fn(xt, yt, mined, rt, ryt)
    value.backward()
    want = reduce(losses_, reduction)
    assert abs(value.item() - want) < 1e-9, (value.item(), want)
    return {
        "name": f"refs_{mining}_{dist_name}_m{margin}_{reduction}", "kind": "refs",
        "distance": dist_name, "mining": mining, "reduction": reduction, "margin": margin,
        "memory_size": 0,
        "steps": [{
            "embeddings": x.tolist(), "labels": y.tolist(), "loss": value.item(),
            "grad": xt.grad.tolist(), "triplets": len(kept),
            "ref_embeddings": r.tolist(), "ref_labels": ry.tolist(),
            "ref_grad": rt.grad.tolist(),
        }],
    }


def xbm_case(rng, dist_name, mining, reduction, margin, memory_size, steps, batch):
    loss_fn = losses.TripletMarginLoss(margin=margin, distance=make_distance(dist_name),
                                       reducer=make_reducer(reduction))
    xbm = losses.CrossBatchMemory(loss_fn, embedding_size=4, memory_size=memory_size,
                                  miner=make_miner(mining, dist_name, margin))
    mem_x, mem_y, nxt = [None] * memory_size, [None] * memory_size, 0
    filled = 0
    out = []
    for step in range(steps):
        # P×K-ish batches drawn from 4 classes with arbitrary label values.
        y = rng.choice([3, 5, 8, 13], size=batch // 2).repeat(2).astype(np.int64)
        slots = [(nxt + i) % memory_size for i in range(batch)]

        def memory_with(x):
            mx, my = list(mem_x), list(mem_y)
            for i, s in enumerate(slots):
                mx[s], my[s] = x[i], y[i]
            n = min(filled + batch, memory_size)
            return np.array(mx[:n]), np.array(my[:n])

        def ok(x):
            r, ry = memory_with(x)
            kept, _, close = brute(x, y, r, ry, slots, dist_name, mining, margin)
            return kept and not close

        x = draw(rng, y, 4, ok)
        r, ry = memory_with(x.astype(np.float64))
        kept, losses_, _ = brute(x.astype(np.float64), y, r, ry, slots, dist_name, mining,
                                 margin)
        xt = torch.tensor(x.astype(np.float64), requires_grad=True)
        value = xbm(xt, torch.tensor(y))
        value.backward()
        want = reduce(losses_, reduction)
        assert abs(value.item() - want) < 1e-9, (step, value.item(), want)
        for i, s in enumerate(slots):
            mem_x[s], mem_y[s] = x[i].astype(np.float64), y[i]
        nxt = (nxt + batch) % memory_size
        filled = min(filled + batch, memory_size)
        out.append({"embeddings": x.tolist(), "labels": y.tolist(), "loss": value.item(),
                    "grad": xt.grad.tolist(), "triplets": len(kept)})
    return {
        "name": f"xbm_{mining}_{dist_name}_m{margin}_{reduction}_M{memory_size}", "kind": "xbm",
        "distance": dist_name, "mining": mining, "reduction": reduction, "margin": margin,
        "memory_size": memory_size, "steps": out,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(SEED)
    cases = []
    for mining, dist_name, reduction, margin in [
        ("all", "euclidean", "mean_active", 0.5),
        ("all", "cosine", "sum", 0.2),
        ("hard", "euclidean", "mean", 0.5),
        ("hard", "squared_euclidean", "mean_active", 1.0),
        ("pml_semi_hard", "euclidean", "mean_active", 0.5),
        ("pml_semi_hard", "cosine", "mean", 0.2),
    ]:
        cases.append(refs_case(rng, dist_name, mining, reduction, margin))
    for mining, dist_name, reduction, margin, memory_size in [
        ("all", "euclidean", "mean_active", 0.5, 20),
        ("all", "squared_euclidean", "sum", 1.0, 16),
        ("all", "cosine", "mean", 0.2, 20),
        ("hard", "euclidean", "mean_active", 0.5, 20),
        ("hard", "cosine", "mean", 0.2, 12),
        ("pml_semi_hard", "euclidean", "mean_active", 0.5, 20),
        ("pml_semi_hard", "squared_euclidean", "sum", 1.0, 20),
    ]:
        cases.append(xbm_case(rng, dist_name, mining, reduction, margin, memory_size,
                              steps=5, batch=8))
    out = {"pytorch_metric_learning": pytorch_metric_learning.__version__,
           "torch": torch.__version__, "seed": SEED, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(out, f)
    for c in cases:
        line = " ".join(f"{s['triplets']:>4}:{s['loss']:.10f}" for s in c["steps"])
        print(f"{c['name']:<48} {line}")


if __name__ == "__main__":
    main()
