#!/usr/bin/env python3
"""PIL + torchvision baseline for the photo input pipeline (docs/BENCHMARKS.md, "Data").

Decodes every JPEG of a folder (one sub-folder per class) and applies torchvision's ImageNet
transforms, as a PyTorch DataLoader worker would: training `RandomResizedCrop(224) +
RandomHorizontalFlip + ToTensor + Normalize`, evaluation `Resize(256) + CenterCrop(224) +
ToTensor + Normalize`. Prints images/s for one process (one DataLoader worker); workers scale
by processes. Compare with `cargo bench --workspace --bench data --profile dev -- --photos
--workers 1` on the same folder size.

Usage:
  cargo bench --workspace --bench data --profile dev -- --images 768 --write-photos /tmp/photos
  PYTHONPATH=/work/tv-site python scripts/bench_decode_pil.py /tmp/photos [--repeat 3]
"""
import argparse
import json
import pathlib
import statistics
import time

import torch
from PIL import Image
from torchvision import transforms as T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = sorted(pathlib.Path(args.folder).rglob("*.jpg"))
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    pipelines = {
        "random-resized-crop+flip": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm]),
        "resize 256 + centre crop": T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm]),
    }
    for name, tf in pipelines.items():
        rates = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for f in files:
                with Image.open(f) as im:
                    x = tf(im.convert("RGB"))
            rates.append(len(files) / (time.perf_counter() - start))
        print(json.dumps({"impl": "PIL+torchvision", "input": f"jpeg -> 224 {name}", "workers": 1,
                          "images": len(files), "images_per_s_median": round(statistics.median(rates)),
                          "pillow": Image.__version__, "torch": torch.__version__, "shape": list(x.shape)}))


if __name__ == "__main__":
    main()
