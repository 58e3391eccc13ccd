//! The shipped experiment configs stay true: each parses, validates, and builds the model and
//! loss it describes; and on flex, training and inference of each model run every convolution
//! through our kernels (`triplet_kernels::conv2d`), not silently through Burn's.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use triplet_train::config::{BackboneKind, ExperimentConfig};

fn shipped() -> Vec<(String, ExperimentConfig)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = ExperimentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            found.push((
                path.file_stem().unwrap().to_string_lossy().into_owned(),
                config,
            ));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The convolutions of a model: its 4-D parameters (only convolution kernels are 4-D).
fn convolutions(model: &triplet_model::EmbeddingModel) -> u64 {
    struct Count(u64);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.0 += u64::from(D == 4);
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

#[test]
fn shipped_models_take_the_fast_convolution_on_flex() {
    assert!(
        triplet_kernels::fast_path_compiled(),
        "triplet-kernels/flex"
    );
    for (name, config) in shipped() {
        let channels = config
            .data
            .channels
            .unwrap_or(if name == "cub200" { 3 } else { 1 });
        // A small input of each model's kind: the path does not depend on the size.
        let size = if config.model.backbone == BackboneKind::SmallCnn {
            28
        } else {
            64
        };
        for device in [Device::flex().autodiff(), Device::flex()] {
            let model = config.model(channels).init(&device);
            let convs = convolutions(&model);
            let x = Tensor::<4>::zeros([2, channels, size, size], &device);
            let before = triplet_kernels::fast_calls();
            let _ = model.forward(x);
            assert_eq!(
                triplet_kernels::fast_calls() - before,
                convs,
                "{name}: every one of its {convs} convolutions through the kernels"
            );
        }
    }
}

#[test]
fn shipped_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = ExperimentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let _ = config.model(3);
            let _ = config.loss();
            names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
            if names.last().unwrap() == "cub200" {
                assert_eq!(config.model.backbone, BackboneKind::Resnet50);
                assert!(config.model.pretrained.is_some() && config.model.freeze_batch_norm);
            }
        }
    }
    names.sort();
    assert_eq!(names, ["cub200", "fashion-mnist", "quickstart"]);
}
