#!/usr/bin/env python3
"""Golden values for the Triplet loss crate, computed with pytorch-metric-learning.

Writes crates/loss/tests/fixtures/pml_golden.json (path overridable with --out):
for a fixed list of small random batches, the PML triplet loss (float64) and its
gradient with respect to the embeddings (torch autograd).

Configurations (all with swap=False, the same distance object passed to the miner
and to the loss):
  distance  euclidean         LpDistance(p=2, power=1, normalize_embeddings=False)
            squared_euclidean LpDistance(p=2, power=2, normalize_embeddings=False)
            cosine            CosineSimilarity()  (normalizes; d = 1 - cos)
  mining    all               TripletMarginLoss, no miner, triplets_per_anchor="all"
            hard              BatchHardMiner(distance=...) -> indices_tuple
  reduction mean_active       AvgNonZeroReducer()
            mean              MeanReducer()
            sum               SumReducer()
  soft      TripletMarginLoss(smooth_loss=True, margin=0.0): softplus(d_ap - d_an).
            NOTE: PML's smooth loss is softplus(d_ap - d_an + margin); the margin is
            NOT ignored by PML. Soft cases are therefore generated with margin 0.0
            (and stored as "margin": 0.0) so that they match the margin-free
            soft-margin loss whether or not the consumer ignores the margin.

Embeddings are drawn as float32 (fixed numpy seed), stored in JSON as those exact
float32 values, and every computation is done in float64 from them.

Every case is cross-checked against an independent brute-force implementation
(plain Python loop over (a, p, n); batch-hard triplets mined by hand): the loss
must agree to 1e-9, the PML gradient must agree with central finite differences
of the brute-force loss, and the mined triplet count must agree.

Cases are also made "robust" for a float32 consumer: the batch is redrawn (from
the same seeded stream) until no hinge argument is within 1e-3 of 0 (so relu
kinks and the AvgNonZero active set are unambiguous) and, for batch-hard, the
hardest positive/negative of every anchor beats the runner-up by at least 1e-3.

Usage:  python scripts/pml_golden.py [--out PATH]
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import pytorch_metric_learning
from pytorch_metric_learning import distances, losses, miners, reducers

SEED = 20240611
LOSS_TOL = 1e-9
FD_STEP = 1e-6
FD_TOL = 1e-6  # absolute, on gradients of O(0.01..1)
KINK_GAP = 1e-3  # min |d_ap - d_an + m| for hinge cases
TIE_GAP = 1e-3  # min gap between hardest and runner-up (batch-hard)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "crates", "loss", "tests", "fixtures", "pml_golden.json")


# ---------------------------------------------------------------------------
# PML side
# ---------------------------------------------------------------------------

def make_distance(name):
    if name == "euclidean":
        return distances.LpDistance(p=2, power=1, normalize_embeddings=False)
    if name == "squared_euclidean":
        return distances.LpDistance(p=2, power=2, normalize_embeddings=False)
    if name == "cosine":
        return distances.CosineSimilarity()
    raise ValueError(name)


def make_reducer(name):
    return {
        "mean_active": reducers.AvgNonZeroReducer,
        "mean": reducers.MeanReducer,
        "sum": reducers.SumReducer,
    }[name]()


def pml_loss(case, emb32):
    """Returns (loss, grad, num_triplets) computed by PML in float64."""
    x = torch.tensor(emb32.astype(np.float64), dtype=torch.float64, requires_grad=True)
    labels = torch.tensor(case["labels"], dtype=torch.int64)
    dist = make_distance(case["distance"])
    margin = case["margin"]
    loss_fn = losses.TripletMarginLoss(
        margin=margin,
        swap=False,
        smooth_loss=case["soft"],
        triplets_per_anchor="all",
        distance=dist,
        reducer=make_reducer(case["reduction"]),
    )
    if case["mining"] == "hard":
        miner = miners.BatchHardMiner(distance=dist)
        idx = miner(x, labels)
        num = int(len(idx[0]))
        loss = loss_fn(x, labels, idx)
    else:
        from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

        num = int(len(lmu.get_all_triplets_indices(labels)[0]))
        loss = loss_fn(x, labels)
    loss.backward()
    return float(loss.item()), x.grad.detach().numpy().copy(), num


# ---------------------------------------------------------------------------
# Independent brute force (float64, plain Python)
# ---------------------------------------------------------------------------

def dist_matrix(x, name):
    b = x.shape[0]
    d = [[0.0] * b for _ in range(b)]
    if name == "cosine":
        norms = [math.sqrt(sum(v * v for v in x[i])) for i in range(b)]
    for i in range(b):
        for j in range(b):
            if name == "cosine":
                dot = sum(x[i][k] * x[j][k] for k in range(x.shape[1]))
                d[i][j] = 1.0 - dot / (norms[i] * norms[j])
            else:
                sq = sum((x[i][k] - x[j][k]) ** 2 for k in range(x.shape[1]))
                d[i][j] = sq if name == "squared_euclidean" else math.sqrt(sq)
    return d


def all_triplets(labels):
    b = len(labels)
    out = []
    for a in range(b):
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            for n in range(b):
                if labels[n] != labels[a]:
                    out.append((a, p, n))
    return out


def hard_triplets(labels, d):
    """Batch-hard: per anchor, farthest positive and closest negative.
    Anchors with no positive or no negative are skipped.
    Returns (triplets, min_gap) where min_gap is the smallest margin between the
    chosen positive/negative and the runner-up (inf when there is no runner-up)."""
    b = len(labels)
    out = []
    min_gap = math.inf
    for a in range(b):
        pos = [j for j in range(b) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(b) if labels[j] != labels[a]]
        if not pos or not neg:
            continue
        pos_sorted = sorted(pos, key=lambda j: -d[a][j])
        neg_sorted = sorted(neg, key=lambda j: d[a][j])
        if len(pos_sorted) > 1:
            min_gap = min(min_gap, d[a][pos_sorted[0]] - d[a][pos_sorted[1]])
        if len(neg_sorted) > 1:
            min_gap = min(min_gap, d[a][neg_sorted[1]] - d[a][neg_sorted[0]])
        out.append((a, pos_sorted[0], neg_sorted[0]))
    return out, min_gap


def softplus(v):
    # numerically stable log(1 + exp(v))
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def brute_loss(case, x, triplets=None):
    """Returns (loss, num_triplets, num_active, min_abs_violation, tie_gap)."""
    labels = case["labels"]
    d = dist_matrix(x, case["distance"])
    tie_gap = math.inf
    if case["mining"] == "hard":
        triplets, tie_gap = hard_triplets(labels, d)
    elif triplets is None:
        triplets = all_triplets(labels)
    margin = case["margin"]
    vals = []
    min_abs = math.inf
    for a, p, n in triplets:
        v = d[a][p] - d[a][n] + margin
        min_abs = min(min_abs, abs(v))
        vals.append(softplus(v) if case["soft"] else max(v, 0.0))
    active = [v for v in vals if v > 0.0]
    red = case["reduction"]
    if red == "sum":
        loss = sum(vals)
    elif red == "mean":
        loss = sum(vals) / len(vals) if vals else 0.0
    else:  # mean_active
        loss = sum(active) / len(active) if active else 0.0
    return loss, len(triplets), len(active), min_abs, tie_gap


def fd_grad(case, x):
    trip = None if case["mining"] == "hard" else all_triplets(case["labels"])
    g = np.zeros_like(x)
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            xp = x.copy()
            xm = x.copy()
            xp[i, k] += FD_STEP
            xm[i, k] -= FD_STEP
            lp = brute_loss(case, xp, trip)[0]
            lm = brute_loss(case, xm, trip)[0]
            g[i, k] = (lp - lm) / (2 * FD_STEP)
    return g


# ---------------------------------------------------------------------------
# Case list
# ---------------------------------------------------------------------------

def pk_labels(p, k, values=None, shuffle_rng=None):
    vals = values if values is not None else list(range(p))
    labels = [vals[c] for c in range(p) for _ in range(k)]
    if shuffle_rng is not None:
        labels = [labels[i] for i in shuffle_rng.permutation(len(labels))]
    return labels


def case_specs(rng):
    """(name-free spec, dims); labels built here from the seeded rng."""
    specs = []

    def add(distance, mining, reduction, margin, labels, dim, soft=False, dup=False,
            clustered=False):
        specs.append(dict(distance=distance, mining=mining, reduction=reduction,
                          margin=float(margin), soft=soft, labels=[int(v) for v in labels],
                          dim=dim, dup=dup, clustered=clustered))

    singleton_labels = [-3, -3, -3, 7, 7, 7, 7, 1000, 42, 5, 5, 5]  # 1000, 42 singletons
    # 1. batch-all x mean_active: 3 distances x 4 margins.
    layouts = [
        (pk_labels(4, 3), 4),
        (pk_labels(3, 4, values=[-3, 7, 1000], shuffle_rng=rng), 5),
        (singleton_labels, 6),
        (pk_labels(2, 4), 3),
    ]
    for di, distance in enumerate(["euclidean", "squared_euclidean", "cosine"]):
        for mi, margin in enumerate([0.1, 0.2, 0.5, 1.0]):
            labels, dim = layouts[(mi + di) % len(layouts)]
            add(distance, "all", "mean_active", margin, labels, dim)
    # 2. batch-hard x mean: 3 distances x 2 margins, plus singleton/shuffled layouts.
    add("euclidean", "hard", "mean", 0.2, pk_labels(6, 4), 8)
    add("euclidean", "hard", "mean", 0.5, singleton_labels, 4)
    add("squared_euclidean", "hard", "mean", 0.1, pk_labels(5, 3, shuffle_rng=rng), 6)
    add("squared_euclidean", "hard", "mean", 1.0, pk_labels(4, 3, values=[-3, 7, 1000, 0]), 5)
    add("cosine", "hard", "mean", 0.2, pk_labels(4, 4, shuffle_rng=rng), 8)
    add("cosine", "hard", "mean", 0.5, singleton_labels + [99], 3)
    # 2b. batch-hard on class-clustered embeddings, so that some anchors have zero
    #     loss (mean counts them, mean_active does not).
    add("euclidean", "hard", "mean", 0.2, pk_labels(4, 3, shuffle_rng=rng), 4, clustered=True)
    add("cosine", "hard", "mean_active", 0.2, pk_labels(4, 4), 6, clustered=True)
    add("squared_euclidean", "hard", "mean_active", 0.5, singleton_labels, 5, clustered=True)
    # 3. sum reductions.
    add("euclidean", "all", "sum", 0.2, pk_labels(3, 3), 4)
    add("squared_euclidean", "hard", "sum", 0.5, pk_labels(4, 2, values=[10, -1, 3, 8]), 3)
    add("cosine", "hard", "sum", 0.3, pk_labels(6, 4, shuffle_rng=rng), 8)
    add("cosine", "all", "sum", 0.2, singleton_labels, 5)
    # 3b. batch-all with plain mean.
    add("squared_euclidean", "all", "mean", 0.2, pk_labels(4, 3), 4)
    # 4. soft margin (margin 0.0 for PML, see module docstring).
    add("euclidean", "all", "mean_active", 0.0, pk_labels(4, 3), 4, soft=True)
    add("cosine", "all", "mean_active", 0.0, singleton_labels, 6, soft=True)
    add("euclidean", "hard", "mean", 0.0, pk_labels(4, 4, shuffle_rng=rng), 8, soft=True)
    add("squared_euclidean", "hard", "mean", 0.0, singleton_labels, 5, soft=True)
    # 5. duplicated embedding row (two identical rows of the same class), batch-all.
    add("squared_euclidean", "all", "mean_active", 0.2, pk_labels(4, 3), 4, dup=True)
    add("cosine", "all", "mean_active", 0.2, pk_labels(3, 4, values=[-3, 7, 1000]), 5, dup=True)
    add("squared_euclidean", "all", "mean", 0.5, singleton_labels, 3, dup=True)
    return specs


def case_name(c):
    red = {"mean_active": "meanactive", "mean": "mean", "sum": "sum"}[c["reduction"]]
    m = "soft" if c["soft"] else "m{}".format(c["margin"])
    dup = "_dup" if c["dup"] else ""
    dup += "_clustered" if c["clustered"] else ""
    return "{}_{}_{}_{}{}".format(c["mining"], c["distance"], m, red, dup)


def draw_embeddings(rng, spec):
    b, dim = len(spec["labels"]), spec["dim"]
    if spec["clustered"]:
        # class centres plus noise: about half the batch-hard anchors satisfy the margin
        uniq = sorted(set(spec["labels"]))
        centres = {l: rng.standard_normal(dim) * 0.8 for l in uniq}
        x = np.stack([centres[l] + 0.5 * rng.standard_normal(dim) for l in spec["labels"]])
        x = x.astype(np.float32)
    else:
        x = rng.standard_normal((b, dim)).astype(np.float32)
    if spec["dup"]:
        labels = spec["labels"]
        # first pair of same-class rows: copy row i into row j
        for i in range(b):
            js = [j for j in range(i + 1, b) if labels[j] == labels[i]]
            if js:
                x[js[0]] = x[i]
                break
    return x


def robust(spec, x64):
    _, num, active, min_abs, tie_gap = brute_loss(spec, x64)
    if spec["clustered"] and not 0 < active < num:
        return False
    if not spec["soft"] and min_abs < KINK_GAP:
        return False
    if spec["mining"] == "hard" and tie_gap < TIE_GAP:
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(SEED)

    specs = case_specs(rng)
    cases = []
    names = set()
    rows = []
    for spec in specs:
        for _attempt in range(1000):
            x32 = draw_embeddings(rng, spec)
            x64 = x32.astype(np.float64)
            if robust(spec, x64):
                break
        else:
            sys.exit("could not draw a robust batch for {}".format(spec))
        name = case_name(spec)
        assert name not in names, name
        names.add(name)

        loss, grad, num = pml_loss(spec, x32)
        bl, bnum, bactive, _, _ = brute_loss(spec, x64)
        if abs(loss - bl) > LOSS_TOL:
            sys.exit("{}: PML loss {!r} != brute force {!r}".format(name, loss, bl))
        if num != bnum:
            sys.exit("{}: PML num_triplets {} != brute force {}".format(name, num, bnum))
        if not np.all(np.isfinite(grad)):
            sys.exit("{}: non-finite PML gradient".format(name))
        g_fd = fd_grad(spec, x64)
        err = float(np.max(np.abs(g_fd - grad)))
        if err > FD_TOL:
            sys.exit("{}: PML grad differs from finite differences by {:.3e}".format(name, err))

        cases.append({
            "name": name,
            "distance": spec["distance"],
            "mining": spec["mining"],
            "reduction": spec["reduction"],
            "margin": spec["margin"],
            "soft": spec["soft"],
            "embeddings": [[float(v) for v in row] for row in x32],
            "labels": spec["labels"],
            "loss": loss,
            "grad": [[float(v) for v in row] for row in grad],
            "num_triplets": num,
        })
        rows.append((name, len(spec["labels"]), spec["dim"], loss, num, bactive, err))

    out = {
        "generator": "scripts/pml_golden.py",
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")

    print("torch {}  pytorch-metric-learning {}  numpy {}  seed {}".format(
        torch.__version__, pytorch_metric_learning.__version__, np.__version__, SEED))
    w = max(len(r[0]) for r in rows)
    print("{:<{w}}  {:>3} {:>2}  {:>22}  {:>5}  {:>6}  {:>8}".format(
        "name", "B", "D", "loss", "trip", "active", "fd_err", w=w))
    for name, b, dim, loss, num, active, err in rows:
        print("{:<{w}}  {:>3} {:>2}  {:>22.16g}  {:>5}  {:>6}  {:>8.1e}".format(
            name, b, dim, loss, num, active, err, w=w))
    print("{} cases written to {}".format(len(cases), os.path.relpath(args.out, REPO_ROOT)))


if __name__ == "__main__":
    main()
