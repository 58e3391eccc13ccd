//! The shipped experiment configs stay true: each parses, validates, and builds the model and
//! loss it describes; and on flex, training and inference of each model run every convolution,
//! BatchNorm and max pooling through our kernels (`triplet_kernels`), not silently through
//! Burn's.

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

/// The convolutions, BatchNorms of images (the head's optional one is 1-D and takes Burn's
/// path) and max poolings of a model. Convolution kernels are its only 4-D parameters;
/// BatchNorms are counted by their `gamma`. Max poolings hold no parameters, so a visitor
/// never sees them: the architectures have two (small-cnn, after each pair of convolutions)
/// and one (a ResNet's stem).
fn layers(
    model: &triplet_model::EmbeddingModel,
    backbone: BackboneKind,
) -> triplet_kernels::FastCalls {
    struct Count(triplet_kernels::FastCalls, Vec<String>, String);
    impl ModuleVisitor for Count {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            if container_type.ends_with("BatchNorm")
                && name == "gamma"
                && !self.1.iter().any(|m| m == "head")
            {
                self.0.batch_norms += 1;
                // A ReLU follows every BatchNorm but a residual block's last (`bn2` of a
                // basic block, `bn3` of a bottleneck: the sum with the shortcut comes first)
                // and the shortcut's own.
                let norm = self.1.last().map_or("", String::as_str);
                let fused = match self.2.as_str() {
                    "Basic" => norm == "bn1",
                    "Bottleneck" => norm == "bn1" || norm == "bn2",
                    _ => norm == "bn" || norm == "bn1",
                };
                self.0.batch_norm_relus +=
                    u64::from(fused && !self.1.iter().any(|m| m == "downsample"));
            }
            if container_type.ends_with("BasicBlock") || container_type.ends_with("Bottleneck") {
                self.2 = if container_type.ends_with("Bottleneck") {
                    "Bottleneck"
                } else {
                    "Basic"
                }
                .into();
            }
            self.1.push(name.to_owned());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.0.convolutions += u64::from(D == 4);
        }
    }
    let mut count = Count(Default::default(), Vec::new(), String::new());
    model.visit(&mut count);
    count.0.max_pools = if backbone == BackboneKind::SmallCnn {
        2
    } else {
        1
    };
    count.0
}

#[test]
fn shipped_models_take_the_fast_kernels_on_flex() {
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
            let want = layers(&model, config.model.backbone);
            assert!(
                want.convolutions > 0
                    && want.batch_norms > 0
                    && want.batch_norm_relus > 0
                    && want.max_pools > 0,
                "{name}: {want:?}"
            );
            let x = Tensor::<4>::zeros([2, channels, size, size], &device);
            let before = triplet_kernels::fast_calls_by_op();
            let _ = model.forward(x);
            let after = triplet_kernels::fast_calls_by_op();
            let got = triplet_kernels::FastCalls {
                convolutions: after.convolutions - before.convolutions,
                batch_norms: after.batch_norms - before.batch_norms,
                batch_norm_relus: after.batch_norm_relus - before.batch_norm_relus,
                max_pools: after.max_pools - before.max_pools,
            };
            assert_eq!(
                got, want,
                "{name}: every convolution, BatchNorm and max pooling through the kernels"
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
