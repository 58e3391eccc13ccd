#!/usr/bin/env python3
"""Golden retrieval metrics from pytorch-metric-learning's AccuracyCalculator, for
crates/metrics/tests/retrieval_golden.rs.

Metrics (definitions of Musgrave et al., "A Metric Learning Reality Check", PML's names):
precision_at_1, r_precision, mean_average_precision_at_r, plus recall_at_1/2/4/8 (Recall@K: the
fraction of queries with at least one same-class reference among their K nearest; with fewer than
K references the list is just shorter). R is the number of references of the query's class (the
query itself not counted in leave-one-out). Queries with R = 0 are left out of every average (PML's
"lone query" mask); averages are over queries (PML's default avg_of_avgs=False).

Two more over the whole ranking (every reference but the query itself, PML's k=None):
mean_average_precision (standard average precision: the mean, over the query's R relevant
references, of the precision at each one's rank) and mean_reciprocal_rank (1 / rank of the first
relevant reference). They come from a second AccuracyCalculator(k=None) with the same knn; unlike
MAP@R, full MAP does not stop at rank R, so it never reaches 0 for a counted query.

Ranking rule encoded here: a query's neighbours are sorted by (distance ascending, reference index
ascending), i.e. a stable sort, so exact ties go to the lower index. In leave-one-out mode (a set
queried against itself) the query is removed by index; an identical duplicate point at distance 0
stays in the list as an ordinary neighbour. In query-reference mode nothing is removed.

Why a custom knn: PML's default CustomKNN ranks with torch.topk, whose order among equal values is
unspecified, so on data with ties PML's numbers depend on torch's kernel. StableExactKNN below
plugs into AccuracyCalculator(knn_func=...) and returns the neighbours in the order above, from
exact float64 distances (Euclidean: sqrt of the summed squared differences; cosine: 1 - cosine
similarity). It puts the query itself first in leave-one-out mode, so that PML's own
return_results drops exactly the self index and nothing else. Recall@K comes in through PML's
documented extension (subclass with calculate_recall_at_K and requires_knn); k is
max(max_bin_count, 8), capped by the number of references, so Recall@8 sees 8 neighbours.

Checks, all fatal: a brute-force numpy/pure-Python loop recomputes all 9 metrics with the same
rule and must agree with PML to 1e-12; the metrics must come out the same when distances are
computed in float32 or with other formulas (|q|^2+|r|^2-2q.r, normalise-then-dot, ...), so the
fixture does not depend on how the Rust side computes distances; the tie cases must actually be
tie-sensitive (breaking ties by descending index changes one of the first 7 metrics); the first
four cases keep the values of the previous fixture. For each case "pml_default" records what PML
reports (the first 7 metrics only) with its default CustomKNN (torch.topk, and note: in float32, because get_accuracy casts its inputs to
torch.float); on tie cases it may differ from ours, which is expected.

Embeddings are drawn as float32 (so the Rust side sees exactly the same numbers), tie cases use
small integers (exact in float32, also for |q|^2+|r|^2-2q.r, and cosine ties only between parallel
power-of-two multiples, orthogonal or sign-symmetric vectors, which tie under any formula).

Usage: python scripts/pml_retrieval_golden.py > crates/metrics/tests/fixtures/retrieval_golden.json
Needs: scripts/requirements.txt (torch 2.15.0, pytorch-metric-learning 2.9.0).
"""
import json
import math
import sys

import numpy as np
import pytorch_metric_learning
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN, return_results

RECALL_KS = (1, 2, 4, 8)
METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r") + tuple(
    f"recall_at_{k}" for k in RECALL_KS
)
# Over the whole ranking (PML's k=None); written beside mean_average_precision_at_r.
FULL_METRICS = ("mean_average_precision", "mean_reciprocal_rank")
ALL_METRICS = METRICS + FULL_METRICS
RULE = (
    "Neighbours are sorted by (distance ascending, reference index ascending), so exact ties go "
    "to the lower index; in leave-one-out mode the query itself is removed by index (a duplicate "
    "point at distance 0 stays an ordinary neighbour); queries with no same-class reference "
    "(R = 0) are left out of all averages."
)
TOL = 1e-12

# P@1, R-Precision, MAP@R of the previous fixture (cases 1-4), which must not change.
PREVIOUS = {
    "separated, equal classes": (1.0, 0.9944444444444445, 0.9944444444444445),
    "overlapping, uneven with singletons": (0.5454545454545454, 0.5147210743801652, 0.3771524959347621),
    "noise only": (0.3111111111111111, 0.29999999999999993, 0.1327125608077989),
    "cosine, uneven": (1.0, 0.895933014354067, 0.8828846790961831),
}


# ---------------------------------------------------------------------------------------------
# PML side


def exact_distances(query, reference, distance):
    """Float64 distance matrix (query rows, reference columns)."""
    q, r = query.double(), reference.double()
    if distance == "euclidean":
        return ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1).sqrt()
    qn = q / q.norm(dim=1, keepdim=True)
    rn = r / r.norm(dim=1, keepdim=True)
    return 1.0 - qn @ rn.T


class StableExactKNN:
    """knn_func for AccuracyCalculator: exact float64 distances, stable (distance, index) order.

    PML 2.9.0 calls knn_func(query, k, reference, ref_includes_query) and expects (distances,
    indices) of shape (len(query), k). With ref_includes_query (leave-one-out: reference[:n] is
    query) it wants k + 1 columns run through return_results, which drops the column holding the
    query's own index, or the last column of rows that lack it. We give the query a key of -inf so
    it is always column 0: exactly the self index goes, duplicates at distance 0 stay.
    """

    def __init__(self, distance):
        self.distance = distance

    def __call__(self, query, k, reference, ref_includes_query=False):
        d = exact_distances(query, reference, self.distance)
        key = d.clone()
        if ref_includes_query:
            k = k + 1
            rows = torch.arange(len(query))
            key[rows, rows] = -math.inf
        # Columns start in index order, so a stable sort by distance is a sort by (distance, index).
        _, order = torch.sort(key, dim=1, stable=True)
        indices = order[:, :k]
        distances = torch.gather(d, 1, indices)
        return return_results(distances, indices, ref_includes_query)


class RecallAccuracyCalculator(AccuracyCalculator):
    """AccuracyCalculator plus recall_at_{1,2,4,8}; k at least 8 (capped by the references)."""

    def _recall_at(self, k, knn_labels, query_labels, not_lone_query_mask, label_counts):
        if not torch.any(not_lone_query_mask):
            return float("nan")
        knn_labels = knn_labels[not_lone_query_mask][:, :k]
        query_labels = query_labels[not_lone_query_mask]
        hit = torch.any(self.label_comparison_fn(query_labels[:, None], knn_labels), dim=1)
        return torch.mean(hit.double()).item()

    def calculate_recall_at_1(self, knn_labels, query_labels, not_lone_query_mask, label_counts, **kw):
        return self._recall_at(1, knn_labels, query_labels, not_lone_query_mask, label_counts)

    def calculate_recall_at_2(self, knn_labels, query_labels, not_lone_query_mask, label_counts, **kw):
        return self._recall_at(2, knn_labels, query_labels, not_lone_query_mask, label_counts)

    def calculate_recall_at_4(self, knn_labels, query_labels, not_lone_query_mask, label_counts, **kw):
        return self._recall_at(4, knn_labels, query_labels, not_lone_query_mask, label_counts)

    def calculate_recall_at_8(self, knn_labels, query_labels, not_lone_query_mask, label_counts, **kw):
        return self._recall_at(8, knn_labels, query_labels, not_lone_query_mask, label_counts)

    def requires_knn(self):
        return super().requires_knn() + [f"recall_at_{k}" for k in RECALL_KS]

    def determine_k(self, bin_counts, num_reference_embeddings, ref_includes_query):
        # PML: "max_bin_count" gives max_bin_count - self, which may be < 8. The knn returns k
        # columns (k + 1 before the self is dropped), so k may not exceed the other references.
        k = super().determine_k(bin_counts, num_reference_embeddings, ref_includes_query)
        return min(max(k, max(RECALL_KS)), num_reference_embeddings - int(ref_includes_query))


def pml_metrics(query, query_labels, reference, reference_labels, distance, knn_func):
    calc = RecallAccuracyCalculator(
        include=METRICS, k="max_bin_count", knn_func=knn_func, device=torch.device("cpu")
    )
    args = [torch.from_numpy(query), torch.from_numpy(query_labels)]
    if reference is not None:
        args += [torch.from_numpy(reference), torch.from_numpy(reference_labels)]
    m = calc.get_accuracy(*args)
    return {k: float(m[k]) for k in METRICS}


def pml_full_metrics(query, query_labels, reference, reference_labels, knn_func):
    """Full MAP and MRR: PML's own calculator with k=None (all references but the query).

    PML 2.9.0's mean_reciprocal_rank builds its ranks as `torch.argmax(...) + 1.0`, a tensor of
    torch's default float dtype, so by default the reciprocal ranks and their mean are float32
    (e.g. 0.7045454382896423 for 31/44). The call runs with float64 as the default dtype, which
    gives the exact mean; MAP is float64 in PML either way.
    """
    calc = AccuracyCalculator(
        include=FULL_METRICS, k=None, knn_func=knn_func, device=torch.device("cpu")
    )
    args = [torch.from_numpy(query), torch.from_numpy(query_labels)]
    if reference is not None:
        args += [torch.from_numpy(reference), torch.from_numpy(reference_labels)]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        m = calc.get_accuracy(*args)
    finally:
        torch.set_default_dtype(previous)
    return {k: float(m[k]) for k in FULL_METRICS}


def default_knn(distance):
    return CustomKNN(LpDistance(normalize_embeddings=False) if distance == "euclidean" else CosineSimilarity())


# ---------------------------------------------------------------------------------------------
# Independent brute force


def distance_matrix(q, r, distance, variant):
    """Distance matrix computed one of several ways (for the robustness check)."""
    dtype = np.float64 if variant.startswith("f64") else np.float32
    q, r = q.astype(dtype), r.astype(dtype)
    if distance == "euclidean":
        if variant.endswith("diff"):
            return np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
        if variant.endswith("expanded"):  # |q|^2 + |r|^2 - 2 q.r, squared distance (no sqrt)
            qq = (q * q).sum(1)[:, None]
            rr = (r * r).sum(1)[None, :]
            return np.maximum(qq + rr - 2 * (q @ r.T), 0)
        if variant.endswith("expanded-sqrt"):
            qq = (q * q).sum(1)[:, None]
            rr = (r * r).sum(1)[None, :]
            return np.sqrt(np.maximum(qq + rr - 2 * (q @ r.T), 0))
    else:
        if variant.endswith("dot/norms"):
            nq = np.sqrt((q * q).sum(1))[:, None]
            nr = np.sqrt((r * r).sum(1))[None, :]
            return 1 - (q @ r.T) / (nq * nr)
        if variant.endswith("normdot"):
            qn = q / np.sqrt((q * q).sum(1))[:, None]
            rn = r / np.sqrt((r * r).sum(1))[:, None]
            return 1 - qn @ rn.T
        if variant.endswith("normdot-loop-reversed"):  # explicit loop, summing the last dim first
            qn = q / np.sqrt((q * q).sum(1))[:, None]
            rn = r / np.sqrt((r * r).sum(1))[:, None]
            out = np.empty((len(q), len(r)), dtype=dtype)
            for i in range(len(q)):
                for j in range(len(r)):
                    s = dtype(0)
                    for t in reversed(range(q.shape[1])):
                        s = dtype(s + qn[i, t] * rn[j, t])
                    out[i, j] = 1 - s
            return out
    raise ValueError(variant)


VARIANTS = {
    "euclidean": ("f64-diff", "f32-diff", "f32-expanded", "f32-expanded-sqrt", "f64-expanded"),
    "cosine": ("f64-dot/norms", "f64-normdot", "f32-dot/norms", "f32-normdot", "f32-normdot-loop-reversed"),
}


def brute_force(dmat, query_labels, reference_labels, leave_one_out, reverse_ties=False):
    """All 9 metrics by a plain loop over queries, from a precomputed distance matrix."""
    sums = dict.fromkeys(ALL_METRICS, 0.0)
    counted = 0
    for i, label in enumerate(query_labels):
        candidates = [j for j in range(len(reference_labels)) if not (leave_one_out and j == i)]
        tie = (lambda j: -j) if reverse_ties else (lambda j: j)
        ranked = sorted(candidates, key=lambda j: (float(dmat[i, j]), tie(j)))
        rel = [reference_labels[j] == label for j in ranked]
        r = sum(rel)
        if r == 0:
            continue
        counted += 1
        sums["precision_at_1"] += float(rel[0])
        sums["r_precision"] += sum(rel[:r]) / r
        hits, ap = 0, 0.0
        for pos in range(r):
            if rel[pos]:
                hits += 1
                ap += hits / (pos + 1)
        sums["mean_average_precision_at_r"] += ap / r
        for k in RECALL_KS:
            sums[f"recall_at_{k}"] += float(any(rel[:k]))
        hits, ap = 0, 0.0
        for pos, is_rel in enumerate(rel):  # the whole ranking
            if is_rel:
                hits += 1
                ap += hits / (pos + 1)
        sums["mean_average_precision"] += ap / r
        sums["mean_reciprocal_rank"] += 1.0 / (rel.index(True) + 1)
    return counted, {k: v / counted for k, v in sums.items()}


# ---------------------------------------------------------------------------------------------
# Cases


def make_case(name, distance, queries, query_labels, references=None, reference_labels=None,
              ties=False):
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    query_labels = np.asarray(query_labels, dtype=np.int64)
    loo = references is None
    if not loo:
        references = np.ascontiguousarray(references, dtype=np.float32)
        reference_labels = np.asarray(reference_labels, dtype=np.int64)
    ref = queries if loo else references
    ref_labels = query_labels if loo else reference_labels
    ql, rl = [int(v) for v in query_labels], [int(v) for v in ref_labels]

    ours = pml_metrics(queries, query_labels, references, reference_labels, distance,
                       StableExactKNN(distance))
    ours.update(pml_full_metrics(queries, query_labels, references, reference_labels,
                                 StableExactKNN(distance)))
    default = pml_metrics(queries, query_labels, references, reference_labels, distance,
                          default_knn(distance))

    results = {}
    for variant in VARIANTS[distance]:
        results[variant] = brute_force(distance_matrix(queries, ref, distance, variant), ql, rl, loo)
    counted, brute = results[VARIANTS[distance][0]]
    failures = []
    for key in ALL_METRICS:
        if not abs(ours[key] - brute[key]) <= TOL:
            failures.append(f"{key}: PML {ours[key]!r} vs brute force {brute[key]!r}")
        for variant, (c, m) in results.items():
            if c != counted or not abs(m[key] - brute[key]) <= TOL:
                failures.append(f"{key}: distances {variant} give {m[key]!r} (counted {c}), "
                                f"exact f64 gives {brute[key]!r} (counted {counted})")
    if ties:
        _, reversed_ties = brute_force(distance_matrix(queries, ref, distance, VARIANTS[distance][0]),
                                       ql, rl, loo, reverse_ties=True)
        if all(abs(reversed_ties[k] - brute[k]) <= TOL for k in METRICS):
            failures.append("tie case is not tie-sensitive: descending-index tie-break gives the same")
    if name in PREVIOUS:
        for key, old in zip(METRICS[:3], PREVIOUS[name]):
            if not abs(ours[key] - old) <= TOL:
                failures.append(f"{key}: {ours[key]!r}, previous fixture {old!r}")
    if failures:
        raise SystemExit(f"case {name!r} FAILED:\n  " + "\n  ".join(failures))

    case = {
        "name": name,
        "mode": "leave-one-out" if loo else "query-reference",
        "distance": distance,
        "dim": int(queries.shape[1]),
        "queries": [float(v) for v in queries.reshape(-1)],
        "query_labels": ql,
    }
    if not loo:
        case["references"] = [float(v) for v in references.reshape(-1)]
        case["reference_labels"] = rl
    case["counted"] = counted
    for key in METRICS:
        case[key] = ours[key]
        if key == "mean_average_precision_at_r":
            case.update((k, ours[k]) for k in FULL_METRICS)
    case["pml_default"] = default
    return case


def clustered(seed, sizes, dim, distance, spread):
    """Previous fixture's generator (cases 1-4), unchanged: same seeds give the same data."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    centres = rng.normal(size=(len(sizes), dim)) * spread
    x = (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
    perm = rng.permutation(len(labels))
    return x[perm], labels[perm]


def clustered_qr(seed, ref_sizes, query_sizes, dim, spread):
    """Query-reference data around shared class centres; classes sized independently per side."""
    rng = np.random.default_rng(seed)
    n_classes = max(len(ref_sizes), len(query_sizes))
    centres = rng.normal(size=(n_classes, dim)) * spread

    def side(sizes):
        labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes) if n > 0])
        x = (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
        perm = rng.permutation(len(labels))
        return x[perm], labels[perm]

    refs, ref_labels = side(ref_sizes)
    queries, query_labels = side(query_sizes)
    return queries, query_labels, refs, ref_labels


def has_duplicates(x, labels, same_class):
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if np.array_equal(x[i], x[j]) and (labels[i] == labels[j]) == same_class:
                return True
    return False


def integer_grid_loo():
    rng = np.random.default_rng(6)
    x = rng.integers(0, 4, size=(30, 2)).astype(np.float32)
    labels = np.concatenate([np.full(12, 0), np.full(10, 1), np.full(7, 2), np.full(1, 3)])
    labels = labels[rng.permutation(30)]
    assert has_duplicates(x, labels, True) and has_duplicates(x, labels, False)
    return x, labels


def integer_grid_large():
    """Classes above 32 members (Triplet's k then takes its partition path), many exact ties."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 5, size=(90, 2)).astype(np.float32)
    labels = np.concatenate([np.full(45, 0), np.full(35, 1), np.full(10, 2)])
    labels = labels[rng.permutation(90)]
    assert has_duplicates(x, labels, True) and has_duplicates(x, labels, False)
    return x, labels


def cosine_ties():
    # Parallel power-of-two multiples (identical once normalised), exact duplicates of one class
    # and of two classes, antiparallel, orthogonal and sign-symmetric vectors; class 3 a singleton.
    rows = [
        ((1, 0, 0), 0), ((2, 0, 0), 1), ((4, 0, 0), 0), ((-1, 0, 0), 2), ((-2, 0, 0), 1),
        ((0, 1, 0), 1), ((0, 2, 0), 0), ((0, -1, 0), 2),
        ((0, 0, 1), 2), ((0, 0, 1), 0), ((0, 0, -2), 2),
        ((1, 1, 0), 0), ((2, 2, 0), 1), ((1, 1, 0), 1), ((1, -1, 0), 2), ((-1, 1, 0), 0),
        ((1, 0, 1), 1), ((1, 0, -1), 2), ((0, 1, 1), 0), ((0, 2, 2), 2), ((0, 1, 1), 0),
        ((1, 1, 1), 3), ((2, 2, 2), 1), ((-1, -1, -1), 2),
    ]
    return np.array([r for r, _ in rows], dtype=np.float32), np.array([c for _, c in rows])


def integer_grid_qr():
    rng = np.random.default_rng(9)
    refs = rng.integers(0, 4, size=(24, 2)).astype(np.float32)
    ref_labels = np.concatenate([np.full(9, 0), np.full(8, 1), np.full(6, 2), np.full(1, 3)])
    ref_labels = ref_labels[rng.permutation(24)]
    # Half the queries sit exactly on a reference but carry another class (of 0..3); the rest are
    # free grid points, with class 4 absent from the references.
    on = rng.choice(24, size=6, replace=False)
    q_on = refs[on]
    l_on = (ref_labels[on] + rng.integers(1, 4, size=6)) % 4
    q_free = rng.integers(0, 4, size=(6, 2)).astype(np.float32)
    l_free = np.array([0, 1, 2, 3, 4, 4])
    queries = np.concatenate([q_on, q_free])
    query_labels = np.concatenate([l_on, l_free])
    perm = rng.permutation(12)
    return queries[perm], query_labels[perm], refs, ref_labels


def main():
    cases = [
        make_case("separated, equal classes", "euclidean", *clustered(0, [10, 10, 10, 10], 8, "euclidean", 3.0)),
        make_case("overlapping, uneven with singletons", "euclidean",
                  *clustered(1, [25, 12, 5, 2, 1, 1], 6, "euclidean", 0.7)),
        make_case("noise only", "euclidean", *clustered(2, [15, 15, 15], 4, "euclidean", 0.0)),
        make_case("cosine, uneven", "cosine", *clustered(3, [20, 9, 4, 1], 16, "cosine", 1.0)),
        make_case("ties on a line", "euclidean", np.arange(5, dtype=np.float32)[:, None], [0, 0, 1, 0, 1],
                  ties=True),
        make_case("ties on an integer grid, duplicates", "euclidean", *integer_grid_loo(), ties=True),
        make_case("cosine ties, parallel and orthogonal", "cosine", *cosine_ties(), ties=True),
        make_case("query-reference, classes missing from references", "euclidean",
                  *clustered_qr(8, [30, 20, 15, 10, 4, 1], [6, 5, 5, 4, 3, 2, 3, 2], 8, 1.0)),
        make_case("query-reference, integer grid, queries on references", "euclidean",
                  *integer_grid_qr(), ties=True),
        make_case("query-reference, cosine", "cosine",
                  *clustered_qr(10, [25, 15, 12, 6, 2], [6, 6, 5, 4, 2, 2], 12, 1.0)),
        make_case("large classes (R above 32), overlapping", "euclidean",
                  *clustered(12, [60, 45, 40, 2], 6, "euclidean", 0.8)),
        make_case("large classes, integer grid ties", "euclidean", *integer_grid_large(), ties=True),
        make_case("query-reference, large reference classes", "euclidean",
                  *clustered_qr(13, [50, 40, 35], [10, 10, 10], 8, 0.8)),
    ]
    json.dump({
        "source": f"pytorch-metric-learning {pytorch_metric_learning.__version__}, torch {torch.__version__}",
        "rule": RULE,
        "cases": cases,
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
