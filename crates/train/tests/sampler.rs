//! P×K sampler invariants over many seeds and label layouts, determinism, resume, and the
//! errors a user sees for impossible settings.

use std::collections::HashMap;

use triplet_train::data::sampler::{PkSampler, SamplerError, SamplerState};

/// Labels with classes of the given sizes, interleaved, with label values that are not 0..C.
fn labels(sizes: &[usize]) -> Vec<i64> {
    let mut out = Vec::new();
    let max = *sizes.iter().max().unwrap();
    for round in 0..max {
        for (c, &size) in sizes.iter().enumerate() {
            if round < size {
                out.push(c as i64 * 7 - 20);
            }
        }
    }
    out
}

#[test]
fn every_batch_is_p_classes_of_k_samples() {
    let layouts: [&[usize]; 4] = [
        &[10; 10],
        &[3, 50, 7, 20, 9, 4],
        &[2, 2, 2, 2],
        &[100, 1, 1, 30],
    ];
    for layout in layouts {
        let y = labels(layout);
        for (p, k) in [(2, 2), (3, 4), (4, 2)] {
            if p > layout.len() || p * k > y.len() {
                continue;
            }
            for seed in 0..20 {
                let sampler = PkSampler::new(&y, p, k, seed).unwrap();
                assert_eq!(sampler.batches_per_epoch(), y.len() / (p * k));
                for epoch in 0..3 {
                    for batch in sampler.epoch(epoch) {
                        assert_eq!(batch.len(), p * k);
                        let mut per_class: HashMap<i64, usize> = HashMap::new();
                        for chunk in batch.chunks(k) {
                            let label = y[chunk[0]];
                            assert!(chunk.iter().all(|&i| y[i] == label), "{layout:?} {chunk:?}");
                            *per_class.entry(label).or_default() += chunk.len();
                        }
                        assert_eq!(per_class.len(), p, "{layout:?} p={p} k={k} seed={seed}");
                    }
                }
            }
        }
    }
}

#[test]
fn samples_of_a_class_are_used_evenly() {
    let y = labels(&[9, 9, 9, 9, 9, 9]);
    let sampler = PkSampler::new(&y, 3, 3, 5).unwrap();
    let mut count = vec![0usize; y.len()];
    for epoch in 0..4 {
        for i in sampler.epoch(epoch).into_iter().flatten() {
            count[i] += 1;
        }
    }
    for class in 0..6 {
        let counts: Vec<usize> = (0..y.len())
            .filter(|&i| y[i] == class * 7 - 20)
            .map(|i| count[i])
            .collect();
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "class {class}: {counts:?}");
    }
}

#[test]
fn small_classes_repeat_samples_to_fill_k() {
    let y = labels(&[1, 2, 40]);
    let sampler = PkSampler::new(&y, 3, 4, 0).unwrap();
    for batch in sampler.epoch(0) {
        let singleton: Vec<usize> = batch.iter().copied().filter(|&i| y[i] == -20).collect();
        assert_eq!(singleton.len(), 4);
        assert!(singleton.iter().all(|&i| i == singleton[0]));
    }
}

#[test]
fn order_is_a_function_of_seed_and_epoch() {
    let y = labels(&[12; 8]);
    let a = PkSampler::new(&y, 4, 3, 42).unwrap();
    let b = PkSampler::new(&y, 4, 3, 42).unwrap();
    assert_eq!(a.epoch(3), b.epoch(3));
    assert_ne!(a.epoch(0), a.epoch(1));
    assert_ne!(a.epoch(0), PkSampler::new(&y, 4, 3, 43).unwrap().epoch(0));
}

#[test]
fn resuming_mid_epoch_reproduces_the_rest() {
    let y = labels(&[12; 8]);
    let sampler = PkSampler::new(&y, 4, 3, 9).unwrap();
    let full = sampler.epoch(2);
    for done in 0..=full.len() {
        let state = SamplerState {
            epoch: 2,
            batch: done,
        };
        let json = serde_json::to_string(&state).unwrap();
        let restored: SamplerState = serde_json::from_str(&json).unwrap();
        assert_eq!(sampler.remaining(restored), full[done..].to_vec());
    }
}

#[test]
fn impossible_settings_are_clear_errors() {
    let y = labels(&[5, 5, 5]);
    let cases = [
        (
            2,
            1,
            SamplerError::KTooSmall(1),
            "K (samples per class) must be at least 2, got 1",
        ),
        (
            1,
            2,
            SamplerError::PTooSmall(1),
            "P (classes per batch) must be at least 2, got 1",
        ),
        (
            4,
            2,
            SamplerError::NotEnoughClasses { p: 4, classes: 3 },
            "P = 4 classes per batch, but the data has only 3 classes",
        ),
        (
            3,
            6,
            SamplerError::NotEnoughSamples {
                batch: 18,
                samples: 15,
            },
            "P × K = 18 samples, but the data has only 15",
        ),
    ];
    for (p, k, want, message) in cases {
        let err = PkSampler::new(&y, p, k, 0).unwrap_err();
        assert_eq!(err, want);
        assert!(err.to_string().contains(message), "{err}");
    }
}
