#!/usr/bin/env python3
"""Cross-check fixtures for our ResNet against torchvision's resnet18/34/50.

For each arch, EVERY entry of torchvision's `model.state_dict()` is filled from a
deterministic counter-based generator (described below; the Rust test reimplements
it bit-for-bit), the model is run in eval mode in float64 on fixed generated inputs,
and a small JSON fixture is written to
crates/model/tests/fixtures/torchvision_<arch>.json. Weights are NOT stored in the
JSON, only how to regenerate them (name, shape, dtype, offset, scale per tensor).

With --save-dir DIR the script also writes the generated state dicts as
DIR/<arch>.pth (torch.save of the float32 state_dict) and DIR/<arch>.safetensors
(safetensors.torch.save_file), for a manual cross-check (not committed).

Generator (all integer arithmetic mod 2^64):
    fnv1a64(name): h = 0xcbf29ce484222325; for each UTF-8 byte b: h ^= b; h *= 0x100000001b3
    uniform(name, n, seed): state0 = fnv1a64(name) ^ seed; for i = 0..n-1:
        z = state0 + (i + 1) * 0x9E3779B97F4A7C15          (splitmix64 counter)
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        z = z ^ (z >> 31)
        r_i = f32(z >> 40) / f32(2^24) * f32(2) - f32(1)     (float32 ops; exact, r in [-1, 1))
    tensor_values(name, shape, seed, offset, scale)
        = f32(offset) + f32(scale) * r   (two separately rounded float32 ops, no FMA),
          reshaped row-major (C order) to `shape`.
    Integer entries (num_batches_tracked, int64) are 0 and listed with dtype "i64".
    Every tensor uses its own state-dict name as the generator name.

Reference values (seed 0) for unit-testing a reimplementation:
    fnv1a64("conv1.weight")       = 0x69a29a2cee47d254
    uniform("conv1.weight", 4, 0) = [0.0901498794555664, 0.49032342433929443,
                                     -0.9541566371917725, 0.47239553928375244]
                         f32 bits = [0x3db8a080, 0x3efb0bac, 0xbf74439c, 0x3ef1ddd4]

Offsets / scales (float32-rounded, written in the JSON as float(np.float32(x))):
    conv weight                  offset 0       scale sqrt(3 / (in_ch*kh*kw))
    BatchNorm weight (gamma)     offset 0.5     scale 0.5      (gamma in [0, 1))
    BatchNorm bias (beta)        offset -0.125  scale 0.1
    BatchNorm running_mean       offset m_l     scale 0.1 * sqrt(v_l)   } calibrated per
    BatchNorm running_var        offset v_l     scale 0.5 * v_l         } BatchNorm layer
    fc.weight / head.weight      offset 0       scale sqrt(3 / in_features)
    fc.bias / head.bias          offset 0       scale 0.1
    input  [3, 3, 80, 64]        offset 0       scale 1
  m_l, v_l (float32-rounded scalars, one pair per BatchNorm layer) are the mean and the
  variance, over all of N, C, H, W, of that BatchNorm's actual input in the float64
  forward pass on the fixture inputs, with all earlier layers already final (layers are
  calibrated in forward order in a single pass, like a data-dependent init). They are
  stored as ordinary offset/scale in the JSON, so the consumer needs no calibration.
  Why: with fixed per-kind running statistics the activation scale drifts with depth
  (residual sums), and random ReLU nets on noise inputs map every input to nearly the
  same pooled direction (embedding cosines 0.996..0.9997 with the suggested defaults).
  Calibrated statistics keep every layer at unit scale, and the slightly negative beta
  (a small ReLU threshold) makes the features input-dependent (cosines < 0.99) without
  the collapse seen with larger thresholds (whole images mapping to all-zero features).
Model: torchvision resnetXX(weights=None), state dict overwritten, .double().eval();
inputs converted exactly float32 -> float64. `features` = global-average-pool output
(fc replaced by nn.Identity after loading), [N, C]. Embeddings (our head, not
torchvision's): L2-normalise(features @ head.weight.T + head.bias), [N, 16], float64.

Environment used (Python 3.11, Linux x86_64):
    torch 2.15.0 (+cu132), numpy 2.4.6, torchvision 0.29.2, pillow 13.0.0, safetensors 0.8.0
torchvision is NOT installed in the venv; it is installed without dependencies into a
separate directory put on PYTHONPATH (torchvision imports PIL at import time, so pillow
goes there too), which leaves the venv's torch untouched (0.29.2 declares torch>=2.14.0;
with torch 2.15.0 it imports without any warning, python -W default):
    /work/pml-venv/bin/pip install --no-deps --target /work/tv-site torchvision==0.29.2 pillow==13.0.0
    /work/pml-venv/bin/pip install safetensors==0.8.0

Usage:
    PYTHONPATH=/work/tv-site /work/pml-venv/bin/python scripts/torchvision_fixtures.py \
        [--seed 0] [--out-dir crates/model/tests/fixtures] [--save-dir /tmp/tv-weights]
"""

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50

M64 = 2**64 - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

ARCHS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
EMBED_DIM = 16
INPUT_SHAPE = [3, 3, 80, 64]
BN_WEIGHT = (0.5, 0.5)  # (offset, scale) of BatchNorm gamma
BN_BIAS = (-0.125, 0.1)  # (offset, scale) of BatchNorm beta

GENERATOR_TEXT = (
    "All integer arithmetic is mod 2^64. fnv1a64(name): h = 0xcbf29ce484222325; for each "
    "UTF-8 byte b of name: h ^= b; h = h * 0x100000001b3. uniform(name, n, seed): "
    "state0 = fnv1a64(name) ^ seed; for i in 0..n: z = state0 + (i + 1) * 0x9E3779B97F4A7C15; "
    "z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB; "
    "z = z ^ (z >> 31); r_i = f32(z >> 40) / f32(2^24) * f32(2) - f32(1) (float32 ops, exact, "
    "r in [-1, 1)). A tensor entry {name, shape, offset, scale} has values "
    "f32(offset) + f32(scale) * r (two separately rounded float32 operations, no FMA) with "
    "r = uniform(name, prod(shape), seed), laid out row-major (C order) in shape. Entries "
    "with dtype 'i64' (num_batches_tracked) are 0. The state-dict name is the generator name."
)


# ----------------------------------------------------------------------------- generator


def fnv1a64(name: str) -> int:
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * FNV_PRIME) & M64
    return h


def uniform(name: str, n: int, seed: int) -> np.ndarray:
    """Vectorised uint64 splitmix64 counter stream -> float32 in [-1, 1)."""
    state0 = np.uint64((fnv1a64(name) ^ seed) & M64)
    i1 = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = state0 + i1 * np.uint64(GOLDEN)  # wraps mod 2^64
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
        z = z ^ (z >> np.uint64(31))
    top = (z >> np.uint64(40)).astype(np.float32)  # < 2^24: exact
    return top / np.float32(2**24) * np.float32(2) - np.float32(1)


def uniform_slow(name: str, n: int, seed: int) -> list:
    """Pure-Python reference (big ints, explicit masking)."""
    state0 = (fnv1a64(name) ^ seed) & M64
    out = []
    for i in range(n):
        z = (state0 + (i + 1) * GOLDEN) & M64
        z = ((z ^ (z >> 30)) * MIX1) & M64
        z = ((z ^ (z >> 27)) * MIX2) & M64
        z = z ^ (z >> 31)
        out.append(np.float32(z >> 40) / np.float32(2**24) * np.float32(2) - np.float32(1))
    return out


def f32(x: float) -> float:
    return float(np.float32(x))


def tensor_values(name: str, shape, seed: int, offset: float, scale: float) -> np.ndarray:
    r = uniform(name, int(np.prod(shape, dtype=np.int64)), seed)
    v = np.float32(offset) + np.float32(scale) * r
    assert v.dtype == np.float32
    return v.reshape(shape)


def spec_for(name: str, t: torch.Tensor) -> dict:
    """offset/scale for one state-dict entry."""
    shape = list(t.shape)
    if t.dtype == torch.int64:
        assert name.endswith("num_batches_tracked"), name
        return {"name": name, "shape": shape, "dtype": "i64", "offset": 0.0, "scale": 0.0}
    assert t.dtype == torch.float32, (name, t.dtype)
    leaf = name.rsplit(".", 1)[1]
    if t.dim() == 4:  # conv weight
        assert leaf == "weight", name
        fan_in = shape[1] * shape[2] * shape[3]
        off, sc = 0.0, math.sqrt(3.0 / fan_in)
    elif t.dim() == 2:  # linear weight (fc.weight)
        off, sc = 0.0, math.sqrt(3.0 / shape[1])
    elif name.startswith("fc.") and leaf == "bias":
        off, sc = 0.0, 0.1
    elif leaf == "weight":  # BatchNorm gamma
        off, sc = BN_WEIGHT
    elif leaf == "bias":  # BatchNorm beta
        off, sc = BN_BIAS
    elif leaf == "running_mean":  # placeholder, replaced by calibrate()
        off, sc = 0.0, 0.1
    elif leaf == "running_var":  # placeholder, replaced by calibrate()
        off, sc = 1.0, 0.5
    else:
        raise ValueError(f"unexpected state-dict entry {name} {shape}")
    return {"name": name, "shape": shape, "dtype": "f32", "offset": f32(off), "scale": f32(sc)}


def materialise(spec: dict, seed: int) -> torch.Tensor:
    if spec["dtype"] == "i64":
        return torch.zeros(spec["shape"], dtype=torch.int64)
    v = tensor_values(spec["name"], spec["shape"], seed, spec["offset"], spec["scale"])
    return torch.from_numpy(np.ascontiguousarray(v))


# ----------------------------------------------------------------------------- self-test


def self_test(seed: int) -> None:
    for name in ["conv1.weight", "bn1.running_var", "layer4.1.conv2.weight", "fc.bias", "input", "head.weight", "ä€"]:
        for s in sorted({seed, 0, 1, 0xDEADBEEFCAFEBABE}):
            fast = uniform(name, 5, s)
            slow = uniform_slow(name, 5, s)
            assert fast.dtype == np.float32
            assert [float(x) for x in fast] == [float(x) for x in slow], (name, s, fast, slow)
            assert all(-1.0 <= float(x) < 1.0 for x in fast)
    # prefix property: the first elements do not depend on n
    big = uniform("conv1.weight", 100_000, seed)
    assert np.array_equal(big[:5], uniform("conv1.weight", 5, seed))
    # the last element too, via the slow path at a large index
    state0 = (fnv1a64("conv1.weight") ^ seed) & M64
    z = (state0 + 100_000 * GOLDEN) & M64
    z = ((z ^ (z >> 30)) * MIX1) & M64
    z = ((z ^ (z >> 27)) * MIX2) & M64
    z = z ^ (z >> 31)
    assert float(big[-1]) == float(np.float32(z >> 40) / np.float32(2**24) * np.float32(2) - np.float32(1))
    # offset + scale * r, scalar float32 ops
    v = tensor_values("conv1.weight", [5], seed, 0.25, 0.0384)
    r = uniform_slow("conv1.weight", 5, seed)
    for a, b in zip(v, r):
        assert float(a) == float(np.float32(0.25) + np.float32(0.0384) * b)
    print("generator self-test passed (vectorised uint64 == pure-Python loop)")


def print_reference_values() -> None:
    print(f'fnv1a64("conv1.weight") = 0x{fnv1a64("conv1.weight"):016x}')
    vals = uniform("conv1.weight", 4, 0)
    print('uniform("conv1.weight", 4, 0) =', [repr(float(x)) for x in vals],
          "  f32 bits:", [f"0x{x:08x}" for x in vals.view(np.uint32)])


# ----------------------------------------------------------------------------- fixtures


def cosines(e: np.ndarray) -> list:
    n = e.shape[0]
    return [float(e[i] @ e[j]) for i in range(n) for j in range(i + 1, n)]


def make_model(arch: str, specs: list, seed: int):
    """torchvision model with every state-dict entry taken from the generator."""
    model = ARCHS[arch](weights=None)
    sd = model.state_dict()
    assert [s["name"] for s in specs] == list(sd), "spec order must be the state_dict order"
    new_sd = {s["name"]: materialise(s, seed) for s in specs}
    for k, v in sd.items():
        assert new_sd[k].shape == v.shape and new_sd[k].dtype == v.dtype, k
    model.load_state_dict(new_sd, strict=True)
    for k, v in model.state_dict().items():  # everything really overwritten
        assert torch.equal(v, new_sd[k]), k
    return model, new_sd


def features_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.fc = nn.Identity()  # global-average-pool output
    model = model.double().eval()
    with torch.no_grad():
        return model(x)


def calibrate(arch: str, specs: list, seed: int, x: torch.Tensor) -> torch.Tensor:
    """Set offset/scale of every running_mean / running_var from the statistics of that
    BatchNorm's input (one float64 forward, layers in forward order). Returns the
    features of that calibration pass."""
    by_name = {s["name"]: s for s in specs}
    model, _ = make_model(arch, specs, seed)
    model.fc = nn.Identity()
    model = model.double().eval()
    names = {m: n for n, m in model.named_modules()}
    seen = []

    def hook(mod, inp):
        n = names[mod]
        xi = inp[0]
        m = float(xi.mean())
        v = float(((xi - m) ** 2).mean())
        assert v > 0 and math.isfinite(v), (n, m, v)
        rm, rv = by_name[n + ".running_mean"], by_name[n + ".running_var"]
        rm["offset"], rm["scale"] = f32(m), f32(0.1 * math.sqrt(v))
        rv["offset"], rv["scale"] = f32(v), f32(0.5 * v)
        assert rv["offset"] - rv["scale"] > 0
        mod.running_mean.copy_(materialise(rm, seed).double())
        mod.running_var.copy_(materialise(rv, seed).double())
        seen.append(n)

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [m.register_forward_pre_hook(hook) for m in bns]
    with torch.no_grad():
        feats = model(x)
    for h in handles:
        h.remove()
    assert sorted(seen) == sorted(names[m] for m in bns) and len(seen) == len(set(seen)), "each BN once"
    return feats


def run_arch(arch: str, seed: int, out_dir: Path, save_dir):
    input_spec = {"name": "input", "shape": INPUT_SHAPE, "offset": f32(0.0), "scale": f32(1.0)}
    x32 = tensor_values("input", INPUT_SHAPE, seed, input_spec["offset"], input_spec["scale"])
    x = torch.from_numpy(x32.astype(np.float64))

    torch.manual_seed(0)  # irrelevant (all weights are overwritten); keeps construction deterministic
    template = ARCHS[arch](weights=None).state_dict()
    specs = [spec_for(k, v) for k, v in template.items()]
    calib_feats = calibrate(arch, specs, seed, x)
    n_params = sum(int(np.prod(s["shape"], dtype=np.int64)) for s in specs)

    # The fixture values come from a fresh model built from the final specs only.
    model, sd = make_model(arch, specs, seed)
    feats_t = features_of(model, x)
    assert torch.equal(feats_t, calib_feats), "calibration pass and spec-built model disagree"
    feats = feats_t.numpy()
    # float32 forward of the same model: how far a float32 consumer can be expected to be
    f32_model, _ = make_model(arch, specs, seed)
    f32_model.fc = nn.Identity()
    with torch.no_grad():
        feats32 = f32_model.float().eval()(torch.from_numpy(x32)).double().numpy()

    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        torch.save(sd, save_dir / f"{arch}.pth")
        from safetensors.torch import save_file

        save_file(sd, str(save_dir / f"{arch}.safetensors"))

    c = feats.shape[1]
    assert feats.shape == (INPUT_SHAPE[0], c) and feats.dtype == np.float64

    head = [
        {"name": "head.weight", "shape": [EMBED_DIM, c], "dtype": "f32", "offset": f32(0.0), "scale": f32(math.sqrt(3.0 / c))},
        {"name": "head.bias", "shape": [EMBED_DIM], "dtype": "f32", "offset": f32(0.0), "scale": f32(0.1)},
    ]
    w = tensor_values("head.weight", head[0]["shape"], seed, head[0]["offset"], head[0]["scale"]).astype(np.float64)
    b = tensor_values("head.bias", head[1]["shape"], seed, head[1]["offset"], head[1]["scale"]).astype(np.float64)
    z = feats @ w.T + b
    emb = z / np.linalg.norm(z, axis=1, keepdims=True)

    fcos = cosines(feats / np.linalg.norm(feats, axis=1, keepdims=True))
    ecos = cosines(emb)
    check = {
        "max_abs_feature": float(np.abs(feats).max()),
        "min_abs_feature": float(np.abs(feats).min()),
        "mean_feature": float(feats.mean()),
        "frac_zero_features": float((feats == 0).mean()),
        "feature_cosines_01_02_12": fcos,
        "embedding_cosines_01_02_12": ecos,
        "min_embedding_cosine": min(ecos),
        "max_embedding_cosine": max(ecos),
        "max_abs_pre_norm_embedding": float(np.abs(z).max()),
        "per_image_max_abs_feature": np.abs(feats).max(axis=1).tolist(),
        "float32_forward_max_abs_feature_diff": float(np.abs(feats - feats32).max()),
    }
    assert np.isfinite(feats).all() and np.isfinite(emb).all()
    assert check["frac_zero_features"] < 0.5, check
    assert min(check["per_image_max_abs_feature"]) > 0.1 * check["max_abs_feature"], check
    assert 1e-2 < check["max_abs_feature"] < 1e2, check
    assert max(ecos) < 0.99, check

    fixture = {
        "arch": arch,
        "seed": seed,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "generator": GENERATOR_TEXT,
        "tensors": specs,
        "input": input_spec,
        "head": head,
        "features": feats.tolist(),
        "embeddings": emb.tolist(),
        "check": check,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"torchvision_{arch}.json"
    path.write_text(dump_json(fixture))

    n_trainable = sum(p.numel() for p in model.parameters())
    print(f"{arch}: {len(specs)} tensors, {n_trainable} parameters ({n_params} values incl. buffers), features [{feats.shape[0]}, {c}], "
          f"max|feature| {check['max_abs_feature']:.4g}, min|feature| {check['min_abs_feature']:.3g}, "
          f"zero features {check['frac_zero_features']:.3f}, "
          f"float32-vs-float64 max|diff| {check['float32_forward_max_abs_feature_diff']:.2e}")
    print(f"    feature cosines   {[round(v, 4) for v in fcos]}")
    print(f"    embedding cosines {[round(v, 4) for v in ecos]} (min {min(ecos):.4f}, max {max(ecos):.4f})")
    print(f"    wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")


def dump_json(obj: dict) -> str:
    """Compact but diff-friendly: one top-level key (or list item) per line."""
    c = lambda v: json.dumps(v, separators=(",", ":"))  # noqa: E731
    lines = ["{"]
    keys = list(obj)
    for ki, k in enumerate(keys):
        v = obj[k]
        end = "," if ki + 1 < len(keys) else ""
        if isinstance(v, list) and v and isinstance(v[0], (dict, list)):
            lines.append(f"{json.dumps(k)}:[")
            lines += [" " + c(item) + ("," if i + 1 < len(v) else "") for i, item in enumerate(v)]
            lines.append("]" + end)
        else:
            lines.append(f"{json.dumps(k)}:{c(v)}{end}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == json.loads(json.dumps(obj))
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--out-dir", type=Path, default=root / "crates/model/tests/fixtures")
    ap.add_argument("--save-dir", type=Path, default=None)
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    args = ap.parse_args()
    assert 0 <= args.seed <= M64

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {np.__version__}")
    print_reference_values()
    self_test(args.seed)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    for arch in args.archs:
        run_arch(arch, args.seed, args.out_dir, args.save_dir)


if __name__ == "__main__":
    main()
