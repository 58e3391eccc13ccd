//! Clustering, verification and re-identification metrics against scikit-learn and a port of
//! torchreid's Market-1501 evaluation.
//!
//! Fixture: `tests/fixtures/applications_golden.json`, made by `scripts/applications_golden.py`
//! (scikit-learn 1.9.1, numpy 2.4.6, scipy 1.17.1), every value checked there by a second,
//! independent computation.
//!
//! | clustering (labels) | n | NMI | AMI |
//! |---|---|---|---|
//! | random, 3 vs 2 classes | 10 | 0.004732 | -0.192198 |
//! | random, 5 vs 7 classes | 200 | 0.041313 | 0.005610 |
//! | random, 50 classes, 60 % agreeing | 2000 | 0.589105 | 0.503100 |
//! | random, 10 vs 12 classes, 30 % agreeing | 500 | 0.142936 | 0.102867 |
//! | identical partitions | 100 | 1 | 1 |
//! | permuted label values | 150 | 1 | 1 |
//! | one cluster | 60 | 0 | 0 |
//! | all singletons | 40 | 0.596546 | 2.76e-14 |
//! | very unbalanced (190/5/3/2) | 200 | 0.566879 | 0.551613 |
//! | both one class | 30 | 1 | 1 |
//!
//! | k-means (`KMeans(n_init=10)`) | n | dim | k | NMI | AMI | inertia |
//! |---|---|---|---|---|---|---|
//! | 3 unequal blobs, exact labels | 60 | 2 | 3 | 1 | 1 | 136.744812 |
//! | 5 unequal blobs, 12 wrong labels | 600 | 4 | 5 | 0.926243 | 0.925560 | 2362.611576 |
//! | 4 blobs, labels renamed, 5 wrong | 300 | 8 | 4 | 0.939533 | 0.938861 | 2408.630558 |
//! | 6 unequal blobs, 4 wrong labels | 200 | 16 | 6 | 0.945161 | 0.942833 | 3127.464670 |
//!
//! | verification | pairs (same) | AUC | TAR@1e-3 | TAR@1e-2 | 10-fold accuracy | threshold / accuracy |
//! |---|---|---|---|---|---|---|
//! | gaussian overlap | 200 (106) | 0.919410 | 0.443396 | 0.443396 | 0.8250 ± 0.1006 | 1.087865 / 0.855 |
//! | gaussian overlap | 1000 (508) | 0.917279 | 0.082677 | 0.385827 | 0.8390 ± 0.0311 | 1.072308 / 0.841 |
//! | 1 % same | 5000 (57) | 0.966836 | 0.333333 | 0.508772 | 0.9916 ± 0.0047 | 0.384520 / 0.9918 |
//! | ties on a 0.25 grid | 400 (207) | 0.836562 | 0.342995 | 0.342995 | 0.7075 ± 0.0475 | 1.375 / 0.7325 |
//! | separated | 120 (42) | 1 | 1 | 1 | 1 ± 0 | 0.793559 / 1 |
//! | all same but one | 50 (49) | 0.408163 | 0.408163 | 0.408163 | 0.96 ± 0.08 | 1.148960 / 0.96 |
//! | 37 pairs, unequal folds | 37 (25) | 0.76 | 0.4 | 0.4 | 0.6750 ± 0.1766 | 1.153554 / 0.7838 |
//!
//! | re-identification | groups | counted | CMC@1 | CMC@5 | CMC@10 | mAP |
//! |---|---|---|---|---|---|---|
//! | euclidean, 20 identities | 3 | 78/78 | 0.551282 | 0.858974 | 0.974359 | 0.551169 |
//! | cosine, 15 identities | 4 | 59/59 | 0.559322 | 0.881356 | 0.949153 | 0.460815 |
//! | no groups, queries in the gallery | none | 44/44 | 0.704545 | 0.931818 | 0.977273 | 0.567143 |
//! | integer grid ties | 2 | 36/36 | 0.277778 | 0.666667 | 0.861111 | 0.324703 |
//! | queries without a valid match | 3 | 34/38 | 0.705882 | 0.911765 | 0.970588 | 0.670451 |
//!
//! k-means is compared by its partition (cluster ids are arbitrary) and inertia: the blobs are
//! separated enough that scikit-learn finds the same partition from any seed.

mod common;

use burn::tensor::Device;
use common::{bools, f64s, floats, ints};
use serde_json::Value;
use triplet_loss::Distance;
use triplet_metrics::verification::{best_threshold, cross_validated, roc, verification};
use triplet_metrics::{Rows, Split, ami, clustering, kmeans, nmi, reid};

fn golden() -> Value {
    serde_json::from_str(include_str!("fixtures/applications_golden.json")).unwrap()
}

fn close(name: &str, what: &str, ours: f64, theirs: f64, tol: f64) {
    assert!(
        (ours - theirs).abs() <= tol,
        "{name}: {what} ours {ours}, reference {theirs}"
    );
}

/// The partition of a labelling, independent of its ids: for each item, the first item with
/// its label.
fn partition(labels: &[usize]) -> Vec<usize> {
    labels
        .iter()
        .map(|l| labels.iter().position(|m| m == l).unwrap())
        .collect()
}

#[test]
fn nmi_and_ami_match_scikit_learn() {
    let g = golden();
    let cases = g["clustering"]["label_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (t, p) = (ints(&case["labels_true"]), ints(&case["labels_pred"]));
        close(
            name,
            "NMI",
            nmi(&t, &p),
            case["nmi"].as_f64().unwrap(),
            1e-10,
        );
        close(
            name,
            "AMI",
            ami(&t, &p),
            case["ami"].as_f64().unwrap(),
            1e-10,
        );
    }
}

#[test]
fn kmeans_finds_scikit_learns_partition() {
    let g = golden();
    let cases = g["clustering"]["kmeans_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dim = case["dim"].as_u64().unwrap() as usize;
        let x = floats(&case["embeddings"]);
        let labels = ints(&case["labels"]);
        let k = case["k"].as_u64().unwrap() as usize;
        for seed in [0, 1, 7] {
            let ours = kmeans(Rows::new(&x, dim), k, seed);
            assert_eq!(
                partition(&ours.assignment),
                partition(&ints(&case["assignment"])),
                "{name}: seed {seed}"
            );
            let inertia = case["inertia"].as_f64().unwrap();
            close(name, "inertia", ours.inertia, inertia, 1e-9 * inertia);
        }
        let c = clustering(Rows::new(&x, dim), &labels, 0);
        close(name, "NMI", c.nmi, case["nmi"].as_f64().unwrap(), 1e-10);
        close(name, "AMI", c.ami, case["ami"].as_f64().unwrap(), 1e-10);
    }
}

#[test]
fn verification_matches_scikit_learns_roc_and_the_lfw_protocol() {
    let g = golden();
    let cases = g["verification"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let d = f64s(&case["distances"]);
        let s = bools(&case["same"]);
        let r = roc(&d, &s);
        assert_eq!(r.thresholds, f64s(&case["roc"]["thresholds"]), "{name}");
        for (what, ours, theirs) in [
            ("far", &r.far, f64s(&case["roc"]["far"])),
            ("tar", &r.tar, f64s(&case["roc"]["tar"])),
        ] {
            assert_eq!(ours.len(), theirs.len(), "{name}: {what}");
            for (a, b) in ours.iter().zip(&theirs) {
                close(name, what, *a, *b, 1e-12);
            }
        }
        let (v, _) = verification(&d, &s, "euclidean").unwrap();
        let want = |k: &str| case[k].as_f64().unwrap();
        close(name, "AUC", v.auc, want("auc"), 1e-12);
        close(
            name,
            "TAR@FAR=1e-3",
            v.tar_at_far_1e3,
            want("tar_at_far_1e-3"),
            1e-12,
        );
        close(
            name,
            "TAR@FAR=1e-2",
            v.tar_at_far_1e2,
            want("tar_at_far_1e-2"),
            1e-12,
        );
        close(name, "accuracy", v.accuracy, want("accuracy"), 1e-12);
        close(
            name,
            "accuracy std",
            v.accuracy_std,
            want("accuracy_std"),
            1e-12,
        );
        close(
            name,
            "threshold",
            v.threshold,
            want("best_threshold"),
            1e-12,
        );
        close(
            name,
            "threshold accuracy",
            v.threshold_accuracy,
            want("best_accuracy"),
            1e-12,
        );
        let (_, _, folds) = cross_validated(&d, &s, 10);
        let want_folds = f64s(&case["fold_thresholds"]);
        assert_eq!(folds.len(), want_folds.len(), "{name}");
        for (a, b) in folds.iter().zip(&want_folds) {
            // Midpoints: numpy's and ours may differ in the last bit.
            close(name, "fold threshold", *a, *b, 1e-12);
        }
        assert_eq!(
            best_threshold(&d, &s).unwrap().0,
            v.threshold,
            "{name}: one rule"
        );
    }
}

#[test]
fn reid_matches_the_market1501_evaluation() {
    let g = golden();
    let cases = g["reid"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let device = Device::flex();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let distance = match case["distance"].as_str().unwrap() {
            "cosine" => Distance::Cosine,
            _ => Distance::Euclidean,
        };
        let groups = (!case["groups"].is_null()).then(|| ints(&case["groups"]));
        let (is_query, is_gallery) = (bools(&case["is_query"]), bools(&case["is_gallery"]));
        let split = Split {
            is_query: &is_query,
            is_gallery: &is_gallery,
            groups: groups.as_deref(),
        };
        let x = floats(&case["embeddings"]);
        let r = reid(
            Rows::new(&x, case["dim"].as_u64().unwrap() as usize),
            &ints(&case["labels"]),
            split,
            distance,
            &device,
        )
        .unwrap();
        assert_eq!(
            r.queries as u64,
            case["queries"].as_u64().unwrap(),
            "{name}"
        );
        let want = |k: &str| case[k].as_f64().unwrap();
        close(name, "CMC@1", r.cmc_rank_1, want("cmc_rank_1"), 1e-12);
        close(name, "CMC@5", r.cmc_rank_5, want("cmc_rank_5"), 1e-12);
        close(name, "CMC@10", r.cmc_rank_10, want("cmc_rank_10"), 1e-12);
        close(name, "mAP", r.map, want("mAP"), 1e-12);
    }
}
