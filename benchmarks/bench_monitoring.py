"""Benchmark: the Evidently drift report at 100k and 1M rows x NBA-shaped inputs, full vs a fixed-size sample.

Run: `uv run --frozen python -m benchmarks.bench_monitoring [--rows 100000 1000000] [--columns 70]
[--sample-rows 20000] [--full-report-max-rows 100000] [--repeats 1]`

What it shows, for each size and for two worlds (planted drift on a few inputs, and no drift):
- seconds for the Evidently report on ALL rows (only up to `--full-report-max-rows`: at 1M it takes minutes),
- seconds for the report on a seeded `--sample-rows` sample per side (what `nextbest monitor` does),
- the verdict of the sampled report, and the verdict reached from the same stat tests on ALL rows
  (`monitoring.reports.score_columns`, no rendering), and whether they agree.
Inputs are synthetic frames shaped like the NBA model's (balances with heavy tails, counts, recencies with
missing values, flags, one-hots, small categories) unless `--from-model` reads the champion's feature names.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from monitoring.drift import DriftPolicy, decide_drift
from monitoring.reports import build_drift_report, score_columns


def nba_like_frame(n: int, n_columns: int, seed: int, drift: bool) -> pd.DataFrame:
    """`n_columns` inputs cycling through 7 heavy-tailed amounts, 4 counts, 2 recencies (with NaN), 5 flags and 2
    small categoricals. With `drift`, 4 amounts grow by 60%, 2 counts by 50%, and one flag's rate doubles."""
    rng = np.random.default_rng(seed)
    kinds = ["amount"] * 7 + ["count"] * 4 + ["recency"] * 2 + ["flag"] * 5 + ["cat"] * 2
    data: dict[str, np.ndarray] = {}
    counters = dict.fromkeys(("amount", "count", "recency", "flag", "cat"), 0)
    for i in range(n_columns):
        kind = kinds[i % len(kinds)]
        j = counters[kind]
        counters[kind] += 1
        name = f"{kind}_{j}"
        if kind == "amount":
            x = rng.lognormal(7 + 0.1 * (j % 5), 1.0, n) * (rng.uniform(size=n) < 0.7)
            if drift and j < 4:
                x = x * 1.6
        elif kind == "count":
            lam = 2.0 + j % 4
            x = rng.poisson(lam * (1.5 if drift and j < 2 else 1.0), n).astype(float)
        elif kind == "recency":
            x = np.where(rng.uniform(size=n) < 0.4, rng.exponential(100, n), np.nan)
        elif kind == "flag":
            rate = 0.05 + 0.02 * (j % 10)
            x = (rng.uniform(size=n) < rate * (2.0 if drift and j == 0 else 1.0)).astype(float)
        else:
            x = rng.integers(0, 3 + j % 3, n).astype(float)
        data[name] = x
    return pd.DataFrame(data)


def _time(repeats: int, fn, *args, **kwargs) -> tuple[float, float, object]:
    """Median wall and CPU seconds over `repeats` calls (CPU time shows the cost when the machine is shared)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--columns", type=int, default=70)
    parser.add_argument("--sample-rows", type=int, default=DriftPolicy().sample_rows)
    parser.add_argument("--full-report-max-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    # Import (and warm) Evidently once so the first timing is not the import.
    t0 = time.perf_counter()
    warm = nba_like_frame(2_000, 5, 0, False)
    build_drift_report(warm, warm, list(warm.columns))
    print(f"evidently import + warm-up: {time.perf_counter() - t0:.1f} s")

    # The model's "top-importance inputs" stand-in: the first 10 columns (they include the planted drift).
    key = tuple(nba_like_frame(10, args.columns, 0, False).columns[:10])
    sampled_policy = DriftPolicy(sample_rows=args.sample_rows, key_features=key)
    full_policy = DriftPolicy(sample_rows=None, key_features=key)
    rows_out = []
    for n in args.rows:
        reference = nba_like_frame(n, args.columns, seed=1, drift=False)
        cols = list(reference.columns)
        for world, drift in (("planted drift", True), ("no drift", False)):
            current = nba_like_frame(n, args.columns, seed=2, drift=drift)
            full_s = full_cpu = float("nan")
            if n <= args.full_report_max_rows:
                full_s, full_cpu, _ = _time(
                    args.repeats, build_drift_report, reference, current, cols, policy=full_policy
                )
            sampled_s, sampled_cpu, report = _time(
                args.repeats, build_drift_report, reference, current, cols, policy=sampled_policy
            )
            verdict_sampled = decide_drift(sampled_policy, report.columns, reference_rows=n, current_rows=n)
            t0 = time.perf_counter()
            full_scores = score_columns(reference, current, cols, policy=full_policy)
            scores_s = time.perf_counter() - t0
            verdict_full = decide_drift(full_policy, full_scores, reference_rows=n, current_rows=n)
            full_drifted = {c.column for c in full_scores if c.drifted}
            sampled_drifted = {c.column for c in report.columns if c.drifted}
            rows_out.append(
                {
                    "rows": n,
                    "world": world,
                    "full report s": round(full_s, 1),
                    "full cpu s": round(full_cpu, 1),
                    "sampled report s": round(sampled_s, 1),
                    "sampled cpu s": round(sampled_cpu, 1),
                    "speed-up": round(full_s / sampled_s, 1) if not np.isnan(full_s) else None,
                    "full-data scores s": round(scores_s, 1),
                    "drifted cols full/sampled": f"{len(full_drifted)}/{len(sampled_drifted)}",
                    "same columns": full_drifted == sampled_drifted,
                    "verdict full": verdict_full.drifted,
                    "verdict sampled": verdict_sampled.drifted,
                    "agree": verdict_full.drifted == verdict_sampled.drifted,
                    "max |score diff|": round(
                        max(abs(a.score - b.score) for a, b in zip(full_scores, report.columns, strict=True)), 4
                    ),
                }
            )
            print(rows_out[-1], flush=True)
    table = pd.DataFrame(rows_out)
    print()
    print(
        f"Drift report, {args.columns} NBA-shaped inputs, sample {args.sample_rows:,} rows/side, "
        f"median of {args.repeats}:"
    )
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
