#!/usr/bin/env python3
"""Golden retrieval metrics from pytorch-metric-learning's AccuracyCalculator, for
crates/train/tests/retrieval_golden.rs (leave-one-out P@1, R-Precision, MAP@R).

Embeddings are drawn in float32 (so the Rust side sees exactly the same numbers) and scored in
float64 with PML's exact CustomKNN, Euclidean (LpDistance) or cosine (CosineSimilarity).
Random continuous data, so no two distances tie: tie-breaking differs between torch.topk and
our index order (see the test). Classes of very different sizes, singletons included (PML and we
leave a query without any other member of its class out).

Usage: python scripts/pml_retrieval_golden.py > crates/train/tests/fixtures/retrieval_golden.json
Needs: scripts/requirements.txt (torch 2.15.0, pytorch-metric-learning 2.9.0).
"""
import json

import numpy as np
import pytorch_metric_learning
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN


def case(name, seed, sizes, dim, distance, spread):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    centres = rng.normal(size=(len(sizes), dim)) * spread
    x = (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
    perm = rng.permutation(len(labels))
    x, labels = x[perm], labels[perm]
    dist = LpDistance(normalize_embeddings=False) if distance == "euclidean" else CosineSimilarity()
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(dist),
    )
    m = calc.get_accuracy(torch.from_numpy(x).double(), torch.from_numpy(labels))
    return {
        "name": name,
        "distance": distance,
        "dim": dim,
        "embeddings": [float(v) for v in x.reshape(-1)],
        "labels": [int(v) for v in labels],
        "precision_at_1": m["precision_at_1"],
        "r_precision": m["r_precision"],
        "mean_average_precision_at_r": m["mean_average_precision_at_r"],
    }


def main():
    cases = [
        case("separated, equal classes", 0, [10, 10, 10, 10], 8, "euclidean", 3.0),
        case("overlapping, uneven with singletons", 1, [25, 12, 5, 2, 1, 1], 6, "euclidean", 0.7),
        case("noise only", 2, [15, 15, 15], 4, "euclidean", 0.0),
        case("cosine, uneven", 3, [20, 9, 4, 1], 16, "cosine", 1.0),
    ]
    print(json.dumps({"source": f"pytorch-metric-learning {pytorch_metric_learning.__version__}, "
                      f"torch {torch.__version__}", "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
