#!/usr/bin/env python3
"""Golden values for the loss crate's `Mining::PmlSemiHard`: pytorch-metric-learning's
TripletMarginMiner(margin, type_of_triplets="semihard") feeding TripletMarginLoss(margin).

Writes crates/loss/tests/fixtures/pml_semihard_golden.json (path overridable with --out): for
small seeded P×K batches, the triplets PML's miner keeps (every (a, p, n) with
0 < d_an - d_ap <= margin), and the loss (float64) and its gradient, for the three distances
(as in scripts/pml_golden.py: LpDistance(normalize_embeddings=False), its power=2 form, and
CosineSimilarity, whose s_ap - s_an is our d_an - d_ap) and the three reducers.

Cross-checks: the mined set against a brute-force loop over (a, p, n), the loss against that
loop to 1e-9. Batches are redrawn until no d_an - d_ap lies within 1e-3 of 0 or of the margin
and no hinge argument within 1e-3 of 0, so a float32 consumer keeps the same triplets.

Usage:  python scripts/pml_semihard_golden.py [--out PATH]
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

SEED = 20261202
GAP = 1e-3
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "crates", "loss", "tests", "fixtures",
                           "pml_semihard_golden.json")


def brute(dist, y, margin):
    kept, close = [], False
    for a, p, n in itertools.product(range(len(y)), repeat=3):
        if a == p or y[a] != y[p] or y[a] == y[n]:
            continue
        gap = dist[a][n] - dist[a][p]
        if abs(gap) < GAP or abs(gap - margin) < GAP or abs(margin - gap) < GAP:
            close = True
        if 0 < gap <= margin:
            kept.append((a, p, n))
            if abs(margin - gap) < GAP:  # hinge argument d_ap - d_an + margin
                close = True
    return kept, close


def case(rng, dist_name, reduction, margin, p_classes, k, dim):
    for _ in range(2000):
        y = np.repeat(np.arange(p_classes), k).astype(np.int64)
        x = rng.standard_normal((len(y), dim)).astype(np.float32).astype(np.float64)
        dist = dist_matrix(x, dist_name)
        kept, close = brute(dist, y, margin)
        if kept and not close:
            break
    else:
        raise RuntimeError("no robust batch")
    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard",
                                      distance=make_distance(dist_name))
    loss_fn = losses.TripletMarginLoss(margin=margin, distance=make_distance(dist_name),
                                       reducer=make_reducer(reduction))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y)
    mined = miner(xt, yt)
    got = sorted(zip(*(t.tolist() for t in mined)))
    assert got == sorted(kept), (dist_name, len(got), len(kept))
    value = loss_fn(xt, yt, indices_tuple=mined)
    value.backward()
    losses_ = np.array([dist[a][p] - dist[a][n] + margin for a, p, n in kept])
    losses_ = np.maximum(losses_, 0.0)
    want = {"sum": losses_.sum(), "mean": losses_.mean(),
            "mean_active": losses_[losses_ > 0].mean()}[reduction]
    assert abs(value.item() - want) < 1e-9, (value.item(), want)
    return {
        "name": f"pml_semihard_{dist_name}_m{margin}_{reduction}", "distance": dist_name,
        "reduction": reduction, "margin": margin, "embeddings": x.tolist(),
        "labels": y.tolist(), "triplets": sorted(kept), "loss": value.item(),
        "grad": xt.grad.tolist(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    cases = []
    for dist_name, margin in [("euclidean", 0.5), ("squared_euclidean", 1.0), ("cosine", 0.2)]:
        for reduction in ["mean_active", "mean", "sum"]:
            cases.append(case(rng, dist_name, reduction, margin, 3, 4, 4))
    out = {"pytorch_metric_learning": pytorch_metric_learning.__version__,
           "torch": torch.__version__, "seed": SEED, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(out, f)
    for c in cases:
        print(f"{c['name']:<45} {len(c['labels']):>3} {len(c['triplets']):>4} {c['loss']:.12f}")


if __name__ == "__main__":
    main()
