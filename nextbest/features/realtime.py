"""Real-time events into the online store through Feast's push source, with the offline pipeline's transformation.

An event (a context signal such as an airport check-in, or an app page view such as the mortgage calculator)
updates the customer's `realtime_state` row: the current row is read from the online store, folded with the event by
`feature_repo.pipeline.fold_realtime_state` (the same function that built the offline table, so online and offline
agree), and the merged row is pushed with `FeatureStore.push`. The on-demand view then turns it into recency and
decayed strength at the next request. Events that move no real-time state (a login, a grocery payment) are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from feature_repo.pipeline import event_column, fold_realtime_state
from feature_repo.specs import JOIN_KEY, PUSH_SOURCE, REALTIME_FIELDS, REALTIME_VIEW, TIMESTAMP_FIELD
from nextbest.errors import DataError

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)


def _event_time(value: Any) -> pd.Timestamp:
    if value is None:
        return pd.Timestamp(datetime.now(UTC))
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def current_state(store: FeatureStore, customer_ids: list[int]) -> pd.DataFrame:
    """The online real-time state rows of these customers (customers without state are left out)."""
    response = store.get_online_features(
        features=[f"{REALTIME_VIEW}:{c}" for c in REALTIME_FIELDS],
        entity_rows=[{JOIN_KEY: int(c)} for c in customer_ids],
    ).to_dict(include_event_timestamps=True)
    rows = []
    for i, customer_id in enumerate(response[JOIN_KEY]):
        values = {c: response[c][i] for c in REALTIME_FIELDS}
        stamps = [response[f"{c}__ts"][i] for c in REALTIME_FIELDS if response.get(f"{c}__ts")]
        stamps = [s for s in stamps if s is not None]
        if all(v is None for v in values.values()) or not stamps:
            continue
        stamp = max(
            pd.Timestamp(s, unit="s", tz="UTC") if isinstance(s, int | float) else _event_time(s) for s in stamps
        )
        rows.append({JOIN_KEY: int(customer_id), TIMESTAMP_FIELD: stamp, **values})
    frame = pd.DataFrame(rows, columns=[JOIN_KEY, TIMESTAMP_FIELD, *REALTIME_FIELDS])
    return frame.astype({c: "float64" for c in REALTIME_FIELDS})


def push_events(store: FeatureStore, events: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Fold events into the customers' real-time state and push the new rows online; returns the pushed rows.

    Each event is a mapping with `customer_id`, `ts` (datetime, ISO string or None for now) and either `signal`
    (context signal) or `event_type`/`page` (digital event), as in the source tables.
    """
    from feast.data_source import PushMode

    relevant = []
    for event in events:
        if JOIN_KEY not in event:
            raise DataError(f"event without {JOIN_KEY}: {dict(event)}")
        column = event_column(event)
        if column is None:
            logger.debug("event moves no real-time state, not pushed: %s", dict(event))
            continue
        relevant.append({JOIN_KEY: int(event[JOIN_KEY]), "ts": _event_time(event.get("ts")), "column": column})
    if not relevant:
        return pd.DataFrame(columns=[JOIN_KEY, TIMESTAMP_FIELD, *REALTIME_FIELDS])
    frame = pd.DataFrame(relevant)
    previous = current_state(store, sorted(set(frame[JOIN_KEY])))
    state = fold_realtime_state(frame, previous=previous if len(previous) else None)
    latest = state.groupby(JOIN_KEY, sort=False).tail(1).reset_index(drop=True)
    store.push(PUSH_SOURCE, latest, to=PushMode.ONLINE)
    return latest


def push_event(store: FeatureStore, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """Push one real-time event (see `push_events`); returns the customer's new state row, or None if ignored."""
    pushed = push_events(store, [event])
    return pushed.iloc[0].to_dict() if len(pushed) else None
