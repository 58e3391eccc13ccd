#!/usr/bin/env python3
"""Golden numbers for the application metrics (clustering, verification, re-identification), for
the Rust tests that read crates/metrics/tests/fixtures/applications_golden.json.

Every value comes from scikit-learn where it has the metric, and every one is recomputed inside
this script by a second, independent implementation (brute-force numpy / pure Python); any
disagreement is fatal. All inputs are drawn as float32 (embeddings, distances) and stored as the
float64 repr of those float32 values, so the Rust side reads exactly the same numbers. Everything
is seeded: rerunning reproduces the file byte for byte with the pinned versions.

Clustering ("clustering")
- label_cases: sklearn normalized_mutual_info_score and adjusted_mutual_info_score with their
  default average_method="arithmetic" (how PML's AccuracyCalculator calls them), on random label
  vectors of several sizes and degenerate ones. Check: entropies, MI and the expected MI
  (hypergeometric sum, math.lgamma) by plain loops, AMI = (MI - EMI) / (mean(H) - EMI). Conventions
  are sklearn's: both labelings with a single class give NMI = AMI = 1.0; a single class on one
  side only gives 0.0. Where AMI is 0 in exact arithmetic (pred all singletons: MI = EMI) sklearn
  returns the rounding residue of MI - EMI (2.8e-14 here; it also clamps |MI - EMI| to at least
  float64 eps, so it never returns exactly 0 there): compare AMI with an absolute tolerance (the
  check here allows 1e-10).
- kmeans_cases: clearly separated Gaussian blobs (unequal sizes, some points carrying a wrong
  label, label ids not the blob ids), k = number of classes. Recorded: sklearn
  KMeans(n_clusters=k, n_init=10, random_state=0) run in float64 on one thread (its labels_ as
  `assignment`, its inertia_), and NMI / AMI of the labels against that assignment. Checks: the
  assignment is exactly the blob partition (up to renaming), KMeans with random_state 1..5 finds
  the same partition and NMI, and the inertia equals the sum of squared distances to the
  partition's means recomputed in numpy (relative 1e-10). The cluster ids in `assignment` are
  sklearn's arbitrary numbering: compare partitions, not ids.

Verification ("verification"): pairs with a distance (lower = more alike) and a bool `same`.
- roc: sklearn roc_curve(same, -distance, drop_intermediate=False) without its first point
  (threshold +inf, at (0, 0)), thresholds negated, so they are the distinct distances ascending:
  a pair is accepted as "same" iff distance <= threshold; far = fpr, tar = tpr. auc:
  roc_auc_score(same, -distance). tar_at_far_1e-3 / 1e-2: max tpr over every ROC point (the
  (0, 0) start included) with fpr <= the target. Checks: counts per threshold by brute force, AUC
  as the Mann-Whitney statistic over all (positive, negative) pairs (ties 1/2).
- accuracy (LFW protocol): 10 contiguous folds, exactly KFold(n_splits=10, shuffle=False) over the
  pair order (the first n % 10 folds one longer). For each fold the threshold is chosen on the
  other nine: the candidates are the midpoints (a + b) / 2, in float64, of consecutive distinct
  training distances (the single value itself if there is only one); the one with the most
  correct training pairs wins, ties to the smallest; it is applied to the held-out fold (same iff
  distance <= threshold). accuracy = mean of the 10 fold accuracies, accuracy_std = their np.std
  (ddof 0), fold_thresholds = the 10 thresholds. best_threshold / best_accuracy: the same choice
  over all pairs and its accuracy on all pairs. Since the candidates are midpoints only, no
  threshold accepts every pair: with (almost) only positive pairs the largest distance is always
  rejected ("all pairs same except one": best_accuracy 48/50, not 49/50). The selection is a
  loop over every candidate, checked against a sorted cumulative-count sweep. Midpoints of
  float32 distances are exact in float64 but in general not float32 numbers; the script asserts
  that no held-out distance lies within 1e-6 of its fold's threshold, so a float32 threshold
  classifies the same.

Re-identification ("reid", the Market-1501 protocol): items with an embedding, a label (identity),
optionally a group (camera) and is_query / is_gallery flags. For each query q the gallery is the
items with is_gallery, minus q itself (same index) and, when groups are given, minus the items
with q's label AND q's group. It is ranked by (distance ascending, item index ascending), the
distance in float64: Euclidean = sqrt of the summed squared differences, cosine = 1 - cosine
similarity. Relevant = same label. A query with no relevant item left is not counted (`queries`
= the counted ones). CMC@k = fraction of counted queries whose first relevant item is within the
top k; AP = mean over the relevant items of (relevant items so far) / rank; mAP = mean AP.
Checks: an independent re-implementation of torchreid's eval_market1501 (rank.py) with a stable
argsort, query rows against gallery columns, camids = groups (for a case without groups, camids =
item indices, so only q itself goes); torchreid's CMC is float32, so the check is that it equals
our value rounded to float32, and mAP to 1e-12. The metrics must also come out the same from
float32 distances (two formulas), so the fixture does not depend on the Rust side's precision;
the tie case must actually depend on the index tie rule.

Usage: python scripts/applications_golden.py > crates/metrics/tests/fixtures/applications_golden.json
Needs: scripts/requirements.txt (numpy 2.4.6, scikit-learn 1.9.1 with its scipy).
"""
import json
import math
import sys
from collections import Counter

import numpy as np
import scipy
import sklearn
from sklearn.cluster import KMeans
from sklearn.metrics import (adjusted_mutual_info_score, normalized_mutual_info_score,
                             roc_auc_score, roc_curve)
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

TOL = 1e-12


def fail(name, message):
    raise SystemExit(f"case {name!r} FAILED: {message}")


def check(cond, name, message):
    if not cond:
        fail(name, message)


def close(a, b, tol=TOL):
    return abs(a - b) <= tol


def floats32(x):
    """A float32 array as a flat list of the float64 values it holds (round-trip exact)."""
    return [float(v) for v in np.asarray(x, dtype=np.float32).reshape(-1)]


# ---------------------------------------------------------------------------------------------
# Clustering


def brute_nmi_ami(true, pred):
    """NMI (arithmetic mean) and AMI by plain loops, with sklearn's single-class conventions."""
    n = len(true)
    a = Counter(true)
    b = Counter(pred)
    if len(a) == len(b) == 1:
        return 1.0, 1.0
    nij = Counter(zip(true, pred))

    def entropy(counts):
        return -sum(c / n * math.log(c / n) for c in counts.values())

    h_true, h_pred = entropy(a), entropy(b)
    mi = sum(c / n * math.log(n * c / (a[i] * b[j])) for (i, j), c in nij.items())
    if len(a) == 1 or len(b) == 1:
        return 0.0, 0.0
    lg = math.lgamma
    emi = 0.0
    for ai in a.values():
        for bj in b.values():
            base = lg(ai + 1) + lg(bj + 1) + lg(n - ai + 1) + lg(n - bj + 1) - lg(n + 1)
            for k in range(max(1, ai + bj - n), min(ai, bj) + 1):
                p = math.exp(base - lg(k + 1) - lg(ai - k + 1) - lg(bj - k + 1)
                             - lg(n - ai - bj + k + 1))
                emi += p * k / n * math.log(n * k / (ai * bj))
    mean_h = (h_true + h_pred) / 2
    return mi / mean_h, (mi - emi) / (mean_h - emi)


def sk_nmi_ami(true, pred):
    return (float(normalized_mutual_info_score(true, pred)),
            float(adjusted_mutual_info_score(true, pred)))


def label_case(name, true, pred):
    true = [int(v) for v in true]
    pred = [int(v) for v in pred]
    assert len(true) == len(pred)
    nmi, ami = sk_nmi_ami(true, pred)
    b_nmi, b_ami = brute_nmi_ami(true, pred)
    check(close(nmi, b_nmi), name, f"NMI sklearn {nmi!r} vs loop {b_nmi!r}")
    check(close(ami, b_ami, 1e-10), name, f"AMI sklearn {ami!r} vs loop {b_ami!r}")
    return {"name": name, "labels_true": true, "labels_pred": pred, "nmi": nmi, "ami": ami}


def label_cases():
    rng = np.random.default_rng(100)
    cases = [
        label_case("random, n=10, 3 vs 2 classes", rng.integers(0, 3, 10), rng.integers(0, 2, 10)),
        label_case("random, n=200, 5 vs 7 classes", rng.integers(0, 5, 200), rng.integers(0, 7, 200)),
    ]
    true = rng.integers(0, 50, 2000)
    pred = np.where(rng.random(2000) < 0.6, true, rng.integers(0, 50, 2000))
    cases.append(label_case("random, n=2000, 50 classes, 60 % agreeing", true, pred))
    true = rng.integers(0, 10, 500)
    pred = np.where(rng.random(500) < 0.3, true, rng.integers(0, 12, 500))
    cases.append(label_case("random, n=500, 10 vs 12 classes, 30 % agreeing", true, pred))
    true = rng.integers(0, 6, 100)
    cases.append(label_case("identical partitions", true, true))
    true = rng.integers(0, 8, 150)
    perm = np.array([5, 2, 7, 0, 11, 3, 9, 4])
    cases.append(label_case("permuted label values", true, perm[true]))
    cases.append(label_case("one cluster (pred all 0)", rng.integers(0, 4, 60), np.zeros(60, int)))
    cases.append(label_case("all singletons", rng.integers(0, 5, 40), np.arange(40)))
    true = np.concatenate([np.zeros(190, int), np.full(5, 1), np.full(3, 2), np.full(2, 3)])
    true = true[rng.permutation(200)]
    pred = np.where(rng.random(200) < 0.9, true, rng.integers(0, 3, 200))
    cases.append(label_case("very unbalanced (190/5/3/2)", true, pred))
    cases.append(label_case("both one class", np.full(30, 3), np.full(30, 1)))
    return cases


def same_partition(a, b):
    """True iff label vectors a and b induce the same partition (ids may differ)."""
    fwd, back = {}, {}
    for x, y in zip(a, b):
        if fwd.setdefault(x, y) != y or back.setdefault(y, x) != x:
            return False
    return True


def kmeans(x, k, seed):
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
    return km.labels_.astype(int), float(km.inertia_)


def kmeans_case(name, seed, sizes, dim, spread, wrong, relabel):
    rng = np.random.default_rng(seed)
    k = len(sizes)
    while True:  # centres far apart compared with the unit noise (radius about sqrt(dim))
        centres = rng.normal(size=(k, dim)) * spread
        gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(k) for j in range(i + 1, k)]
        if min(gaps) > 6 * math.sqrt(dim) + 6:
            break
    blob = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    x = (centres[blob] + rng.normal(size=(len(blob), dim))).astype(np.float32)
    perm = rng.permutation(len(blob))
    x, blob = x[perm], blob[perm]
    labels = np.asarray(relabel)[blob]
    flip = rng.choice(len(blob), size=wrong, replace=False)
    labels[flip] = (labels[flip] + rng.integers(1, k, size=wrong)) % k
    assert len(set(labels.tolist())) == k

    x64 = x.astype(np.float64)
    assignment, inertia = kmeans(x64, k, 0)
    check(same_partition(assignment, blob), name, "KMeans did not find the blob partition")
    nmi, ami = sk_nmi_ami(labels, assignment)
    for other in range(1, 6):
        a, i = kmeans(x64, k, other)
        check(same_partition(a, assignment), name, f"random_state {other} finds another partition")
        check(close(sk_nmi_ami(labels, a)[0], nmi), name, f"random_state {other}: another NMI")
        check(abs(i - inertia) <= 1e-10 * inertia, name, f"random_state {other}: inertia {i!r}")
    brute = sum(float(((x64[assignment == c] - x64[assignment == c].mean(0)) ** 2).sum())
                for c in range(k))
    check(abs(brute - inertia) <= 1e-10 * inertia, name, f"inertia {inertia!r} vs numpy {brute!r}")
    b_nmi, b_ami = brute_nmi_ami(labels.tolist(), assignment.tolist())
    check(close(nmi, b_nmi) and close(ami, b_ami, 1e-10), name, "NMI/AMI vs loop")
    return {"name": name, "dim": dim, "embeddings": floats32(x), "labels": [int(v) for v in labels],
            "k": k, "nmi": nmi, "ami": ami, "inertia": inertia,
            "assignment": [int(v) for v in assignment]}


def kmeans_cases():
    return [
        kmeans_case("2-D, 3 unequal blobs (10/20/30), exact labels", 200, [10, 20, 30], 2, 12.0, 0,
                    [0, 1, 2]),
        kmeans_case("4-D, 5 unequal blobs, n=600, 12 wrong labels", 201, [40, 80, 120, 160, 200], 4,
                    10.0, 12, [3, 0, 4, 1, 2]),
        kmeans_case("8-D, 4 blobs, n=300, labels renamed, 5 wrong", 202, [75, 75, 75, 75], 8, 8.0, 5,
                    [2, 3, 1, 0]),
        kmeans_case("16-D, 6 unequal blobs, n=200, 4 wrong labels", 203, [10, 20, 30, 40, 50, 50], 16,
                    6.0, 4, [0, 1, 2, 3, 4, 5]),
    ]


# ---------------------------------------------------------------------------------------------
# Verification


def choose_threshold(d, same):
    """Loop over every candidate: (threshold, correct count); ties to the smallest candidate."""
    values = np.unique(d)
    candidates = (values[:-1] + values[1:]) / 2 if len(values) > 1 else values
    best_t, best_c = None, -1
    for t in candidates:
        c = int(np.sum((d <= t) == same))
        if c > best_c:
            best_t, best_c = float(t), c
    return best_t, best_c


def sweep_threshold(d, same):
    """Second implementation: sorted distinct values and cumulative counts."""
    values, inverse = np.unique(d, return_inverse=True)
    pos = np.bincount(inverse, weights=same, minlength=len(values))
    neg = np.bincount(inverse, weights=~same, minlength=len(values))
    if len(values) == 1:
        return float(values[0]), int(pos[0])
    pos_le = np.cumsum(pos)[:-1]
    neg_le = np.cumsum(neg)[:-1]
    correct = pos_le + (neg.sum() - neg_le)
    i = int(np.argmax(correct))  # first maximum = smallest threshold
    return float((values[i] + values[i + 1]) / 2), int(correct[i])


def verification_case(name, distances, same):
    d32 = np.asarray(distances, dtype=np.float32)
    d = d32.astype(np.float64)
    same = np.asarray(same, dtype=bool)
    n = len(d)
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    assert n_pos > 0 and n_neg > 0

    fpr, tpr, thr = roc_curve(same, -d, drop_intermediate=False)
    check(thr[0] == np.inf and fpr[0] == 0 and tpr[0] == 0, name, "roc_curve's first point")
    thresholds = -thr[1:]
    check(np.array_equal(thresholds, np.unique(d)), name, "thresholds are not the distinct distances")
    for t, f, r in zip(thresholds, fpr[1:], tpr[1:]):
        acc = d <= t
        check(f == np.sum(acc & ~same) / n_neg and r == np.sum(acc & same) / n_pos, name,
              f"ROC point at {t}")
    auc = float(roc_auc_score(same, -d))
    dp, dn = d[same][:, None], d[~same][None, :]
    mw = (np.sum(dp < dn) + 0.5 * np.sum(dp == dn)) / (n_pos * n_neg)
    check(close(auc, mw), name, f"AUC {auc!r} vs Mann-Whitney {mw!r}")

    def tar_at(x):
        ours = float(max(tpr[fpr <= x]))
        best = 0.0  # brute force: every threshold, plus accepting nothing
        for t in np.unique(d):
            acc = d <= t
            if np.sum(acc & ~same) / n_neg <= x:
                best = max(best, np.sum(acc & same) / n_pos)
        check(ours == best, name, f"TAR@FAR {x}: {ours!r} vs {best!r}")
        return ours

    folds = [test for _, test in KFold(n_splits=10, shuffle=False).split(d)]
    check(all(np.array_equal(f, g) for f, g in zip(folds, np.array_split(np.arange(n), 10))), name,
          "KFold folds are not contiguous")
    fold_acc, fold_thr = [], []
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        t, c = choose_threshold(d[train], same[train])
        check((t, c) == sweep_threshold(d[train], same[train]), name, "fold threshold: sweep differs")
        check(np.min(np.abs(d[test] - t)) > 1e-6, name, f"held-out distance within 1e-6 of {t}")
        fold_thr.append(t)
        fold_acc.append(int(np.sum((d[test] <= t) == same[test])) / len(test))
    best_t, best_c = choose_threshold(d, same)
    check((best_t, best_c) == sweep_threshold(d, same), name, "best threshold: sweep differs")
    accuracy = float(np.mean(fold_acc))
    check(close(accuracy, sum(fold_acc) / 10), name, "mean accuracy")
    return {
        "name": name,
        "distances": floats32(d32),
        "same": [bool(s) for s in same],
        "roc": {"thresholds": [float(t) for t in thresholds], "far": [float(v) for v in fpr[1:]],
                "tar": [float(v) for v in tpr[1:]]},
        "auc": auc,
        "tar_at_far_1e-3": tar_at(1e-3),
        "tar_at_far_1e-2": tar_at(1e-2),
        "accuracy": accuracy,
        "accuracy_std": float(np.std(fold_acc)),
        "fold_thresholds": fold_thr,
        "best_threshold": best_t,
        "best_accuracy": best_c / n,
    }


def gaussian_pairs(seed, n, positive_fraction, mu_pos=0.8, mu_neg=1.3, sigma=0.25):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < positive_fraction
    d = np.where(same, rng.normal(mu_pos, sigma, n), rng.normal(mu_neg, sigma, n))
    return np.abs(d).astype(np.float32), same


def verification_cases():
    rng = np.random.default_rng(300)
    same_grid = rng.random(400) < 0.5
    grid = np.where(same_grid, rng.integers(0, 9, 400), rng.integers(3, 13, 400)) * 0.25
    sep_same = rng.random(120) < 0.4
    sep = np.where(sep_same, rng.uniform(0.1, 0.7, 120), rng.uniform(0.9, 1.8, 120))
    one_same = np.ones(50, dtype=bool)
    one_same[17] = False
    one = rng.uniform(0.2, 1.2, 50)
    return [
        verification_case("gaussian overlap, n=200", *gaussian_pairs(301, 200, 0.5)),
        verification_case("gaussian overlap, n=1000", *gaussian_pairs(302, 1000, 0.5)),
        verification_case("n=5000, 1 % positives", *gaussian_pairs(303, 5000, 0.01, 0.6, 1.4, 0.3)),
        verification_case("heavy ties, 0.25 grid", grid, same_grid),
        verification_case("perfectly separated", sep, sep_same),
        verification_case("all pairs same except one", one, one_same),
        verification_case("n=37, folds of unequal size", *gaussian_pairs(304, 37, 0.5, 0.8, 1.2, 0.3)),
    ]


# ---------------------------------------------------------------------------------------------
# Re-identification


def distance_matrix(x, distance, variant="f64"):
    """Full item-by-item distance matrix; variant f64 is the definition, the others robustness."""
    if variant == "f64":
        x = x.astype(np.float64)
        if distance == "euclidean":
            return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        n = np.sqrt((x * x).sum(1))
        return 1.0 - (x @ x.T) / (n[:, None] * n[None, :])
    x = x.astype(np.float32)
    if distance == "euclidean":
        if variant == "f32-diff":
            return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        sq = (x * x).sum(1)
        return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0))
    xn = x / np.sqrt((x * x).sum(1))[:, None]
    if variant == "f32-diff":
        return 1 - xn @ xn.T
    n = np.sqrt((x * x).sum(1))
    return 1 - (x @ x.T) / (n[:, None] * n[None, :])


def reid_loop(dmat, labels, groups, is_query, is_gallery, reverse_ties=False):
    """The definition, one query at a time: (counted, CMC@1, CMC@5, CMC@10, mAP)."""
    n = len(labels)
    counted, cmc, aps = 0, {1: 0, 5: 0, 10: 0}, []
    for q in range(n):
        if not is_query[q]:
            continue
        gallery = [j for j in range(n) if is_gallery[j] and j != q and not (
            groups is not None and labels[j] == labels[q] and groups[j] == groups[q])]
        tie = (lambda j: -j) if reverse_ties else (lambda j: j)
        ranked = sorted(gallery, key=lambda j: (float(dmat[q, j]), tie(j)))
        rel = [labels[j] == labels[q] for j in ranked]
        if not any(rel):
            continue
        counted += 1
        first = rel.index(True) + 1
        for k in cmc:
            cmc[k] += first <= k
        hits, ap = 0, 0.0
        for rank, r in enumerate(rel, start=1):
            if r:
                hits += 1
                ap += hits / rank
        aps.append(ap / hits)
    return counted, cmc[1] / counted, cmc[5] / counted, cmc[10] / counted, sum(aps) / counted


def market1501_port(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Re-implementation of torchreid's eval_market1501 (metrics/rank.py), argsort made stable:
    returns (CMC curve as float32, mAP, number of valid queries)."""
    num_g = distmat.shape[1]
    max_rank = min(max_rank, num_g)
    order_all = np.argsort(distmat, axis=1, kind="stable")
    match_all = (g_pids[order_all] == q_pids[:, None]).astype(np.int32)
    curves, aps = [], []
    for i in range(distmat.shape[0]):
        order = order_all[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        hits = match_all[i][keep]
        if not hits.any():
            continue  # the query's identity is not in the (remaining) gallery
        found = hits.cumsum()
        assert len(found) >= max_rank  # torchreid stacks the curves: they must not be ragged
        curves.append(np.minimum(found, 1)[:max_rank])
        precision = np.asarray([c / (r + 1.0) for r, c in enumerate(found)])
        aps.append((precision * hits).sum() / hits.sum())
    valid = float(len(curves))
    assert valid > 0
    cmc = np.asarray(curves).astype(np.float32).sum(0) / valid
    return cmc, float(np.mean(aps)), int(valid)


def reid_case(name, distance, x, labels, groups, is_query, is_gallery, ties=False):
    x = np.ascontiguousarray(x, dtype=np.float32)
    labels = [int(v) for v in labels]
    groups = None if groups is None else [int(v) for v in groups]
    is_query = [bool(v) for v in is_query]
    is_gallery = [bool(v) for v in is_gallery]
    dmat = distance_matrix(x, distance)
    counted, c1, c5, c10, m_ap = reid_loop(dmat, labels, groups, is_query, is_gallery)

    qi = np.flatnonzero(is_query)
    gi = np.flatnonzero(is_gallery)
    lab = np.asarray(labels)
    cams = np.asarray(groups) if groups is not None else np.arange(len(labels))
    cmc, t_map, t_valid = market1501_port(dmat[np.ix_(qi, gi)], lab[qi], lab[gi], cams[qi], cams[gi], 10)
    check(t_valid == counted, name, f"torchreid port counts {t_valid} queries, loop {counted}")
    for k, ours in ((1, c1), (5, c5), (10, c10)):
        check(cmc[k - 1] == np.float32(ours), name, f"CMC@{k}: port {cmc[k - 1]!r} vs loop {ours!r}")
    check(close(t_map, m_ap), name, f"mAP: port {t_map!r} vs loop {m_ap!r}")
    for variant in ("f32-diff", "f32-expanded"):
        other = reid_loop(distance_matrix(x, distance, variant), labels, groups, is_query, is_gallery)
        check(other[0] == counted and all(close(a, b) for a, b in zip(other[1:], (c1, c5, c10, m_ap))),
              name, f"distances {variant} give {other}")
    if ties:
        rev = reid_loop(dmat, labels, groups, is_query, is_gallery, reverse_ties=True)
        check(any(not close(a, b) for a, b in zip(rev[1:], (c1, c5, c10, m_ap))), name,
              "tie case is not tie-sensitive")
    check(counted > 0, name, "no query counted")
    return {"name": name, "distance": distance, "dim": int(x.shape[1]), "embeddings": floats32(x),
            "labels": labels, "groups": groups, "is_query": is_query, "is_gallery": is_gallery,
            "cmc_rank_1": c1, "cmc_rank_5": c5, "cmc_rank_10": c10, "mAP": m_ap, "queries": counted}


def identities(seed, ids, per_id, dim, spread, groups, p_query, p_both, integer=None):
    """Items of `ids` identities around Gaussian centres (or integer ones), shuffled; roles:
    query only with probability p_query, both with p_both, else gallery only."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(ids), per_id)
    if integer is None:
        centres = rng.normal(size=(ids, dim)) * spread
        x = centres[labels] + rng.normal(size=(len(labels), dim))
    else:  # small integers: centres on a grid, each item one step or none away in each axis
        centres = rng.integers(0, integer, size=(ids, dim))
        x = centres[labels] + rng.integers(-1, 2, size=(len(labels), dim))
    g = rng.integers(0, groups, size=len(labels)) if groups else None
    u = rng.random(len(labels))
    is_query = u < p_query + p_both
    is_gallery = u >= p_query
    perm = rng.permutation(len(labels))
    return (x[perm].astype(np.float32), labels[perm], None if g is None else g[perm],
            is_query[perm], is_gallery[perm])


def unmatched_queries():
    """Ten ordinary identities plus: 10 only in the query set, 11 with all its gallery images on its
    query's camera, 12 a single item that is query and gallery, 13 two query+gallery items on
    different cameras (each finds the other)."""
    rng = np.random.default_rng(405)
    dim = 6
    x, labels, groups, q, g = identities(404, 10, 7, dim, 1.5, 3, 0.3, 0.1)
    centres = rng.normal(size=(4, dim)) * 1.5
    extra = [(10, 0, True, False), (10, 1, True, False),
             (11, 2, True, False), (11, 2, False, True), (11, 2, False, True),
             (12, 1, True, True),
             (13, 0, True, True), (13, 1, True, True)]
    ex = np.array([centres[l - 10] + rng.normal(size=dim) for l, _, _, _ in extra], dtype=np.float32)
    x = np.concatenate([x, ex])
    labels = np.concatenate([labels, [e[0] for e in extra]])
    groups = np.concatenate([groups, [e[1] for e in extra]])
    q = np.concatenate([q, [e[2] for e in extra]])
    g = np.concatenate([g, [e[3] for e in extra]])
    perm = rng.permutation(len(labels))
    return x[perm], labels[perm], groups[perm], q[perm], g[perm]


def reid_cases():
    cases = [
        reid_case("euclidean, 20 identities, 3 cameras", "euclidean",
                  *identities(400, 20, 10, 8, 1.5, 3, 0.25, 0.1)),
        reid_case("cosine, 15 identities, 4 cameras", "cosine",
                  *identities(401, 15, 12, 16, 0.84, 4, 0.25, 0.1)),
        reid_case("euclidean, no groups, queries inside the gallery", "euclidean",
                  *identities(402, 15, 10, 8, 1.2, 0, 0.0, 0.3)),
        reid_case("integer grid ties, 2 cameras", "euclidean",
                  *identities(403, 8, 15, 2, 0.0, 2, 0.25, 0.1, integer=5), ties=True),
        reid_case("queries without a valid match, query+gallery items", "euclidean",
                  *unmatched_queries()),
    ]
    last = cases[-1]
    n_query = sum(last["is_query"])
    check(last["queries"] < n_query, last["name"], "every query counted")
    both = sum(a and b for a, b in zip(last["is_query"], last["is_gallery"]))
    check(both > 0, last["name"], "no item is both query and gallery")
    return cases


def main():
    clustering = {"label_cases": label_cases(), "kmeans_cases": kmeans_cases()}
    verification = {"cases": verification_cases()}
    reid = {"cases": reid_cases()}
    for c in clustering["label_cases"]:
        print(f"label  {c['name']:50s} n={len(c['labels_true']):5d} nmi={c['nmi']:.6f} ami={c['ami']:.6g}",
              file=sys.stderr)
    for c in clustering["kmeans_cases"]:
        print(f"kmeans {c['name']:50s} n={len(c['labels']):5d} nmi={c['nmi']:.6f} ami={c['ami']:.6f} "
              f"inertia={c['inertia']:.6f}", file=sys.stderr)
    for c in verification["cases"]:
        print(f"verif  {c['name']:50s} n={len(c['same']):5d} auc={c['auc']:.6f} "
              f"tar3={c['tar_at_far_1e-3']:.4f} tar2={c['tar_at_far_1e-2']:.4f} acc={c['accuracy']:.4f}"
              f"±{c['accuracy_std']:.4f} best={c['best_threshold']:.6g}/{c['best_accuracy']:.4f}",
              file=sys.stderr)
    for c in reid["cases"]:
        print(f"reid   {c['name']:50s} n={len(c['labels']):5d} q={c['queries']:3d}/{sum(c['is_query']):3d} "
              f"cmc1={c['cmc_rank_1']:.4f} cmc5={c['cmc_rank_5']:.4f} cmc10={c['cmc_rank_10']:.4f} "
              f"mAP={c['mAP']:.6f}", file=sys.stderr)
    json.dump({
        "source": f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, scipy {scipy.__version__}",
        "clustering": clustering,
        "verification": verification,
        "reid": reid,
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
