#!/usr/bin/env python3
"""Regenerates the README's speed table: maxprune (flex) against PyTorch on this machine's CPU.

For 1 and 2 threads and each network (`lenet5-maxout`, `vgg16-maxout` scaled to width 0.25,
32x32 inputs and 10 classes, and `cifar-maxout`: batch norm and global average pooling), runs `maxprune bench --json` with maxprune's own kernels, the same
with `--kernels burn` (burn's convolution and pooling, the state before), and
`bench/torch_reference.py --json` (the same network and measurements) alternately, `--rounds`
times each, and reports the median of each figure; then training alone at batch 8 and 1 for
`lenet5-maxout` (`--train-batch`); then the batch-norm and average-pooling blocks (`--spec`
files written here: training at batch 64 and inference at batch 256). Writes the table between the README's `results:speed`
markers, with the ratios against PyTorch drawn as a bar chart (`maxprune chart bars`,
`docs/charts/speed-ratios.svg`). PyTorch comes from `$TORCH_PYTHON` (default `python3`), e.g. a venv made with
`python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy`.

    cargo build --release && TORCH_PYTHON=/tmp/torch/bin/python3 python3 scripts/speed_results.py [--only PRESET]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

from common import BIN, ROOT, cpu_name, write_block

PYTHON = os.environ.get("TORCH_PYTHON", "python3")
KEYS = ["train_img_per_s", "infer_img_per_s", "latency_ms_b1", "relevance_img_per_s"]
SMALL_BATCHES = [8, 1]
VGG_SCALE = ["--width", "0.25", "--input-size", "32", "--classes", "10"]
NETWORKS = [
    ("lenet5-maxout", "`lenet5-maxout`", []),
    ("vgg16-maxout", "`vgg16-maxout` at width 0.25, 32x32, 10 classes", VGG_SCALE),
    ("cifar-maxout", "`cifar-maxout` (conv-batch-norm-relu-maxout blocks, global average pooling)", []),
]
# The kernels of batch norm and average pooling, each inside the smallest network that trains
# through it (cifar-maxout's second block: 48 channels of 16x16 in, 192 filters of 3x3): the
# plain conv-relu block is the baseline, so the rows below it show what each kernel adds.
def block(name, *middle):
    conv = {"kind": "conv2d", "name": "conv", "filters": 192, "kernel": 3, "padding": 1}
    return {
        "format_version": 1, "name": name, "init": "he",
        "input": {"channels": 48, "height": 16, "width": 16},
        "layers": [conv, *middle, {"kind": "global-avg-pool"}, {"kind": "dense", "name": "fc", "outputs": 10}],
    }


BN = {"kind": "batch-norm", "name": "bn"}
RELU = {"kind": "relu"}
BLOCKS = [
    ("conv 3x3 -> relu -> global avg pool", block("conv-relu", RELU)),
    ("conv 3x3 -> batch norm -> relu -> global avg pool", block("conv-bn-relu", BN, RELU)),
    ("conv 3x3 -> batch norm -> relu -> avg pool 3/2/1 -> global avg pool",
     block("conv-bn-relu-avg", BN, RELU, {"kind": "avg-pool", "kernel": 3, "stride": 2, "padding": 1})),
]
BLOCK_KEYS = ["train_img_per_s", "infer_img_per_s"]
NAMES = {
    "train_img_per_s": "training, img/s (batch 64)",
    "infer_img_per_s": "inference, img/s (batch 256)",
    "latency_ms_b1": "latency, ms (batch 1)",
    "relevance_img_per_s": "relevance pass, img/s",
}


def measure(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def spec_file(preset, scale, tmp):
    """The spec maxprune benches, as a file bench/torch_reference.py reads (`--spec`)."""
    spec = measure([str(BIN), "inspect", "--preset", preset, *scale, "--json"])["spec"]
    path = os.path.join(tmp, f"{preset}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def alternate(rounds, commands):
    """Runs each command once per round, in turn; per command, the median of each key."""
    runs = [[] for _ in commands]
    for _ in range(rounds):
        for i, cmd in enumerate(commands):
            runs[i].append(measure(cmd))
    numeric = lambda r: [k for k, v in r[0].items() if isinstance(v, (int, float))]
    return [{**r[0], **{k: statistics.median(x[k] for x in r) for k in numeric(r)}} for r in runs]


def ratio(key, ours, theirs):
    return theirs[key] / ours[key] if key == "latency_ms_b1" else ours[key] / theirs[key]


def fmt(key, value):
    return f"{value:.3f}" if key == "latency_ms_b1" else f"{value:,.0f}"


def blocks(rounds, tmp):
    """The table of the batch-norm and pooling blocks (BLOCKS), at 1 and 2 threads, and the
    PyTorch version that measured it."""
    md = [
        "Batch norm and average pooling, each in a block of `cifar-maxout`'s second stage (48x16x16 in, "
        "conv 192@3x3 padding 1, global average pooling, a dense classifier of 10); the plain conv-relu "
        "block is the baseline:",
        "",
        "| threads | block | figure | maxprune | maxprune, burn's kernels | PyTorch | own / burn's | maxprune / PyTorch |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for threads in [1, 2]:
        for title, spec in BLOCKS:
            path = os.path.join(tmp, f"{spec['name']}.json")
            with open(path, "w") as f:
                json.dump(spec, f)
            ours = [str(BIN), "--threads", str(threads), "bench", "--spec", path, "--json"]
            burn = [str(BIN), "--threads", str(threads), "--kernels", "burn", "bench", "--spec", path, "--json"]
            torch = [PYTHON, str(ROOT / "bench" / "torch_reference.py"), "--spec", path, "--threads", str(threads), "--json"]
            o, b, t = alternate(rounds, [ours, burn, torch])
            backend = t["backend"]
            for k in BLOCK_KEYS:
                md.append(f"| {threads} | {title} | {NAMES[k]} | {fmt(k, o[k])} | {fmt(k, b[k])} | {fmt(k, t[k])} | "
                          f"{ratio(k, o, b):.2f}x | {ratio(k, o, t):.2f}x |")
    return md + [""], backend


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="measure one preset, or `blocks`, and print its table (the README block is not written)")
    args = ap.parse_args()
    rounds = args.rounds
    networks = [n for n in NETWORKS if args.only in (None, n[0])]
    backend = None
    md = []
    at_par = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset, title, scale in networks:
            spec = spec_file(preset, scale, tmp)
            rows = []
            for threads in [1, 2]:
                ours = [str(BIN), "--threads", str(threads), "bench", "--preset", preset, *scale, "--json"]
                burn = [str(BIN), "--threads", str(threads), "--kernels", "burn", "bench", "--preset", preset, *scale, "--json"]
                torch = [PYTHON, str(ROOT / "bench" / "torch_reference.py"), "--spec", spec, "--threads", str(threads), "--json"]
                o, b, t = alternate(rounds, [ours, burn, torch])
                backend = t["backend"]
                for k in KEYS:
                    rows.append((threads, NAMES[k], fmt(k, o[k]), fmt(k, b[k]), fmt(k, t[k]), ratio(k, o, b), ratio(k, o, t)))
                    if k != "latency_ms_b1":
                        at_par[preset, threads, k] = ratio(k, o, t)
                if preset != "lenet5-maxout":
                    continue
                for batch in SMALL_BATCHES:
                    small = ["--train-batch", str(batch)]
                    o, t = alternate(rounds, [ours + small, torch + small])
                    k = "train_img_per_s"
                    rows.append((threads, f"training, img/s (batch {batch})", fmt(k, o[k]), "", fmt(k, t[k]), None, ratio(k, o, t)))
            md += [
                f"{title}:",
                "",
                "| threads | figure | maxprune | maxprune, burn's kernels | PyTorch | own / burn's | maxprune / PyTorch |",
                "|---:|---|---:|---:|---:|---:|---:|",
            ]
            for threads, name, o, b, t, r_burn, r_torch in rows:
                burn_ratio = f"{r_burn:.2f}x" if r_burn is not None else ""
                md.append(f"| {threads} | {name} | {o} | {b} | {t} | {burn_ratio} | {r_torch:.2f}x |")
            md.append("")
        if args.only in (None, "blocks"):
            table, backend = blocks(rounds, tmp)
            md += table
    header = [
        f"{cpu_name()}, median of {rounds} alternating runs of each command per thread count "
        f"(maxprune: flex backend, its own convolution, pooling and batch norm, and the same with `--kernels burn`; "
        f"{backend}, CPU). Ratios above 1.0x mean the first is faster (for latency, the inverse ratio).",
        "",
    ]
    if args.only:
        print("\n".join(header + md))
        return
    lenet = [f"{NAMES[k].split(',')[0]} {r:.2f}x on {th} thread(s)" for (p, th, k), r in at_par.items() if p == "lenet5-maxout"]
    below = [f"{p} {NAMES[k].split(',')[0]} on {th} thread(s) ({r:.2f}x)" for (p, th, k), r in at_par.items() if r < 1.0]
    footer = [
        "`lenet5-maxout` against PyTorch: " + ", ".join(lenet) + ". "
        + ("Below PyTorch in this run: " + ", ".join(below) + "." if below else "At or above PyTorch on every row of both networks in this run.")
    ]
    chart = {
        "title": "maxprune / PyTorch on this CPU (above 1.0: maxprune faster)",
        "value_label": "throughput ratio (x)",
        "bars": [[f"{p}, {NAMES[k].split(',')[0]}, {th} thread(s)", r] for (p, th, k), r in at_par.items()],
        "reference": ["parity (1.0x)", 1.0],
    }
    (ROOT / "docs" / "charts").mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(chart, f)
        f.flush()
        subprocess.run([str(BIN), "chart", "bars", f.name, "--out", str(ROOT / "docs" / "charts" / "speed-ratios.svg")], check=True, stdout=subprocess.DEVNULL)
    picture = ["", "![maxprune / PyTorch throughput ratios](docs/charts/speed-ratios.svg)"]
    write_block("speed", "\n".join(header + md + footer + picture))


if __name__ == "__main__":
    main()
