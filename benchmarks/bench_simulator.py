"""Simulator scale benchmark: wall time and peak memory (whole process tree) per world size.

Each size runs `nextbest simulate` in a fresh subprocess while this script samples the RSS of that process and its
worker children every 0.2 s, so the peak includes every process the simulation used. Target (issue 2): 1M customers
x 180 days within 10 minutes and 8 GB peak on the 2-core machine.

    uv run --frozen python -m benchmarks.bench_simulator                   # 100k and 1M customers x 180 days
    uv run --frozen python -m benchmarks.bench_simulator --sizes 100000 --days 180 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from nextbest.settings import load_settings


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
            total += p.memory_info().rss
    return total


def run_one(customers: int, days: int, seed: int, workers: int | None, out: Path) -> dict[str, float | int | str]:
    """Simulate one world in a subprocess; return time, peak tree RSS and what was written."""
    if out.exists():
        shutil.rmtree(out)
    code = (
        "import sys; from nextbest.simulator import SimulationConfig, simulate_world; "
        f"simulate_world(SimulationConfig(customers={customers}, days={days}, seed={seed}), sys.argv[1], "
        f"workers={workers!r})"
    )
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)])
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, _tree_rss(ps))
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the subprocess and the workers it waited for
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"simulation of {customers} customers failed with exit code {proc.returncode}")
    world = json.loads((out / "truth" / "world.json").read_text())
    disk = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    return {
        "customers": customers,
        "days": days,
        "workers": workers or "auto",
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_avg": (load_before + os.getloadavg()[0]) / 2,
        "peak_rss_gb": peak / 1e9,
        "customer_days_per_s": customers * days / seconds,
        "transactions": world["rows"]["transactions"],
        "contacts": world["rows"]["contacts"],
        "disk_gb": disk / 1e9,
        "auc_churn_30d": world["bayes_auc"]["churn_30d"],
        "auc_offer": world["bayes_auc"]["offer_acceptance"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="customers per world")
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="simulation processes (default: auto, <= 2)")
    parser.add_argument("--keep", action="store_true", help="keep the generated worlds")
    args = parser.parse_args()

    bench_dir = load_settings().bench_dir
    results = []
    for n in args.sizes:
        out = bench_dir / f"sim-{n}"
        print(f"simulating {n:,} customers x {args.days} days ...", flush=True)
        results.append(run_one(n, args.days, args.seed, args.workers, out))
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    header = (
        f"{'customers':>10} {'days':>5} {'workers':>7} {'time s':>8} {'CPU s':>8} {'load':>5} {'peak GB':>8} "
        f"{'cust-days/s':>12} "
        f"{'transactions':>13} {'contacts':>10} {'disk GB':>8} {'AUC churn30':>11} {'AUC offer':>9}"
    )
    print("\nSimulator benchmark (target: 1M x 180 days <= 600 s and <= 8 GB)")
    print(header)
    for r in results:
        print(
            f"{r['customers']:>10,} {r['days']:>5} {r['workers']!s:>7} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} "
            f"{r['load_avg']:>5.1f} {r['peak_rss_gb']:>8.2f} "
            f"{r['customer_days_per_s']:>12,.0f} {r['transactions']:>13,} {r['contacts']:>10,} {r['disk_gb']:>8.2f} "
            f"{r['auc_churn_30d']:>11.3f} {r['auc_offer']:>9.3f}"
        )
    print(
        "CPU s: user+system seconds of the simulation's processes; on an otherwise idle 2-core machine the wall time "
        "is about CPU s / 2.\nload: the machine's 1-minute load average around the run (other jobs share the cores)."
    )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"\nscaling {a['customers']:,} -> {b['customers']:,}: time x{b['seconds'] / a['seconds']:.1f} "
            f"for x{b['customers'] / a['customers']:.0f} customers; "
            f"peak memory x{b['peak_rss_gb'] / a['peak_rss_gb']:.1f}"
        )


if __name__ == "__main__":
    main()
