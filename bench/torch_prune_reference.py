#!/usr/bin/env python3
"""The paper's neuron-pruning schedule on `lenet5-maxout`, written independently in PyTorch.

A cross-check of `maxprune prune neurons` (criterion argmax, policy per-unit, one piece per step,
k=4 -> 1): the same network, recipe, validation split and schedule, with none of maxprune's
code. Use it to tell whether a result belongs to the method or to maxprune's implementation.

- Data: Fashion-MNIST IDX files (gzip), pixels / 255; the validation split is carved out of
  train with maxprune's own fixed permutation (SplitMix64, seed 0x005eed0f7a11), so both
  programs train, validate and test on the same examples.
- Network: conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, dense 500, relu, dropout 0.5 on
  the rectified pieces, maxout 125 x 4, dense 10 (the original Caffe network; `--linear` drops
  the relu, maxprune's experiments/lenet5-maxout-linear.json). Caffe's xavier init (uniform +-sqrt(3 / fan_in), zero bias).
- Recipe: SGD, momentum 0.9 (no dampening), weight decay 5e-4 on every parameter, batch 64,
  lr = 0.01 * (1 + 1e-4 * iter)^-0.75, restarted with a fresh optimizer for every retraining.
- Relevance: eval mode (no dropout), over the training split; per unit, how often each piece is
  the arg-max of the rectified pieces (ties split equally, so a contest where every piece is 0
  adds the same share to each). Each step removes the least relevant piece of every unit (the
  highest index among equals, as maxprune's `prune::select`), then retrains `--retrain-epochs`
  epochs.

`--start runs/a/model.safetensors` starts the schedule from a network maxprune trained (tensor
names `conv1.weight`, ..., PyTorch layouts) instead of training one here, which isolates the
pruning and retraining from the initial training. `--conv-relu` adds a ReLU after each conv
layer (with `--linear`: maxprune's experiments/lenet5-maxout-conv-relu.json).

Prints one JSON line per step (k, parameters, validation/test accuracy before and after
retraining) and, with `--out`, writes them all as one JSON file.

    pip install torch numpy safetensors
    python3 bench/torch_prune_reference.py --data ../shared/data/fashion-mnist --seed 1 \
        [--start runs/a/model.safetensors] [--linear] [--conv-relu] [--threads 2] [--out torch-schedule.json]
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

MASK64 = (1 << 64) - 1
VAL_SEED = 0x005E_ED0F_7A11


class SplitMix64:
    """maxprune's generator (src/rng.rs), for the same validation split."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E37_79B9_7F4A_7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        return ((self.next_u64() >> 32) * n) >> 32

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, 1, rows, cols)
    if magic == 2049:
        return np.frombuffer(data, np.uint8, offset=8)
    raise ValueError(f"{path}: magic {magic}, expected 2049 or 2051")


def load(data_dir, val):
    def split(prefix):
        x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
        return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))

    (tx, ty), test = split("train"), split("t10k")
    order = list(range(len(ty)))
    SplitMix64(VAL_SEED).shuffle(order)
    v, t = sorted(order[:val]), sorted(order[val:])
    return (tx[t], ty[t]), (tx[v], ty[v]), test


class Net(nn.Module):
    def __init__(self, units, k, conv_relu=False, linear=False):
        super().__init__()
        self.units, self.k, self.conv_relu, self.linear = units, k, conv_relu, linear
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, units * k)
        self.fc2 = nn.Linear(units, 10)

    def pieces(self, x):
        act = F.relu if self.conv_relu else (lambda t: t)
        x = F.max_pool2d(act(self.conv1(x)), 2)
        x = F.max_pool2d(act(self.conv2(x)), 2)
        z = self.fc1(x.flatten(1))
        return F.dropout(z if self.linear else F.relu(z), 0.5, self.training)

    def forward(self, x):
        z = self.pieces(x).reshape(-1, self.units, self.k)
        return self.fc2(z.max(dim=2).values)


def xavier(net, gen):
    for m in (net.conv1, net.conv2, net.fc1, net.fc2):
        fan_in = m.weight[0].numel()
        bound = (3.0 / fan_in) ** 0.5
        with torch.no_grad():
            m.weight.uniform_(-bound, bound, generator=gen)
            m.bias.zero_()


def train(net, data, epochs, seed, label):
    x, y = data
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 + 1e-4 * it) ** -0.75)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        start = time.time()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"# {label} epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, {time.time() - start:.0f} s", flush=True)


@torch.no_grad()
def accuracy(net, data):
    net.eval()
    x, y = data
    hits = sum((net(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item() for i in range(0, len(y), 1000))
    return 100.0 * hits / len(y)


@torch.no_grad()
def relevance(net, data):
    """Arg-max wins per (unit, piece) over `data`, ties split equally."""
    net.eval()
    x, _ = data
    wins = torch.zeros(net.units, net.k, dtype=torch.float64)
    for i in range(0, len(x), 1000):
        z = net.pieces(x[i : i + 1000]).reshape(-1, net.units, net.k)
        best = (z == z.max(dim=2, keepdim=True).values).double()
        wins += (best / best.sum(dim=2, keepdim=True)).sum(dim=0)
    return wins


@torch.no_grad()
def prune_one(net, wins):
    """A network with the least relevant piece of every unit removed (rows u*k_new + j)."""
    keep = []
    for u in range(net.units):
        drop = max(j for j in range(net.k) if wins[u][j] == wins[u].min())  # the last of equal minima
        keep += [u * net.k + j for j in range(net.k) if j != drop]
    small = Net(net.units, net.k - 1, net.conv_relu, net.linear)
    small.load_state_dict({n: t for n, t in net.state_dict().items() if not n.startswith("fc1.")}, strict=False)
    small.fc1.weight.copy_(net.fc1.weight[keep])
    small.fc1.bias.copy_(net.fc1.bias[keep])
    return small


def params(net):
    return sum(p.numel() for p in net.parameters())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="directory with the four Fashion-MNIST .gz files")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10, help="initial training (ignored with --start)")
    ap.add_argument("--retrain-epochs", type=int, default=5)
    ap.add_argument("--val", type=int, default=5000)
    ap.add_argument("--start", help="a maxprune model.safetensors of lenet5-maxout to start from")
    ap.add_argument("--linear", action="store_true", help="no ReLU on the pieces (experiments/lenet5-maxout-linear.json)")
    ap.add_argument("--conv-relu", action="store_true", help="a ReLU after each conv layer (not in lenet5-maxout)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the steps as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_split, val_split, test_split = load(args.data, args.val)

    net = Net(125, 4, args.conv_relu, args.linear)
    if args.start:
        from safetensors.torch import load_file

        net.load_state_dict(load_file(args.start))
    else:
        xavier(net, torch.Generator().manual_seed(args.seed))
        train(net, train_split, args.epochs, args.seed, "k=4")

    def row(k, before, after):
        r = {"k": k, "params": params(net), "val_before": before[0], "test_before": before[1]}
        r.update({"val_after": after[0], "test_after": after[1]})
        print(json.dumps(r), flush=True)
        return r

    start = (accuracy(net, val_split), accuracy(net, test_split))
    steps = [row(4, start, start)]
    while net.k > 1:
        net = prune_one(net, relevance(net, train_split))
        before = (accuracy(net, val_split), accuracy(net, test_split))
        train(net, train_split, args.retrain_epochs, args.seed + net.k, f"k={net.k}")
        steps.append(row(net.k, before, (accuracy(net, val_split), accuracy(net, test_split))))
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"args": vars(args), "steps": steps}, f, indent=1)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
