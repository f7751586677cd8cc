"""Benchmark: an outbound campaign over a 1M-customer base through the real engine, models, policy and decision log.

Run: `uv run --frozen python -m benchmarks.bench_campaign [--quick] [--customers 1000000] [--world-customers 2000]
[--channels email:400000,sms:budget=6000] [--slots 09:00] [--chunk 10000] [--workers 2] [--target-s 300]`
(`--quick`: 20,000).

A 1M-customer simulated world takes long to simulate and build (see bench_simulator, bench_features), so the base is
synthetic but served by the real thing: a small simulated world is built once (simulate, features, `churn` and
`nba` champions; kept under `<home>/bench/campaign/world`), then a copy of its home gets feature tables of
`--customers` customers: each view's latest rows (what materialization loads) repeated under new keys (key + r x
stride), so every synthetic customer is a real customer's feature row. `nextbest.jobs.campaign.run_campaign` then
runs unchanged on that home: the vectorized audience read, the dry-run proposals per channel, the allocation, the
real decisions logged to the project's SQLite decision log (5% universal holdout, 10% campaign control).

Prints seconds per stage, customers/s, peak memory (RSS above the start), the 1-minute load average before and after
(2 cores, shared: above ~2 others are running too), the machine's plain-Python speed (`benchmarks.machine`: wall
times of two sessions' machines compare only beside it) and "1M customers within --target-s: MET / NOT MET"; writes
JSON under `<home>/bench/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.machine import python_reference_s
from benchmarks.memory import PeakRss
from nextbest.settings import Settings, load_settings


def build_world(home: Path, customers: int, days: int = 100, seed: int = 11) -> None:
    """A small served world (what tests/serving_fixtures.py builds), once."""
    import nextbest.features as nbf
    from nextbest.simulator import SimulationConfig, simulate_world
    from training.pipeline import champion_even_below_floor, train_model
    from training.tune import TuningConfig

    if (home / "ready").is_file():
        return
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home)
    settings.ensure_dirs()
    simulate_world(SimulationConfig.build(customers=customers, days=days, seed=seed), settings.world_dir)
    for step in ("build", "apply", "materialize"):
        getattr(nbf.features_of(settings), step)()
    config = TuningConfig(max_rounds=25, early_stopping_rounds=5, warmup_rounds=5)
    for model, extra in (("churn", {"horizon_days": 14}), ("nba", {})):
        champion_even_below_floor(settings, train_model(settings, model, trials=1, config=config, **extra), "bench")
    (home / "ready").write_text(datetime.now(UTC).isoformat())


def scale_tables(world: Path, home: Path, customers: int) -> int:
    """A copy of `world` whose offline feature tables hold `customers` customers (latest rows, tiled); the count."""
    import duckdb

    from nextbest.features.project import feature_project
    from nextbest.project import load_project

    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(world, home, ignore=shutil.ignore_patterns("decisions.db*", "journal", "campaigns", "ready"))
    settings = Settings(home=home)
    features = feature_project(load_project(), settings)
    store = features.store()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    stride = base = 0
    for t in features.view_tables():
        high, distinct = con.execute(
            f'SELECT max("{t.key}"), count(DISTINCT "{t.key}") FROM read_parquet(?)', [str(t.path)]
        ).fetchone()
        stride, base = max(stride, int(high)), max(base, int(distinct))
    stride += 1
    reps = -(-customers // base)
    for t in features.view_tables():
        ttl = store.get_feature_view(t.name).ttl
        seconds = int(ttl.total_seconds()) if ttl else 10**9
        tmp = t.path.with_suffix(".scaled.parquet")
        con.execute(
            f"""COPY (
                WITH latest AS (SELECT * FROM read_parquet($path)
                    WHERE "{t.timestamp}" >= (SELECT max("{t.timestamp}") FROM read_parquet($path))
                        - INTERVAL '{seconds} seconds'
                    QUALIFY row_number() OVER (PARTITION BY "{t.key}" ORDER BY "{t.timestamp}" DESC) = 1)
                SELECT * REPLACE ("{t.key}" + r.range * {stride} AS "{t.key}")
                FROM latest CROSS JOIN range({reps}) AS r
                WHERE "{t.key}" + r.range * {stride} < {stride} * {reps}
                ORDER BY "{t.key}" + r.range * {stride}
            ) TO '{tmp}' (FORMAT parquet)""",
            {"path": str(t.path)},
        )
        tmp.replace(t.path)
    con.close()
    return min(customers, base * reps)


def scaled_world(root: Path, world_customers: int, customers: int) -> tuple[int, float, float]:
    """`build_world` under `root / "world"` (once) and its tables scaled to `customers` under `root / "scaled"`:
    (customers, seconds to build the world, seconds to scale), printed."""
    t0 = time.perf_counter()
    build_world(root / "world", world_customers)
    world_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = scale_tables(root / "world", root / "scaled", customers)
    scale_s = time.perf_counter() - t0
    print(f"world {world_customers:,} customers: {world_s:.0f} s; tables scaled to {n:,}: {scale_s:.0f} s")
    return n, world_s, scale_s


def campaign_spec(channels: str, slots: list[str], control: float) -> dict[str, Any]:
    out = []
    for part in channels.split(","):
        name, _, limit = part.partition(":")
        entry: dict[str, Any] = {"channel": name}
        if limit.startswith("budget="):
            entry["budget"] = float(limit.removeprefix("budget="))
        elif limit:
            entry["volume"] = int(limit)
        out.append(entry)
    return {"id": "bench_campaign", "channels": out, "send": {"date": "2026-09-01", "slots": slots},
            "control_share": control}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--world-customers", type=int, default=2_000)
    parser.add_argument("--channels", default="email:400000,sms:budget=6000")
    parser.add_argument("--slots", nargs="+", default=["09:00"])
    parser.add_argument("--control", type=float, default=0.1)
    parser.add_argument("--holdout", type=float, default=0.05)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes deciding the chunks")
    parser.add_argument("--target-s", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true", help="20,000 customers (the verdict is extrapolated to 1M)")
    args = parser.parse_args()
    if args.quick:
        args.customers = min(args.customers, 20_000)
    run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from nextbest.assignment import AssignmentConfig
    from nextbest.campaigns import parse_campaign
    from nextbest.jobs.campaign import run_campaign
    from nextbest.project import load_project

    root = load_settings().home / "bench" / "campaign"
    customers = scaled_world(root, args.world_customers, args.customers)[0]
    project = load_project()
    assert project.serving is not None
    assignment = AssignmentConfig.model_validate({"holdout": {"share": args.holdout}})
    project = project.model_copy(update={"serving": project.serving.model_copy(update={"assignment": assignment})})
    settings = Settings(home=root / "scaled")
    spec = parse_campaign(campaign_spec(args.channels, args.slots, args.control), "bench")
    reference_s = python_reference_s()
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    with PeakRss() as rss:
        result = run_campaign(spec, project, settings, chunk=args.chunk, workers=args.workers)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load_after = os.getloadavg()[0]
    out = {
        "customers": customers, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "customers_per_s": round(customers / wall), "peak_rss_mb": round(rss.delta_mb), "workers": args.workers,
        "load_before": round(load_before, 2), "load_after": round(load_after, 2), "python_reference_s": reference_s,
        "stages_s": result.seconds, "summary": result.summary, "channels": args.channels, "slots": args.slots,
        "decision_log_mb": round(os.path.getsize(settings.home / "decisions.db") / 1e6),
    }  # fmt: skip
    print(json.dumps(out, indent=1, default=str))
    scaled = wall * 1_000_000 / customers
    out["projected_1m_s"] = round(scaled)
    met = "MET" if scaled <= args.target_s else "NOT MET"
    how = "measured" if customers >= 1_000_000 else f"projected linearly from {customers:,}: {scaled:.0f} s"
    print(
        f"{customers:,} customers in {wall:.0f} s ({out['customers_per_s']:,}/s, peak +{out['peak_rss_mb']:,} MB, "
        f"load {load_before:.2f} -> {load_after:.2f}, Python reference {reference_s:.3f} s); "
        f"1M customers within {args.target_s:.0f} s ({how}): {met}"
    )
    folder = load_settings().home / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "campaign.json").write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
