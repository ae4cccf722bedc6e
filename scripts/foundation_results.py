#!/usr/bin/env python3
"""Regenerates the README's "Baseline results" table.

Trains (or resumes, when already finished: then nothing is retrained) plain LeNet-5 and
lenet5-maxout for 10 epochs on full Fashion-MNIST with the default recipe, seed 1, evaluates
them on the test split, measures training throughput with `maxprune bench`, and writes the
table between the README's `results:foundation` markers.

    cargo build --release && python3 scripts/foundation_results.py [--runs runs]
"""
import argparse
import json
import subprocess
from pathlib import Path

from common import BIN, ROOT, cpu_name, write_block


def run(*args):
    out = subprocess.run([str(BIN), *args], check=True, capture_output=True, text=True)
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    ap.add_argument("--dataset", default="fashion-mnist")
    a = ap.parse_args()
    rows = []
    for preset in ("lenet5", "lenet5-maxout"):
        out = Path(a.runs) / f"{a.dataset}-{preset}-seed1"
        if (out / "spec.json").exists():
            run("-q", "train", "--resume", "--out", str(out))
        else:
            run("-q", "train", "--preset", preset, "--dataset", a.dataset, "--epochs", "10", "--seed", "1", "--out", str(out))
        ev = json.loads(run("eval", str(out), "--json"))
        params = json.loads(run("inspect", str(out), "--json"))["params"]
        bench = json.loads(run("bench", "--preset", preset, "--json"))
        summary = json.loads((out / "summary.json").read_text())
        rows.append((preset, params, ev["accuracy"], bench, summary["last"]["train_img_per_s"]))
    threads = rows[0][3]["threads"]
    lines = [
        f"Full {a.dataset} (60,000 train / 10,000 test), 10 epochs, default recipe, seed 1, one run each; "
        f"{cpu_name()}, {threads} threads, flex backend.",
        "",
        "| network | parameters | test accuracy | train img/s (bench) | inference img/s, batch 256 (bench) | latency batch 1 (bench) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for preset, params, acc, b, _ in rows:
        lines.append(
            f"| `{preset}` | {params:,} | {100 * acc:.2f}% | {b['train_img_per_s']:,.0f} | {b['infer_img_per_s']:,.0f} | {b['latency_ms_b1']:.3f} ms |"
        )
    write_block("foundation", "\n".join(lines))

if __name__ == "__main__":
    main()
