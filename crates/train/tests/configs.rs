//! The shipped experiment configs stay true: each parses, validates, and builds the model and
//! loss it describes.

use std::path::Path;

use triplet_train::config::{BackboneKind, ExperimentConfig};

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
