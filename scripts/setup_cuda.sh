#!/usr/bin/env bash
# Prepares a Debian machine to build Triplet's CUDA backend (`--features triplet-train/cuda`)
# from the package registries alone (PyPI, Debian): no GitHub download, no CUDA toolkit.
#
#   bash scripts/setup_cuda.sh              # LLVM 23 for the build (about 400 MB, once)
#   bash scripts/setup_cuda.sh --libdevice  # also CUDA's math library, for running on a GPU
#
# Why: Burn 0.22.1's CUDA backend compiles its kernels to PTX with LLVM (cubecl-llvm), and the
# build script of `tracel-llvm-bundler` downloads a prebuilt LLVM 23.1 from GitHub unless one is
# already in its cache folder. PyPI's `mlc-llvm-static` (with its NVPTX extra) is such an LLVM;
# this script installs it in a virtual environment and links it where the bundler looks
# (README "On NVIDIA GPUs"). Idempotent: a second run checks and changes nothing.
#
# At run time, kernels that call exp, log, tanh, pow or erf need `libdevice.10.bc`, which ships
# with the CUDA toolkit, not with the driver. `--libdevice` takes it from PyPI's `nvidia-nvvm`
# wheel (redistributable) into ~/.local/share/triplet/cuda/nvvm/libdevice/ ($XDG_DATA_HOME if
# set); `triplet` looks there when CUDA_PATH is not set and no toolkit is installed.
#
# Environment: TRIPLET_LLVM_VENV (default ~/.local/share/triplet/llvm23), XDG_DATA_HOME (where
# the bundler and `triplet` look).
set -euo pipefail
cd "$(dirname "$0")/.."

data="${XDG_DATA_HOME:-$HOME/.local/share}"
venv="${TRIPLET_LLVM_VENV:-$data/triplet/llvm23}"
cuda_home="$data/triplet/cuda"
bundle="$data/tracel/tracel-llvm-23.1.0-4"
llvm_pkg="mlc-llvm-static[all]==23.1.1.post0"
nvvm_pkg="nvidia-nvvm==13.5.37"

libdevice=false
for arg in "$@"; do
    case "$arg" in
        --libdevice) libdevice=true ;;
        -h | --help) sed -n 2,19p "$0"; exit 0 ;;
        *) echo "setup_cuda.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "setup_cuda: $*"; }

need=()
command -v g++ >/dev/null 2>&1 || need+=(g++)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then
    say "installing Debian packages: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -m mlc_llvm_static.config --prefix >/dev/null 2>&1; then
    say "LLVM 23 already installed in $venv"
else
    say "installing LLVM 23 from PyPI ($llvm_pkg, about 90 MB download) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$llvm_pkg"
fi
prefix="$("$venv/bin/python" -m mlc_llvm_static.config --prefix)"
test -x "$prefix/bin/llvm-config" || { echo "setup_cuda: no llvm-config under $prefix" >&2; exit 1; }
"$prefix/bin/llvm-config" --targets-built | grep -w NVPTX >/dev/null \
    || { echo "setup_cuda: the LLVM in $prefix has no NVPTX target (the [all] extra is missing)" >&2; exit 1; }

# An LLVM the bundler downloaded itself (real folders, not our links) is moved aside, else the
# links would land inside its folders and every run would relink and rebuild.
for dir in bin include lib share; do
    if [ -e "$bundle/$dir" ] && [ ! -L "$bundle/$dir" ]; then
        aside="$bundle.replaced-$(date +%s)"
        say "moving the LLVM already in $bundle aside to $aside"
        mv "$bundle" "$aside"
        break
    fi
done
mkdir -p "$bundle"
changed=false
for dir in bin include lib share; do
    if [ "$(readlink "$bundle/$dir" 2>/dev/null)" != "$prefix/$dir" ]; then
        ln -sfn "$prefix/$dir" "$bundle/$dir"
        changed=true
    fi
done
if [ ! -e "$bundle/.tracel-llvm-installed" ]; then
    touch "$bundle/.tracel-llvm-installed"
    changed=true
fi
if $changed; then
    say "linked $prefix into $bundle, where cubecl's LLVM bundler looks"
    # cubecl-llvm's build script reruns only when its own sources change: a cached build of it
    # against another LLVM would be kept.
    if command -v cargo >/dev/null 2>&1; then
        cargo clean -p cubecl-llvm >/dev/null 2>&1 || true
    fi
else
    say "the bundler's cache folder $bundle already points at it"
fi

if $libdevice; then
    target="$cuda_home/nvvm/libdevice/libdevice.10.bc"
    if [ -s "$target" ]; then
        say "libdevice already at $target"
    else
        say "taking libdevice.10.bc from PyPI's $nvvm_pkg (75 MB download) into $cuda_home"
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: --platform manylinux2014_x86_64 -d "$tmp" "$nvvm_pkg"
        "$venv/bin/python" - "$tmp" "$target" <<'EOF'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
target = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("nvvm/libdevice/libdevice.10.bc"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(z.read(name))
    partial.rename(target)
EOF
        say "libdevice at $target"
    fi
fi

say "ready: cargo build --release --workspace --features triplet-train/cuda"
