"""Right to erasure: the tombstones of erased keys, and the erasure of rows from files and from the decision log.

Tombstones (`Tombstones`, one folder per project: `<project home>/erasure/`) are the durable record of the keys a
project erased, by key column (`customer_id`, and the keys of what belonged to the customer: its contacts, loans):
`tombstones.json` holds, per column, the salted SHA-256 of each erased key (never the key itself), and the salt
lives beside it in `salt` (mode 0600). Everything that rebuilds customer data asks them which keys to leave out:
the feature builds, materialization, the training-set builders and real-time pushes. With no tombstones file
nothing is hashed or filtered (the check is one `stat`).

The erasure steps here work on plain files and the log: `drop_rows` rewrites a parquet file (or every part of a
folder) without the rows holding an erased key; `drop_spooled` the decision log's spool (JSON lines); and
`erase_decision_log` deletes a customer's rows from every table of the decision log (`nextbest.decision_log`:
decisions, decision_contacts, feedback, events, and any later table with a `customer_id` or `decision_id`). SQLite
files are erased with `secure_delete` (freed pages are zeroed) and the WAL is checkpointed and truncated, so the
erased bytes do not linger in the file. The job that runs every step is `nextbest.forget`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextbest.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

logger = logging.getLogger(__name__)

TOMBSTONE_FOLDER = "erasure"
TOMBSTONE_FILE = "tombstones.json"
SALT_FILE = "salt"
FORMAT_VERSION = 1


def key_text(value: object) -> str:
    """The canonical text of a key (an int as its decimal digits, a string as itself) that tombstones hash."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalars
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DataError(f"an entity key is an int or a string, got {value!r}")
    return str(value)


def _hash(salt: str, text: str) -> str:
    return hashlib.sha256(f"{salt}\x1f{text}".encode()).hexdigest()


@dataclass(frozen=True)
class _Record:
    mtime_ns: int
    keys: dict[str, frozenset[str]]
    erasures: list[dict[str, Any]]


class Tombstones:
    """The erased keys of one project (see the module docstring): salted hashes by key column.

    Cheap to hold in a long-lived process: the file is re-read only when it changed (its mtime), so keys another
    process erased are seen at the next check.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._record: _Record | None = None
        self._salt: str | None = None

    @classmethod
    def at(cls, home: Path) -> Tombstones:
        """The tombstones of the project whose generated state lives in `home` (`Project.home(settings)`)."""
        return cls(home / TOMBSTONE_FOLDER)

    @property
    def path(self) -> Path:
        return self.folder / TOMBSTONE_FILE

    @property
    def salt_path(self) -> Path:
        return self.folder / SALT_FILE

    # ---------------------------------------------------------------- reading
    def _load(self) -> _Record | None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._record = None
            return None
        if self._record is None or self._record.mtime_ns != mtime:
            try:
                raw = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"tombstones {self.path} are not valid JSON: {exc}") from exc
            keys = {col: frozenset(hashes) for col, hashes in (raw.get("keys") or {}).items()}
            self._record = _Record(mtime, keys, list(raw.get("erasures") or []))
        return self._record

    def __bool__(self) -> bool:
        record = self._load()
        return record is not None and any(record.keys.values())

    def columns(self) -> tuple[str, ...]:
        """The key columns with erased keys."""
        record = self._load()
        return tuple(c for c, h in record.keys.items() if h) if record is not None else ()

    def count(self, column: str | None = None) -> int:
        record = self._load()
        if record is None:
            return 0
        return sum(len(h) for c, h in record.keys.items() if column is None or c == column)

    @property
    def erasures(self) -> list[dict[str, Any]]:
        """The audit of past erasures: when, the principal key's hash, how many related keys."""
        record = self._load()
        return list(record.erasures) if record is not None else []

    def _read_salt(self, create: bool = False) -> str:
        if self._salt is not None:
            return self._salt
        if not self.salt_path.is_file():
            if not create:
                raise DataError(
                    f"tombstones {self.path} have no salt beside them ({self.salt_path}): keys cannot match"
                )
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.salt_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        self._salt = self.salt_path.read_text().strip()
        return self._salt

    def digest(self, value: object) -> str:
        """The salted hash a tombstone keeps of a key."""
        return _hash(self._read_salt(), key_text(value))

    def contains(self, column: str, value: object) -> bool:
        """Whether this key of `column` was erased (False without touching the salt when nothing was)."""
        record = self._load()
        if record is None or not record.keys.get(column):
            return False
        return self.digest(value) in record.keys[column]

    def matching(self, column: str, values: Iterable[object]) -> set[Any]:
        """The values among `values` that were erased (each distinct value hashed once; empty when none are)."""
        record = self._load()
        hashes = record.keys.get(column) if record is not None else None
        if not hashes:
            return set()
        salt = self._read_salt()
        out = set()
        for value in set(values):
            try:
                text = key_text(value)
            except DataError:
                continue  # not a key (a null, a date in a column named like one)
            if _hash(salt, text) in hashes:
                out.add(value)
        return out

    def drop(self, frame: pd.DataFrame, column: str) -> pd.DataFrame:
        """`frame` without the rows whose `column` holds an erased key (the frame itself when there are none)."""
        if column not in frame.columns:
            return frame
        erased = self.matching(column, frame[column].unique().tolist())
        if not erased:
            return frame
        logger.info("left out %d erased %s key(s)", len(erased), column)
        return frame[~frame[column].isin(list(erased))]

    # ---------------------------------------------------------------- writing
    def add(self, keys: Mapping[str, Collection[object]], principal: tuple[str, object]) -> int:
        """Record erased keys (column -> values) and one audit entry for `principal` (column, key); returns how many
        keys were new. Written atomically (a temp file renamed over the old one)."""
        self._read_salt(create=True)
        record = self._load()
        stored = {c: set(h) for c, h in (record.keys if record is not None else {}).items()}
        new = 0
        for column, values in keys.items():
            hashes = stored.setdefault(column, set())
            for value in values:
                digest = self.digest(value)
                new += digest not in hashes
                hashes.add(digest)
        column, value = principal
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "column": column,
            "key": self.digest(value),
            "related": {c: len(v) for c, v in keys.items() if c != column},
        }
        payload = {
            "version": FORMAT_VERSION,
            "hash": "sha256(salt + 0x1f + key), hex; the salt is the file beside this one",
            "keys": {c: sorted(h) for c, h in sorted(stored.items())},
            "erasures": [*(record.erasures if record is not None else []), entry],
        }
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
        self._record = None
        return new

    def first_erased(self, column: str, value: object) -> datetime | None:
        """When this key was first erased (None if never)."""
        digest = self.digest(value) if self.contains(column, value) else None
        times = [datetime.fromisoformat(e["at"]) for e in self.erasures if digest and e.get("key") == digest]
        return min(times) if times else None


# -------------------------------------------------------------------- parquet files


def parquet_files(dataset: Path) -> list[Path]:
    """A parquet dataset's files: the file itself, or every `*.parquet` under a folder (parts)."""
    if dataset.is_file():
        return [dataset] if dataset.suffix == ".parquet" else []
    return sorted(dataset.rglob("*.parquet")) if dataset.is_dir() else []


def _value_set(values: Collection[object], kind: pa.DataType) -> pa.Array | None:
    import pyarrow as pa

    try:
        if pa.types.is_integer(kind):
            return pa.array([int(v) for v in values if str(v).lstrip("-").isdigit()], type=kind)
        return pa.array([key_text(v) for v in values], type=pa.string()).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return None


def _erased_mask(file: Path, drop: Mapping[str, Collection[object]]) -> pa.Array | None:
    """Which rows of one parquet file hold an erased key (None when none do, or no column is keyed)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = set(pq.read_schema(file).names)
    columns = [c for c, values in drop.items() if c in names and values]
    if not columns:
        return None
    table = pq.read_table(file, columns=columns)
    mask = None
    for column in columns:
        col = table.column(column)
        values = _value_set(drop[column], col.type)
        if values is None or not len(values):
            continue
        hit = pc.fill_null(pc.is_in(col, value_set=values), False)
        mask = hit if mask is None else pc.or_(mask, hit)
    if mask is None or not pc.any(mask).as_py():
        return None
    return mask


def drop_rows(dataset: Path, drop: Mapping[str, Collection[object]]) -> int:
    """Rewrite a parquet dataset without the rows whose key columns hold a dropped value; returns rows removed.

    Only files holding such a row are rewritten (temp file, then renamed over), keeping their schema and metadata;
    the others are not touched.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    removed = 0
    for file in parquet_files(dataset):
        mask = _erased_mask(file, drop)
        if mask is None:
            continue
        meta = pq.ParquetFile(file).metadata
        row_group = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0) or None
        table = pq.read_table(file)
        kept = table.filter(pc.invert(mask))
        tmp = file.with_name(file.name + ".erasing")
        pq.write_table(kept, tmp, row_group_size=row_group, compression="snappy")
        tmp.replace(file)
        removed += table.num_rows - kept.num_rows
    return removed


class FileInUse(Exception):
    """A JSON-lines file is held (flock) by a live process: it cannot be rewritten now."""


def drop_spooled(path: Path, key: object) -> int:
    """Rewrite a decision-log JSON-lines file (spool, dead letters, a journal segment: one `{"table", "row"}` object
    a line) without this customer's rows; returns lines removed. FileInUse if a live process holds its lock."""
    import fcntl

    if not path.is_file():
        return 0
    text = key_text(key)
    with path.open("rb+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FileInUse(str(path)) from exc
        kept: list[str] = []
        removed = 0
        for line in handle.read().decode().splitlines():
            if _owned_by(line, text):
                removed += 1
            else:
                kept.append(line)
        if removed:
            tmp = path.with_name(path.name + ".erasing")
            tmp.write_text("".join(f"{line}\n" for line in kept))
            tmp.replace(path)
    return removed


def _owned_by(line: str, key: str) -> bool:
    try:
        row = json.loads(line).get("row") or {}
    except (json.JSONDecodeError, AttributeError):
        return False
    return row.get("customer_id") is not None and str(row.get("customer_id")) == key


# -------------------------------------------------------------------- the decision log


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite"):
        return None
    path = uri.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def erase_decision_log(uri: str, key: object) -> dict[str, int]:
    """Delete one customer's rows from every table of the decision log at `uri`; rows removed per table.

    A table with `customer_id` loses that customer's rows; a table with `decision_id` (feedback that arrived before
    its decision was joined, contacts) also the rows of that customer's decisions. A log that does not exist yet is
    left alone (nothing to erase).
    """
    import sqlalchemy as sa

    from nextbest.decision_log import decisions, make_engine, metadata

    file = _sqlite_file(uri)
    if file is not None and not file.is_file():
        return {}
    text = key_text(key)
    engine = make_engine(uri)
    removed: dict[str, int] = {}
    try:
        present = set(sa.inspect(engine).get_table_names())
        theirs = sa.select(decisions.c.decision_id).where(decisions.c.customer_id == text)
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            # Dependent tables first: their decision-id rows are found through the decisions still present.
            for table in sorted(metadata.sorted_tables, key=lambda t: t.name == decisions.name):
                if table.name not in present:
                    continue
                conds = []
                if "customer_id" in table.c:
                    conds.append(table.c.customer_id == text)
                if "decision_id" in table.c and table.name != decisions.name and decisions.name in present:
                    conds.append(table.c.decision_id.in_(theirs))
                if conds:
                    removed[table.name] = int(conn.execute(sa.delete(table).where(sa.or_(*conds))).rowcount or 0)
        if engine.dialect.name == "sqlite":
            _truncate_wal(engine)
    finally:
        engine.dispose()
    return removed


def _truncate_wal(engine: Any) -> None:
    """Copy the WAL into the database and empty it, so frames written before the erasure leave the disk."""
    with engine.connect() as conn:
        busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
    if busy is not None and busy[0]:
        logger.warning("decision log WAL not fully checkpointed (a reader holds it); run the erasure again later")


def count_customer_rows(uri: str, key: object) -> dict[str, int]:
    """Rows of one customer per decision-log table (for reports and tests)."""
    import sqlalchemy as sa

    from nextbest.decision_log import make_engine, metadata

    file = _sqlite_file(uri)
    if file is not None and not file.is_file():
        return {}
    engine = make_engine(uri)
    try:
        present = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                t.name: int(
                    conn.execute(
                        sa.select(sa.func.count()).select_from(t).where(t.c.customer_id == key_text(key))
                    ).scalar_one()
                )
                for t in metadata.sorted_tables
                if t.name in present and "customer_id" in t.c
            }
    finally:
        engine.dispose()
