#!/usr/bin/env python3
"""Golden values for the loss crate's anchor swap (`TripletLossConfig::swap`).

Writes crates/loss/tests/fixtures/swap_golden.json (path overridable with --out): for small
seeded batches, pytorch-metric-learning's TripletMarginLoss(swap=True) (float64) and its
gradient, for batch-all (no miner) and batch-hard (BatchHardMiner, mined without the swap, as
the crate does), Euclidean / squared Euclidean / cosine, every reduction.

Cross-checks, each to 1e-9 unless said:
  - a brute-force loop over (a, p, n) with d_an := min(d(a,n), d(p,n));
  - PyTorch's own torch.nn.TripletMarginLoss(swap=True, reduction="mean") on the same mined
    triplets (Euclidean, mean reduction), to 1e-5: PyTorch adds eps = 1e-6 inside each
    distance, ||x - y + eps||.

Mapping as in scripts/pml_golden.py: Euclidean = LpDistance(normalize_embeddings=False),
squared = LpDistance(power=2, normalize_embeddings=False), cosine = CosineSimilarity()
(PML's similarity swap takes the larger similarity, i.e. our smaller distance 1 - cos).
Batches are redrawn until no hinge argument lies within 1e-3 of 0 and no swap is a near tie
(|d(a,n) - d(p,n)| > 1e-3), so a float32 consumer sees the same active set and branch.

Usage:  python scripts/swap_golden.py [--out PATH]
"""

import argparse
import itertools
import json
import os

import numpy as np
import torch
import pytorch_metric_learning
from pytorch_metric_learning import losses, miners

# The distance and reducer objects, and the brute-force distance matrix, of the other goldens.
from pml_golden import dist_matrix, make_distance, make_reducer

SEED = 20261201
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "crates", "loss", "tests", "fixtures", "swap_golden.json")
GAP = 1e-3


def triplets_of(mining, x, y, dist_name):
    if mining == "all":
        out = []
        for a, p, n in itertools.product(range(len(y)), repeat=3):
            if a != p and y[a] == y[p] and y[a] != y[n]:
                out.append((a, p, n))
        return out
    miner = miners.BatchHardMiner(distance=make_distance(dist_name))
    a, p, n = miner(torch.tensor(x), torch.tensor(y))
    return list(zip(a.tolist(), p.tolist(), n.tolist()))


def brute(dist, triplets, margin, reduction):
    losses_ = []
    for a, p, n in triplets:
        d_an = min(dist[a][n], dist[p][n])
        losses_.append(max(dist[a][p] - d_an + margin, 0.0))
    losses_ = np.array(losses_)
    if reduction == "sum":
        return float(losses_.sum())
    if reduction == "mean":
        return float(losses_.mean()) if len(losses_) else 0.0
    active = losses_[losses_ > 0]
    return float(active.mean()) if len(active) else 0.0


def robust(dist, triplets, margin):
    for a, p, n in triplets:
        d_ap, d_an, d_pn = dist[a][p], dist[a][n], dist[p][n]
        if abs(d_an - d_pn) < GAP or abs(d_ap - min(d_an, d_pn) + margin) < GAP:
            return False
    return True


def case(rng, name, dist_name, mining, reduction, margin, p_classes, k, dim):
    for _ in range(1000):
        y = np.repeat(np.arange(p_classes), k).astype(np.int64)
        x = rng.standard_normal((len(y), dim)).astype(np.float32).astype(np.float64)
        triplets = triplets_of(mining, x, y, dist_name)
        dist = dist_matrix(x, dist_name)
        if triplets and robust(dist, triplets, margin):
            break
    else:
        raise RuntimeError(f"{name}: no robust batch")
    loss_fn = losses.TripletMarginLoss(margin=margin, swap=True, distance=make_distance(dist_name),
                                       reducer=make_reducer(reduction))
    xt = torch.tensor(x, requires_grad=True)
    idx = tuple(torch.tensor(v) for v in zip(*triplets))
    value = loss_fn(xt, torch.tensor(y), indices_tuple=idx)
    value.backward()
    want = brute(dist, triplets, margin, reduction)
    assert abs(value.item() - want) < 1e-9, (name, value.item(), want)
    if dist_name == "euclidean" and reduction == "mean":
        torch_loss = torch.nn.TripletMarginLoss(margin=margin, swap=True, reduction="mean")
        a, p, n = (torch.tensor(x)[list(v)] for v in zip(*triplets))
        assert abs(torch_loss(a, p, n).item() - want) < 1e-5, (name, torch_loss(a, p, n).item())
    return {
        "name": name, "distance": dist_name, "mining": mining, "reduction": reduction,
        "margin": margin, "embeddings": x.tolist(), "labels": y.tolist(),
        "triplets": len(triplets), "loss": value.item(), "grad": xt.grad.tolist(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    cases = []
    for dist_name in ["euclidean", "squared_euclidean", "cosine"]:
        for mining, reduction, margin in [("all", "mean_active", 0.2), ("all", "mean", 0.5),
                                          ("hard", "mean", 0.2), ("hard", "sum", 1.0)]:
            name = f"{mining}_{dist_name}_m{margin}_{reduction}"
            cases.append(case(rng, name, dist_name, mining, reduction, margin, 3, 3, 4))
    out = {"pytorch_metric_learning": pytorch_metric_learning.__version__,
           "torch": torch.__version__, "seed": SEED, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(out, f)
    for c in cases:
        print(f"{c['name']:<40} {len(c['labels']):>3} {c['triplets']:>4} {c['loss']:.12f}")


if __name__ == "__main__":
    main()
