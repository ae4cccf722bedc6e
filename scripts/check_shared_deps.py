#!/usr/bin/env python3
"""Checks that `cargo test --release` reuses every artifact `cargo build --release` compiled.

The README's test command comes after `cargo run --release -- demo`; it stays short only if the
test build finds burn, gemm and the rest already compiled. A dependency compiled with other
features (a dev-dependency enabling `default` or `std` in a crate of burn's tree) is a different
artifact, and so is everything above it. This compares cargo's unit graphs of both builds (no
compilation: `--unit-graph`, an unstable flag, enabled for these two calls with
RUSTC_BOOTSTRAP=1) and lists each artifact of the release build the test build would compile
anew. Exit 1 when there is one: add the crate, with the features the test build gives it, to
Cargo.toml's block of dependencies the code does not use.

Usage: python3 scripts/check_shared_deps.py   (from the repository root; needs cargo)
"""

import json
import os
import subprocess
import sys


def unit_graph(args):
    """cargo's unit graph of `cargo <args>`, without building."""
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    out = subprocess.run(
        ["cargo", *args, "--unit-graph", "-Z", "unstable-options"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)["units"]


def identities(units):
    """Each unit with a key that identifies its artifact: package, target, mode, features,
    profile, platform and, recursively, its dependencies' keys."""
    memo = {}

    def key(i):
        if i not in memo:
            u = units[i]
            deps = tuple(sorted(key(d["index"]) for d in u["dependencies"]))
            memo[i] = (
                u["pkg_id"],
                u["target"]["name"],
                tuple(u["target"]["kind"]),
                u["mode"],
                tuple(sorted(u["features"])),
                json.dumps(u["profile"], sort_keys=True),
                u.get("platform"),
                deps,
            )
        return memo[i]

    return [(units[i], key(i)) for i in range(len(units))]


def main():
    build = identities(unit_graph(["build", "--release"]))
    test = {k for _, k in identities(unit_graph(["test", "--release", "--no-run"]))}
    rebuilt = [u for u, k in build if k not in test]
    print(f"{len(build)} artifacts in `cargo build --release`; {len(rebuilt)} compiled anew by `cargo test --release`")
    for u in rebuilt:
        features = ", ".join(u["features"]) or "no features"
        print(f"  {u['pkg_id'].split('#')[-1]} ({u['target']['name']}, {features})")
    return 1 if rebuilt else 0


if __name__ == "__main__":
    sys.exit(main())
