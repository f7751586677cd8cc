"""Benchmark the decision service: where the time of one /recommend goes, and load against three servers.

    uv run --frozen python -m benchmarks.bench_serving [--home PATH] [--duration 5] [--levels 1,4,16]
        [--rate 500] [--rate-seconds 10] [--repeats 2] [--workers 2] [--redis] [--skip-naive]

1. Profile: the engine in-process, per stage (feature read, churn score, contact history, policy, NBA score,
   reason codes, log write-through, log enqueue), p50 over a few hundred decisions.
2. Bounded load with wrk (Debian package; loopback; one client thread; fixed duration per concurrency level)
   against our BentoML service (`serving.service`, `--workers` processes), the floor -- the same engine behind a
   bare Starlette app on uvicorn with the SAME number of processes (`uvicorn --workers`), so the ratio compares
   like with like -- and, once, a naive BentoML service (sklearn API per offer, exact SHAP, one feature read per
   model, default BentoML config). p50 / p95 / p99, throughput and errors per level.
3. Fixed rate: an open-loop asyncio client sends `--rate` requests/s on a fixed arrival schedule (latency counted
   from the scheduled send time, so queueing is not hidden), SQLite and, with `--redis`, Redis (the same world
   materialized into Redis 127.0.0.1:6379 under its own project, removed after).

A machine shared with other jobs moves every figure, so: each configuration (server x store) runs `--repeats`
times interleaved (A B A B: bentoml, floor, bentoml, floor ...), every figure is printed with the 1-minute load
average and the CPU time per request (CPU seconds of the server's whole process tree, and of redis-server, during
the measurement, divided by the requests answered: it does not depend on what else runs), and the verdicts are
taken from the median over the runs:
- "p99 <= 10 ms at a fixed 500 req/s" per store (met: median p99 within the target, at least 98% of the rate
  achieved, no errors, no degraded answers);
- "highest throughput >= 1,000 req/s within 1.6x of the floor" per store (median over runs of the best wrk level).

The client is this process: its heap (engine, Feast, MLflow imported for the profile) is frozen and its cyclic GC
paused while it measures, so a client-side GC pass is not counted as server latency. Client, servers and Redis
share this machine's two cores.

The world: `--home` (needs champions and a materialized online store), else the default state folder if it has
them, else a benchmark world built under `<home>/bench/serving-world` (simulated, features, 2 trials per model).
Results also go to `<bench_dir>/serving.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from nextbest.settings import FeatureSettings, MlflowSettings, ServingSettings, Settings, load_settings

logger = logging.getLogger("bench_serving")

TARGET_P99_MS = 10.0
TARGET_RATE = 500.0
TARGET_THROUGHPUT = 1_000.0
TARGET_FLOOR_RATIO = 1.6
DRAIN_S = 5.0  # seconds after the fixed-rate schedule ends before unanswered requests count as failed


def load_avg() -> float:
    """The 1-minute load average (2 cores here: above ~2 the machine is saturated by others too)."""
    return round(os.getloadavg()[0], 2)


WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  n = 0
  degraded = 0
end
local ids = {IDS}
local channels = {"app", "web", "email", "app", "web"}
request = function()
  n = n + 1
  local body = string.format('{"customer_id": %d, "channel": "%s", "max_actions": 3}', ids[(n % #ids) + 1],
                             channels[(n % #channels) + 1])
  return wrk.format("POST", "/recommend", {["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  if string.find(body, '"degraded":true', 1, true) then degraded = degraded + 1 end
end
done = function(summary, latency, requests)
  local d = 0
  for _, t in ipairs(threads) do d = d + t:get("degraded") end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "non2xx": %d, ' ..
    '"socket_errors": %d, "degraded": %d}\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(95), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout, d))
end
"""


# ---------------------------------------------------------------- the world


def has_served_world(settings: Settings) -> bool:
    from serving.engine import DecisionEngine

    if not (settings.features_dir / "registry.db").is_file():
        return False
    try:
        DecisionEngine(settings).champion_versions()
    except Exception:
        return False
    return True


def build_bench_world(home: Path, customers: int, days: int) -> Settings:
    import nextbest.features as nbf
    from nextbest.simulator import SimulationConfig, simulate_world
    from training.pipeline import champion_even_below_floor, train_model

    settings = Settings(home=home)
    settings.ensure_dirs()
    print(f"building a benchmark world: {customers} customers x {days} days under {home} ...", flush=True)
    simulate_world(SimulationConfig.build(customers=customers, days=days, seed=5), settings.world_dir)
    nbf.features_of(settings).build()
    nbf.features_of(settings).apply()
    nbf.features_of(settings).materialize()
    for model in ("churn", "nba"):
        champion_even_below_floor(settings, train_model(settings, model, trials=2), "bench_serving")
    return settings


def resolve_world(args: argparse.Namespace) -> Settings:
    if args.home:
        settings = Settings(home=Path(args.home))
        if not has_served_world(settings):
            sys.exit(f"{args.home} has no champions or no online store; train and materialize first")
        return settings
    default = load_settings()
    if has_served_world(default):
        return default
    home = default.bench_dir / "serving-world"
    candidate = Settings(home=home)
    return candidate if has_served_world(candidate) else build_bench_world(home, args.customers, args.days)


def customer_ids(settings: Settings, limit: int = 500) -> list[int]:
    import pandas as pd

    ids = pd.read_parquet(settings.sources_dir / "customers", columns=["customer_id"])["customer_id"].unique()
    return [int(i) for i in ids[:limit]]


def for_server(settings: Settings, name: str, **serving: Any) -> Settings:
    """The world's settings with a new, empty decision log of its own for this server.

    Empty on purpose: contact history is read on every decision, so a log left by earlier runs (tens of thousands
    of contacts for the same 500 customers) would make each rerun slower than the last.
    """
    log = settings.bench_dir / f"serving-log-{name}.db"
    for leftover in (log, log.with_name(log.name + "-wal"), log.with_name(log.name + "-shm")):
        leftover.unlink(missing_ok=True)
    data = settings.serving.model_dump()
    data.update(decision_log_uri=f"sqlite:///{log}", reload_interval_s=0)
    data.update(serving)
    return settings.model_copy(update={"serving": ServingSettings(**data)})


# ---------------------------------------------------------------- profile


def profile(settings: Settings, ids: list[int], n: int = 300) -> dict[str, Any]:
    from serving.engine import DecisionEngine
    from serving.lifecycle import freeze_heap
    from serving.schemas import RecommendRequest

    engine = DecisionEngine(for_server(settings, "profile"))
    engine.load()
    # What a full collection of the loaded heap costs, before and after the service's gc.freeze (see freeze_heap).
    t0 = time.perf_counter()
    gc.collect()
    gc_full_ms = (time.perf_counter() - t0) * 1e3
    frozen = freeze_heap()
    t0 = time.perf_counter()
    gc.collect()
    gc_frozen_ms = (time.perf_counter() - t0) * 1e3
    stages: dict[str, list[float]] = {}
    totals = []
    try:
        for i in range(n):
            t: dict[str, float] = {}
            t0 = time.perf_counter()
            engine.recommend(RecommendRequest(customer_id=ids[i % len(ids)], channel=("app", "web")[i % 2]), timings=t)
            totals.append(time.perf_counter() - t0)
            for k, v in t.items():
                stages.setdefault(k, []).append(v)
    finally:
        engine.close()
    out = {k: statistics.median(v) * 1e3 for k, v in stages.items()}
    out["total_p50"] = float(np.percentile(totals, 50) * 1e3)
    out["total_p99"] = float(np.percentile(totals, 99) * 1e3)
    out["total_mean"] = float(np.mean(totals) * 1e3)
    # the service-time distribution benchmarks/capacity.py replays (percentiles 0.5, 1.5, ..., 99.5 of one decision)
    out["total_ms_quantiles"] = [float(q) for q in np.percentile(np.asarray(totals) * 1e3, np.arange(0.5, 100, 1.0))]
    out["gc_full_collection_ms"] = gc_full_ms
    out["gc_full_after_freeze_ms"] = gc_frozen_ms
    out["gc_frozen_objects"] = float(frozen)
    return out


# ---------------------------------------------------------------- load


def run_wrk(url: str, ids: list[int], connections: int, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT.replace("{IDS}", "{" + ",".join(map(str, ids)) + "}"))
        script = f.name
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    Path(script).unlink(missing_ok=True)
    m = re.search(r"RESULT (\{.*\})", out.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    return {
        "connections": connections,
        "rps": r["requests"] / secs,
        "p50_ms": r["p50_us"] / 1e3,
        "p95_ms": r["p95_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "errors": r["non2xx"] + r["socket_errors"],
        "degraded": r["degraded"],
        "requests": r["requests"],
        "load": load_avg(),
    }


async def _fixed_rate(host: str, port: int, ids: list[int], rate: float, seconds: float) -> dict[str, float]:
    """Open loop: request i is due at t0 + i/rate whatever happened before; latency counts from that time."""
    n = int(rate * seconds)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = 0
    latencies: list[float] = []
    errors = 0
    degraded = 0
    rng = random.Random(1)

    async def one(due: float, body: bytes) -> None:
        nonlocal opened, errors, degraded
        if pool.empty() and opened < 64:
            opened += 1
            pool.put_nowait(await asyncio.open_connection(host, port))
        reader, writer = await pool.get()
        try:
            writer.write(
                b"POST /recommend HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - due)
            degraded += b'"degraded":true' in payload
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            pool.put_nowait((reader, writer))
        except Exception:
            errors += 1
            writer.close()
            opened -= 1

    t0 = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = json.dumps({"customer_id": rng.choice(ids), "channel": rng.choice(["app", "web", "email"])}).encode()
        tasks.append(asyncio.create_task(one(due, body)))
    # A request still unanswered DRAIN_S after the last was due failed (as wrk's --timeout): an overloaded server
    # would otherwise hold the run for minutes draining its queue.
    _done, late = await asyncio.wait(tasks, timeout=DRAIN_S)
    for task in late:
        task.cancel()
    errors += len(late)
    elapsed = time.perf_counter() - t0
    while not pool.empty():
        _, w = pool.get_nowait()
        w.close()
    lat = np.asarray(latencies or [float("nan")]) * 1e3
    return {
        "rate": rate,
        "achieved_rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": errors,
        "degraded": degraded,
        "requests": n,
        "answered": len(latencies),
    }


def fixed_rate(port: int, ids: list[int], rate: float, seconds: float) -> dict[str, float]:
    gc.collect()
    gc.freeze()
    gc.disable()  # the client's own GC passes must not count as server latency (garbage here is acyclic)
    try:
        out = asyncio.run(_fixed_rate("127.0.0.1", port, ids, rate, seconds))
    finally:
        gc.enable()
    out["load"] = load_avg()
    return out


def verdict(r: dict[str, float], rate: float = TARGET_RATE, p99_ms: float = TARGET_P99_MS) -> bool:
    """Met: p99 within target, >= 98% of the rate achieved, no errors and no degraded (fallback) answers."""
    return r["p99_ms"] <= p99_ms and r["achieved_rps"] >= 0.98 * rate and r["errors"] == 0 and r["degraded"] == 0


# ---------------------------------------------------------------- servers


def server(name: str, settings: Settings, port: int, workers: int = 1) -> Any:
    from serving.runner import ServiceProcess, service_command

    log = settings.bench_dir / f"serving-{name}.log"
    if name == "bentoml":
        return ServiceProcess(for_server(settings, name), port=port, log_path=log, workers=workers)
    if name == "starlette":
        # as many processes as the BentoML service has workers: the floor compares like with like
        cmd = [sys.executable, "-m", "uvicorn", "benchmarks.serving_apps:floor_app", "--factory", "--host",
               "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
               "--workers", str(workers)]  # fmt: skip
        return ServiceProcess(for_server(settings, name), port=port, log_path=log, command=cmd)
    if name == "naive":
        cmd = service_command("127.0.0.1", port, target="benchmarks.serving_apps:NaiveService")
        return ServiceProcess(
            for_server(settings, name), port=port, log_path=log, command=cmd, service_name="nextbest_naive"
        )
    raise ValueError(name)


def prepare_redis(settings: Settings) -> Settings:
    import nextbest.features as nbf

    home = settings.bench_dir / "serving-redis"
    if home.exists():
        shutil.rmtree(home)
    redis = Settings(
        home=home,
        features=FeatureSettings(online_store="redis", project="nbbenchserving"),
        mlflow=MlflowSettings(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow.registry_uri),
    )
    redis.ensure_dirs()
    shutil.copytree(settings.sources_dir, redis.sources_dir)
    nbf.features_of(redis).build()
    nbf.features_of(redis).apply()
    nbf.features_of(redis).materialize()
    return redis


# ---------------------------------------------------------------- CPU per request


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (the server and its workers)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _redis_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["name"]) if (p.info.get("name") or "").startswith("redis-server")]


class CpuMeter:
    """CPU seconds used by the server's process tree and by redis-server between `start()` and `stop()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.redis = _redis_pids()

    def _now(self) -> tuple[float, float]:
        return _tree_cpu(self.pid), sum(_tree_cpu(p) for p in self.redis)

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self, requests: float, into: dict[str, Any]) -> dict[str, Any]:
        """Add `cpu_ms_per_req` (server processes) and `redis_cpu_ms_per_req` to `into`."""
        server, redis = self._now()
        n = max(1.0, float(requests))
        into["cpu_ms_per_req"] = (server - self._t0[0]) * 1e3 / n
        into["redis_cpu_ms_per_req"] = (redis - self._t0[1]) * 1e3 / n
        return into


# ---------------------------------------------------------------- report


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(widths[c]) for c in cols)]
    lines += ["  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
    return "" if v is None else str(v)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric figure over runs (with two runs: their mean); other fields from the first."""
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[k] = float(statistics.median(float(r[k]) for r in runs))
    out["runs"] = len(runs)
    return out


def _line(r: dict[str, Any]) -> str:
    return (
        f"p50 {r['p50_ms']:6.2f}  p95 {r['p95_ms']:6.2f}  p99 {r['p99_ms']:7.2f} ms  "
        f"cpu/req {r['cpu_ms_per_req']:.2f} ms (redis {r['redis_cpu_ms_per_req']:.2f})  errors {r['errors']:.0f}  "
        f"degraded {r['degraded']:.0f}  load {r['load']}"
    )


def measure(name: str, world: Settings, key: str, args: argparse.Namespace, ids: list[int]) -> dict[str, Any]:
    """One run of one configuration: start the server, wrk at each level, then the fixed rate; CPU per request and
    load average beside every figure."""
    from serving.runner import free_port

    port = free_port()
    print(f"\n== {key}: starting on port {port} (load {load_avg()}) ==", flush=True)
    workers = 1 if name == "naive" else args.workers
    out: dict[str, Any] = {"wrk": []}
    with server(name, world, port, workers) as svc:
        assert svc.proc is not None
        meter = CpuMeter(svc.proc.pid)
        fixed_rate(port, ids, 20, 1)  # warm-up
        for c in args.level_list:
            meter.start()
            r = run_wrk(svc.url, ids, c, args.duration)
            meter.stop(r["requests"], r)
            out["wrk"].append(r)
            print(f"  c={c:<3} {r['rps']:8.0f} req/s  {_line(r)}", flush=True)
        if name != "naive":
            meter.start()
            r = fixed_rate(port, ids, args.rate, args.rate_seconds)
            out["fixed"] = meter.stop(r["answered"], r)  # CPU per request answered (scheduled ones may time out)
            print(f"  fixed {args.rate:.0f} req/s: achieved {r['achieved_rps']:.0f}  {_line(r)}", flush=True)
    out["best_rps"] = max(r["rps"] for r in out["wrk"])
    return out


def run_rounds(
    configs: list[tuple[str, Settings, str]], args: argparse.Namespace, ids: list[int], partial: Path
) -> dict[str, list[dict[str, Any]]]:
    """Every configuration `--repeats` times, interleaved: A B A B (a slow minute on the machine hits both). Each
    run is saved to `partial` as it ends (an interrupted benchmark keeps what it measured)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(args.repeats):
        for name, world, key in configs:
            if name == "naive" and round_ > 0:
                continue  # the naive variant is a reference point, measured once
            runs.setdefault(key, []).append(measure(name, world, key, args, ids))
            partial.write_text(json.dumps(runs, indent=2, default=str))
    return runs


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per configuration: the median run (per wrk level, the fixed rate, the best throughput)."""
    out: dict[str, dict[str, Any]] = {}
    for key, rs in runs.items():
        levels = [_median([r["wrk"][i] for r in rs]) for i in range(len(rs[0]["wrk"]))]
        med: dict[str, Any] = {"wrk": levels, "best_rps": float(statistics.median(r["best_rps"] for r in rs))}
        med["best_rps_runs"] = [round(r["best_rps"]) for r in rs]
        if "fixed" in rs[0]:
            med["fixed"] = _median([r["fixed"] for r in rs])
            med["p99_runs"] = [round(r["fixed"]["p99_ms"], 2) for r in rs]
        out[key] = med
    return out


def print_verdicts(med: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, str]:
    """MET / NOT MET for both targets per store, from the median runs, with the floor beside ours."""
    verdicts: dict[str, str] = {}
    at_target = args.rate == TARGET_RATE
    for store, sfx in (("SQLite", ""), ("Redis", "_redis")):
        ours, floor = med.get(f"bentoml{sfx}"), med.get(f"starlette{sfx}")
        if ours is None:
            continue
        r = ours["fixed"]
        met = "MET" if verdict(r) else "NOT MET"
        verdicts[f"p99 {store}"] = met if at_target else "n/a"
        print(
            f"  target p99 <= {TARGET_P99_MS:.0f} ms at a fixed {TARGET_RATE:.0f} req/s, {store}: "
            f"{verdicts[f'p99 {store}'] if at_target else f'n/a (this run: {args.rate:.0f} req/s)'} -- median of "
            f"{r['runs']:.0f} runs: achieved {r['achieved_rps']:.0f} req/s, {_line(r)}; p99 per run {ours['p99_runs']}"
        )
        if floor is not None and "fixed" in floor:
            f = floor["fixed"]
            print(f"      floor ({args.workers} process(es)): achieved {f['achieved_rps']:.0f} req/s, {_line(f)}")
        ratio = floor["best_rps"] / ours["best_rps"] if floor else float("nan")
        ok = ours["best_rps"] >= TARGET_THROUGHPUT and ratio <= TARGET_FLOOR_RATIO
        verdicts[f"throughput {store}"] = "MET" if ok else "NOT MET"
        print(
            f"  target highest throughput >= {TARGET_THROUGHPUT:,.0f} req/s within {TARGET_FLOOR_RATIO:g}x of the "
            f"floor, {store}: {verdicts[f'throughput {store}']} -- ours {ours['best_rps']:.0f} req/s (runs "
            f"{ours['best_rps_runs']}), floor {floor['best_rps'] if floor else float('nan'):.0f} req/s (runs "
            f"{floor['best_rps_runs'] if floor else []}), floor / ours {ratio:.2f}x"
        )
    return verdicts


def _measure_all(args: argparse.Namespace, settings: Settings, ids: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Every configuration's runs (SQLite, then Redis with `--redis`), the Redis project removed after."""
    names = [n for n in args.servers.split(",") if not (args.skip_naive and n == "naive")]
    configs = [(n, settings, n) for n in names]
    redis = prepare_redis(settings) if args.redis else None
    if redis is not None:
        configs += [(n, redis, f"{n}_redis") for n in names if n != "naive"]
    try:
        return run_rounds(configs, args, ids, settings.bench_dir / "serving-runs.partial.json")
    finally:
        if redis is not None:
            import nextbest.features as nbf

            nbf.get_store(redis).teardown()


def main() -> None:
    # `timeout` / a scheduler's SIGTERM: exit through the context managers (servers stopped, Redis project removed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars between the figures

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", help="state folder with champions and a materialized online store")
    p.add_argument("--customers", type=int, default=1500, help="size of a benchmark world built if none exists")
    p.add_argument("--days", type=int, default=100)
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk level")
    p.add_argument("--levels", default="1,4,16", help="wrk concurrency levels")
    p.add_argument("--rate", type=float, default=TARGET_RATE)
    p.add_argument("--rate-seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=2, help="runs per configuration, interleaved (verdict: median)")
    p.add_argument("--redis", action="store_true", help="also run every configuration on the Redis online store")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--servers", default="bentoml,starlette,naive", help="which servers to load")
    p.add_argument("--workers", type=int, default=2, help="processes of our service and of the floor")
    p.add_argument("--from-runs", help="summarise the runs saved by an interrupted benchmark (no servers started)")
    args = p.parse_args()
    args.level_list = [int(x) for x in args.levels.split(",")]
    logging.basicConfig(level=logging.WARNING)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    settings = resolve_world(args)
    settings.bench_dir.mkdir(parents=True, exist_ok=True)
    ids = customer_ids(settings)
    results: dict[str, Any] = {"world": str(settings.home), "levels": args.level_list, "workers": args.workers}
    results["load_at_start"] = load_avg()
    print(f"\n== where the time of one decision goes (in-process, p50 ms per stage, load {load_avg()}) ==")
    prof = results["profile_ms"] = profile(settings, ids)
    for k, v in prof.items():
        if not isinstance(v, list):
            print(f"  {k:>18}: {v:7.3f}")

    if args.from_runs:  # the runs of an interrupted benchmark (its serving-runs.partial.json), profiled anew here
        runs = json.loads(Path(args.from_runs).read_text())
        results["runs_from"] = args.from_runs
    else:
        runs = _measure_all(args, settings, ids)
    med = summarise(runs)
    results.update(runs=runs, median=med, load_at_end=load_avg())

    print(f"\n== bounded load (wrk, one client thread, loopback), median of {args.repeats} interleaved runs ==")
    rows = [{"server": k, **r} for k, m in med.items() for r in m["wrk"]]
    cols = ["server", "connections", "rps", "p50_ms", "p95_ms", "p99_ms", "cpu_ms_per_req", "redis_cpu_ms_per_req"]
    print(table(rows, [*cols, "errors", "degraded", "load"]))
    print(f"\n== fixed rate {args.rate:.0f} req/s for {args.rate_seconds:.0f} s (open loop), median run ==")
    fixed = [{"server": k, **m["fixed"]} for k, m in med.items() if "fixed" in m]
    print(table(fixed, ["server", "achieved_rps", *cols[3:], "errors", "degraded", "load"]))
    framework = med["bentoml"]["wrk"][0]["p50_ms"] - prof["total_p50"] if "bentoml" in med else float("nan")
    print(f"\n  framework + HTTP overhead at c={args.level_list[0]} (BentoML p50 - in-process p50): {framework:.2f} ms")
    if "naive" in med and "bentoml" in med:
        print(f"  ours / naive max throughput: {med['bentoml']['best_rps'] / med['naive']['best_rps']:.1f}x")
    print(f"\n== targets ({args.workers} process(es) each, load {results['load_at_start']} -> {load_avg()}) ==")
    results["verdicts"] = print_verdicts(med, args)
    out = settings.bench_dir / "serving.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
