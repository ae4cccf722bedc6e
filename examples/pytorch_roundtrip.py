#!/usr/bin/env python3
"""Bring your own PyTorch model to maxprune, and take the pruned one back (run by hand; not in CI).

1. Trains a small sequential maxout CNN with batch norm and average pooling in PyTorch for one
   epoch on 55,000 Fashion-MNIST training images, and exports it to ONNX with each of PyTorch's
   exporters: TorchScript (`dynamo=False`, opset 17) and dynamo (the default, weights in
   `model.onnx.data` beside the file). Steps 2 to 4 run once per exported file.
2. `maxprune import model.onnx` makes a run directory; `maxprune eval --predictions` is compared
   with ONNX Runtime on the 10,000 test images.
3. `maxprune prune neurons` removes whole units with the other 5,000 training images as its own
   validation set (`--val-dataset`), then `export --format onnx` and `--format dense`.
4. Both come back: ONNX Runtime runs the pruned ONNX file, and a PyTorch module built from the
   exported `spec.json` (`from_spec` below) loads the dense safetensors; their predictions are
   compared with `maxprune eval` of the pruned network on the test split.

    cargo build --release
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch onnx onnxruntime safetensors numpy
    /tmp/torchenv/bin/pip install onnxscript   # the dynamo exporter's dependency
    /tmp/torchenv/bin/python examples/pytorch_roundtrip.py [--data ../shared/data/fashion-mnist] [--out /tmp/roundtrip] [--exporters torchscript,dynamo]

Prints the agreement figures the README shows (README: "Bring your own PyTorch model").
"""
import argparse
import csv
import gzip
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("MAXPRUNE_BIN", ROOT / "target" / "release" / "maxprune"))


def read_idx(path):
    data = gzip.decompress(path.read_bytes())
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_split(folder, train, test):
    """An IDX dataset directory: `train` and `test` are (images, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in [("train", train), ("t10k", test)]:
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


class Maxout(nn.Module):
    """The max over groups of `k` adjacent channels or features, written as PyTorch users do."""

    def __init__(self, units, k):
        super().__init__()
        self.units, self.k = units, k

    def forward(self, x):
        return x.view(x.shape[0], self.units, self.k, *x.shape[2:]).amax(2)


def their_model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 5),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        Maxout(16, 2),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 64, 5),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        Maxout(32, 2),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        Maxout(128, 4),
        nn.Linear(128, 10),
    )


class FromSpec(nn.Module):
    """A PyTorch module from a maxprune `spec.json`: its named layers hold maxprune's tensor
    names, so `load_state_dict(load_file("model.safetensors"))` loads an exported network."""

    def __init__(self, spec):
        super().__init__()
        self.layers = spec["layers"]
        self.named = nn.ModuleDict()
        shape = [spec["input"]["channels"], spec["input"]["height"], spec["input"]["width"]]
        for layer in self.layers:
            kind = layer["kind"]
            if kind == "conv2d":
                k, s, p = layer["kernel"], layer.get("stride", 1), layer.get("padding", 0)
                self.named[layer["name"]] = nn.Conv2d(shape[0], layer["filters"], k, s, p)
                shape = [layer["filters"], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
            elif kind == "dense":
                self.named[layer["name"]] = nn.Linear(shape[0], layer["outputs"])
                shape = [layer["outputs"]]
            elif kind == "batch-norm":
                norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
                self.named[layer["name"]] = norm(shape[0], eps=layer.get("eps", 1e-5))
            elif kind in ("max-pool", "avg-pool"):
                k, s, p = layer["kernel"], layer["stride"], layer.get("padding", 0)
                shape = [shape[0], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
            elif kind == "flatten":
                shape = [int(np.prod(shape))]
            elif kind == "global-avg-pool":
                shape = [shape[0]]
            elif kind == "maxout":
                pieces = layer["pieces"]
                counts = pieces.get("per_unit") or [pieces["k"]] * pieces["units"]
                layer["_counts"] = counts
                shape = [len(counts)] + shape[1:]

    def forward(self, x):
        for layer in self.layers:
            kind = layer["kind"]
            if kind in ("conv2d", "dense", "batch-norm"):
                x = self.named[layer["name"]](x)
            elif kind == "relu":
                x = torch.relu(x)
            elif kind == "max-pool":
                x = nn.functional.max_pool2d(x, layer["kernel"], layer["stride"])
            elif kind == "avg-pool":
                x = nn.functional.avg_pool2d(x, layer["kernel"], layer["stride"], layer.get("padding", 0))
            elif kind == "global-avg-pool":
                x = x.mean(dim=(2, 3))
            elif kind == "flatten":
                x = x.flatten(1)
            elif kind == "maxout":
                x = torch.stack([g.amax(1) for g in torch.split(x, layer["_counts"], dim=1)], dim=1)
        return x


def maxprune(*args):
    subprocess.run([str(BIN), "-q", *map(str, args)], check=True)


def predictions_csv(path):
    with open(path) as f:
        return np.array([int(row["predicted"]) for row in csv.DictReader(f)])


def onnx_logits(model, images):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    ap.add_argument("--out", default="/tmp/roundtrip")
    ap.add_argument("--exporters", default="torchscript,dynamo", help="comma-separated: torchscript, dynamo")
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    exporters = args.exporters.split(",")
    if not set(exporters) <= {"torchscript", "dynamo"}:
        raise SystemExit(f"--exporters: expected torchscript and/or dynamo, found {args.exporters}")
    if out.exists():
        raise SystemExit(f"{out} exists: give a fresh --out")
    out.mkdir(parents=True)
    torch.manual_seed(1)
    started = time.time()
    train_x, train_y = read_idx(data / "train-images-idx3-ubyte.gz"), read_idx(data / "train-labels-idx1-ubyte.gz")
    test_x, test_y = read_idx(data / "t10k-images-idx3-ubyte.gz"), read_idx(data / "t10k-labels-idx1-ubyte.gz")
    # Their training set (55,000) and a validation set of their own (the other 5,000, as two IDX splits).
    write_split(out / "train", (train_x[:55000], train_y[:55000]), (test_x, test_y))
    write_split(out / "val", (train_x[55000:57500], train_y[55000:57500]), (train_x[57500:], train_y[57500:]))

    # 1. Train in PyTorch (pixels / 255, as maxprune reads them), export to ONNX.
    model = their_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x_all = torch.from_numpy(train_x[:55000]).float().div(255).unsqueeze(1)
    y_all = torch.from_numpy(train_y[:55000]).long()
    model.train()
    for idx in torch.randperm(55000).split(64):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_all[idx]), y_all[idx]).backward()
        opt.step()
    model.eval()
    test_images = (test_x.astype(np.float32) / 255.0)[:, None]
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(test_images)).argmax(1).numpy()
    print(f"PyTorch, 1 epoch on 55,000 images: test accuracy {100 * (torch_pred == test_y).mean():.2f}%")
    for exporter in exporters:
        round_trip(exporter, model, out / exporter, out, test_images, test_y)
    print(f"wall time {time.time() - started:.0f} s")


def export(exporter, model, path):
    """`model` to ONNX with PyTorch's TorchScript or dynamo exporter, dynamic batch."""
    x = torch.zeros(1, 1, 28, 28)
    if exporter == "torchscript":
        torch.onnx.export(
            model, x, path, dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    else:
        torch.onnx.export(model, (x,), path, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=True)


def round_trip(exporter, model, out, data, test_images, test_y):
    """Steps 2 to 4 for the file `exporter` writes, in `out`; prints the agreement figures."""
    out.mkdir()
    export(exporter, model, out / "model.onnx")
    theirs_ort = onnx_logits(out / "model.onnx", test_images)

    # 2. Into maxprune: one command; evaluated as ONNX Runtime evaluates the file.
    maxprune("import", out / "model.onnx", "--dataset", f"idx:{data / 'train'}", "--out", out / "imported")
    maxprune("eval", out / "imported", "--predictions", out / "imported.csv", "--logits")
    with open(out / "imported.csv") as f:
        rows = list(csv.DictReader(f))
    ours_logits = np.array([[float(r[f"logit_{c}"]) for c in range(10)] for r in rows])
    imported_pred = ours_logits.argmax(1)

    # 3. Prune whole units with their own validation set, then export both ways.
    maxprune(
        "prune", "neurons", out / "imported", "--out", out / "pruned", "--criterion", "contribution",
        "--policy", "units", "--fraction", "0.5", "--steps", "1", "--retrain-epochs", "1",
        "--val-dataset", f"idx:{data / 'val'}",
    )
    report = json.loads((out / "pruned" / "report.json").read_text())
    step = report["final_step"]
    pruned = out / "pruned" / f"step-{step:02}"
    maxprune("eval", pruned, "--predictions", out / "pruned.csv")
    maxprune("export", pruned, "--format", "onnx", "--out", out / "pruned.onnx")
    maxprune("export", pruned, "--format", "dense", "--out", out / "pruned.safetensors")
    pruned_pred = predictions_csv(out / "pruned.csv")

    # 4. Back: ONNX Runtime, and PyTorch from spec.json + the dense weights.
    back_ort = onnx_logits(out / "pruned.onnx", test_images).argmax(1)
    module = FromSpec(json.loads((pruned / "spec.json").read_text()))
    module.named.load_state_dict({k: v for k, v in load_file(out / "pruned.safetensors").items()})
    module.eval()
    with torch.no_grad():
        back_torch = module(torch.from_numpy(test_images)).argmax(1).numpy()

    n = len(test_y)
    rows = report["rows"]
    print(f"{exporter} exporter:")
    print(
        f"  imported: maxprune's test predictions equal ONNX Runtime's on the same file for "
        f"{(imported_pred == theirs_ort.argmax(1)).sum()} of {n} images; max |logit difference| "
        f"{np.abs(ours_logits - theirs_ort).max():.2e}; accuracy {100 * (imported_pred == test_y).mean():.2f}%"
    )
    print(
        f"  pruned (half the units of every unit layer, 1 retraining epoch, validation on their own 5,000): "
        f"{rows[0]['params']:,} -> {rows[step]['params']:,} parameters, test accuracy "
        f"{100 * (pruned_pred == test_y).mean():.2f}%"
    )
    print(
        f"  back out: ONNX Runtime agrees with maxprune eval on {(back_ort == pruned_pred).sum()} of {n}, "
        f"PyTorch (FromSpec + model.safetensors) on {(back_torch == pruned_pred).sum()} of {n}"
    )


if __name__ == "__main__":
    main()
