#!/usr/bin/env python3
"""Golden values for maxprune's batch norm, average pooling and global average pooling, made by
PyTorch, written as the Rust test module `src/model/layers/torch_goldens.rs`.

For each layer: a fixed input (a formula the Rust test computes the same way), the forward pass,
and the gradients of `sum(y * r)` (`r` another fixed formula) with respect to the input and
every parameter. Batch norm: training mode (batch statistics) and, after three training passes
on shifted inputs, the running statistics and the evaluation-mode output; `BatchNorm2d` on
[2, 3, 2, 2] maps and `BatchNorm1d` on [4, 3] vectors. Average pooling: `AvgPool2d(3, 2, 1)`
(padding counted) and `AdaptiveAvgPool2d(1)`, on [2, 2, 5, 5].

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python bench/layer_goldens.py

The test (`cargo test --release --lib torch_goldens`) compares within 1e-5.
"""
import subprocess
from pathlib import Path

import numpy as np

import torch
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "src" / "model" / "layers" / "torch_goldens.rs"


def pattern(n, a, b, scale, shift):
    """`((i * a) % b) * scale + shift` for i < n: the Rust test's `pattern`."""
    return torch.tensor([((i * a) % b) * scale + shift for i in range(n)], dtype=torch.float32)


def x_of(shape, step=0):
    n = 1
    for d in shape:
        n *= d
    return (pattern(n, 37, 17, 0.25, -2.0) + 0.5 * step).reshape(shape)


def r_of(n):
    return pattern(n, 13, 7, 1.0, -3.0)


def grads(layer, x):
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (y.flatten() * r_of(y.numel())).sum().backward()
    params = {name: p.grad.flatten() for name, p in layer.named_parameters()}
    return y.detach().flatten(), x.grad.flatten(), params


def rust_vec(name, t):
    # numpy prints the shortest decimal that reads back as the same f32.
    values = ", ".join(str(np.float32(v)) for v in t.flatten().tolist())
    return f"pub(crate) const {name}: &[f32] = &[{values}];\n"


def batch_norm(kind, shape):
    c = shape[1]
    layer = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(c, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    layer.train()
    y, dx, dp = grads(layer, x_of(shape))
    for step in (1, 2):
        layer(x_of(shape, step))
    layer.eval()
    with torch.no_grad():
        y_eval = layer(x_of(shape))
    out = rust_vec(f"{kind}_TRAIN_Y", y)
    out += rust_vec(f"{kind}_DX", dx)
    out += rust_vec(f"{kind}_DWEIGHT", dp["weight"])
    out += rust_vec(f"{kind}_DBIAS", dp["bias"])
    out += rust_vec(f"{kind}_RUNNING_MEAN", layer.running_mean)
    out += rust_vec(f"{kind}_RUNNING_VAR", layer.running_var)
    out += rust_vec(f"{kind}_EVAL_Y", y_eval)
    return out


def pooling(kind, layer):
    y, dx, _ = grads(layer, x_of([2, 2, 5, 5]))
    return rust_vec(f"{kind}_Y", y) + rust_vec(f"{kind}_DX", dx)


def main():
    torch.manual_seed(0)
    body = batch_norm("BN2D", [2, 3, 2, 2])
    body += batch_norm("BN1D", [4, 3])
    body += pooling("AVG_POOL", nn.AvgPool2d(3, 2, 1, count_include_pad=True))
    body += pooling("GLOBAL_AVG_POOL", nn.AdaptiveAvgPool2d(1))
    header = (
        "//! Golden values made by PyTorch: `python3 bench/layer_goldens.py` (torch "
        f"{torch.__version__}); do not edit by hand.\n"
        "//! Inputs and weights follow the formulas of that script (`pattern` in the test).\n\n"
    )
    OUT.write_text(header + body)
    subprocess.run(["rustfmt", "--edition", "2024", str(OUT)], check=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
