"""ONNX fixtures from PyTorch for `maxprune import` (tests/onnx_import.rs reads them).

Builds two small maxout networks, exports each with the TorchScript exporter (`dynamo=False`)
and, where onnxscript is installed, with the dynamo exporter (one of them with external data),
and writes `fixtures/onnx/<name>.onnx` with `<name>.json`: the input shape and the logits for
the fixed input `x[i] = ((i * 7919) % 256) / 255` (row-major over [2, C, H, W]).

    /work/venv/bin/python bench/onnx_fixtures.py
"""

import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "onnx")
BATCH = 2


class MaxoutLenet(nn.Module):
    """LeNet-style: a conv maxout (`amax` over pieces), batch norm, a dense maxout (`view ... max`)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(3, 8, 5)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 4 * 4, 24)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x):
        n = x.shape[0]
        x = self.conv1(x)
        x = x.view(n, 3, 2, x.shape[2], x.shape[3]).amax(2)
        x = self.pool(x)
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = x.view(n, -1)
        x = F.relu(self.fc1(x))
        x = x.view(n, 12, 2).max(2).values
        return self.fc2(self.drop(x))


class GapMaxout(nn.Module):
    """Batch norm, average pooling, a conv maxout and adaptive (global) average pooling."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.conv2(x)
        n, _, h, w = x.shape
        x = x.view(n, 6, 2, h, w).max(2).values
        x = torch.flatten(self.gap(x), 1)
        return self.fc(x)


def fixed_input(c, h, w):
    n = BATCH * c * h * w
    return (torch.arange(n, dtype=torch.int64) * 7919 % 256).float().div(255).reshape(BATCH, c, h, w)


def moved_statistics(model):
    """Running statistics away from 0 and 1, so that batch norm is not the identity."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def export(name, model, shape, dynamo, **kw):
    x = fixed_input(*shape)
    path = os.path.join(OUT, f"{name}.onnx")
    if dynamo:
        torch.onnx.export(model, (x,), path, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), **kw)
    else:
        torch.onnx.export(
            model, (x,), path, dynamo=False, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **kw,
        )
    with torch.no_grad():
        logits = model(x)
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump({"input": [BATCH, *shape], "logits": logits.flatten().tolist()}, f)
    print(name, os.path.getsize(path), "bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    lenet, gap = MaxoutLenet().eval(), GapMaxout().eval()
    moved_statistics(lenet)
    moved_statistics(gap)
    for opset in (13, 17):
        export(f"lenet-torchscript-op{opset}", lenet, (1, 28, 28), False, opset_version=opset)
        export(f"gap-torchscript-op{opset}", gap, (3, 16, 16), False, opset_version=opset)
    # Without constant folding batch norm stays a BatchNormalization node (folded, it is gone).
    export("lenet-torchscript-unfolded", lenet, (1, 28, 28), False, opset_version=13, do_constant_folding=False)
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        print("onnxscript is not installed: no dynamo exports", file=sys.stderr)
        return
    export("lenet-dynamo", lenet, (1, 28, 28), True)
    export("gap-dynamo-external", gap, (3, 16, 16), True, external_data=True)


if __name__ == "__main__":
    main()
