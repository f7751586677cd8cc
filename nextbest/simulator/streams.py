"""Counter-based random numbers: every draw of the world is a fixed function of (seed, stream, day, customer, k).

Common random numbers: a customer's life (life events, signals, money, page views, organic uptake, churn, and the
outcome of showing an action on a day) draws from uniforms keyed by who and when, never by the position in an
array or by how many draws came before. Two policies run over the same customers therefore see the same world
except where the policies themselves changed a customer's state (`docs/simulator.md`, "Common random numbers").

A uniform is a SplitMix64 finalizer applied twice: once to (seed, stream, day) -> a 64-bit base, once to
(base, customer id, k). SplitMix64 is the counter-based generator numpy's own SeedSequence tooling builds on; its
finalizer is a bijection with full avalanche, so distinct keys give independent-looking uniforms.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from scipy.special import ndtri

_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xBF58476D1CE4E5B9)
_C3 = np.uint64(0x94D049BB133111EB)
_C4 = np.uint64(0xD6E8FEB86659FD93)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 1.0 / float(1 << 53)


class Stream(IntEnum):
    """One independent stream per kind of draw (adding a stream never changes the others)."""

    LIFE_ARRIVAL = 1
    LIFE_KIND = 2
    LIFE_STRENGTH = 3
    CREDIT_SHOCK = 4
    SIGNAL_FIRE = 5
    SIGNAL_TIME = 6
    SALARY_TIME = 7
    TRIP = 8
    FEES = 9
    COMPETITOR = 10
    TRANSFER_IN = 11
    SPEND_COUNT = 12
    SPEND = 13
    INVEST = 14
    LOGIN = 15
    PAGE_GENERAL = 16
    PAGE_INTENT = 17
    PAGE_DRIFT = 18
    DIGITAL_EVENT = 19
    TRIGGER = 20
    SCHEDULE = 21
    DECISION_TIME = 22
    ACCEPT = 23
    DISMISS = 24
    OUTCOME_LAG = 25
    SALE_AMOUNT = 26
    OPT_OUT = 27
    COMPLAINT = 28
    ORGANIC = 29
    ORGANIC_DETAIL = 30
    CHURN = 31
    CHURN_REASON = 32
    POLICY = 40  # the logging policy's own exploration draws (a policy's randomness, not the world's)
    PRICE = 41  # the logging policy's price exploration (`SimulationConfig.price_exploration`)


_MASK = 0xFFFFFFFFFFFFFFFF
_M1, _M2, _M3, _M4 = int(_C1), int(_C2), int(_C3), int(_C4)


def _mix_int(x: int) -> int:
    """The SplitMix64 finalizer on one Python int (the per-(stream, day) base: cheaper than a numpy scalar)."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * _M2) & _MASK
    x = ((x ^ (x >> 27)) * _M3) & _MASK
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> _S30)) * _C2
    x = (x ^ (x >> _S27)) * _C3
    return x ^ (x >> _S31)


class Streams:
    """Uniforms and the few distributions the world needs, keyed by (stream, day, customer id, k)."""

    def __init__(self, seed: int) -> None:
        self.seed = np.uint64(seed & _MASK)
        self._bases: dict[tuple[int, int], np.uint64] = {}

    def _base(self, stream: int, day: int) -> np.uint64:
        key = (stream, day)
        base = self._bases.get(key)
        if base is None:
            x = _mix_int((int(self.seed) ^ (stream * _M4 & _MASK)) + _M1)
            base = self._bases[key] = np.uint64(_mix_int((x ^ ((day + 1) * _M3 & _MASK)) + _M1))
        return base

    def uniform(
        self, stream: int, day: int, key: np.ndarray, k: np.ndarray | int | None = None, width: int | None = None
    ) -> np.ndarray:
        """Uniforms in (0, 1): one per key (shape of `key`), per (key, k), or (len(key), width) for k = 0..width-1."""
        base = self._base(stream, day)
        with np.errstate(over="ignore"):
            x = _mix(base + np.asarray(key).astype(np.uint64) * _C4)
            if width is not None:
                x = x[:, None] + (np.arange(1, width + 1, dtype=np.uint64) * _C2)[None, :]
                x = _mix(x)
            elif k is not None:
                kk = np.asarray(k).astype(np.uint64)
                if kk.ndim > x.ndim:  # (m, j) counters for (m,) keys: j uniforms per key
                    x = x.reshape(x.shape + (1,) * (kk.ndim - x.ndim))
                x = _mix(x + (kk + np.uint64(1)) * _C2)
        return ((x >> _S11).astype(np.float64) + 0.5) * _TO_UNIT


def normal(u: np.ndarray) -> np.ndarray:
    """Standard normal quantile of uniforms."""
    return ndtri(u)


def lognormal(u: np.ndarray, mean: float | np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    """Lognormal quantile: exp(mean + sigma * z)."""
    return np.exp(mean + sigma * ndtri(u))


def integers(u: np.ndarray, low: int | np.ndarray, high: int | np.ndarray) -> np.ndarray:
    """Integers in [low, high) from uniforms."""
    low = np.asarray(low, dtype=np.int64)
    span = np.asarray(high, dtype=np.int64) - low
    return low + np.minimum(np.floor(u * span).astype(np.int64), np.maximum(span - 1, 0))


def poisson(u: np.ndarray, lam: np.ndarray, k_max: int = 30) -> np.ndarray:
    """Poisson quantile by inversion (exact for the small rates of one customer-day)."""
    lam = np.asarray(lam, dtype=np.float64)
    pmf = np.exp(-lam)
    cdf = pmf.copy()
    count = np.zeros(np.shape(u), dtype=np.int64)
    for j in range(1, k_max + 1):
        above = u > cdf
        if not above.any():
            break
        count += above
        pmf = pmf * lam / j
        cdf = cdf + pmf
    return count


def gumbel(u: np.ndarray, scale: float) -> np.ndarray:
    """Gumbel(0, scale) quantile."""
    return -scale * np.log(-np.log(u))


def categorical(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One category per row of a (m, k) non-negative weight matrix."""
    cum = np.cumsum(weights, axis=1)
    return np.minimum((cum < (u * cum[:, -1])[:, None]).sum(axis=1), weights.shape[1] - 1)
