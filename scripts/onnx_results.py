#!/usr/bin/env python3
"""Checks maxprune's ONNX export with ONNX Runtime and writes the README's `results:onnx` block.

Makes each kind of network on the embedded Fashion-MNIST subset (2 training epochs, seed 1):
unpruned `lenet5-maxout`, per-unit pruned (k=4 -> 3, arg-max relevance), ragged (`--policy
global --fraction 0.4`), whole units removed (`contribution`, `--policy units --fraction 0.5`)
weight-pruned (one `prune weights` step, exported dense with its zeros), and a network with
batch norm and global average pooling (as it is, folded, and with units removed); exports each with
`maxprune export --format onnx`, runs it in ONNX Runtime on the 500 embedded test images, and
compares accuracy and mean cross-entropy with `maxprune eval --json` on the same images.

    python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install onnxruntime numpy
    /tmp/ortenv/bin/python scripts/onnx_results.py [--reproduced DIR] [RUN ...]

`--reproduced DIR` adds the networks of the README's LeNet-5 table: every stage's final network
of seed 1 of a `maxprune reproduce lenet5` output directory (full Fashion-MNIST), checked on the
same 500 images. Run directories given as arguments are checked too; the README block is
written only when none are given.
"""
import argparse
import gzip
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from common import BIN, ROOT, run, write_block

FIXTURES = ROOT / "fixtures" / "fashion-mini"


def idx(name):
    """The embedded test split: images [n, 1, 28, 28] in [0, 1], labels [n]."""
    data = gzip.decompress((FIXTURES / name).read_bytes())
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def maxprune_eval(run_dir):
    out = subprocess.run(
        [str(BIN), "eval", str(run_dir), "--dataset", "embedded", "--json"], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def onnx_eval(model, images, labels):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": images})[0].astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    return float((logits.argmax(axis=1) == labels).mean()), float(loss)


BN_SPEC = {
    "format_version": 1,
    "name": "bn",
    "input": {"channels": 1, "height": 28, "width": 28},
    "layers": [
        {"kind": "conv2d", "name": "c1", "filters": 16, "kernel": 3, "stride": 1, "padding": 1},
        {"kind": "batch-norm", "name": "bn1"},
        {"kind": "relu"},
        {"kind": "maxout", "pieces": {"units": 8, "k": 2}},
        {"kind": "max-pool", "kernel": 2, "stride": 2},
        {"kind": "conv2d", "name": "c2", "filters": 16, "kernel": 3, "stride": 1, "padding": 1},
        {"kind": "batch-norm", "name": "bn2"},
        {"kind": "relu"},
        {"kind": "global-avg-pool"},
        {"kind": "dense", "name": "fc", "outputs": 10},
    ],
}


def networks(tmp):
    """Makes the run directories; returns [(what, run directory)]."""
    t = Path(tmp)
    run("train", "--preset", "lenet5-maxout", "--dataset", "embedded", "--epochs", "2", "--seed", "1", "--out", str(t / "base"))
    made = [("unpruned lenet5-maxout", t / "base")]
    for what, name, crit, policy in [
        ("per-unit pruned (k=4 -> 3)", "per-unit", "argmax", []),
        ("ragged (global 0.4)", "ragged", "argmax", ["--policy", "global", "--fraction", "0.4"]),
        ("whole units removed (units 0.5)", "units", "contribution", ["--policy", "units", "--fraction", "0.5"]),
    ]:
        rel, plan = t / f"{name}-rel.json", t / f"{name}-plan.json"
        run("relevance", str(t / "base"), "--criterion", crit, "--out", str(rel))
        run("prune", "plan", str(t / "base"), "--relevance", str(rel), *policy, "--out", str(plan))
        run("prune", "apply", str(t / "base"), "--plan", str(plan), "--out", str(t / name))
        made.append((what, t / name))
    run("prune", "weights", str(t / "base"), "--out", str(t / "weights"), "--val", "0", "--retrain-epochs", "1", "--steps", "1")
    made.append(("weight-pruned (one step, dense zeros)", t / "weights" / "step-01"))
    # Batch norm before a conv maxout layer and after a plain conv, global average pooling.
    (t / "bn.json").write_text(json.dumps(BN_SPEC))
    run("train", "--spec", str(t / "bn.json"), "--dataset", "embedded", "--epochs", "2", "--seed", "1", "--out", str(t / "bn"))
    made.append(("batch norm + global-avg-pool (conv maxout)", t / "bn"))
    made.append(("the same, batch norm folded (`--fold-bn`)", (t / "bn", "--fold-bn")))
    run("prune", "neurons", str(t / "bn"), "--out", str(t / "bn-units"), "--criterion", "contribution", "--policy", "units",
        "--fraction", "0.25", "--layers", "c1,c2", "--steps", "1", "--retrain-epochs", "1", "--val", "0")
    made.append(("the same, units removed through batch norm", t / "bn-units" / "step-01"))
    return made


def reproduced(out):
    """Seed 1's final network of every stage of a `reproduce lenet5` directory: [(what, run)]."""
    seed = Path(out) / "seed-1"
    made = []
    for stage in sorted(p for p in seed.iterdir() if p.is_dir()):
        report = stage / "report.json"
        if not report.exists():
            made.append((f"reproduce seed 1: {stage.name} (trained)", stage))
            continue
        final = json.loads(report.read_text())["final_step"]
        if final > 0:
            made.append((f"reproduce seed 1: {stage.name} (step {final})", stage / f"step-{final:02}"))
    return made


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reproduced", help="a `maxprune reproduce lenet5` output directory (full data)")
    ap.add_argument("runs", nargs="*", help="run directories to check (the README block is then not written)")
    args = ap.parse_args()
    images = (idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0)[:, None, :, :]
    labels = idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        given = [(arg, Path(arg)) for arg in args.runs]
        full = reproduced(args.reproduced) if args.reproduced else []
        for what, source in (given or networks(tmp)) + full:
            # A network is a run directory, or (run directory, extra export flag).
            run_dir, *flags = source if isinstance(source, tuple) else (source,)
            model = Path(tmp) / f"{len(rows)}.onnx"
            run("export", str(run_dir), "--format", "onnx", *flags, "--out", str(model))
            ours = maxprune_eval(run_dir)
            acc, loss = onnx_eval(model, images, labels)
            agree = ours["accuracy"] == acc and abs(ours["loss"] - loss) < 1e-4
            rows.append(
                f"| {what} | {100 * ours['accuracy']:.2f}% | {100 * acc:.2f}% | {ours['loss']:.6f} | {loss:.6f} | "
                f"{'yes' if agree else 'NO'} |"
            )
            if not agree:
                print(f"DISAGREES: {what}")
    block = "\n".join(
        [
            "`/tmp/ortenv/bin/python scripts/onnx_results.py"
            + (f" --reproduced {args.reproduced}" if full else "")
            + f"` (ONNX Runtime {ort.__version__}, CPU; {len(labels)} embedded test images; the first rows' "
            "networks trained 2 epochs on the embedded subset, seed 1"
            + ("; the `reproduce seed 1` rows are the final networks of every stage of the README's LeNet-5 "
               "table, trained and pruned on full Fashion-MNIST by `maxprune reproduce lenet5 --seeds 1`" if full else "")
            + "):",
            "",
            "| network | maxprune accuracy | ONNX Runtime accuracy | maxprune loss | ONNX Runtime loss | agree |",
            "|---|---:|---:|---:|---:|---|",
            *rows,
        ]
    )
    if given:
        print(block)
    else:
        write_block("onnx", block)


if __name__ == "__main__":
    main()
