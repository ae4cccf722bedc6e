#!/usr/bin/env python3
"""The cost-aware ranking's edge: validation accuracy at equal FLOPs, without retraining.

For each trained run (one per seed; a maxout network trained with `--val N`, such as
`runs/conv/seed-S/base` of scripts/conv_results.py) and each FLOP ratio (default 2x and 4x),
`prune neurons` without retraining (`--retrain-epochs 0 --stop-rule none`) removes whole units of
every maxout layer until the network's FLOPs are at most the start's over the ratio:

1. `cost`: `--policy cost --criterion contribution --target-flops-ratio R`: units of all layers
   ranked together by contribution per FLOP (each layer's scores over its mean), re-scored after
   each step until the target (a step's budget counts each unit's FLOPs with the weights it
   shares with the next layer's units, so one step falls short of the target);
2. `equal`: `--policy units --criterion contribution --fraction F --steps 1`: the same fraction
   F of every layer's units, their lowest contributions first; F is the smallest that reaches
   the ratio (found on the FLOPs the spec implies; the table shows the ratio reached);
3. `random`: `--policy cost --criterion random --target-flops-ratio R`: seeded random scores
   through the same selection as `cost` (the seed is the run's).

Reports the final network's validation accuracy (on the run's own carve, no retraining) per
seed, with mean ± sample std, and the FLOP ratio each reached. Output directories go under
`--out` (default runs/ranking); a finished one is reused.

    cargo build --release
    python3 scripts/ranking_results.py RUN [RUN ...] [--ratios 2,4] [--val 5000] [--out runs/ranking]

Prints a Markdown table (no README block: the issue's done-when asks for the comparison; paste it
where it is discussed). A full run (3 seeds of full Fashion-MNIST) takes one relevance pass and
one validation pass per network, per seed, ratio and ranking: minutes, not hours.
"""
import argparse
import json
import shutil
import subprocess
from pathlib import Path

from common import BIN, ROOT, mean_std, run

RANKINGS = {
    "cost": "cost-aware, across layers (contribution per FLOP)",
    "equal": "equal fraction per layer (contribution)",
    "random": "random scores, across layers by cost",
}


def inspect(run_dir):
    """`maxprune inspect RUN --json`."""
    out = subprocess.run([str(BIN), "inspect", str(run_dir), "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def flops_after(layers, fraction):
    """FLOPs for one example after removing `floor(fraction x units)` units (at most all but one)
    of every maxout layer, as `--policy units` does: a conv or dense layer's FLOPs scale with the
    share of its outputs (the units of the maxout layer after it) and of its inputs (the units of
    the maxout layer before it) that stay. Assumes equal pieces per unit."""
    keep = {}
    for l in layers:
        if l["kind"] == "maxout":
            units = l["units"]
            keep[l["index"]] = (units - min(int(fraction * units), units - 1)) / units
    total, reading = 0.0, 1.0
    for i, l in enumerate(layers):
        if l["kind"] == "maxout":
            reading = keep[l["index"]]
        elif l["kind"] in ("conv2d", "dense"):
            out = 1.0
            for after in layers[i + 1:]:
                if after["kind"] in ("conv2d", "dense"):
                    break
                if after["kind"] == "maxout":
                    out = keep[after["index"]]
                    break
            total += l["flops"] * reading * out
            reading = 1.0
    return total


def equal_fraction(layers, target):
    """The smallest fraction (to 1e-6) whose `flops_after` is at most `target`."""
    lo, hi = 0.0, 0.999999
    if flops_after(layers, hi) > target:
        raise SystemExit(f"no equal fraction reaches {target:,.0f} FLOPs: every layer keeps a unit")
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if flops_after(layers, mid) > target else (lo, mid)
    return hi


def prune(source, out, seed, a, *policy):
    """`prune neurons` from `source` without retraining into `out` (reused when it has finished);
    returns its last report row."""
    if not (out / "report.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        run("--threads", str(a.threads), "prune", "neurons", str(source), "--out", str(out), "--retrain-epochs", "0",
            "--stop-rule", "none", "--bench-steps", "none", "--val", str(a.val), "--seed", str(seed), *policy)
    return json.loads((out / "report.json").read_text())["rows"][-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="trained runs, one per seed (seed 1, 2, ... in order)")
    p.add_argument("--ratios", default="2,4", help="FLOP ratios to reach")
    p.add_argument("--seeds", help="the runs' seeds, comma-separated (default 1, 2, ...)")
    p.add_argument("--val", type=int, default=5000, help="the runs' validation carve")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "ranking")
    a = p.parse_args()
    ratios = [float(r) for r in a.ratios.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else list(range(1, len(a.runs) + 1))
    if len(seeds) != len(a.runs):
        raise SystemExit(f"{len(a.runs)} runs but {len(seeds)} seeds")
    rows = {}  # (ratio, ranking) -> [(seed, row)]
    for seed, source in zip(seeds, a.runs):
        info = inspect(source)
        for ratio in ratios:
            target = info["flops"] / ratio
            d = a.out / f"seed-{seed}" / f"x{ratio:g}"
            frac = equal_fraction(info["layers"], target)
            cut = [
                ("cost", ["--criterion", "contribution", "--policy", "cost", "--fraction", f"{1 - 1 / ratio:.6f}",
                          "--target-flops-ratio", f"{ratio:g}"]),
                ("equal", ["--criterion", "contribution", "--policy", "units", "--fraction", f"{frac:.6f}", "--steps",
                           "1"]),
                ("random", ["--criterion", "random", "--policy", "cost", "--fraction", f"{1 - 1 / ratio:.6f}",
                            "--target-flops-ratio", f"{ratio:g}"]),
            ]
            for name, policy in cut:
                r = prune(source, d / name, seed, a, *policy)
                rows.setdefault((ratio, name), []).append((seed, r))
    md = [f"Validation accuracy (%) after whole-unit pruning to each FLOP ratio, no retraining "
          f"(`python3 scripts/ranking_results.py {' '.join(map(str, a.runs))}`; {a.val:,} validation examples; "
          "the ratio reached in brackets):", "",
          "| FLOP ratio | ranking | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
          "|---|---|" + "---:|" * (len(seeds) + 1)]
    for ratio in ratios:
        for name, label in RANKINGS.items():
            rs = rows[(ratio, name)]
            cells = [f"{100 * r['val_after']:.2f} ({r['flop_ratio']:.2f}x)" for _, r in rs]
            md.append(f"| {ratio:g}x | {label} | " + " | ".join(cells) + " | "
                      + mean_std([100 * r["val_after"] for _, r in rs]) + " |")
    print("\n".join(md))


if __name__ == "__main__":
    main()
