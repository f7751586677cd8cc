"""The capacity plan for 100 M customers and 10k decisions/s, replayed from measured per-stage costs.

    uv run --frozen python -m benchmarks.capacity --measure-redis   # once: bytes per customer in Redis (db 9)
    uv run --frozen python -m benchmarks.capacity [--customers 100000000] [--rate 10000] [--p99-ms 10]

Inputs, all measured on the 2-core development machine (docs/benchmarks.md):
- serving: `<bench_dir>/serving.json` from `benchmarks.bench_serving` -- the in-process service-time distribution
  of one decision (100 percentiles of 300 decisions) and the CPU time per request of the whole service (BentoML
  workers, HTTP, decision log; median of the interleaved runs) and of redis-server;
- the online store: `--measure-redis` materializes the serving world's feature tables into a dedicated Redis db
  index (default 9, refused unless empty, flushed after), reads `MEMORY USAGE` of a sample of customer keys and
  the fast path's write rate, and writes `<bench_dir>/capacity_redis.json`;
- batch stages (materialization, point-in-time training sets, XGBoost fits, the simulator, the campaign): the
  figures of docs/benchmarks.md, named in `BATCH` with the row they come from.

What it prints, each figure with the model behind it:
- service replicas: a discrete-event simulation of Poisson arrivals at `--rate` over N replicas of `--cores`
  worker processes each (M/G/c, FIFO per replica, arrivals split evenly), service times drawn from the measured
  distribution scaled to the measured CPU per request; the smallest N whose p99 (queueing + service) is within
  `--p99-ms` with one replica lost, and the utilization;
- the Redis cluster: shards for memory (measured bytes per customer x customers, `--shard-gb` of data per shard)
  and for throughput (measured redis CPU per request x rate, a shard kept under half busy), one replica each;
- windows: materialization, a training set and a tuning run, the campaign over the whole base, the simulator,
  each for a worker count (linear in workers: an assumption, stated);
- the first bottleneck: on today's single 2-core machine, the customer count at which each stage runs out (decisions
  scale with customers: `--rate` at `--customers`), smallest first.
Results also go to `<bench_dir>/capacity.json`.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from nextbest.settings import Settings, load_settings

# Batch-stage costs measured on this machine (docs/benchmarks.md, the row each comes from).
BATCH: dict[str, dict[str, Any]] = {
    "fit_100k": {"rows": 98_742, "seconds": 8.3, "src": "Training: tuning, 98,742 rows x 121 features (fit ~8.3 s)"},
    "fit_500k": {"rows": 493_428, "seconds": 49.0, "src": "Training: tuning, 493,428 rows x 121 features (fit ~49 s)"},
    "pit_100k": {"rows": 100_000, "seconds": 22.4, "src": "Feature repo: point-in-time retrieval, 100k entity rows"},
    "sim_1m": {
        "customers": 1_000_000,
        "days": 180,
        "cpu_s": 293.0,
        "wall_s": 548.6,
        "workers": 2,
        "src": "Simulator: 1M customers x 180 days, 2 workers",
    },
    "sim_100k": {
        "customers": 100_000,
        "days": 180,
        "cpu_s": 33.5,
        "wall_s": 89.9,
        "workers": 2,
        "src": "Simulator: 100k customers x 180 days, 2 workers",
    },
    "campaign_1w": {"customers_per_s": 740.0, "workers": 1, "src": "Outbound campaign: 20k, 1 worker"},
    "campaign_2w": {"customers_per_s": 1_843.0, "workers": 2, "src": "Outbound campaign: 1M, 2 workers"},
    "serving_1w": {"rps": 398.0, "workers": 1, "src": "Serving: highest throughput, 1 worker, SQLite (quiet)"},
    "serving_2w": {"rps": 717.0, "workers": 2, "src": "Serving: highest throughput, 2 workers, SQLite (quiet)"},
    "decision_record_kb": {"kb": 8.5, "src": "Outbound campaign: a logged decision record, about 8.5 KB"},
}


# ---------------------------------------------------------------- measuring Redis


def _redis(db: int, *args: str) -> str:
    """redis-cli's answer as text (keys are binary: undecodable bytes replaced)."""
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "-n", str(db), *args],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return out.stdout.decode("utf-8", errors="replace").strip()


def customer_ids(world: Settings) -> np.ndarray:
    import pandas as pd

    return pd.read_parquet(world.sources_dir / "customers", columns=["customer_id"])["customer_id"].unique()


def measure_redis(world: Settings, db: int, sample: int, out: Path) -> dict[str, Any]:
    """Materialize `world`'s feature tables into Redis db `db` (must be empty), measure, then empty it again."""
    import nextbest.features as nf

    if int(_redis(db, "DBSIZE") or 0) != 0:
        sys.exit(f"Redis db {db} is not empty: pick a free index with --redis-db (this command flushes it after)")
    home = world.bench_dir / f"capacity-redis-{uuid.uuid4().hex[:6]}"
    (home / "features").mkdir(parents=True, exist_ok=True)
    (home / "features" / "offline").symlink_to(world.features_dir / "offline", target_is_directory=True)
    redis_settings = Settings(
        home=home,
        features={
            "online_store": "redis",
            "project": f"capacity_{uuid.uuid4().hex[:6]}",
            "redis_connection_string": f"127.0.0.1:6379,db={db}",
        },
    )
    genome = nf.features_of(redis_settings)
    store = genome.store()
    try:
        genome.apply()
        stats = genome.materialize(method="fast")
        import redis as redis_py

        client = redis_py.Redis(host="127.0.0.1", port=6379, db=db)
        keys = int(client.dbsize())
        names = [client.randomkey() for _ in range(min(sample, keys))]  # Feast: one hash per entity key (binary)
        sizes = [int(client.memory_usage(name, samples=0) or 0) for name in names if name]
        bigkeys = _redis(db, "--bigkeys")
        result = {
            "customers": len(customer_ids(world)),
            "keys": keys,
            "sampled_keys": len(sizes),
            "bytes_per_key_mean": float(np.mean(sizes)),
            "bytes_per_key_p99": float(np.percentile(sizes, 99)),
            "values": stats.values,
            "rows": stats.rows,
            "features": stats.features,
            "materialize_seconds": stats.seconds,
            "materialize_values_per_s": stats.values_per_s,
            "views": stats.views,
            "bigkeys_summary": [ln for ln in bigkeys.splitlines() if "found" in ln.lower() or "biggest" in ln.lower()],
        }
    finally:
        store.teardown()
        _redis(db, "FLUSHDB")  # the dedicated index only (checked empty before)
    result["db_keys_after_cleanup"] = int(_redis(db, "DBSIZE"))
    out.write_text(json.dumps(result, indent=2, default=str))
    return result


# ---------------------------------------------------------------- the service: M/G/c replayed


def service_times(serving: dict[str, Any], store: str) -> tuple[np.ndarray, float, float, str]:
    """(service-time percentiles in ms, CPU ms per request, redis CPU ms per request, source) for `store`.

    The CPU per request is the median run's, over the wrk levels answered without errors (a fixed-rate run the
    server could not keep up with also counts its cheap error answers, so it reads low)."""
    prof = serving["profile_ms"]
    key = "bentoml_redis" if store == "redis" else "bentoml"
    levels = [r for r in serving["median"][key]["wrk"] if r["errors"] == 0] or [serving["median"][key]["fixed"]]
    q = np.asarray(prof["total_ms_quantiles"], dtype=float)
    cpu = float(np.median([r["cpu_ms_per_req"] for r in levels]))
    redis_cpu = float(np.median([r["redis_cpu_ms_per_req"] for r in levels]))
    source = f"{key}: median run, wrk c={','.join(str(int(r.get('connections', 0))) for r in levels)}"
    # A request costs its measured CPU (decision + framework + HTTP + log writer): scale the decision's shape to it.
    return q * (cpu / float(np.mean(q))), cpu, redis_cpu, source


def simulate_replica(rate: float, cores: int, quantiles: np.ndarray, requests: int, seed: int = 0) -> dict[str, float]:
    """One replica of `cores` workers fed Poisson arrivals at `rate`/s (FIFO: each arrival, in order, to the first
    free worker); service times drawn from the measured percentiles. Latency = wait + service, ms."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1e3 / rate, requests))
    services = quantiles[rng.integers(0, len(quantiles), requests)] * rng.uniform(0.9, 1.1, requests)
    free = [0.0] * cores
    latency = np.empty(requests)
    for i in range(requests):
        t = arrivals[i]
        start = max(t, heapq.heappop(free))
        done = start + services[i]
        heapq.heappush(free, done)
        latency[i] = done - t
    warm = requests // 10
    return {
        "p50_ms": float(np.percentile(latency[warm:], 50)),
        "p99_ms": float(np.percentile(latency[warm:], 99)),
        "utilization": float(services.sum() / (cores * arrivals[-1])),
    }


def plan_replicas(args: argparse.Namespace, quantiles: np.ndarray) -> dict[str, Any]:
    """The smallest replica count whose p99 holds, plus one so that losing a replica keeps it. When the service time
    alone exceeds the target at p99 no replica count can meet it: then the count that keeps workers 60% busy."""
    mean = float(np.mean(quantiles))
    n0 = max(1, math.ceil(args.rate * mean / 1e3 / args.cores / 0.95))  # fewer cannot keep up at all
    curve, met = [], None
    n = n0
    while n <= 4 * n0 + 2:
        sim = simulate_replica(args.rate / n, args.cores, quantiles, args.requests)
        curve.append({"replicas": n, **sim})
        if sim["p99_ms"] <= args.p99_ms:
            met = n
            break
        if len(curve) >= 4 and curve[-1]["p99_ms"] > 0.98 * curve[-4]["p99_ms"]:
            break  # p99 stopped falling: the service time's own tail, more replicas cannot help
        n += 1 if sim["p99_ms"] < 2 * args.p99_ms else max(1, n // 10)
    n = met if met is not None else math.ceil(args.rate * mean / 1e3 / args.cores / 0.6)
    planned = n + 1  # one replica lost: the other n still carry the rate
    nominal = simulate_replica(args.rate / planned, args.cores, quantiles, args.requests, seed=1)
    return {
        "service_p99_ms": float(np.percentile(quantiles, 99)),
        "target_reachable": met is not None,
        "replicas_min": n,
        "replicas_planned": planned,
        "cores": planned * args.cores,
        "nominal": nominal,
        "curve": curve[:3] + curve[3:][-3:],
    }


# ---------------------------------------------------------------- batch stages


def fit_seconds(rows: float) -> tuple[float, float]:
    """(seconds, exponent): one XGBoost fit at `rows`, a power law through the two measured sizes."""
    a, b = BATCH["fit_100k"], BATCH["fit_500k"]
    k = math.log(b["seconds"] / a["seconds"]) / math.log(b["rows"] / a["rows"])
    return a["seconds"] * (rows / a["rows"]) ** k, k


def batch_plan(args: argparse.Namespace, redis: dict[str, Any]) -> dict[str, Any]:
    """Windows of the batch stages at `--customers` for `--batch-workers` workers (linear in workers, assumed)."""
    w, n = args.batch_workers, args.customers
    values_per_customer = redis["values"] / redis["customers"]
    mat_rate = redis["materialize_values_per_s"]
    fit_1m, k = fit_seconds(1e6)
    fit_10m, _ = fit_seconds(1e7)
    sim = BATCH["sim_1m"]
    per_worker_campaign = BATCH["campaign_2w"]["customers_per_s"] / BATCH["campaign_2w"]["workers"]
    return {
        "values_per_customer": values_per_customer,
        "materialize_hours": n * values_per_customer / mat_rate / w / 3600,
        "materialize_rate_per_worker": mat_rate,
        "pit_1m_rows_s": BATCH["pit_100k"]["seconds"] * 10,
        "pit_10m_rows_h": BATCH["pit_100k"]["seconds"] * 100 / 3600,  # one process: the join is not distributed
        "fit_exponent": k,
        "fit_1m_s": fit_1m,
        "fit_10m_s": fit_10m,
        "tuning_10m_h": args.trials * fit_10m / w / 3600,
        "campaign_hours": n / per_worker_campaign / w / 3600,
        "campaign_per_worker": per_worker_campaign,
        "campaign_scaling_1_to_2": BATCH["campaign_2w"]["customers_per_s"] / BATCH["campaign_1w"]["customers_per_s"],
        "simulator_hours": sim["cpu_s"] * n / sim["customers"] / w / 3600,
        "serving_scaling_1_to_2": BATCH["serving_2w"]["rps"] / BATCH["serving_1w"]["rps"],
    }


def redis_plan(args: argparse.Namespace, redis: dict[str, Any], redis_cpu_ms: float) -> dict[str, Any]:
    bytes_per_customer = redis["bytes_per_key_mean"] * redis["keys"] / redis["customers"]
    data_gb = args.customers * bytes_per_customer / 1e9
    memory_shards = math.ceil(data_gb / args.shard_gb)
    busy = args.rate * redis_cpu_ms / 1e3  # cores of redis-server the reads keep busy
    throughput_shards = math.ceil(busy / 0.5)
    shards = max(memory_shards, throughput_shards)
    return {
        "bytes_per_customer": bytes_per_customer,
        "data_gb": data_gb,
        "memory_shards": memory_shards,
        "read_cores_busy": busy,
        "throughput_shards": throughput_shards,
        "shards": shards,
        "nodes": 2 * shards,
        "keys_per_customer": redis["keys"] / redis["customers"],
    }


def first_bottleneck(
    args: argparse.Namespace, cpu_ms: float, log_ms: float, rp: dict[str, Any], bp: dict[str, Any]
) -> list[dict[str, Any]]:
    """On today's machine (2 cores, one process per stage), the customer count where each stage runs out."""
    per_customer_rate = args.rate / args.customers  # decisions/s per customer at peak
    serving_rps = 2 * 1e3 / cpu_ms * 0.7  # two cores at 70% busy (queueing beyond)
    node_bytes = args.shard_gb * 1e9
    limits = [
        ("serving: 2 cores at 70% busy", serving_rps / per_customer_rate),
        (
            f"materialization within {args.window_h:g} h (1 process)",
            bp["materialize_rate_per_worker"] * args.window_h * 3600 / bp["values_per_customer"],
        ),
        (
            f"campaign over the whole base within {args.window_h:g} h (2 workers)",
            BATCH["campaign_2w"]["customers_per_s"] * args.window_h * 3600,
        ),
        (f"online store in one Redis of {args.shard_gb:g} GB", node_bytes / rp["bytes_per_customer"]),
        (
            f"decision log: one writer at {log_ms:.2f} ms a decision (its write-through stage)",
            1e3 / log_ms / per_customer_rate,
        ),
    ]
    return sorted(({"stage": s, "customers": c} for s, c in limits), key=lambda r: r["customers"])


# ---------------------------------------------------------------- main


def _read(path: Path, how: str) -> dict[str, Any]:
    if not path.is_file():
        sys.exit(f"{path} not found: run {how} first")
    return json.loads(path.read_text())


def _print_plan(args: argparse.Namespace, out: dict[str, Any]) -> None:
    s, r, b = out["serving"], out["redis"], out["batch"]
    print(f"== capacity plan: {args.customers:,.0f} customers, {args.rate:,.0f} decisions/s, p99 <= {args.p99_ms:g} ms")
    print(
        f"service time: CPU {s['cpu_ms_per_req']:.2f} ms/request ({s['source']}), in-process decision p50 "
        f"{s['decision_p50_ms']:.2f} ms; redis-server {s['redis_cpu_ms_per_req']:.3f} ms/request"
    )
    for c in s["plan"]["curve"]:
        print(
            f"  {c['replicas']:>4} replicas x {args.cores} cores: p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms, "
            f"utilization {c['utilization']:.0%}"
        )
    for label, plan in [("measured", s["plan"]), *((f"what if {k} ms/request", v) for k, v in s["what_if"].items())]:
        nominal = plan["nominal"]
        why = (
            f"{plan['replicas_min']} meet p99 <= {args.p99_ms:g} ms"
            if plan["target_reachable"]
            else f"p99 <= {args.p99_ms:g} ms NOT reachable: the service time alone has p99 {plan['service_p99_ms']:.1f}"
            f" ms; {plan['replicas_min']} keep the workers 60% busy"
        )
        print(
            f"SERVICE REPLICAS ({label}): {plan['replicas_planned']} x {args.cores} cores = {plan['cores']} cores "
            f"({why}, +1 to lose one); at full strength p50 {nominal['p50_ms']:.2f} ms, p99 {nominal['p99_ms']:.2f} ms,"
            f" utilization {nominal['utilization']:.0%}"
        )
    print(
        f"REDIS: {r['bytes_per_customer']:,.0f} bytes/customer ({r['keys_per_customer']:.2f} keys) -> "
        f"{r['data_gb']:,.0f} GB; {r['memory_shards']} shards for memory ({args.shard_gb:g} GB each), "
        f"{r['throughput_shards']} for reads ({r['read_cores_busy']:.2f} cores busy) -> {r['shards']} shards, "
        f"{r['nodes']} nodes with one replica each"
    )
    w = args.batch_workers
    print(
        f"MATERIALIZATION: {b['values_per_customer']:.0f} values/customer at {b['materialize_rate_per_worker']:,.0f}"
        f" values/s a worker -> {b['materialize_hours']:.1f} h with {w} workers"
    )
    print(
        f"TRAINING: fit ~ rows^{b['fit_exponent']:.2f}: 1M rows {b['fit_1m_s']:.0f} s, 10M rows "
        f"{b['fit_10m_s']:.0f} s a fit; {args.trials} trials at 10M rows on {w} workers {b['tuning_10m_h']:.1f} h; "
        f"point-in-time set 1M rows {b['pit_1m_rows_s']:.0f} s, 10M rows {b['pit_10m_rows_h']:.2f} h (one process)"
    )
    print(
        f"CAMPAIGN (whole base): {b['campaign_per_worker']:,.0f} customers/s a worker (1 -> 2 workers "
        f"x{b['campaign_scaling_1_to_2']:.2f}) -> {b['campaign_hours']:.1f} h with {w} workers"
    )
    print(
        f"SIMULATOR (the twin at this size, 180 days): {b['simulator_hours']:.1f} h with {w} cores; serving 1 -> 2 "
        f"workers x{b['serving_scaling_1_to_2']:.2f}"
    )
    print(
        f"DECISION LOG: {s['decision_log_gb_per_h']:,.0f} GB an hour at {args.rate:,.0f} decisions/s "
        f"({BATCH['decision_record_kb']['kb']:g} KB a record); {s['decision_log_ms']:.2f} ms a decision to write"
    )
    print("FIRST BOTTLENECK on today's 2-core machine (customers at which each stage runs out):")
    for row in out["bottlenecks"]:
        print(f"  {row['customers']:>14,.0f}  {row['stage']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=float, default=100e6)
    p.add_argument("--rate", type=float, default=10_000.0, help="peak decisions/s")
    p.add_argument("--p99-ms", type=float, default=10.0)
    p.add_argument("--cores", type=int, default=2, help="worker processes (cores) per replica")
    p.add_argument("--store", choices=("redis", "sqlite"), default="redis", help="which measured service times")
    p.add_argument("--requests", type=int, default=200_000, help="simulated requests per replica and point")
    p.add_argument("--shard-gb", type=float, default=25.0, help="data per Redis shard (a 32 GB node, fork room)")
    p.add_argument("--batch-workers", type=int, default=32, help="workers (cores) for the batch windows")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--window-h", type=float, default=4.0, help="nightly batch window, hours")
    p.add_argument("--what-if-cpu-ms", type=float, nargs="*", default=[1.0], help="replicas at other request costs")
    p.add_argument("--serving-json", help="bench_serving's results (default: found under the bench folder)")
    p.add_argument("--measure-redis", action="store_true")
    p.add_argument("--redis-db", type=int, default=9)
    p.add_argument("--home", help="state folder of the measured world (default: the serving benchmark's)")
    args = p.parse_args()
    settings = load_settings()
    bench = settings.bench_dir
    redis_file = bench / "capacity_redis.json"
    if args.measure_redis:
        serving_file = bench / "serving.json"
        default_world = json.loads(serving_file.read_text())["world"] if serving_file.is_file() else None
        world = Settings(home=Path(args.home or default_world or bench / "serving-world"))
        r = measure_redis(world, args.redis_db, 300, redis_file)
        print(json.dumps({k: v for k, v in r.items() if k != "views"}, indent=2, default=str))
        return
    # bench_serving writes into its world's bench folder (by default the benchmark world under this one)
    found = [f for f in (bench / "serving.json", bench / "serving-world" / "bench" / "serving.json") if f.is_file()]
    serving = _read(
        Path(args.serving_json) if args.serving_json else (found or [bench / "serving.json"])[0],
        "python -m benchmarks.bench_serving --redis",
    )
    redis = _read(redis_file, "python -m benchmarks.capacity --measure-redis")
    quantiles, cpu, redis_cpu, source = service_times(serving, args.store)
    out: dict[str, Any] = {"args": vars(args), "load": os.getloadavg()[0]}
    out["serving"] = {
        "cpu_ms_per_req": cpu,
        "redis_cpu_ms_per_req": redis_cpu,
        "source": source,
        "decision_p50_ms": serving["profile_ms"]["total_p50"],
        "plan": plan_replicas(args, quantiles),
    }
    out["serving"]["what_if"] = {
        f"{ms:g}": plan_replicas(args, quantiles * (ms / float(np.mean(quantiles)))) for ms in args.what_if_cpu_ms
    }
    out["redis"] = redis_plan(args, redis, redis_cpu)
    out["batch"] = batch_plan(args, redis)
    log_ms = float(serving["profile_ms"].get("log_write_through", 0.0)) + float(
        serving["profile_ms"].get("log_enqueue", 0.0)
    )
    out["serving"]["decision_log_ms"] = log_ms
    out["serving"]["decision_log_gb_per_h"] = args.rate * BATCH["decision_record_kb"]["kb"] * 3600 / 1e6
    out["bottlenecks"] = first_bottleneck(args, cpu, log_ms, out["redis"], out["batch"])
    _print_plan(args, out)
    (bench / "capacity.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"\nresults: {bench / 'capacity.json'} (inputs: {args.serving_json or found[0]}, {redis_file})")


if __name__ == "__main__":
    main()
