#!/usr/bin/env python3
"""The measurements of `maxprune bench`, made in PyTorch on the CPU, for a side-by-side comparison.

Builds the same network from a maxprune spec (a run directory's `spec.json`, or the built-in
`lenet5-maxout` / `lenet5` presets), then measures with the same protocol as `maxprune bench`:
one warm-up repetition, then the median of `--reps` repetitions of
  - training: 1,280 images in SGD steps at batch `--train-batch` (64 by default; forward,
    cross-entropy, backward, SGD with momentum 0.9 and weight decay 5e-4),
  - inference: 10 forward passes at batch 256 (eval mode, no autograd),
  - latency: 100 forward passes at batch 1,
  - relevance pass: forward over 1,000 images in batches of 500, keeping every maxout layer's
    pre-activations and counting per piece how often it is the arg-max of its unit.
Inputs are random. Prints the same JSON keys as `maxprune bench --json` with `--json`.

Needs only `pip install torch`.

    python3 bench/torch_reference.py [--spec runs/a/spec.json | --preset lenet5-maxout] [--threads 2] [--json]
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn

PRESETS = {
    "lenet5": [
        {"kind": "conv2d", "filters": 20, "kernel": 5},
        {"kind": "max-pool", "kernel": 2, "stride": 2},
        {"kind": "conv2d", "filters": 50, "kernel": 5},
        {"kind": "max-pool", "kernel": 2, "stride": 2},
        {"kind": "flatten"},
        {"kind": "dense", "outputs": 500},
        {"kind": "relu"},
        {"kind": "dense", "outputs": 10},
    ],
}
PRESETS["lenet5-maxout"] = PRESETS["lenet5"][:6] + [
    {"kind": "relu"},
    {"kind": "dropout", "p": 0.5},
    {"kind": "maxout", "pieces": {"units": 125, "k": 4}},
    {"kind": "dense", "outputs": 10},
]


class Maxout(nn.Module):
    """Max over k adjacent features (dense) or channels (conv)."""

    def __init__(self, units, k):
        super().__init__()
        self.units, self.k = units, k

    def forward(self, z):
        shape = (z.shape[0], self.units, self.k) + tuple(z.shape[2:])
        return z.reshape(shape).max(dim=2).values


def build(layers, channels, height, width):
    mods = []
    shape = (channels, height, width)
    for layer in layers:
        kind = layer["kind"]
        if kind == "conv2d":
            k, s, p = layer["kernel"], layer.get("stride", 1), layer.get("padding", 0)
            mods.append(nn.Conv2d(shape[0], layer["filters"], k, s, p))
            shape = (layer["filters"], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        elif kind == "max-pool":
            k, s = layer["kernel"], layer["stride"]
            mods.append(nn.MaxPool2d(k, s))
            shape = (shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1)
        elif kind == "avg-pool":
            k, s, p = layer["kernel"], layer["stride"], layer.get("padding", 0)
            mods.append(nn.AvgPool2d(k, s, p, count_include_pad=True))
            shape = (shape[0], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        elif kind == "global-avg-pool":
            mods.extend([nn.AdaptiveAvgPool2d(1), nn.Flatten()])
            shape = (shape[0],)
        elif kind == "batch-norm":
            norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            mods.append(norm(shape[0], eps=layer.get("eps", 1e-5), momentum=layer.get("momentum", 0.1)))
        elif kind == "flatten":
            mods.append(nn.Flatten())
            shape = (shape[0] * shape[1] * shape[2],)
        elif kind == "dense":
            mods.append(nn.Linear(shape[0], layer["outputs"]))
            shape = (layer["outputs"],)
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "dropout":
            mods.append(nn.Dropout(layer["p"]))
        elif kind == "maxout":
            pieces = layer["pieces"]
            if "k" not in pieces:
                raise SystemExit("ragged maxout layers are not supported by this reference script")
            mods.append(Maxout(pieces["units"], pieces["k"]))
            shape = (pieces["units"],) + tuple(shape[1:])
        else:
            raise SystemExit(f"unknown layer kind {kind!r}")
    return nn.Sequential(*mods)


def timed(reps, f):
    f()
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", help="a maxprune spec.json (default: the --preset)")
    ap.add_argument("--preset", default="lenet5-maxout", choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    if a.spec:
        spec = json.load(open(a.spec))
        layers, inp = spec["layers"], spec["input"]
        c, h, w = inp["channels"], inp["height"], inp["width"]
    else:
        layers, (c, h, w) = PRESETS[a.preset], (1, 28, 28)
    net = build(layers, c, h, w)
    classes = net[-1].out_features
    params = sum(p.numel() for p in net.parameters())

    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    b = max(a.train_batch, 1)
    steps = max(1280 // b, 1)
    x = torch.rand(b, c, h, w)
    y = torch.arange(b) % classes

    def train():
        net.train()
        for _ in range(steps):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            loss.item()
            loss.backward()
            opt.step()

    xb, x1 = torch.rand(256, c, h, w), torch.rand(1, c, h, w)
    images = torch.randint(0, 256, (1000, c, h, w)).float() / 255.0
    maxouts = [i for i, m in enumerate(net) if isinstance(m, Maxout)]

    def infer():
        with torch.inference_mode():
            for _ in range(10):
                net(xb)

    def latency():
        with torch.inference_mode():
            for _ in range(100):
                net(x1)

    def relevance():
        counts = {i: torch.zeros(net[i].units, net[i].k) for i in maxouts}
        with torch.inference_mode():
            for batch in images.split(500):
                z = batch
                for i, m in enumerate(net):
                    if i in counts:
                        pieces = z.reshape((z.shape[0], m.units, m.k) + tuple(z.shape[2:]))
                        win = pieces.argmax(dim=2).movedim(1, -1).reshape(-1, m.units)
                        counts[i] += nn.functional.one_hot(win, m.k).sum(0)
                    z = m(z)

    net.eval()
    train_s = timed(a.reps, train)
    net.eval()
    r = {
        "backend": f"pytorch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "train_batch": b,
        "train_img_per_s": b * steps / train_s,
        "infer_img_per_s": 256 * 10 / timed(a.reps, infer),
        "latency_ms_b1": 1e3 * timed(a.reps, latency) / 100,
        "relevance_img_per_s": len(images) / timed(a.reps, relevance),
        "params": params,
    }
    if a.json:
        print(json.dumps(r))
    else:
        print(f"{r['backend']} with {r['threads']} threads ({params} parameters)")
        for key in ["train_img_per_s", "infer_img_per_s", "latency_ms_b1", "relevance_img_per_s"]:
            print(f"  {key}: {r[key]:.3f}")


if __name__ == "__main__":
    main()
