#!/usr/bin/env python3
"""Builds datasets/fashion-mnist-small/applications/: a tiny image folder with a verification pair
list and a re-identification list, for trying `triplet eval --pairs` / `--group-column` and
`triplet search` on real images with no download.

Source: the shipped test set of datasets/fashion-mnist-small/ (t10k-images-idx3-ubyte.gz and
t10k-labels-idx1-ubyte.gz, 200 images per class). Output, in OUT_DIR:

- images/<label>/<row>.png: the first IMAGES_PER_CLASS test images of each of the 10 classes in
  file order, 28x28 8-bit greyscale PNG; <label> is the class digit 0..9, <row> the image's row in
  the t10k file, zero padded to 4 digits (e.g. images/7/0009.png).
- pairs.csv (`path_a,path_b,same`): SAME_PAIRS same-class and DIFF_PAIRS different-class pairs,
  drawn with random.Random(SEED) from all unordered pairs of two distinct images (so no pair is
  repeated, in either order, and no image is paired with itself), shuffled, each pair's order
  flipped by a coin toss; same is 1 or 0. Paths are relative to the CSV's folder.
- reid.csv (`path,label,is_query,is_gallery,camera`, the OML convention, values 1/0): all images;
  per class, in row order, positions 0-2 are queries only, position 3 both query and gallery, the
  rest gallery only; camera = c{(position % 3) + 1}. So every query has same-label gallery images
  on its own camera (which Market-1501's protocol excludes) and on the other two.
- README.md: what the files are.

Checks (fatal): the classes have enough images, the pair counts and the no-repeat / no-self rules,
every path in the CSVs exists, every query has same-label gallery images both on its own camera
and on another one, and each PNG decodes (zlib + filter 0) back to the IDX pixels.

Usage: python3 scripts/make_applications_fixture.py [SRC_DIR] [OUT_DIR]
(defaults datasets/fashion-mnist-small and datasets/fashion-mnist-small/applications).
Standard library only; the output is byte-for-byte reproducible (PNGs written with zlib level 9
and no timestamp chunks; the same zlib gives the same bytes). Stale PNGs under images/ are removed.
"""
import gzip
import random
import struct
import sys
import zlib
from pathlib import Path

IMAGES_PER_CLASS = 12
SEED = 2026
SAME_PAIRS = 150
DIFF_PAIRS = 150
QUERY_ONLY = 3  # positions 0..2 in a class: query only; position 3: query and gallery
CAMERAS = 3


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return shape, data[4 + 4 * dims :]


def chunk(kind, payload):
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_grey8(width, height, pixels):
    """8-bit greyscale PNG, no interlace, filter type 0 on every row, IHDR + IDAT + IEND only."""
    raw = b"".join(b"\x00" + pixels[y * width : (y + 1) * width] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def decode_png_grey8(data):
    """Inverse of png_grey8 (for the check only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + payload)
        if kind == b"IHDR":
            size = struct.unpack(">II", payload[:8])
        elif kind == b"IDAT":
            idat += payload
        pos += 12 + n
    width, height = size
    raw = zlib.decompress(idat)
    rows = [raw[y * (width + 1) : (y + 1) * (width + 1)] for y in range(height)]
    assert all(r[0] == 0 for r in rows)
    return b"".join(r[1:] for r in rows)


README = """\
# Applications fixture

A tiny real-image set for trying verification and re-identification evaluation and search with
no download: {n} Fashion-MNIST test images ({per} per class), taken from `../t10k-*` (the shipped
subset) by `scripts/make_applications_fixture.py` (standard library only, byte-identical on rerun).

- `images/<label>/<row>.png`: 28×28 8-bit grey PNGs; `<label>` is the class (0 T-shirt/top,
  1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot),
  `<row>` the image's row in `../t10k-images-idx3-ubyte.gz`. The folder is also a
  folder-per-class dataset.
- `pairs.csv` (`path_a,path_b,same`): {pairs} verification pairs, {same} of the same class
  (`same` = 1) and {diff} of different classes (0), drawn with a fixed seed, no pair repeated,
  shuffled. Paths are relative to this folder.
- `reid.csv` (`path,label,is_query,is_gallery,camera`): a re-identification split of all
  {n} images (`is_query` / `is_gallery` as in open-metric-learning, 1 or 0): in each class the
  first {q} images are queries only, the 4th is both query and gallery, the rest are gallery
  only; `camera` cycles `c1`, `c2`, `c3` within a class. Every query has same-class gallery images on
  its own camera, which the Market-1501 protocol leaves out (`--group-column camera`), and on
  the other two.

Licence: Fashion-MNIST, MIT licence, copyright Zalando SE; see `../LICENSE`.

Examples (`RUN` is a training run's checkpoint):

```
triplet eval --checkpoint RUN --data datasets/fashion-mnist-small/applications/reid.csv --pairs datasets/fashion-mnist-small/applications/pairs.csv --group-column camera
triplet search --checkpoint RUN --gallery datasets/fashion-mnist-small/applications/images --query datasets/fashion-mnist-small/applications/{example} --k 5
```
"""


def main():
    root = Path(__file__).parent.parent / "datasets" / "fashion-mnist-small"
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else root
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else root / "applications"
    (n, rows, cols), pixels = read_idx(src / "t10k-images-idx3-ubyte.gz")
    (n_labels,), labels = read_idx(src / "t10k-labels-idx1-ubyte.gz")
    assert n == n_labels and (rows, cols) == (28, 28)

    # Images: per class, the first IMAGES_PER_CLASS rows in file order; listed by (class, row).
    by_class = {}
    for row, label in enumerate(labels):
        taken = by_class.setdefault(label, [])
        if len(taken) < IMAGES_PER_CLASS:
            taken.append(row)
    assert sorted(by_class) == list(range(10)), sorted(by_class)
    assert all(len(v) == IMAGES_PER_CLASS for v in by_class.values())
    images = [(label, pos, row) for label in range(10) for pos, row in enumerate(by_class[label])]
    path = {row: f"images/{label}/{row:04d}.png" for label, _, row in images}

    size = rows * cols
    for label in range(10):
        folder = out / "images" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.png"):
            if stale.name not in {f"{row:04d}.png" for row in by_class[label]}:
                stale.unlink()
    for label, _, row in images:
        img = pixels[row * size : (row + 1) * size]
        data = png_grey8(cols, rows, img)
        assert decode_png_grey8(data) == img
        (out / path[row]).write_bytes(data)

    # Verification pairs: sample from every unordered pair of distinct images.
    rng = random.Random(SEED)
    same_all, diff_all = [], []
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            (same_all if images[i][0] == images[j][0] else diff_all).append((images[i][2], images[j][2]))
    pairs = [(a, b, 1) for a, b in rng.sample(same_all, SAME_PAIRS)]
    pairs += [(a, b, 0) for a, b in rng.sample(diff_all, DIFF_PAIRS)]
    rng.shuffle(pairs)
    pairs = [(b, a, s) if rng.random() < 0.5 else (a, b, s) for a, b, s in pairs]
    assert len({frozenset((a, b)) for a, b, _ in pairs}) == len(pairs) == SAME_PAIRS + DIFF_PAIRS
    assert all(a != b for a, b, _ in pairs)
    assert sum(s for _, _, s in pairs) == SAME_PAIRS
    assert all((labels[a] == labels[b]) == bool(s) for a, b, s in pairs)
    with open(out / "pairs.csv", "w", newline="\n") as f:
        f.write("path_a,path_b,same\n")
        for a, b, s in pairs:
            f.write(f"{path[a]},{path[b]},{s}\n")

    # Re-identification split.
    reid = []
    for label, pos, row in images:
        is_query = int(pos <= QUERY_ONLY)
        is_gallery = int(pos >= QUERY_ONLY)
        reid.append((row, label, is_query, is_gallery, f"c{pos % CAMERAS + 1}"))
    for row, label, q, _, cam in reid:
        if q:
            gallery = [(c, r) for r, l, _, g, c in reid if g and l == label and r != row]
            assert any(c == cam for c, _ in gallery) and any(c != cam for c, _ in gallery), row
    with open(out / "reid.csv", "w", newline="\n") as f:
        f.write("path,label,is_query,is_gallery,camera\n")
        for row, label, q, g, cam in reid:
            f.write(f"{path[row]},{label},{q},{g},{cam}\n")

    example = path[by_class[7][0]]  # the first Sneaker (images/7/0009.png)
    (out / "README.md").write_text(README.format(
        n=len(images), per=IMAGES_PER_CLASS, pairs=len(pairs), same=SAME_PAIRS, diff=DIFF_PAIRS,
        q=QUERY_ONLY, example=example))

    for p in list(path.values()):
        assert (out / p).is_file()
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{len(images)} images, {len(pairs)} pairs ({SAME_PAIRS} same), "
          f"{sum(r[2] for r in reid)} queries, {sum(r[3] for r in reid)} gallery; {total} bytes in {out}")


if __name__ == "__main__":
    main()
