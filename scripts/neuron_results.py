#!/usr/bin/env python3
"""Regenerates the README's "Neuron pruning" section.

Starting from lenet5-maxout trained 10 epochs on Fashion-MNIST's training split less the 5,000
validation examples (seed 1; trained here unless `runs/fashion-mnist-lenet5-maxout-seed1-val5000`
is complete: the stopping rule needs validation examples the network never saw), runs the paper's per-unit schedule
k=4 -> 1 with 5 retraining epochs per step and a 0.3-point validation tolerance (5,000
validation examples carved off train) for the `argmax`, `random` and `weight-norm` criteria,
plus a control run that retrains the same number of rounds without pruning. Each schedule
resumes if its directory exists. Writes the tables between the `results:neurons` markers.

    cargo build --release && python3 scripts/neuron_results.py
"""
import json
import os

from common import ROOT, cpu_name, run, write_block

RUNS = ROOT / "runs"
BASE = RUNS / "fashion-mnist-lenet5-maxout-seed1-val5000"


def schedule(name, *extra, source=BASE):
    """Runs (or resumes) `prune neurons` from `source` into runs/prune-NAME; returns its report."""
    out = RUNS / f"prune-{name}"
    args = ["prune", "neurons", str(source), "--out", str(out), "--retrain-epochs", "5", "--tolerance", "0.3", "--val", "5000", *extra]
    if (out / "schedule.json").exists():
        args.append("--resume")
    run(*args)
    return json.loads((out / "report.json").read_text())


def seed_suffix(seed):
    """The run-name suffix of `seed`'s runs: seed 1's runs (the README's main ones) have none."""
    return "" if seed == 1 else f"-seed{seed}"


def train_base(seed=1, arch=("--preset", "lenet5-maxout"), name="fashion-mnist-lenet5-maxout"):
    """Trains (or finishes) the starting network of `seed` (10 epochs, 5,000 validation examples)
    in runs/NAME-seedSEED-val5000; returns that run directory."""
    base = RUNS / f"{name}-seed{seed}-val5000"
    if (base / "spec.json").exists():
        run("train", "--resume", "--out", str(base))
    else:
        run("train", *arch, "--dataset", "fashion-mnist", "--epochs", "10", "--seed", str(seed), "--val", "5000", "--out", str(base))
    return base


def main():
    train_base()
    reports = {
        "argmax": schedule("argmax", "--until-k", "1"),
        "random": schedule("random", "--until-k", "1", "--criterion", "random"),
        "weight-norm": schedule("weight-norm", "--until-k", "1", "--criterion", "weight-norm"),
    }
    steps = len(reports["argmax"]["rows"]) - 1
    reports["control (no pruning)"] = schedule("control", "--control", "--steps", str(steps))

    md = [(RUNS / "prune-argmax" / "report.md").read_text().split("\n", 2)[2].strip(), ""]
    md.append("Criteria side by side (test accuracy in %, before → after retraining; every row has the same "
              "parameter count at the same step, except the control, which keeps all 427,330):")
    md.append("")
    names = list(reports)
    md.append("| step | params | " + " | ".join(names) + " |")
    md.append("|---:|---:|" + "---|" * len(names))
    for i in range(steps + 1):
        cells = []
        for n in names:
            rows = reports[n]["rows"]
            if i < len(rows):
                r = rows[i]
                cells.append(f"{100 * r['test_before']:.2f} → {100 * r['test_after']:.2f}" + ("" if r["accepted"] else " (over tolerance)"))
            else:
                cells.append("stopped")
        md.append(f"| {i} | {reports['argmax']['rows'][i]['params']:,} | " + " | ".join(cells) + " |")
    shares = []
    for i in range(1, steps + 1):
        rel = json.loads((RUNS / "prune-argmax" / f"step-{i:02}" / "relevance.json").read_text())
        units = rel["layers"][0]["scores"]
        shares.append(f"{100 * sum(min(u) for u in units) / len(units):.0f}% at k={len(units[0])}")
    md.append("")
    md.append("Share of its unit's wins that the least relevant piece had when it was removed (argmax, mean over "
              "units, from each step's `relevance.json`): " + ", ".join(shares) + ".")
    wall = sum(r["seconds"] for rep in reports.values() for r in rep["rows"])
    md.append("")
    threads = os.environ.get("RAYON_NUM_THREADS")
    threads = f"{threads} thread(s)" if threads else "all cores"
    md.append(f"Recorded time of the four schedules: {wall / 60:.0f} min ({cpu_name()}, {threads}; other runs may have "
              "shared the machine).")
    write_block("neurons", "\n".join(md))


if __name__ == "__main__":
    main()
