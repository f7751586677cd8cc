"""Benchmark: the fast materialization of 1M customers' latest feature rows into SQLite and Redis (issue 17).

Run: `flock /tmp/heavy.lock uv run --frozen python -m benchmarks.bench_materialize [--customers 1000000]
[--world-customers 2000] [--no-redis] [--redis-db 14] [--repeats 2] [--feast-sample] [--profile out.prof]`

The base is bench_campaign's: a small simulated world is built once (`build_world`, under
`<home>/bench/materialize/world`), then a copy of its home gets feature tables of `--customers` customers, each view's
latest rows tiled under new keys (`scale_tables`), so every synthetic customer is a real customer's feature row.
Each run times `features_of(settings).materialize(method="fast")` end to end (DuckDB's latest-row read, encoding,
writing, the registry's interval) into SQLite (the copied home's online store) and, unless `--no-redis`, into
Redis db `--redis-db` (must be empty; flushed after) under its own Feast project. With `--repeats 2` the stores run
interleaved (sqlite, redis, sqlite, redis): the first run of each loads an empty store, the next rewrites a full one.
`--feast-sample` also times Feast's own `materialize` on the small world (SQLite), for its rate.

Prints per run: values, seconds, values/s, peak RSS above the start, the 1-minute load average before and after
(2 cores, shared), and per store "materialize 1M x N features within 60 s: MET / NOT MET" from the slowest run's seconds
(projected linearly to 1M below 1M customers); writes JSON to `<home>/bench/materialize.json`.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.bench_campaign import scaled_world
from benchmarks.machine import python_reference_s
from benchmarks.memory import PeakRss
from nextbest.settings import Settings, load_settings


def _redis_client(db: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=db)


def redis_settings(home: Path, db: int) -> Settings:
    """The scaled home with a Redis online store in db `db` under a project of its own, applied."""
    import nextbest.features as nbf

    settings = Settings(
        home=home,
        features={
            "online_store": "redis",
            "redis_connection_string": f"127.0.0.1:6379,db={db}",
            "project": f"bench_materialize_{uuid.uuid4().hex[:6]}",
        },
    )
    nbf.features_of(settings).apply()
    return settings


def timed_materialize(settings: Settings, store: str, state: str, profile: Path | None) -> dict[str, Any]:
    """One fast materialization of every view, timed end to end."""
    import nextbest.features as nbf

    features = nbf.features_of(settings)
    features.store()  # open the store (and its registry) outside the timing, as a running job has it open
    load_before = os.getloadavg()[0]
    profiler = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    with PeakRss() as rss:
        if profiler:
            profiler.enable()
        stats = features.materialize(method="fast")
        if profiler:
            profiler.disable()
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()[0]
    if profiler and profile:
        profiler.dump_stats(str(profile))
    out = {
        "store": store, "state": state, "rows": stats.rows, "features": stats.features, "values": stats.values,
        "seconds": round(wall, 2), "values_per_s": round(stats.values / wall), "peak_rss_mb": round(rss.delta_mb),
        "load_before": round(load_before, 2), "load_after": round(load_after, 2), "views": stats.views,
    }  # fmt: skip
    print(
        f"{store:6} into {state:5} store: {stats.values:,} values ({stats.rows:,} rows) in {wall:.1f} s "
        f"({out['values_per_s']:,} values/s), peak +{out['peak_rss_mb']:,} MB, "
        f"load {load_before:.2f} -> {load_after:.2f}",
        flush=True,
    )
    return out


def feast_sample(world: Path, home: Path) -> dict[str, Any]:
    """Feast's own materialization of the small world into a fresh SQLite store, for its rate."""
    import nextbest.features as nbf

    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(world, home, ignore=shutil.ignore_patterns("decisions.db*", "journal", "campaigns", "ready"))
    (home / "features" / "online_store.db").unlink(missing_ok=True)
    settings = Settings(home=home)
    features = nbf.features_of(settings)
    features.apply()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    stats = features.materialize(method="feast")
    wall = time.perf_counter() - t0
    out = {"store": "sqlite", "method": "feast", "values": stats.values, "seconds": round(wall, 2),
           "values_per_s": round(stats.values / wall), "load_before": round(load_before, 2),
           "load_after": round(os.getloadavg()[0], 2)}  # fmt: skip
    print(f"feast  path, small world: {stats.values:,} values in {wall:.1f} s ({out['values_per_s']:,} values/s)")
    return out


def verdicts(runs: list[dict[str, Any]], customers: int, target_s: float) -> dict[str, dict[str, Any]]:
    """Per store: the slowest run's seconds (empty or full store), projected to 1M below 1M, against the target."""
    out: dict[str, dict[str, Any]] = {}
    for store in dict.fromkeys(r["store"] for r in runs):
        mine = [r for r in runs if r["store"] == store]
        median = statistics.median(r["seconds"] for r in mine)
        slowest = max(r["seconds"] for r in mine)  # an empty and a full store must both be within the target
        projected = slowest * 1_000_000 / customers
        met = "MET" if projected <= target_s else "NOT MET"
        how = "measured" if customers >= 1_000_000 else f"projected from {customers:,}: {projected:.0f} s"
        features = mine[0]["features"]
        print(
            f"{store}: median {median:.1f} s, slowest {slowest:.1f} s "
            f"({statistics.median(r['values_per_s'] for r in mine):,.0f} values/s median); "
            f"materialize 1M x {features} features within {target_s:.0f} s ({how}): {met}"
        )
        out[store] = {"median_s": median, "slowest_s": slowest, "projected_1m_s": round(projected, 1), "verdict": met}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--world-customers", type=int, default=2_000)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--redis-db", type=int, default=14, help="an empty Redis db index (flushed after)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--target-s", type=float, default=60.0)
    parser.add_argument("--feast-sample", action="store_true", help="also time Feast's path on the small world")
    parser.add_argument("--profile", type=Path, help="cProfile the first SQLite run into this file")
    run(parser.parse_args())


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = load_settings().home / "bench" / "materialize"
    customers = scaled_world(root, args.world_customers, args.customers)[0]
    sqlite_home = root / "scaled"
    (sqlite_home / "features" / "online_store.db").unlink(missing_ok=True)
    import nextbest.features as nbf

    nbf.features_of(Settings(home=sqlite_home)).apply()  # a fresh, empty online store
    client = None
    if not args.no_redis:
        client = _redis_client(args.redis_db)
        if int(client.dbsize()) != 0:
            raise SystemExit(f"Redis db {args.redis_db} is not empty: pick a free one with --redis-db")
    reference_s = python_reference_s()
    runs: list[dict[str, Any]] = []
    redis_home: Settings | None = None
    try:
        for i in range(args.repeats):
            state = "empty" if i == 0 else "full"
            profile = args.profile if i == 0 else None
            runs.append(timed_materialize(Settings(home=sqlite_home), "sqlite", state, profile))
            if client is not None:
                redis_home = redis_home or redis_settings(sqlite_home, args.redis_db)
                runs.append(timed_materialize(redis_home, "redis", state, None))
    finally:
        if client is not None:
            client.flushdb()
    sample = feast_sample(root / "world", root / "feast-sample") if args.feast_sample else None
    out = {
        "customers": customers, "python_reference_s": reference_s, "runs": runs, "feast_sample": sample,
        "verdicts": verdicts(runs, customers, args.target_s),
    }  # fmt: skip
    print(f"Python reference {reference_s:.3f} s")
    folder = load_settings().bench_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "materialize.json").write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
