#!/usr/bin/env python3
"""Regenerates the README's speed table: maxprune (flex) against PyTorch on this machine's CPU.

For 1 and 2 threads, runs `maxprune bench --preset lenet5-maxout --json` and
`bench/torch_reference.py --json` (the same network and measurements) alternately, `--rounds`
times each, and reports the median of each figure; then the same for training alone at batch 8
and 1 (`--train-batch`). Writes the table between the README's
`results:speed` markers. PyTorch comes from `$TORCH_PYTHON` (default `python3`), e.g. a venv
made with `python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy`.

    cargo build --release && TORCH_PYTHON=/tmp/torch/bin/python3 python3 scripts/speed_results.py
"""
import argparse
import json
import os
import re
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("MAXPRUNE_BIN", ROOT / "target" / "release" / "maxprune"))
PYTHON = os.environ.get("TORCH_PYTHON", "python3")
KEYS = ["train_img_per_s", "infer_img_per_s", "latency_ms_b1", "relevance_img_per_s"]
SMALL_BATCHES = [8, 1]


def measure(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    rounds = ap.parse_args().rounds
    rows = []
    small = {}  # (threads, batch) -> (ours, theirs): training at small batches
    for threads in [1, 2]:
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(measure([str(BIN), "--threads", str(threads), "bench", "--preset", "lenet5-maxout", "--json"]))
            theirs.append(measure([PYTHON, str(ROOT / "bench" / "torch_reference.py"), "--threads", str(threads), "--json"]))
        med = lambda runs, k: statistics.median(r[k] for r in runs)
        rows.append((threads, {k: med(ours, k) for k in KEYS}, {k: med(theirs, k) for k in KEYS}, theirs[0]["backend"]))
        for batch in SMALL_BATCHES:
            o, t = [], []
            for _ in range(rounds):
                o.append(measure([str(BIN), "--threads", str(threads), "bench", "--preset", "lenet5-maxout", "--train-batch", str(batch), "--json"]))
                t.append(measure([PYTHON, str(ROOT / "bench" / "torch_reference.py"), "--threads", str(threads), "--train-batch", str(batch), "--json"]))
            small[threads, batch] = (med(o, "train_img_per_s"), med(t, "train_img_per_s"))
    md = [
        f"`lenet5-maxout`, {cpu_name()}, median of {rounds} alternating runs of each command per thread count "
        f"(maxprune: flex backend; {rows[0][3]}, CPU). Ratio = maxprune / PyTorch (for latency, PyTorch / maxprune): "
        "above 1.0x maxprune is faster.",
        "",
        "| threads | figure | maxprune | PyTorch | ratio |",
        "|---:|---|---:|---:|---:|",
    ]
    names = {
        "train_img_per_s": "training, img/s (batch 64)",
        "infer_img_per_s": "inference, img/s (batch 256)",
        "latency_ms_b1": "latency, ms (batch 1)",
        "relevance_img_per_s": "relevance pass, img/s",
    }
    for threads, a, b, _ in rows:
        for k in KEYS:
            ratio = b[k] / a[k] if k == "latency_ms_b1" else a[k] / b[k]
            fmt = "{:.3f}" if k == "latency_ms_b1" else "{:,.0f}"
            md.append(f"| {threads} | {names[k]} | {fmt.format(a[k])} | {fmt.format(b[k])} | {ratio:.2f}x |")
        for batch in SMALL_BATCHES:
            o, t = small[threads, batch]
            md.append(f"| {threads} | training, img/s (batch {batch}) | {o:,.0f} | {t:,.0f} | {o / t:.2f}x |")
    train = [(threads, 64, a["train_img_per_s"] / b["train_img_per_s"]) for threads, a, b, _ in rows]
    train += [(threads, batch, o / t) for (threads, batch), (o, t) in small.items()]
    at_par = [f"batch {batch} on {threads} thread(s) ({r:.2f}x)" for threads, batch, r in train if r >= 1.0]
    md += [
        "",
        "Training at or above PyTorch's throughput in this run: " + (", ".join(at_par) if at_par else "none") + ". "
        "At the default batch of 64: " + ", ".join(f"{r:.2f}x on {threads} thread(s)" for threads, batch, r in train if batch == 64) + ".",
    ]
    block = "\n".join(md)
    readme = ROOT / "README.md"
    text = readme.read_text()
    pattern = r"(<!-- results:speed -->\n).*?(<!-- /results:speed -->)"
    readme.write_text(re.sub(pattern, lambda m: m.group(1) + block + "\n" + m.group(2), text, flags=re.S))
    print(block)


if __name__ == "__main__":
    main()
