"""The benchmarks' verdict logic: the serving benchmark judges the median of interleaved runs, and the capacity
plan's queueing simulation reproduces the textbook M/M/1 and M/M/c answers."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from benchmarks.bench_serving import print_verdicts, summarise
from benchmarks.capacity import simulate_replica


def _wrk(rps: float) -> dict[str, float]:
    return {
        "connections": 4,
        "rps": rps,
        "p50_ms": 2.0,
        "p95_ms": 4.0,
        "p99_ms": 8.0,
        "errors": 0,
        "degraded": 0,
        "requests": 5_000,
        "load": 1.0,
        "cpu_ms_per_req": 1.0,
        "redis_cpu_ms_per_req": 0.0,
    }


def _fixed(p99: float) -> dict[str, float]:
    return {
        "rate": 500.0,
        "achieved_rps": 500.0,
        "p50_ms": 2.0,
        "p95_ms": 5.0,
        "p99_ms": p99,
        "errors": 0,
        "degraded": 0,
        "requests": 5_000,
        "load": 1.0,
        "cpu_ms_per_req": 1.0,
        "redis_cpu_ms_per_req": 0.0,
    }


def _run(rps: float, p99: float) -> dict[str, object]:
    return {"wrk": [_wrk(rps)], "fixed": _fixed(p99), "best_rps": rps}


def test_the_serving_verdicts_come_from_the_median_of_the_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runs = {
        "bentoml": [_run(1_100, 6.0), _run(900, 30.0), _run(1_050, 9.0)],  # one bad minute among three runs
        "starlette": [_run(1_500, 5.0), _run(1_600, 5.0), _run(1_700, 5.0)],
    }
    med = summarise(runs)
    assert med["bentoml"]["fixed"]["p99_ms"] == 9.0 and med["bentoml"]["best_rps"] == 1_050
    verdicts = print_verdicts(med, argparse.Namespace(rate=500.0, workers=2))
    assert verdicts == {"p99 SQLite": "MET", "throughput SQLite": "MET"}  # 1,600 / 1,050 = 1.52x of the floor
    runs["starlette"] = [_run(1_800, 5.0)] * 3
    assert print_verdicts(summarise(runs), argparse.Namespace(rate=500.0, workers=2))["throughput SQLite"] == "NOT MET"
    assert "floor / ours 1.71x" in capsys.readouterr().out


def test_the_queueing_simulation_matches_m_m_1_and_m_m_2() -> None:
    # exponential service times of mean 1 ms, as 1,000 quantiles of the distribution
    quantiles = -np.log(1 - (np.arange(1_000) + 0.5) / 1_000)
    rate = 600.0  # per second: utilization 0.6 on one worker
    one = simulate_replica(rate, 1, quantiles, 200_000, seed=3)
    # M/M/1: the time in system is exponential with rate mu - lambda (per ms: 1 - 0.6)
    assert one["p99_ms"] == pytest.approx(-math.log(0.01) / (1 - rate / 1e3), rel=0.1)
    assert one["utilization"] == pytest.approx(0.6, abs=0.02)
    two = simulate_replica(2 * rate, 2, quantiles, 200_000, seed=3)
    assert two["utilization"] == pytest.approx(0.6, abs=0.02)
    # M/M/2 at the same utilization: mean time in system 1 / (mu (1 - rho^2)) = 1 / 0.64 ms, so p50 well below M/M/1
    assert two["p50_ms"] < one["p50_ms"] and two["p99_ms"] < one["p99_ms"]  # pooling two workers shortens the tail
