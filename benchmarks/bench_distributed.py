"""The distributed path (`compute: dask`, docs/scale.md) against the single-process path, 1 vs 2 Dask workers.

Three jobs, each run in this process (local) and on a LocalCluster of 1 and of 2 worker processes (one thread
each), with the check that the distributed result equals the local one:
- the simulator's chunks (a medium world): wall time; the world's files byte for byte equal to the local run's;
- an Optuna study of `--trials` trials on synthetic rows, every trial XGBoost's defaults (the same work on every
  engine): wall time (the trials on the workers, one study);
- the recipe (early-stopped booster + refit) by `xgboost.dask` vs the single-process recipe with the same
  parameters on the same rows: wall time and the test AUC / log-loss difference.
The cluster's start-up (spawning the workers) is timed apart. Load average and CPU count beside every figure:
the 2-core development machine is shared, so 2 workers only pay off when the second core is free.

    uv run --frozen python -m benchmarks.bench_distributed                  # 50k customers x 180 days, 100k rows
    uv run --frozen python -m benchmarks.bench_distributed --quick          # 10k x 60 days, 20k rows, 4 trials
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nextbest.settings import load_settings


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, (load + os.getloadavg()[0]) / 2, out


def _rows(n: int, features: int, seed: int) -> tuple[Any, Any, Any, list[str]]:
    from training.recipe import Rows
    from training.synthetic import synthetic_training_set

    frame = synthetic_training_set(rows=n, features=features, seed=seed).frame
    names = [c for c in frame.columns if c.startswith("f")]
    X, y = frame[names].to_numpy(np.float32), frame["label"].to_numpy(np.float32)
    a, b = int(0.6 * n), int(0.8 * n)
    return Rows(X[:a], y[:a]), Rows(X[a:b], y[a:b]), Rows(X[b:], y[b:]), names


def _jobs(args: argparse.Namespace, work: Path) -> dict[str, Callable[[Any], Any]]:
    """name -> job(dask client or None); each returns what the equality check compares."""
    from nextbest.simulator import SimulationConfig, simulate_world
    from training.dask_train import fit_recipe_dask, run_study_dask
    from training.metrics import binary_metrics
    from training.recipe import fit_recipe
    from training.tune import DEFAULT_TRIAL, TuningConfig, booster_params, create_study, make_tuning_data, run_study

    sim = SimulationConfig(customers=args.customers, days=args.days, seed=1, chunk_size=args.chunk_size)
    train, valid, test, names = _rows(args.rows, 30, 3)
    config = TuningConfig(max_rounds=300, early_stopping_rounds=20)
    runs = iter(range(1_000))
    # Warm this process as the clusters' workers are warmed: imports, the study database's schema, one tiny fit.
    create_study("warm-up", f"sqlite:///{work / 'optuna.db'}", seed=7, config=config)
    fit_recipe(booster_params(DEFAULT_TRIAL, seed=7, nthread=1), train, valid, TuningConfig(max_rounds=2))

    def simulate(dask: Any) -> str:
        out = work / f"world-{next(runs)}"
        simulate_world(sim, out, workers=1, dask=dask)
        digest = _digest(out)
        shutil.rmtree(out)
        return digest

    def study(dask: Any) -> int:
        storage, name = f"sqlite:///{work / 'optuna.db'}", f"bench-{next(runs)}"
        # The same work on every engine: `--trials` trials of XGBoost's defaults, queued before the study runs
        # (sampled trials would differ in cost with the sampler's seeds, and so would the timings).
        queued = create_study(name, storage, seed=7, config=config)
        for _ in range(args.trials):
            queued.enqueue_trial(DEFAULT_TRIAL, skip_if_exists=False)
        if dask is None:
            data = make_tuning_data(train.X, train.y, valid.X, valid.y, names)
            s = run_study(data, args.trials, study_name=name, storage=storage, seed=7, config=config)
        else:
            s = run_study_dask(dask, train, valid, names, args.trials, study_name=name, storage=storage, seed=7,
                               config=config)  # fmt: skip
        return len(s.trials)

    def recipe(dask: Any) -> dict[str, float]:
        params = booster_params(DEFAULT_TRIAL, seed=7, nthread=1)
        if dask is None:
            fit = fit_recipe(params, train, valid, config, feature_names=names)
        else:
            fit = fit_recipe_dask(dask, params, train, valid, config, feature_names=names)
        m = binary_metrics(test.y, fit.predict_proba(test.X))
        return {"roc_auc": m["roc_auc"], "log_loss": m["log_loss"], "rounds": fit.rounds}

    return {"simulator": simulate, "study": study, "recipe": recipe}


def _same(job: str, local: Any, other: Any) -> str:
    if job == "simulator":
        return "same bytes" if local == other else "DIFFERENT"
    if job == "study":
        return f"{other} trials" if local == other else f"{other} trials, local {local}"
    d_auc, d_ll = other["roc_auc"] - local["roc_auc"], other["log_loss"] - local["log_loss"]
    rounds = f"rounds {other['rounds']} (local {local['rounds']})"
    return f"AUC {other['roc_auc']:.4f} ({d_auc:+.4f}), log-loss {d_ll:+.4f}, {rounds}"


def _warm() -> None:
    import optuna  # noqa: F401
    import xgboost.dask  # noqa: F401

    import nextbest.simulator.world  # noqa: F401
    import training.tune  # noqa: F401


def main() -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--chunk-size", type=int, default=12_500)
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic training rows (60/20/20 split)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1], help="cluster sizes, in this order")
    parser.add_argument("--quick", action="store_true", help="10k customers x 60 days, 20k rows, 4 trials")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.days, args.chunk_size, args.rows, args.trials = 10_000, 60, 2_500, 20_000, 4

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        jobs = _jobs(args, Path(tmp))
        local = {}
        for name, job in jobs.items():
            seconds, load, local[name] = _timed(lambda job=job: job(None))
            results.append({"job": name, "engine": "local", "workers": 1, "seconds": seconds, "load": load,
                            "check": "reference"})  # fmt: skip
            print(f"{name:<10} local      {seconds:7.1f} s  load {load:.1f}", flush=True)
        for n in args.workers:
            t0 = time.perf_counter()
            with (
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
                Client(cluster, set_as_default=False) as dask,
            ):
                dask.wait_for_workers(n)
                dask.run(_warm)  # the workers' first imports count as start-up, not as the jobs' time
                start = time.perf_counter() - t0
                print(f"cluster    dask x{n}    {start:7.1f} s  (start-up: spawn + first imports)", flush=True)
                for name, job in jobs.items():
                    seconds, load, out = _timed(lambda job=job: job(dask))
                    check = _same(name, local[name], out)
                    results.append({"job": name, "engine": "dask", "workers": n, "seconds": seconds, "load": load,
                                    "check": check, "cluster_start_s": start})  # fmt: skip
                    print(f"{name:<10} dask x{n}    {seconds:7.1f} s  load {load:.1f}  {check}", flush=True)

    _report(results, args)


def _report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nDistributed path: simulator {args.customers:,} customers x {args.days} days (chunks of "
        f"{args.chunk_size:,}); study of {args.trials} trials and the recipe on {args.rows:,} synthetic rows x 30 "
        f"features; {os.cpu_count()} CPUs"
    )
    print(f"{'job':<10} {'engine':<7} {'workers':>7} {'time s':>8} {'load':>5} {'vs local':>9}  check")
    base = {r["job"]: r["seconds"] for r in results if r["engine"] == "local"}
    for r in results:
        ratio = base[r["job"]] / r["seconds"]
        print(f"{r['job']:<10} {r['engine']:<7} {r['workers']:>7} {r['seconds']:>8.1f} {r['load']:>5.1f} "
              f"{ratio:>8.2f}x  {r['check']}")  # fmt: skip
    out = load_settings().bench_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributed.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"vs local: local time / this time (above 1: faster). JSON: {out / 'distributed.json'}")


if __name__ == "__main__":
    main()
