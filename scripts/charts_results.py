#!/usr/bin/env python3
"""Regenerates the example charts the README shows (`docs/charts/`, block `results:charts`).

Runs `maxprune demo` (train, one neuron-pruning step: the schedule's accuracy chart and a
relevance histogram), `maxprune sensitivity` of the demo's network, `maxprune reproduce lenet5
--quick` (the accuracy-vs-nonzeros chart) and `maxprune verify` (the ROC curve) on the embedded Fashion-MNIST subset, in a temporary
directory, and copies their SVGs. LFW cannot be downloaded here, so `verify` runs on LFW's
layout and protocol filled with the subset's 500 test images, each garment class a "person":
10 folds of 30 matched pairs (two images of one class) and 30 mismatched pairs (two classes),
drawn with a fixed seed; the network that embeds them is the demo's, trained on the subset's
training images.

    python3 scripts/charts_results.py
"""
import gzip
import random
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

from common import ROOT, run, write_block

OUT = ROOT / "docs" / "charts"


FIXTURES = ROOT / "fixtures" / "fashion-mini"
CLASSES = ["Tshirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
FOLDS, PAIRS = 10, 30


def idx(name):
    """An IDX file of the embedded subset: (dims, bytes)."""
    data = gzip.decompress((FIXTURES / name).read_bytes())
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return dims, data[4 + 4 * rank :]


def png(pixels, side):
    """A grayscale PNG of `side` x `side` bytes (the image crate reads it whatever the name)."""
    rows = b"".join(b"\0" + pixels[r * side : (r + 1) * side] for r in range(side))
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def lfw_layout(root):
    """Writes the test images in LFW's layout under root/images and a pairs file; returns its path."""
    (n, side, _), images = idx("t10k-images-idx3-ubyte.gz")
    _, labels = idx("t10k-labels-idx1-ubyte.gz")
    numbers = {c: [] for c in range(len(CLASSES))}
    for i in range(n):
        c = labels[i]
        numbers[c].append(len(numbers[c]) + 1)
        folder = root / "images" / CLASSES[c]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{CLASSES[c]}_{numbers[c][-1]:04}.jpg").write_bytes(png(images[i * side * side :][: side * side], side))
    rng = random.Random(1)
    lines = [f"{FOLDS} {PAIRS}"]
    for _ in range(FOLDS):
        for _ in range(PAIRS):
            c = rng.randrange(len(CLASSES))
            a, b = rng.sample(numbers[c], 2)
            lines.append(f"{CLASSES[c]} {a} {b}")
        for _ in range(PAIRS):
            c, d = rng.sample(range(len(CLASSES)), 2)
            lines.append(f"{CLASSES[c]} {rng.choice(numbers[c])} {CLASSES[d]} {rng.choice(numbers[d])}")
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        run("demo", "--out", str(t / "demo"))
        run("reproduce", "lenet5", "--quick", "--seeds", "1", "--out", str(t / "reproduce"))
        run("sensitivity", str(t / "demo" / "train"), "--out", str(t / "sensitivity"))
        pairs = lfw_layout(t / "lfw")
        run("verify", str(t / "demo" / "train"), "--pairs", str(pairs), "--images", str(t / "lfw" / "images"), "--out", str(t / "verify"))
        charts = [
            ("schedule: accuracy vs parameters (`prune neurons`, `demo`)", t / "demo" / "prune" / "accuracy-vs-params.svg", "accuracy-vs-params.svg"),
            ("relevance histogram (`relevance`, every schedule step)", t / "demo" / "prune" / "relevance-step-01.svg", "relevance-histogram.svg"),
            ("accuracy vs nonzeros (`reproduce`)", t / "reproduce" / "accuracy-vs-nonzeros.svg", "accuracy-vs-nonzeros.svg"),
            (
                "sensitivity: validation accuracy vs the fraction cut from each layer, without retraining (`sensitivity`)",
                t / "sensitivity" / "sensitivity.svg",
                "sensitivity.svg",
            ),
            (
                "ROC curve (`verify`; LFW's layout and protocol, filled with the subset's test images, classes as identities)",
                t / "verify" / "roc.svg",
                "roc.svg",
            ),
        ]
        lines = [
            "`python3 scripts/charts_results.py` (embedded Fashion-MNIST subset: `maxprune demo` and `sensitivity` of its network, "
            "`maxprune reproduce lenet5 --quick --seeds 1` and `maxprune verify` of the demo's network on "
            f"{FOLDS} folds x {2 * PAIRS} pairs of the subset's test images; 1 to 5 epochs, so the accuracies are "
            "the subset's, not the results above):",
            "",
        ]
        for caption, source, name in charts:
            shutil.copyfile(source, OUT / name)
            lines += [f"**{caption}**", "", f"![{caption}](docs/charts/{name})", ""]
    write_block("charts", "\n".join(lines).rstrip())


if __name__ == "__main__":
    main()
