"""The durable decision log: every decision, the actions it delivered, real-time events and feedback.

One SQLAlchemy-core schema for both paths: embedded SQLite (`sqlite:///<home>/decisions.db`, WAL journal so
readers never block the writer) and production PostgreSQL (`settings.serving.decision_log_uri`).

Two write paths, chosen by what the data is for:

* Write-through (synchronous, one short transaction): the rows the contact policy reads back -- which
  marketing/service actions a decision delivered (`decision_contacts`) -- and feedback. Caps and cool-downs
  must see the decision made a millisecond ago by any worker, so these rows are committed before the response
  leaves; they are small (one row per delivered action, usually 0-3) and indexed by (customer_id, ts).
* Write-behind (a background thread, bounded queue, batched executemany): the full decision record (context,
  feature snapshot, scores, chosen and rejected actions with rules, model versions) and the event log. These
  are for audit, monitoring and training, never read on the hot path. A full queue blocks the caller
  (backpressure) instead of dropping; `close()` drains the queue; a batch that cannot be written after
  retries is spooled to a JSON-lines file next to the state so nothing accepted is lost.

Feedback joins a decision by id: if the decision is still queued in this process the queue is flushed first;
a decision written by another worker is found in the database (its contacts rows are write-through). A decision
that delivered no action has no write-through row, so feedback reaching another worker before that worker's writer
ran (~50 ms) finds nothing: if the id is a well-formed decision id minted in the last `PENDING_JOIN_WINDOW_S`, the
feedback is accepted and committed with `customer_id` NULL (`joined: false`), and the join completes when the
decision row lands (the writer fills it in after each batch, and the feedback path re-checks after its commit, so
whichever runs second sees the other). Ids that are malformed or old, or that name an action, are still refused.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nextbest.errors import NextbestError
from nextbest.policy import ContactRecord

logger = logging.getLogger(__name__)

Outcome = Literal["shown", "accepted", "dismissed", "ignored"]
OUTCOMES: tuple[str, ...] = ("shown", "accepted", "dismissed", "ignored")

#: customer keys are stored as text (int keys as their decimal digits), so one schema serves int- and string-keyed
#: projects; `DecisionLog(key_type=...)` turns them back into the project's type on read.
KEY_LENGTH = 64

metadata = sa.MetaData()

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("decision_id", sa.String(40), primary_key=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("customer_id", sa.String(KEY_LENGTH), nullable=False, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
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
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(KEY_LENGTH), nullable=False, index=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON),
    sa.Column("pushed", sa.Boolean, nullable=False, default=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


class UnknownDecisionError(NextbestError):
    """Feedback names a decision id that was never logged."""


class DecisionLogError(NextbestError):
    """The decision log cannot be opened or written."""


@dataclass(slots=True)
class DecisionRecord:
    """Everything logged about one decision (write-behind)."""

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


@dataclass(slots=True)
class EventRecord:
    customer_id: int | str
    ts: datetime
    event_type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    pushed: bool = False
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(slots=True)
class _Flush:
    done: threading.Event


#: SQLite: how often the writer thread checkpoints the WAL (requests never do; see make_engine).
CHECKPOINT_INTERVAL_S = 1.0
#: How long after a decision feedback may arrive before its record is written (queue backlog, retries), and still
#: be accepted for a later join. Past it, an id the log does not know is unknown.
PENDING_JOIN_WINDOW_S = 300.0
#: Tolerated clock difference between the worker or replica that minted an id and the one receiving feedback.
CLOCK_SKEW_S = 5.0


def new_decision_id() -> str:
    """A unique decision id, time-ordered by its millisecond prefix (helps range scans and humans)."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:20]}"


def minted_recently(decision_id: str, now: float | None = None) -> bool:
    """True if `decision_id` has the shape `new_decision_id` gives and was minted within the join window."""
    if len(decision_id) != 32:
        return False
    try:
        int(decision_id, 16)
    except ValueError:
        return False
    age_s = (now if now is not None else time.time()) - int(decision_id[:12], 16) / 1000.0
    return -CLOCK_SKEW_S <= age_s <= PENDING_JOIN_WINDOW_S


def _utc(ts: datetime | None) -> datetime | None:
    # SQLite stores naive datetimes; every timestamp we write is UTC, so naive values read back are UTC.
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become null (PostgreSQL JSON rejects them), numpy scalars become Python."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def make_engine(uri: str) -> Engine:
    """A SQLAlchemy engine for the log; SQLite gets WAL, NORMAL sync and a busy timeout for multi-worker use."""
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
    return sa.create_engine(uri, pool_pre_ping=True, pool_size=4, max_overflow=4)


class DecisionLog:
    """Durable decisions, contacts, feedback and events; thread-safe; one per process.

    Call `start()` before logging write-behind records and `close()` on shutdown (drains the queue).
    """

    def __init__(
        self,
        uri: str,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.05,
        spool_path: Path | None = None,
        key_type: Literal["int", "str"] = "int",
    ) -> None:
        self.uri = uri
        self.key_type = key_type
        self.engine = make_engine(uri)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._spool_path = spool_path
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._next_checkpoint = 0.0
        self.create_schema()

    # ---------------------------------------------------------------- lifecycle
    def create_schema(self) -> None:
        """Create the tables if missing; tolerate another worker creating them at the same moment."""
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                return
            except sa.exc.OperationalError as exc:
                if attempt == 2:
                    raise DecisionLogError(f"cannot create decision log schema at {self.uri}: {exc}") from exc
                time.sleep(0.2)
            except sa.exc.IntegrityError:
                time.sleep(0.2)  # PostgreSQL: a concurrent CREATE TABLE won; the next pass sees the tables

    def start(self) -> None:
        if self._thread is None:
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
        self.engine.dispose()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued before this call is written; False on timeout."""
        if self._thread is None:
            self._drain_inline()
            return True
        marker = _Flush(threading.Event())
        self._queue.put(marker)
        return marker.done.wait(timeout)

    # ---------------------------------------------------------------- write-through (contact policy state)
    def record_contacts(
        self,
        decision_id: str,
        customer_id: int | str,
        channel: str,
        ts: datetime,
        actions: Sequence[tuple[str, str]],
    ) -> None:
        """Commit the actions a decision delivered ((action id, kind) in rank order) before answering."""
        if not actions:
            return
        rows = [
            {
                "decision_id": decision_id,
                "customer_id": str(customer_id),
                "ts": ts,
                "channel": channel,
                "action_id": action_id,
                "kind": kind,
                "rank": rank,
            }
            for rank, (action_id, kind) in enumerate(actions, 1)
        ]
        with self.engine.begin() as conn:
            conn.execute(decision_contacts.insert(), rows)

    def contact_history(self, customer_id: int | str, since: datetime) -> list[ContactRecord]:
        """Actions delivered to this customer since `since`, with outcomes (what caps and cool-downs need)."""
        c = decision_contacts.c
        stmt = sa.select(c.ts, c.decision_id, c.channel, c.action_id, c.kind, c.outcome, c.outcome_ts).where(
            c.customer_id == str(customer_id), c.ts >= since
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            ContactRecord(
                ts=_utc(r.ts),  # type: ignore[arg-type]
                decision_id=r.decision_id,
                channel=r.channel,
                action_id=r.action_id,
                kind=r.kind,
                outcome=r.outcome,
                outcome_ts=_utc(r.outcome_ts),
            )
            for r in rows
        ]

    def record_feedback(
        self, decision_id: str, outcome: str, action_id: str | None = None, ts: datetime | None = None
    ) -> dict[str, Any]:
        """Join an outcome to its decision (and delivered action); unknown decision id -> UnknownDecisionError."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        ts = ts or datetime.now(UTC)
        with self._lock:
            pending = decision_id in self._pending
        if pending:
            self.flush()
        found = self._find_decision(decision_id)
        if found is None:
            if action_id is None and minted_recently(decision_id):
                return self._record_pending_feedback(decision_id, outcome, ts)
            raise UnknownDecisionError(f"unknown decision_id {decision_id!r}")
        customer_id, delivered = found
        if action_id is not None and action_id not in delivered:
            raise UnknownDecisionError(
                f"decision {decision_id!r} did not deliver action {action_id!r}; delivered: {sorted(delivered)}"
            )
        c = decision_contacts.c
        with self.engine.begin() as conn:
            conn.execute(
                feedback.insert(),
                {
                    "decision_id": decision_id,
                    "customer_id": customer_id,
                    "action_id": action_id,
                    "outcome": outcome,
                    "ts": ts,
                },
            )
            upd = sa.update(decision_contacts).where(c.decision_id == decision_id)
            if action_id is not None:
                upd = upd.where(c.action_id == action_id)
            # A later "shown" must not overwrite a final outcome such as "dismissed".
            if outcome == "shown":
                upd = upd.where(c.outcome.is_(None))
            conn.execute(upd.values(outcome=outcome, outcome_ts=ts))
        return {
            "decision_id": decision_id,
            "customer_id": customer_id,
            "action_id": action_id,
            "outcome": outcome,
            "joined": True,
        }

    def _record_pending_feedback(self, decision_id: str, outcome: str, ts: datetime) -> dict[str, Any]:
        """Commit feedback for a decision whose record another worker has not written yet; join when it lands.

        Only a decision that delivered nothing can be missing here (delivered actions are write-through), so there
        are no contact outcomes to update: the join is the feedback row's customer_id.
        """
        with self.engine.begin() as conn:
            conn.execute(
                feedback.insert(),
                {"decision_id": decision_id, "customer_id": None, "action_id": None, "outcome": outcome, "ts": ts},
            )
        # The writer fills customer_id after its batch commits; if that ran before our commit, do it ourselves.
        joined = self._join_pending_feedback([decision_id]) > 0
        found = self._find_decision(decision_id) if joined else None
        logger.info("feedback for decision %s accepted before its record was written (joined: %s)", decision_id, joined)
        return {
            "decision_id": decision_id,
            "customer_id": found[0] if found else None,
            "action_id": None,
            "outcome": outcome,
            "joined": joined,
        }

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

    def key(self, stored: str) -> int | str:
        """A stored customer key in the project's type."""
        return int(stored) if self.key_type == "int" else str(stored)

    # ---------------------------------------------------------------- write-behind
    def log_decision(self, record: DecisionRecord) -> None:
        """Queue the full decision record (blocks if the queue is full: backpressure, never a drop)."""
        with self._lock:
            self._pending.add(record.decision_id)
        self._put(record)

    def log_event(self, record: EventRecord) -> None:
        self._put(record)

    def _put(self, item: object) -> None:
        if self._closed:
            raise DecisionLogError("decision log is closed")
        if self._thread is None:
            self._write_batch([item])
            return
        self._queue.put(item)

    def _drain_inline(self) -> None:
        items: list[object] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, DecisionRecord | EventRecord):
                items.append(item)
        if items:
            self._write_batch(items)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch: list[object] = [item]
            deadline = time.monotonic() + self._flush_interval_s
            # Gather what arrives within the flush interval into one transaction (batching = throughput).
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
            records = [b for b in batch if isinstance(b, DecisionRecord | EventRecord)]
            if records:
                self._write_batch(records)
            for b in batch:
                if isinstance(b, _Flush):
                    b.done.set()

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

    def _write_batch(self, items: Iterable[object]) -> None:
        decision_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        ids: list[str] = []
        for item in items:
            if isinstance(item, DecisionRecord):
                ids.append(item.decision_id)
                decision_rows.append(
                    {
                        "decision_id": item.decision_id,
                        "ts": item.ts,
                        "customer_id": str(item.customer_id),
                        "channel": item.channel,
                        "context": _clean(dict(item.context)),
                        "features": _clean(dict(item.features)),
                        "feature_service": item.feature_service,
                        "model_versions": _clean(dict(item.model_versions)),
                        "policy_version": item.policy_version,
                        "churn_risk": _clean(item.churn_risk),
                        "model_scores": _clean(dict(item.model_scores)),
                        "related_features": _clean(dict(item.related_features)),
                        "scores": _clean(dict(item.scores)),
                        "chosen": _clean(list(item.chosen)),
                        "rejected": _clean(list(item.rejected)),
                        "degraded": item.degraded,
                        "cold_start": item.cold_start,
                        "latency_ms": item.latency_ms,
                    }
                )
            elif isinstance(item, EventRecord):
                event_rows.append(
                    {
                        "customer_id": str(item.customer_id),
                        "ts": item.ts,
                        "event_type": item.event_type,
                        "payload": _clean(dict(item.payload)),
                        "pushed": item.pushed,
                        "received_at": item.received_at,
                    }
                )
        written = False
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    if decision_rows:
                        conn.execute(decisions.insert(), decision_rows)
                    if event_rows:
                        conn.execute(events.insert(), event_rows)
                written = True
                break
            except sa.exc.SQLAlchemyError as exc:
                if attempt < 2:
                    logger.warning("decision log write failed (%s); retrying", exc.__class__.__name__)
                    time.sleep(0.2 * (attempt + 1))
                    continue
                logger.exception("decision log write failed after retries; spooling %d rows", len(decision_rows))
                self._spool(decision_rows, event_rows)
        if written and ids:
            try:
                self._join_pending_feedback(ids)
            except sa.exc.SQLAlchemyError:  # the feedback rows are kept; they join by decision_id at read time too
                logger.warning("could not join early feedback to %d written decisions", len(ids), exc_info=True)
        with self._lock:
            self._pending.difference_update(ids)
        self._checkpoint()

    def _spool(self, decision_rows: list[dict[str, Any]], event_rows: list[dict[str, Any]]) -> None:
        if self._spool_path is None:
            logger.error(
                "no spool path configured: %d decisions and %d events lost", len(decision_rows), len(event_rows)
            )
            return
        self._spool_path.parent.mkdir(parents=True, exist_ok=True)
        with self._spool_path.open("a") as f:
            for table, rows in (("decisions", decision_rows), ("events", event_rows)):
                for row in rows:
                    f.write(json.dumps({"table": table, "row": _clean(row)}) + "\n")

    # ---------------------------------------------------------------- reads (audit, tests, training)
    def get_decision(self, decision_id: str) -> dict[str, Any] | None:
        """The full logged decision with its delivered actions and feedback, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(decisions).where(decisions.c.decision_id == decision_id)).mappings().first()
            if row is None:
                return None
            out = dict(row)
            out["ts"] = _utc(out["ts"])
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

    def _keyed(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        if out.get("customer_id") is not None:
            out["customer_id"] = self.key(out["customer_id"])
        return out

    def count(self, table: Literal["decisions", "decision_contacts", "feedback", "events"]) -> int:
        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
