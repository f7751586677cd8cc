"""Feature repo benchmark: build, materialization (fast vs `feast materialize`, same run), point-in-time retrieval,
online reads (SQLite and Redis) through the nba_v1 feature service.

    uv run --frozen python -m benchmarks.bench_features                      # 20k customers x 90 days
    uv run --frozen python -m benchmarks.bench_features --customers 100000 --days 90 --entity-rows 100000

The world is simulated once per size under `<home>/bench/features/` and reused. Figures are printed and written to
`<home>/bench/features.json`. Timings on a shared 2-core machine are noisy: compare figures from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.memory import PeakRss
from nextbest.settings import Settings, load_settings


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    with PeakRss() as mem:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return out, seconds, mem.delta_mb


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms)
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)), "n": len(arr)}


def ensure_world(settings: Settings, customers: int, days: int, seed: int) -> None:
    if (settings.sources_dir / "customers").exists() or (settings.sources_dir / "customers.parquet").exists():
        return
    print(f"simulating {customers:,} customers x {days} days into {settings.world_dir} ...", flush=True)
    cmd = [str(Path(sys.executable).parent / "nextbest"), "simulate"]
    subprocess.run(
        [
            *cmd,
            "--customers",
            str(customers),
            "--days",
            str(days),
            "--seed",
            str(seed),
            "--out",
            str(settings.world_dir),
        ],
        check=True,
        env={**os.environ, "NEXTBEST_HOME": str(settings.home)},
    )


def read_latency(read: Callable[[int], Any], customers: np.ndarray, n: int) -> dict[str, float]:
    """p50/p99 of one-customer reads over random customers (after a warm-up)."""
    rng = np.random.default_rng(0)
    for c in customers[:20]:  # warm caches and the registry
        read(int(c))
    samples = []
    for c in rng.choice(customers, size=n):
        start = time.perf_counter()
        read(int(c))
        samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


def online_reads(store: Any, customers: np.ndarray, request: dict[str, Any], n: int) -> dict[str, dict[str, float]]:
    """nba_v1 through Feast's feature service (on-demand view), through `online_rows`, and churn_v1."""
    import nextbest.features as nf

    nba, churn = store.get_feature_service(nf.NBA_SERVICE), store.get_feature_service(nf.CHURN_SERVICE)
    return {
        "nba_v1 feature service (Feast ODFV)": read_latency(
            lambda c: store.get_online_features(features=nba, entity_rows=[{"customer_id": c, **request}]).to_dict(),
            customers,
            n,
        ),
        "nba_v1 online_rows (context in-process)": read_latency(
            lambda c: nf.online_rows(store, [c], service=nf.NBA_SERVICE, request=request), customers, n
        ),
        "churn_v1 feature service": read_latency(
            lambda c: store.get_online_features(features=churn, entity_rows=[{"customer_id": c}]).to_dict(),
            customers,
            n,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every-days", type=int, default=1, help="snapshot cadence (7 at 100k+ x 180 days)")
    parser.add_argument("--entity-rows", type=int, default=100_000, help="rows of the churn_v1 training set")
    parser.add_argument("--nba-rows", type=int, default=20_000, help="rows of the nba_v1 training set (on-demand view)")
    parser.add_argument("--reads", type=int, default=1_000, help="online reads per store")
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import nextbest.features as nf
    from feature_repo.specs import CHURN_SERVICE, NBA_SERVICE
    from nextbest.features.store import feature_tables_end

    base = load_settings()
    home = base.bench_dir / "features" / f"{args.customers}x{args.days}_s{args.seed}"
    settings = Settings(home=home)
    ensure_world(settings, args.customers, args.days, args.seed)
    results: dict[str, Any] = {"customers": args.customers, "days": args.days, "every_days": args.every_days}

    genome = nf.features_of(settings)
    assert isinstance(genome, nf.GenomeFeatures)
    paths, secs, mem = timed(lambda: genome.build(every_days=args.every_days))
    rows = {v: len(pd.read_parquet(p, columns=["customer_id"])) for v, p in paths.items()}
    results["build"] = {"seconds": secs, "peak_rss_delta_mb": mem, "rows": rows}
    print(f"build feature tables: {secs:.1f}s, +{mem:.0f} MB peak, rows {rows}", flush=True)

    online_db = settings.features_dir / "online_store.db"
    online_db.unlink(missing_ok=True)
    genome.apply()
    feast_stats = genome.materialize(method="feast")
    feast_db = online_db.with_name("online_store.feast.db")
    shutil.move(online_db, feast_db)
    genome = nf.features_of(settings)  # a new store: the online database file was moved away
    genome.apply()  # recreate the empty online tables
    fast_stats = genome.materialize(method="fast")
    results["materialize"] = {
        "values": fast_stats.values,
        "feast_seconds": feast_stats.seconds,
        "feast_values_per_s": feast_stats.values_per_s,
        "fast_seconds": fast_stats.seconds,
        "fast_values_per_s": fast_stats.values_per_s,
        "speedup": feast_stats.seconds / fast_stats.seconds,
    }
    print(
        f"materialize {fast_stats.values:,} values into SQLite: feast {feast_stats.seconds:.1f}s "
        f"({feast_stats.values_per_s:,.0f}/s), fast {fast_stats.seconds:.1f}s ({fast_stats.values_per_s:,.0f}/s), "
        f"x{feast_stats.seconds / fast_stats.seconds:.1f}",
        flush=True,
    )
    feast_db.unlink()

    store = nf.get_store(settings)
    snapshots = pd.read_parquet(paths["customer_profile"], columns=["customer_id", "event_timestamp"])
    rng = np.random.default_rng(args.seed)
    pick = snapshots.iloc[rng.integers(0, len(snapshots), args.entity_rows)]
    entity = pd.DataFrame(
        {
            "customer_id": pick["customer_id"].to_numpy(),
            "event_timestamp": pick["event_timestamp"].to_numpy()
            + pd.to_timedelta(rng.integers(0, 86_400, len(pick)), unit="s"),
        }
    )
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True)
    fs = store.get_feature_service(CHURN_SERVICE)
    pit: dict[str, Any] = {}
    for attempt in ("first", "second"):
        frame, secs, mem = timed(lambda: store.get_historical_features(entity_df=entity, features=fs).to_df())
        pit[attempt] = {"seconds": secs, "peak_rss_delta_mb": mem}
        print(f"PIT churn_v1 {len(frame):,} rows x {len(frame.columns)} cols ({attempt} call): {secs:.1f}s, "
              f"+{mem:.0f} MB", flush=True)  # fmt: skip
    nba_entity = entity.iloc[: args.nba_rows].assign(channel="app", hour_of_day=12, location_type="home")
    nba_entity["request_ts"] = (nba_entity["event_timestamp"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    frame, secs, mem = timed(
        lambda: store.get_historical_features(
            entity_df=nba_entity, features=store.get_feature_service(NBA_SERVICE)
        ).to_df()
    )
    pit["nba_v1"] = {"rows": len(frame), "seconds": secs, "peak_rss_delta_mb": mem}
    print(f"PIT nba_v1 {len(frame):,} rows (python on-demand view): {secs:.1f}s, +{mem:.0f} MB", flush=True)
    results["pit"] = {"entity_rows": args.entity_rows, **pit}

    customers = snapshots["customer_id"].unique()
    request = nf.request_context("app", at=feature_tables_end(settings), location_type="airport")
    reads = {"sqlite": online_reads(store, customers, request, args.reads)}
    if not args.no_redis:
        # Own registry (teardown deletes it), same offline tables; a unique project keeps the Redis keys apart.
        project = f"bench_features_{uuid.uuid4().hex[:8]}"
        redis_home = home.parent / f"{home.name}_redis"
        (redis_home / "features").mkdir(parents=True, exist_ok=True)
        link = redis_home / "features" / "offline"
        if not link.exists():
            link.symlink_to(settings.features_dir / "offline", target_is_directory=True)
        redis_settings = Settings(home=redis_home, features={"online_store": "redis", "project": project})
        redis_genome = nf.features_of(redis_settings)
        redis_store = redis_genome.store()
        try:
            redis_genome.apply()
            redis_feast = redis_genome.materialize(method="feast")
            redis_store.teardown()  # empty this project's keys and registry, then load again with the fast path
            redis_genome = nf.features_of(redis_settings)
            redis_store = redis_genome.store()
            redis_genome.apply()
            redis_fast = redis_genome.materialize(method="fast")
            results["materialize"]["redis_feast_values_per_s"] = redis_feast.values_per_s
            results["materialize"]["redis_fast_values_per_s"] = redis_fast.values_per_s
            print(
                f"materialize into Redis: feast {redis_feast.seconds:.1f}s ({redis_feast.values_per_s:,.0f}/s), "
                f"fast {redis_fast.seconds:.1f}s ({redis_fast.values_per_s:,.0f}/s)",
                flush=True,
            )
            reads["redis"] = online_reads(redis_store, customers, request, args.reads)
        finally:
            redis_store.teardown()
    results["online_reads"] = reads
    for backend, by_service in reads.items():
        for service, r in by_service.items():
            print(f"online read 1 customer, {backend}, {service}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms")
    out = base.bench_dir / "features.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"figures -> {out}")


if __name__ == "__main__":
    main()
