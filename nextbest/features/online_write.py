"""The fast materialization's writers: Feast's online bytes built in bulk, and the SQLite and Redis writes.

What is written is exactly what Feast's own materialization writes (tests compare both stores' raw contents,
byte for byte); only how it is built differs:
- `encode_column`: the serialized Feast `Value` and the SQLite `value_text` of every row of one feature column. Each
  distinct value is encoded once (by Feast's protobuf for integers, booleans and strings; as the oneof tag and the
  little-endian bits for doubles and floats) and the rows index those arrays, so there is no per-value Python object.
- `entity_keys`: `serialize_entity_key` (version 3) of a single join key, as one numpy buffer for int64 keys.
- `write_sqlite_view`: a whole view's rows into Feast's SQLite table in one transaction: when every stored row of
  the table is overwritten by the new rows (Feast's upsert would leave nothing of the old table), the table is
  dropped and recreated with Feast's own DDL (read from sqlite_master) and filled by plain INSERTs in primary-key
  order; otherwise the old rows the upsert would keep are copied into the recreated table first. The rows reach
  SQLite as one wide staging row per entity (no per-value Python tuple) and are unpivoted by one INSERT ... SELECT.
- `write_redis_view`: Feast's hash layout (key: serialized entity key + project; fields: mmh3 of "view:feature"
  and `_ts:<view>`; the key TTL when configured) as raw RESP commands on one connection, keeping Feast's rule that
  a row whose event time is not newer than the stored `_ts:<view>` is not written (unless `skip_dedup`).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from nextbest.errors import ConfigError

#: Feature kinds the bulk encoder handles (a `ViewTable.fields` value), as Feast's value types.
KINDS = ("float64", "float32", "int64", "int32", "bool", "string")
#: Entities per staging batch (bounds memory: 100k entities x 38 features is ~200 MB of Python objects).
STAGE_ROWS = 100_000
#: Entities per Redis round trip: small enough that one batch (~2 MB) is sent and answered well within the
#: store's socket timeout (settings.features.redis_timeout_s, 0.5 s), which bounds a whole `sendall`.
REDIS_ROWS = 2_000

_DOUBLE_TAG = 0x29  # field 5 (double_val), wire type 1 (64-bit)
_FLOAT_TAG = 0x35  # field 6 (float_val), wire type 5 (32-bit)
_VALUE_TYPE_STRING, _VALUE_TYPE_INT64 = 2, 4  # feast.value_type.ValueType


@dataclass(frozen=True)
class EncodedColumn:
    """One feature column: `codes` (per row) index `blobs` (serialized `Value`) and `texts` (SQLite value_text)."""

    codes: np.ndarray
    blobs: np.ndarray  # object: bytes; b"" (an empty Value) for a missing value
    texts: np.ndarray  # object: str; None for a missing value

    def row_blobs(self) -> np.ndarray:
        return self.blobs[self.codes]

    def row_texts(self) -> np.ndarray:
        return self.texts[self.codes]


def _objects(items: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def _with_missing(codes: np.ndarray, missing: np.ndarray, blobs: list[bytes], texts: list[Any]) -> EncodedColumn:
    """Append the missing value (an empty Value, no text) as the last code."""
    codes = codes.astype(np.int64, copy=True)
    if missing.any():
        codes[missing] = len(blobs)
    return EncodedColumn(codes, _objects([*blobs, b""]), _objects([*texts, None]))


def _float_column(values: pd.Series | np.ndarray, width: int) -> EncodedColumn:
    dtype, bits, tag = ("<f8", "<u8", _DOUBLE_TAG) if width == 8 else ("<f4", "<u4", _FLOAT_TAG)
    floats = np.asarray(pd.Series(values).to_numpy(dtype="float64", na_value=np.nan), dtype="float64")
    missing = np.isnan(floats)
    typed = floats.astype(dtype)  # a float feature is stored as float32, as protobuf's float_val does
    # Distinct values by their bits, so 0.0 and -0.0 stay apart (they serialize differently).
    unique_bits, codes = np.unique(np.where(missing, 0, typed.view(bits)), return_inverse=True)
    unique = unique_bits.view(dtype)
    packed = np.empty(len(unique), dtype=[("tag", "u1"), ("value", dtype)])
    packed["tag"] = tag
    packed["value"] = unique
    step = 1 + width
    buf = packed.tobytes()
    blobs = [buf[step * i : step * (i + 1)] for i in range(len(unique))]
    # value_text is str() of the Python float protobuf hands back (a float32 widened to a double).
    texts = [str(x) for x in unique.astype("float64").tolist()]
    return _with_missing(codes.reshape(-1), missing, blobs, texts)


def _proto_column(values: pd.Series | np.ndarray, kind: str) -> EncodedColumn:
    """Integers, booleans and strings: Feast's protobuf encodes each distinct value once."""
    from feast.protos.feast.types.Value_pb2 import Value

    series = pd.Series(values).reset_index(drop=True)
    missing = series.isna().to_numpy()
    present = series[~missing]
    if kind in ("int64", "int32"):
        raw = present.to_numpy(dtype="int64")
    elif kind == "bool":
        raw = present.to_numpy(dtype="bool")
    else:
        raw = present.astype(str).to_numpy(dtype=object)
    unique, inverse = np.unique(raw, return_inverse=True) if len(raw) else (raw, np.zeros(0, dtype=np.int64))
    codes = np.zeros(len(series), dtype=np.int64)
    codes[~missing] = inverse.reshape(-1)
    field = {"int64": "int64_val", "int32": "int32_val", "bool": "bool_val", "string": "string_val"}[kind]
    py = unique.tolist()
    protos = [Value(**{field: v}) for v in py]
    texts = [v if kind == "string" else str(v) for v in py]
    return _with_missing(codes, missing, [p.SerializeToString() for p in protos], texts)


def encode_column(values: pd.Series | np.ndarray, kind: str) -> EncodedColumn:
    """The serialized Feast `Value` and value_text of each row of a feature column of kind `kind` (see KINDS).

    Byte for byte `python_values_to_proto_values(..., <the kind's ValueType>)[i].SerializeToString()` and the text
    Feast's SQLite writer stores (`extract_text_and_num`); a missing value (None / NaN) is an empty `Value` with
    no text, as Feast writes it (tests/test_online_write.py).
    """
    if kind == "float64":
        return _float_column(values, 8)
    if kind == "float32":
        return _float_column(values, 4)
    if kind in ("int64", "int32", "bool", "string"):
        return _proto_column(values, kind)
    raise ConfigError(f"fast materialization supports {', '.join(KINDS)} features, not {kind!r}")


def entity_keys(values: pd.Series | np.ndarray, key: str, key_type: str, version: int = 3) -> list[bytes]:
    """Feast's `serialize_entity_key` of one join key for each value (int64 or string keys)."""
    if version != 3:
        raise ConfigError(f"bulk entity keys are serialization version 3's layout, not version {version}")
    name = key.encode("utf8")
    head = struct.pack("<II", 1, _VALUE_TYPE_STRING) + struct.pack("<I", len(name)) + name
    if key_type == "int":
        ints = np.asarray(values, dtype="<i8")
        prefix = head + struct.pack("<II", _VALUE_TYPE_INT64, 8)
        packed = np.empty(len(ints), dtype=[("prefix", f"V{len(prefix)}"), ("value", "<i8")])
        packed["prefix"] = np.frombuffer(prefix, dtype=f"V{len(prefix)}")[0]
        packed["value"] = ints
        return np.frombuffer(packed.tobytes(), dtype=f"V{len(prefix) + 8}").tolist()
    out = []
    for k in values:
        text = str(k).encode("utf8")
        out.append(b"".join((head, struct.pack("<II", _VALUE_TYPE_STRING, len(text)), text)))
    return out


def key_order(values: pd.Series | np.ndarray, keys: list[bytes], key_type: str) -> np.ndarray:
    """Row order of the serialized keys in byte order (SQLite's BLOB order of the primary key)."""
    if key_type == "int":  # one fixed prefix, then the little-endian int64: byte order is the byte-swapped value's
        swapped = np.asarray(values, dtype="<i8").view("<u8").byteswap()
        return np.argsort(swapped, kind="stable")
    return np.asarray(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def unique_codes(values: pd.Series) -> tuple[np.ndarray, list[datetime]]:
    """Each row's code into its distinct timestamps (UTC pydatetimes), for per-distinct-timestamp encodings."""
    stamps = pd.to_datetime(values, utc=True)
    codes, unique = pd.factorize(stamps)
    return codes.astype(np.int64), [t.to_pydatetime() for t in unique]


# ---- SQLite ----


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_stamps(unique: list[datetime]) -> list[Any]:
    """Each timestamp as Feast's SQLite writer binds it (naive UTC, through the adapter Feast registered)."""
    import feast.infra.online_stores.sqlite  # noqa: F401  (registers Feast's datetime adapter)
    from feast.utils import to_naive_utc

    naive = [to_naive_utc(t) for t in unique]
    adapt = sqlite3.adapters.get((datetime, sqlite3.PrepareProtocol))
    return [adapt(t) for t in naive] if adapt is not None else naive


_COLUMNS = ("entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts")


def _schema(con: sqlite3.Connection, table: str) -> tuple[str, list[str], list[str]]:
    """The table's CREATE TABLE statement, its columns and its indexes' CREATE INDEX statements."""
    row = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if row is None:
        raise ConfigError(f"SQLite online table {table} does not exist: run `nextbest features apply` first")
    columns = [r[1] for r in con.execute(f"PRAGMA table_info({_quote(table)})")]
    # vector_value (and value_num) stay NULL for scalar features, as Feast leaves them with vector search off.
    if not set(_COLUMNS) <= set(columns) or set(columns) - set(_COLUMNS) - {"vector_value"}:
        raise ConfigError(f"SQLite online table {table} has columns {columns}; the fast path writes {_COLUMNS}")
    indexes = [
        r[0]
        for r in con.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
        )
    ]
    return row[0], columns, indexes


def _kept_rows(con: sqlite3.Connection, table: str, names: Sequence[str]) -> int:
    """Copy into temp table `nb_kept` the stored rows the new rows do not overwrite; how many there are.

    Feast's upsert leaves those rows alone: rows of entities absent from the staged keys (`nb_keys`), and rows of
    features that are not among `names`. Both checks read indexes only (the distinct stored keys, then each
    stored (key, feature) pair); the rows are copied only when there are any.
    """
    t = _quote(table)
    marks = ", ".join("?" * len(names))
    con.execute(f"CREATE TEMP TABLE nb_kept AS SELECT * FROM {t} WHERE 0")
    con.execute(
        f"""
        CREATE TEMP TABLE nb_gone AS
        WITH stored AS MATERIALIZED (SELECT DISTINCT entity_key AS ek FROM {t})
        SELECT ek FROM stored WHERE ek NOT IN (SELECT ek FROM temp.nb_keys)
        """
    )
    gone = int(con.execute("SELECT count(*) FROM temp.nb_gone").fetchone()[0])
    stale = int(con.execute(f"SELECT count(*) FROM {t} WHERE feature_name NOT IN ({marks})", list(names)).fetchone()[0])
    if gone or stale:
        con.execute(
            f"INSERT INTO temp.nb_kept SELECT * FROM {t} "
            f"WHERE feature_name NOT IN ({marks}) OR entity_key IN (SELECT ek FROM temp.nb_gone)",
            list(names),
        )
    return int(con.execute("SELECT count(*) FROM temp.nb_kept").fetchone()[0])


def write_sqlite_view(
    db_path: str,
    table: str,
    keys: list[bytes],
    order: np.ndarray,
    stamp_codes: np.ndarray,
    stamps: list[datetime],
    columns: Mapping[str, EncodedColumn],
) -> dict[str, int]:
    """Rewrite Feast's SQLite table `table` with every row of one view, in one transaction (module docstring).

    `keys` are the serialized entity keys (one per row, distinct), `order` their byte order, `stamp_codes` each
    row's index into `stamps` (event times), `columns` each feature's encoding. Returns {"rows", "kept"}: the
    value rows inserted and the stored rows carried over because the new rows do not overwrite them.
    """
    names = sorted(columns)
    n = len(keys)
    # Wait for the service's readers rather than fail: a loaded machine serving traffic beside a materialization
    # held the lock past sqlite3's default 5 s ("database is locked" in the closed loop, 2026-12-02).
    con = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        # The store keeps its own journal mode and synchronous setting (durable commit); the staging tables are
        # this connection's temp tables, held in memory.
        con.execute("PRAGMA temp_store = MEMORY")
        con.execute("PRAGMA cache_size = -262144")
        con.execute("BEGIN IMMEDIATE")
        try:
            create, _, indexes = _schema(con, table)
            t = _quote(table)
            value_cols = ", ".join(f"v{j} BLOB, x{j} TEXT" for j in range(len(names)))
            con.execute(f"CREATE TEMP TABLE nb_stage (ek BLOB, ts, {value_cols})")
            con.execute("CREATE TEMP TABLE nb_names (i INTEGER PRIMARY KEY, name TEXT)")
            con.executemany("INSERT INTO temp.nb_names VALUES (?, ?)", list(enumerate(names)))
            con.execute("CREATE TEMP TABLE nb_keys (ek BLOB PRIMARY KEY) WITHOUT ROWID")
            has_rows = con.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() is not None
            kept = 0
            if has_rows:
                con.executemany("INSERT INTO temp.nb_keys VALUES (?)", ((keys[i],) for i in order.tolist()))
                kept = _kept_rows(con, table, names)
            con.execute(f"DROP TABLE {t}")
            con.execute(create)
            for sql in indexes:
                con.execute(sql)
            vcase = " ".join(f"WHEN {j} THEN s.v{j}" for j in range(len(names)))
            xcase = " ".join(f"WHEN {j} THEN s.x{j}" for j in range(len(names)))
            unpivot = (
                f"INSERT INTO {t} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
                f"SELECT s.ek, f.name, CASE f.i {vcase} END, CASE f.i {xcase} END, s.ts, NULL "
                "FROM temp.nb_stage AS s CROSS JOIN temp.nb_names AS f ORDER BY s.rowid, f.i"
            )
            stage = f"INSERT INTO temp.nb_stage VALUES ({', '.join('?' * (2 + 2 * len(names)))})"
            row_stamps = np.asarray(_sqlite_stamps(stamps), dtype=object)
            key_array = np.empty(n, dtype=object)
            key_array[:] = keys
            for lo in range(0, n, STAGE_ROWS):
                rows = order[lo : lo + STAGE_ROWS]
                parts: list[list[Any]] = [key_array[rows].tolist(), row_stamps[stamp_codes[rows]].tolist()]
                for name in names:
                    col = columns[name]
                    codes = col.codes[rows]
                    parts += [col.blobs[codes].tolist(), col.texts[codes].tolist()]
                con.executemany(stage, zip(*parts, strict=True))
                con.execute(unpivot)
                con.execute("DELETE FROM temp.nb_stage")
            if kept:
                con.execute(f"INSERT INTO {t} SELECT * FROM temp.nb_kept")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return {"rows": n * len(names), "kept": kept}
    finally:
        con.close()


# ---- Redis ----


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def _timestamp_protos(stamps: list[datetime]) -> tuple[list[bytes], np.ndarray]:
    """Each event time as Feast's Redis writer stores it (a serialized Timestamp) and as nanoseconds."""
    from feast.utils import make_tzaware
    from google.protobuf.timestamp_pb2 import Timestamp

    out, nanos = [], []
    for t in stamps:
        ts = Timestamp()
        ts.FromDatetime(make_tzaware(t))
        out.append(ts.SerializeToString())
        nanos.append(ts.seconds * 1_000_000_000 + ts.nanos)
    return out, np.asarray(nanos, dtype=np.int64)


def _stored_nanos(replies: list[Any]) -> np.ndarray:
    """The nanoseconds of each stored `_ts:<view>` (0 when there is none), as Feast compares them."""
    from google.protobuf.timestamp_pb2 import Timestamp

    cache: dict[bytes, int] = {}
    out = np.zeros(len(replies), dtype=np.int64)
    for i, raw in enumerate(replies):
        if not raw:
            continue
        if raw not in cache:
            ts = Timestamp()
            ts.ParseFromString(raw)
            cache[raw] = ts.seconds * 1_000_000_000 + ts.nanos
        out[i] = cache[raw]
    return out


def _roundtrip(conn: Any, payload: bytes, n: int) -> list[Any]:
    """Send packed commands, read their n replies (an error reply raises)."""
    from redis.exceptions import ResponseError

    conn.send_packed_command([payload], check_health=False)
    replies = [conn.read_response(disable_decoding=True) for _ in range(n)]
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


def write_redis_view(
    client: Any,
    project: str,
    view: str,
    keys: list[bytes],
    stamp_codes: np.ndarray,
    stamps: list[datetime],
    columns: Mapping[str, EncodedColumn],
    key_ttl_seconds: int | None = None,
    skip_dedup: bool = False,
) -> dict[str, int]:
    """Write one view's rows in Feast's Redis layout (module docstring); {"rows": entities written, "skipped"}.

    `view` is the name Feast hashes (its versioned name), `keys` the serialized entity keys (without the project).
    """
    from feast.infra.online_stores.helpers import _mmh3

    names = list(columns)
    suffix = project.encode("utf8")
    ts_field = _bulk(f"_ts:{view}".encode())
    ts_protos, ts_nanos = _timestamp_protos(stamps)
    ts_pieces = np.asarray([ts_field + _bulk(b) for b in ts_protos], dtype=object)
    head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (len(names) + 1))
    # Per feature: the field argument (mmh3 of "view:feature") and each distinct value's argument, prebuilt.
    pieces = {}
    for name in names:
        field = _bulk(_mmh3(f"{view}:{name}"))
        pieces[name] = np.asarray([field + _bulk(b) for b in columns[name].blobs.tolist()], dtype=object)
    ttl = b"" if not key_ttl_seconds else _bulk(str(int(key_ttl_seconds)).encode())
    written = skipped = 0
    conn = client.connection_pool.get_connection()
    try:
        # Feast's rule reads the stored event times before writing (it does so per batch); all of them, first.
        if skip_dedup:
            stored = np.zeros(len(keys), dtype=np.int64)
        else:
            hget = b"*3\r\n$4\r\nHGET\r\n"
            replies: list[Any] = []
            for lo in range(0, len(keys), REDIS_ROWS):
                batch = keys[lo : lo + REDIS_ROWS]
                replies += _roundtrip(conn, b"".join(hget + _bulk(k + suffix) + ts_field for k in batch), len(batch))
            stored = _stored_nanos(replies)
        new = ts_nanos[stamp_codes]
        chosen_all = np.flatnonzero((stored == 0) | (new > stored))  # skip a row not newer than the stored one
        skipped = len(keys) - len(chosen_all)
        in_flight = 0  # replies of the batch Redis is still working on
        for lo in range(0, len(chosen_all), REDIS_ROWS):
            chosen = chosen_all[lo : lo + REDIS_ROWS]
            chosen_keys = [_bulk(keys[i] + suffix) for i in chosen.tolist()]
            parts: list[list[Any]] = [chosen_keys, ts_pieces[stamp_codes[chosen]].tolist()]
            parts += [pieces[name][columns[name].codes[chosen]].tolist() for name in names]
            payload = _hset_payload(head, parts)
            n = len(chosen)
            if ttl:
                payload += b"".join(b"*3\r\n$6\r\nEXPIRE\r\n" + k + ttl for k in chosen_keys)
                n *= 2
            # Redis works on the previous batch while this one is built; its replies are read before this batch is
            # sent, so at most one batch is ever unanswered (a second one could stall on full socket buffers).
            _read_replies(conn, in_flight)
            conn.send_packed_command([payload], check_health=False)
            in_flight = n
            written += len(chosen)
        _read_replies(conn, in_flight)
    finally:
        client.connection_pool.release(conn)
    return {"rows": written, "skipped": int(skipped)}


def _read_replies(conn: Any, n: int) -> None:
    from redis.exceptions import ResponseError

    for _ in range(n):
        reply = conn.read_response(disable_decoding=True)
        if isinstance(reply, ResponseError):
            raise reply


def _hset_payload(head: bytes, parts: list[list[Any]]) -> bytes:
    """Concatenate per-row HSET commands: header, key, then the row's (field, value) arguments."""
    heads = [head] * len(parts[0])
    return b"".join(chain.from_iterable(zip(heads, *parts, strict=True)))
