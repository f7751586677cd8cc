"""Training benchmark: Optuna trials per minute at 100k and 500k training rows, and point-in-time training-set
builds (time and peak memory) through Feast on a simulated world.

    uv run --frozen python -m benchmarks.bench_training                          # 100k + 500k rows, 3k-customer world
    uv run --frozen python -m benchmarks.bench_training --rows 100000 --trials 6 --threads 1,2
    uv run --frozen python -m benchmarks.bench_training --skip-tuning --world-customers 20000 --world-days 120

Tuning runs on SYNTHETIC rows with the real NBA feature count (nba_v1 features + action features): the default
world has only thousands of contacts, far from 100k. Trials use the real study code (`training.tune.run_study`:
QuantileDMatrix built once, early stopping, pruning callback) on in-memory Optuna storage and on SQLite storage
side by side, so the cost of the RDB storage is visible. The training-set builds run the real
`build_churn_training_set` / `build_nba_training_set` against a world simulated under `<home>/bench/training/`
(reused across runs). Figures are printed and written to `<home>/bench/training.json`. The machine is shared:
compare figures from one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import psutil

from benchmarks.memory import PeakRss
from nextbest.settings import Settings, load_settings


def nba_feature_count() -> int:
    from nextbest.features import ACTION_FEATURES, NBA_SERVICE, service_features

    return len(service_features(NBA_SERVICE)) + len(ACTION_FEATURES)


def bench_tuning(
    rows: int, features: int, trials: int, threads: int, storage_dir: Path, with_sqlite: bool
) -> dict[str, Any]:
    """Trials per minute of the real study loop at `rows` training rows (+25% validation rows)."""
    from nextbest.models.artefact import matrix_from_frame
    from training.datasets import LABEL, time_split
    from training.synthetic import synthetic_training_set
    from training.tune import TuningConfig, make_tuning_data, run_study

    # rows = training rows; the synthetic set also carries validation and test rows around them.
    ts = synthetic_training_set(rows=int(rows / 0.6), features=features, seed=1, days=120, base_rate=0.06)
    splits = time_split(ts.frame)
    with PeakRss() as mem:
        t0 = time.perf_counter()
        data = make_tuning_data(
            matrix_from_frame(splits.train, ts.feature_names),
            splits.train[LABEL].to_numpy(),
            matrix_from_frame(splits.valid, ts.feature_names),
            splits.valid[LABEL].to_numpy(),
            ts.feature_names,
            nthread=threads,
        )
        matrix_s = time.perf_counter() - t0
    config = TuningConfig(nthread=threads)
    out: dict[str, Any] = {
        "train_rows": len(splits.train),
        "valid_rows": len(splits.valid),
        "features": features,
        "threads": threads,
        "quantile_dmatrix_s": round(matrix_s, 2),
        "dmatrix_peak_rss_delta_mb": round(mem.delta_mb, 1),
    }
    storages: list[tuple[str, str | None]] = [("memory", None)]
    if with_sqlite:
        storages.append(("sqlite", f"sqlite:///{storage_dir / f'bench-{rows}-{threads}.db'}"))
    for label, storage in storages:
        if storage:
            Path(storage.removeprefix("sqlite:///")).unlink(missing_ok=True)
        t0 = time.perf_counter()
        study = run_study(data, trials, study_name=f"bench-{rows}", storage=storage, seed=7, config=config)
        elapsed = time.perf_counter() - t0
        fits = [t.user_attrs.get("fit_seconds") for t in study.trials if t.user_attrs.get("fit_seconds")]
        pruned = sum(t.state.name == "PRUNED" for t in study.trials)
        out[label] = {
            "trials": trials,
            "pruned": pruned,
            "seconds": round(elapsed, 1),
            "trials_per_minute": round(60 * trials / elapsed, 2),
            "median_fit_s": round(statistics.median(fits), 2) if fits else None,
        }
    if with_sqlite:
        out["sqlite_vs_memory_time_ratio"] = round(out["sqlite"]["seconds"] / out["memory"]["seconds"], 2)
    return out


def bench_scoring(features: int, repeats: int = 2_000) -> dict[str, Any]:
    """LoadedModel hot path: calibrated predict_proba and approximate contributions, 1 and 20 rows (p50/p99 ms)."""
    import numpy as np
    import xgboost as xgb

    from nextbest.models.artefact import LoadedModel
    from nextbest.models.calibration import Calibrator

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, features)).astype(np.float32)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(X[:, 0] - 3)))).astype(np.float32)
    names = [f"f{i:03d}" for i in range(features)]
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(X, label=y, feature_names=names), num_boost_round=300)
    model = LoadedModel("bench", "0", None, booster, Calibrator(method="platt", a=0.9, b=-0.1), names)
    model.booster.set_param({"nthread": 1})

    def timed(fn: Any, n: int) -> tuple[float, float]:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        ordered = sorted(samples)
        return round(statistics.median(ordered), 3), round(ordered[int(0.99 * (len(ordered) - 1))], 3)

    one, twenty = X[:1], X[:20]
    out: dict[str, Any] = {"trees": 300, "features": features}
    out["predict_proba_1_row_ms"] = timed(lambda: model.predict_proba(one), repeats)
    out["predict_proba_20_rows_ms"] = timed(lambda: model.predict_proba(twenty), repeats)
    dm_predict = lambda: booster.predict(xgb.DMatrix(twenty, feature_names=names, nthread=1))  # noqa: E731
    out["dmatrix_predict_20_rows_ms"] = timed(dm_predict, repeats)
    out["contributions_approx_20_rows_ms"] = timed(lambda: model.contributions(twenty), repeats // 10)
    return out


def ensure_world(home: Path, customers: int, days: int, seed: int) -> Settings:
    """A simulated world with feature tables and the applied Feast repo under `home` (reused if present)."""
    from nextbest import features
    from nextbest.simulator import SimulationConfig, simulate_world

    settings = Settings(home=home)
    marker = home / "ready.json"
    wanted = {"customers": customers, "days": days, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return settings
    simulate_world(SimulationConfig.build(customers=customers, days=days, seed=seed), settings.world_dir)
    features.features_of(settings).build()
    features.features_of(settings).apply()
    marker.write_text(json.dumps(wanted))
    return settings


def bench_training_sets(settings: Settings, repeats: int) -> dict[str, Any]:
    """Median time and peak RSS of the point-in-time training-set builds (first call reported apart: cold)."""
    from training.datasets import build_churn_training_set, build_nba_training_set

    out: dict[str, Any] = {}
    for name, build in (("churn_v1", build_churn_training_set), ("nba_v1", build_nba_training_set)):
        times, peaks, rows, features = [], [], 0, 0
        for _ in range(repeats):
            with PeakRss() as mem:
                t0 = time.perf_counter()
                ts = build(settings)
                times.append(time.perf_counter() - t0)
            peaks.append(mem.delta_mb)
            rows, features = len(ts.frame), len(ts.feature_names)
        out[name] = {
            "rows": rows,
            "features": features,
            "first_s": round(times[0], 2),
            "median_s": round(statistics.median(times[1:] or times), 2),
            "rows_per_s": round(rows / statistics.median(times[1:] or times)),
            "peak_rss_delta_mb": round(max(peaks), 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,500000", help="training rows per tuning size (comma list)")
    parser.add_argument("--trials", type=int, default=3, help="trials per study")
    parser.add_argument("--threads", default="1", help="XGBoost threads to compare (comma list, e.g. 1,2)")
    parser.add_argument("--world-customers", type=int, default=3_000)
    parser.add_argument("--world-days", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3, help="training-set builds per service")
    parser.add_argument("--skip-tuning", action="store_true")
    parser.add_argument("--skip-datasets", action="store_true")
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    settings = load_settings()
    bench_dir = settings.bench_dir / "training"
    bench_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": {"cpus": psutil.cpu_count(), "load_avg": psutil.getloadavg()}}

    if not args.skip_tuning:
        features = nba_feature_count()
        results["tuning"] = []
        sizes = sorted(int(r) for r in args.rows.split(","))
        for rows in sizes:
            for threads in (int(t) for t in args.threads.split(",")):
                # SQLite vs in-memory storage side by side at the smallest size only (the storage cost is per
                # trial and per report, not per row; repeating it at 500k would double a long run).
                r = bench_tuning(rows, features, args.trials, threads, bench_dir, with_sqlite=rows == sizes[0])
                results["tuning"].append(r)
                sqlite = f", {r['sqlite']['trials_per_minute']:.2f} on SQLite storage" if "sqlite" in r else ""
                print(
                    f"tuning {r['train_rows']:>7,} rows x {features} features, {threads} thread(s): "
                    f"{r['memory']['trials_per_minute']:.2f} trials/min in memory{sqlite} "
                    f"(median fit {r['memory']['median_fit_s']} s, pruned {r['memory']['pruned']}/{args.trials}; "
                    f"QuantileDMatrix {r['quantile_dmatrix_s']} s, +{r['dmatrix_peak_rss_delta_mb']} MB)",
                    flush=True,
                )

    scoring = bench_scoring(nba_feature_count())
    results["scoring"] = scoring
    print(
        f"LoadedModel ({scoring['trees']} trees, {scoring['features']} features, 1 thread) p50/p99 ms: "
        f"predict_proba 1 row {scoring['predict_proba_1_row_ms']}, 20 rows {scoring['predict_proba_20_rows_ms']} "
        f"(DMatrix + predict 20 rows {scoring['dmatrix_predict_20_rows_ms']}); "
        f"approx contributions 20 rows {scoring['contributions_approx_20_rows_ms']}",
        flush=True,
    )

    if not args.skip_datasets:
        world = ensure_world(
            bench_dir / f"world-{args.world_customers}x{args.world_days}", args.world_customers, args.world_days, 11
        )
        results["training_sets"] = bench_training_sets(world, args.repeats)
        for name, r in results["training_sets"].items():
            print(
                f"point-in-time training set {name}: {r['rows']:,} rows x {r['features']} features, "
                f"first {r['first_s']} s, median {r['median_s']} s ({r['rows_per_s']:,} rows/s), "
                f"peak RSS +{r['peak_rss_delta_mb']} MB",
                flush=True,
            )

    out = settings.bench_dir / "training.json"
    # Merge with earlier partial runs (--skip-*) so the file keeps the latest figure of every section.
    previous = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**previous, **results}, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
