//! The public surface: defaults, validation messages, serialisation of the config (the CLI
//! reads it from files), and the shapes and counts at a realistic batch size.

mod common;

use burn::prelude::*;
use triplet_loss::{
    ConfigError, CrossBatchMemory, CrossBatchMemoryConfig, Distance, MemoryState, Mining,
    Reduction, TripletLossConfig,
};

#[test]
fn defaults_are_facenet_semi_hard() {
    let cfg = TripletLossConfig::new();
    assert_eq!(cfg.margin, 0.2);
    assert_eq!(cfg.distance, Distance::Euclidean);
    assert_eq!(cfg.mining, Mining::SemiHard);
    assert_eq!(cfg.reduction, Reduction::Mean);
    assert!(!cfg.soft);
    assert_eq!(Mining::default(), Mining::SemiHard);
    assert_eq!(Distance::default(), Distance::Euclidean);
    assert_eq!(Reduction::default(), Reduction::Mean);
}

#[test]
fn invalid_margins_are_rejected_with_the_value() {
    for margin in [-0.1, f64::NAN, f64::INFINITY] {
        let err = TripletLossConfig::new()
            .with_margin(margin)
            .validate()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Margin(_)));
        let message = err.to_string();
        assert!(
            message.contains("margin") && message.contains(&margin.to_string()),
            "{message}"
        );
    }
    assert!(TripletLossConfig::new().with_margin(0.0).validate().is_ok());
}

#[test]
#[should_panic(expected = "triplet loss config error: margin must be a finite number >= 0, got -1")]
fn init_panics_on_an_invalid_config() {
    let _ = TripletLossConfig::new().with_margin(-1.0).init();
}

#[test]
fn try_init_returns_the_config_error() {
    let err = TripletLossConfig::new()
        .with_margin(-1.0)
        .try_init()
        .unwrap_err();
    assert_eq!(err, ConfigError::Margin(-1.0));
    // The message carries its prefix once.
    assert_eq!(
        err.to_string().matches("triplet loss config error").count(),
        1
    );
    assert!(TripletLossConfig::new().try_init().is_ok());
}

#[test]
fn config_round_trips_through_json_with_readable_names() {
    let cfg = TripletLossConfig::new()
        .with_margin(0.3)
        .with_distance(Distance::Cosine)
        .with_mining(Mining::All)
        .with_reduction(Reduction::MeanActive)
        .with_soft(true);
    let json = serde_json::to_string(&cfg).unwrap();
    assert!(
        json.contains("\"Cosine\"") && json.contains("\"All\"") && json.contains("\"MeanActive\""),
        "{json}"
    );
    let back: TripletLossConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (
            back.margin,
            back.distance,
            back.mining,
            back.reduction,
            back.soft
        ),
        (
            0.3,
            Distance::Cosine,
            Mining::All,
            Reduction::MeanActive,
            true
        )
    );
    // Burn's `#[derive(Config)]` requires every field when deserialising (defaults apply to
    // `new()` only): a partial file fails, naming the field.
    let partial = serde_json::from_str::<TripletLossConfig>(r#"{"mining": "Hard"}"#).unwrap_err();
    assert!(partial.to_string().contains("margin"), "{partial}");
}

#[test]
fn counts_at_a_realistic_batch_size() {
    // P = 128 classes × K = 8: exercises the threaded miners through the public API.
    let (p, k, dim) = (128usize, 8usize, 32usize);
    let b = p * k;
    let device = Device::flex().autodiff();
    let mut rng = common::Rng::new(3);
    let flat: Vec<f32> = (0..b * dim).map(|_| rng.normal() as f32).collect();
    let x = Tensor::<2>::from_data(TensorData::new(flat, [b, dim]), &device).require_grad();
    let y = Tensor::<1, Int>::from_data(
        TensorData::new((0..b as i64).map(|i| i / k as i64).collect::<Vec<_>>(), [b]),
        &device,
    );
    let expected = [
        (Mining::All, (b * (k - 1) * (b - k)) as u64),
        (Mining::SemiHard, (b * (k - 1)) as u64),
        (Mining::Hard, b as u64),
    ];
    for (mining, triplets) in expected {
        let out = TripletLossConfig::new()
            .with_mining(mining)
            .init()
            .forward_with_stats(x.clone(), y.clone());
        assert_eq!(out.stats.triplets, triplets, "{mining:?}");
        assert_eq!(out.stats.anchors_with_triplet, b as u64, "{mining:?}");
        assert!(out.stats.active > 0 && out.stats.active <= triplets);
        assert!(out.stats.mean_d_an > 0.0 && out.stats.mean_d_ap > 0.0);
        let value = common::to_vec(out.loss.clone())[0];
        assert!(value.is_finite() && value > 0.0, "{mining:?}: {value}");
        let grad = common::to_matrix(x.grad(&out.loss.backward()).unwrap());
        assert!(grad.iter().flatten().all(|g| g.is_finite()));
        assert!(grad.iter().flatten().any(|&g| g != 0.0));
    }
}

/// The NaN policy: a NaN embedding makes the loss NaN (as in PyTorch), and the statistics say
/// so (`non_finite`), for every strategy and on the device's batch-hard path too; `mine`
/// refuses a matrix it cannot mine.
#[test]
fn nan_embeddings_are_flagged_in_the_statistics() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        let x = Tensor::<2>::from_data(
            [[0.0, 0.0], [0.0, 1.0], [f32::NAN, 0.0], [2.0, 2.0]],
            &device,
        );
        let y = Tensor::<1, Int>::from_data([0, 0, 1, 1], &device);
        for mining in [Mining::All, Mining::Hard, Mining::SemiHard] {
            let out = TripletLossConfig::new()
                .with_mining(mining)
                .init()
                .forward_with_stats(x.clone(), y.clone());
            // Row 2 against all 4 rows, and column 2 against the other 3.
            assert_eq!(out.stats.non_finite, 7, "{mining:?}");
            assert!(!out.stats.is_finite());
        }
        let clean = TripletLossConfig::new()
            .init()
            .forward_with_stats(x.clone().slice([0..2, 0..2]), y.clone().slice(0..2));
        assert!(clean.stats.is_finite());
    }
}

#[test]
#[should_panic(expected = "the distance matrix has 1 non-finite entries")]
fn mine_refuses_a_nan_matrix() {
    let device = Device::flex();
    let d = Tensor::<2>::from_data([[0.0, 1.0], [f32::NAN, 0.0]], &device);
    let y = Tensor::<1, Int>::from_data([0, 1], &device);
    let _ = triplet_loss::mine(d, y, Mining::All);
}

/// Identical embeddings (a collapsed model): every triplet sits at the margin with a zero
/// gradient, so training cannot move (the docs say so; `triplet train` warns).
#[test]
fn identical_embeddings_give_the_margin_and_no_gradient() {
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_data([[0.5, 0.5]; 4], &device).require_grad();
    let y = Tensor::<1, Int>::from_data([0, 0, 1, 1], &device);
    for mining in [Mining::All, Mining::Hard, Mining::SemiHard] {
        let out = TripletLossConfig::new()
            .with_margin(0.2)
            .with_mining(mining)
            .init()
            .forward_with_stats(x.clone(), y.clone());
        let value: f32 = out.loss.clone().into_scalar();
        assert!((value - 0.2).abs() < 1e-6, "{mining:?}: {value}");
        assert_eq!(out.stats.active, out.stats.triplets);
        let grad = x.grad(&out.loss.backward()).unwrap();
        let grad: Vec<f32> = grad.into_data().try_into_vec_as().unwrap();
        assert!(grad.iter().all(|&g| g == 0.0), "{mining:?}: {grad:?}");
    }
}

#[test]
fn cross_batch_memory_config_and_state_errors_name_the_value() {
    let err = CrossBatchMemoryConfig::new()
        .with_memory_size(0)
        .try_init()
        .unwrap_err();
    assert_eq!(err, ConfigError::MemorySize(0));
    assert_eq!(
        err.to_string(),
        "cross-batch memory config error: memory_size must be at least 1, got 0"
    );
    let device = Device::flex();
    let state = MemoryState {
        capacity: 4,
        dim: 2,
        next: 1,
        embeddings: vec![0.0; 6],
        labels: vec![1, 2, 3],
    };
    let err = CrossBatchMemory::from_state(state, &device).unwrap_err();
    assert!(
        err.to_string()
            .contains("capacity 4, dim 2, next slot 1, 3 labels, 6 values"),
        "{err}"
    );
}

/// The ring buffer: batches of 3 into a memory of 5 overwrite the oldest slots, in PML's slot
/// order, and a batch's own rows are never its positives (one row per class: no triplet until
/// an earlier batch brings other rows of those classes).
#[test]
fn cross_batch_memory_keeps_the_newest_rows_in_slot_order() {
    let device = Device::flex();
    let loss = TripletLossConfig::new()
        .with_mining(Mining::All)
        .with_reduction(Reduction::Sum)
        .init();
    let mut memory = CrossBatchMemoryConfig::new().with_memory_size(5).init();
    assert!(memory.is_empty());
    let batch = |v: f32, labels: [i64; 3]| {
        (
            Tensor::<2>::from_data([[v, 0.0], [v, 1.0], [v, 2.0]], &device),
            Tensor::<1, Int>::from_data(labels, &device),
        )
    };
    let (x, y) = batch(0.0, [1, 2, 3]);
    let first = memory.forward_with_stats(&loss, x, y);
    assert_eq!(
        first.stats.triplets, 0,
        "a batch's own copies are not positives"
    );
    // Slots 3, 4 and 0 (which held the first batch's class 1): labels [3, 2, 3, 1, 2]. Class 1
    // has no positive left, classes 2 and 3 one each (the first batch's), with 3 negatives.
    let (x, y) = batch(1.0, [1, 2, 3]);
    assert_eq!(memory.forward_with_stats(&loss, x, y).stats.triplets, 2 * 3);
    let state = memory.state();
    assert_eq!(
        (state.next, state.labels.as_slice()),
        (1, &[3i64, 2, 3, 1, 2][..])
    );
    assert_eq!(state.embeddings[..2], [1.0, 2.0], "slot 0 was overwritten");
    assert_eq!(memory.len(), 5);
    memory.clear();
    assert!(memory.is_empty());
}

/// `i64` labels beyond `i32` (on flex, whose integers default to `i32`) stay whole in the
/// memory: its label bank takes the batch's type, and a restored bank widens to `i64` where a
/// label needs it, so two labels that agree only in their low 32 bits never mine as one class.
#[test]
fn cross_batch_memory_keeps_wide_labels_whole() {
    use burn::tensor::DType;
    let device = Device::flex();
    let loss = TripletLossConfig::new()
        .with_mining(Mining::All)
        .with_reduction(Reduction::Sum)
        .init();
    let wide = 1i64 << 40;
    let labels = |v: [i64; 2]| {
        Tensor::<1, Int>::from_data(TensorData::new(v.to_vec(), [2]), (&device, DType::I64))
    };
    let x = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 1.0]], &device);
    let mut memory = CrossBatchMemoryConfig::new().with_memory_size(4).init();
    memory.forward_with_stats(&loss, x.clone(), labels([wide + 1, 1]));
    // Each anchor has one positive (its label's earlier slot) and two negatives; cut to
    // i32, 2^40 + 1 would be 1, and no slot would be a negative.
    let out = memory.forward_with_stats(&loss, x.clone(), labels([wide + 1, 1]));
    assert_eq!(
        out.stats.triplets,
        2 * 2,
        "two classes of two, each with 2 negatives"
    );
    let state = memory.state();
    assert_eq!(state.labels, [wide + 1, 1, wide + 1, 1]);
    let mut restored = CrossBatchMemory::from_state(state.clone(), &device).unwrap();
    assert_eq!(restored.state(), state);
    let again = restored.forward_with_stats(&loss, x, labels([wide + 1, 1]));
    assert_eq!(again.stats.triplets, out.stats.triplets);
    assert_eq!(restored.state().labels, [wide + 1, 1, wide + 1, 1]);
}

#[test]
#[should_panic(expected = "a batch of 3 is larger than the cross-batch memory of 2")]
fn a_batch_larger_than_the_memory_is_refused() {
    let device = Device::flex();
    let loss = TripletLossConfig::new().init();
    let mut memory = CrossBatchMemoryConfig::new().with_memory_size(2).init();
    let x = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0]], &device);
    let y = Tensor::<1, Int>::from_data([1, 1, 2], &device);
    memory.forward(&loss, x, y);
}

/// The crate's published requirements: a project depending on `triplet-loss` must be able to
/// take a patch release of Burn or CubeCL beside it, so no dependency is pinned with `=`.
#[test]
fn dependencies_are_caret_requirements() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("the crate's manifest");
    let mut section = String::new();
    let mut checked = 0;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if section != "[dependencies]" || line.starts_with('#') || line.is_empty() {
            continue;
        }
        assert!(
            !line.contains("\"="),
            "a pinned requirement in [dependencies]: {line}"
        );
        assert!(
            !line.contains("workspace = true") || line.starts_with("thiserror"),
            "{line}: the workspace pins Burn with `=`; give the crate's own caret requirement"
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "read the [dependencies] section ({checked} lines)"
    );
}

/// The tests' tolerance checks fold errors and scales with `common::nan_max`: a NaN there must
/// fail the check, which `f64::max` (dropping the NaN) would not.
#[test]
fn the_tests_scales_keep_a_nan() {
    assert!(common::nan_max(1.0, f64::NAN).is_nan());
    assert!(common::nan_max(f64::NAN, 0.0).is_nan());
    let worst = common::nan_max(0.0, f64::NAN);
    assert_eq!(
        worst.partial_cmp(&1e-3),
        None,
        "a NaN is never within tolerance"
    );
    assert_eq!(common::nan_max(1.0, 2.0), 2.0);
}
