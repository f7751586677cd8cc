"""Run every benchmark in sequence (what `make bench` does); each prints its own figures and writes JSON under
`<home>/bench/`. Pass names to run a subset: `python -m benchmarks.run simulator features`.

The full set takes a long time on 2 cores (the 1M-customer simulation and the 1M-row drift report dominate);
`--quick` runs each at its smallest meaningful size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, --quick arguments)
    "simulator": ([], ["--sizes", "100000"]),
    "features": ([], ["--customers", "5000", "--entity-rows", "20000", "--nba-rows", "5000"]),
    "training": ([], ["--rows", "100000", "--trials", "3"]),
    "serving": (["--redis"], ["--duration", "5", "--levels", "1,4", "--rate-seconds", "10"]),
    "monitoring": (["--before"], ["--cases", "15000x110"]),
    "campaign": ([], ["--quick"]),
    "twin": ([], ["--quick"]),
    "distributed": ([], ["--quick"]),
    "onboarding_quality": ([], ["--trials", "3", "--projects", "flat_customers"]),
    "onboarding_split": ([], ["--trials", "3", "--seeds", "7"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run, of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smallest meaningful sizes")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    failed = []
    for name in args.names or list(BENCHMARKS):
        full, quick = BENCHMARKS[name]
        cmd = [sys.executable, "-m", f"benchmarks.bench_{name}", *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
