#!/usr/bin/env python3
"""Builds datasets/fashion-mnist-small/: the first TRAIN_PER_CLASS training and TEST_PER_CLASS
test images of each Fashion-MNIST class, in file order, as gzipped IDX files (same format as the
originals). Input: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/).

Usage: python3 scripts/make_fashion_mnist_small.py [SRC_DIR] [OUT_DIR]
Standard library only; the output is byte-for-byte reproducible (gzip mtime 0).
"""
import gzip
import struct
import sys
from pathlib import Path

TRAIN_PER_CLASS = 800
TEST_PER_CLASS = 200


def read(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return shape, data[4 + 4 * dims :]


def write(path, shape, payload):
    header = struct.pack(">I", 0x0800 | len(shape)) + struct.pack(">" + "I" * len(shape), *shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(header + payload)


def subset(src, out, prefix, per_class):
    (n, rows, cols), pixels = read(src / f"{prefix}-images-idx3-ubyte.gz")
    (_,), labels = read(src / f"{prefix}-labels-idx1-ubyte.gz")
    taken, keep = {}, []
    for i, label in enumerate(labels):
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            keep.append(i)
    size = rows * cols
    write(out / f"{prefix}-images-idx3-ubyte.gz", (len(keep), rows, cols),
          b"".join(pixels[i * size : (i + 1) * size] for i in keep))
    write(out / f"{prefix}-labels-idx1-ubyte.gz", (len(keep),), bytes(labels[i] for i in keep))
    print(f"{prefix}: {len(keep)} images, {per_class} per class")


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent.parent / "datasets" / "fashion-mnist-small")
    out.mkdir(parents=True, exist_ok=True)
    subset(src, out, "train", TRAIN_PER_CLASS)
    subset(src, out, "t10k", TEST_PER_CLASS)


if __name__ == "__main__":
    main()
