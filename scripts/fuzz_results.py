#!/usr/bin/env python3
"""Runs the long fuzz run and writes its counts into the README (`results:fuzz`).

Every reader (IDX, safetensors weights and checkpoints, .mxs, spec/plan/relevance JSON, TOML
config, pairs.txt, PNG and JPEG images) gets CASES inputs: arbitrary bytes and edits of a valid
file (bit flips, byte sets, deletions, insertions, truncations, numbers replaced by edge values).
A panic fails the run, so a finished run means 0 panics.

    python3 scripts/fuzz_results.py [CASES]     # default 100000 per format
"""
import platform
import re
import subprocess
import sys
import time

from common import ROOT, write_block

CASES = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000


def main():
    start = time.time()
    out = subprocess.run(
        ["cargo", "test", "--release", "--test", "fuzz", "--", "--nocapture", "--test-threads", "2"],
        cwd=ROOT,
        env={**__import__("os").environ, "MAXPRUNE_FUZZ_CASES": str(CASES)},
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit("the fuzz run failed (see above): a reader panicked or an error had no message")
    rows = re.findall(r"^fuzz (.+): (\d+) cases, (\d+) refused, (\d+) accepted, (\d+) panics$", out.stderr, re.M)
    rows.sort()
    lines = [
        f"`python3 scripts/fuzz_results.py {CASES}` ({time.time() - start:.0f} s with the release build, "
        f"{platform.machine()}, 2 test threads):",
        "",
        "| reader | cases | refused (clean error) | accepted (and ran) | panics |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {name} | {int(n):,} | {int(r):,} | {int(a):,} | {p} |" for name, n, r, a, p in rows]
    write_block("fuzz", "\n".join(lines))


if __name__ == "__main__":
    main()
