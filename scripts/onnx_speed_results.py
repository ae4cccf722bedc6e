#!/usr/bin/env python3
"""Speed where a network is deployed: ONNX Runtime beside maxprune, on the same networks.

Each run directory (a schedule directory stands for its last accepted step) is exported with
`maxprune export --format onnx` and timed in ONNX Runtime on one thread (intra- and inter-op
threads 1, sequential execution) at batch 1 and 256: per round every network runs
`ceil(1024 / batch)` forward passes of one random input, first to last in even rounds and last
to first in odd ones (maxprune's alternating rounds), after one warm-up pass each; a network's
speedup is the median over rounds of the reference's seconds over its own. Beside it, `maxprune
--threads 1 bench RUN --against REFERENCE --json` gives maxprune's own speedups (its own
alternating rounds) and its batch-1 latency and batch-256 throughput. The first run is the
reference (the unpruned network).

    cargo build --release
    /work/venv/bin/python scripts/onnx_speed_results.py [--rounds 7] [--no-readme] REFERENCE RUN [RUN ...]
    ORT_PYTHON=/path/to/python python3 scripts/onnx_speed_results.py ...   # re-runs itself there

The conv table's networks (scripts/conv_results.py) of one seed, for instance:

    /work/venv/bin/python scripts/onnx_speed_results.py runs/conv/seed-1/base \\
        runs/conv/seed-1/neurons-r5 runs/conv/seed-1/units-conv-r5-s6-recover10-vs-lenet5

Writes the README's `results:onnx-speed` block (`--no-readme`: prints it). Time it on a quiet
machine: a busy one makes the quartiles wide, and the block says so per cell ("noisy").
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import numpy as np
    import onnxruntime as ort
except ImportError:
    if os.environ.get("ORT_PYTHON") and Path(sys.executable) != Path(os.environ["ORT_PYTHON"]):
        os.execv(os.environ["ORT_PYTHON"], [os.environ["ORT_PYTHON"], *sys.argv])
    raise SystemExit("needs onnxruntime and numpy: run under a python that has them, or set ORT_PYTHON to one")

from common import BIN, cpu_name, run, write_block

BATCHES = (1, 256)
MAX_SPREAD = 0.2  # as maxprune's bench::MAX_SPREAD: wider quartiles are no measurement


def final_run(path):
    """A run directory, or a schedule directory's last accepted step (its start when none)."""
    report = path / "report.json"
    if not report.exists():
        return path
    final = json.loads(report.read_text())["final_step"]
    if final > 0:
        return path / f"step-{final:02}"
    return Path(json.loads((path / "schedule.json").read_text())["source"])


def summary(ratios):
    """(median, lower quartile, upper quartile) of per-round ratios, as bench::Speedup takes them."""
    r = sorted(ratios)
    n = len(r)
    return r[n // 2], r[(n - 1) // 4], r[math.ceil(3 * (n - 1) / 4)]


def cell(median, low, high, rounds):
    """`1.23x (1.20–1.26)`, or `noisy (…)` when the quartiles are too far apart, as bench prints it."""
    if rounds >= 3 and median > 0 and (high - low) / median <= MAX_SPREAD:
        return f"{median:.2f}x ({low:.2f}–{high:.2f})"
    return f"noisy ({low:.2f}–{high:.2f}x)"


def session(model):
    """An ONNX Runtime CPU session on one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def ort_rounds(models, batch, rounds):
    """Seconds per batch of every model, per round: [[seconds per model] per round]."""
    sessions = [session(m) for m in models]
    shape = [batch, *sessions[0].get_inputs()[0].shape[1:]]
    x = np.random.default_rng(11).random(shape, dtype=np.float32)
    passes = -(-1024 // batch)

    def timed(s):
        start = time.perf_counter()
        for _ in range(passes):
            s.run(["logits"], {"input": x})
        return (time.perf_counter() - start) / passes

    for s in sessions:
        s.run(["logits"], {"input": x})
    out = []
    for r in range(rounds):
        order = range(len(sessions)) if r % 2 == 0 else reversed(range(len(sessions)))
        seconds = [0.0] * len(sessions)
        for i in order:
            seconds[i] = timed(sessions[i])
        out.append(seconds)
    return out


def maxprune_bench(run_dir, reference, rounds):
    """`maxprune --threads 1 bench RUN [--against REFERENCE] --json`."""
    args = [str(BIN), "-q", "--threads", "1", "bench", str(run_dir), "--rounds", str(rounds), "--json"]
    if reference is not None:
        args += ["--against", str(reference)]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="the reference (unpruned) run first, then the others")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds per measurement")
    p.add_argument("--no-readme", action="store_true", help="print the block instead of writing it")
    a = p.parse_args()
    if len(a.runs) < 2:
        raise SystemExit("give the reference run and at least one other")
    runs = [final_run(r) for r in a.runs]
    with tempfile.TemporaryDirectory() as tmp:
        models = []
        for i, r in enumerate(runs):
            models.append(Path(tmp) / f"{i}.onnx")
            run("export", str(r), "--format", "onnx", "--out", str(models[i]))
        ort_speed = {}
        ort_ms = {}
        for b in BATCHES:
            per_round = ort_rounds(models, b, a.rounds)
            ort_ms[b] = [1e3 * statistics.median(s[i] for s in per_round) for i in range(len(models))]
            ort_speed[b] = [summary([s[0] / s[i] for s in per_round]) for i in range(len(models))]
    ours = [maxprune_bench(r, None if i == 0 else runs[0], a.rounds) for i, r in enumerate(runs)]

    md = [
        f"`{' '.join(['scripts/onnx_speed_results.py', *map(str, a.runs)])}` (ONNX Runtime {ort.__version__}, "
        f"one thread; maxprune `bench --threads 1`; {cpu_name()}). Speedups against the first network, median "
        f"of {a.rounds} alternating rounds (quartiles in brackets); times per batch are medians.", "",
        "| network | FLOPs | ORT b1 ms | ORT b256 ms | ORT speedup b1 | ORT speedup b256 "
        "| maxprune b1 ms | maxprune b256 ms | maxprune speedup b1 | maxprune speedup b256 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (given, b) in enumerate(zip(a.runs, ours)):
        if i == 0:
            ours_speed = ["1.00x (reference)"] * 2
        else:
            by_batch = {s["batch"]: s for s in b["against"]["speedups"]}
            ours_speed = [cell(by_batch[n]["median"], by_batch[n]["low"], by_batch[n]["high"], by_batch[n]["rounds"])
                          for n in BATCHES]
        ort_cells = ["1.00x (reference)"] * 2 if i == 0 else [cell(*ort_speed[n][i], a.rounds) for n in BATCHES]
        md.append(
            f"| `{given}` | {b['flops']:,} | {ort_ms[1][i]:.3f} | {ort_ms[256][i]:.2f} | {ort_cells[0]} | "
            f"{ort_cells[1]} | {b['latency_ms_b1']:.3f} | {1e3 * 256 / b['infer_img_per_s']:.2f} | "
            f"{ours_speed[0]} | {ours_speed[1]} |"
        )
    block = "\n".join(md)
    if a.no_readme:
        print(block)
    else:
        write_block("onnx-speed", block)


if __name__ == "__main__":
    main()
