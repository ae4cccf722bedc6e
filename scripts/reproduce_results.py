#!/usr/bin/env python3
"""Regenerates the README's `reproduce` table (neuron + weight pruning of LeNet-5, 3 seeds).

Runs `maxprune reproduce lenet5 --dataset fashion-mnist` for seeds 1, 2 and 3 into
`results/lenet5-fashion-mnist/`, one process per seed with one thread each, `--jobs` at a time
(default 2: on a 2-core machine two single-thread processes get more done than one two-thread
process), then once more for all seeds together, which finds every stage finished and writes
the combined `REPORT.md`. Every stage resumes, so an interrupted call picks up where it stopped.
Writes the table between the README's `results:reproduce` markers.

    cargo build --release && python3 scripts/reproduce_results.py [--jobs 2] [--seeds 1,2,3]
"""
import argparse
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("MAXPRUNE_BIN", ROOT / "target" / "release" / "maxprune"))
OUT = ROOT / "results" / "lenet5-fashion-mnist"


def reproduce(threads, seeds):
    args = ["-q", "--threads", str(threads), "reproduce", "lenet5", "--dataset", "fashion-mnist"]
    args += ["--seeds", ",".join(map(str, seeds)), "--out", str(OUT)]
    subprocess.run([str(BIN), *args], check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated (the README's table uses 1,2,3)")
    a = ap.parse_args()
    jobs, seeds = a.jobs, [int(s) for s in a.seeds.split(",")]
    threads = 1 if jobs > 1 else 2
    start = time.time()
    with ThreadPoolExecutor(jobs) as pool:
        for f in [pool.submit(reproduce, threads, [s]) for s in seeds]:
            f.result()
    reproduce(2, seeds)
    report = (OUT / "REPORT.md").read_text().split("\n", 2)[2].strip()
    timing = (f"This call of the script took {(time.time() - start) / 60:.0f} min ({jobs} processes at a time, "
              f"{threads} thread(s) each; less when an earlier call had finished stages).")
    readme = ROOT / "README.md"
    pattern = r"(<!-- results:reproduce -->\n).*?(<!-- /results:reproduce -->)"
    block = report + "\n\n" + timing
    readme.write_text(re.sub(pattern, lambda m: m.group(1) + block + "\n" + m.group(2), readme.read_text(), flags=re.S))
    print(block)


if __name__ == "__main__":
    main()
