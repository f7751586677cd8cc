"""A write-ahead journal: what a process acknowledged is on disk before it answers, until the database has it.

The decision log writes its write-behind records (full decision records, events) to the database in batches from a
background thread; between the answer and that batch, a killed process would lose them. So each record is first
appended, as one JSON line, to this process's journal segment (one `write` system call, for a batch's records
together: the bytes are in the kernel once it returns, so they survive the process being killed -- `kill -9`, a
crash, an OOM kill; an operating-system crash can lose the last ones, as with SQLite's `synchronous=NORMAL`), then
queued. When the database has committed
every record of a segment that is no longer being appended to, the segment is deleted.

Each live segment holds an exclusive `flock`. At start, a process replays every segment whose lock it can take --
those of processes that died -- into the database (inserts that ignore rows already there, so a record written
before the crash is not duplicated), then deletes them. Segments live in one folder per decision log (under the
installation's home); several workers on one host share it, each replaying the others' leftovers only once they
are dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: a segment is rotated past this size; the previous one is deleted once the database has all its records
SEGMENT_BYTES = 8 * 1024 * 1024


@dataclass
class _Segment:
    number: int
    path: Path
    fd: int
    size: int = 0
    outstanding: int = 0


class Journal:
    """This process's journal segments in `folder` (thread-safe)."""

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES, tag: str = "") -> None:
        """`tag` names the database the records are for (`log_tag`): only a journal of that tag replays them."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._prefix = f"journal-{tag + '-' if tag else ''}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._next = 0

    def _open_segment(self) -> _Segment:
        path = self.folder / f"{self._prefix}-{self._next:06d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live: others replay it only after we die
        segment = _Segment(self._next, path, fd)
        self._segments[segment.number] = segment
        self._next += 1
        return segment

    def append(self, record: dict[str, Any]) -> int:
        """Write one record durably (see the module docstring); returns its segment number for `done`."""
        return self.append_many([record])

    def append_many(self, records: Sequence[dict[str, Any]]) -> int:
        """Write records durably in one `write` (one JSON line each, all in one segment); their segment number."""
        encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
        return self.append_lines([encode(r) for r in records])

    def append_lines(self, lines: Sequence[str]) -> int:
        """`append_many` of records encoded already (one JSON object per line, without the newline)."""
        data = "".join([line + "\n" for line in lines]).encode()
        with self._lock:
            current = self._current
            if current is None or current.size >= self.segment_bytes:
                if current is not None:
                    self._retire(current)
                current = self._current = self._open_segment()
            view = memoryview(data)
            while view:  # a regular file takes it whole; a short write (disk full, signal) is continued
                view = view[os.write(current.fd, view) :]
            current.size += len(data)
            current.outstanding += len(lines)
            return current.number

    def done(self, segment: int, count: int = 1) -> None:
        """`count` records of `segment` are in the database; a finished, rotated segment is deleted."""
        with self._lock:
            found = self._segments.get(segment)
            if found is None:
                return
            found.outstanding -= count
            if found is not self._current and found.outstanding <= 0:
                self._delete(found)

    def _retire(self, segment: _Segment) -> None:
        if segment.outstanding <= 0:
            self._delete(segment)

    def _delete(self, segment: _Segment) -> None:
        self._segments.pop(segment.number, None)
        with contextlib.suppress(OSError):
            os.close(segment.fd)
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    @property
    def outstanding(self) -> int:
        with self._lock:
            return sum(s.outstanding for s in self._segments.values())

    def close(self) -> None:
        """Delete what is fully written; keep (and unlock) what is not, for the next start to replay."""
        with self._lock:
            for segment in list(self._segments.values()):
                if segment.outstanding <= 0:
                    self._delete(segment)
                else:
                    logger.warning(
                        "journal %s keeps %d unwritten record(s) for replay", segment.path, segment.outstanding
                    )
                    with contextlib.suppress(OSError):
                        os.close(segment.fd)
            self._segments.clear()
            self._current = None


def log_tag(database: str) -> str:
    """The tag of a database's journal segments: services with different decision logs may share one home (and so
    one journal folder), and each replays only the records of its own database."""
    return hashlib.sha256(database.encode()).hexdigest()[:12]


def orphaned_records(folder: Path, tag: str = "") -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """(segment, its records) of every segment in `folder` (of `tag`'s database, when given) whose owner is gone;
    the caller deletes it once replayed.

    A segment is held with `flock` while its process lives, so taking the lock proves it is an orphan; the lock is
    held while the caller replays, so two starting workers never replay one segment twice.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"journal-{tag}-*.jsonl" if tag else "journal-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process's segment
            yield path, _read_lines(path)
        finally:
            os.close(fd)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open("rb") as f:
        for raw in f:
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError:  # a line cut short by the crash itself: it was never acknowledged
                logger.warning("journal %s: skipping a truncated line", path)
    return records
