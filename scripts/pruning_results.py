#!/usr/bin/env python3
"""Regenerates the README's pruning results: the `reproduce` table and the neuron-pruning section.

1. `maxprune reproduce lenet5 --dataset fashion-mnist` for seeds 1, 2 and 3 into
   `results/lenet5-fashion-mnist/`: plain LeNet-5 and lenet5-maxout trained 10 epochs on the
   training split less 5,000 validation examples, neuron pruning k=4 -> 1 (argmax relevance,
   5 retraining epochs per step, 0.3-point validation tolerance), weight pruning after it, and
   weight pruning alone on plain LeNet-5.
2. From seed 1's lenet5-maxout, the same neuron schedule with the `random` and `weight-norm`
   criteria, and a control that retrains as many rounds without pruning (`runs/prune-*`).
3. The README sections between the `results:reproduce` and `results:neurons` markers.

Independent jobs run as `--jobs` parallel processes with one thread each (default 2: on this
2-core machine two single-thread processes get more done than one two-thread process). Every
stage resumes, so an interrupted call picks up where it stopped and a finished one only
rewrites the README.

    cargo build --release && python3 scripts/pruning_results.py [--jobs 2]
"""
import argparse
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("MAXPRUNE_BIN", ROOT / "target" / "release" / "maxprune"))
RESULTS = ROOT / "results" / "lenet5-fashion-mnist"
RUNS = ROOT / "runs"
SEEDS = [1, 2, 3]
BASE = RESULTS / "seed-1" / "lenet5-maxout"
ARGMAX = RESULTS / "seed-1" / "lenet5-maxout-neurons"


def run(threads, *args):
    subprocess.run([str(BIN), "-q", "--threads", str(threads), *args], check=True, stdout=subprocess.DEVNULL)


def reproduce(threads, seeds):
    run(threads, "reproduce", "lenet5", "--dataset", "fashion-mnist", "--seeds", ",".join(map(str, seeds)), "--out", str(RESULTS))


def schedule(threads, name, *extra):
    out = RUNS / f"prune-{name}"
    args = ["prune", "neurons", str(BASE), "--out", str(out), "--retrain-epochs", "5", "--tolerance", "0.3", "--val", "5000", *extra]
    if (out / "schedule.json").exists():
        args.append("--resume")
    run(threads, *args)


def replace(text, marker, block):
    pattern = rf"(<!-- results:{marker} -->\n).*?(<!-- /results:{marker} -->)"
    return re.sub(pattern, lambda m: m.group(1) + block + "\n" + m.group(2), text, flags=re.S)


def neurons_block():
    reports = {"argmax": json.loads((ARGMAX / "report.json").read_text())}
    for name in ["random", "weight-norm", "control"]:
        reports[name] = json.loads((RUNS / f"prune-{name}" / "report.json").read_text())
    md = [(ARGMAX / "report.md").read_text().split("\n", 2)[2].strip(), ""]
    md.append("Criteria side by side (test accuracy in %, before → after retraining; every row has the same "
              "parameter count at the same step, except the control, which keeps all of its parameters):")
    md.append("")
    md.append("| step | params | " + " | ".join(reports) + " |")
    md.append("|---:|---:|" + "---|" * len(reports))
    steps = len(reports["argmax"]["rows"])
    for i in range(steps):
        cells = []
        for rep in reports.values():
            rows = rep["rows"]
            if i < len(rows):
                r = rows[i]
                over = "" if r["accepted"] else " (over tolerance)"
                cells.append(f"{100 * r['test_before']:.2f} → {100 * r['test_after']:.2f}{over}")
            else:
                cells.append("stopped")
        md.append(f"| {i} | {reports['argmax']['rows'][i]['params']:,} | " + " | ".join(cells) + " |")
    return "\n".join(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    jobs = ap.parse_args().jobs
    threads = 1 if jobs > 1 else 2
    start = time.time()
    with ThreadPoolExecutor(jobs) as pool:
        seeds = [pool.submit(reproduce, threads, [s]) for s in SEEDS]
        seeds[0].result()
        extra = [
            pool.submit(schedule, threads, "random", "--until-k", "1", "--criterion", "random"),
            pool.submit(schedule, threads, "weight-norm", "--until-k", "1", "--criterion", "weight-norm"),
            pool.submit(schedule, threads, "control", "--control", "--steps", "3"),
        ]
        for f in seeds + extra:
            f.result()
    reproduce(2, SEEDS)
    wall = (time.time() - start) / 60
    report = (RESULTS / "REPORT.md").read_text().split("\n", 2)[2].strip()
    timing = (f"This call of the script took {wall:.0f} min on this machine ({jobs} parallel processes, "
              f"{threads} thread(s) each; less when earlier calls had finished some stages).")
    readme = ROOT / "README.md"
    text = replace(readme.read_text(), "reproduce", report + "\n\n" + timing)
    readme.write_text(replace(text, "neurons", neurons_block()))
    print(report)


if __name__ == "__main__":
    main()
