//! Leave-one-out retrieval metrics against pytorch-metric-learning's `AccuracyCalculator`.
//!
//! Fixture: `tests/fixtures/retrieval_golden.json`, made by `scripts/pml_retrieval_golden.py`
//! (pytorch-metric-learning 2.9.0, torch 2.15.0, exact `CustomKNN`, float64):
//!
//! | case | distance | n | P@1 | R-Precision | MAP@R |
//! |---|---|---|---|---|---|
//! | separated, equal classes | euclidean | 40 | 1.0 | 0.994444 | 0.994444 |
//! | overlapping, uneven with singletons | euclidean | 46 | 0.545455 | 0.514721 | 0.377152 |
//! | noise only | euclidean | 45 | 0.311111 | 0.3 | 0.132713 |
//! | cosine, uneven | cosine | 34 | 1.0 | 0.895933 | 0.882885 |
//!
//! The data are continuous, so no two distances tie. With ties the two differ on purpose: we
//! rank equal distances by index (deterministic); PML takes `torch.topk`'s order, which is not
//! specified. For points 0..4 on a line with classes a a b a b, PML ranks neighbour 2 before
//! neighbour 0 for query 1 (both at distance 1) and reports P@1 0.2, MAP@R 0.15, where our rule
//! gives 0.4 and 0.2 (the hand-worked unit test in `src/eval/metrics.rs`).

use serde_json::Value;
use triplet_loss::Distance;
use triplet_train::eval::metrics::leave_one_out;

#[test]
fn leave_one_out_matches_pytorch_metric_learning() {
    let text = include_str!("fixtures/retrieval_golden.json");
    let golden: Value = serde_json::from_str(text).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let dim = case["dim"].as_u64().unwrap() as usize;
        let embeddings: Vec<f32> = case["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let labels: Vec<usize> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let distance = match case["distance"].as_str().unwrap() {
            "cosine" => Distance::Cosine,
            _ => Distance::Euclidean,
        };
        let m = leave_one_out(&embeddings, dim, &labels, distance);
        for (ours, key) in [
            (m.precision_at_1, "precision_at_1"),
            (m.r_precision, "r_precision"),
            (m.map_at_r, "mean_average_precision_at_r"),
        ] {
            let theirs = case[key].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() < 1e-9,
                "{name}: {key} ours {ours}, pytorch-metric-learning {theirs}"
            );
        }
    }
}
