#!/usr/bin/env python3
"""Regenerates the README's PyTorch cross-check of the paper's schedule (`results:crosscheck`).

Runs bench/torch_prune_reference.py (an independent PyTorch port of the per-unit schedule
k=4 -> 1, 5 retraining epochs per step, same validation split) twice over:
- from the network maxprune trained (seed 1's `runs/fashion-mnist-lenet5-maxout-seed1-val5000`,
  made by scripts/neuron_results.py), which isolates pruning and retraining;
- trained from scratch in PyTorch, seeds 1, 2 and 3;
- with a ReLU after each conv layer (`--conv-relu`), trained in PyTorch, seed 1;
and puts the results beside maxprune's own schedules (`runs/prune-argmax*` and
`runs/prune-conv-relu`, made by scripts/neuron_results.py, scripts/units_results.py and
scripts/conv_relu_results.py). Every PyTorch run is one thread, two at a
time, and is skipped when its JSON under runs/ exists. PyTorch comes from `$TORCH_PYTHON`
(default `python3`; it needs torch, numpy and safetensors).

    python3 scripts/neuron_results.py && python3 scripts/units_results.py   # maxprune's runs
    python3 scripts/conv_relu_results.py
    TORCH_PYTHON=/tmp/torchenv/bin/python python3 scripts/torch_crosscheck_results.py
"""
import json
import os
import subprocess

from neuron_results import BASE, ROOT, RUNS, seed_suffix, write_block

PYTHON = os.environ.get("TORCH_PYTHON", "python3")
SEEDS = (1, 2, 3)


def data_dir():
    """The Fashion-MNIST directory maxprune would use (`$MAXPRUNE_DATA` or ./data)."""
    return os.path.join(os.environ.get("MAXPRUNE_DATA", str(ROOT / "data")), "fashion-mnist")


def torch_runs():
    """Runs the missing PyTorch schedules, two at a time; returns {name: steps}."""
    jobs = {f"seed{s}": ["--seed", str(s)] for s in SEEDS}
    jobs["from-maxprune-seed1"] = ["--seed", "1", "--start", str(BASE / "model.safetensors")]
    jobs["conv-relu-seed1"] = ["--seed", "1", "--conv-relu"]
    script = ROOT / "bench" / "torch_prune_reference.py"
    todo = [n for n in jobs if not (RUNS / f"torch-prune-{n}.json").exists()]
    for i in range(0, len(todo), 2):
        procs = [
            subprocess.Popen(
                [PYTHON, str(script), "--data", data_dir(), "--threads", "1", "--out", str(RUNS / f"torch-prune-{n}.json"), *jobs[n]],
                stdout=subprocess.DEVNULL,
            )
            for n in todo[i : i + 2]
        ]
        for p in procs:
            if p.wait() != 0:
                raise SystemExit(f"{script} failed: {p.args}")
    return {n: json.loads((RUNS / f"torch-prune-{n}.json").read_text())["steps"] for n in jobs}


def maxprune_rows(name):
    """maxprune's schedule in runs/prune-NAME as the PyTorch script's rows (accuracies in %)."""
    report = json.loads((RUNS / f"prune-{name}" / "report.json").read_text())
    return [
        {"k": int(r["pieces"][0]), "params": r["params"]}
        | {f"{s}_{w}": 100 * r[f"{s}_{w}"] for s in ("val", "test") for w in ("before", "after")}
        for r in report["rows"]
    ]


def main():
    torch = torch_runs()
    md = [
        "Test accuracy in %, before → after 5 retraining epochs, per step of the per-unit schedule (argmax relevance, "
        "one piece per unit per step). Last column: the k=1 network after retraining against the unpruned one, "
        "in points (validation / test); the issue's tolerance is 0.3.",
        "",
        "| implementation | start | seed | k=4 | k=3 | k=2 | k=1 | k=1 vs k=4, val / test |",
        "|---|---|---:|---|---|---|---|---:|",
    ]

    def line(impl, start, seed, rows):
        cells = [f"{rows[0]['test_after']:.2f}"] + [f"{r['test_before']:.2f} → {r['test_after']:.2f}" for r in rows[1:]]
        cells += ["(stopped)"] * (4 - len(cells))
        last, first = rows[-1], rows[0]
        delta = f"{last['val_after'] - first['val_after']:+.2f} / {last['test_after'] - first['test_after']:+.2f}" if last["k"] == 1 else "–"
        md.append(f"| {impl} | {start} | {seed} | {' | '.join(cells)} | {delta} |")

    for seed in SEEDS:
        line("maxprune", "trained by maxprune", seed, maxprune_rows(f"argmax{seed_suffix(seed)}"))
    line("PyTorch port", "maxprune's network", 1, torch["from-maxprune-seed1"])
    for seed in SEEDS:
        line("PyTorch port", "trained in PyTorch", seed, torch[f"seed{seed}"])
    line("maxprune", "with conv ReLUs, trained by maxprune", 1, maxprune_rows("conv-relu"))
    line("PyTorch port", "with conv ReLUs, trained in PyTorch", 1, torch["conv-relu-seed1"])
    md.append("")
    md.append("The issue's orientation run (PyTorch, seed 1; code not seen): 90.41 | 90.29 → 90.94 | 90.27 → 91.16 | 90.19 → 91.12.")
    write_block("crosscheck", "\n".join(md))


if __name__ == "__main__":
    main()
