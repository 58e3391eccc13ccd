//! Golden values and gradients from pytorch-metric-learning 2.9.0 (torch 2.15.0, float64),
//! produced by `scripts/pml_golden.py` into `tests/fixtures/pml_golden.json`.
//!
//! Mapping (checked by the script against its own brute-force loop to 1e-9):
//! - `Distance::Euclidean` = `LpDistance(p=2, power=1)`, `SquaredEuclidean` = `LpDistance(power=2)`,
//!   `Cosine` = `CosineSimilarity()` (PML's `relu(s_an − s_ap + m)` equals our `relu(d_ap − d_an + m)`);
//! - `Mining::All` = `TripletMarginLoss` without a miner; `Mining::Hard` = `BatchHardMiner`;
//! - `Reduction::MeanActive` = `AvgNonZeroReducer`, `Mean` = `MeanReducer`, `Sum` = `SumReducer`;
//! - soft = `smooth_loss=True` with margin 0 (PML keeps the margin inside the softplus; we drop it).
//!
//! FaceNet's semi-hard is not here: PML's "semihard" miner is a different rule (every triplet with
//! `0 < d_an − d_ap ≤ margin`, our `Mining::PmlSemiHard`, checked at the end against
//! `scripts/pml_semihard_golden.py`); ours is checked by the brute-force oracle and the crate
//! docs' worked example. The anchor swap is checked against `scripts/swap_golden.py`, and
//! reference embeddings and the cross-batch memory against `scripts/xbm_golden.py`.
//!
//! The script's table (name, B, D, loss, triplets, active):
//! ```text
//! all_euclidean_m0.1_meanactive                      12  4      0.7900902963146827    216     132
//! all_euclidean_m0.2_meanactive                      12  5      0.9159486742783527    288     146
//! all_euclidean_m0.5_meanactive                      12  6      0.9479218270516995    204     143
//! all_euclidean_m1.0_meanactive                       8  3       1.286898166422103     96      57
//! all_squared_euclidean_m0.1_meanactive              12  5       8.511442237062283    288     140
//! all_squared_euclidean_m0.2_meanactive              12  6       7.446469983206037    204      95
//! all_squared_euclidean_m0.5_meanactive               8  3       5.087515821091299     96      50
//! all_squared_euclidean_m1.0_meanactive              12  4        4.37882642645792    216     124
//! all_cosine_m0.1_meanactive                         12  6      0.4626741239896043    204     104
//! all_cosine_m0.2_meanactive                          8  3      0.8405801465107786     96      58
//! all_cosine_m0.5_meanactive                         12  4      0.9134820687215075    216     181
//! all_cosine_m1.0_meanactive                         12  5       1.044440359042207    288     268
//! hard_euclidean_m0.2_mean                           24  8       2.225276139770218     24      24
//! hard_euclidean_m0.5_mean                           12  4       2.593074935232027     10      10
//! hard_squared_euclidean_m0.1_mean                   15  6       13.60362462930699     15      15
//! hard_squared_euclidean_m1.0_mean                   12  5       8.282878048830975     12      12
//! hard_cosine_m0.2_mean                              16  8       1.126851140943556     16      16
//! hard_cosine_m0.5_mean                              13  3        1.75204561530846     10      10
//! hard_euclidean_m0.2_mean_clustered                 12  4      0.1744454078955698     12       7
//! hard_cosine_m0.2_meanactive_clustered              16  6      0.4843758725286139     16      14
//! hard_squared_euclidean_m0.5_meanactive_clustered   12  5       1.565382458500001     10       4
//! all_euclidean_m0.2_sum                              9  4       65.48948419516607    108      59
//! hard_squared_euclidean_m0.5_sum                     8  3       28.79794440610848      8       4
//! hard_cosine_m0.3_sum                               24  8       34.13342653550748     24      24
//! all_cosine_m0.2_sum                                12  5       69.31781457810202    204     126
//! all_squared_euclidean_m0.2_mean                    12  4       2.859042091143552    216     111
//! all_euclidean_soft_meanactive                      12  4      0.9334673154940918    216     216
//! all_cosine_soft_meanactive                         12  6      0.7700000177435778    204     204
//! hard_euclidean_soft_mean                           16  8       2.610208347295774     16      16
//! hard_squared_euclidean_soft_mean                   12  5       6.887076038639738     10      10
//! all_squared_euclidean_m0.2_meanactive_dup          12  4       7.318818867133612    216      71
//! all_cosine_m0.2_meanactive_dup                     12  5       0.6060529905684527    288     132
//! all_squared_euclidean_m0.5_mean_dup                12  3       3.386882197150447    204      98
//! ```

mod common;

use burn::prelude::*;
use common::{close, nan_max, to_matrix, to_vec};
use serde::Deserialize;
use triplet_loss::{
    CrossBatchMemory, CrossBatchMemoryConfig, Distance, Mining, MiningStats, Reduction, References,
    TripletLoss, TripletLossConfig,
};

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    distance: String,
    mining: String,
    reduction: String,
    margin: f64,
    soft: bool,
    embeddings: Vec<Vec<f32>>,
    labels: Vec<i64>,
    loss: f64,
    grad: Vec<Vec<f64>>,
    num_triplets: u64,
}

impl Case {
    fn config(&self) -> TripletLossConfig {
        config_of(&self.name, &self.distance, &self.mining, &self.reduction)
            .with_margin(self.margin)
            .with_soft(self.soft)
    }
}

/// The config a reference case names (distance, mining, reduction), with the defaults
/// otherwise.
fn config_of(name: &str, distance: &str, mining: &str, reduction: &str) -> TripletLossConfig {
    let distance = match distance {
        "euclidean" => Distance::Euclidean,
        "squared_euclidean" => Distance::SquaredEuclidean,
        "cosine" => Distance::Cosine,
        other => panic!("{name}: unknown distance {other}"),
    };
    let mining = match mining {
        "all" => Mining::All,
        "hard" => Mining::Hard,
        "pml_semi_hard" => Mining::PmlSemiHard,
        other => panic!("{name}: unknown mining {other}"),
    };
    let reduction = match reduction {
        "mean" => Reduction::Mean,
        "mean_active" => Reduction::MeanActive,
        "sum" => Reduction::Sum,
        other => panic!("{name}: unknown reduction {other}"),
    };
    TripletLossConfig::new()
        .with_distance(distance)
        .with_mining(mining)
        .with_reduction(reduction)
}

/// A fixture of `tests/fixtures/`, parsed.
fn read_fixture<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A reference batch as tensors on `device`.
fn batch_tensors(
    embeddings: &[Vec<f32>],
    labels: &[i64],
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let (b, d) = (embeddings.len(), embeddings[0].len());
    let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
    let x = Tensor::<2>::from_data(TensorData::new(flat, [b, d]), device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [b]), device);
    (x, y)
}

/// Runs `config` on a reference batch on `device` and checks the loss (1e-5 relative) and, on
/// an autodiff device, its gradient (1e-4 of the largest entry) against the reference's;
/// returns the statistics.
fn check_case(
    name: &str,
    config: &TripletLossConfig,
    embeddings: &[Vec<f32>],
    labels: &[i64],
    (loss, grad): (f64, &[Vec<f64>]),
    device: &Device,
) -> MiningStats {
    let (b, d) = (embeddings.len(), embeddings[0].len());
    let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
    let x = Tensor::<2>::from_data(TensorData::new(flat, [b, d]), device);
    let x = if device.is_autodiff() {
        x.require_grad()
    } else {
        x
    };
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [b]), device);
    let out = config.init().forward_with_stats(x.clone(), y);
    let got = to_vec(out.loss.clone())[0] as f64;
    assert!(
        close(got, loss, 1e-5, 1e-6),
        "{name}: loss {got}, PML {loss}"
    );
    if device.is_autodiff() {
        let got = to_matrix(x.grad(&out.loss.backward()).unwrap());
        let scale = grad
            .iter()
            .flatten()
            .fold(0.0f64, |m, g| nan_max(m, g.abs()));
        for (i, (g, w)) in got.iter().flatten().zip(grad.iter().flatten()).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale + 1e-7,
                "{name} grad[{i}]: {g} vs PML {w}"
            );
        }
    }
    out.stats
}

#[test]
fn loss_and_gradients_match_pytorch_metric_learning() {
    let cases = read_fixture::<Fixture>("pml_golden.json").cases;
    assert!(cases.len() >= 30);
    for case in &cases {
        let stats = check_case(
            &case.name,
            &case.config(),
            &case.embeddings,
            &case.labels,
            (case.loss, &case.grad),
            &Device::flex().autodiff(),
        );
        assert_eq!(stats.triplets, case.num_triplets, "{}", case.name);
    }
}

/// `scripts/swap_golden.py`: PML's `TripletMarginLoss(swap=True)` (checked there against a
/// brute-force loop and PyTorch's `TripletMarginLoss(swap=True)`), batch-all and batch-hard,
/// three distances, into `tests/fixtures/swap_golden.json`.
#[test]
fn anchor_swap_matches_pytorch_metric_learning() {
    #[derive(Deserialize)]
    struct SwapCase {
        name: String,
        distance: String,
        mining: String,
        reduction: String,
        margin: f64,
        embeddings: Vec<Vec<f32>>,
        labels: Vec<i64>,
        triplets: u64,
        loss: f64,
        grad: Vec<Vec<f64>>,
    }
    #[derive(Deserialize)]
    struct SwapFixture {
        cases: Vec<SwapCase>,
    }
    let fixture: SwapFixture = read_fixture("swap_golden.json");
    assert_eq!(fixture.cases.len(), 12);
    for case in &fixture.cases {
        let config = config_of(&case.name, &case.distance, &case.mining, &case.reduction)
            .with_margin(case.margin)
            .with_swap(true);
        for device in [Device::flex().autodiff(), Device::flex()] {
            let stats = check_case(
                &case.name,
                &config,
                &case.embeddings,
                &case.labels,
                (case.loss, &case.grad),
                &device,
            );
            assert_eq!(stats.triplets, case.triplets, "{}", case.name);
        }
    }
}

/// `scripts/pml_semihard_golden.py`: PML's `TripletMarginMiner(margin, "semihard")` feeding
/// `TripletMarginLoss(margin)`, into `tests/fixtures/pml_semihard_golden.json`:
/// [`Mining::PmlSemiHard`] keeps the same triplets, and the loss and gradient agree.
#[test]
fn pml_semi_hard_matches_pytorch_metric_learning() {
    #[derive(Deserialize)]
    struct BandCase {
        name: String,
        distance: String,
        reduction: String,
        margin: f64,
        embeddings: Vec<Vec<f32>>,
        labels: Vec<i64>,
        triplets: Vec<[i64; 3]>,
        loss: f64,
        grad: Vec<Vec<f64>>,
    }
    #[derive(Deserialize)]
    struct BandFixture {
        cases: Vec<BandCase>,
    }
    let fixture: BandFixture = read_fixture("pml_semihard_golden.json");
    assert_eq!(fixture.cases.len(), 9);
    for case in &fixture.cases {
        let config = config_of(&case.name, &case.distance, "all", &case.reduction)
            .with_margin(case.margin)
            .with_mining(Mining::PmlSemiHard);
        // The miner alone keeps PML's triplets.
        let (x, y) = batch_tensors(&case.embeddings, &case.labels, &Device::flex());
        let mined = triplet_loss::mine_with_margin(
            config.distance.pairwise(x.clone(), x),
            y,
            Mining::PmlSemiHard,
            case.margin,
        );
        let read = |t: Tensor<1, Int>| -> Vec<i64> { t.into_data().try_into_vec_as().unwrap() };
        let (a, p, n) = (
            read(mined.anchor),
            read(mined.positive),
            read(mined.negative),
        );
        let mut got: Vec<[i64; 3]> = (0..a.len()).map(|i| [a[i], p[i], n[i]]).collect();
        got.sort_unstable();
        assert_eq!(got, case.triplets, "{}", case.name);
        // The loss with the rule, mined with the loss's own margin.
        let stats = check_case(
            &case.name,
            &config,
            &case.embeddings,
            &case.labels,
            (case.loss, &case.grad),
            &Device::flex().autodiff(),
        );
        assert_eq!(
            stats.triplets as usize,
            case.triplets.len(),
            "{}",
            case.name
        );
    }
}

/// Checks a loss value (1e-5 relative) and a gradient (1e-4 of its largest entry) against a
/// reference's.
fn check_value_and_grad(name: &str, loss: Tensor<1>, x: &Tensor<2>, want: (f64, &[Vec<f64>])) {
    let got = to_vec(loss.clone())[0] as f64;
    assert!(
        close(got, want.0, 1e-5, 1e-6),
        "{name}: loss {got}, PML {}",
        want.0
    );
    let grads = loss.backward();
    check_grad(name, x, &grads, want.1);
}

fn check_grad(name: &str, x: &Tensor<2>, grads: &burn::tensor::Gradients, want: &[Vec<f64>]) {
    let got = to_matrix(x.grad(grads).expect("a gradient"));
    let scale = want
        .iter()
        .flatten()
        .fold(0.0f64, |m, g| nan_max(m, g.abs()));
    for (i, (g, w)) in got.iter().flatten().zip(want.iter().flatten()).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * scale + 1e-7,
            "{name} grad[{i}]: {g} vs PML {w}"
        );
    }
}

#[derive(Deserialize)]
struct MemoryStep {
    embeddings: Vec<Vec<f32>>,
    labels: Vec<i64>,
    loss: f64,
    grad: Vec<Vec<f64>>,
    triplets: u64,
    #[serde(default)]
    ref_embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    ref_labels: Vec<i64>,
    #[serde(default)]
    ref_grad: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct MemoryCase {
    name: String,
    kind: String,
    distance: String,
    mining: String,
    reduction: String,
    margin: f64,
    memory_size: usize,
    steps: Vec<MemoryStep>,
}

/// The cases of `xbm_golden.json` of one kind (`refs` or `xbm`), each with its loss.
fn memory_cases(kind: &str) -> Vec<(MemoryCase, TripletLoss)> {
    #[derive(Deserialize)]
    struct MemoryFixture {
        cases: Vec<MemoryCase>,
    }
    read_fixture::<MemoryFixture>("xbm_golden.json")
        .cases
        .into_iter()
        .filter(|c| c.kind == kind)
        .map(|c| {
            let loss = config_of(&c.name, &c.distance, &c.mining, &c.reduction)
                .with_margin(c.margin)
                .init();
            (c, loss)
        })
        .collect()
}

/// `scripts/xbm_golden.py`: PML's `TripletMarginLoss(...)(x, y, miner(x, y, R, L), R, L)`
/// (batch-all without a miner, `BatchHardMiner`, the "semihard" `TripletMarginMiner`):
/// [`TripletLoss::forward_refs`] gives the same loss, the same gradient with respect to the
/// batch and to the references, and the same number of triplets.
#[test]
fn reference_embeddings_match_pytorch_metric_learning() {
    let device = Device::flex().autodiff();
    let cases = memory_cases("refs");
    assert_eq!(cases.len(), 6);
    for (case, loss) in &cases {
        let step = &case.steps[0];
        let (x, y) = batch_tensors(&step.embeddings, &step.labels, &device);
        let (r, ry) = batch_tensors(&step.ref_embeddings, &step.ref_labels, &device);
        let (x, r) = (x.require_grad(), r.require_grad());
        let out = loss.forward_refs_with_stats(x.clone(), y, References::new(r.clone(), ry));
        assert_eq!(out.stats.triplets, step.triplets, "{}", case.name);
        let got = to_vec(out.loss.clone())[0] as f64;
        assert!(
            close(got, step.loss, 1e-5, 1e-6),
            "{}: loss {got}, PML {}",
            case.name,
            step.loss
        );
        let grads = out.loss.backward();
        check_grad(&case.name, &x, &grads, &step.grad);
        check_grad(
            &format!("{} (references)", case.name),
            &r,
            &grads,
            &step.ref_grad,
        );
    }
}

/// `scripts/xbm_golden.py`: PML's `CrossBatchMemory(TripletMarginLoss(...), 4, memory_size,
/// miner)` over five batches of 8 (the memory wraps): [`CrossBatchMemory`] gives every step's
/// loss, gradient and triplet count; and a memory saved after step 2 and restored
/// ([`CrossBatchMemory::state`], [`CrossBatchMemory::from_state`]) goes on exactly as PML's.
#[test]
fn cross_batch_memory_matches_pytorch_metric_learning() {
    let device = Device::flex().autodiff();
    let cases = memory_cases("xbm");
    assert_eq!(cases.len(), 7);
    for (case, loss) in &cases {
        for restore_after in [None, Some(2)] {
            let mut memory = CrossBatchMemoryConfig::new()
                .with_memory_size(case.memory_size)
                .init();
            for (i, step) in case.steps.iter().enumerate() {
                let name = format!("{} step {i} (restored after {restore_after:?})", case.name);
                let (x, y) = batch_tensors(&step.embeddings, &step.labels, &device);
                let x = x.require_grad();
                let out = memory.forward_with_stats(loss, x.clone(), y);
                assert_eq!(out.stats.triplets, step.triplets, "{name}");
                check_value_and_grad(&name, out.loss, &x, (step.loss, &step.grad));
                assert_eq!(
                    memory.len(),
                    ((i + 1) * step.labels.len()).min(case.memory_size),
                    "{name}"
                );
                if restore_after == Some(i) {
                    let state = memory.state();
                    memory = CrossBatchMemory::from_state(state.clone(), &device).unwrap();
                    assert_eq!(memory.state(), state, "{name}");
                }
            }
        }
    }
}
