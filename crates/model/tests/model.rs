//! Shapes for every backbone × input, the head's options, and records: a saved model reloads
//! to identical outputs, and a record of another shape is refused with an error.

use burn::prelude::*;
use burn::tensor::Distribution;
use triplet_model::{BackboneConfig, EmbeddingHeadConfig, EmbeddingModelConfig, SmallCnnConfig};

fn config(in_channels: usize, dim: usize, batch_norm: bool) -> EmbeddingModelConfig {
    EmbeddingModelConfig::new()
        .with_backbone(SmallCnnConfig::new().with_in_channels(in_channels).into())
        .with_head(
            EmbeddingHeadConfig::new()
                .with_dim(dim)
                .with_batch_norm(batch_norm),
        )
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, cols] = t.dims();
    let flat: Vec<f32> = t.into_data().try_into_vec_as().unwrap();
    flat.chunks(cols).map(<[f32]>::to_vec).collect()
}

#[test]
fn embeddings_have_the_configured_shape_and_unit_norm() {
    let device = Device::flex();
    for (channels, size, dim, batch_norm) in [
        (1, 28, 64, false),
        (3, 32, 128, true),
        (1, 64, 16, false),
        (3, 9, 8, true),
    ] {
        let model = config(channels, dim, batch_norm).init(&device);
        let images = Tensor::<4>::random(
            [3, channels, size, size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let out = model.forward(images);
        assert_eq!(out.dims(), [3, dim], "{channels}×{size}×{size}");
        for row in rows(out) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
    }
}

#[test]
fn backbone_reports_its_channels() {
    let backbone = BackboneConfig::default();
    assert_eq!((backbone.in_channels(), backbone.out_channels()), (1, 128));
    let device = Device::flex();
    let features = backbone
        .init(&device)
        .forward(Tensor::zeros([2, 1, 28, 28], &device));
    assert_eq!(features.dims(), [2, 128, 7, 7]);
}

#[test]
fn unnormalised_head_keeps_the_scale() {
    let device = Device::flex();
    let model = EmbeddingModelConfig::new()
        .with_head(EmbeddingHeadConfig::new().with_normalize(false).with_dim(4))
        .init(&device);
    let out = model.forward(Tensor::random(
        [2, 1, 16, 16],
        Distribution::Normal(0.0, 1.0),
        &device,
    ));
    let norms: Vec<f32> = rows(out)
        .iter()
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    assert!(norms.iter().any(|n| (n - 1.0).abs() > 1e-3), "{norms:?}");
}

#[test]
fn saved_model_reloads_to_identical_outputs() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bpk");
    let cfg = config(3, 32, true);
    let model = cfg.init(&device);
    let images = Tensor::<4>::random([4, 3, 20, 20], Distribution::Normal(0.0, 1.0), &device);
    let before = rows(model.forward(images.clone()));
    model.save_file(&path).unwrap();

    let fresh = cfg.init(&device); // other random weights
    assert_ne!(rows(fresh.forward(images.clone())), before);
    let loaded = fresh.try_load_file(&path).unwrap();
    assert_eq!(rows(loaded.forward(images)), before);

    // A model of another shape refuses the record instead of loading garbage.
    let other = config(3, 16, true).init(&device);
    assert!(other.try_load_file(&path).is_err());
}
