#!/usr/bin/env python3
"""Regenerates the README's `reproduce` table (neuron + weight pruning of LeNet-5, 3 seeds).

Runs `maxprune reproduce lenet5 --dataset fashion-mnist` for seeds 1, 2 and 3 into
`results/lenet5-fashion-mnist/` (or `--out DIR`), one seed after another with two threads
(maxprune's output lock allows one writer per output tree, so seeds cannot run as parallel
processes into one directory), then once more for all seeds together, which finds every stage
finished and writes the combined `REPORT.md`. Every stage resumes, so an interrupted call picks up where it stopped.
Writes the table between the README's `results:reproduce` markers, and the at-a-glance table
(the paper's figures beside maxprune's, mean ± std over the seeds) between `results:glance`.

    cargo build --release && python3 scripts/reproduce_results.py [--seeds 1,2,3] [--out DIR]
"""
import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from common import BIN, ROOT, write_block

OUT = ROOT / "results" / "lenet5-fashion-mnist"


def reproduce(threads, seeds, out):
    args = ["-q", "--threads", str(threads), "reproduce", "lenet5", "--dataset", "fashion-mnist"]
    args += ["--seeds", ",".join(map(str, seeds)), "--out", str(out)]
    subprocess.run([str(BIN), *args], check=True, stdout=subprocess.DEVNULL)


LENET5 = 431_080
GLANCE = (
    # (what, the paper's figure on MNIST, reproduce's row, baseline row)
    ("neuron pruning (k=4 → 1, the paper's schedule)", "−74% params, accuracy unchanged",
     "+ neuron pruning (the paper's k=4 → 1)", "LeNet-5 maxout"),
    ("+ whole units removed (beyond the paper)", "−74% params, accuracy unchanged",
     "+ whole units removed (beyond the paper)", "LeNet-5 maxout"),
    ("neuron + weight pruning", "−92% params, accuracy unchanged",
     "+ neuron + weight pruning", "LeNet-5 maxout"),
    ("neuron + weight pruning, pushed to 92%", "−92% params, accuracy unchanged",
     "+ neuron + weight pruning, pushed to the paper's figure", "LeNet-5 maxout"),
    ("weight pruning alone (Han et al.)", "−92% params, accuracy unchanged",
     "LeNet-5 + weight pruning", "LeNet-5"),
)


def glance(report, seeds):
    """The at-a-glance table: removed parameters and the test-accuracy change per method."""
    rows = dict((name, ms) for name, ms in report["rows"])
    def pm(v, sign=""):
        mean = format(statistics.mean(v), sign + ".2f")
        return f"{mean} ± {statistics.stdev(v):.2f}" if len(v) > 1 else mean
    md = [f"LeNet-5 family; the paper on MNIST, maxprune on `{report['config']['dataset']}` (the full train and "
          f"test splits; MNIST cannot be downloaded on the machine that made this table), seeds {', '.join(map(str, seeds))}, mean ± sample std; removed "
          f"counts nonzero parameters against LeNet-5's 431,080; accuracy change is each seed's test accuracy "
          f"against its own unpruned network, in points. Neuron pruning runs the paper's k=4 → 1 on every seed "
          f"with no stopping rule, as the original code does; the stages beyond it stop on "
          f"{report['config']['val']:,} validation examples carved off train.", "",
          "| method | paper (MNIST) | maxprune: removed | maxprune: test accuracy | change vs unpruned | command |",
          "|---|---|---:|---:|---:|---|"]
    cmd = "`maxprune reproduce lenet5 --dataset fashion-mnist --seeds 1,2,3`"
    for what, paper, row, base in GLANCE:
        ms, bs = rows[row], rows[base]
        removed = [100 * (1 - m["nonzeros"] / LENET5) for m in ms]
        acc = [100 * m["accuracy"] for m in ms]
        delta = [100 * (m["accuracy"] - b["accuracy"]) for m, b in zip(ms, bs)]
        md.append(f"| {what} | {paper} | {pm(removed)}% | {pm(acc)}% | {pm(delta, '+')} | {cmd} |")
    return "\n".join(md)


def interval(row):
    """A step's paired validation change and its 95% Wald interval, in points (as
    `PairedChange::interval` in src/prune/stop.rs computes them from the discordant counts)."""
    c = row["val_change"]
    b, g, n = c["lost"], c["gained"], c["examples"]
    change = (g - b) / n
    half = 1.959963984540054 * max(b + g - (g - b) ** 2 / n, 0.0) ** 0.5 / n
    return 100 * change, 100 * (change - half), 100 * (change + half)


def keeps(row, tolerance):
    """Whether each stopping rule keeps a schedule step (`prune --stop-rule`): point, the step's
    validation accuracy at most `tolerance` points below the accuracy it counts from (the change
    is measured against it); paired, the 95% interval of the change not wholly below
    -`tolerance`."""
    change, _, hi = interval(row)
    return -change <= tolerance + 1e-9, hi >= -tolerance - 1e-9


def stop_rules(out, seeds):
    """How the `point` and `paired` stopping rules judge every step the reproduction ran, per
    stage and seed: the first step each rule rejects (a schedule ran until the rule it used
    stopped it, so a later step the other rule might reach was not run)."""
    md = ["Per stage and seed, the first step each stopping rule rejects among the steps `reproduce` ran "
          "(– none), with each step's validation change in points and its paired 95% interval; each stage "
          "ran under the rule in its name, so steps after its stop were not run.", "",
          "| stage (its rule) | seed | steps run | point rejects | paired rejects | validation change per step |",
          "|---|---:|---:|---:|---:|---|"]
    for seed in seeds:
        for report in sorted((out / f"seed-{seed}").glob("*/report.json")):
            r = json.loads(report.read_text())
            rows = [row for row in r["rows"] if row.get("val_change")]
            if not rows:
                continue
            tol = r["config"]["tolerance"]
            rule = r["config"].get("stop_rule", "point")
            first = lambda i: next((row["step"] for row in rows if not keeps(row, tol)[i]), "–")
            cells = ["{:+.2f} ({:+.2f}, {:+.2f})".format(*interval(row)) for row in rows]
            md.append(f"| {report.parent.name} ({rule}, {tol} points) | {seed} | {len(rows)} | {first(0)} | {first(1)} | "
                      + "; ".join(cells) + " |")
    return "\n".join(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated (the README's table uses 1,2,3)")
    ap.add_argument("--out", default=str(OUT), help="reproduction directory (resumed when it holds one)")
    a = ap.parse_args()
    out = Path(a.out)
    seeds = [int(s) for s in a.seeds.split(",")]
    start = time.time()
    for seed in seeds:
        reproduce(2, [seed], out)
    reproduce(2, seeds, out)
    report = (out / "REPORT.md").read_text().split("\n", 2)[2].strip()
    timing = (f"This call of the script took {(time.time() - start) / 60:.0f} min (one seed at a time, "
              f"2 threads; less when an earlier call had finished stages).")
    write_block("reproduce", report + "\n\n" + timing)
    write_block("glance", glance(json.loads((out / "report.json").read_text()), seeds))
    write_block("stop-rules", stop_rules(out, seeds))


if __name__ == "__main__":
    main()
