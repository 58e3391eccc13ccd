#!/usr/bin/env python3
"""Turns the logs that `scripts/gpu_check.sh run` writes into one markdown table (stdout).

Usage: python3 scripts/gpu_table.py DIR   (DIR holds resnet50_triplet.log, loss_pml.json, ...)
A step that failed or was skipped shows as such, with its exit status.
"""
import json
import os
import re
import sys


def read(dir_, name):
    path = os.path.join(dir_, name + ".log")
    return open(path).read() if os.path.exists(path) else ""


def status(text):
    m = re.search(r"^rc=(\d+) seconds=(\d+)", text, re.M)
    if not m:
        return "not run"
    rc, secs = int(m.group(1)), int(m.group(2))
    if rc == 0:
        return "ok, {} s".format(secs)
    return "timed out" if rc in (124, 137) else "failed (rc {})".format(rc)


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def rate(text):
    rows = [j for j in json_lines(text) if "median_images_per_s" in j]
    return rows[-1]["median_images_per_s"] if rows else None


def ratio(a, b):
    return "**{:.2f}×**".format(a / b) if a and b else "–"


def main():
    d = sys.argv[1]
    gpu = open(os.path.join(d, "gpu.txt")).read().strip() if os.path.exists(os.path.join(d, "gpu.txt")) else "?"
    print("GPU: {}\n".format(gpu))
    print("| measurement | Triplet (cuda) | PyTorch / PML | Triplet ÷ PyTorch (throughput) |")
    print("|---|---:|---:|---:|")
    for label, ours, theirs in [
        ("ResNet-50 224 px step, img/s", "resnet50_triplet", "resnet50_pytorch"),
        ("ResNet-50 224 px step, bf16 mixed vs AMP, img/s", "resnet50_triplet_bf16", "resnet50_pytorch_amp"),
        ("reference CNN 28 px step, img/s", "cnn_triplet", "cnn_pytorch"),
    ]:
        a, b = read(d, ours), read(d, theirs)
        ra, rb = rate(a), rate(b)
        print("| {} | {} | {} | {} |".format(
            label, "{:.0f}".format(ra) if ra else status(a), "{:.0f}".format(rb) if rb else status(b),
            ratio(ra, rb)))
    # The loss: Triplet's bench prints "| strategy | B | median ms | ...", PML a JSON list.
    ours = {}
    for m in re.finditer(r"^\| (semi_hard|all|hard) \| (\d+) \| ([\d.]+) \|", read(d, "loss_triplet"), re.M):
        ours[(m.group(1), int(m.group(2)))] = float(m.group(3))
    names = {"semi_hard": "semi_hard", "all": "batch_all", "hard": "batch_hard"}
    pml = {}
    path = os.path.join(d, "loss_pml.json")
    if os.path.exists(path):
        for r in json.load(open(path)):
            pml[(r["strategy"], r["batch"])] = r["median_ms"] if r["status"] == "ok" else r["status"]
    sizes = sorted({b for _, b in ours} | {b for _, b in pml})
    for s in ["semi_hard", "all", "hard"]:
        for b in sizes:
            a, p = ours.get((s, b)), pml.get((names[s], b))
            faster = "{:.2f}× faster".format(p / a) if isinstance(p, float) and a else "–"
            print("| loss {} B = {}, ms | {} | {} | {} |".format(
                s, b, "{:.1f}".format(a) if a is not None else "–",
                "{:.1f}".format(p) if isinstance(p, float) else (p or "–"), faster))
    if not ours:
        print("| loss | {} | {} | – |".format(status(read(d, "loss_triplet")), status(read(d, "loss_pml"))))
    # kNN: JSON lines with op "search" and k.
    ks = {}
    for name, who in [("knn_triplet", "t"), ("knn_pytorch", "p")]:
        for j in json_lines(read(d, name)):
            if j.get("op") == "search":
                ks.setdefault(j["k"], {})[who] = j["median_s"]
    for k in sorted(ks):
        t, p = ks[k].get("t"), ks[k].get("p")
        print("| kNN 10k × 60k, k = {}, s | {} | {} | {} |".format(
            k, "{:.3f}".format(t) if t else "–", "{:.3f}".format(p) if p else "–",
            "{:.2f}× faster".format(p / t) if t and p else "–"))
    if not ks:
        print("| kNN | {} | {} | – |".format(status(read(d, "knn_triplet")), status(read(d, "knn_pytorch"))))
    cli = read(d, "cli_cuda")
    p1 = re.findall(r"P@1[^\n]*", cli)
    print("| `triplet train --backend cuda`, 1 epoch | {} | – | {} |".format(
        status(cli), p1[-1].strip().replace("|", "/") if p1 else "–"))


if __name__ == "__main__":
    main()
