#!/usr/bin/env python3
"""Regenerates the README's PyTorch cross-check of the paper's schedule (`results:crosscheck`).

The per-unit schedule k=4 -> 1 (argmax, 5 retraining epochs per step, 0.3-point tolerance on the
same 5,000 validation examples) run by maxprune and by bench/torch_prune_reference.py, an
independent PyTorch port with none of maxprune's code:
- maxprune, seeds 1, 2, 3 (seed 1 is scripts/neuron_results.py's `runs/prune-argmax`; seeds 2
  and 3 are trained and pruned here, resuming what exists);
- the PyTorch port from maxprune's seed-1 network (`--start`), which isolates pruning and
  retraining: its first cut, before any retraining, must agree with maxprune's;
- the PyTorch port trained from scratch, seeds 1, 2, 3;
- the old network without the relu on the pieces (experiments/lenet5-maxout-linear.json, the
  port's `--linear`), seed 1 in both implementations.
Every PyTorch run is one thread, `--jobs` at a time, and is skipped when its JSON under runs/
exists. PyTorch comes from `$TORCH_PYTHON` (default `python3`; it needs torch, numpy and
safetensors).

    python3 scripts/neuron_results.py      # seed 1's maxprune runs
    TORCH_PYTHON=/tmp/torchenv/bin/python python3 scripts/torch_crosscheck_results.py [--jobs 2]
"""
import argparse
import json
import os
import subprocess

from neuron_results import BASE, ROOT, RUNS, schedule, seed_suffix, train_base, write_block

PYTHON = os.environ.get("TORCH_PYTHON", "python3")
SEEDS = (1, 2, 3)
LINEAR = ROOT / "experiments" / "lenet5-maxout-linear.json"
TOLERANCE = 0.3  # neuron_results.schedule's --tolerance, in points


def data_dir():
    """The Fashion-MNIST directory maxprune would use (`$MAXPRUNE_DATA` or ./data)."""
    return os.path.join(os.environ.get("MAXPRUNE_DATA", str(ROOT / "data")), "fashion-mnist")


def torch_jobs():
    """The PyTorch schedules by name, in the order they run: the cross-check proper first."""
    jobs = {"from-maxprune-seed1": ["--seed", "1", "--start", str(BASE / "model.safetensors")]}
    jobs |= {f"seed{s}": ["--seed", str(s)] for s in SEEDS}
    jobs["linear-seed1"] = ["--seed", "1", "--linear"]
    return jobs


def start_torch(name, args):
    """Starts one PyTorch schedule writing runs/torch-prune-NAME.json."""
    script = ROOT / "bench" / "torch_prune_reference.py"
    out = RUNS / f"torch-prune-{name}.json"
    return subprocess.Popen(
        [PYTHON, str(script), "--data", data_dir(), "--threads", "1", "--out", str(out), *args],
        stdout=subprocess.DEVNULL,
    )


def torch_runs(jobs_at_once):
    """Runs the missing PyTorch schedules, `jobs_at_once` at a time; returns {name: steps}."""
    jobs = torch_jobs()
    todo = [n for n in jobs if not (RUNS / f"torch-prune-{n}.json").exists()]
    running = []
    while todo or running:
        while todo and len(running) < jobs_at_once:
            name = todo.pop(0)
            running.append(start_torch(name, jobs[name]))
        proc = running.pop(0)
        if proc.wait() != 0:
            raise SystemExit(f"torch_prune_reference.py failed: {proc.args}")
    return {n: json.loads((RUNS / f"torch-prune-{n}.json").read_text())["steps"] for n in jobs}


def maxprune_runs():
    """Trains and prunes what is missing of maxprune's side; returns {name: rows}."""
    names = {}
    for seed in SEEDS:
        base = train_base(seed)
        seeded = () if seed == 1 else ("--seed", str(seed))  # seed 1's is neuron_results.py's schedule
        names[f"seed{seed}"] = schedule(f"argmax{seed_suffix(seed)}", "--until-k", "1", *seeded, source=base)
    linear = train_base(1, arch=("--spec", str(LINEAR)), name="fashion-mnist-lenet5-maxout-linear")
    names["linear-seed1"] = schedule("argmax-linear", "--until-k", "1", source=linear)
    return {n: as_rows(report) for n, report in names.items()}


def largest_k(histogram):
    """The most pieces any unit of a layer has: `histogram[k]` units have k pieces."""
    return max(k for k, units in enumerate(histogram) if units)


def as_rows(report):
    """A maxprune schedule report as the PyTorch script's rows (accuracies in %)."""
    return [
        {"k": largest_k(r["pieces_histogram"][0]), "params": r["params"]}
        | {f"{s}_{w}": 100 * r[f"{s}_{w}"] for s in ("val", "test") for w in ("before", "after")}
        for r in report["rows"]
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="PyTorch runs at a time")
    a = ap.parse_args()
    ours = maxprune_runs()
    torch = torch_runs(a.jobs)
    md = [
        "Full Fashion-MNIST; test accuracy in %, before → after 5 retraining epochs, per step of the per-unit "
        "schedule (argmax relevance, one piece per unit per step). Last columns: the k=1 network after retraining "
        "against the unpruned one, in points (validation / test; the schedule's tolerance is 0.3 on validation), "
        "and whether the schedule's rule (validation within 0.3 of unpruned) keeps k=1. One run per row.",
        "",
        "| implementation | network | start | seed | k=4 | k=3 | k=2 | k=1 | k=1 vs k=4, val / test | k=1 kept |",
        "|---|---|---|---:|---|---|---|---|---:|---|",
    ]

    def line(impl, network, start, seed, rows):
        cells = [f"{rows[0]['test_after']:.2f}"] + [f"{r['test_before']:.2f} → {r['test_after']:.2f}" for r in rows[1:]]
        last, first = rows[-1], rows[0]
        val_drop = last["val_after"] - first["val_after"]
        delta = f"{val_drop:+.2f} / {last['test_after'] - first['test_after']:+.2f}"
        kept = "yes" if val_drop >= -TOLERANCE else "no"
        md.append(f"| {impl} | {network} | {start} | {seed} | {' | '.join(cells)} | {delta} | {kept} |")

    rectified, linear = "`lenet5-maxout` (rectified pieces)", "linear pieces (the old preset)"
    for seed in SEEDS:
        line("maxprune", rectified, "trained by maxprune", seed, ours[f"seed{seed}"])
    line("PyTorch port", rectified, "maxprune's network", 1, torch["from-maxprune-seed1"])
    for seed in SEEDS:
        line("PyTorch port", rectified, "trained in PyTorch", seed, torch[f"seed{seed}"])
    line("maxprune", linear, "trained by maxprune", 1, ours["linear-seed1"])
    line("PyTorch port", linear, "trained in PyTorch", 1, torch["linear-seed1"])
    ref, port = ours["seed1"], torch["from-maxprune-seed1"]
    gaps = [abs(p["test_before"] - r["test_before"]) for p, r in zip(port[1:], ref[1:])]
    md += [
        "",
        f"From the same network (seed 1): the unpruned network scores {ref[0]['val_after']:.2f} / {ref[0]['test_after']:.2f} "
        f"(validation / test) in maxprune and {port[0]['val_after']:.2f} / {port[0]['test_after']:.2f} in PyTorch; the "
        f"first cut, before any retraining, {ref[1]['val_before']:.2f} / {ref[1]['test_before']:.2f} and "
        f"{port[1]['val_before']:.2f} / {port[1]['test_before']:.2f} ({abs(port[1]['val_before'] - ref[1]['val_before']):.2f} / "
        f"{abs(port[1]['test_before'] - ref[1]['test_before']):.2f} points apart; "
        f"later cuts follow different retrainings and differ by up to {max(gaps):.2f}).",
        "",
        "The issue's own measurement (maxprune before this version, the forward-equivalent `fc1 -> dropout -> maxout -> relu`, "
        "seed 1): 90.68 | 90.35 → 90.74 | 90.52 → 90.85 | 90.29 → 90.72.",
    ]
    write_block("crosscheck", "\n".join(md))


if __name__ == "__main__":
    main()
