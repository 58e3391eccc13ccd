#!/usr/bin/env bash
# Every GPU measurement of the NVIDIA issue in one call, printed as one table: Triplet on CUDA
# against PyTorch + pytorch-metric-learning on the same GPU, in the same session.
#
#   bash scripts/gpu_check.sh prepare   # here, no GPU needed: builds and packs .gpu/ (34 MB)
#   bash scripts/gpu_check.sh run       # on the GPU machine, from the repo root, .gpu/ carried
#
# `prepare` runs scripts/setup_cuda.sh --libdevice, builds `benches/gpu.rs` (the train_step,
# loss and knn benches and the CLI in one binary: each CUDA build links LLVM, about 30 MB
# compressed) with the `cuda` feature (the workspace's dev profile, optimised), strips and
# xz-compresses it into .gpu/bin, copies libdevice.10.bc to .gpu/cuda and
# downloads pytorch-metric-learning's wheel to .gpu/whl (PyTorch, torchvision and scipy are
# already on the GPU machine). `.gpu/` is ignored by git; carry it.
#
# `run` measures, each step under its own time limit, within GPU_CHECK_BUDGET seconds in all
# (default 540):
#   1. ResNet-50 224 px training step, batch 64 = P16 x K4, semi-hard: Triplet (cuda, f32)
#      against PyTorch fp32 (scripts/bench_train.py; TF32 convolutions, PyTorch's default);
#   1b. the same step in mixed precision: Triplet `--precision bf16` against PyTorch's bf16
#      autocast (`bench_train.py --amp`);
#   2. the reference CNN's step (28 px, batch 128 = P8 x K16): Triplet cuda against PyTorch;
#   3. the loss alone (forward + backward, D = 128, K = 8) at B = 128 ... 8192 for semi-hard,
#      batch-all and batch-hard: Triplet's loss bench against scripts/bench_pml.py; and PML's
#      band miner and batch-all with the swap, on the device since issue 28 (Triplet only);
#   4. eval's exact kNN (10k queries x 60k references, 64-d): Triplet's knn bench against
#      scripts/bench_knn_torch.py (torch.cdist + topk);
#   5. `triplet train --backend cuda` for one epoch of the README's quickstart.
# Outputs go to $OUT (or /tmp/gpu-check): one log per step and gpu_check.md, the table.
# Without an NVIDIA GPU `run` stops at once with a one-line error.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
bundle=.gpu
benches=(gpu)

prepare() {
    bash scripts/setup_cuda.sh --libdevice
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/triplet/target}"
    rm -rf "$bundle"
    mkdir -p "$bundle/bin" "$bundle/cuda/nvvm/libdevice" "$bundle/whl"
    local features=(--workspace --features triplet-train/cuda --locked)
    echo "gpu_check: building the gpu bench (the benches and the CLI in one binary) with cuda"
    local list
    list="$(cargo bench "${features[@]}" --profile dev --no-run --message-format=json \
        $(printf -- '--bench %s ' "${benches[@]}") \
        | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])')"
    while read -r name exe; do
        strip -o "$bundle/bin/$name" "$exe"
    done <<<"$list"
    for name in "${benches[@]}"; do
        test -s "$bundle/bin/$name" || { echo "gpu_check: $name was not built" >&2; exit 1; }
        xz -T0 -9 -f "$bundle/bin/$name"
    done
    cp "${XDG_DATA_HOME:-$HOME/.local/share}/triplet/cuda/nvvm/libdevice/libdevice.10.bc" \
        "$bundle/cuda/nvvm/libdevice/"
    # The setup script's virtual environment has pip (Debian's python3 may not).
    "${TRIPLET_LLVM_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/triplet/llvm23}/bin/pip" download \
        --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$bundle/whl" pytorch-metric-learning==2.9.0
    if [ -d .git/info ] && ! grep -qx '/.gpu/' .git/info/exclude 2>/dev/null; then
        echo '/.gpu/' >>.git/info/exclude
    fi
    du -sh "$bundle"
    local bytes
    bytes="$(du -sb "$bundle" | cut -f1)"
    # 64 MiB travel in all, the working tree (about 7 MB) included.
    if ((bytes > 52 * 1024 * 1024)); then
        echo "gpu_check: $bundle is $((bytes / 1024 / 1024)) MiB: with the working tree, over the 64 MiB that may travel" >&2
        exit 1
    fi
    echo "gpu_check: ready; on the GPU machine: bash scripts/gpu_check.sh run (carry .gpu)"
}

run() {
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep GPU >/dev/null; then
        echo "gpu_check: no NVIDIA GPU here (nvidia-smi lists none): run this on the GPU machine" >&2
        exit 1
    fi
    command -v xz >/dev/null || { echo "gpu_check: xz is needed to unpack $bundle" >&2; exit 1; }
    test -d "$bundle/bin" || { echo "gpu_check: no $bundle/bin: run 'bash scripts/gpu_check.sh prepare' here first and carry $bundle" >&2; exit 1; }
    local out="${OUT:-/tmp/gpu-check}" work=/tmp/gpu-check-work
    rm -rf "$work"
    mkdir -p "$out" "$work/bin/cuda"
    for f in "$bundle"/bin/*.xz; do
        xz -dc "$f" >"$work/bin/$(basename "$f" .xz)"
        chmod +x "$work/bin/$(basename "$f" .xz)"
    done
    cp -r "$bundle/cuda/nvvm" "$work/bin/cuda/"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$work/site" "$bundle"/whl/*.whl
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    export CUDA_PATH="$work/bin/cuda"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
    local budget="${GPU_CHECK_BUDGET:-540}" start
    start=$(date +%s)
    # step NAME LIMIT COMMAND...: runs under min(LIMIT, what is left), logs to $out/NAME.log.
    step() {
        local name="$1" limit="$2"
        shift 2
        local left=$((budget - ($(date +%s) - start)))
        ((left < limit)) && limit=$left
        if ((limit < 10)); then
            echo "skipped: budget spent" >"$out/$name.log"
            return 0
        fi
        echo "== $name (at most ${limit}s)"
        local t0 rc=0
        t0=$(date +%s)
        timeout --kill-after=5 "$limit" "$@" >"$out/$name.log" 2>&1 || rc=$?
        echo "rc=$rc seconds=$(($(date +%s) - t0))" >>"$out/$name.log"
        tail -n 3 "$out/$name.log"
    }
    local b="$work/bin" sizes=128,512,1024,2048,4096,8192
    step resnet50_triplet 150 "$b/gpu" train_step --backend cuda --backbone resnet50 --size 224 \
        --batch 64 --k 4 --steps 12 --warmup 6
    step resnet50_pytorch 70 python3 scripts/bench_train.py --arch resnet50 --size 224 \
        --batch 64 --k 4 --device cuda --steps 20 --warmup 8
    # Mixed precision: bf16 forward and backward on f32 master weights, against PyTorch's
    # bfloat16 autocast (AMP).
    step resnet50_triplet_bf16 120 "$b/gpu" train_step --backend cuda --backbone resnet50 \
        --size 224 --batch 64 --k 4 --steps 12 --warmup 6 --precision bf16
    step resnet50_pytorch_amp 60 python3 scripts/bench_train.py --arch resnet50 --size 224 \
        --batch 64 --k 4 --device cuda --steps 20 --warmup 8 --amp
    step cnn_triplet 60 "$b/gpu" train_step --backend cuda --steps 30 --warmup 10
    step cnn_pytorch 45 python3 scripts/bench_train.py --device cuda --steps 30 --warmup 10
    step loss_triplet 80 "$b/gpu" loss --device cuda --sizes "$sizes" --repeats 5
    # The miners that moved onto the device in issue 28 (PML's band, batch-all with the swap).
    step loss_triplet_band_swap 40 "$b/gpu" loss --device cuda --sizes 128,1024,4096 \
        --strategies pml_semi_hard,all_swap --repeats 3
    # 18 configurations, each a fresh process (torch's import and CUDA start); the JSON is
    # rewritten after each one, so a cut-off run keeps what it measured.
    step loss_pml 150 python3 scripts/bench_pml.py --device cuda --threads 16 --budget 3 \
        --timeout 30 --sizes "$sizes" --json "$out/loss_pml.json"
    step knn_pytorch 45 python3 scripts/bench_knn_torch.py --device cuda --write "$work/knn"
    step knn_triplet 60 "$b/gpu" knn --backend cuda --data "$work/knn" --repeats 3 --repeats-large 2
    step cli_cuda 60 "$b/gpu" triplet train --config configs/quickstart.toml --epochs 1 \
        --backend cuda --out "$work/run"
    python3 scripts/gpu_table.py "$out" | tee "$out/gpu_check.md"
}

case "$mode" in
    prepare) prepare ;;
    run) run ;;
    *)
        echo "usage: bash scripts/gpu_check.sh prepare|run (see the top of this script)" >&2
        exit 2
        ;;
esac
