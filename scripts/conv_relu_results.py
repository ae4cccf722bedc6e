#!/usr/bin/env python3
"""Regenerates the README's table of the paper's schedule on a network with a ReLU after each
conv layer (between the `results:conv-relu` markers).

`lenet5-maxout` is Caffe's LeNet: no ReLU on its conv layers, so at k=1 (every maxout unit the
identity) nothing nonlinear is left after the second pooling. experiments/lenet5-maxout-conv-relu.json
is the same network with a ReLU after conv1 and conv2 (same 427,330 parameters). For each seed this
trains it like the README's neuron-pruning start (10 epochs, 5,000 validation examples carved off
train, default recipe) and runs the same per-unit schedule k=4 -> 1 (argmax, 5 retraining epochs
per step, tolerance 0.3 validation points). Beside it, the same seed's `lenet5-maxout` schedule
(`runs/prune-argmax*`, from scripts/neuron_results.py and scripts/units_results.py). Every run
resumes if its directory exists. With seeds as arguments it runs only those (to run seeds side by
side) and writes the table only when every seed is done.

    cargo build --release && python3 scripts/conv_relu_results.py [SEED ...]
"""
import json
import sys

from neuron_results import ROOT, RUNS, schedule, seed_suffix, train_base, write_block

SEEDS = (1, 2, 3)
SPEC = ROOT / "experiments" / "lenet5-maxout-conv-relu.json"
LENET5 = 431_080


def conv_relu_schedule(seed):
    """Trains (or resumes) the variant for `seed` and its schedule; returns the report."""
    base = train_base(seed, arch=("--spec", str(SPEC)), name="variant-conv-relu")
    return schedule(f"conv-relu{seed_suffix(seed)}", "--until-k", "1", "--seed", str(seed), source=base)


def main():
    seeds = [int(a) for a in sys.argv[1:]] or SEEDS
    for seed in seeds:
        conv_relu_schedule(seed)
    if any(not (RUNS / f"prune-conv-relu{seed_suffix(s)}" / "report.json").exists() for s in SEEDS):
        return
    md = [
        "Full Fashion-MNIST; per-unit schedule k=4 → 1 (argmax, one piece per unit per step, 5 retraining epochs, "
        "tolerance 0.3 validation points); accuracy in %, before → after retraining; \"vs unpruned\" is the last "
        "step's accuracy after retraining against the same network before pruning, in points.",
        "",
        "| seed | network | k=4 test | k=3 test | k=2 test | k=1 test (70.5% fewer params than LeNet-5) | k=1 vs unpruned, val / test | k=1 kept |",
        "|---:|---|---:|---|---|---|---:|---|",
    ]
    for seed in SEEDS:
        for label, name in (("`lenet5-maxout`", "argmax"), ("with conv ReLUs", "conv-relu")):
            rows = json.loads((RUNS / f"prune-{name}{seed_suffix(seed)}" / "report.json").read_text())["rows"]
            first, last = rows[0], rows[-1]
            cells = [f"{100 * first['test_after']:.2f}"]
            cells += [f"{100 * r['test_before']:.2f} → {100 * r['test_after']:.2f}" for r in rows[1:]]
            cells += ["–"] * (4 - len(cells))
            if last["pieces"] == ["1"]:
                delta = f"{100 * (last['val_after'] - first['val_after']):+.2f} / {100 * (last['test_after'] - first['test_after']):+.2f}"
                kept = "yes" if last["accepted"] else "**no**"
            else:
                delta, kept = "–", "(not reached)"
            md.append(f"| {seed} | {label} | {' | '.join(cells)} | {delta} | {kept} |")
    md.append("")
    md.append(f"Parameters at k=1: {rows[-1]['params']:,} for both networks ({100 * (1 - rows[-1]['params'] / LENET5):.1f}% fewer than LeNet-5's {LENET5:,}).")
    write_block("conv-relu", "\n".join(md))


if __name__ == "__main__":
    main()
