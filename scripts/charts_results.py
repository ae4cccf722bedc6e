#!/usr/bin/env python3
"""Regenerates the example charts the README shows (`docs/charts/`, block `results:charts`).

Runs `maxprune demo` (train, one neuron-pruning step: the schedule's accuracy chart and a
relevance histogram) and `maxprune reproduce lenet5 --quick` (the accuracy-vs-nonzeros chart)
on the embedded Fashion-MNIST subset, in a temporary directory, and copies their SVGs.

    python3 scripts/charts_results.py
"""
import shutil
import tempfile
from pathlib import Path

from common import ROOT, run, write_block

OUT = ROOT / "docs" / "charts"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        run("demo", "--out", str(t / "demo"))
        run("reproduce", "lenet5", "--quick", "--seeds", "1", "--out", str(t / "reproduce"))
        charts = [
            ("schedule: accuracy vs parameters (`prune neurons`, `demo`)", t / "demo" / "prune" / "accuracy-vs-params.svg", "accuracy-vs-params.svg"),
            ("relevance histogram (`relevance`, every schedule step)", t / "demo" / "prune" / "relevance-step-01.svg", "relevance-histogram.svg"),
            ("accuracy vs nonzeros (`reproduce`)", t / "reproduce" / "accuracy-vs-nonzeros.svg", "accuracy-vs-nonzeros.svg"),
        ]
        lines = [
            "`python3 scripts/charts_results.py` (embedded Fashion-MNIST subset: `maxprune demo` and "
            "`maxprune reproduce lenet5 --quick --seeds 1`; 1 to 5 epochs, so the accuracies are the subset's, not "
            "the results above):",
            "",
        ]
        for caption, source, name in charts:
            shutil.copyfile(source, OUT / name)
            lines += [f"**{caption}**", "", f"![{caption}](docs/charts/{name})", ""]
    write_block("charts", "\n".join(lines).rstrip())


if __name__ == "__main__":
    main()
