"""The feature pipeline: the bank's source tables (docs/data-contract.md) -> point-in-time feature tables.

This module is the single source of feature logic. Training reads its output only through Feast
(`get_historical_features` with the feature services), serving reads it through the online store, and real-time
events go through `fold_realtime_state`, the same function that builds the offline real-time table.

Point-in-time rule, the one invariant every table keeps: a feature row stamped t uses only source rows with a
timestamp <= t, so a training row joined at time T (Feast joins the latest row stamped <= T) never sees data from
after T.
- Daily snapshot tables (profile, activity, contact history) have one row per live customer per day at 00:00 UTC,
  computed from everything strictly before that midnight: events are bucketed by UTC day, and a window of w days
  at day D sums the buckets D-w .. D-1. Profile versions, balances and holdings are as-of joins on "< t".
  Outcomes of contacts count from `outcome_ts` (when the bank learnt them), not from the contact time.
- The real-time table has one row per event (context signal or intent page view) stamped at the event time,
  holding the last time of each signal seen up to and including that event.

Design: DuckDB over the parquet files: vectorised window aggregates over a dense customer x day grid, written by
DuckDB straight to parquet. Customers are processed in chunks of ids (default 10,000), so memory is bounded by
one chunk's grid, and the parts are streamed into one file per view. Rows grow with customers x days: 3,000 x 120
is 360k rows per view; at 100k customers x 180 days (18M rows per view) build with `every_days=7` (weekly snapshot
rows; windows still use daily buckets and the newest snapshot is always kept for the online store), which the
30-day TTLs in `definitions` tolerate and which keeps point-in-time joins fast.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from feature_repo.specs import (
    ACTIVITY_FIELDS,
    ACTIVITY_VIEW,
    BALANCE_COLUMNS,
    CONSENT_CHANNELS,
    CONTACT_FIELDS,
    CONTACT_VIEW,
    JOIN_KEY,
    OUTBOUND_CHANNELS,
    PAGE_COLUMNS,
    PAGE_VIEW_PAGES,
    PROFILE_VIEW,
    REALTIME_FIELDS,
    REALTIME_VIEW,
    SIGNAL_COLUMNS,
    TIMESTAMP_FIELD,
    TXN_CATEGORY_WINDOWS,
    VIEW_FIELDS,
)
from nextbest.catalogue import MARKETING_KINDS, PRODUCTS, load_catalogue
from nextbest.errors import DataError

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger(__name__)

SOURCE_TABLES: tuple[str, ...] = (
    "customers",
    "holdings",
    "balances",
    "transactions",
    "digital_events",
    "context_signals",
    "contacts",
    "closures",
)
#: Progress callback: (step name, steps done, steps total).
ProgressFn = Callable[[str, int, int], None]


def source_path(sources_dir: Path, table: str) -> Path:
    """The parquet file or folder of parts holding one source table."""
    folder = sources_dir / table
    if folder.is_dir() and any(folder.glob("*.parquet")):
        return folder
    file = sources_dir / f"{table}.parquet"
    if file.is_file():
        return file
    raise DataError(
        f"source table {table!r} not found: expected {file} or a folder {folder}/ of parquet parts. "
        "Simulate a world first (`nextbest simulate`) or point NEXTBEST_HOME at one."
    )


def _parquet_glob(path: Path) -> str:
    return str(path / "*.parquet") if path.is_dir() else str(path)


def connect(
    sources_dir: Path, threads: int = 2, memory_limit: str | None = None, excluded: Collection[int] = ()
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC with one view `src_<table>` per source table (without `excluded` customers)."""
    import duckdb

    con = duckdb.connect()
    # Day buckets must be UTC days whatever the machine's zone: the PIT rule is stated in UTC.
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    bind_sources(con, sources_dir, excluded=excluded)
    return con


def bind_sources(
    con: duckdb.DuckDBPyConnection,
    sources_dir: Path,
    customers: tuple[int, int] | None = None,
    excluded: Collection[int] = (),
) -> None:
    """(Re)define the `src_<table>` views, optionally restricted to customer ids in [lo, hi) (one chunk).

    `excluded`: erased customers (`nextbest.erasure` tombstones) whose rows no feature may see.
    """
    conds = [] if customers is None else [f"customer_id >= {int(customers[0])}", f"customer_id < {int(customers[1])}"]
    if excluded:
        conds.append(f"customer_id NOT IN ({', '.join(str(int(c)) for c in sorted(excluded))})")
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    for table in SOURCE_TABLES:
        path = _parquet_glob(source_path(sources_dir, table))
        con.execute(f"CREATE OR REPLACE VIEW src_{table} AS SELECT * FROM read_parquet('{path}'){where}")


def world_bounds(con: duckdb.DuckDBPyConnection) -> tuple[datetime, datetime]:
    """(first day 00:00 UTC, last event time) over the activity tables."""
    row = con.execute(
        """
        SELECT min(lo), max(hi) FROM (
            SELECT min(ts) lo, max(ts) hi FROM src_transactions
            UNION ALL SELECT min(ts), max(ts) FROM src_digital_events
            UNION ALL SELECT min(ts), max(ts) FROM src_context_signals
            UNION ALL SELECT min(ts), max(ts) FROM src_contacts
            UNION ALL SELECT min(as_of), max(as_of) FROM src_balances
        )
        """
    ).fetchone()
    if row is None or row[0] is None:
        raise DataError("the source tables hold no events: nothing to build features from")
    lo, hi = (pd.Timestamp(v).tz_convert("UTC").to_pydatetime() for v in row)
    return lo.replace(hour=0, minute=0, second=0, microsecond=0), hi


def snapshot_times(start_day: datetime, end: datetime, every_days: int = 1) -> list[datetime]:
    """Snapshot midnights from `start_day` to the first midnight after `end` (always included), every N days."""
    if every_days < 1:
        raise ValueError(f"every_days must be >= 1, got {every_days}")
    last = end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    n_days = (last - start_day).days
    times = [start_day + timedelta(days=k) for k in range(0, n_days + 1, every_days)]
    if not times or times[-1] != last:
        times.append(last)
    return times


def _ts(dt: datetime) -> str:
    return f"TIMESTAMPTZ '{dt.astimezone(UTC).isoformat()}'"


def _prepare_grid(con: duckdb.DuckDBPyConnection, start_day: datetime, times: list[datetime]) -> None:
    """`grid`: every customer x every day (dense, for windows); `grid_out`: the live snapshot rows we emit."""
    last = times[-1]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE days AS
        SELECT unnest(generate_series({_ts(start_day)}, {_ts(last)}, INTERVAL 1 DAY)) AS t
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE life AS
        SELECT c.customer_id, min(c.valid_from) AS first_seen, min(x.closed_at) AS closed_at
        FROM src_customers c LEFT JOIN src_closures x USING (customer_id)
        GROUP BY c.customer_id
        """
    )
    con.execute("CREATE OR REPLACE TEMP TABLE grid AS SELECT l.customer_id, d.t FROM life l CROSS JOIN days d")
    con.execute("CREATE OR REPLACE TEMP TABLE snap_times(t TIMESTAMPTZ)")
    con.executemany("INSERT INTO snap_times VALUES (?)", [(t,) for t in times])
    # A customer has a snapshot from the first midnight after its first profile row until the midnight that
    # precedes its closure (it is still a customer at that midnight).
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE grid_out AS
        SELECT l.customer_id, s.t FROM life l JOIN snap_times s
          ON s.t > l.first_seen AND (l.closed_at IS NULL OR s.t <= l.closed_at)
        """
    )


def _window_sql(windows: Mapping[str, str]) -> str:
    return "WINDOW " + ", ".join(f"{name} AS ({spec})" for name, spec in windows.items())


def _win(days: int | None) -> str:
    lower = "UNBOUNDED PRECEDING" if days is None else f"{days} PRECEDING"
    return f"PARTITION BY customer_id ORDER BY t ROWS BETWEEN {lower} AND 1 PRECEDING"


_WINDOWS = {"w7": _win(7), "w30": _win(30), "w90": _win(90), "wall": _win(None)}


def _days_since(expr: str) -> str:
    return f"(epoch(t) - epoch({expr})) / 86400.0"


@dataclass(frozen=True)
class Window:
    """A windowed feature of a daily snapshot: one daily bucket column aggregated over the `days` UTC days before the
    snapshot midnight (None: every day before it).

    `sum`: the total of the column (0 when nothing happened); `days_since`: days from the latest value of a timestamp
    column to the midnight (NaN when never, or, with finite `days`, when nothing happened in the window). The buckets
    come from this module's SQL (`_bucket_*`); the batch build evaluates every window as a SQL window over the dense
    customer x day grid, the day-by-day build (`nextbest.features.daily`) as running totals over the same buckets: one
    definition, two evaluators, tested to agree.
    """

    feature: str
    column: str
    days: int | None
    agg: Literal["sum", "days_since"] = "sum"

    @property
    def sql(self) -> str:
        """The batch build's window expression (frames in `_WINDOWS`)."""
        frame = "wall" if self.days is None else f"w{self.days}"
        if frame not in _WINDOWS:
            raise ValueError(f"window of {self.days} days has no SQL frame; add it to _WINDOWS")
        if self.agg == "sum":
            return f"coalesce(sum({self.column}) OVER {frame}, 0) AS {self.feature}"
        return f"{_days_since(f'max({self.column}) OVER {frame}')} AS {self.feature}"


#: The activity view's windows over the daily buckets of transactions, digital events and signals.
ACTIVITY_WINDOWS: tuple[Window, ...] = (
    Window("inflow_30d", "inflow", 30),
    Window("outflow_30d", "outflow", 30),
    Window("salary_credits_90d", "salary_n", 90),
    Window("days_since_salary", "salary_last", None, "days_since"),
    *(Window(f"{c}_amount_{w}d", f"amt_{c}", w) for c, ws in TXN_CATEGORY_WINDOWS.items() for w in ws),
    Window("txn_count_30d", "n", 30),
    Window("logins_7d", "logins", 7),
    Window("logins_30d", "logins", 30),
    Window("days_since_login", "login_last", None, "days_since"),
    *(Window(f"{p}_views_30d", f"pv_{p}", 30) for p in PAGE_VIEW_PAGES),
    Window("complaints_90d", "complaints", 90),
    Window("card_lost_90d", "card_lost", 90),
    # Bounded to 90 days: what they measure decays within weeks (the simulated hazard's terms over 21 and 14 days), and
    # an unbounded "days since" of a rare event grows with the age of the history (a drift alarm on a stationary world).
    Window("days_since_complaint", "complaint_last", 90, "days_since"),
    Window("days_since_competitor_transfer", "competitor_transfer_last", 90, "days_since"),
)
#: The contact-history view's windows over the daily buckets of contacts (by contact time) and outcomes (by when
#: the bank learnt them).
CONTACT_WINDOWS: tuple[Window, ...] = (
    Window("contacts_7d", "n", 7),
    Window("contacts_30d", "n", 30),
    Window("dismissals_30d", "dismissed", 30),
    Window("ignored_30d", "ignored", 30),
    Window("acceptances_90d", "accepted", 90),
    Window("days_since_contact", "last_ts", None, "days_since"),
    Window("days_since_dismissal", "dismissed_last", None, "days_since"),
    Window("days_since_acceptance", "accepted_last", None, "days_since"),
    Window("retention_acceptances_90d", "retention_accepted", 90),
    Window("service_acceptances_30d", "service_accepted", 30),
    Window("unwanted_contacts_30d", "unwanted", 30),
)


def _build_profile(con: duckdb.DuckDBPyConnection) -> str:
    has_cols = ", ".join(f"max(CASE WHEN h.product = '{p}' THEN 1 ELSE 0 END) AS has_{p}" for p in PRODUCTS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE held AS
        SELECT g.customer_id, g.t, {has_cols}, count(DISTINCT h.product) AS n_products,
               max(h.opened_at) AS last_opened
        FROM grid_out g JOIN src_holdings h
          ON h.customer_id = g.customer_id AND h.opened_at < g.t AND (h.closed_at IS NULL OR h.closed_at >= g.t)
        GROUP BY g.customer_id, g.t
        """
    )
    has_out = ", ".join(f"coalesce(h.has_{p}, 0) AS has_{p}" for p in PRODUCTS)
    consent = ", ".join(f"CAST(p.consent_{c} AS BIGINT) AS consent_{c}" for c in CONSENT_CHANNELS)
    return f"""
        SELECT g.customer_id, g.t AS {TIMESTAMP_FIELD},
            year(g.t) - p.birth_year AS age,
            (epoch(g.t) - epoch(p.signup_date)) / 86400.0 AS tenure_days,
            CAST(p.income_monthly AS DOUBLE) AS income_monthly,
            p.credit_score AS credit_score,
            CASE p.risk_band WHEN 'low' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END AS risk_level,
            CAST(p.segment = 'affluent' AS BIGINT) AS segment_affluent,
            CAST(p.segment = 'small_business' AS BIGINT) AS segment_small_business,
            CAST(p.vulnerable AS BIGINT) AS is_vulnerable,
            CAST(p.digital_first AS BIGINT) AS is_digital_first,
            CAST(p.preferred_channel IN ('app', 'web', 'push') AS BIGINT) AS prefers_digital,
            {consent},
            {has_out},
            coalesce(h.n_products, 0) AS n_products,
            (epoch(g.t) - epoch(h.last_opened)) / 86400.0 AS days_since_product_opened
        FROM grid_out g
        ASOF JOIN src_customers p ON g.customer_id = p.customer_id AND g.t > p.valid_from
        LEFT JOIN held h ON h.customer_id = g.customer_id AND h.t = g.t
        """


def _build_activity(con: duckdb.DuckDBPyConnection) -> str:
    """The activity view's query: daily buckets of events, windowed over the grid, joined to the latest balances."""
    _bucket_transactions(con)
    _bucket_digital_events(con)
    _bucket_signals(con)
    _window_activity(con)
    return _activity_select()


def _bucket_transactions(con: duckdb.DuckDBPyConnection) -> None:
    """`tx_daily`: per customer and UTC day, counts, in/outflows, salary credits and amounts per category."""
    cat_daily = ", ".join(f"sum(amount) FILTER (WHERE category = '{c}') AS amt_{c}" for c in TXN_CATEGORY_WINDOWS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE tx_daily AS
        SELECT customer_id, date_trunc('day', ts) AS day, count(*) AS n,
            sum(amount) FILTER (WHERE direction = 'credit') AS inflow,
            sum(amount) FILTER (WHERE direction = 'debit') AS outflow,
            count(*) FILTER (WHERE category = 'salary') AS salary_n,
            max(ts) FILTER (WHERE category = 'salary') AS salary_last,
            {cat_daily}
        FROM src_transactions GROUP BY ALL
        """
    )


def _bucket_digital_events(con: duckdb.DuckDBPyConnection) -> None:
    """`dig_daily`: per customer and UTC day, logins (and the last one) and views of each tracked page."""
    page_daily = ", ".join(
        f"count(*) FILTER (WHERE event_type = 'page_view' AND page = '{p}') AS pv_{p}" for p in PAGE_VIEW_PAGES
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE dig_daily AS
        SELECT customer_id, date_trunc('day', ts) AS day,
            count(*) FILTER (WHERE event_type = 'login') AS logins,
            max(ts) FILTER (WHERE event_type = 'login') AS login_last,
            {page_daily}
        FROM src_digital_events GROUP BY ALL
        """
    )


def _bucket_signals(con: duckdb.DuckDBPyConnection) -> None:
    """`sig_daily`: per customer and UTC day, complaints and lost cards; the last complaint and competitor transfer.

    A complaint is a `complaint` context signal: every complaint about the service, and (the data contract) every
    complaint about a marketing contact, is one."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE sig_daily AS
        SELECT customer_id, date_trunc('day', ts) AS day,
            count(*) FILTER (WHERE signal = 'complaint') AS complaints,
            count(*) FILTER (WHERE signal = 'card_lost') AS card_lost,
            max(ts) FILTER (WHERE signal = 'complaint') AS complaint_last,
            max(ts) FILTER (WHERE signal = 'competitor_transfer') AS competitor_transfer_last
        FROM src_context_signals GROUP BY ALL
        """
    )


def _window_activity(con: duckdb.DuckDBPyConnection) -> None:
    """`act`: the daily buckets on the dense grid, summed over the windows before each midnight."""
    cats = list(TXN_CATEGORY_WINDOWS)
    dense_cols = [
        "tx.n",
        "tx.inflow",
        "tx.outflow",
        "tx.salary_n",
        *(f"tx.amt_{c}" for c in cats),
        "dg.logins",
        *(f"dg.pv_{p}" for p in PAGE_VIEW_PAGES),
        "sg.complaints",
        "sg.card_lost",
    ]
    dense = ", ".join(f"coalesce({c}, 0) AS {c.split('.')[1]}" for c in dense_cols)
    windows = ", ".join(w.sql for w in ACTIVITY_WINDOWS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE act AS
        WITH d AS (
            SELECT g.customer_id, g.t, {dense}, tx.salary_last, dg.login_last, sg.complaint_last,
                sg.competitor_transfer_last
            FROM grid g
            LEFT JOIN tx_daily tx ON tx.customer_id = g.customer_id AND tx.day = g.t
            LEFT JOIN dig_daily dg ON dg.customer_id = g.customer_id AND dg.day = g.t
            LEFT JOIN sig_daily sg ON sg.customer_id = g.customer_id AND sg.day = g.t
        )
        SELECT customer_id, t, {windows}
        FROM d
        {_window_sql(_WINDOWS)}
        """
    )


def _activity_select() -> str:
    """The activity rows we emit (live snapshots), with balances as of before the midnight and 30 days earlier."""
    balances = ", ".join(f"b.{c} AS {c}" for c in BALANCE_COLUMNS)
    rest = ", ".join(f"a.{c}" for c in ACTIVITY_FIELDS if c not in BALANCE_COLUMNS and c != "deposit_trend_30d")
    return f"""
        WITH a AS (SELECT act.* FROM act JOIN grid_out USING (customer_id, t))
        SELECT a.customer_id, a.t AS {TIMESTAMP_FIELD}, {balances},
            (b.current_balance + b.savings_balance) - (b30.current_balance + b30.savings_balance) AS deposit_trend_30d,
            {rest}
        FROM a
        ASOF LEFT JOIN src_balances b ON a.customer_id = b.customer_id AND a.t > b.as_of
        ASOF LEFT JOIN src_balances b30 ON a.customer_id = b30.customer_id AND a.t - INTERVAL 30 DAY > b30.as_of
        """


def _in_list(column: str, values: Collection[str]) -> str:
    """`column IN (...)` over string literals; FALSE for an empty list."""
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values))
    return f"{column} IN ({quoted})" if quoted else "FALSE"


def _action_kind_filters() -> dict[str, str]:
    """SQL conditions on `contacts.action_id` by the catalogue's action kinds (the configured catalogue:
    NEXTBEST_CATALOGUE or the simulated bank's): "retention", "service" and "marketing" (sales and retention).
    An action id the catalogue does not know is of no kind."""
    actions = load_catalogue().actions
    kinds = {
        "retention": {a.id for a in actions if a.kind == "retention"},
        "service": {a.id for a in actions if a.kind == "service"},
        "marketing": {a.id for a in actions if a.kind in MARKETING_KINDS},
    }
    return {kind: _in_list("action_id", ids) for kind, ids in kinds.items()}


def _bucket_contacts(con: duckdb.DuckDBPyConnection) -> None:
    """`ct_daily` (contacts per customer and UTC day, and the last one) and `oc_daily` (outcomes per day learnt).

    Outcomes per action kind (the catalogue's): accepted retention and service actions, and unwanted contacts, a
    marketing action (sales or retention) sent through an outbound channel (`OUTBOUND_CHANNELS`) and not accepted
    (dismissed or ignored), counted on the day the bank learnt it was not accepted."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ct_daily AS
        SELECT customer_id, date_trunc('day', ts) AS day, count(*) AS n, max(ts) AS last_ts
        FROM src_contacts GROUP BY ALL
        """
    )
    kind = _action_kind_filters()
    outbound = _in_list("channel", OUTBOUND_CHANNELS)
    # What a contact led to is known only once it happened: bucket outcomes by outcome_ts.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE oc_daily AS
        SELECT customer_id, date_trunc('day', outcome_ts) AS day,
            count(*) FILTER (WHERE outcome = 'dismissed') AS dismissed,
            count(*) FILTER (WHERE outcome = 'ignored') AS ignored,
            count(*) FILTER (WHERE outcome = 'accepted') AS accepted,
            max(outcome_ts) FILTER (WHERE outcome = 'dismissed') AS dismissed_last,
            max(outcome_ts) FILTER (WHERE outcome = 'accepted') AS accepted_last,
            count(*) FILTER (WHERE outcome = 'accepted' AND {kind["retention"]}) AS retention_accepted,
            count(*) FILTER (WHERE outcome = 'accepted' AND {kind["service"]}) AS service_accepted,
            count(*) FILTER (
                WHERE outcome IN ('dismissed', 'ignored') AND {kind["marketing"]} AND {outbound}
            ) AS unwanted
        FROM src_contacts WHERE outcome_ts IS NOT NULL GROUP BY ALL
        """
    )


def _build_contacts(con: duckdb.DuckDBPyConnection) -> str:
    """The contact-history view's query: contact and outcome buckets, windowed over the grid."""
    _bucket_contacts(con)
    windows = ", ".join(w.sql for w in CONTACT_WINDOWS)
    return f"""
        WITH d AS (
            SELECT g.customer_id, g.t, coalesce(c.n, 0) AS n, c.last_ts,
                coalesce(o.dismissed, 0) AS dismissed, coalesce(o.ignored, 0) AS ignored,
                coalesce(o.accepted, 0) AS accepted, o.dismissed_last, o.accepted_last,
                coalesce(o.retention_accepted, 0) AS retention_accepted,
                coalesce(o.service_accepted, 0) AS service_accepted, coalesce(o.unwanted, 0) AS unwanted
            FROM grid g
            LEFT JOIN ct_daily c ON c.customer_id = g.customer_id AND c.day = g.t
            LEFT JOIN oc_daily o ON o.customer_id = g.customer_id AND o.day = g.t
        ), w AS (
            SELECT customer_id, t, {windows}
            FROM d
            {_window_sql(_WINDOWS)}
        )
        SELECT w.customer_id, w.t AS {TIMESTAMP_FIELD}, {", ".join(f"w.{c}" for c in CONTACT_FIELDS)}
        FROM w JOIN grid_out USING (customer_id, t)
        """


def conform(frame: pd.DataFrame, fields: Mapping[str, str]) -> pd.DataFrame:
    """Order and type a feature table: customer_id int64, event_timestamp UTC, features as declared."""
    missing = [c for c in (JOIN_KEY, TIMESTAMP_FIELD, *fields) if c not in frame.columns]
    if missing:
        raise DataError(f"feature table is missing columns {missing}")
    out = pd.DataFrame({JOIN_KEY: frame[JOIN_KEY].astype("int64")})
    ts = pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True)
    out[TIMESTAMP_FIELD] = ts.dt.as_unit("us")
    for name, dtype in fields.items():
        col = frame[name]
        if dtype == "int64":
            out[name] = col.fillna(0).astype("int64")
        else:
            out[name] = col.astype("float64")
    return out.sort_values([JOIN_KEY, TIMESTAMP_FIELD], kind="stable").reset_index(drop=True)


# ---- real-time state: the same fold offline (all events) and online (one pushed event) ----


def event_column(event: Mapping[str, Any]) -> str | None:
    """The real-time state column an event updates, or None if the event carries no real-time signal.

    Context signals are rows with a `signal`; intent pages are digital events (`event_type` page_view) with a `page`.
    """
    signal = event.get("signal")
    if signal is not None:
        return SIGNAL_COLUMNS.get(str(signal))
    if event.get("event_type", "page_view") == "page_view" and event.get("page") is not None:
        return PAGE_COLUMNS.get(str(event["page"]))
    return None


def fold_realtime_state(events: pd.DataFrame, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fold events (customer_id, ts, column) onto a previous state into real-time state rows.

    Returns one row per (customer, event time) holding, for every state column, the latest epoch second seen up to
    and including that row (a running max, so late events never move a timestamp backwards). `previous` rows
    (customer_id, event_timestamp, state columns) seed the fold and are emitted again only as the merged state when
    an event older than them arrives, stamped with their (later) time.
    """
    cols = list(REALTIME_FIELDS)
    unknown = set(events["column"].dropna()) - set(cols)
    if unknown:
        raise DataError(f"unknown real-time state columns {sorted(unknown)}")
    ts = pd.to_datetime(events["ts"], utc=True).dt.as_unit("us")
    epoch = ts.astype("int64").to_numpy() / 1e6
    wide = pd.DataFrame({JOIN_KEY: events[JOIN_KEY].astype("int64").to_numpy(), TIMESTAMP_FIELD: ts.to_numpy()})
    column = events["column"].to_numpy()
    for c in cols:
        wide[c] = np.where(column == c, epoch, np.nan)
    wide["_seed"] = False
    if previous is not None and len(previous):
        seed = previous[[JOIN_KEY, TIMESTAMP_FIELD, *cols]].copy()
        seed[TIMESTAMP_FIELD] = pd.to_datetime(seed[TIMESTAMP_FIELD], utc=True).dt.as_unit("us")
        seed["_seed"] = True
        wide = pd.concat([seed, wide], ignore_index=True)
    wide = wide.sort_values([JOIN_KEY, TIMESTAMP_FIELD], kind="stable").reset_index(drop=True)
    grouped = wide.groupby(JOIN_KEY, sort=False)[cols]
    # cummax keeps NaN where a row has no value for a column; ffill carries the running max over those rows.
    wide[cols] = grouped.cummax()
    wide[cols] = wide.groupby(JOIN_KEY, sort=False)[cols].ffill()
    # A seed row is re-emitted only if a late (older) event changed it; otherwise it is already in the store.
    changed_seed = wide["_seed"] & wide.duplicated(JOIN_KEY, keep="first")
    keep = ~wide["_seed"] | changed_seed
    out = wide.loc[keep].drop(columns="_seed")
    out = out.drop_duplicates([JOIN_KEY, TIMESTAMP_FIELD], keep="last")
    return conform(out, REALTIME_FIELDS)


def realtime_events(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """All events that move real-time state, as (customer_id, ts, column)."""
    pages = ", ".join(f"'{p}'" for p in PAGE_COLUMNS)
    signals = ", ".join(f"'{s}'" for s in SIGNAL_COLUMNS)
    frame = con.execute(
        f"""
        SELECT customer_id, ts, signal, NULL AS event_type, NULL AS page
        FROM src_context_signals WHERE signal IN ({signals})
        UNION ALL
        SELECT customer_id, ts, NULL, event_type, page
        FROM src_digital_events WHERE event_type = 'page_view' AND page IN ({pages})
        """
    ).df()
    signal_col = frame["signal"].map(SIGNAL_COLUMNS)
    page_col = frame["page"].map(PAGE_COLUMNS)
    frame["column"] = signal_col.where(frame["signal"].notna(), page_col)
    return frame[[JOIN_KEY, "ts", "column"]]


def typed_sql(select_sql: str, fields: Mapping[str, str]) -> str:
    """A feature query typed and ordered like `conform` (int64 features: missing as 0), as one SELECT."""
    cols = ", ".join(
        f"CAST(coalesce({name}, 0) AS BIGINT) AS {name}" if kind == "int64" else f"CAST({name} AS DOUBLE) AS {name}"
        for name, kind in fields.items()
    )
    return f"""
        SELECT CAST({JOIN_KEY} AS BIGINT) AS {JOIN_KEY}, {TIMESTAMP_FIELD}, {cols}
        FROM ({select_sql}) q ORDER BY {JOIN_KEY}, {TIMESTAMP_FIELD}
        """


def _copy_sql(con: duckdb.DuckDBPyConnection, select_sql: str, fields: Mapping[str, str], path: Path) -> None:
    """Write a feature query straight to parquet (no pandas in between), typed and ordered like `conform`."""
    con.execute(f"COPY ({typed_sql(select_sql, fields)}) TO '{path}' (FORMAT PARQUET, ROW_GROUP_SIZE 131072)")


def _concat_parts(parts: list[Path], path: Path) -> int:
    """Stream parquet parts (one per customer chunk) into one file, row group by row group; returns rows."""
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".parquet.tmp")
    rows = 0
    with pq.ParquetWriter(tmp, pq.read_schema(parts[0])) as writer:
        for part in parts:
            file = pq.ParquetFile(part)
            rows += file.metadata.num_rows
            for i in range(file.num_row_groups):
                writer.write_table(file.read_row_group(i))
    tmp.replace(path)  # readers never see a half-written table
    return rows


def build_feature_tables(
    sources_dir: Path,
    out_dir: Path,
    *,
    every_days: int = 1,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: ProgressFn | None = None,
    threads: int = 2,
    chunk_customers: int = 10_000,
    memory_limit: str | None = None,
    excluded: Collection[int] = (),
    dask: Any = None,
) -> dict[str, Path]:
    """Build every feature table from the source tables and write one parquet file per view under `out_dir`.

    `start`/`end` default to the span of the events; the last snapshot is the first midnight after `end`.
    Customers are processed in chunks of `chunk_customers` ids (memory is bounded by a chunk's customer x day
    grid), each chunk's tables are written by DuckDB straight to parquet parts, and the parts are streamed into
    one file per view. `excluded` customers (erased: the project's tombstones) are in no table. `dask`: a Dask
    client whose workers build the chunks' parts (each its own DuckDB connection; `out_dir` on a filesystem they
    share); the parts and so the tables are the same. Returns {view name: parquet path}.
    """
    if chunk_customers < 1:
        raise ValueError(f"chunk_customers must be >= 1, got {chunk_customers}")
    con = connect(sources_dir, threads=threads, memory_limit=memory_limit, excluded=excluded)
    work = out_dir / ".parts"
    try:
        lo, hi = world_bounds(con)
        start_day = (start or lo).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        end = (end or hi).astimezone(UTC)
        times = snapshot_times(start_day, end, every_days)
        chunks = _customer_chunks(con, sources_dir, chunk_customers)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        # Let DuckDB spill window state to disk instead of failing when a chunk outgrows memory.
        con.execute(f"SET temp_directory = '{work / 'duckdb_tmp'}'")
        steps = [*_BUILDERS, REALTIME_VIEW]
        parts: dict[str, list[Path]] = {view: [] for view in steps}
        total, done = len(chunks) * len(steps) + 1, 0

        def tick(view: str) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(view, done, total)

        job = _ChunkJob(sources_dir, work, start_day, times, frozenset(excluded), memory_limit)
        if dask is None:
            built = [_build_chunk(con, job, index, bounds, tick) for index, bounds in enumerate(chunks)]
        else:  # compute: dask -> each chunk on a worker, with its own DuckDB connection (nextbest/distributed.py)
            from nextbest.distributed import map_partitions

            built = map_partitions(
                dask, _build_chunk_on_worker, list(enumerate(chunks)), job,
                on_done=lambda _i, _parts: [tick(view) for view in steps],
            )  # fmt: skip
        for chunk_parts in built:
            for view in steps:
                parts[view].append(chunk_parts[view])
        out_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for view in steps:
            path = out_dir / f"{view}.parquet"
            rows = _concat_parts(parts[view], path)
            paths[view] = path
            logger.info("feature table %s: %d rows x %d features -> %s", view, rows, len(VIEW_FIELDS[view]), path)
        if progress is not None:
            progress("done", total, total)
        return paths
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


_BUILDERS: dict[str, Callable[[duckdb.DuckDBPyConnection], str]] = {
    PROFILE_VIEW: _build_profile,
    ACTIVITY_VIEW: _build_activity,
    CONTACT_VIEW: _build_contacts,
}


@dataclass(frozen=True)
class _ChunkJob:
    """What every customer chunk's build reads: the sources, the parts folder, the snapshot times."""

    sources_dir: Path
    work: Path
    start_day: datetime
    times: list[datetime]
    excluded: frozenset[int]
    memory_limit: str | None


def _build_chunk(
    con: duckdb.DuckDBPyConnection,
    job: _ChunkJob,
    index: int,
    bounds: tuple[int, int],
    tick: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """One customer chunk's part of every view, written under `job.work`: {view: part path}."""
    bind_sources(con, job.sources_dir, bounds, job.excluded)
    _prepare_grid(con, job.start_day, job.times)
    out: dict[str, Path] = {}
    for view, builder in _BUILDERS.items():
        out[view] = job.work / f"{view}-{index:05d}.parquet"
        _copy_sql(con, builder(con), VIEW_FIELDS[view], out[view])
        if tick is not None:
            tick(view)
    state = fold_realtime_state(realtime_events(con))
    out[REALTIME_VIEW] = job.work / f"{REALTIME_VIEW}-{index:05d}.parquet"
    _write_parquet(state[state[TIMESTAMP_FIELD] <= pd.Timestamp(job.times[-1])], out[REALTIME_VIEW])
    if tick is not None:
        tick(REALTIME_VIEW)
    return out


def _build_chunk_on_worker(item: tuple[int, tuple[int, int]], job: _ChunkJob) -> dict[str, Path]:
    """`_build_chunk` on a Dask worker: its own one-thread DuckDB connection, spilling under the parts folder."""
    index, bounds = item
    con = connect(job.sources_dir, threads=1, memory_limit=job.memory_limit, excluded=job.excluded)
    try:
        con.execute(f"SET temp_directory = '{job.work / f'duckdb_tmp-{index:05d}'}'")
        return _build_chunk(con, job, index, bounds)
    finally:
        con.close()


def _customer_chunks(con: duckdb.DuckDBPyConnection, sources_dir: Path, size: int) -> list[tuple[int, int]]:
    """[lo, hi) customer id ranges of `size` ids covering every customer of the sources."""
    id_row = con.execute("SELECT min(customer_id), max(customer_id) FROM src_customers").fetchone()
    if id_row is None or id_row[0] is None:
        raise DataError(f"no customers in {source_path(sources_dir, 'customers')}")
    first_id, last_id = int(id_row[0]), int(id_row[1])
    return [(a, min(a + size, last_id + 1)) for a in range(first_id, last_id + 1, size)]


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=131_072)
