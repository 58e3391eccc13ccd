//! `--backend`: the device training runs on, by name.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A compute backend the CLI can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (the default; alias `cpu`).
    Flex,
    /// Burn's ndarray CPU backend (deprecated upstream, kept for comparison).
    NdArray,
    /// wgpu: Vulkan, Metal or DirectX (alias `gpu` unless built with CUDA).
    Wgpu,
    /// CUDA (cargo feature `cuda`).
    Cuda,
}

/// Names `--backend` accepts.
pub const BACKEND_NAMES: &str = "flex, cpu, ndarray, wgpu, gpu, cuda";

impl FromStr for Backend {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Backend::Flex,
            "ndarray" => Backend::NdArray,
            "wgpu" => Backend::Wgpu,
            "cuda" => Backend::Cuda,
            "gpu" if cfg!(feature = "cuda") => Backend::Cuda,
            "gpu" => Backend::Wgpu,
            other => {
                return Err(format!(
                    "unknown backend `{other}`; expected one of {BACKEND_NAMES}"
                ));
            }
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        })
    }
}

impl Backend {
    /// The device, or why this build cannot provide it.
    pub fn device(self) -> Result<Device, String> {
        let missing = |feature: &str| {
            Err(format!(
                "backend `{self}` is not compiled into this build; rebuild with `--features {feature}`"
            ))
        };
        match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Backend::NdArray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => missing(&other.to_string()),
        }
    }
}

impl Backend {
    /// Device `index` of this backend (`--devices`): the GPUs Burn finds, in its order; the CPU
    /// backends have one device, 0.
    pub fn device_at(self, index: usize) -> Result<Device, String> {
        let found: Vec<Device> = match self {
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::enumerate(burn::tensor::DeviceType::Wgpu)
                .into_iter()
                .collect(),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Device::enumerate(burn::tensor::DeviceType::Cuda)
                .into_iter()
                .collect(),
            _ => vec![self.device()?],
        };
        match found.get(index) {
            Some(device) => Ok(device.clone()),
            None if found.is_empty() => Err(format!("backend `{self}` finds no device here")),
            None if found.len() == 1 => Err(format!(
                "backend `{self}` has one device here, index 0; --devices asked for {index}"
            )),
            None => Err(format!(
                "backend `{self}` has {} devices here, indices 0 to {}; --devices asked for {index}",
                found.len(),
                found.len().saturating_sub(1)
            )),
        }
    }
}

/// The host CPU device (flex when compiled in, else ndarray, else Burn's default): where
/// initial weights are drawn and where the plain-slice metric functions compute.
pub fn host() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
    #[allow(deprecated)]
    return Device::ndarray();
    #[cfg(not(any(feature = "flex", feature = "ndarray")))]
    return Device::default();
}
