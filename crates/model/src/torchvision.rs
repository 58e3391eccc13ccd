//! Importing a torchvision ResNet state dict (`torch.save(model.state_dict())`, `.pth`/`.pt`, or
//! a safetensors file of the same tensors) into a [`ResNet`], through Burn's store
//! (`burn-store`).
//!
//! - PyTorch's names map onto Burn's: BatchNorm `weight`/`bias` are Burn's `gamma`/`beta` (the
//!   store's `PyTorchToBurnAdapter`), `downsample.0`/`downsample.1` are `downsample.conv`/`.bn`,
//!   and a `module.` prefix (a model saved from `DataParallel`) is dropped.
//! - The classifier (`fc.*`) and BatchNorm's `num_batches_tracked` counters are not part of an
//!   embedding backbone; they are ignored and counted.
//! - Every other difference is an error that names the tensors by their torchvision names: a
//!   tensor the network needs and the file lacks, a tensor of the file the network does not
//!   have, or one whose shape differs. The network is only changed when the whole import
//!   succeeds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use crate::backbone::ResNet;

/// Why a torchvision state dict could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TorchvisionError {
    /// The file could not be read as a PyTorch or safetensors file.
    #[error("cannot read {} as a {format} state dict: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// `PyTorch` or `safetensors`.
        format: &'static str,
        /// What the reader said.
        message: String,
    },
    /// The model's backbone is not a ResNet.
    #[error(
        "{}: torchvision weights are for a ResNet backbone, and this model's is `{backbone}`",
        path.display()
    )]
    NotResNet {
        /// The file.
        path: PathBuf,
        /// The backbone's config name.
        backbone: String,
    },
    /// The file's tensors do not fit the network.
    #[error("{} does not fit a {arch}:{details}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The network, e.g. `resnet50`.
        arch: Box<str>,
        /// One line per problem, each naming a tensor.
        details: Box<str>,
        /// Tensors the network needs that the file lacks (torchvision names).
        missing: Box<[String]>,
        /// Tensors of the file the network has no place for (torchvision names).
        unexpected: Box<[String]>,
        /// Tensors present on both sides with another shape or type (torchvision names).
        mismatched: Box<[String]>,
    },
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Tensors loaded into the network.
    pub loaded: usize,
    /// Tensors of the file that are not part of an embedding backbone (`fc.*`,
    /// `*.num_batches_tracked`), by name.
    pub ignored: Vec<String>,
}

/// The file's format, from its extension, else from its first bytes (a PyTorch file is a zip
/// archive, or a legacy pickle).
fn is_safetensors(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("safetensors") => true,
        Some(e) if ["pth", "pt", "bin", "ckpt"].contains(&e.to_ascii_lowercase().as_str()) => false,
        _ => {
            let mut head = [0u8; 2];
            let zip_or_pickle = std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .map(|()| &head == b"PK" || head[0] == 0x80)
                .unwrap_or(true);
            !zip_or_pickle
        }
    }
}

/// Our module path for a torchvision name (the remapping the stores apply).
const REMAP: [(&str, &str); 3] = [
    (r"^module\.", ""),
    (r"\.downsample\.0\.", ".downsample.conv."),
    (r"\.downsample\.1\.", ".downsample.bn."),
];

/// The torchvision name of one of our module paths (as the applier reports it: enum variants
/// included, BatchNorm's `gamma`/`beta`).
pub fn torchvision_name(path: &str) -> String {
    let mut parts: Vec<&str> = path
        .split('.')
        .filter(|p| !matches!(*p, "Basic" | "Bottleneck" | "ResNet"))
        .collect();
    for i in 1..parts.len() {
        if parts[i - 1] == "downsample" {
            parts[i] = match parts[i] {
                "conv" => "0",
                "bn" => "1",
                other => other,
            };
        }
    }
    if let Some(last) = parts.last_mut() {
        *last = match *last {
            "gamma" => "weight",
            "beta" => "bias",
            other => other,
        };
    }
    parts.join(".")
}

fn ignorable(name: &str) -> bool {
    name.starts_with("fc.") || name.ends_with(".num_batches_tracked")
}

/// Loads the torchvision state dict in `path` into `resnet`. `arch` (e.g. `resnet50`) names
/// the network in errors.
///
/// # Errors
/// [`TorchvisionError`]; `resnet` is unchanged then.
pub fn load_resnet(
    resnet: &mut ResNet,
    path: &Path,
    arch: &str,
) -> Result<ImportReport, TorchvisionError> {
    // A fresh network, not a clone: clones share BatchNorm's running statistics, so loading
    // into a clone would change `resnet` even when the import is then refused.
    let mut candidate = resnet.fresh();
    let safetensors = is_safetensors(path);
    let read_error = |message: String| TorchvisionError::Read {
        path: path.to_owned(),
        format: if safetensors {
            "safetensors"
        } else {
            "PyTorch"
        },
        message,
    };
    if !path.is_file() {
        return Err(read_error("no such file".into()));
    }
    // The two stores share their builder methods but no trait for them.
    macro_rules! apply {
        ($store:expr) => {{
            let mut store = $store
                .skip_enum_variants(true)
                .map_indices_contiguous(false)
                .validate(false)
                .allow_partial(true);
            for (from, to) in REMAP {
                store = store.with_key_remapping(from, to);
            }
            candidate
                .load_from(&mut store)
                .map_err(|e| read_error(e.to_string()))?
        }};
    }
    let result: ApplyResult = if safetensors {
        apply!(SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter))
    } else {
        apply!(PytorchStore::from_file(path))
    };

    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(p, _)| torchvision_name(p))
        .collect();
    let (ignored, unexpected): (Vec<String>, Vec<String>) = result
        .unused
        .iter()
        .map(|p| torchvision_name(p))
        .partition(|n| ignorable(n));
    let mut mismatched = Vec::new();
    let mut details = String::new();
    for error in &result.errors {
        // `problem` follows the tensor's name: " has shape …", ": message".
        let (path, problem) = match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => (
                path,
                format!(
                    " has shape {:?} in the file, the network needs {:?}",
                    found.as_slice(),
                    expected.as_slice()
                ),
            ),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => (
                path,
                format!(" is {found:?} in the file, the network needs {expected:?}"),
            ),
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => (path, format!(": {message}")),
        };
        let name = torchvision_name(path);
        let _ = write!(details, "\n  `{name}`{problem}");
        mismatched.push(name);
    }
    let list = |names: &[String]| {
        let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        format!(
            "{}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    if !missing.is_empty() {
        let _ = write!(
            details,
            "\n  {} tensor(s) missing from the file: {}",
            missing.len(),
            list(&missing)
        );
    }
    if !unexpected.is_empty() {
        let _ = write!(
            details,
            "\n  {} tensor(s) in the file that a {arch} does not have: {}",
            unexpected.len(),
            list(&unexpected)
        );
    }
    // Nothing fitted and every tensor sits under one prefix: a wrapped checkpoint.
    if result.applied.is_empty()
        && let Some(first) = unexpected.first()
        && let Some((prefix, _)) = first.split_once('.')
        && unexpected
            .iter()
            .all(|n| n.starts_with(&format!("{prefix}.")))
    {
        let _ = write!(
            details,
            "\n  hint: every tensor of the file is under `{prefix}.`: it looks like a training \
             checkpoint that wraps the state dict; save `checkpoint[\"{prefix}\"]` on its own"
        );
    }
    if !details.is_empty() {
        return Err(TorchvisionError::Mismatch {
            path: path.to_owned(),
            arch: arch.into(),
            details: details.into(),
            missing: missing.into(),
            unexpected: unexpected.into(),
            mismatched: mismatched.into(),
        });
    }
    *resnet = candidate;
    Ok(ImportReport {
        loaded: result.applied.len(),
        ignored,
    })
}

/// Writes `resnet`'s weights as a torchvision state dict in safetensors format (torchvision's
/// names and layouts, `num_batches_tracked` counters at 0, no classifier), which
/// `torchvision.models.resnetNN().load_state_dict(safetensors.torch.load_file(path),
/// strict=False)` reads (only `fc.*` is missing) and [`load_resnet`] reads back.
///
/// # Errors
/// If the file cannot be written.
pub fn save_resnet(resnet: &ResNet, path: &Path) -> std::io::Result<()> {
    let snapshots = resnet.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for snapshot in snapshots {
        let name = torchvision_name(&snapshot.name);
        let dtype = match snapshot.dtype {
            burn::tensor::DType::F32 => safetensors::Dtype::F32,
            burn::tensor::DType::F64 => safetensors::Dtype::F64,
            burn::tensor::DType::F16 => safetensors::Dtype::F16,
            burn::tensor::DType::BF16 => safetensors::Dtype::BF16,
            other => {
                return Err(std::io::Error::other(format!(
                    "`{name}` has dtype {other:?}, which this export does not write"
                )));
            }
        };
        let shape = snapshot.shape.as_slice().to_vec();
        let bytes = snapshot
            .to_bytes()
            .map_err(|e| std::io::Error::other(format!("`{name}`: {e}")))?;
        if let Some(prefix) = name.strip_suffix(".running_var") {
            tensors.push((
                format!("{prefix}.num_batches_tracked"),
                safetensors::Dtype::I64,
                Vec::new(),
                vec![0u8; 8],
            ));
        }
        tensors.push((name, dtype, shape, bytes.to_vec()));
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| std::io::Error::other(format!("`{name}`: {e}")))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(std::io::Error::other)
}
