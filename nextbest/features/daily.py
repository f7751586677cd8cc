"""The simulated bank's genome built day by day: each day's source rows folded into the feature pipeline's state, the
snapshot of the next midnight computed from it, with the pipeline's own SQL and window definitions.

What `feature_repo.pipeline.build_feature_tables` computes for every midnight of a finished world, `DailyGenome`
computes for the next midnight of a world being lived (the policy twin, `nextbest.twin`), from the rows each day
added (`World.day_tables()`), without re-reading the past:
- the daily buckets are the pipeline's bucket SQL (`_bucket_transactions`, `_bucket_digital_events`,
  `_bucket_signals`, `_bucket_contacts`) run on the day's rows only;
- the windows are the pipeline's `ACTIVITY_WINDOWS` / `CONTACT_WINDOWS`, kept as running totals: a w-day sum adds
  the day's bucket and drops the bucket of w days before (a count of non-empty days keeps an empty window exactly
  0); `days_since` keeps the latest timestamp (over a finite window: missing once it is older than the window);
- the profile (latest profile row, holdings open, `n_products`, ...) and the activity view's balances (the latest
  statement before the midnight and before 30 days earlier) are the pipeline's own SELECTs (`_build_profile`,
  `_activity_select`) run on the state: one row per customer, the holdings, the statements still needed;
- real-time state is `fold_realtime_state` over the events of `realtime_events`, as of any second of the day.
`tests/test_twin_genome.py` checks every feature of every snapshot against the batch build of the same world.

State kept: per customer a few arrays (running totals, latest timestamps, real-time state), the latest profile row,
the holdings, the statements of the last ~5 weeks, and each bucket column's last w days of non-empty entries.
A statement day is assumed to cut a statement for every active customer (the simulator's contract), so an older
statement batch is dropped once a later one is itself older than the 30-day look-back.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from feature_repo import pipeline as fp
from feature_repo.specs import (
    ACTIVITY_FIELDS,
    CONTACT_FIELDS,
    JOIN_KEY,
    PROFILE_FIELDS,
    REALTIME_FIELDS,
    TIMESTAMP_FIELD,
)
from nextbest.errors import DataError

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger(__name__)

DAY_S = 86_400
#: the source tables each group of buckets reads
_ACTIVITY_SOURCES = ("transactions", "digital_events", "context_signals")
_CONTACT_SOURCES = ("contacts",)
_LOOKBACK_S = 30 * DAY_S  # the activity view's balance 30 days earlier
#: the snapshot views' fields, in view order (what `snapshot` returns after the key and timestamp)
SNAPSHOT_FIELDS: dict[str, str] = {**PROFILE_FIELDS, **ACTIVITY_FIELDS, **CONTACT_FIELDS}


def _epoch_s(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp (or numeric) column as float seconds; nulls as NaN."""
    if pa.types.is_timestamp(values.type):
        unit = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[values.type.unit]
        return values.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / unit
    return values.to_numpy(zero_copy_only=False).astype(np.float64)


@dataclass
class _Windows:
    """Running totals of one group of windows over daily buckets, one slot per customer row."""

    specs: tuple[fp.Window, ...]
    n: int
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    filled: dict[str, np.ndarray] = field(default_factory=dict)  # non-empty days in the window: 0 -> exactly 0
    latest: dict[str, np.ndarray] = field(default_factory=dict)
    past: dict[str, deque[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        longest: dict[str, int] = {}
        for w in self.specs:
            if w.agg == "sum":
                if w.days is None:
                    raise ValueError(f"{w.feature}: a running sum needs a finite window")
                self.sums[w.feature] = np.zeros(self.n)
                self.filled[w.feature] = np.zeros(self.n, dtype=np.int32)
                longest[w.column] = max(longest.get(w.column, 0), w.days)
            else:
                self.latest.setdefault(w.column, np.full(self.n, np.nan))
        self.past = {c: deque(maxlen=d) for c, d in longest.items()}

    def add(self, rows: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
        """One day's buckets (`rows`: customer rows; one value per row and bucket column)."""
        for column, past in self.past.items():
            values = np.nan_to_num(columns[column]) if column in columns else np.zeros(len(rows))
            keep = values != 0
            today = (rows[keep], values[keep])
            for w in self.specs:
                if w.column != column or w.agg != "sum":
                    continue
                assert w.days is not None
                np.add.at(self.sums[w.feature], today[0], today[1])
                np.add.at(self.filled[w.feature], today[0], 1)
                if len(past) >= w.days:  # the bucket of w days ago leaves the window
                    old_rows, old_values = past[-w.days]
                    np.subtract.at(self.sums[w.feature], old_rows, old_values)
                    np.subtract.at(self.filled[w.feature], old_rows, 1)
            past.append(today)
        for column, latest in self.latest.items():
            if column in columns:
                np.fmax.at(latest, rows, columns[column])

    def values(self, t_s: float) -> dict[str, np.ndarray]:
        """Every window's value at the midnight `t_s` (epoch seconds), per customer row."""
        out = {}
        for w in self.specs:
            if w.agg == "sum":
                out[w.feature] = np.where(self.filled[w.feature] > 0, self.sums[w.feature], 0.0)
            else:
                latest = self.latest[w.column]
                if w.days is not None:  # the window holds the buckets of the `days` UTC days before the midnight
                    latest = np.where(latest >= t_s - w.days * DAY_S, latest, np.nan)
                out[w.feature] = (t_s - latest) / DAY_S
        return out


class DailyGenome:
    """The genome of one world, advanced one lived day at a time (see the module docstring).

    `DailyGenome(world.initial_tables(), world.epoch)`, then after every lived day `add_day(world.day_tables())`;
    `snapshot()` is the snapshot views at the next midnight, `realtime_at(...)` the real-time state at any second
    of the day being lived. Copyable (`copy.deepcopy`): the twin forks one warm genome per policy.
    """

    def __init__(self, initial: Mapping[str, pa.Table], epoch_s: int) -> None:
        customers = initial["customers"].to_pandas()
        self.ids = np.unique(customers[JOIN_KEY].to_numpy(dtype=np.int64))
        self.n = len(self.ids)
        self.epoch_s = int(epoch_s)
        self.day = 0  # the next day to add
        customers = customers.sort_values([JOIN_KEY, "valid_from"], kind="stable")
        self._profiles = customers.drop_duplicates(JOIN_KEY, keep="last").reset_index(drop=True)
        self._first_seen = _per_row(self, customers.groupby(JOIN_KEY)["valid_from"].min(), np.inf)
        self._closed_at = np.full(self.n, np.inf)
        self._holdings = initial["holdings"].to_pandas()
        self._statements: list[tuple[float, pd.DataFrame]] = []
        self._statements_cache: pd.DataFrame | None = None
        self._activity = _Windows(fp.ACTIVITY_WINDOWS, self.n)
        self._contacts = _Windows(fp.CONTACT_WINDOWS, self.n)
        self._rt_cols = list(REALTIME_FIELDS)
        self._rt = np.full((self.n, len(self._rt_cols)), np.nan)
        self._rt_stamp = np.full(self.n, np.nan)  # time of each customer's latest real-time state row
        self._con_: duckdb.DuckDBPyConnection | None = None

    # ---------------------------------------------------------------- copy and connection
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_con_"] = None  # a DuckDB connection is per object; the copy opens its own
        return state

    def _con(self) -> duckdb.DuckDBPyConnection:
        if self._con_ is None:
            import duckdb

            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET threads = 1")
            self._con_ = con
        return self._con_

    def close(self) -> None:
        if self._con_ is not None:
            self._con_.close()
            self._con_ = None

    @property
    def midnight_s(self) -> int:
        """Epoch seconds of the next snapshot: the midnight after the last day added."""
        return self.epoch_s + self.day * DAY_S

    def rows_of(self, customer_ids: np.ndarray) -> np.ndarray:
        """Customer rows of keys (DataError for a key the world did not start with)."""
        keys = np.asarray(customer_ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, keys)
        bad = (pos >= self.n) | (self.ids[np.minimum(pos, self.n - 1)] != keys)
        if bad.any():
            raise DataError(f"customers not in the genome: {keys[bad][:5].tolist()}")
        return pos

    # ---------------------------------------------------------------- one lived day
    def add_day(self, tables: Mapping[str, pa.Table]) -> None:
        """Fold the rows one lived day added (the contract tables, e.g. `World.day_tables()`) into the state."""
        con = self._con()
        for name in (*_ACTIVITY_SOURCES, *_CONTACT_SOURCES):
            con.register(f"src_{name}", _table(tables, name))
        fp._bucket_transactions(con)
        fp._bucket_digital_events(con)
        fp._bucket_signals(con)
        fp._bucket_contacts(con)
        self._add_buckets(self._activity, ("tx_daily", "dig_daily", "sig_daily"))
        self._add_buckets(self._contacts, ("ct_daily", "oc_daily"))
        self._add_profile_rows(tables)
        self._fold_realtime(fp.realtime_events(con))
        for name in (*_ACTIVITY_SOURCES, *_CONTACT_SOURCES):
            con.unregister(f"src_{name}")
        self.day += 1

    def _add_buckets(self, windows: _Windows, bucket_tables: Sequence[str]) -> None:
        """The day's bucket rows of each table (one UTC day, the day being added) into the running windows."""
        day_start = float(self.epoch_s + self.day * DAY_S)
        columns: dict[str, np.ndarray] = {}
        rows_of_table = []
        for name in bucket_tables:
            t = self._con().sql(f"SELECT * FROM {name}").to_arrow_table()
            days = _epoch_s(t.column("day"))
            if len(days) and (days != day_start).any():
                raise DataError(f"{name}: rows outside the day being added ({self.day}); add days in order")
            rows_of_table.append((self.rows_of(t.column(JOIN_KEY).to_numpy()), t))
        everyone = np.unique(np.concatenate([r for r, _t in rows_of_table])) if rows_of_table else np.empty(0, int)
        for rows, t in rows_of_table:
            at = np.searchsorted(everyone, rows)
            for name in t.column_names:
                if name in (JOIN_KEY, "day"):
                    continue
                col = np.full(len(everyone), np.nan)
                col[at] = _epoch_s(t.column(name))
                columns[name] = col
        windows.add(everyone, columns)

    def _add_profile_rows(self, tables: Mapping[str, pa.Table]) -> None:
        """Profile changes, opened holdings, closures and statements of the day."""
        changed = _table(tables, "customers").to_pandas()
        if len(changed):
            both = pd.concat([self._profiles, changed], ignore_index=True)
            self._profiles = both.drop_duplicates(JOIN_KEY, keep="last").reset_index(drop=True)
        opened = _table(tables, "holdings").to_pandas()
        if len(opened):
            self._holdings = pd.concat([self._holdings, opened], ignore_index=True)
        closures = _table(tables, "closures")
        if closures.num_rows:
            rows = self.rows_of(closures.column(JOIN_KEY).to_numpy())
            self._closed_at[rows] = np.fmin(self._closed_at[rows], _epoch_s(closures.column("closed_at")))
        balances = _table(tables, "balances")
        if balances.num_rows:
            self._statements.append((float(_epoch_s(balances.column("as_of")).max()), balances.to_pandas()))
        self._statements_cache: pd.DataFrame | None = None

    def _fold_realtime(self, events: pd.DataFrame) -> None:
        """The day's real-time events folded onto each customer's state (the pipeline's fold)."""
        if not len(events):
            return
        rows = self.rows_of(events[JOIN_KEY].to_numpy())
        state = fp.fold_realtime_state(events, previous=self._state_rows(np.unique(rows)))
        last = state.groupby(JOIN_KEY, sort=False).tail(1)
        at = self.rows_of(last[JOIN_KEY].to_numpy())
        self._rt[at] = last[self._rt_cols].to_numpy(dtype=np.float64)
        self._rt_stamp[at] = _seconds(last[TIMESTAMP_FIELD])

    def _state_rows(self, rows: np.ndarray) -> pd.DataFrame | None:
        """The current real-time state rows of these customers (those with any), as the fold's seed."""
        rows = rows[~np.isnan(self._rt_stamp[rows])]
        if not len(rows):
            return None
        frame = pd.DataFrame(self._rt[rows], columns=self._rt_cols)
        frame.insert(0, TIMESTAMP_FIELD, pd.to_datetime(self._rt_stamp[rows] * 1e6, unit="us", utc=True))
        frame.insert(0, JOIN_KEY, self.ids[rows])
        return frame

    # ---------------------------------------------------------------- what a decision reads
    def live_rows(self) -> np.ndarray:
        """Rows of the customers with a snapshot at the next midnight (signed up before it, not closed before it)."""
        t = float(self.midnight_s)
        return np.nonzero((self._first_seen < t) & (t <= self._closed_at))[0]

    def snapshot(self, customer_ids: np.ndarray | None = None) -> pd.DataFrame:
        """The snapshot views at the next midnight: customer_id, event_timestamp, then `SNAPSHOT_FIELDS`, one row per
        live customer (of `customer_ids`, default all) in key order, typed as the feature tables."""
        rows = self.live_rows()
        if customer_ids is not None:
            rows = np.intersect1d(rows, self.rows_of(customer_ids))
        keys = self.ids[rows]
        t = pd.Timestamp(self.midnight_s, unit="s", tz="UTC")
        con = self._con()
        con.register("grid_out", pd.DataFrame({JOIN_KEY: keys, "t": t}))
        con.register("src_customers", _arrow(self._profiles, keys, customer_ids is not None))
        con.register("src_holdings", _arrow(self._holdings, keys, customer_ids is not None))
        profile = con.sql(fp.typed_sql(fp._build_profile(con), PROFILE_FIELDS)).to_arrow_table()
        act = pd.DataFrame({JOIN_KEY: keys, "t": t})
        windows = self._activity.values(float(self.midnight_s))
        act = pd.concat([act, pd.DataFrame({name: v[rows] for name, v in windows.items()})], axis=1)
        con.register("act_in", act)
        con.execute("CREATE OR REPLACE TEMP TABLE act AS SELECT * FROM act_in")
        con.register("src_balances", _arrow(self._kept_statements(), keys, customer_ids is not None))
        activity = con.sql(fp.typed_sql(fp._activity_select(), ACTIVITY_FIELDS)).to_arrow_table()
        for name in ("grid_out", "src_customers", "src_holdings", "act_in", "src_balances"):
            con.unregister(name)
        out = {JOIN_KEY: keys, TIMESTAMP_FIELD: profile.column(TIMESTAMP_FIELD).to_pandas()}
        for name in PROFILE_FIELDS:
            out[name] = profile.column(name).to_numpy()
        for name in ACTIVITY_FIELDS:
            out[name] = activity.column(name).to_numpy(zero_copy_only=False)
        for name, values in self._contacts.values(float(self.midnight_s)).items():
            out[name] = (
                np.nan_to_num(values[rows]).astype(np.int64) if CONTACT_FIELDS[name] == "int64" else values[rows]
            )
        return pd.DataFrame(out)

    def _kept_statements(self) -> pd.DataFrame:
        """The statements an as-of read at the next midnight (and 30 days before it) can still reach."""
        cutoff = self.midnight_s - _LOOKBACK_S
        older = [i for i, (as_of, _f) in enumerate(self._statements) if as_of < cutoff]
        if len(older) > 1:  # the newest batch older than the look-back is all it needs from before it
            self._statements = self._statements[older[-1] :]
            self._statements_cache = None
        if self._statements_cache is None:
            frames = [f for _as_of, f in self._statements]
            empty = _table({}, "balances").to_pandas()
            self._statements_cache = pd.concat(frames, ignore_index=True) if frames else empty
        assert self._statements_cache is not None
        return self._statements_cache

    def realtime_at(
        self, customer_ids: np.ndarray, ts_s: np.ndarray, today: Mapping[str, pa.Table] | None = None
    ) -> np.ndarray:
        """(m, len(REALTIME_FIELDS)) real-time state of each customer at `ts_s` (epoch seconds): the state after the
        days added, folded with `today`'s rows so far (the day being lived) up to and including `ts_s`."""
        rows = self.rows_of(customer_ids)
        out = self._rt[rows].copy()
        if today is None:
            return out
        con = self._con()
        for name in ("context_signals", "digital_events"):
            con.register(f"src_{name}", _table(today, name))
        events = fp.realtime_events(con)
        for name in ("context_signals", "digital_events"):
            con.unregister(f"src_{name}")
        if not len(events):
            return out
        state = fp.fold_realtime_state(events, previous=self._state_rows(np.unique(self.rows_of(events[JOIN_KEY]))))
        right = pd.DataFrame({JOIN_KEY: state[JOIN_KEY].to_numpy(), "_t": _seconds(state[TIMESTAMP_FIELD])})
        right[self._rt_cols] = state[self._rt_cols].to_numpy(dtype=np.float64)
        left = pd.DataFrame({JOIN_KEY: np.asarray(customer_ids, dtype=np.int64), "_t": np.asarray(ts_s, float)})
        left["_i"] = np.arange(len(left))
        merged = pd.merge_asof(
            left.sort_values("_t"), right.sort_values("_t"), on="_t", by=JOIN_KEY, direction="backward"
        )
        found = merged[self._rt_cols].notna().any(axis=1).to_numpy()
        out[merged["_i"].to_numpy()[found]] = merged.loc[found, self._rt_cols].to_numpy(dtype=np.float64)
        return out


def _per_row(genome: DailyGenome, by_key: pd.Series, missing: float) -> np.ndarray:
    """A per-customer series (indexed by key; timestamps as epoch seconds) as an array over the genome's rows."""
    out = np.full(genome.n, missing)
    values = _seconds(by_key) if pd.api.types.is_datetime64_any_dtype(by_key) else by_key.to_numpy(dtype=np.float64)
    out[genome.rows_of(by_key.index.to_numpy())] = values
    return out


def _arrow(frame: pd.DataFrame, keys: np.ndarray, only: bool) -> pa.Table:
    """A state frame as an Arrow table for DuckDB (strings scan far faster than from pandas objects), optionally
    only the rows of `keys`."""
    if only:
        frame = frame[frame[JOIN_KEY].isin(keys)]
    return pa.Table.from_pandas(frame, preserve_index=False)


def _seconds(stamps: pd.Series) -> np.ndarray:
    """Timestamps as float epoch seconds."""
    return (pd.to_datetime(stamps, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


def _table(tables: Mapping[str, pa.Table], name: str) -> pa.Table:
    """A contract table of the day (an empty one with the contract's schema when the day added none)."""
    if name in tables:
        return tables[name]
    from nextbest.simulator.schema import SOURCE_SCHEMAS

    return SOURCE_SCHEMAS[name].empty_table()
