"""Point-in-time training set benchmark: 1M churn_v1 entity rows through Feast and through the ASOF path.

    flock /tmp/heavy.lock uv run --frozen python -m benchmarks.bench_pit --entity-rows 1000000 --repeats 2

The world (100k customers x 90 days, weekly snapshots by default) is simulated, built and applied once under
`<home>/bench/features/` (bench_features' layout) and reused. Entity rows are snapshot rows of customer_profile
drawn with replacement plus a random second of the day, so customers repeat at different times, as in a snapshot
training set. Each (method, repeat) runs in its own process, so each peak RSS is that method's alone. Prints
seconds, peak RSS (absolute and above the process's level before the call), the load average before and after,
and the verdict from the median of the repeats; figures also go to `<home>/bench/pit.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.memory import PeakRss
from nextbest.settings import Settings, load_settings

TARGET_S = 60.0
TARGET_GB = 6.0


def world_settings(customers: int, days: int, seed: int) -> Settings:
    return Settings(home=load_settings().bench_dir / "features" / f"{customers}x{days}_s{seed}")


def prepare(customers: int, days: int, seed: int, every_days: int) -> Settings:
    """Simulate, build the feature tables and apply the repo once; later runs reuse them."""
    import nextbest.features as nf
    from benchmarks.bench_features import ensure_world

    settings = world_settings(customers, days, seed)
    ensure_world(settings, customers, days, seed)
    genome = nf.features_of(settings)
    if not (settings.features_dir / "offline" / "customer_profile.parquet").exists():
        genome.build(every_days=every_days)
    if not (settings.features_dir / "registry.db").exists():
        genome.apply()
    return settings


def entity_rows(settings: Settings, n: int, seed: int) -> pd.DataFrame:
    snapshots = pd.read_parquet(
        settings.features_dir / "offline" / "customer_profile.parquet", columns=["customer_id", "event_timestamp"]
    )
    rng = np.random.default_rng(seed)
    pick = snapshots.iloc[rng.integers(0, len(snapshots), n)]
    ts = pd.to_datetime(pick["event_timestamp"], utc=True) + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    return pd.DataFrame({"customer_id": pick["customer_id"].to_numpy(), "event_timestamp": ts.reset_index(drop=True)})


def child(args: argparse.Namespace) -> None:
    """One timed retrieval in this process; prints one JSON line."""
    import nextbest.features as nf
    from nextbest.features.point_in_time import historical_features

    settings = world_settings(args.customers, args.days, args.seed)
    store = nf.get_store(settings)
    service = store.get_feature_service(nf.CHURN_SERVICE)
    entity = entity_rows(settings, args.entity_rows, args.seed)
    with PeakRss() as mem:
        start = time.perf_counter()
        frame = historical_features(store, entity, service, args.child)
        seconds = time.perf_counter() - start
    out = {"method": args.child, "rows": len(frame), "columns": len(frame.columns), "seconds": seconds,
           "peak_rss_gb": mem.peak / 1e9, "peak_rss_delta_gb": mem.delta_mb / 1e3}  # fmt: skip
    print(json.dumps(out), flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every-days", type=int, default=7, help="snapshot cadence of the feature tables")
    parser.add_argument("--entity-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", default="feast,asof", help="comma-separated: feast, asof")
    parser.add_argument("--child", choices=["feast", "asof"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.child:
        child(args)
        return

    from benchmarks.machine import python_reference_s

    prepare(args.customers, args.days, args.seed, args.every_days)
    results: dict[str, Any] = {"entity_rows": args.entity_rows, "customers": args.customers, "days": args.days,
                               "every_days": args.every_days, "python_reference_s": python_reference_s()}  # fmt: skip
    print(f"machine: python reference {results['python_reference_s']} s", flush=True)
    base = [sys.executable, "-m", "benchmarks.bench_pit", "--customers", str(args.customers), "--days",
            str(args.days), "--seed", str(args.seed), "--entity-rows", str(args.entity_rows)]  # fmt: skip
    for method in args.methods.split(","):
        runs = []
        for repeat in range(args.repeats):
            before = load()
            proc = subprocess.run([*base, "--child", method], check=True, capture_output=True, text=True)
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            run.update(load_before=before, load_after=load())
            runs.append(run)
            print(f"PIT churn_v1 {method} {run['rows']:,} rows x {run['columns']} cols (run {repeat + 1}): "
                  f"{run['seconds']:.1f} s, peak RSS {run['peak_rss_gb']:.2f} GB "
                  f"(+{run['peak_rss_delta_gb']:.2f} GB), load {before} -> {run['load_after']}",
                  flush=True)  # fmt: skip
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_rss_gb"] for r in runs)
        met = seconds <= TARGET_S and peak <= TARGET_GB
        rows = f"{args.entity_rows / 1e6:g}M" if args.entity_rows >= 1e6 else f"{args.entity_rows:,}"
        verdict = f"PIT {rows} rows within {TARGET_S:.0f} s and {TARGET_GB:.0f} GB: {'MET' if met else 'NOT MET'}"
        print(f"{method}: median {seconds:.1f} s, peak RSS {peak:.2f} GB -> {verdict}", flush=True)
        results[method] = {"runs": runs, "median_seconds": seconds, "median_peak_rss_gb": peak, "met": met}
    out = load_settings().bench_dir / "pit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"figures -> {out}")


if __name__ == "__main__":
    main()
