"""Request-time features: recency and decayed strength of real-time signals, and the decision's context.

The `request_context` on-demand view calls `context_features` for training (offline, one row per entity row) and
for serving (online, one row per request), so the math exists once. Plain Python over lists: Feast's python-mode
on-demand views pass dicts of lists, and for one request this costs microseconds where pandas costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from feature_repo.specs import (
    CHANNELS,
    LOCATION_TYPES,
    NEVER_HOURS,
    PAGE_COLUMNS,
    PAGE_HALF_LIFE_HOURS,
    SIGNAL_COLUMNS,
    SIGNAL_HALF_LIFE_HOURS,
)

BUSINESS_HOURS = range(9, 18)


def _hours_since(request_ts: float | None, last_ts: float | None) -> float:
    if request_ts is None or last_ts is None or math.isnan(request_ts) or math.isnan(last_ts):
        return NEVER_HOURS
    # A state newer than the request (clock skew, replay) counts as "just now", never negative.
    return min(max((request_ts - last_ts) / 3600.0, 0.0), NEVER_HOURS)


def _strength(hours: float, half_life_hours: float) -> float:
    if hours >= NEVER_HOURS:
        return 0.0
    return 0.5 ** (hours / half_life_hours)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    out = float(value)
    return None if math.isnan(out) else out


def context_features(inputs: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Compute the request-context features for each row of `inputs` (a dict of equal-length lists).

    Needs the real-time state columns (`last_<signal>_ts`, `last_<page>_view_ts`, epoch seconds or None) and the
    request fields `channel`, `hour_of_day`, `location_type`, `request_ts` (epoch seconds).
    """
    n = len(inputs["request_ts"])
    request_ts = [_float(v) for v in inputs["request_ts"]]
    out: dict[str, list[Any]] = {}
    for signal, column in SIGNAL_COLUMNS.items():
        last = inputs.get(column, [None] * n)
        hours = [_hours_since(request_ts[i], _float(last[i])) for i in range(n)]
        out[f"hours_since_{signal}"] = hours
        half_life = SIGNAL_HALF_LIFE_HOURS[signal]
        out[f"{signal}_strength"] = [_strength(h, half_life) for h in hours]
    for page, column in PAGE_COLUMNS.items():
        last = inputs.get(column, [None] * n)
        half_life = PAGE_HALF_LIFE_HOURS[page]
        out[f"{page}_intent"] = [_strength(_hours_since(request_ts[i], _float(last[i])), half_life) for i in range(n)]
    channels = [str(c) if c is not None else "" for c in inputs["channel"]]
    for channel in CHANNELS:
        out[f"channel_{channel}"] = [int(c == channel) for c in channels]
    locations = [str(v) if v is not None else "" for v in inputs["location_type"]]
    for location in LOCATION_TYPES:
        out[f"location_{location}"] = [int(v == location) for v in locations]
    hours_of_day = [
        int(h) if h is not None and not (isinstance(h, float) and math.isnan(h)) else -1 for h in inputs["hour_of_day"]
    ]
    out["request_hour"] = hours_of_day
    out["business_hours"] = [int(h in BUSINESS_HOURS) for h in hours_of_day]
    return out
