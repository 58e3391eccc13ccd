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
    /// Whether this build has the backend (without starting it).
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::NdArray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

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
            Backend::Cuda => cuda::device(0),
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
            Backend::Cuda => cuda::devices()?,
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

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a panic on this thread is an expected failure being probed (the binary's panic hook
/// then prints nothing: the caller reports it as an error).
pub fn panics_are_quiet() -> bool {
    QUIET.with(|q| q.get())
}

/// Runs `f`, turning a panic into its message, without printing it.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    QUIET.with(|q| q.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    out.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into())
    })
}

/// The first line of a message, trimmed: what an error line can carry.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("").trim()
}

/// CUDA devices, probed so that a machine without the NVIDIA driver or without a GPU gets a
/// one-line error rather than the driver loader's panic.
#[cfg(feature = "cuda")]
mod cuda {
    use burn::prelude::*;

    use super::{first_line, quietly};

    /// CUDA device `index`, checked to run a kernel.
    pub fn device(index: usize) -> Result<Device, String> {
        let found = devices()?;
        found
            .into_iter()
            .nth(index)
            .ok_or_else(|| format!("backend `cuda` has no device {index} here"))
    }

    /// Every CUDA device Burn finds, after one of them ran a small kernel.
    pub fn devices() -> Result<Vec<Device>, String> {
        if !super::libdevice_found(std::env::var_os("CUDA_PATH").as_deref()) {
            return Err(
                "backend `cuda` needs CUDA's math library libdevice.10.bc, which comes with the \
                 CUDA toolkit, not the driver: run `bash scripts/setup_cuda.sh --libdevice`, or \
                 set CUDA_PATH to a folder holding nvvm/libdevice/libdevice.10.bc"
                    .into(),
            );
        }
        let found = quietly(|| {
            let found: Vec<Device> = Device::enumerate(burn::tensor::DeviceType::Cuda)
                .into_iter()
                .collect();
            if let Some(first) = found.first() {
                // A kernel round trip: the driver loads, a context starts, PTX compiles.
                // `exp` links libdevice.
                let x = Tensor::<1>::from_floats([0.0, 0.0], first);
                let sum: f32 = x.exp().sum().into_scalar();
                assert!(sum == 2.0, "a test kernel computed {sum} for 2");
            }
            found
        })
        .map_err(|why| {
            format!(
                "backend `cuda` cannot start: {} (it needs an NVIDIA GPU and its driver, \
                 libcuda.so.1; `nvidia-smi` should list the GPU)",
                first_line(&why)
            )
        })?;
        if found.is_empty() {
            return Err(
                "backend `cuda` finds no NVIDIA GPU here: no NVIDIA driver (libcuda.so.1), or \
                 it sees no GPU (`nvidia-smi -L` lists those it sees)"
                    .into(),
            );
        }
        Ok(found)
    }
}

/// Where `libdevice.10.bc` (CUDA's math library, needed by kernels that call exp, log, tanh
/// or pow) is found: cubecl looks under `$CUDA_PATH`, then the usual toolkit folders. Without
/// a toolkit, `scripts/setup_cuda.sh --libdevice` puts it under
/// `~/.local/share/triplet/cuda`, and a shipped copy may sit in `cuda/` beside the binary:
/// [`cuda_path_to_set`] names the folder for `CUDA_PATH` in those cases.
pub fn libdevice_in(root: &std::path::Path) -> bool {
    root.join("nvvm/libdevice/libdevice.10.bc").is_file()
}

/// Whether cubecl will find libdevice: under `cuda_path` when it is set (cubecl then looks
/// nowhere else), else in one of the toolkit folders it knows.
pub fn libdevice_found(cuda_path: Option<&std::ffi::OsStr>) -> bool {
    match cuda_path {
        Some(root) => libdevice_in(std::path::Path::new(root)),
        // cubecl takes the first of these with an `nvvm/libdevice` folder, and looks no further.
        None => TOOLKITS
            .iter()
            .map(std::path::Path::new)
            .find(|t| t.join("nvvm/libdevice").is_dir())
            .is_some_and(libdevice_in),
    }
}

/// cubecl-llvm's fallback toolkit folders (`nvptx/libdevice.rs`), in its order.
const TOOLKITS: [&str; 4] = ["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"];

/// The folder `CUDA_PATH` should name for `--backend cuda`, when it is unset and no toolkit
/// cubecl knows holds libdevice: Triplet's own copy, if there is one (`None` otherwise, or when
/// nothing needs setting). `data_home` is `$XDG_DATA_HOME` or `~/.local/share`; `exe_dir` the
/// binary's folder.
pub fn cuda_path_to_set(
    cuda_path: Option<&std::ffi::OsStr>,
    data_home: Option<&std::path::Path>,
    exe_dir: Option<&std::path::Path>,
) -> Option<std::path::PathBuf> {
    // Also when a toolkit folder cubecl would take lacks the file: CUDA_PATH then points it at
    // Triplet's copy instead.
    if cuda_path.is_some() || libdevice_found(None) {
        return None;
    }
    [
        exe_dir.map(|d| d.join("cuda")),
        data_home.map(|d| d.join("triplet/cuda")),
    ]
    .into_iter()
    .flatten()
    .find(|root| libdevice_in(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn gpu_names_cuda_only_in_a_cuda_build() {
        let gpu: Backend = "GPU".parse().unwrap();
        let want = if cfg!(feature = "cuda") {
            Backend::Cuda
        } else {
            Backend::Wgpu
        };
        assert_eq!(gpu, want);
        assert!(Backend::Flex.is_compiled() == cfg!(feature = "flex"));
        assert!(Backend::Cuda.is_compiled() == cfg!(feature = "cuda"));
    }

    #[test]
    fn libdevice_is_looked_up_beside_the_binary_then_in_the_data_folder() {
        let tmp = std::env::temp_dir().join(format!("triplet-libdevice-{}", std::process::id()));
        let (exe, data) = (tmp.join("bin"), tmp.join("data"));
        let put = |root: &Path| {
            let dir = root.join("nvvm/libdevice");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("libdevice.10.bc"), b"BC").unwrap();
        };
        std::fs::create_dir_all(&exe).unwrap();
        if libdevice_found(None) {
            // A CUDA toolkit is installed here: cubecl finds libdevice, nothing is set.
            assert_eq!(cuda_path_to_set(None, Some(&data), Some(&exe)), None);
            std::fs::remove_dir_all(&tmp).unwrap();
            return;
        }
        assert_eq!(cuda_path_to_set(None, Some(&data), Some(&exe)), None);
        put(&data.join("triplet/cuda"));
        assert_eq!(
            cuda_path_to_set(None, Some(&data), Some(&exe)),
            Some(data.join("triplet/cuda"))
        );
        put(&exe.join("cuda"));
        assert_eq!(
            cuda_path_to_set(None, Some(&data), Some(&exe)),
            Some(exe.join("cuda")),
            "a copy shipped beside the binary comes first"
        );
        // CUDA_PATH set: cubecl looks there only, and Triplet leaves it alone.
        let set = std::ffi::OsString::from(tmp.join("elsewhere"));
        assert_eq!(cuda_path_to_set(Some(&set), Some(&data), Some(&exe)), None);
        assert!(!libdevice_found(Some(&set)));
        assert!(libdevice_found(Some(exe.join("cuda").as_os_str())));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn quiet_failures_become_messages() {
        let got = quietly(|| -> u8 { panic!("no driver\nsecond line") });
        assert_eq!(first_line(&got.unwrap_err()), "no driver");
        assert!(!panics_are_quiet(), "the flag is cleared after the probe");
        assert_eq!(quietly(|| 7), Ok(7));
    }
}
