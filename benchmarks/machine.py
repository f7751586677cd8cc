"""How fast this machine runs plain Python, printed beside a benchmark's figures.

Machines of the same kind differ: the same code and the same 1M-customer campaign took 354 s on one session's
machine and 611 s on the next's, both idle. A wall time is comparable across sessions only with the speed of the
machine it was measured on, so the benchmarks print `python_reference_s()` (the median of three runs of a fixed,
single-threaded workload of dict lookups, float arithmetic and small allocations, like the policy's) beside the
load average.
"""

from __future__ import annotations

import statistics
import time


def _workload(n: int = 400_000) -> float:
    row = {f"f{i}": float(i) for i in range(40)}
    total = 0.0
    for i in range(n):
        x = row.get(f"f{i % 40}")
        if x is not None and x == x:
            total += x * 0.5
        if i % 3 == 0:
            total += len((i, x))
    return total


def python_reference_s(runs: int = 3) -> float:
    """Seconds of the reference workload, median of `runs` (0.13 s a run on session 7's machine)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        _workload()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)
