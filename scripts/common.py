"""Helpers the result scripts share: where the binary is, running it, rewriting a README block."""
import os
import platform
import re
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("MAXPRUNE_BIN", ROOT / "target" / "release" / "maxprune"))


def run(*args):
    """Runs `maxprune -q ARGS`, failing loudly; its standard output is dropped."""
    subprocess.run([str(BIN), "-q", *args], check=True, stdout=subprocess.DEVNULL)


def write_block(marker, block):
    """Replaces the README's text between the `results:MARKER` comments with `block`."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    pattern = rf"(<!-- results:{marker} -->\n).*?(<!-- /results:{marker} -->)"
    if not re.search(pattern, text, flags=re.S):
        raise SystemExit(f"README.md has no results:{marker} markers")
    readme.write_text(re.sub(pattern, lambda m: m.group(1) + block + "\n" + m.group(2), text, flags=re.S))
    print(block)


def cpu_name():
    """The CPU's model name (from /proc/cpuinfo), for the machine line under a table."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def mean_std(values):
    """`mean ± sample std` with two decimals (the value alone for one seed)."""
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
