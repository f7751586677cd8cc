"""The durable decision log: every decision, the actions it delivered, real-time events, consent changes, feedback.

One SQLAlchemy-core schema for both paths: embedded SQLite (`sqlite:///<home>/decisions.db`, WAL journal so
readers never block the writer) and production PostgreSQL (`settings.serving.decision_log_uri`). Customer keys are
text (an int key as its digits), so int- and string-keyed projects share the schema.

Two write paths, chosen by what the data is for, and one rule: whatever a 2xx acknowledged is never lost.

* Write-through (synchronous, one short transaction, committed before the answer): the rows the policy reads back --
  which actions a decision delivered (`decision_contacts`, caps and cool-downs must see a decision made a
  millisecond ago by any worker), consent changes (`consents`, effective at once) -- and feedback.
* Write-ahead, then write-behind: the full decision record (context, feature snapshot, scores, chosen and rejected
  actions with rules, versions, request id) and the event log. Each record is first appended to this process's
  journal (`nextbest.journal`: on disk before the answer, survives the process being killed), then queued for a
  background thread that inserts batches, ignoring rows already there (decision ids and event ids are unique), so a
  replay never duplicates. A record that fails alone (a poison value) goes to a dead-letter file with the error
  and never stops the writer; a database that is down is retried with back-off while the journal keeps the records;
  the writer thread is restarted if it ever dies. At start, journals of dead processes are replayed.
  `backlogged` tells the service to shed load before the queue fills.

Idempotency: an event or a feedback carrying a client key (`event_id`, `feedback_id`, or the `Idempotency-Key`
header) is stored once; a retry is answered as a duplicate and changes nothing.

Feedback joins a decision by id. Decision ids carry an HMAC of their time and random parts (`serving.
decision_id_secret`, or a per-installation secret file), so a made-up id is refused. A decision that delivered no
action has no write-through row, so feedback reaching another worker before that worker's writer ran (~50 ms) finds
nothing: if the id is genuine and minted in the last `PENDING_JOIN_WINDOW_S`, the feedback is committed with
`customer_id` NULL (`joined: false`) and joins when the decision row lands.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import queue
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
import ujson
from sqlalchemy.engine import Engine

from nextbest.errors import NextbestError
from nextbest.journal import Journal, log_tag, orphaned_records
from nextbest.policy import ContactRecord

logger = logging.getLogger(__name__)

Outcome = Literal["shown", "accepted", "dismissed", "ignored"]
OUTCOMES: tuple[str, ...] = ("shown", "accepted", "dismissed", "ignored")
KEY_LENGTH = 64
#: the channel of a consent change that covers every channel (a general marketing opt-out)
ALL_CHANNELS = "*"

metadata = sa.MetaData()

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("decision_id", sa.String(40), primary_key=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("customer_id", sa.String(KEY_LENGTH), nullable=False, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    # wall-clock time the decision started (its `ts` may be simulated): what a replay treats as "already known"
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("request", sa.JSON),
    sa.Column("context", sa.JSON),
    sa.Column("features", sa.JSON),
    sa.Column("feature_service", sa.String(64)),
    sa.Column("model_versions", sa.JSON),
    sa.Column("policy_version", sa.String(64)),
    sa.Column("churn_risk", sa.Float),
    sa.Column("model_scores", sa.JSON),
    sa.Column("related_features", sa.JSON),
    sa.Column("scores", sa.JSON),
    sa.Column("chosen", sa.JSON),
    sa.Column("rejected", sa.JSON),
    sa.Column("degraded", sa.Boolean, nullable=False, default=False),
    sa.Column("cold_start", sa.Boolean, nullable=False, default=False),
    sa.Column("latency_ms", sa.Float),
    # Experiments (`nextbest.assignment`): the universal holdout, the split and arm that served the decision, the
    # campaign that made it and whether the customer was in its control group.
    sa.Column("holdout", sa.Boolean),
    sa.Column("split", sa.String(64)),
    sa.Column("arm", sa.String(64)),
    sa.Column("campaign_id", sa.String(64), index=True),
    sa.Column("campaign_control", sa.Boolean),
    # The probability that the policy would pick each served action (exploration; 1.0 when it picks greedily).
    sa.Column("choice_probabilities", sa.JSON),
)

decision_contacts = sa.Table(
    "decision_contacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.String(40), nullable=False, index=True),
    sa.Column("customer_id", sa.String(KEY_LENGTH), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("action_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16)),
    sa.Column("outcome_ts", sa.DateTime(timezone=True)),
    # wall-clock commit times of the row and of its outcome (a replay sees only what was committed before it)
    sa.Column("recorded_at", sa.DateTime(timezone=True)),
    sa.Column("outcome_recorded_at", sa.DateTime(timezone=True)),
    sa.Index("ix_decision_contacts_customer_ts", "customer_id", "ts"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.String(40), nullable=False, index=True),
    sa.Column("customer_id", sa.String(KEY_LENGTH)),
    sa.Column("action_id", sa.String(64)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("feedback_id", sa.String(64), unique=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), unique=True),
    sa.Column("customer_id", sa.String(KEY_LENGTH), nullable=False, index=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON),
    sa.Column("pushed", sa.Boolean, nullable=False, default=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(KEY_LENGTH), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("granted", sa.Boolean, nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True)),
    sa.Index("ix_consents_customer_ts", "customer_id", "ts"),
)

#: every decision policy a decision was made with, by its digest (replaying a decision needs the policy itself)
policies = sa.Table(
    "policies",
    metadata,
    sa.Column("policy_version", sa.String(64), primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
)

#: the columns a later version added: created on an older database at open (SQLite, PostgreSQL)
_ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "decisions": (
        "decided_at",
        "request_id",
        "request",
        "model_scores",
        "related_features",
        "holdout",
        "split",
        "arm",
        "campaign_id",
        "campaign_control",
        "choice_probabilities",
    ),
    "decision_contacts": ("recorded_at", "outcome_recorded_at"),
    "feedback": ("value", "feedback_id"),
    "events": ("event_id",),
}

#: keys per `IN (...)` of a batched read (well under SQLite's bound-parameter limit)
_IN_CHUNK = 500


def _history_statement(where: Any, seen: bool = False) -> sa.Select:
    """The contact history the caps read (`where` picks the customers; `seen`: only what was committed before
    `:seen_before`, a replay's view)."""
    c = decision_contacts.c
    cols = (c.ts, c.decision_id, c.channel, c.action_id, c.kind, c.outcome, c.outcome_ts, c.outcome_recorded_at)
    stmt = sa.select(*cols).where(where, c.ts >= sa.bindparam("since"))
    if seen:
        stmt = stmt.where(c.recorded_at < sa.bindparam("seen_before"))
    return stmt.order_by(c.ts, c.id)


def _consents_statement(where: Any, seen: bool = False) -> sa.Select:
    g = consents.c
    stmt = sa.select(g.customer_id, g.channel, g.granted).where(where)
    if seen:
        stmt = stmt.where(g.recorded_at < sa.bindparam("seen_before"))
    return stmt.order_by(g.ts, g.id)


# The reads every decision makes, built once: a statement built per call costs ~3x its execution on SQLite
# (SQLAlchemy's construction and cache key; measured 0.46 -> 0.15 ms per contact_state, docs/benchmarks.md).
_ONE = decision_contacts.c.customer_id == sa.bindparam("customer_id")
_MANY = decision_contacts.c.customer_id.in_(sa.bindparam("customer_ids", expanding=True))
_HISTORY = _history_statement(_ONE)
_HISTORY_SEEN = _history_statement(_ONE, seen=True)
_HISTORY_MANY = _history_statement(_MANY).add_columns(decision_contacts.c.customer_id)
_CONSENTS = _consents_statement(consents.c.customer_id == sa.bindparam("customer_id"))
_CONSENTS_SEEN = _consents_statement(consents.c.customer_id == sa.bindparam("customer_id"), seen=True)
_CONSENTS_MANY = _consents_statement(consents.c.customer_id.in_(sa.bindparam("customer_ids", expanding=True)))


class UnknownDecisionError(NextbestError):
    """Feedback names a decision id that was never logged (or a made-up one)."""


class DecisionLogError(NextbestError):
    """The decision log cannot be opened or written."""


@dataclass(slots=True)
class DecisionRecord:
    """Everything logged about one decision (write-ahead, then write-behind)."""

    decision_id: str
    ts: datetime
    customer_id: int | str
    channel: str
    context: Mapping[str, Any]
    features: Mapping[str, Any]
    feature_service: str | None
    model_versions: Mapping[str, Any]
    policy_version: str | None
    churn_risk: float | None
    scores: Mapping[str, float]
    chosen: Sequence[Mapping[str, Any]]
    rejected: Sequence[Mapping[str, Any]]
    degraded: bool = False
    cold_start: bool = False
    latency_ms: float | None = None
    # Entity-level model probabilities by model name (churn risk, a per-customer propensity, a rule's risk).
    model_scores: Mapping[str, float] = field(default_factory=dict)
    # Other entities a model rule read, by the rule's model: {"key": ..., "features": {...}} (e.g. a loan).
    related_features: Mapping[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    # The request as the channel sent it (what a replay decides again from)
    request: Mapping[str, Any] = field(default_factory=dict)
    decided_at: datetime | None = None
    holdout: bool | None = None
    split: str | None = None
    arm: str | None = None
    campaign_id: str | None = None
    campaign_control: bool | None = None
    choice_probabilities: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class EventRecord:
    customer_id: int | str
    ts: datetime
    event_type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    pushed: bool = False
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    event_id: str | None = None  # the client's idempotency key, else one made here (replays stay unique)


@dataclass(slots=True)
class _Flush:
    done: threading.Event


@dataclass(slots=True)
class _Queued:
    table: str
    row: dict[str, Any]
    segment: int | None
    # The row's JSON columns already encoded (`_decision_row_encoded`): what SQLite stores, and the journal line is
    # made of.
    encoded: dict[str, str] | None = None


#: SQLite: how often the writer thread checkpoints the WAL (requests never do; see make_engine).
CHECKPOINT_INTERVAL_S = 1.0
#: How long after a decision feedback may arrive before its record is written, and still be accepted for a join.
PENDING_JOIN_WINDOW_S = 300.0
#: Tolerated clock difference between the worker or replica that minted an id and the one receiving feedback.
CLOCK_SKEW_S = 5.0
#: the queue share past which `backlogged` asks the service to shed load
BACKLOG_SHARE = 0.8
#: client event keys this process remembers (a retry within them is answered a duplicate without a query)
RECENT_EVENT_IDS = 10_000


# -------------------------------------------------------------------- decision ids


def installation_secret(folder: Path) -> bytes:
    """This installation's decision-id secret: `<folder>/decision_id.key` (mode 600), made on first use."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "decision_id.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def _signature(secret: bytes, body: str) -> str:
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:8]


def new_decision_id(secret: bytes) -> str:
    """A unique decision id: 12 hex digits of its millisecond (time-ordered), 12 random, 8 of an HMAC of both."""
    body = f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"
    return body + _signature(secret, body)


def genuine(decision_id: str, secret: bytes) -> bool:
    """Whether `decision_id` was minted with this secret (a made-up id of the right shape is not)."""
    if len(decision_id) != 32:
        return False
    try:
        int(decision_id, 16)
    except ValueError:
        return False
    return hmac.compare_digest(decision_id[24:], _signature(secret, decision_id[:24]))


def minted_recently(decision_id: str, secret: bytes, now: float | None = None) -> bool:
    """True if `decision_id` is genuine and was minted within the join window."""
    if not genuine(decision_id, secret):
        return False
    age_s = (now if now is not None else time.time()) - int(decision_id[:12], 16) / 1000.0
    return -CLOCK_SKEW_S <= age_s <= PENDING_JOIN_WINDOW_S


# -------------------------------------------------------------------- values and engines


def _utc(ts: datetime | None) -> datetime | None:
    # SQLite stores naive datetimes; every timestamp we write is UTC, so naive values read back are UTC.
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def clean(value: Any) -> Any:
    """A JSON-safe copy that never raises: NaN/inf and out-of-range integers become null, numpy scalars Python,
    datetimes ISO strings, anything else its `str` (PostgreSQL JSON rejects NaN; a poison value must not reach a
    writer). The exact built-in types a decision record is made of take a fast path (a record has ~100 values)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return value if -(2**63) <= value < 2**63 else None
    if kind is dict:
        return {k if type(k) is str else str(k): clean(v) for k, v in value.items()}
    if kind is list:
        return [clean(v) for v in value]
    return _clean_other(value)


def _clean_other(value: Any) -> Any:
    """`clean` of anything but the exact built-in types (mappings, sequences, numpy scalars, datetimes, ...)."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def make_engine(uri: str) -> Engine:
    """A SQLAlchemy engine for the log; SQLite gets WAL, NORMAL sync and a busy timeout, PostgreSQL timeouts."""
    if uri.startswith("sqlite"):
        path = uri.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(uri, connect_args={"check_same_thread": False, "timeout": 10})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: commits survive a process crash; only an OS crash may lose the last transactions.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=10000")
            # No automatic checkpoint: it runs inside whichever commit crosses 1,000 WAL pages -- often a request's
            # write-through, which then waits several ms copying pages. The writer thread checkpoints instead.
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        return engine
    for plain in ("postgresql://", "postgres://"):
        if uri.startswith(plain):
            # psycopg2 is the driver we ship; SQLAlchemy 2.1 would otherwise pick psycopg 3.
            uri = "postgresql+psycopg2://" + uri[len(plain) :]
    # Every I/O bounded: 5 s to connect, 10 s per statement; a hung database fails fast into the retry path.
    connect_args = {"connect_timeout": 5, "options": "-c statement_timeout=10000"}
    return sa.create_engine(uri, pool_pre_ping=True, pool_size=4, max_overflow=4, connect_args=connect_args)


def insert_ignoring_duplicates(engine: Engine, table: sa.Table) -> Any:
    """An INSERT that skips rows whose unique key is already stored (SQLite and PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


def _decision_row_encoded(record: DecisionRecord) -> tuple[dict[str, Any], dict[str, str]]:
    """A decision record's row (its JSON columns `clean`ed) and those columns' JSON text, parsing to what
    SQLAlchemy's JSON type would store (`json_column`: the text in the same pass, `clean` only where needed)."""
    row: dict[str, Any] = {
        "decision_id": record.decision_id,
        "ts": record.ts,
        "customer_id": str(record.customer_id),
        "channel": record.channel,
        "decided_at": record.decided_at,
        "request_id": record.request_id,
        "feature_service": record.feature_service,
        "policy_version": record.policy_version,
        "degraded": bool(record.degraded),
        "cold_start": bool(record.cold_start),
        "latency_ms": clean(record.latency_ms),
        "holdout": record.holdout,
        "split": record.split,
        "arm": record.arm,
        "campaign_id": record.campaign_id,
        "campaign_control": record.campaign_control,
    }
    encoded: dict[str, str] = {}
    for name, value in (
        ("request", dict(record.request)),
        ("context", dict(record.context)),
        ("features", dict(record.features)),
        ("model_versions", dict(record.model_versions)),
        ("churn_risk", record.churn_risk),
        ("model_scores", dict(record.model_scores)),
        ("related_features", dict(record.related_features)),
        ("scores", dict(record.scores)),
        ("chosen", list(record.chosen)),
        ("rejected", list(record.rejected)),
        ("choice_probabilities", dict(record.choice_probabilities)),
    ):
        row[name], encoded[name] = json_column(value)
    return row, {name: encoded[name] for name in _DECISION_JSON}


#: JSON text with every digit as "d" and the point as "p" (`_long_integer`)
_DIGIT_CLASSES = bytes.maketrans(b"0123456789.", b"ddddddddddp")
_NINETEEN_DIGITS = b"d" * 19


def _long_integer(text: str) -> bool:
    """Whether JSON text may hold an integer outside int64: a run of 19+ digits not after a point (a float's digits
    after its point, 0.000612740589703102, are not one, nor its integer part: repr switches to an exponent from 1e16;
    a long number inside a string is, which only costs the `clean` path). One C pass, no regex (~3 us a record)."""
    shape = text.encode("utf-8", "surrogatepass").translate(_DIGIT_CLASSES)
    at = shape.find(_NINETEEN_DIGITS)
    while at >= 0:
        begin = at
        while begin > 0 and shape[begin - 1] == 100:  # b"d"
            begin -= 1
        if begin == 0 or shape[begin - 1] != 112:  # not after b"p"
            return True
        end = at + 19
        while end < len(shape) and shape[end] == 100:
            end += 1
        at = shape.find(_NINETEEN_DIGITS, end)
    return False


def _strict_dumps(value: Any) -> str:
    """JSON text of `value` in ujson's C encoder, refusing what the standard library's strict encoder refuses:
    NaN/inf (OverflowError), every type JSON lacks (numpy scalars, datetimes, ...: TypeError). About 4x faster than
    `json.JSONEncoder(allow_nan=False)` on a record's ~250 values; the text is compact and a float may be written
    differently (1e16, not 1e+16), but it parses to the same values: floats round-trip exactly."""
    return ujson.dumps(value, allow_nan=False, escape_forward_slashes=False)


def json_column(value: Any) -> tuple[Any, str]:
    """(`clean(value)`, JSON text of it) without `clean`'s pass over a value that needs none: the strict
    encoder refuses NaN/inf and every type JSON lacks (numpy scalars, datetimes, ...), and a run of 19 digits may be
    an integer outside int64; any of them takes the `clean` path (its text is `json.dumps`). A JSON-safe value is its
    own `clean` (text that parses to the same values), so the common record skips a pass over its ~250 values
    (decisions 4% faster), and is encoded in C (docs/benchmarks.md)."""
    try:
        text = _strict_dumps(value)
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        if not _long_integer(text):
            return value, text
    safe = clean(value)
    return safe, json.dumps(safe)


#: the JSON columns of a decision row, encoded once per row (`_decision_row_encoded`)
_DECISION_JSON = tuple(c.name for c in decisions.c if isinstance(c.type, sa.JSON))
#: the decisions table with its JSON columns as text: an insert of rows whose JSON is encoded already
_decisions_text = sa.Table(
    "decisions",
    sa.MetaData(),
    *(
        sa.Column(c.name, sa.Text if c.name in _DECISION_JSON else c.type, primary_key=c.primary_key)
        for c in decisions.c
    ),
)


def _journal_line(table: str, row: Mapping[str, Any], encoded: Mapping[str, str]) -> str:
    """The journal line of a row whose JSON columns are encoded (it parses to the same record as `Journal.append`
    writes; whitespace aside)."""
    scalars = json.dumps({k: v for k, v in row.items() if k not in encoded}, default=str)
    spliced = ",".join([f'"{k}":{v}' for k, v in encoded.items()])  # the JSON column names need no escaping
    head = f"{scalars[:-1]}," if len(scalars) > 2 else "{"
    return f'{{"table":{json.dumps(table)},"row":{head}{spliced}}}}}'


def _event_row(record: EventRecord) -> dict[str, Any]:
    return {
        "event_id": record.event_id or secrets.token_hex(16),
        "customer_id": str(record.customer_id),
        "ts": record.ts,
        "event_type": record.event_type,
        "payload": clean(dict(record.payload)),
        "pushed": bool(record.pushed),
        "received_at": record.received_at,
    }


_DATETIMES = {"ts", "received_at", "decided_at"}


def _from_journal(row: dict[str, Any]) -> dict[str, Any]:
    """A row read back from the journal: its timestamps are ISO strings again."""
    return {k: (datetime.fromisoformat(v) if k in _DATETIMES and isinstance(v, str) else v) for k, v in row.items()}


class DecisionLog:
    """Durable decisions, contacts, consents, feedback and events; thread-safe; one per process.

    Call `start()` before logging write-behind records (it also replays dead processes' journals) and `close()` on
    shutdown (drains the queue). `journal_dir` (default: beside the spool, or none for a bare test log) holds the
    write-ahead journal; `spool_path` names the dead-letter file of records that could not be written.
    """

    def __init__(
        self,
        uri: str,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.05,
        spool_path: Path | None = None,
        journal_dir: Path | None = None,
        key_type: Literal["int", "str"] = "int",
        id_secret: bytes | None = None,
    ) -> None:
        self.uri = uri
        self.key_type = key_type
        self.engine = make_engine(uri)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._dead_letters = spool_path.with_name(spool_path.stem + ".dead.jsonl") if spool_path else None
        journal_dir = journal_dir or (spool_path.parent / "journal" if spool_path else None)
        # Segments tagged by database (its URL without a password): one home may hold several logs' journals.
        self._journal_tag = log_tag(self.engine.url.render_as_string(hide_password=True))
        self._journal = Journal(journal_dir, tag=self._journal_tag) if journal_dir else None
        self._journal_dir = journal_dir
        self._secret = id_secret or secrets.token_bytes(32)
        self._pending: set[str] = set()
        self._recent_event_ids: dict[str, None] = {}  # insertion-ordered: the oldest is evicted first
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._next_checkpoint = 0.0
        self.written = 0
        self.dead_lettered = 0
        self.create_schema()

    # ---------------------------------------------------------------- lifecycle
    def create_schema(self) -> None:
        """Create the tables if missing (and the columns a later version added); tolerate a concurrent creator."""
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                self._add_missing_columns()
                return
            except sa.exc.OperationalError as exc:
                if attempt == 2:
                    raise DecisionLogError(f"cannot create decision log schema at {self.uri}: {exc}") from exc
                time.sleep(0.2)
            except sa.exc.IntegrityError:
                time.sleep(0.2)  # PostgreSQL: a concurrent CREATE TABLE won; the next pass sees the tables

    def _add_missing_columns(self) -> None:
        inspector = sa.inspect(self.engine)
        for table_name, names in _ADDED_COLUMNS.items():
            present = {c["name"] for c in inspector.get_columns(table_name)}
            for name in names:
                if name in present:
                    continue
                column = metadata.tables[table_name].c[name]
                kind = column.type.compile(dialect=self.engine.dialect)
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f'ALTER TABLE "{table_name}" ADD COLUMN "{name}" {kind}')
                if column.unique:
                    with self.engine.begin() as conn:
                        conn.exec_driver_sql(
                            f'CREATE UNIQUE INDEX IF NOT EXISTS "ux_{table_name}_{name}" ON "{table_name}" ("{name}")'
                        )
                logger.info("decision log: added column %s.%s", table_name, name)

    def start(self) -> None:
        """Replay the journals of dead processes, then start the writer thread."""
        self.replay_orphans()
        self._ensure_writer()

    def _ensure_writer(self) -> None:
        if self._closed:
            return
        if self._thread is None or not self._thread.is_alive():
            if self._thread is not None:
                logger.error("decision log writer thread had stopped; restarting it")
            self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Drain everything queued, stop the writer thread and release connections."""
        if self._closed:
            return
        if self._thread is not None:
            self.flush(timeout)
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        else:
            self._drain_inline()
        self._closed = True
        if self._journal is not None:
            self._journal.close()
        self.engine.dispose()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued before this call is written; False on timeout."""
        if self._thread is None:
            self._drain_inline()
            return True
        self._ensure_writer()
        marker = _Flush(threading.Event())
        self._queue.put(marker)
        return marker.done.wait(timeout)

    @property
    def backlogged(self) -> bool:
        """The write-behind queue is nearly full (the database is slow or down): shed load before it fills."""
        return self._queue.qsize() >= BACKLOG_SHARE * self._queue_size

    # ---------------------------------------------------------------- decision ids
    def new_decision_id(self) -> str:
        return new_decision_id(self._secret)

    def genuine(self, decision_id: str) -> bool:
        return genuine(decision_id, self._secret)

    def key(self, stored: str) -> int | str:
        """A stored customer key in the project's type."""
        return int(stored) if self.key_type == "int" else str(stored)

    def _keyed(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        if out.get("customer_id") is not None:
            out["customer_id"] = self.key(out["customer_id"])
        return out

    # ---------------------------------------------------------------- write-through
    def record_contacts(
        self,
        decision_id: str,
        customer_id: int | str,
        channel: str,
        ts: datetime,
        actions: Sequence[tuple[str, str]],
    ) -> None:
        """Commit the actions a decision delivered ((action id, kind) in rank order) before answering."""
        self.record_contacts_many([(decision_id, customer_id, channel, ts, actions)])

    def record_contacts_many(
        self, deliveries: Sequence[tuple[str, int | str, str, datetime, Sequence[tuple[str, str]]]]
    ) -> None:
        """`record_contacts` for many decisions ((decision id, customer, channel, ts, actions)) in ONE transaction:
        all are committed or none (a batch of decisions delivers all its actions or nothing)."""
        recorded_at = datetime.now(UTC)
        rows = [
            {
                "decision_id": decision_id,
                "customer_id": str(customer_id),
                "ts": ts,
                "channel": channel,
                "action_id": action_id,
                "kind": kind,
                "rank": rank,
                "recorded_at": recorded_at,
            }
            for decision_id, customer_id, channel, ts, actions in deliveries
            for rank, (action_id, kind) in enumerate(actions, 1)
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(decision_contacts.insert(), rows)

    def record_consent(self, customer_id: int | str, channel: str, granted: bool, ts: datetime) -> None:
        """Commit a consent change (channel `*`: every channel) before answering: the next decision honours it."""
        with self.engine.begin() as conn:
            row = {"customer_id": str(customer_id), "channel": channel, "granted": granted, "ts": ts}
            conn.execute(consents.insert(), {**row, "recorded_at": datetime.now(UTC)})

    def remember_policy(self, policy_version: str, config: Mapping[str, Any]) -> None:
        """Keep the policy a decision is made with, by its digest (once), so the decision can be replayed."""
        stmt = insert_ignoring_duplicates(self.engine, policies)
        with self.engine.begin() as conn:
            row = {"policy_version": policy_version, "config": clean(dict(config)), "first_seen": datetime.now(UTC)}
            conn.execute(stmt, [row])

    def policy(self, policy_version: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(policies.c.config).where(policies.c.policy_version == policy_version)).first()
        return dict(row.config) if row is not None else None

    # ---------------------------------------------------------------- reads the policy needs
    def contact_history(self, customer_id: int | str, since: datetime) -> list[ContactRecord]:
        """Actions delivered to this customer since `since`, with outcomes (what caps and cool-downs need)."""
        with self.engine.connect() as conn:
            return self._history(conn, customer_id, since)

    def contact_state(
        self, customer_id: int | str, since: datetime, seen_before: datetime | None = None
    ) -> tuple[list[ContactRecord], list[tuple[str, bool]]]:
        """The contact history and the consent changes (channel, granted) in time order, in one connection.

        `seen_before` (a replay): only what had been committed before that wall-clock time -- the contacts, outcomes
        and consent changes the decision could see when it was made.
        """
        params: dict[str, Any] = {"customer_id": str(customer_id), "since": since}
        with self.engine.connect() as conn:
            if seen_before is None:
                history = [self._contact_record(r) for r in conn.execute(_HISTORY, params)]
                rows = conn.execute(_CONSENTS, params)
            else:
                params["seen_before"] = seen_before
                history = [self._contact_record(r, seen_before) for r in conn.execute(_HISTORY_SEEN, params)]
                rows = conn.execute(_CONSENTS_SEEN, params)
            changes = [(r.channel, bool(r.granted)) for r in rows]
        return history, changes

    def contact_states(
        self, customer_ids: Sequence[int | str], since: datetime
    ) -> dict[str, tuple[list[ContactRecord], list[tuple[str, bool]]]]:
        """`contact_state` of many customers (by `str(key)`), in one connection and a few `IN` queries.

        Each customer's lists are exactly what `contact_state(key, since)` returns; a caller needing a later `since`
        per customer filters the history by `ts`.
        """
        keys = list(dict.fromkeys(str(k) for k in customer_ids))
        out: dict[str, tuple[list[ContactRecord], list[tuple[str, bool]]]] = {k: ([], []) for k in keys}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                params = {"customer_ids": keys[start : start + _IN_CHUNK], "since": since}
                for r in conn.execute(_HISTORY_MANY, params):
                    out[r.customer_id][0].append(self._contact_record(r))
                for r in conn.execute(_CONSENTS_MANY, params):
                    out[r.customer_id][1].append((r.channel, bool(r.granted)))
        return out

    @staticmethod
    def _contact_record(r: Any, seen_before: datetime | None = None) -> ContactRecord:
        outcome, outcome_ts = r.outcome, _utc(r.outcome_ts)
        if seen_before is not None:
            recorded = _utc(r.outcome_recorded_at)
            if recorded is None or recorded >= seen_before:
                outcome, outcome_ts = None, None  # the outcome arrived after the decision being replayed
        return ContactRecord(
            ts=_utc(r.ts),  # type: ignore[arg-type]
            decision_id=r.decision_id,
            channel=r.channel,
            action_id=r.action_id,
            kind=r.kind,
            outcome=outcome,
            outcome_ts=outcome_ts,
        )

    def _history(self, conn: sa.Connection, customer_id: int | str, since: datetime) -> list[ContactRecord]:
        return [
            self._contact_record(r) for r in conn.execute(_HISTORY, {"customer_id": str(customer_id), "since": since})
        ]

    # ---------------------------------------------------------------- feedback
    def record_feedback(
        self,
        decision_id: str,
        outcome: str,
        action_id: str | None = None,
        ts: datetime | None = None,
        value: float | None = None,
        feedback_id: str | None = None,
    ) -> dict[str, Any]:
        """Join an outcome to its decision (and delivered action); unknown or made-up id -> UnknownDecisionError.

        With `feedback_id` (a client's idempotency key) a retry is answered as a duplicate and changes nothing.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome: must be one of {OUTCOMES}, got {outcome!r}")
        ts = ts or datetime.now(UTC)
        if feedback_id is not None and (earlier := self._feedback_by_id(feedback_id)) is not None:
            return earlier
        with self._lock:
            pending = decision_id in self._pending
        if pending:
            self.flush()
        found = self._find_decision(decision_id)
        if found is None:
            if action_id is None and minted_recently(decision_id, self._secret):
                return self._record_pending_feedback(decision_id, outcome, ts, value, feedback_id)
            raise UnknownDecisionError(f"unknown decision_id {decision_id!r}")
        customer_id, delivered = found
        if action_id is not None and action_id not in delivered:
            raise UnknownDecisionError(
                f"decision {decision_id!r} did not deliver action {action_id!r}; delivered: {sorted(delivered)}"
            )
        row = {"decision_id": decision_id, "customer_id": str(customer_id), "action_id": action_id}
        row.update(outcome=outcome, ts=ts, value=value, feedback_id=feedback_id)
        c = decision_contacts.c
        try:
            with self.engine.begin() as conn:
                conn.execute(feedback.insert(), row)
                upd = sa.update(decision_contacts).where(c.decision_id == decision_id)
                if action_id is not None:
                    upd = upd.where(c.action_id == action_id)
                # A later "shown" must not overwrite a final outcome such as "dismissed".
                if outcome == "shown":
                    upd = upd.where(c.outcome.is_(None))
                conn.execute(upd.values(outcome=outcome, outcome_ts=ts, outcome_recorded_at=datetime.now(UTC)))
        except sa.exc.IntegrityError:
            if feedback_id is not None and (earlier := self._feedback_by_id(feedback_id)) is not None:
                return earlier  # the same retry raced us on another worker
            raise
        return {**self._answer(row), "customer_id": customer_id, "joined": True}

    @staticmethod
    def _answer(row: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("decision_id", "customer_id", "action_id", "outcome")
        return {**{k: row[k] for k in keys}, "duplicate": False}

    def _feedback_by_id(self, feedback_id: str) -> dict[str, Any] | None:
        f = feedback.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(feedback).where(f.feedback_id == feedback_id)).mappings().first()
        if row is None:
            return None
        answer = self._keyed(self._answer(row))
        return {**answer, "joined": row["customer_id"] is not None, "duplicate": True}

    def _record_pending_feedback(
        self, decision_id: str, outcome: str, ts: datetime, value: float | None, feedback_id: str | None
    ) -> dict[str, Any]:
        """Commit feedback for a decision whose record another worker has not written yet; join when it lands.

        Only a decision that delivered nothing can be missing here (delivered actions are write-through), so there
        are no contact outcomes to update: the join is the feedback row's customer_id.
        """
        row = {"decision_id": decision_id, "customer_id": None, "action_id": None, "outcome": outcome, "ts": ts}
        row.update(value=value, feedback_id=feedback_id)
        with self.engine.begin() as conn:
            conn.execute(feedback.insert(), row)
        # The writer fills customer_id after its batch commits; if that ran before our commit, do it ourselves.
        joined = self._join_pending_feedback([decision_id]) > 0
        found = self._find_decision(decision_id) if joined else None
        logger.info("feedback for decision %s accepted before its record was written (joined: %s)", decision_id, joined)
        return {**self._answer(row), "customer_id": found[0] if found else None, "joined": joined}

    def _join_pending_feedback(self, decision_ids: Sequence[str]) -> int:
        """Fill customer_id of feedback rows that arrived before their decision row; returns rows joined.

        A read first (no write lock taken: this runs after every batch, and early feedback is rare).
        """
        d, f = decisions.c, feedback.c
        with self.engine.connect() as conn:
            waiting = conn.execute(
                sa.select(f.decision_id).where(f.decision_id.in_(list(decision_ids)), f.customer_id.is_(None)).limit(1)
            ).first()
        if waiting is None:
            return 0
        owner = sa.select(d.customer_id).where(d.decision_id == f.decision_id).scalar_subquery()
        stmt = (
            sa.update(feedback)
            .where(f.decision_id.in_(list(decision_ids)), f.customer_id.is_(None))
            .where(sa.exists().where(d.decision_id == f.decision_id))
            .values(customer_id=owner)
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount or 0)

    def _find_decision(self, decision_id: str) -> tuple[int | str, set[str]] | None:
        c = decision_contacts.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.customer_id, c.action_id).where(c.decision_id == decision_id)).all()
            if rows:
                return self.key(rows[0].customer_id), {r.action_id for r in rows}
            row = conn.execute(sa.select(decisions.c.customer_id).where(decisions.c.decision_id == decision_id)).first()
        return (self.key(row.customer_id), set()) if row is not None else None

    # ---------------------------------------------------------------- write-ahead, then write-behind
    def log_decision(self, record: DecisionRecord) -> None:
        """Journal the full decision record, then queue it for the writer (see the module docstring)."""
        self.log_decisions([record])

    def log_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """`log_decision` of many records at once: one journal write for all of them (a batch's decisions)."""
        if not records:
            return
        with self._lock:
            self._pending.update(r.decision_id for r in records)
        pairs = [_decision_row_encoded(r) for r in records]
        self._put_many("decisions", [row for row, _enc in pairs], [enc for _row, enc in pairs])

    def reserve_event(self, event_id: str) -> bool:
        """Claim a client's event key before acting on the event: False when it was stored before (in the database,
        or claimed by this process), so a retry changes nothing -- no second consent change, no second push. A
        retry racing on another worker at the same instant is dropped at insert (its push may repeat)."""
        with self._lock:
            if event_id in self._recent_event_ids:
                return False
            self._recent_event_ids[event_id] = None
            while len(self._recent_event_ids) > RECENT_EVENT_IDS:
                self._recent_event_ids.pop(next(iter(self._recent_event_ids)))
        return not self._event_seen(event_id)

    def release_event(self, event_id: str) -> None:
        """Give a claimed key back when its event could not be kept: the client's retry must store it."""
        with self._lock:
            self._recent_event_ids.pop(event_id, None)

    def log_event(self, record: EventRecord, reserved: bool = False) -> bool:
        """Journal the event, then queue it; False (nothing stored) when its client key was stored before.
        `reserved`: the caller claimed the key with `reserve_event` already."""
        if record.event_id is not None and not reserved and not self.reserve_event(record.event_id):
            return False
        try:
            self._put("events", _event_row(record))
        except BaseException:
            if record.event_id is not None:  # not kept: the client's retry must store it, not be told "duplicate"
                self.release_event(record.event_id)
            raise
        return True

    def _event_seen(self, event_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(events.c.id).where(events.c.event_id == event_id)).first() is not None

    def _put(self, table: str, row: dict[str, Any]) -> None:
        self._put_many(table, [row])

    def _put_many(
        self, table: str, rows: Sequence[dict[str, Any]], encoded: Sequence[dict[str, str]] | None = None
    ) -> None:
        """Journal the rows (one write), then queue them for the writer (or write them here without one);
        `encoded`: each row's JSON columns encoded already (`_decision_row_encoded`)."""
        if self._closed:
            raise DecisionLogError("decision log is closed")
        segment: int | None = None
        if self._journal is not None and encoded is not None:
            lines = [_journal_line(table, row, enc) for row, enc in zip(rows, encoded, strict=True)]
            segment = self._journal.append_lines(lines)
        elif self._journal is not None:
            segment = self._journal.append_many([{"table": table, "row": row} for row in rows])
        items = [
            _Queued(table, row, segment, enc) for row, enc in zip(rows, encoded or [None] * len(rows), strict=True)
        ]
        if self._thread is None:
            self._write_batch(items)
            return
        self._ensure_writer()
        for item in items:
            self._queue.put(item)

    def _drain_inline(self) -> None:
        items: list[_Queued] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Queued):
                items.append(item)
        if items:
            self._write_batch(items)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = self._gather(item)
            try:
                records = [b for b in batch if isinstance(b, _Queued)]
                if records:
                    self._write_batch(records)
            except Exception:  # the writer must survive anything: the journal still holds the records
                logger.exception("decision log writer: a batch failed unexpectedly; its records stay journaled")
            finally:
                for b in batch:
                    if isinstance(b, _Flush):
                        b.done.set()

    def _gather(self, first: object) -> list[object]:
        """The first item and whatever else arrives within the flush interval (one transaction = throughput)."""
        batch: list[object] = [first]
        deadline = time.monotonic() + self._flush_interval_s
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or isinstance(batch[-1], _Flush):
                break
            try:
                nxt = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(nxt)
        return batch

    def _write_batch(self, items: Sequence[_Queued]) -> None:
        """Insert the batch (duplicates ignored); on failure retry, then isolate a poison row; never lose one."""
        delay = 0.2
        while True:
            try:
                self._insert(items)
                break
            except sa.exc.OperationalError as exc:  # the database is down or locked: keep them, retry with back-off
                if self._closed and delay > 5:
                    logger.error("decision log unavailable at close; %d record(s) stay journaled", len(items))
                    return
                logger.warning("decision log write failed (%s); retrying in %.1f s", type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
            except Exception:  # noqa: BLE001 - a value the database refuses: write the rows one by one
                self._write_one_by_one(items)
                break
        self._after_write(items)

    def _insert(self, items: Sequence[_Queued]) -> None:
        by_table: dict[str, list[dict[str, Any]]] = {}
        text: list[dict[str, Any]] = []  # SQLite: decision rows with their JSON encoded already, stored as is
        sqlite = self.engine.dialect.name == "sqlite"
        for item in items:
            if sqlite and item.encoded is not None:
                text.append({**item.row, **item.encoded})
            else:
                by_table.setdefault(item.table, []).append(item.row)
        with self.engine.begin() as conn:
            if text:
                conn.execute(insert_ignoring_duplicates(self.engine, _decisions_text), text)
            for table, rows in by_table.items():
                conn.execute(insert_ignoring_duplicates(self.engine, metadata.tables[table]), rows)

    def _write_one_by_one(self, items: Sequence[_Queued]) -> None:
        for item in items:
            try:
                self._insert([item])
            except Exception as exc:  # noqa: BLE001 - poison: to the dead letters, with why
                self._dead_letter(item, exc)

    def _dead_letter(self, item: _Queued, exc: BaseException) -> None:
        self.dead_lettered += 1
        logger.error(
            "decision log: a %s row was refused (%s: %s); kept as a dead letter", item.table, type(exc).__name__, exc
        )
        if self._dead_letters is None:
            return
        self._dead_letters.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"table": item.table, "error": f"{type(exc).__name__}: {exc}", "row": clean(item.row)})
        with self._dead_letters.open("a") as f:
            f.write(line + "\n")

    def _after_write(self, items: Sequence[_Queued]) -> None:
        self.written += len(items)
        ids = [i.row["decision_id"] for i in items if i.table == "decisions"]
        if ids:
            try:
                self._join_pending_feedback(ids)
            except sa.exc.SQLAlchemyError:  # the feedback rows are kept; they join by decision_id at read time too
                logger.warning("could not join early feedback to %d written decisions", len(ids), exc_info=True)
            with self._lock:
                self._pending.difference_update(ids)
        if self._journal is not None:
            counts: dict[int, int] = {}
            for i in items:
                if i.segment is not None:
                    counts[i.segment] = counts.get(i.segment, 0) + 1
            for segment, n in counts.items():
                self._journal.done(segment, n)
        self._checkpoint()

    def _checkpoint(self) -> None:
        """SQLite: fold the WAL back into the database from the writer, at most once a second.

        PASSIVE never waits for readers or writers (other workers' checkpoints or commits); what it cannot copy now
        is copied next time. Without it the WAL would grow without bound (autocheckpoint is off, see make_engine).
        """
        if self.engine.dialect.name != "sqlite" or time.monotonic() < self._next_checkpoint:
            return
        self._next_checkpoint = time.monotonic() + CHECKPOINT_INTERVAL_S
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("decision log checkpoint failed (%s); retrying later", exc.__class__.__name__)

    def replay_orphans(self) -> int:
        """Insert the records of dead processes' journals (duplicates ignored) and delete them; returns records."""
        if self._journal_dir is None:
            return 0
        replayed = 0
        for path, records in orphaned_records(self._journal_dir, self._journal_tag):
            items = [_Queued(r["table"], _from_journal(r["row"]), None) for r in records if "table" in r]
            if items:
                self._write_batch(items)
            path.unlink(missing_ok=True)
            replayed += len(items)
            logger.warning("decision log: replayed %d record(s) from %s (a process that stopped)", len(items), path)
        return replayed

    # ---------------------------------------------------------------- reads (audit, tests, training)
    def get_decision(self, decision_id: str) -> dict[str, Any] | None:
        """The full logged decision with its delivered actions and feedback, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(decisions).where(decisions.c.decision_id == decision_id)).mappings().first()
            if row is None:
                return None
            out = dict(row)
            out["ts"] = _utc(out["ts"])
            out["decided_at"] = _utc(out.get("decided_at"))
            out["customer_id"] = self.key(out["customer_id"])
            out["contacts"] = [
                self._keyed(r)
                for r in conn.execute(
                    sa.select(decision_contacts)
                    .where(decision_contacts.c.decision_id == decision_id)
                    .order_by(decision_contacts.c.rank)
                ).mappings()
            ]
            out["feedback"] = [
                self._keyed(r)
                for r in conn.execute(
                    sa.select(feedback).where(feedback.c.decision_id == decision_id).order_by(feedback.c.id)
                ).mappings()
            ]
        return out

    def count(self, table: Literal["decisions", "decision_contacts", "feedback", "events", "consents"]) -> int:
        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
