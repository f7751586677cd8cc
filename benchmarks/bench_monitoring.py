"""Benchmark: the drift report at the closed loop's size (15k rows x 110 inputs) and at 1M rows x 60 inputs.

Run: `uv run --frozen python -m benchmarks.bench_monitoring [--cases 15000x110 1000000x60] [--repeats 1]
[--before]`

For each case and two worlds (planted drift on a few inputs, and no drift) it prints:
- seconds (wall and CPU) for `build_drift_report` as `nextbest monitor` and the loop run it: a seeded
  `DriftPolicy.sample_rows` sample per side (20,000 rows), the policy's scores and guards, and the Evidently report
  (the policy widget over every input, Evidently's ValueDrift for the drifted inputs and the nearest to their
  threshold, `DriftPolicy.report_columns`), against its target (15k x 110: <= 10 s, "seconds"; 1M x 60: <= 60 s);
- the verdict reached from the same stat tests on ALL rows (`monitoring.reports.score_columns`, no Evidently report)
  and whether it is the report's: same verdict, same drifted inputs, the largest score difference.
With `--before`, the first case is also timed with Evidently's full `DataDriftPreset` over every input
(`report_columns=None`, the report before this change). Inputs are synthetic frames shaped like the NBA model's
(heavy-tailed balances, counts, recencies with missing values, flags, one-hots, small categories).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import pandas as pd

from monitoring.drift import DriftPolicy, decide_drift
from monitoring.reports import build_drift_report, score_columns

TARGET_S = {(15_000, 110): 10.0, (1_000_000, 60): 60.0}


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


def _case(n: int, n_columns: int, world: str, args: argparse.Namespace) -> dict[str, object]:
    """One case: the report as the loop runs it, its target, and the verdict on all rows beside it."""
    drift = world == "planted drift"
    reference = nba_like_frame(n, n_columns, seed=1, drift=False)
    current = nba_like_frame(n, n_columns, seed=2, drift=drift)
    cols = list(reference.columns)
    # The model's "top-importance inputs" stand-in: the first 10 columns (they include the planted drift).
    policy = DriftPolicy(key_features=tuple(cols[:10]))
    load = os.getloadavg()[0]
    wall, cpu, report = _time(args.repeats, build_drift_report, reference, current, cols, policy=policy)
    verdict = decide_drift(policy, report.columns, reference_rows=n, current_rows=n)
    t0 = time.perf_counter()
    full_policy = policy.model_copy(update={"sample_rows": None})
    full_scores = score_columns(reference, current, cols, policy=full_policy)
    full_s = time.perf_counter() - t0
    verdict_full = decide_drift(full_policy, full_scores, reference_rows=n, current_rows=n)
    full_drifted = {c.column for c in full_scores if c.drifted}
    target = TARGET_S.get((n, n_columns))
    row: dict[str, object] = {
        "rows x inputs": f"{n:,} x {n_columns}",
        "world": world,
        "report s": round(wall, 2),
        "report cpu s": round(cpu, 2),
        "target s": target,
        "met": None if target is None else ("MET" if wall <= target else "NOT MET"),
        "rows used/side": report.summary["reference_rows_used"],
        "evidently ValueDrift cols": report.run._metadata.get("evidently_value_drift_columns", n_columns),
        "verdict": "drift" if verdict.drifted else "no drift",
        "drifted inputs": len(verdict.drifted_features),
        "full-data verdict": "drift" if verdict_full.drifted else "no drift",
        "full-data drifted inputs": len(full_drifted),
        "same verdict as full data": "yes" if verdict_full.drifted == verdict.drifted else "no",
        "same drifted inputs": "yes" if full_drifted == set(verdict.drifted_features) else "no",
        "max |score diff|": round(
            max(abs(a.score - b.score) for a, b in zip(full_scores, report.columns, strict=True)), 4
        ),
        "full-data scores s": round(full_s, 1),
        "load 1 min": round(load, 2),
    }
    if args.before and (n, n_columns) == _parse(args.cases[0]) and drift:
        before = policy.model_copy(update={"report_columns": None})
        b_wall, b_cpu, _ = _time(1, build_drift_report, reference, current, cols, policy=before)
        row["before (full preset) s"] = round(b_wall, 1)
        row["before cpu s"] = round(b_cpu, 1)
    return row


def _parse(case: str) -> tuple[int, int]:
    rows, columns = case.lower().split("x")
    return int(rows), int(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["15000x110", "1000000x60"], help="ROWSxINPUTS")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--before", action="store_true", help="also time the full preset on the first case")
    args = parser.parse_args()

    # Import (and warm) Evidently once so the first timing is not the import.
    t0 = time.perf_counter()
    warm = nba_like_frame(2_000, 5, 0, False)
    build_drift_report(warm, warm, list(warm.columns))
    print(f"evidently import + warm-up: {time.perf_counter() - t0:.1f} s, load {os.getloadavg()}")
    rows_out = []
    for case in args.cases:
        n, n_columns = _parse(case)
        for world in ("planted drift", "no drift"):
            rows_out.append(_case(n, n_columns, world, args))
            print(rows_out[-1], flush=True)
    print()
    print(f"Drift report, NBA-shaped inputs, median of {args.repeats}, load after {os.getloadavg()}:")
    print(pd.DataFrame(rows_out).to_string(index=False))
    for r in rows_out:
        if r["met"] is not None:
            print(
                f"target drift report {r['rows x inputs']} ({r['world']}) <= {r['target s']:g} s: {r['met']} "
                f"({r['report s']} s); same verdict as full data: {r['same verdict as full data']}"
            )


if __name__ == "__main__":
    main()
