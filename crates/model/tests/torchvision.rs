//! torchvision ResNets: Triplet's ResNet-18/34/50 loaded with a torchvision state dict give
//! torchvision's features and embeddings, and a state dict that does not fit is refused with an
//! error that names the tensor.
//!
//! The fixtures `tests/fixtures/torchvision_resnet{18,34,50}.json` come from
//! `scripts/torchvision_fixtures.py`: torchvision's model with every state-dict entry filled by
//! a counter-based generator (SplitMix64 over FNV-1a of the tensor's name, below), run in
//! float64 on generated inputs. The fixtures hold the generator's parameters per tensor and
//! torchvision's outputs, not the weights (ResNet-50 is 100 MB): this test regenerates the same
//! weights bit for bit, writes them as a safetensors file and as a PyTorch zip checkpoint, and
//! imports each through `EmbeddingModel::load_torchvision`.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use serde_json::Value;
use triplet_model::torchvision::TorchvisionError;
use triplet_model::{EmbeddingHeadConfig, EmbeddingModel, EmbeddingModelConfig, ResNetConfig};

const G: u64 = 0x9E37_79B9_7F4A_7C15;

fn fnv1a64(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `n` values in `[-1, 1)`, exact in f32: SplitMix64 from `fnv1a64(name) ^ seed`, top 24 bits.
fn uniform(name: &str, n: usize, seed: u64) -> Vec<f32> {
    let state0 = fnv1a64(name) ^ seed;
    (0..n as u64)
        .map(|i| {
            let mut z = state0.wrapping_add((i + 1).wrapping_mul(G));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / 16_777_216.0 * 2.0 - 1.0
        })
        .collect()
}

/// One generated tensor of a fixture.
struct Spec {
    name: String,
    shape: Vec<usize>,
    int: bool,
    offset: f32,
    scale: f32,
}

impl Spec {
    fn from_json(v: &Value) -> Self {
        Spec {
            name: v["name"].as_str().unwrap().to_owned(),
            shape: v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect(),
            int: v.get("dtype").and_then(Value::as_str) == Some("i64"),
            offset: v.get("offset").and_then(Value::as_f64).unwrap_or(0.0) as f32,
            scale: v.get("scale").and_then(Value::as_f64).unwrap_or(0.0) as f32,
        }
    }

    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn values(&self, seed: u64) -> Vec<f32> {
        uniform(&self.name, self.numel(), seed)
            .into_iter()
            .map(|r| self.offset + self.scale * r)
            .collect()
    }

    /// Little-endian bytes: the values, or zeros as i64 for integer entries.
    fn bytes(&self, seed: u64) -> Vec<u8> {
        if self.int {
            vec![0u8; 8 * self.numel()]
        } else {
            self.values(seed)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
    }
}

struct Fixture {
    arch: String,
    seed: u64,
    tensors: Vec<Spec>,
    input: Spec,
    head: Vec<Spec>,
    features: Vec<Vec<f64>>,
    embeddings: Vec<Vec<f64>>,
}

fn fixture(arch: &str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("torchvision_{arch}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let matrix = |key: &str| -> Vec<Vec<f64>> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    Fixture {
        arch: v["arch"].as_str().unwrap().to_owned(),
        seed: v["seed"].as_u64().unwrap(),
        tensors: v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(Spec::from_json)
            .collect(),
        input: Spec::from_json(&v["input"]),
        head: v["head"]
            .as_array()
            .unwrap()
            .iter()
            .map(Spec::from_json)
            .collect(),
        features: matrix("features"),
        embeddings: matrix("embeddings"),
    }
}

/// Writes `specs` as a safetensors file (torch's layout and names).
fn write_safetensors(specs: &[&Spec], seed: u64, path: &Path) {
    let bytes: Vec<Vec<u8>> = specs.iter().map(|s| s.bytes(seed)).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = specs
        .iter()
        .zip(&bytes)
        .map(|(s, b)| {
            let dtype = if s.int {
                safetensors::Dtype::I64
            } else {
                safetensors::Dtype::F32
            };
            (
                s.name.clone(),
                safetensors::tensor::TensorView::new(dtype, s.shape.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Writes `specs` as a PyTorch ≥ 1.6 checkpoint, as `torch.save(state_dict)` lays it out: a
/// stored zip with `archive/data.pkl` (a protocol-2 pickle of an `OrderedDict` of
/// `torch._utils._rebuild_tensor_v2` calls with persistent storage ids), one
/// `archive/data/<key>` entry per storage, and `archive/version`.
fn write_pth(specs: &[&Spec], seed: u64, path: &Path) {
    fn unicode(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    }
    fn int(p: &mut Vec<u8>, v: usize) {
        p.push(b'J');
        p.extend((v as i32).to_le_bytes());
    }
    fn ordered_dict(p: &mut Vec<u8>) {
        p.extend(b"ccollections\nOrderedDict\n)R");
    }
    let mut pickle = vec![0x80, 2];
    ordered_dict(&mut pickle);
    pickle.push(b'(');
    for (key, s) in specs.iter().enumerate() {
        unicode(&mut pickle, &s.name);
        pickle.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        pickle.push(b'(');
        unicode(&mut pickle, "storage");
        pickle.extend(if s.int {
            &b"ctorch\nLongStorage\n"[..]
        } else {
            &b"ctorch\nFloatStorage\n"[..]
        });
        unicode(&mut pickle, &key.to_string());
        unicode(&mut pickle, "cpu");
        int(&mut pickle, s.numel());
        pickle.extend(b"tQ"); // tuple, persistent id
        int(&mut pickle, 0); // storage offset
        pickle.push(b'(');
        for &d in &s.shape {
            int(&mut pickle, d);
        }
        pickle.push(b't');
        pickle.push(b'(');
        let mut stride = 1;
        let mut strides = vec![0; s.shape.len()];
        for (i, &d) in s.shape.iter().enumerate().rev() {
            strides[i] = stride;
            stride *= d;
        }
        for st in strides {
            int(&mut pickle, st);
        }
        pickle.push(b't');
        pickle.push(0x89); // requires_grad = False
        ordered_dict(&mut pickle); // backward hooks
        pickle.extend(b"tR");
    }
    pickle.extend(b"u.");

    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&pickle).unwrap();
    for (key, s) in specs.iter().enumerate() {
        zip.start_file(format!("archive/data/{key}"), stored)
            .unwrap();
        zip.write_all(&s.bytes(seed)).unwrap();
    }
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

fn depth(arch: &str) -> usize {
    arch.trim_start_matches("resnet").parse().unwrap()
}

fn model(arch: &str, device: &Device) -> EmbeddingModel {
    EmbeddingModelConfig::new()
        .with_backbone(ResNetConfig::new(depth(arch)).into())
        .with_head(EmbeddingHeadConfig::new().with_dim(16))
        .init(device)
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, cols] = t.dims();
    let flat: Vec<f32> = t.into_data().try_into_vec_as().unwrap();
    flat.chunks(cols).map(<[f32]>::to_vec).collect()
}

fn temp_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// Imports the fixture's weights from `format` and compares features and embeddings.
fn reproduces(arch: &str, format: &str) {
    let f = fixture(arch);
    assert_eq!(f.arch, arch);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<&Spec> = f.tensors.iter().collect();
    let weights = temp_file(&dir, &format!("{arch}.{format}"));
    match format {
        "safetensors" => write_safetensors(&specs, f.seed, &weights),
        _ => write_pth(&specs, f.seed, &weights),
    }
    check(&f, &weights, &device);
}

/// Imports `weights` into a fresh model of the fixture's architecture, sets the head from the
/// fixture, and compares with torchvision's outputs.
fn check(f: &Fixture, weights: &Path, device: &Device) {
    let arch = f.arch.as_str();
    let format = weights.extension().unwrap().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut model = model(arch, device);
    let report = model.load_torchvision(weights).unwrap();
    let ignored: Vec<&str> = f
        .tensors
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.starts_with("fc.") || n.ends_with("num_batches_tracked"))
        .collect();
    assert_eq!(report.loaded + ignored.len(), f.tensors.len(), "{arch}");
    assert_eq!(report.ignored.len(), ignored.len(), "{arch}");

    // The head: torch's Linear layout, through the same adapter (it transposes `weight`); the
    // fixture names it `head.*`, the model `head.linear.*`.
    let head = temp_file(&dir, "head.safetensors");
    let head_specs: Vec<&Spec> = f.head.iter().collect();
    write_safetensors(&head_specs, f.seed, &head);
    let mut store = SafetensorsStore::from_file(&head)
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(r"^head\.", "head.linear.")
        .allow_partial(true);
    let applied = model.load_from(&mut store).unwrap();
    assert_eq!(applied.applied.len(), 2, "head: {applied:?}");

    let input = Tensor::<4>::from_data(
        TensorData::new(f.input.values(f.seed), f.input.shape.clone()),
        device,
    );
    let features = model
        .backbone()
        .forward(input.clone())
        .mean_dim(3)
        .mean_dim(2);
    let features = rows(features.flatten(1, 3));
    let scale = f.features.iter().flatten().fold(0.0f64, |m, v| {
        if m.is_nan() || v.is_nan() {
            f64::NAN
        } else {
            m.max(v.abs())
        }
    });
    assert!(
        !scale.is_nan(),
        "{arch} {format}: torchvision's features hold a NaN"
    );
    for (i, (got, want)) in features.iter().zip(&f.features).enumerate() {
        assert_eq!(got.len(), want.len());
        for (c, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                ((*g as f64) - w).abs() <= 1e-4 * scale,
                "{arch} {format}: feature [{i}, {c}] = {g}, torchvision {w} (max |feature| {scale})"
            );
        }
    }
    let embeddings = rows(model.forward(input));
    for (i, (got, want)) in embeddings.iter().zip(&f.embeddings).enumerate() {
        for (c, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                ((*g as f64) - w).abs() <= 1e-4,
                "{arch} {format}: embedding [{i}, {c}] = {g}, torchvision {w}"
            );
        }
    }
}

/// The files torch itself wrote: `scripts/torchvision_fixtures.py --save-dir DIR` saves each
/// state dict with `torch.save` and `safetensors.torch.save_file`. Run with
/// `TRIPLET_TORCHVISION_DIR=DIR cargo test --workspace --test torchvision -- --ignored`.
#[test]
#[ignore = "needs the files of scripts/torchvision_fixtures.py --save-dir in TRIPLET_TORCHVISION_DIR"]
fn files_written_by_torch_reproduce_torchvision() {
    let dir = PathBuf::from(
        std::env::var_os("TRIPLET_TORCHVISION_DIR").expect("set TRIPLET_TORCHVISION_DIR"),
    );
    let device = Device::flex();
    for arch in ["resnet18", "resnet34", "resnet50"] {
        let f = fixture(arch);
        for format in ["pth", "safetensors"] {
            check(&f, &dir.join(format!("{arch}.{format}")), &device);
        }
    }
}

#[test]
fn generator_matches_the_script() {
    // Printed by scripts/torchvision_fixtures.py.
    assert_eq!(fnv1a64("conv1.weight"), FNV_CONV1);
    let bits: Vec<u32> = uniform("conv1.weight", 4, 0)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(bits, UNIFORM_CONV1);
}

#[test]
fn resnet18_reproduces_torchvision_from_safetensors() {
    reproduces("resnet18", "safetensors");
}

#[test]
fn resnet18_reproduces_torchvision_from_pth() {
    reproduces("resnet18", "pth");
}

#[test]
fn resnet34_reproduces_torchvision_from_pth() {
    reproduces("resnet34", "pth");
}

#[test]
fn resnet50_reproduces_torchvision_from_safetensors() {
    reproduces("resnet50", "safetensors");
}

#[test]
fn resnet50_reproduces_torchvision_from_pth() {
    reproduces("resnet50", "pth");
}

/// Loads `specs` (written as `format`) into a fresh ResNet-18 and returns the error.
fn refused(specs: &[&Spec], seed: u64, format: &str) -> (TorchvisionError, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, &format!("bad.{format}"));
    match format {
        "safetensors" => write_safetensors(specs, seed, &path),
        _ => write_pth(specs, seed, &path),
    }
    let device = Device::flex();
    let mut m = model("resnet18", &device);
    let before = rows(m.forward(Tensor::<4>::ones([1, 3, 32, 32], &device)));
    let err = m.load_torchvision(&path).unwrap_err();
    let after = rows(m.forward(Tensor::<4>::ones([1, 3, 32, 32], &device)));
    assert_eq!(
        before, after,
        "a refused import must leave the model unchanged"
    );
    let text = err.to_string();
    (err, text)
}

#[test]
fn missing_extra_and_misshaped_tensors_are_named() {
    let f = fixture("resnet18");
    for format in ["safetensors", "pth"] {
        // Missing.
        let specs: Vec<&Spec> = f
            .tensors
            .iter()
            .filter(|s| s.name != "layer3.1.bn2.running_var")
            .collect();
        let (err, text) = refused(&specs, f.seed, format);
        assert!(
            matches!(&err, TorchvisionError::Mismatch { missing, .. } if **missing == ["layer3.1.bn2.running_var"]),
            "{err:?}"
        );
        assert!(text.contains("layer3.1.bn2.running_var"), "{text}");
        assert!(text.contains("missing"), "{text}");

        // Extra (a downsample where ResNet-18 has none), and torchvision's naming kept.
        let extra = Spec {
            name: "layer1.0.downsample.0.weight".into(),
            shape: vec![64, 64, 1, 1],
            int: false,
            offset: 0.0,
            scale: 0.1,
        };
        let mut specs: Vec<&Spec> = f.tensors.iter().collect();
        specs.push(&extra);
        let (err, text) = refused(&specs, f.seed, format);
        assert!(
            matches!(&err, TorchvisionError::Mismatch { unexpected, missing, .. }
                if **unexpected == ["layer1.0.downsample.0.weight"] && missing.is_empty()),
            "{err:?}"
        );
        assert!(text.contains("layer1.0.downsample.0.weight"), "{text}");

        // Mis-shaped: a BatchNorm weight and a downsample convolution.
        let bad: Vec<Spec> = f
            .tensors
            .iter()
            .map(|s| Spec {
                name: s.name.clone(),
                shape: match s.name.as_str() {
                    "layer2.0.bn1.weight" => vec![64],
                    "layer2.0.downsample.0.weight" => vec![128, 64, 3, 3],
                    _ => s.shape.clone(),
                },
                int: s.int,
                offset: s.offset,
                scale: s.scale,
            })
            .collect();
        let specs: Vec<&Spec> = bad.iter().collect();
        let (err, text) = refused(&specs, f.seed, format);
        match &err {
            TorchvisionError::Mismatch { mismatched, .. } => {
                let mut m = mismatched.to_vec();
                m.sort();
                assert_eq!(
                    m,
                    ["layer2.0.bn1.weight", "layer2.0.downsample.0.weight"],
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(text.contains("[64]") && text.contains("[128]"), "{text}");
    }
}

/// A training checkpoint that wraps the state dict (`{"state_dict": …}` saved flat) gets a hint.
#[test]
fn a_wrapped_state_dict_gets_a_hint() {
    let f = fixture("resnet18");
    let wrapped: Vec<Spec> = f
        .tensors
        .iter()
        .map(|s| Spec {
            name: format!("state_dict.{}", s.name),
            shape: s.shape.clone(),
            int: s.int,
            offset: s.offset,
            scale: s.scale,
        })
        .collect();
    let specs: Vec<&Spec> = wrapped.iter().collect();
    let (_, text) = refused(&specs, f.seed, "safetensors");
    assert!(
        text.contains("hint: every tensor of the file is under `state_dict.`"),
        "{text}"
    );
}

#[test]
fn unreadable_files_and_other_backbones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let mut m = model("resnet18", &device);
    for (name, bytes) in [
        ("garbage.pth", &b"not a checkpoint"[..]),
        (
            "garbage.safetensors",
            &b"\x08\x00\x00\x00\x00\x00\x00\x00{}"[..],
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = m.load_torchvision(&path).unwrap_err();
        assert!(
            matches!(
                err,
                TorchvisionError::Read { .. } | TorchvisionError::Mismatch { .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = m
        .load_torchvision(&dir.path().join("absent.pth"))
        .unwrap_err();
    assert!(err.to_string().contains("absent.pth"), "{err}");

    let mut small = EmbeddingModelConfig::new().init(&device);
    let err = small
        .load_torchvision(&dir.path().join("garbage.pth"))
        .unwrap_err();
    assert!(err.to_string().contains("small-cnn"), "{err}");
}

#[test]
fn shapes_of_every_depth() {
    let device = Device::flex();
    for (depth, channels) in [(18, 512), (34, 512), (50, 2048), (101, 2048)] {
        let m = EmbeddingModelConfig::new()
            .with_backbone(ResNetConfig::new(depth).into())
            .init(&device);
        let out = m
            .backbone()
            .forward(Tensor::<4>::zeros([1, 3, 65, 33], &device));
        // torchvision: 65×33 → conv1 33×17 → maxpool 17×9 → 17×9, 9×5, 5×3, 3×2.
        assert_eq!(out.dims(), [1, channels, 3, 2], "resnet{depth}");
    }
}

// Printed by `scripts/torchvision_fixtures.py` (its docstring has the same table).
const FNV_CONV1: u64 = 0x69a2_9a2c_ee47_d254;
const UNIFORM_CONV1: [u32; 4] = [0x3db8_a080, 0x3efb_0bac, 0xbf74_439c, 0x3ef1_ddd4];
